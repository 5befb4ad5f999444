// net/internal.h — what the files of net/ share and nobody else sees: the
// network names, address resolution with a family filter, and the keys to the
// private parts of Conn and Listener.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mnp/error.h"
#include "mnp/net.h"

namespace mnp::net {

// The friends declared in net.h: dial/listen fill in what they learned.
struct ConnAccess {
  static void set_addrs(Conn& c, const Addr& local, const Addr& remote) {
    c.local_ = local;
    c.remote_ = remote;
  }
};
struct ListenerAccess {
  static void set_addr(Listener& l, const Addr& a) { l.addr_ = a; }
};

namespace detail {

// Which address families a network name allows.
enum class Family { any, v4, v6 };

// "tcp" -> any, "tcp4" -> v4, "tcp6" -> v6; false for anything else.
bool parse_network(std::string_view network, Family* f);

// Every address hostport names that the family allows, in the order to try
// them: IPv4 before IPv6 for Family::any (so "localhost" is 127.0.0.1 first).
// An empty host is the unspecified address of the family (0.0.0.0 unless v6).
// Literals and "localhost" are answered at once; other names by getaddrinfo
// inside mnp::blocking. On error, the Error has no op and its context starts
// with hostport followed by the reason ("1.2.3.4:99999: port out of range");
// each public caller adds its own op ("dial", "listen", "resolve").
Error resolve_all(Family f, std::string_view hostport, std::vector<Addr>* out);

// "tcp 127.0.0.1:9000": the context every listen/dial error carries.
inline std::string net_context(std::string_view network, std::string_view address) {
  std::string s;
  s.reserve(network.size() + 1 + address.size());
  s.append(network).append(" ").append(address);
  return s;
}

}  // namespace detail
}  // namespace mnp::net
