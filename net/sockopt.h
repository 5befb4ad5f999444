// net/sockopt.h — the platform edge of net/: opening a socket and the socket
// options whose names differ between kernels. Private to net/.
//
// Everything here works on a raw fd that no FD owns yet (between socket(2) and
// FD::init), or goes through FD::setsockopt once one does. The #ifdefs live in
// sockopt.cpp, one whole function per platform, never inside a body.
#pragma once

#include <sys/socket.h>

#include <cstdint>

#include "mnp/error.h"
#include "mnp/poll.h"

namespace mnp::net::detail {

// socket(family, SOCK_STREAM) that is non-blocking and close-on-exec from the
// start (SOCK_NONBLOCK|SOCK_CLOEXEC, or fcntl where those flags do not exist),
// with SO_NOSIGPIPE set where the platform has it (macOS, BSD). Returns the fd,
// or -1 with *err set to the errno.
int open_stream_socket(int family, int* err);

// Per-socket settings that must be made on the raw fd before bind(2).
// Each returns 0 or the errno of the failed setsockopt.
int set_int_option(int fd, int level, int name, int value);

// SO_REUSEPORT (Linux 3.9+, BSD, macOS): several listeners on one port; 0 or
// the errno, ENOPROTOOPT where the platform lacks it.
int set_reuse_port(int fd);

// SO_NOSIGPIPE on a socket the kernel made for us (accept(2)); a no-op where
// the platform has MSG_NOSIGNAL instead.
int set_no_sigpipe(int fd);

// IP_LOCAL_PORT_RANGE (Linux 6.3+): the ephemeral ports this socket may pick
// from when it binds implicitly at connect. 0 or the errno; ENOPROTOOPT on
// older kernels and on other platforms.
int set_local_port_range(int fd, uint16_t lo, uint16_t hi);

// The keep-alive idle time and probe interval, in whole seconds
// (TCP_KEEPIDLE/TCP_KEEPINTVL on Linux, TCP_KEEPALIVE/TCP_KEEPINTVL on macOS).
Error set_keep_alive_period(FD& fd, int seconds);

// close(2) for an fd that no FD owns yet. Not retried on EINTR: Linux releases
// the fd number even then, and retrying could close someone else's new fd.
void close_raw(int fd);

}  // namespace mnp::net::detail
