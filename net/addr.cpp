// Addresses: parsing "host:port" (Go's net.SplitHostPort and ParseIP),
// printing it back (JoinHostPort), and resolve(): IP literals and "localhost"
// are answered at once; any other name goes to getaddrinfo(3), which may block
// for seconds, so it runs inside mnp::blocking, off the scheduler's threads.
//
// Accepted forms, as in Go:
//   "1.2.3.4:80"          IPv4 literal
//   "[::1]:80"            IPv6 literal, always in brackets
//   "[fe80::1%eth0]:80"   IPv6 with a zone (interface name or index)
//   ":80"                 no host: the unspecified address (0.0.0.0; [::] for tcp6)
//   "example.com:80"      a name: resolve() only, not Addr::parse
// The port is decimal, 0..65535; service names ("http") are not looked up.
#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "internal.h"
#include "mnp/net.h"
#include "mnp/runtime.h"

namespace mnp::net {

namespace {
// getaddrinfo's "the name has no address" answers (EAI_NODATA is glibc's).
bool gai_no_such_host(int rc) {
#ifdef EAI_NODATA
  if (rc == EAI_NODATA) return true;
#endif
  return rc == EAI_NONAME;
}
}  // namespace
namespace {

constexpr size_t npos = std::string_view::npos;

// An Errc::invalid error whose context names the text and the reason:
// "1.2.3.4:99999: port out of range 0..65535".
Error bad_address(std::string_view hostport, const char* why) {
  Error e(Errc::invalid);
  std::string ctx = hostport.empty() ? std::string("\"\"") : std::string(hostport);
  ctx += ": ";
  ctx += why;
  e.with_context(std::move(ctx));
  return e;
}

// Splits "host:port" as Go's net.SplitHostPort does. Returns nullptr, or why
// the text is not a host and a port. The port text may still be bad.
const char* split_host_port(std::string_view s, std::string_view* host, std::string_view* port) {
  if (s.empty()) return "missing address";
  if (s.front() == '[') {
    size_t end = s.find(']');
    if (end == npos) return "missing ']' in address";
    *host = s.substr(1, end - 1);
    std::string_view rest = s.substr(end + 1);
    if (rest.empty()) return "missing port in address";
    if (rest.front() != ':') return "unexpected text after ']' (expected \":port\")";
    *port = rest.substr(1);
  } else {
    size_t colon = s.rfind(':');
    if (colon == npos) return "missing port in address";
    *host = s.substr(0, colon);
    if (host->find(':') != npos)
      return "too many colons in address (IPv6 needs brackets: \"[::1]:80\")";
    *port = s.substr(colon + 1);
  }
  if (host->find_first_of("[]") != npos) return "unexpected '[' or ']' in address";
  return nullptr;
}

// Decimal digits only, 0..65535 (leading zeros allowed, as Go's parsePort).
const char* parse_port(std::string_view s, uint16_t* port) {
  if (s.empty()) return "missing port in address";
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return "invalid port (a number 0..65535 is expected)";
    v = v * 10 + static_cast<uint32_t>(c - '0');
    if (v > 65535) return "port out of range 0..65535";
  }
  *port = static_cast<uint16_t>(v);
  return nullptr;
}

#if defined(SIN6_LEN)
// BSD and macOS sockaddrs carry their own length (sa_len).
void set_sa_len(sockaddr* sa, socklen_t len) {
  sa->sa_len = static_cast<uint8_t>(len);
}
#else
void set_sa_len(sockaddr*, socklen_t) {}
#endif

Addr make_v4(const in_addr& ip, uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr = ip;
  set_sa_len(reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  return Addr::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
}

Addr make_v6(const in6_addr& ip, uint32_t scope, uint16_t port) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(port);
  sin6.sin6_addr = ip;
  sin6.sin6_scope_id = scope;
  set_sa_len(reinterpret_cast<sockaddr*>(&sin6), sizeof sin6);
  return Addr::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
}

Addr unspecified(detail::Family f, uint16_t port) {
  if (f == detail::Family::v6) return make_v6(in6addr_any, 0, port);
  in_addr any{};
  any.s_addr = htonl(INADDR_ANY);
  return make_v4(any, port);
}

// Parses an IP literal without brackets: IPv4 dotted quad, or IPv6 with an
// optional "%zone". *is_ip is false when host is not an IP literal at all (a
// name, for the resolver); the return value is why a literal is malformed.
const char* parse_ip(std::string_view host, uint16_t port, Addr* out, bool* is_ip) {
  *is_ip = false;
  // inet_pton wants a C string. Anything longer than the longest literal with
  // a zone is a name.
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  if (host.size() >= sizeof text || host.find('\0') != npos) return nullptr;
  std::memcpy(text, host.data(), host.size());
  text[host.size()] = '\0';

  in_addr ip4{};
  if (::inet_pton(AF_INET, text, &ip4) == 1) {
    *is_ip = true;
    *out = make_v4(ip4, port);
    return nullptr;
  }
  char* pct = std::strchr(text, '%');
  if (pct != nullptr) *pct = '\0';
  in6_addr ip6{};
  if (::inet_pton(AF_INET6, text, &ip6) != 1) return nullptr;
  *is_ip = true;
  uint32_t scope = 0;
  if (pct != nullptr) {
    const char* zone = pct + 1;
    if (*zone == '\0') return "empty IPv6 zone after '%'";
    bool numeric = true;
    uint64_t v = 0;
    for (const char* p = zone; *p != '\0'; ++p) {
      if (*p < '0' || *p > '9' || v > UINT32_MAX) {
        numeric = false;
        break;
      }
      v = v * 10 + static_cast<uint64_t>(*p - '0');
    }
    if (numeric && v <= UINT32_MAX) {
      scope = static_cast<uint32_t>(v);
    } else {
      // if_nametoindex(3): an ioctl, not a network lookup.
      scope = ::if_nametoindex(zone);
      if (scope == 0) return "unknown IPv6 zone (no such interface)";
    }
  }
  *out = make_v6(ip6, scope, port);
  return nullptr;
}

bool family_allows(detail::Family f, const Addr& a) {
  switch (f) {
    case detail::Family::any:
      return true;
    case detail::Family::v4:
      return a.family() == AF_INET;
    case detail::Family::v6:
      return a.family() == AF_INET6;
  }
  return false;
}

bool is_localhost(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // fully qualified
  constexpr std::string_view name = "localhost";
  if (host.size() != name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = host[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != name[i]) return false;
  }
  return true;
}

// getaddrinfo(3) for a name that is neither a literal nor "localhost".
Error lookup(detail::Family f, std::string_view host, uint16_t port, std::string_view hostport,
             std::vector<Addr>* out) {
  if (host.size() > 253) return bad_address(hostport, "host name longer than 253 characters");
  if (host.find('\0') != npos) return bad_address(hostport, "NUL in host name");
  std::string name(host);
  addrinfo hints{};
  hints.ai_family = f == detail::Family::v4   ? AF_INET
                    : f == detail::Family::v6 ? AF_INET6
                                              : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  // No AI_ADDRCONFIG: on a host with only loopback configured it hides
  // addresses that would work.
  addrinfo* res = nullptr;
  int rc = 0;
  int sys_err = 0;
  auto call = [&] {
    rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
    if (rc == EAI_SYSTEM) sys_err = errno;  // errno is per thread: read it here
  };
  // Inside a G, getaddrinfo may block its M for seconds: hand it to
  // mnp::blocking. Outside the runtime (goid 0) no scheduler thread is at stake.
  if (mnp::goid() != 0) {
    mnp::blocking(call);
  } else {
    call();
  }
  if (rc != 0) {
    Error e = rc == EAI_SYSTEM && sys_err != 0 ? Error::from_errno(nullptr, sys_err)
              : rc == EAI_MEMORY               ? Error::from_errno(nullptr, ENOMEM)
              : gai_no_such_host(rc)           ? Error(Errc::no_such_host)
                                               : Error(Errc::sys);
    e.with_context(std::string(hostport) + ": lookup " + name + ": " + ::gai_strerror(rc));
    return e;
  }
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Addr a;
    if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(sockaddr_in)) {
      a = make_v4(reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr, port);
    } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(sockaddr_in6)) {
      const auto* s6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      a = make_v6(s6->sin6_addr, s6->sin6_scope_id, port);
    } else {
      continue;
    }
    if (family_allows(f, a) && std::find(out->begin(), out->end(), a) == out->end()) {
      out->push_back(a);
    }
  }
  ::freeaddrinfo(res);
  if (out->empty()) {
    Error e(Errc::sys);
    e.with_context(std::string(hostport) + ": lookup " + name + ": no suitable address");
    return e;
  }
  if (f == detail::Family::any) {
    std::stable_partition(out->begin(), out->end(),
                          [](const Addr& a) { return a.family() == AF_INET; });
  }
  return {};
}

}  // namespace

// --- Addr -----------------------------------------------------------------

Addr Addr::from_sockaddr(const sockaddr* sa, socklen_t len) {
  Addr a;
  if (sa == nullptr || len < offsetof(sockaddr, sa_family) + sizeof(sa->sa_family)) return a;
  socklen_t want = len;
  if (sa->sa_family == AF_INET) {
    if (len < sizeof(sockaddr_in)) return a;
    want = sizeof(sockaddr_in);
  } else if (sa->sa_family == AF_INET6) {
    if (len < sizeof(sockaddr_in6)) return a;
    want = sizeof(sockaddr_in6);
  } else if (want > sizeof(a.ss_)) {
    want = sizeof(a.ss_);
  }
  std::memcpy(&a.ss_, sa, want);
  a.len_ = want;
  return a;
}

Result<Addr> Addr::parse(std::string_view hostport) {
  auto fail = [&](const char* why) {
    Error e = bad_address(hostport, why);
    return Result<Addr>{Addr{}, Error(e.kind(), "parse").with_context(e.context())};
  };
  std::string_view host, port_s;
  if (const char* why = split_host_port(hostport, &host, &port_s)) return fail(why);
  uint16_t port = 0;
  if (const char* why = parse_port(port_s, &port)) return fail(why);
  if (host.empty()) return {unspecified(detail::Family::v4, port), {}};
  Addr a;
  bool is_ip = false;
  if (const char* why = parse_ip(host, port, &a, &is_ip)) return fail(why);
  if (!is_ip) return fail("not an IP literal (names need net::resolve)");
  return {a, {}};
}

uint16_t Addr::port() const {
  switch (family()) {
    case AF_INET:
      return ntohs(reinterpret_cast<const sockaddr_in*>(&ss_)->sin_port);
    case AF_INET6:
      return ntohs(reinterpret_cast<const sockaddr_in6*>(&ss_)->sin6_port);
    default:
      return 0;
  }
}

std::string Addr::ip() const {
  char buf[INET6_ADDRSTRLEN];
  if (family() == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss_);
    if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) == nullptr) return {};
    return buf;
  }
  if (family() == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss_);
    if (::inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf) == nullptr) return {};
    std::string s = buf;
    if (sin6->sin6_scope_id != 0) {
      // The zone as Go prints it: the interface name, else its index.
      char ifname[IF_NAMESIZE];
      s += '%';
      if (::if_indextoname(sin6->sin6_scope_id, ifname) != nullptr) {
        s += ifname;
      } else {
        s += std::to_string(sin6->sin6_scope_id);
      }
    }
    return s;
  }
  return {};
}

std::string Addr::to_string() const {
  if (family() == AF_INET) return ip() + ":" + std::to_string(port());
  if (family() == AF_INET6) return "[" + ip() + "]:" + std::to_string(port());
  return {};
}

bool Addr::operator==(const Addr& o) const {
  if (family() != o.family()) return false;
  if (family() == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss_);
    const auto* b = reinterpret_cast<const sockaddr_in*>(&o.ss_);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (family() == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss_);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(&o.ss_);
    return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return len_ == o.len_ && std::memcmp(&ss_, &o.ss_, len_) == 0;
}

// --- resolve --------------------------------------------------------------

namespace detail {

bool parse_network(std::string_view network, Family* f) {
  if (network == "tcp") {
    *f = Family::any;
  } else if (network == "tcp4") {
    *f = Family::v4;
  } else if (network == "tcp6") {
    *f = Family::v6;
  } else {
    return false;
  }
  return true;
}

Error resolve_all(Family f, std::string_view hostport, std::vector<Addr>* out) {
  out->clear();
  std::string_view host, port_s;
  if (const char* why = split_host_port(hostport, &host, &port_s)) {
    return bad_address(hostport, why);
  }
  uint16_t port = 0;
  if (const char* why = parse_port(port_s, &port)) return bad_address(hostport, why);
  if (host.empty()) {
    out->push_back(unspecified(f, port));
    return {};
  }
  Addr a;
  bool is_ip = false;
  if (const char* why = parse_ip(host, port, &a, &is_ip)) return bad_address(hostport, why);
  if (is_ip) {
    if (!family_allows(f, a)) {
      return bad_address(hostport, f == Family::v4 ? "not an IPv4 address (network is tcp4)"
                                                   : "not an IPv6 address (network is tcp6)");
    }
    out->push_back(a);
    return {};
  }
  if (is_localhost(host)) {
    if (f != Family::v6) {
      in_addr lo{};
      lo.s_addr = htonl(INADDR_LOOPBACK);
      out->push_back(make_v4(lo, port));
    }
    if (f != Family::v4) out->push_back(make_v6(in6addr_loopback, 0, port));
    return {};
  }
  return lookup(f, host, port, hostport, out);
}

}  // namespace detail

Result<Addr> resolve(std::string_view network, std::string_view hostport) {
  detail::Family f{};
  if (!detail::parse_network(network, &f)) {
    return {Addr{},
            Error(Errc::invalid, "resolve")
                .with_context(detail::net_context(network, hostport) + ": unknown network")};
  }
  std::vector<Addr> addrs;
  if (Error e = detail::resolve_all(f, hostport, &addrs)) {
    return {Addr{}, Error(e.kind(), "resolve", e.sys_errno()).with_context(e.context())};
  }
  return {addrs.front(), {}};
}

Result<Addr> resolve(std::string_view hostport) {
  return resolve("tcp", hostport);
}

}  // namespace mnp::net
