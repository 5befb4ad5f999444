// runtime/sys — every syscall the runtime makes on a served fd goes through
// here: one place that counts them (mnp/stats.h) and, in the tests, one
// place to inject faults.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "sys/fault.h"
#include "trace/counters.h"

namespace mnp::rt::sys {

// Each wrapper that a test may make fail (sys/fault.h) first asks
// fault_on(): one relaxed load and a branch predicted not taken.

// Counts a syscall of kind s, and one more EAGAIN if it returned that.
inline long counted(Stat s, long r) {
  stat_add(s);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) stat_add(Stat::eagain);
  return r;
}

inline ssize_t read(int fd, void* b, size_t n) {
  if (fault_on() && fault_hit(FaultOp::read, fd, &n)) return counted(Stat::sys_read, -1);
  return counted(Stat::sys_read, ::read(fd, b, n));
}
inline ssize_t write(int fd, const void* b, size_t n) {
  if (fault_on() && fault_hit(FaultOp::write, fd, &n)) return counted(Stat::sys_write, -1);
  return counted(Stat::sys_write, ::write(fd, b, n));
}
inline ssize_t recv(int fd, void* b, size_t n, int flags) {
  if (fault_on() && fault_hit(FaultOp::read, fd, &n)) return counted(Stat::sys_read, -1);
  return counted(Stat::sys_read, ::recv(fd, b, n, flags));
}
inline ssize_t send(int fd, const void* b, size_t n, int flags) {
  if (fault_on() && fault_hit(FaultOp::write, fd, &n)) return counted(Stat::sys_write, -1);
  return counted(Stat::sys_write, ::send(fd, b, n, flags));
}
inline int accept(int fd, sockaddr* sa, socklen_t* len) {
  if (fault_on() && fault_hit(FaultOp::accept, fd, nullptr))
    return static_cast<int>(counted(Stat::sys_accept, -1));
#if defined(__linux__) || defined(__FreeBSD__)
  return static_cast<int>(
      counted(Stat::sys_accept, ::accept4(fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC)));
#else
  int nfd = static_cast<int>(counted(Stat::sys_accept, ::accept(fd, sa, len)));
  if (nfd >= 0) {
    // macOS has no accept4: set the flags by hand (no fork can happen in
    // between inside this runtime's own threads).
    if (::fcntl(nfd, F_SETFD, FD_CLOEXEC) < 0 ||
        ::fcntl(nfd, F_SETFL, ::fcntl(nfd, F_GETFL) | O_NONBLOCK) < 0) {
      int e = errno;
      ::close(nfd);
      errno = e;
      return -1;
    }
  }
  return nfd;
#endif
}
inline int connect(int fd, const sockaddr* sa, socklen_t len) {
  if (fault_on() && fault_hit(FaultOp::connect, fd, nullptr))
    return static_cast<int>(counted(Stat::sys_connect, -1));
  return static_cast<int>(counted(Stat::sys_connect, ::connect(fd, sa, len)));
}
inline int close(int fd) {
  if (fault_on() && fault_hit(FaultOp::close, fd, nullptr))
    return static_cast<int>(counted(Stat::sys_close, -1));
  return static_cast<int>(counted(Stat::sys_close, ::close(fd)));
}
inline int shutdown(int fd, int how) {
  return static_cast<int>(counted(Stat::sys_shutdown, ::shutdown(fd, how)));
}
inline int setsockopt(int fd, int level, int name, const void* v, socklen_t len) {
  return static_cast<int>(counted(Stat::sys_sockopt, ::setsockopt(fd, level, name, v, len)));
}
inline int getsockopt(int fd, int level, int name, void* v, socklen_t* len) {
  return static_cast<int>(counted(Stat::sys_sockopt, ::getsockopt(fd, level, name, v, len)));
}

}  // namespace mnp::rt::sys
