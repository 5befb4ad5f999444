// bench/peers/epoll_echo.c — the readiness baseline of the shoot-out: the
// least a readiness-based echo server can do, written plainly in C.
//
// One thread, one epoll set. Every socket is non-blocking and registered once,
// edge-triggered for read and write (EPOLLIN | EPOLLOUT | EPOLLRDHUP |
// EPOLLET), as mini-netpoll's epoll backend and Go's netpoll register theirs,
// so no epoll_ctl happens per message. On a readable edge: read into one
// shared 16 KiB buffer, write it back, until a read comes back short (the
// socket is drained: a later arrival raises a new edge, so the EAGAIN read
// that would confirm it can be skipped). If the write stops short, the rest
// is kept per connection and reading pauses until a writable edge flushes it.
// That is the syscall floor for ping-pong: one read and one write per message,
// plus an epoll_wait shared by every connection that was ready at once.
//
//   epoll-echo [--addr HOST:PORT]   (default 127.0.0.1:0: a free port)
// Prints "epoll-echo: listening on ADDR (pid N)"; SIGTERM/SIGINT end it.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // accept4, SOCK_NONBLOCK (the build defines it too)
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kBufSize = 16 * 1024 };

struct conn {
  int fd;
  char* pending;  // bytes read but not yet written back (rare: a full send buffer)
  size_t pending_len, pending_off;
};

static char g_buf[kBufSize];
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void conn_close(int epfd, struct conn* c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

// Writes p[0..n) out; keeps what the kernel does not take. False: the
// connection failed.
static bool conn_write(struct conn* c, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      // Send buffer full: keep the rest until EPOLLOUT.
      char* keep = malloc(n);
      if (!keep) return false;
      memcpy(keep, p, n);
      c->pending = keep;
      c->pending_len = n;
      c->pending_off = 0;
      return true;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

// Flushes what a full send buffer held back. False: the connection failed.
static bool conn_flush(struct conn* c) {
  while (c->pending_off < c->pending_len) {
    ssize_t w =
        send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;  // still full: wait for the next edge
    }
    c->pending_off += (size_t)w;
  }
  free(c->pending);
  c->pending = NULL;
  c->pending_len = c->pending_off = 0;
  return true;
}

// Echoes until the socket is drained or the send buffer is full. False: close.
static bool conn_echo(struct conn* c) {
  while (c->pending == NULL) {
    ssize_t n = recv(c->fd, g_buf, sizeof g_buf, 0);
    if (n == 0) return false;  // EOF
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    if (!conn_write(c, g_buf, (size_t)n)) return false;
    if ((size_t)n < sizeof g_buf) return true;  // drained (see the top of the file)
  }
  return true;
}

static void accept_all(int epfd, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) perror("epoll-echo: accept4");
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // as Go and mini-netpoll do
    struct conn* c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      perror("epoll-echo: epoll_ctl");
      close(fd);
      free(c);
    }
    // Data may already be queued; the registration reports it as the first edge.
  }
}

int main(int argc, char** argv) {
  const char* addr = "127.0.0.1:0";
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "--addr") == 0 || strcmp(argv[i], "-addr") == 0) && i + 1 < argc) {
      addr = argv[++i];
    } else {
      fprintf(stderr, "usage: epoll-echo [--addr HOST:PORT]\n");
      return 2;
    }
  }
  const char* colon = strrchr(addr, ':');
  char host[64];
  if (!colon || (size_t)(colon - addr) >= sizeof host) {
    fprintf(stderr, "epoll-echo: --addr must be IPv4 HOST:PORT\n");
    return 2;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = 0;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "epoll-echo: bad IPv4 address '%s'\n", host);
    return 2;
  }

  struct rlimit rl;  // as Go does at start: the soft fd limit up to the hard one
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction act = {.sa_handler = on_signal};  // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || bind(lfd, (struct sockaddr*)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
    perror("epoll-echo: listen");
    return 1;
  }
  socklen_t len = sizeof sa;
  getsockname(lfd, (struct sockaddr*)&sa, &len);
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  static struct conn listener;  // data.ptr == &listener marks the listening socket
  listener.fd = lfd;
  struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = &listener};
  if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0) {
    perror("epoll-echo: epoll");
    return 1;
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  printf("epoll-echo: listening on %s:%d (pid %d)\n", ip, ntohs(sa.sin_port), (int)getpid());
  fflush(stdout);

  struct epoll_event evs[512];
  while (!g_stop) {
    int n = epoll_wait(epfd, evs, 512, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll-echo: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      struct conn* c = evs[i].data.ptr;
      if (c == &listener) {
        accept_all(epfd, lfd);
        continue;
      }
      uint32_t e = evs[i].events;
      bool ok = true;
      if (c->pending && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))) ok = conn_flush(c);
      if (ok && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) ok = conn_echo(c);
      if (!ok) conn_close(epfd, c);
    }
  }
  printf("epoll-echo: exiting\n");
  return 0;
}
