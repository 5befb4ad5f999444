// listen, Listener::accept and dial: the lives of a socket before it is a Conn.
//
//   listen: resolve -> socket -> options -> bind -> listen(2) -> getsockname
//           -> FD::init(listener)
//   accept: FD::accept (parks until a peer arrives) -> getsockname
//           -> FD::init(stream) -> TCP_NODELAY
//   dial:   resolve -> for each address: socket -> [bind local]
//           -> [IP_LOCAL_PORT_RANGE] -> FD::init(stream) -> write deadline
//           -> FD::connect (parks until the handshake ends) -> TCP_NODELAY
//
// Until FD::init takes it, a raw fd belongs to the code here and every error
// path closes it; after, the Conn or Listener (and its FD) does. Errors carry
// the op and the address as Go's net.OpError does:
// "dial tcp 127.0.0.1:9: connection refused".
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "internal.h"
#include "mnp/net.h"
#include "sockopt.h"

namespace mnp::net {
namespace {

// The error with a new op and context, keeping its kind and errno.
Error reop(const Error& e, const char* op, std::string ctx) {
  Error out(e.kind(), op, e.sys_errno());
  if (!e.context().empty()) ctx += ": " + e.context();
  out.with_context(std::move(ctx));
  return out;
}

Error sys_error(const char* op, int err, std::string ctx) {
  Error e = Error::from_errno(op, err);
  e.with_context(std::move(ctx));
  return e;
}

// The address the kernel bound fd to.
int local_name(int fd, Addr* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return errno;
  *out = Addr::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
  return 0;
}

// Resolution for listen and dial: the addresses to try, or the error with the
// op, network and address ("listen tcp 1.2.3.4:99999: port out of range").
Error resolve_for(const char* op, std::string_view network, std::string_view address,
                  std::vector<Addr>* out) {
  detail::Family f{};
  if (!detail::parse_network(network, &f)) {
    return Error(Errc::invalid, op)
        .with_context(detail::net_context(network, address) +
                      ": unknown network (tcp, tcp4 or tcp6)");
  }
  if (Error e = detail::resolve_all(f, address, out)) {
    // e's context starts with the address already.
    Error out_err(e.kind(), op, e.sys_errno());
    out_err.with_context(std::string(network) + " " + e.context());
    return out_err;
  }
  return {};
}

using ConnResult = Result<std::unique_ptr<Conn>>;

// One connection attempt to one address, within the deadline dl (none if
// Deadline{}).
ConnResult dial_one(std::string_view network, const Addr& raddr, const DialConfig& cfg,
                    Deadline dl) {
  std::string ctx =
      cfg.local.len() != 0
          ? detail::net_context(network, cfg.local.to_string() + "->" + raddr.to_string())
          : detail::net_context(network, raddr.to_string());
  // A deadline already past fails at once, without a syscall (CONFORMANCE 9).
  if (dl != Deadline{} && Clock::now() >= dl) {
    return {nullptr, Error(Errc::timeout, "dial").with_context(ctx)};
  }
  if (cfg.local.len() != 0 && cfg.local.family() != raddr.family()) {
    return {nullptr, Error(Errc::invalid, "dial")
                         .with_context(ctx + ": local and remote address families differ")};
  }

  int err = 0;
  int fd = detail::open_stream_socket(raddr.family(), &err);
  if (fd < 0) return {nullptr, sys_error("dial", err, ctx + ": socket")};
  if (cfg.local.len() != 0 && ::bind(fd, cfg.local.sockaddr_ptr(), cfg.local.len()) != 0) {
    err = errno;
    detail::close_raw(fd);
    return {nullptr, sys_error("dial", err, ctx + ": bind")};
  }
  if (cfg.local_port_lo != 0 || cfg.local_port_hi != 0) {
    // Asked for and not available (Linux < 6.3, macOS) is an error: the caller
    // relies on the range (the TIME_WAIT demo would exhaust the machine's).
    err = detail::set_local_port_range(fd, cfg.local_port_lo, cfg.local_port_hi);
    if (err != 0) {
      detail::close_raw(fd);
      return {nullptr, sys_error("dial", err, ctx + ": IP_LOCAL_PORT_RANGE")};
    }
  }

  auto c = std::make_unique<Conn>();
  if (Error e = c->fd().init(fd, FD::Kind::stream)) return {nullptr, reop(e, "dial", ctx)};
  // The connect waits on the write side (Go's fd.connect waits for
  // writability), so the write deadline bounds it; cleared once connected.
  if (dl != Deadline{}) c->fd().set_write_deadline(dl);
  if (Error e = c->fd().connect(raddr.sockaddr_ptr(), raddr.len())) {
    return {nullptr, reop(e, "dial", ctx)};  // ~Conn closes the fd
  }
  if (dl != Deadline{}) c->fd().set_write_deadline(Deadline{});

  Addr laddr;
  if (int e = local_name(c->sysfd(), &laddr); e != 0) {
    return {nullptr, sys_error("dial", e, ctx + ": getsockname")};
  }
  ConnAccess::set_addrs(*c, laddr, raddr);
  // Go turns Nagle off on every TCP conn (newTCPConn) and ignores a failure:
  // the conn works either way.
  (void)c->set_no_delay(true);
  return {std::move(c), {}};
}

}  // namespace

// --- listen -----------------------------------------------------------------

Result<std::unique_ptr<Listener>> listen(std::string_view network, std::string_view address,
                                         const ListenConfig& cfg) {
  std::vector<Addr> addrs;
  if (Error e = resolve_for("listen", network, address, &addrs)) return {nullptr, e};
  // A name with several addresses listens on the first, as Go does.
  const Addr& a = addrs.front();
  std::string ctx = detail::net_context(network, a.to_string());

  int err = 0;
  int fd = detail::open_stream_socket(a.family(), &err);
  if (fd < 0) return {nullptr, sys_error("listen", err, ctx)};
  auto fail = [&](int e) -> Result<std::unique_ptr<Listener>> {
    detail::close_raw(fd);
    return {nullptr, sys_error("listen", e, ctx)};
  };
  // SO_REUSEADDR: rebinding a port whose old connections sit in TIME_WAIT.
  if (cfg.reuse_addr && (err = detail::set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)) != 0) {
    return fail(err);
  }
  if (cfg.reuse_port && (err = detail::set_reuse_port(fd)) != 0) return fail(err);
  // An IPv6 socket serves IPv6 only (ipv6(7), IPV6_V6ONLY): "[::]:80" does not
  // also take IPv4 connections, unlike Go's dual-stack "tcp" listener; listen
  // on ":80" for IPv4.
  if (a.is_ipv6() && (err = detail::set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) != 0) {
    return fail(err);
  }
  if (::bind(fd, a.sockaddr_ptr(), a.len()) != 0) return fail(errno);
  // The kernel caps the backlog at net.core.somaxconn.
  if (::listen(fd, cfg.backlog > 0 ? cfg.backlog : SOMAXCONN) != 0) return fail(errno);
  Addr bound;  // the real port when port 0 was asked for
  if ((err = local_name(fd, &bound)) != 0) return fail(err);

  auto ln = std::make_unique<Listener>();
  if (Error e = ln->fd().init(fd, FD::Kind::listener)) return {nullptr, reop(e, "listen", ctx)};
  ListenerAccess::set_addr(*ln, bound);
  return {std::move(ln), {}};
}

// --- Listener ---------------------------------------------------------------

Listener::~Listener() {
  if (fd_.sysfd() >= 0) (void)fd_.close();
}

Result<std::unique_ptr<Conn>> Listener::accept() {
  for (;;) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    Result<int> r = fd_.accept(reinterpret_cast<sockaddr*>(&ss), &len);
    if (r.err) {
      // A connection reset while it waited in the queue: not this listener's
      // error; take the next one (Go's accept does the same).
      if (r.err.sys_errno() == ECONNABORTED) continue;
      // EMFILE/ENFILE come back at once as Errc::too_many_files; backing off
      // is the caller's choice (see net.h).
      return {nullptr, reop(r.err, "accept", "tcp " + addr_.to_string())};
    }
    int nfd = r.value;
    Addr remote = Addr::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
    Addr local;
    int err = local_name(nfd, &local);
    if (err == 0) err = detail::set_no_sigpipe(nfd);  // a no-op on Linux
    if (err != 0) {
      detail::close_raw(nfd);
      return {nullptr, sys_error("accept", err, "tcp " + addr_.to_string())};
    }
    auto c = std::make_unique<Conn>();
    if (Error e = c->fd().init(nfd, FD::Kind::stream)) {
      return {nullptr, reop(e, "accept", "tcp " + addr_.to_string())};
    }
    ConnAccess::set_addrs(*c, local, remote);
    (void)c->set_no_delay(true);  // as dial: Go's default, a failure ignored
    return {std::move(c), {}};
  }
}

Error Listener::close() {
  Error e = fd_.close();
  if (e) return reop(e, "close", "tcp " + addr_.to_string());
  return {};
}

// Accept waits for readability of the listening socket, so its deadline is
// the FD's read deadline.
void Listener::set_deadline(Deadline d) {
  fd_.set_read_deadline(d);
}

// --- dial -------------------------------------------------------------------

Result<std::unique_ptr<Conn>> dial(std::string_view network, std::string_view address,
                                   const DialConfig& cfg) {
  std::vector<Addr> addrs;
  if (Error e = resolve_for("dial", network, address, &addrs)) return {nullptr, e};

  // The earlier of now+timeout and cfg.deadline. A negative timeout is a
  // deadline already past, as in Go.
  Deadline dl = cfg.deadline;
  if (cfg.timeout != Duration::zero()) {
    Deadline t = Clock::now() + cfg.timeout;
    if (dl == Deadline{} || t < dl) dl = t;
  }

  // The addresses in order, the next only if the previous one failed for a
  // reason other than the deadline (which is shared: no time is left).
  // The first error is the one reported, as Go's dialSerial does.
  Error first;
  for (const Addr& a : addrs) {
    ConnResult r = dial_one(network, a, cfg, dl);
    if (!r.err) return r;
    if (!first) first = r.err;
    if (r.err == Errc::timeout) break;
  }
  return {nullptr, first};
}

}  // namespace mnp::net
