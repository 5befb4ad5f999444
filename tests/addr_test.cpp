// Addresses: parsing and printing round trips, bad input rejected with
// Errc::invalid and the offending text, resolve() of literals and localhost,
// and (AddrNet) the addresses listen/accept/dial report on real sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "mnp/net.h"
#include "mnp/runtime.h"
#include "testutil.h"

using mnp::Errc;
using mnp::net::Addr;

namespace {

Addr must_parse(std::string_view s) {
  auto [a, err] = Addr::parse(s);
  EXPECT_FALSE(err) << s << ": " << err.message();
  return a;
}

}  // namespace

TEST(Addr, IPv4RoundTrip) {
  Addr a = must_parse("1.2.3.4:80");
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_FALSE(a.is_ipv6());
  EXPECT_EQ(a.ip(), "1.2.3.4");
  EXPECT_EQ(a.port(), 80);
  EXPECT_EQ(a.to_string(), "1.2.3.4:80");
  EXPECT_EQ(a.len(), sizeof(sockaddr_in));
  EXPECT_EQ(must_parse(a.to_string()), a);
}

TEST(Addr, IPv6IsPrintedInBrackets) {
  Addr a = must_parse("[::1]:80");
  EXPECT_TRUE(a.is_ipv6());
  EXPECT_EQ(a.ip(), "::1");
  EXPECT_EQ(a.port(), 80);
  EXPECT_EQ(a.to_string(), "[::1]:80");
  EXPECT_EQ(a.len(), sizeof(sockaddr_in6));
  EXPECT_EQ(must_parse(a.to_string()), a);
}

TEST(Addr, IPv6IsPrintedInCanonicalForm) {
  EXPECT_EQ(must_parse("[2001:0DB8:0:0::0001]:65535").to_string(), "[2001:db8::1]:65535");
  EXPECT_EQ(must_parse("[::ffff:1.2.3.4]:1").to_string(), "[::ffff:1.2.3.4]:1");
}

TEST(Addr, IPv6ZoneRoundTrips) {
  // Index 1 is the loopback interface on Linux ("lo") and macOS ("lo0"); the
  // zone prints as the interface name and parses back to the same index.
  Addr a = must_parse("[fe80::1%1]:443");
  std::string s = a.to_string();
  EXPECT_EQ(s.rfind("[fe80::1%", 0), 0u) << s;
  EXPECT_EQ(must_parse(s), a) << s;
  EXPECT_FALSE(a == must_parse("[fe80::1]:443"));  // the zone is part of the address
}

TEST(Addr, EmptyHostIsIPv4Unspecified) {
  Addr a = must_parse(":80");
  EXPECT_EQ(a.family(), AF_INET);
  EXPECT_EQ(a.to_string(), "0.0.0.0:80");
}

TEST(Addr, PortBoundsAreChecked) {
  EXPECT_EQ(must_parse("1.2.3.4:0").port(), 0);
  EXPECT_EQ(must_parse("1.2.3.4:65535").port(), 65535);
  EXPECT_EQ(must_parse("1.2.3.4:00080").port(), 80);  // leading zeros, as Go
  for (const char* bad : {"1.2.3.4:65536", "1.2.3.4:99999999999999999999", "1.2.3.4:-1",
                          "1.2.3.4:+80", "1.2.3.4:", "1.2.3.4:http", "[::1]:0x50"}) {
    auto [a, err] = Addr::parse(bad);
    EXPECT_EQ(err, Errc::invalid) << bad;
    EXPECT_NE(err.context().find(bad), std::string::npos) << err.message();
  }
}

TEST(Addr, MalformedInputIsInvalidAndNamed) {
  for (const char* bad : {
           "1.2.3.4",                // no port
           "::1:80",                 // IPv6 without brackets
           "[::1]",                  // no port
           "[::1]80",                // no colon after ']'
           "[::1:80",                // no ']'
           "::1]:80",                // stray ']'
           "[1.2.3.4:80",            // no ']'
           "1.2.3.256:80",           // octet out of range
           "1.2.3:80",               // three octets
           "01.2.3.4:80",            // leading zero (ambiguous octal), rejected as Go does
           " 1.2.3.4:80",            // space
           "1.2.3.4:8 0",            // space in the port
           "1.2.3.4:80:",            // trailing colon
           "example.com:80",         // a name: parse takes literals only
           "localhost:80",           // likewise (resolve() knows it)
           "[fe80::1%]:80",          // empty zone
           "[fe80::1%nosuchif9]:80"  // unknown interface
       }) {
    auto [a, err] = Addr::parse(bad);
    EXPECT_EQ(err, Errc::invalid) << bad;
    EXPECT_EQ(a.len(), 0u) << bad;
    EXPECT_NE(err.context().find(bad), std::string::npos) << err.message();
    EXPECT_NE(err.message().find(bad), std::string::npos) << err.message();
  }
  auto [a, err] = Addr::parse("");
  EXPECT_EQ(err, Errc::invalid);
  EXPECT_NE(err.message().find("missing address"), std::string::npos) << err.message();
}

TEST(Addr, MessageSaysWhatIsWrong) {
  auto [a, err] = Addr::parse("1.2.3.4:99999");
  EXPECT_NE(err.message().find("1.2.3.4:99999"), std::string::npos) << err.message();
  EXPECT_NE(err.message().find("port"), std::string::npos) << err.message();
  auto [b, err2] = Addr::parse("::1:80");
  EXPECT_NE(err2.message().find("brackets"), std::string::npos) << err2.message();
}

TEST(Addr, Equality) {
  EXPECT_EQ(must_parse("1.2.3.4:80"), must_parse("1.2.3.4:80"));
  EXPECT_FALSE(must_parse("1.2.3.4:80") == must_parse("1.2.3.4:81"));
  EXPECT_FALSE(must_parse("1.2.3.4:80") == must_parse("1.2.3.5:80"));
  EXPECT_FALSE(must_parse("[::1]:80") == must_parse("127.0.0.1:80"));
  EXPECT_EQ(must_parse("[::1]:80"), must_parse("[0:0::1]:80"));
  EXPECT_EQ(Addr{}, Addr{});
  EXPECT_FALSE(Addr{} == must_parse(":0"));
}

TEST(Addr, FromSockaddrRoundTrip) {
  for (const char* s : {"10.0.0.1:1234", "[2001:db8::7]:9"}) {
    Addr a = must_parse(s);
    Addr b = Addr::from_sockaddr(a.sockaddr_ptr(), a.len());
    EXPECT_EQ(a, b) << s;
    EXPECT_EQ(b.to_string(), s);
    // A length too short for the family is not an address.
    EXPECT_EQ(Addr::from_sockaddr(a.sockaddr_ptr(), a.len() - 1).family(), 0) << s;
  }
  EXPECT_EQ(Addr::from_sockaddr(nullptr, 0).len(), 0u);
  EXPECT_EQ(Addr{}.to_string(), "");
  EXPECT_EQ(Addr{}.port(), 0);
}

TEST(AddrResolve, LiteralsAndLocalhostNeedNoLookup) {
  auto [a, err] = mnp::net::resolve("localhost:80");
  ASSERT_FALSE(err) << err.message();
  EXPECT_EQ(a.to_string(), "127.0.0.1:80");  // IPv4 first for "tcp"
  auto [b, err2] = mnp::net::resolve("tcp6", "LocalHost:80");
  ASSERT_FALSE(err2) << err2.message();
  EXPECT_EQ(b.to_string(), "[::1]:80");
  auto [c, err3] = mnp::net::resolve("tcp4", "localhost.:7");
  ASSERT_FALSE(err3) << err3.message();
  EXPECT_EQ(c.to_string(), "127.0.0.1:7");
  auto [d, err4] = mnp::net::resolve("[::1]:5");
  ASSERT_FALSE(err4) << err4.message();
  EXPECT_EQ(d.to_string(), "[::1]:5");
  auto [e, err5] = mnp::net::resolve("tcp6", ":5");
  ASSERT_FALSE(err5) << err5.message();
  EXPECT_EQ(e.to_string(), "[::]:5");
}

TEST(AddrResolve, FamilyAndNetworkAreChecked) {
  auto [a, err] = mnp::net::resolve("tcp4", "[::1]:80");
  EXPECT_EQ(err, Errc::invalid) << err.message();
  auto [b, err2] = mnp::net::resolve("tcp6", "127.0.0.1:80");
  EXPECT_EQ(err2, Errc::invalid) << err2.message();
  auto [c, err3] = mnp::net::resolve("udp", "127.0.0.1:80");
  EXPECT_EQ(err3, Errc::invalid) << err3.message();
  EXPECT_NE(err3.message().find("unknown network"), std::string::npos) << err3.message();
  auto [d, err4] = mnp::net::resolve("localhost:65536");
  EXPECT_EQ(err4, Errc::invalid) << err4.message();
}

// The tests that need the runtime run once per backend, under the suite's
// watchdog, checking that no fd and no G outlives them (tests/testutil.h).
class AddrNet : public mnptest::BackendTest {};
INSTANTIATE_TEST_SUITE_P(, AddrNet, ::testing::ValuesIn(mnptest::all_backends()),
                         mnptest::backend_test_name);

// A name from /etc/hosts goes through getaddrinfo inside mnp::blocking,
// without touching the network (nsswitch reads files before DNS).
TEST_P(AddrNet, HostsFileNameResolvesOffTheScheduler) {
  // Only where the hosts file is read before DNS: no lookup may leave the machine.
  std::ifstream nss("/etc/nsswitch.conf");
  std::string line;
  while (std::getline(nss, line)) {
    if (line.rfind("hosts:", 0) != 0) continue;
    std::istringstream fields(line.substr(6));
    std::string first;
    fields >> first;
    if (first != "files") GTEST_SKIP() << "nsswitch.conf does not read /etc/hosts first";
  }
  // The first "IPv4-address name" line whose name is not localhost.
  std::ifstream hosts("/etc/hosts");
  std::string ip, name;
  while (name.empty() && std::getline(hosts, line)) {
    std::istringstream fields(line.substr(0, line.find('#')));
    std::string a, n;
    if (!(fields >> a)) continue;
    Addr parsed = Addr::parse(a + ":0").value;
    if (parsed.family() != AF_INET) continue;
    while (fields >> n) {
      if (n.find("localhost") == std::string::npos) {
        ip = a;
        name = n;
        break;
      }
    }
  }
  if (name.empty()) GTEST_SKIP() << "/etc/hosts names no IPv4 host besides localhost";
  run_on_backend([&] {
    auto [a, err] = mnp::net::resolve("tcp4", name + ":8080");
    ASSERT_FALSE(err) << err.message();
    EXPECT_EQ(a.to_string(), ip + ":8080") << name;
  });
}

// --- real sockets -------------------------------------------------------------

TEST_P(AddrNet, ListenOnPortZeroReportsTheRealPort) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    ASSERT_FALSE(err) << err.message();
    EXPECT_EQ(ln->addr().ip(), "127.0.0.1");
    EXPECT_NE(ln->addr().port(), 0);
    EXPECT_GE(ln->sysfd(), 0);
    EXPECT_FALSE(ln->close());
    EXPECT_EQ(ln->close(), Errc::closed);
  });
}

TEST_P(AddrNet, AcceptedAddressesMirrorTheDialer) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp4", "localhost:0");
    ASSERT_FALSE(err) << err.message();
    // On loopback the handshake completes from the backlog: dial first, then
    // accept, in one G.
    auto [c, derr] = mnp::net::dial("tcp", ln->addr().to_string());
    ASSERT_FALSE(derr) << derr.message();
    auto [s, aerr] = ln->accept();
    ASSERT_FALSE(aerr) << aerr.message();
    EXPECT_EQ(c->remote_addr(), ln->addr());
    EXPECT_EQ(s->local_addr(), c->remote_addr());
    EXPECT_EQ(s->remote_addr(), c->local_addr());
    EXPECT_NE(c->local_addr().port(), 0);

    ASSERT_FALSE(c->write("ping").err);
    char buf[8];
    auto r = s->read(buf, sizeof buf);
    ASSERT_FALSE(r.err) << r.err.message();
    EXPECT_EQ(std::string(buf, r.n), "ping");
    ASSERT_FALSE(c->close_write());
    r = s->read(buf, sizeof buf);
    EXPECT_EQ(r.err, Errc::eof);
    EXPECT_FALSE(s->set_keep_alive(true, std::chrono::milliseconds(1500)));
    EXPECT_FALSE(s->set_no_delay(false));
    EXPECT_FALSE(s->set_linger(0));
    EXPECT_FALSE(s->set_write_buffer(64 * 1024));
    EXPECT_EQ(s->set_read_buffer(-1), Errc::invalid);
  });
}

TEST_P(AddrNet, ListenErrorsNameTheAddress) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    ASSERT_FALSE(err) << err.message();
    std::string where = ln->addr().to_string();
    auto [ln2, err2] = mnp::net::listen("tcp", where);
    EXPECT_EQ(err2, Errc::addr_in_use) << err2.message();
    EXPECT_STREQ(err2.op(), "listen");
    EXPECT_EQ(err2.context(), "tcp " + where);

    auto [ln3, err3] = mnp::net::listen("udp", "127.0.0.1:0");
    EXPECT_EQ(err3, Errc::invalid) << err3.message();
    auto [ln4, err4] = mnp::net::listen("tcp", "127.0.0.1:70000");
    EXPECT_EQ(err4, Errc::invalid) << err4.message();
    EXPECT_NE(err4.message().find("listen tcp 127.0.0.1:70000"), std::string::npos)
        << err4.message();
  });
}

TEST_P(AddrNet, DialRefusedNamesTheAddress) {
  run_on_backend([] {
    std::string where;
    {
      auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
      ASSERT_FALSE(err) << err.message();
      where = ln->addr().to_string();
    }  // closed: nothing listens there now
    auto [c, err] = mnp::net::dial("tcp", where);
    EXPECT_EQ(err, Errc::refused) << err.message();
    EXPECT_STREQ(err.op(), "dial");
    EXPECT_EQ(err.context(), "tcp " + where);
    EXPECT_EQ(err.message(), "dial tcp " + where + ": connection refused");
  });
}

TEST_P(AddrNet, DialWithDeadlineInThePastTimesOutAtOnce) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    ASSERT_FALSE(err) << err.message();
    mnp::net::DialConfig cfg;
    cfg.deadline = mnp::Clock::now() - std::chrono::seconds(1);
    auto [c, derr] = mnp::net::dial("tcp", ln->addr().to_string(), cfg);
    EXPECT_EQ(derr, Errc::timeout) << derr.message();
    EXPECT_EQ(c, nullptr);
  });
}

TEST_P(AddrNet, IPv6LoopbackAndLocalhostFallback) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp6", "[::1]:0");
    if (err == Errc::addr_not_avail || err.sys_errno() == EAFNOSUPPORT) {
      GTEST_SKIP() << "no IPv6 loopback here: " << err.message();
    }
    ASSERT_FALSE(err) << err.message();
    EXPECT_TRUE(ln->addr().is_ipv6());
    // "localhost" tries 127.0.0.1 first (refused: nothing listens there on
    // this port, unless by chance), then ::1.
    auto [c, derr] = mnp::net::dial("tcp", "localhost:" + std::to_string(ln->addr().port()));
    ASSERT_FALSE(derr) << derr.message();
    if (!c->remote_addr().is_ipv6()) {
      GTEST_SKIP() << "another program listens on " << c->remote_addr().to_string();
    }
    EXPECT_EQ(c->remote_addr().to_string(), "[::1]:" + std::to_string(ln->addr().port()));
    auto [s, aerr] = ln->accept();
    ASSERT_FALSE(aerr) << aerr.message();
    EXPECT_EQ(s->remote_addr(), c->local_addr());
  });
}

TEST_P(AddrNet, DialBindsTheLocalAddress) {
  run_on_backend([] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    ASSERT_FALSE(err) << err.message();
    mnp::net::DialConfig cfg;
    cfg.local = Addr::parse("127.0.0.2:0").value;
    auto [c, derr] = mnp::net::dial("tcp", ln->addr().to_string(), cfg);
    if (derr == Errc::addr_not_avail) GTEST_SKIP() << "127.0.0.2 is not local here";
    ASSERT_FALSE(derr) << derr.message();
    EXPECT_EQ(c->local_addr().ip(), "127.0.0.2");
    auto [s, aerr] = ln->accept();
    ASSERT_FALSE(aerr) << aerr.message();
    EXPECT_EQ(s->remote_addr(), c->local_addr());
  });
}
