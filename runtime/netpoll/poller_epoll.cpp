// runtime/netpoll/poller_epoll — Linux readiness through epoll (Go's netpoll_epoll.go).
//
// Each fd is registered once, at open, for EPOLLIN | EPOLLOUT | EPOLLRDHUP
// with EPOLLET: the kernel reports each *change* to ready, and the pollDesc
// remembers it (pdReady) until a G consumes it. No re-arming per operation,
// so a read that finds data costs one syscall, and a read that must wait
// costs a read, a share of one epoll_wait, and a read.
//
// The event's 64-bit data carries the pollDesc's index and the fdseq it was
// registered with: an event that was already queued for an fd that has since
// been closed (and its number reused) names an old fdseq and is dropped.
//
// Wake-up (Go's netpollBreak): an eventfd in the same epoll set. Writes are
// coalesced by wake_sig: many wakers, one write, until the poller reads it.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "netpoll/netpoll.h"
#include "netpoll/poller.h"
#include "sys/sys.h"

namespace mnp::rt {

namespace {

constexpr uint32_t kWakeIndex = 0xFFFFFFFFu;

uint64_t tag(uint32_t index, uint32_t seq) {
  return (static_cast<uint64_t>(seq) << 32) | index;
}

class EpollPoller final : public Poller {
 public:
  EpollPoller(int epfd, int evfd) : epfd_(epfd), evfd_(evfd) {}
  ~EpollPoller() override {
    ::close(evfd_);
    ::close(epfd_);
  }

  const char* name() const override { return "epoll"; }

  int open(int fd, PollDesc* pd) override {
    epoll_event ev{};
    // EPOLLRDHUP: since Linux 2.6.17. It reports the peer's FIN (half-close)
    // as read readiness; the read then returns EOF. It is *not* a full
    // hang-up: writes may still work (CONFORMANCE 31, mio#933).
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = tag(pd->index, pd->fdseq.load(std::memory_order_acquire));
    stat_add(Stat::sys_poll_ctl);
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) return errno;
    return 0;
  }

  void close(int fd, PollDesc*) override {
    epoll_event ev{};  // non-null for kernels before 2.6.9
    stat_add(Stat::sys_poll_ctl);
    if (epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, &ev) < 0 && errno != ENOENT && errno != EBADF)
      std::fprintf(stderr, "mnp: epoll_ctl(DEL, fd %d): %s\n", fd, std::strerror(errno));
  }

  G* poll(int64_t delay) override {
    // epoll_wait counts milliseconds: round up, so that a timer is never
    // found not yet due when the poller wakes for it.
    int ms;
    if (delay < 0)
      ms = -1;
    else if (delay == 0)
      ms = 0;
    else if (delay < 1000000000000LL)
      ms = static_cast<int>((delay + 999999) / 1000000);
    else
      ms = 1000000;
    epoll_event events[128];
    int n;
    for (;;) {
      stat_add(Stat::sys_poll_wait);
      n = epoll_wait(epfd_, events, 128, ms);
      if (n >= 0) break;
      if (errno != EINTR) {
        std::fprintf(stderr, "mnp: fatal error: epoll_wait: %s\n", std::strerror(errno));
        std::abort();
      }
      // Interrupted: a blocking poll returns so the scheduler recomputes
      // its timeout; a non-blocking one just retries.
      if (ms > 0) return nullptr;
    }
    G* list = nullptr;
    for (int i = 0; i < n; i++) {
      const epoll_event& ev = events[i];
      auto index = static_cast<uint32_t>(ev.data.u64);
      auto seq = static_cast<uint32_t>(ev.data.u64 >> 32);
      if (index == kWakeIndex) {
        // Only the blocking poller consumes the wake-up; a non-blocking
        // poll leaves it for that one.
        if (delay != 0) {
          uint64_t v;
          ssize_t r = ::read(evfd_, &v, sizeof v);
          if (r < 0 && errno != EAGAIN && errno != EINTR) {
            std::fprintf(stderr, "mnp: fatal error: read(eventfd): %s\n", std::strerror(errno));
            std::abort();
          }
          wake_sig_.store(0, std::memory_order_release);
        }
        continue;
      }
      int mode = 0;
      if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) mode += 'r';
      if (ev.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) mode += 'w';
      if (mode == 0) continue;
      PollDesc* pd = pd_at(index);
      if (!pd || pd->fdseq.load(std::memory_order_acquire) != seq) continue;  // stale
      stat_add(Stat::poll_events);
      netpollready(&list, pd, mode);
    }
    return list;
  }

  void wake() override {
    uint32_t zero = 0;
    if (!wake_sig_.compare_exchange_strong(zero, 1, std::memory_order_acq_rel)) return;
    uint64_t one = 1;
    for (;;) {
      stat_add(Stat::sys_wake);
      ssize_t r = ::write(evfd_, &one, sizeof one);
      if (r == sizeof one) return;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return;  // the counter is full: a wake-up is pending
      std::fprintf(stderr, "mnp: fatal error: write(eventfd): %s\n", std::strerror(errno));
      std::abort();
    }
  }

 private:
  int epfd_;
  int evfd_;
  std::atomic<uint32_t> wake_sig_{0};
};

}  // namespace

Poller* make_epoll_poller(std::string* why) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    *why = std::string("epoll_create1: ") + std::strerror(errno);
    return nullptr;
  }
  int evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (evfd < 0) {
    *why = std::string("eventfd: ") + std::strerror(errno);
    ::close(epfd);
    return nullptr;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = tag(kWakeIndex, 0);
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev) < 0) {
    *why = std::string("epoll_ctl(eventfd): ") + std::strerror(errno);
    ::close(evfd);
    ::close(epfd);
    return nullptr;
  }
  return new EpollPoller(epfd, evfd);
}

}  // namespace mnp::rt
