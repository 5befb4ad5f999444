// Conn: a TCP connection on an FD (Go's net.TCPConn over internal/poll.FD).
//
// Reads and writes go straight to the FD, which parks the G on EAGAIN; this
// file only adds what Go's net.OpError adds: the operation and the two
// addresses, on error paths only ("read tcp 127.0.0.1:9000->127.0.0.1:41234:
// connection reset by peer"). End of file stays a bare Errc::eof, as io.EOF
// does, and costs no allocation.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <chrono>

#include "internal.h"
#include "mnp/net.h"
#include "sockopt.h"

namespace mnp::net {
namespace {

// "tcp 127.0.0.1:9000->127.0.0.1:41234", Go's OpError Source->Addr.
std::string conn_context(const Conn& c) {
  return "tcp " + c.local_addr().to_string() + "->" + c.remote_addr().to_string();
}

// The error with this Conn's op and addresses, keeping its kind and errno.
Error op_error(const char* op, const Error& e, const Conn& c) {
  Error out(e.kind(), op, e.sys_errno());
  std::string ctx = conn_context(c);
  if (!e.context().empty()) ctx += ": " + e.context();
  out.with_context(std::move(ctx));
  return out;
}

Error set_opt(Conn& c, const char* what, int level, int name, const void* v, socklen_t len) {
  Error e = c.fd().setsockopt(level, name, v, len);
  if (e) [[unlikely]] {
    Error out(e.kind(), "setsockopt", e.sys_errno());
    out.with_context(conn_context(c) + ": " + what);
    return out;
  }
  return {};
}

Error set_int(Conn& c, const char* what, int level, int name, int v) {
  return set_opt(c, what, level, name, &v, sizeof v);
}

}  // namespace

Conn::~Conn() {
  // The FD's own destructor would close too; closing here keeps the order
  // explicit (wake parked Gs, then release the fd). An error has nobody to go to.
  if (fd_.sysfd() >= 0) (void)fd_.close();
}

IOResult Conn::read(void* buf, size_t n) {
  IOResult r = fd_.read(buf, n);
  if (r.err && r.err.kind() != Errc::eof) [[unlikely]]
    r.err = op_error("read", r.err, *this);
  return r;
}

IOResult Conn::write(const void* buf, size_t n) {
  IOResult r = fd_.write(buf, n);
  if (r.err) [[unlikely]]
    r.err = op_error("write", r.err, *this);
  return r;
}

Error Conn::close() {
  Error e = fd_.close();
  if (e) return op_error("close", e, *this);
  return {};
}

Error Conn::close_write() {
  Error e = fd_.shutdown(SHUT_WR);
  if (e) return op_error("close_write", e, *this);
  return {};
}

Error Conn::close_read() {
  Error e = fd_.shutdown(SHUT_RD);
  if (e) return op_error("close_read", e, *this);
  return {};
}

void Conn::set_deadline(Deadline d) {
  fd_.set_deadline(d);
}
void Conn::set_read_deadline(Deadline d) {
  fd_.set_read_deadline(d);
}
void Conn::set_write_deadline(Deadline d) {
  fd_.set_write_deadline(d);
}

Error Conn::set_no_delay(bool on) {
  return set_int(*this, "TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

// Go's SetKeepAlive + SetKeepAlivePeriod: a period below one second rounds up
// to one (the kernel counts whole seconds); zero keeps the kernel's default
// (tcp_keepalive_time, 2 hours on Linux).
Error Conn::set_keep_alive(bool on, Duration period) {
  if (Error e = set_int(*this, "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, on ? 1 : 0)) return e;
  if (!on || period <= Duration::zero()) return {};
  auto secs = std::chrono::ceil<std::chrono::seconds>(period).count();
  int s = secs > INT32_MAX ? INT32_MAX : static_cast<int>(secs);
  if (Error e = detail::set_keep_alive_period(fd_, s)) {
    Error out(e.kind(), "setsockopt", e.sys_errno());
    out.with_context(conn_context(*this) + ": keep-alive period");
    return out;
  }
  return {};
}

// Go's SetLinger: sec < 0 restores the default (close returns at once, the
// kernel sends what is left in the background); sec == 0 discards unsent data
// and resets the connection on close; sec > 0 lets close linger that long.
Error Conn::set_linger(int seconds) {
  linger l{};
  l.l_onoff = seconds >= 0 ? 1 : 0;
  l.l_linger = seconds >= 0 ? seconds : 0;
  return set_opt(*this, "SO_LINGER", SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

Error Conn::set_read_buffer(int bytes) {
  if (bytes < 0) {
    return Error(Errc::invalid, "setsockopt")
        .with_context(conn_context(*this) + ": SO_RCVBUF: negative size");
  }
  return set_int(*this, "SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, bytes);
}

Error Conn::set_write_buffer(int bytes) {
  if (bytes < 0) {
    return Error(Errc::invalid, "setsockopt")
        .with_context(conn_context(*this) + ": SO_SNDBUF: negative size");
  }
  return set_int(*this, "SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, bytes);
}

}  // namespace mnp::net
