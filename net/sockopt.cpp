// The platform edge of net/: socket creation and the options whose names
// differ between kernels. One definition per platform for each function, so
// the rest of net/ reads the same everywhere (libuv's thin core, thick edges).
#include "sockopt.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>

#include "trace/counters.h"

namespace mnp::net::detail {

int set_int_option(int fd, int level, int name, int value) {
  rt::stat_add(Stat::sys_sockopt);
  if (::setsockopt(fd, level, name, &value, sizeof value) != 0) return errno;
  return 0;
}

void close_raw(int fd) {
  rt::stat_add(Stat::sys_close);
  // close(2): "a retry after EINTR is a mistake" on Linux (the fd is already
  // released). The result carries nothing a caller could act on here.
  (void)::close(fd);
}

// --- socket(2) ------------------------------------------------------------

#if defined(SOCK_NONBLOCK) && defined(SOCK_CLOEXEC)
// Linux 2.6.27+, FreeBSD 10+: both flags in one call, so no window in which a
// concurrent fork+exec inherits the fd.
static int open_raw(int family, int* err) {
  rt::stat_add(Stat::sys_socket);
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) *err = errno;
  return fd;
}
#else
// macOS: no SOCK_NONBLOCK/SOCK_CLOEXEC; set both with fcntl. A fork+exec on
// another thread between socket and F_SETFD could inherit the fd (Go closes
// that window with syscall.ForkLock; this runtime never forks).
static int open_raw(int family, int* err) {
  rt::stat_add(Stat::sys_socket);
  int fd = ::socket(family, SOCK_STREAM, IPPROTO_TCP);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
      ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    *err = errno;
    close_raw(fd);
    return -1;
  }
  return fd;
}
#endif

#if defined(SO_NOSIGPIPE)
// macOS, BSD: no MSG_NOSIGNAL on send(2), so the socket itself must not raise
// SIGPIPE (setsockopt(2), SO_NOSIGPIPE).
int set_no_sigpipe(int fd) {
  return set_int_option(fd, SOL_SOCKET, SO_NOSIGPIPE, 1);
}
#else
// Linux: the FD writes with MSG_NOSIGNAL, and mnp::run ignores SIGPIPE.
int set_no_sigpipe(int) {
  return 0;
}
#endif

int open_stream_socket(int family, int* err) {
  int fd = open_raw(family, err);
  if (fd < 0) return -1;
  if (int e = set_no_sigpipe(fd); e != 0) {
    *err = e;
    close_raw(fd);
    return -1;
  }
  return fd;
}

#if defined(SO_REUSEPORT)
int set_reuse_port(int fd) {
  return set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1);
}
#else
int set_reuse_port(int) {
  return ENOPROTOOPT;
}
#endif

// --- IP_LOCAL_PORT_RANGE ----------------------------------------------------

#if defined(__linux__)
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51  // <linux/in.h>, Linux 6.3; glibc's headers may lack it
#endif
// The value is one u32: the low port in the low 16 bits, the high port in the
// high 16 (ip(7), IP_LOCAL_PORT_RANGE). A level-SOL_IP option, accepted on
// IPv6 TCP sockets too.
int set_local_port_range(int fd, uint16_t lo, uint16_t hi) {
  uint32_t v = (static_cast<uint32_t>(hi) << 16) | lo;
  rt::stat_add(Stat::sys_sockopt);
  if (::setsockopt(fd, IPPROTO_IP, IP_LOCAL_PORT_RANGE, &v, sizeof v) != 0) return errno;
  return 0;
}
#else
int set_local_port_range(int, uint16_t, uint16_t) {
  return ENOPROTOOPT;
}
#endif

// --- keep-alive period ------------------------------------------------------

#if defined(TCP_KEEPIDLE)
// Linux, FreeBSD: tcp(7) TCP_KEEPIDLE (idle time before the first probe) and
// TCP_KEEPINTVL (between probes). Go sets both to the one period.
Error set_keep_alive_period(FD& fd, int seconds) {
  if (Error e = fd.setsockopt(IPPROTO_TCP, TCP_KEEPIDLE, &seconds, sizeof seconds)) return e;
  return fd.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &seconds, sizeof seconds);
}
#elif defined(TCP_KEEPALIVE)
// macOS: the idle time is TCP_KEEPALIVE (tcp(4)); TCP_KEEPINTVL since 10.8.
Error set_keep_alive_period(FD& fd, int seconds) {
  if (Error e = fd.setsockopt(IPPROTO_TCP, TCP_KEEPALIVE, &seconds, sizeof seconds)) return e;
  return fd.setsockopt(IPPROTO_TCP, TCP_KEEPINTVL, &seconds, sizeof seconds);
}
#else
Error set_keep_alive_period(FD&, int) {
  return Error(Errc::not_supported, "setsockopt");
}
#endif

}  // namespace mnp::net::detail
