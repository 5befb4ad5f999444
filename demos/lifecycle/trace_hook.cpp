// demos/lifecycle/trace_hook.cpp — see trace_hook.h. Each hook records, then
// makes the real system call with syscall(2): no dlsym, no recursion (the
// recorder itself makes no system call and does not allocate).
#include "trace_hook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace trace_hook {
namespace {

struct Event {
  const char* name;
  int fd;
  long ret;
  int err;  // errno when ret < 0
  char detail[96];
};

constexpr int kMaxEvents = 256;
constexpr int kMaxFd = 65536;
Event g_events[kMaxEvents];
std::atomic<int> g_count{0};
std::atomic<bool> g_enabled{false};
std::atomic<bool> g_is_socket[kMaxFd];  // fds returned by socket/accept4, until closed

bool is_socket(int fd) {
  return fd >= 0 && fd < kMaxFd && g_is_socket[fd].load(std::memory_order_relaxed);
}
void mark_socket(int fd, bool on) {
  if (fd >= 0 && fd < kMaxFd) g_is_socket[fd].store(on, std::memory_order_relaxed);
}

void record(const char* name, int fd, long ret, int err, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
void record(const char* name, int fd, long ret, int err, const char* fmt, ...) {
  if (!g_enabled.load(std::memory_order_relaxed)) return;
  int i = g_count.fetch_add(1, std::memory_order_relaxed);
  if (i >= kMaxEvents) return;
  Event& e = g_events[i];
  e.name = name;
  e.fd = fd;
  e.ret = ret;
  e.err = err;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(e.detail, sizeof e.detail, fmt, ap);
  va_end(ap);
}

// "127.0.0.1:9000"
const char* addr_text(const sockaddr* sa, char* buf, size_t n) {
  if (sa == nullptr) return "?";
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    std::snprintf(buf, n, "%s:%u", ip, ntohs(in->sin_port));
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
    std::snprintf(buf, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
  } else {
    std::snprintf(buf, n, "family %d", sa->sa_family);
  }
  return buf;
}

const char* option_name(int level, int name) {
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_REUSEADDR:
        return "SO_REUSEADDR";
      case SO_REUSEPORT:
        return "SO_REUSEPORT";
      case SO_KEEPALIVE:
        return "SO_KEEPALIVE";
      case SO_SNDBUF:
        return "SO_SNDBUF";
      case SO_RCVBUF:
        return "SO_RCVBUF";
      case SO_LINGER:
        return "SO_LINGER";
      case SO_ERROR:
        return "SO_ERROR";
    }
  } else if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_NODELAY:
        return "TCP_NODELAY";
      case TCP_KEEPIDLE:
        return "TCP_KEEPIDLE";
      case TCP_KEEPINTVL:
        return "TCP_KEEPINTVL";
    }
  } else if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY) {
    return "IPV6_V6ONLY";
  } else if (level == IPPROTO_IP && name == 51) {
    return "IP_LOCAL_PORT_RANGE";
  }
  return "?";
}

}  // namespace

void enable() {
  g_enabled = true;
}
void clear() {
  g_count = 0;
}

void print(const char* prefix) {
  int n = g_count.load();
  if (n > kMaxEvents) n = kMaxEvents;
  for (int i = 0; i < n; i++) {
    const Event& e = g_events[i];
    char result[64];
    if (e.ret < 0) {
      std::snprintf(result, sizeof result, "-1 %s",
                    strerrorname_np(e.err) ? strerrorname_np(e.err) : "?");
    } else {
      std::snprintf(result, sizeof result, "%ld", e.ret);
    }
    std::printf("%s%-12s fd %-3d %-44s = %s\n", prefix, e.name, e.fd, e.detail, result);
  }
  if (g_count.load() > kMaxEvents) std::printf("%s... (more calls not kept)\n", prefix);
}

}  // namespace trace_hook

// --- the hooks: same names and types as libc's --------------------------------

using trace_hook::is_socket;
using trace_hook::mark_socket;
using trace_hook::record;

extern "C" {

int socket(int domain, int type, int protocol) noexcept {
  long r = syscall(SYS_socket, domain, type, protocol);
  int err = errno;
  if (r >= 0) mark_socket(static_cast<int>(r), true);
  record("socket", static_cast<int>(r), r, err, "(%s, SOCK_STREAM%s)",
         domain == AF_INET6  ? "AF_INET6"
         : domain == AF_INET ? "AF_INET"
                             : "?",
         (type & SOCK_NONBLOCK) ? "|SOCK_NONBLOCK" : "");
  errno = err;
  return static_cast<int>(r);
}

int bind(int fd, const sockaddr* sa, socklen_t len) noexcept {
  long r = syscall(SYS_bind, fd, sa, len);
  int err = errno;
  char a[64];
  record("bind", fd, r, err, "(%s)", trace_hook::addr_text(sa, a, sizeof a));
  errno = err;
  return static_cast<int>(r);
}

int listen(int fd, int backlog) noexcept {
  long r = syscall(SYS_listen, fd, backlog);
  int err = errno;
  record("listen", fd, r, err, "(backlog %d)", backlog);
  errno = err;
  return static_cast<int>(r);
}

int accept4(int fd, sockaddr* sa, socklen_t* len, int flags) {
  long r = syscall(SYS_accept4, fd, sa, len, flags);
  int err = errno;
  if (r >= 0) mark_socket(static_cast<int>(r), true);
  char a[64];
  if (r >= 0) {
    record("accept4", fd, r, err, "-> new fd %ld, peer %s", r,
           trace_hook::addr_text(sa, a, sizeof a));
  } else {
    record("accept4", fd, r, err, "%s", err == EAGAIN ? "(the accept queue is empty)" : "");
  }
  errno = err;
  return static_cast<int>(r);
}

int connect(int fd, const sockaddr* sa, socklen_t len) {
  long r = syscall(SYS_connect, fd, sa, len);
  int err = errno;
  char a[64];
  record("connect", fd, r, err, "(%s)", trace_hook::addr_text(sa, a, sizeof a));
  errno = err;
  return static_cast<int>(r);
}

int getsockname(int fd, sockaddr* sa, socklen_t* len) noexcept {
  long r = syscall(SYS_getsockname, fd, sa, len);
  int err = errno;
  char a[64];
  if (is_socket(fd)) {
    record("getsockname", fd, r, err, "-> %s",
           r == 0 ? trace_hook::addr_text(sa, a, sizeof a) : "?");
  }
  errno = err;
  return static_cast<int>(r);
}

int getsockopt(int fd, int level, int name, void* val, socklen_t* len) noexcept {
  long r = syscall(SYS_getsockopt, fd, level, name, val, len);
  int err = errno;
  if (is_socket(fd)) {
    record("getsockopt", fd, r, err, "(%s) -> %d", trace_hook::option_name(level, name),
           r == 0 && *len >= sizeof(int) ? *static_cast<int*>(val) : -1);
  }
  errno = err;
  return static_cast<int>(r);
}

int setsockopt(int fd, int level, int name, const void* val, socklen_t len) noexcept {
  long r = syscall(SYS_setsockopt, fd, level, name, val, len);
  int err = errno;
  if (is_socket(fd)) {
    record("setsockopt", fd, r, err, "(%s, %d)", trace_hook::option_name(level, name),
           len >= sizeof(int) ? *static_cast<const int*>(val) : -1);
  }
  errno = err;
  return static_cast<int>(r);
}

int shutdown(int fd, int how) noexcept {
  long r = syscall(SYS_shutdown, fd, how);
  int err = errno;
  record("shutdown", fd, r, err, "(%s)",
         how == SHUT_WR   ? "SHUT_WR"
         : how == SHUT_RD ? "SHUT_RD"
                          : "SHUT_RDWR");
  errno = err;
  return static_cast<int>(r);
}

int close(int fd) {
  bool sock = is_socket(fd);
  long r = syscall(SYS_close, fd);
  int err = errno;
  if (sock) {
    mark_socket(fd, false);
    record("close", fd, r, err, "%s", "");
  }
  errno = err;
  return static_cast<int>(r);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  long r = syscall(SYS_sendto, fd, buf, n, flags, nullptr, 0);
  int err = errno;
  if (is_socket(fd)) record("send", fd, r, err, "(%zu bytes)", n);
  errno = err;
  return r;
}

ssize_t read(int fd, void* buf, size_t n) {
  long r = syscall(SYS_read, fd, buf, n);
  int err = errno;
  if (is_socket(fd)) record("read", fd, r, err, r == 0 ? "(%zu bytes) -> EOF" : "(%zu bytes)", n);
  errno = err;
  return r;
}

int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) noexcept {
  long r = syscall(SYS_epoll_ctl, epfd, op, fd, ev);
  int err = errno;
  if (is_socket(fd)) {
    record("epoll_ctl", fd, r, err, "(%s on epoll fd %d)",
           op == EPOLL_CTL_ADD   ? "ADD"
           : op == EPOLL_CTL_DEL ? "DEL"
                                 : "MOD",
           epfd);
  }
  errno = err;
  return static_cast<int>(r);
}

}  // extern "C"
