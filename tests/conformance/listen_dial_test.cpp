// Conformance: listening and connecting (CONFORMANCE.md 22–27), on every backend.
#include <map>
#include <set>

#include "testutil.h"

namespace mnptest {
namespace {

class ListenDial : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, ListenDial, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// Sends "ping" one way and "pong" back over a fresh pair.
void expect_round_trip(mnp::net::Conn& a, mnp::net::Conn& b) {
  EXPECT_NO_ERR(a.write("ping").err);
  ReadAll got = read_exact(b, 4);
  EXPECT_NO_ERR(got.err);
  EXPECT_EQ(got.data, "ping");
  EXPECT_NO_ERR(b.write("pong").err);
  got = read_exact(a, 4);
  EXPECT_NO_ERR(got.err);
  EXPECT_EQ(got.data, "pong");
}

// 22. Listening on a port in use: Errc::addr_in_use.
TEST_P(ListenDial, ListenOnPortInUseReturnsAddrInUse) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    const auto r = mnp::net::listen("tcp", ln->addr().to_string());
    EXPECT_ERRC(r.err, Errc::addr_in_use);
    EXPECT_FALSE(r.value);
  });
}

// 22. Port 0 picks a free port, reported by the listener's address, which
// can be dialed.
TEST_P(ListenDial, ListenOnPortZeroReportsPickedPort) {
  run_on_backend([] {
    ListenerPtr a = must_listen();
    ListenerPtr b = must_listen();
    ASSERT_TRUE(a && b);
    EXPECT_NE(a->addr().port(), 0);
    EXPECT_NE(b->addr().port(), 0);
    EXPECT_NE(a->addr().port(), b->addr().port());
    EXPECT_EQ(a->addr().ip(), "127.0.0.1");
    // The kernel agrees.
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ASSERT_EQ(::getsockname(a->sysfd(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
    EXPECT_EQ(mnp::net::Addr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len), a->addr());
    ConnPtr c = must_dial(a->addr().to_string());
    ASSERT_TRUE(c);
    ConnPtr s = must_accept(*a);
    ASSERT_TRUE(s);
    expect_round_trip(*c, *s);
  });
}

// 23. A burst of 1,000 concurrent connects (four dialing Gs) is fully
// accepted, each connection exactly once, and nothing more.
TEST_P(ListenDial, BurstOfThousandConnectsAcceptedOnceEach) {
  static constexpr int kN = 1000, kDialers = 4;
  ScopedNofile nofile(2 * kN + 256);
  if (!nofile.ok()) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << nofile.hard() << " < 2,256";
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    ln->set_deadline(now() + 10s);  // a bound, not part of the behaviour
    std::vector<ConnPtr> accepted, dialed(kN);
    std::vector<mnp::Error> dial_errs(kN);
    mnp::Error accept_err;
    const std::string addr = ln->addr().to_string();
    {
      Group g;
      g.go([&] {
        while (static_cast<int>(accepted.size()) < kN) {
          auto r = ln->accept();
          if (r.err) {
            accept_err = r.err;
            return;
          }
          accepted.push_back(std::move(r.value));
        }
      });
      for (int d = 0; d < kDialers; d++) {
        g.go([&, d] {
          for (int i = d; i < kN; i += kDialers) {
            auto r = mnp::net::dial("tcp", addr);
            dial_errs[i] = r.err;
            dialed[i] = std::move(r.value);
          }
        });
      }
    }
    EXPECT_NO_ERR(accept_err) << " after " << accepted.size() << " accepts";
    int dial_failures = 0;
    for (const auto& e : dial_errs) dial_failures += static_cast<bool>(e);
    EXPECT_EQ(dial_failures, 0);
    ASSERT_EQ(accepted.size(), static_cast<size_t>(kN));

    // Each dialed connection's local address is one accepted connection's
    // remote address, exactly once.
    std::multiset<uint16_t> from_dial, from_accept;
    for (const auto& c : dialed)
      if (c) from_dial.insert(c->local_addr().port());
    for (const auto& c : accepted)
      if (c) from_accept.insert(c->remote_addr().port());
    EXPECT_EQ(std::set<uint16_t>(from_accept.begin(), from_accept.end()).size(),
              static_cast<size_t>(kN))
        << "a connection was accepted twice";
    EXPECT_TRUE(from_dial == from_accept) << "accepted connections differ from dialed ones";

    ln->set_deadline(now() + 50ms);
    EXPECT_ERRC(ln->accept().err, Errc::timeout) << " (a 1,001st connection was accepted)";
  });
}

// 24. Accept with the process out of fds returns Errc::too_many_files while
// the connection stays queued; once fds are freed the listener accepts it.
TEST_P(ListenDial, AcceptOutOfFdsReturnsTooManyFilesAndRecovers) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    const int client = raw_socket();  // made before the table is full
    ASSERT_GE(client, 0);
    mnp::Result<ConnPtr> r1, r2;
    double first_ms = 0;
    {
      FdExhaustion full;
      if (!full.exhausted()) {
        full.release();
        ::close(client);
        FAIL() << "could not fill the fd table";
      }
      if (!raw_connect(client, ln->addr())) {
        full.release();
        ::close(client);
        FAIL() << "connect to the listener failed";
      }
      const auto t0 = now();
      r1 = ln->accept();
      first_ms = ms_since(t0);
      r2 = ln->accept();
    }  // fds freed, limit restored
    EXPECT_ERRC(r1.err, Errc::too_many_files);
    EXPECT_FALSE(r1.value);
    EXPECT_LT(first_ms, kSlackMs) << "ms before accept reported the full fd table";
    EXPECT_ERRC(r2.err, Errc::too_many_files) << " (again: the connection is still queued)";
    ln->set_deadline(now() + 2s);
    ConnPtr s = must_accept(*ln);
    if (s) {
      EXPECT_TRUE(raw_write_all(client, "queued"));
      const ReadAll got = read_exact(*s, 6);
      EXPECT_NO_ERR(got.err);
      EXPECT_EQ(got.data, "queued");
    }
    ::close(client);
  });
}

// 25. Dialing a port nobody listens on: Errc::refused.
TEST_P(ListenDial, DialClosedPortReturnsRefused) {
  run_on_backend([] {
    std::string addr;
    {
      ListenerPtr ln = must_listen();
      ASSERT_TRUE(ln);
      addr = ln->addr().to_string();
    }
    const auto t0 = now();
    const auto r = mnp::net::dial("tcp", addr);
    EXPECT_ERRC(r.err, Errc::refused);
    EXPECT_FALSE(r.value);
    EXPECT_LT(ms_since(t0), kSlackMs);
  });
}

// 26. IPv4 literal, with "tcp" and "tcp4".
TEST_P(ListenDial, Ipv4LiteralListenAndDial) {
  run_on_backend([] {
    for (const char* net : {"tcp", "tcp4"}) {
      ConnPair p = connected_pair(net, "127.0.0.1:0");
      ASSERT_TRUE(p) << net;
      EXPECT_EQ(p.client->remote_addr().family(), AF_INET);
      EXPECT_EQ(p.client->remote_addr().ip(), "127.0.0.1");
      expect_round_trip(*p.client, *p.server);
    }
  });
}

// 26. IPv6 literal [::1], with "tcp" and "tcp6"; skipped by name without an
// IPv6 loopback.
TEST_P(ListenDial, Ipv6LiteralListenAndDial) {
  const std::string why = ipv6_loopback_unavailable_reason();
  if (!why.empty()) GTEST_SKIP() << "no IPv6 loopback: " << why;
  run_on_backend([] {
    for (const char* net : {"tcp", "tcp6"}) {
      ListenerPtr ln = must_listen(net, "[::1]:0");
      ASSERT_TRUE(ln) << net;
      EXPECT_TRUE(ln->addr().is_ipv6());
      EXPECT_EQ(ln->addr().ip(), "::1");
      EXPECT_EQ(ln->addr().to_string(), "[::1]:" + std::to_string(ln->addr().port()));
      ConnPtr c = must_dial(ln->addr().to_string(), net);
      ASSERT_TRUE(c) << net;
      ConnPtr s = must_accept(*ln);
      ASSERT_TRUE(s) << net;
      EXPECT_TRUE(c->remote_addr().is_ipv6());
      expect_round_trip(*c, *s);
    }
  });
}

// 26. "localhost" for both listen and dial.
TEST_P(ListenDial, LocalhostListenAndDial) {
  run_on_backend([] {
    ListenerPtr ln = must_listen("tcp", "localhost:0");
    ASSERT_TRUE(ln);
    EXPECT_NE(ln->addr().port(), 0);
    const std::string ip = ln->addr().ip();
    EXPECT_TRUE(ip == "127.0.0.1" || ip == "::1") << ip;
    ConnPtr c = must_dial("localhost:" + std::to_string(ln->addr().port()));
    ASSERT_TRUE(c);
    ConnPtr s = must_accept(*ln);
    ASSERT_TRUE(s);
    expect_round_trip(*c, *s);
  });
}

// 27. An accepted Conn's local and remote addresses are the dialer's remote
// and local ones (and what the kernel reports), over IPv4 and IPv6.
TEST_P(ListenDial, AcceptedAddrsMirrorDialerAddrs) {
  const bool v6 = ipv6_loopback_unavailable_reason().empty();
  run_on_backend([v6] {
    std::vector<std::string> addrs = {"127.0.0.1:0"};
    if (v6) addrs.push_back("[::1]:0");
    for (const auto& a : addrs) {
      ListenerPtr ln = must_listen("tcp", a);
      ASSERT_TRUE(ln);
      ConnPtr c = must_dial(ln->addr().to_string());
      ASSERT_TRUE(c);
      ConnPtr s = must_accept(*ln);
      ASSERT_TRUE(s);
      EXPECT_EQ(c->remote_addr(), ln->addr()) << a;
      EXPECT_EQ(s->local_addr(), c->remote_addr())
          << s->local_addr().to_string() << " vs " << c->remote_addr().to_string();
      EXPECT_EQ(s->remote_addr(), c->local_addr())
          << s->remote_addr().to_string() << " vs " << c->local_addr().to_string();
      EXPECT_EQ(s->remote_addr().to_string(), c->local_addr().to_string());
      EXPECT_NE(c->local_addr().port(), 0);
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      ASSERT_EQ(::getsockname(c->sysfd(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
      EXPECT_EQ(mnp::net::Addr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len),
                c->local_addr());
      len = sizeof ss;
      ASSERT_EQ(::getpeername(s->sysfd(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
      EXPECT_EQ(mnp::net::Addr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len),
                s->remote_addr());
    }
  });
}

}  // namespace
}  // namespace mnptest
