// runtime/netpoll/poller_kqueue — macOS and BSD readiness through kqueue
// (Go's netpoll_kqueue.go).
//
// Each fd is registered once, at open, with two filters in one kevent call:
// EVFILT_READ and EVFILT_WRITE, both EV_ADD | EV_CLEAR. EV_CLEAR makes them
// edge-like (kqueue(2), EV_CLEAR: "after the event is retrieved by the user,
// its state is reset"): each new arrival of data or buffer space is reported
// once, and the pollDesc remembers it (pdReady) until a G consumes it. As
// with epoll, nothing is re-armed per operation.
//
// Hang-up: there is no hang-up filter; a filter sets EV_EOF in its flags
// when its direction is shut (kqueue(2), EVFILT_READ: "if the read direction
// of the socket has shutdown, then the filter also sets EV_EOF"; EVFILT_WRITE:
// "the filter will set EV_EOF when the reader disconnects"). EV_EOF is
// readiness, never an error of the wait: the retried syscall returns the EOF
// (0 bytes), the EPIPE or the ECONNRESET itself. Which Gs it wakes:
//
//     filter        flags            wakes
//     EVFILT_READ   -                reader
//     EVFILT_READ   EV_EOF           reader and writer  (a pipe's write end is
//                                    told of a closed read end only through
//                                    its read filter; Go does the same)
//     EVFILT_WRITE  -                writer
//     EVFILT_WRITE  EV_EOF           writer and reader  (the connection can no
//                                    longer send: reset, or closed)
//     any           EV_ERROR         reader and writer, and pollEventErr is set
//
// A woken G that finds nothing retries, gets EAGAIN and parks again; with
// EV_CLEAR no event repeats until something changes, so a peer's half-close
// (EVFILT_READ + EV_EOF) cannot make anyone spin (CONFORMANCE 31, mio#933).
//
// Tags: udata carries the pollDesc's index and the fdseq it was registered
// with, exactly as epoll's data.u64 does; an event queued for an fd that has
// since been closed (and its number reused) names an old fdseq and is dropped.
//
// Wake-up (Go's netpollBreak): an EVFILT_USER event, ident 0, added once
// without EV_CLEAR. wake() fires it with EV_ENABLE | NOTE_TRIGGER; it then
// stays triggered — every kevent call sees it — until the *blocking* poller
// turns it off with EV_DISABLE. Why not EV_CLEAR: poll(0) runs on several Ms
// at once, next to the blocking poll, and with EV_CLEAR whichever kevent call
// retrieved the trigger first would reset it: a non-blocking poll could eat
// the wake-up meant for the sleeping one. Here the non-blocking polls see it
// and leave it, as epoll's leave the eventfd unread. wake_sig_ coalesces
// wakers: one syscall until the blocking poller has taken the wake-up.
// (OpenBSD and NetBSD < 10 have no EVFILT_USER; Go falls back to a pipe
// there. This file does not, and says so at compile time.)
// <sys/types.h> first: older BSD <sys/event.h> headers expect it.
#include <sys/types.h>

#include <fcntl.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "netpoll/netpoll.h"
#include "netpoll/poller.h"

#if !defined(EVFILT_USER)
#error "poller_kqueue.cpp needs EVFILT_USER (macOS, FreeBSD, DragonFly, NetBSD >= 10)"
#endif

namespace mnp::rt {

namespace {

constexpr uintptr_t kWakeIdent = 0;  // the EVFILT_USER event's ident

static_assert(sizeof(uintptr_t) >= sizeof(uint64_t), "the tag must fit in udata");

uint64_t tag(uint32_t index, uint32_t seq) {
  return (static_cast<uint64_t>(seq) << 32) | index;
}

// udata is a void* on macOS and FreeBSD, an intptr_t on NetBSD before 10.
template <class U>
U to_udata(uint64_t t) {
  if constexpr (std::is_pointer_v<U>)
    return reinterpret_cast<U>(static_cast<uintptr_t>(t));
  else
    return static_cast<U>(t);
}
template <class U>
uint64_t from_udata(U u) {
  if constexpr (std::is_pointer_v<U>)
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(u));
  else
    return static_cast<uint64_t>(u);
}

// One change, written field by field: EV_SET's argument types differ between
// the systems (udata above), and `struct kevent` has more fields on some
// (FreeBSD's ext[]), which stay zero.
struct kevent change(uintptr_t ident, int filter, unsigned flags, unsigned fflags, uint64_t t) {
  struct kevent ev;
  std::memset(&ev, 0, sizeof ev);
  ev.ident = ident;
  ev.filter = static_cast<decltype(ev.filter)>(filter);
  ev.flags = static_cast<decltype(ev.flags)>(flags);
  ev.fflags = static_cast<decltype(ev.fflags)>(fflags);
  ev.udata = to_udata<decltype(ev.udata)>(t);
  return ev;
}

// Applies n changes (n <= 2) and returns the first errno among them that is
// not in `ok1`/`ok2`, or 0. EV_RECEIPT (kqueue(2): "useful for making bulk
// changes to a kqueue without draining any pending events"; it "forces
// EV_ERROR to always be returned", with the errno, or 0, in data) gives each
// change its own result, so one failing change neither hides nor stops the
// other, and an event list exactly as long as the change list leaves the
// pending readiness events where they are. Without EV_RECEIPT, kevent would
// stop at the first failing change and could hand back readiness events that
// nobody then delivers.
int apply(int kq, struct kevent* changes, int n, int ok1 = 0, int ok2 = 0) {
  struct kevent res[2];
  for (int i = 0; i < n; i++) changes[i].flags |= EV_RECEIPT;
  int got;
  for (;;) {
    stat_add(Stat::sys_poll_ctl);
    got = kevent(kq, changes, n, res, n, nullptr);
    if (got >= 0) break;
    if (errno != EINTR) return errno;
  }
  for (int i = 0; i < got; i++) {
    if (!(res[i].flags & EV_ERROR)) continue;  // cannot happen with EV_RECEIPT
    int e = static_cast<int>(res[i].data);
    if (e != 0 && e != ok1 && e != ok2) return e;
  }
  return 0;
}

[[noreturn]] void fatal(const char* what, int err) {
  std::fprintf(stderr, "mnp: fatal error: %s: %s\n", what, std::strerror(err));
  std::abort();
}

class KqueuePoller final : public Poller {
 public:
  explicit KqueuePoller(int kq) : kq_(kq) {}
  ~KqueuePoller() override {
    // Deleting the wake-up event first is not needed by a real kqueue (its
    // close drops every event); it lets the Linux test emulation
    // (tests/kqueue_emu), which cannot see the close, release its eventfd.
    struct kevent ev = change(kWakeIdent, EVFILT_USER, EV_DELETE, 0, 0);
    apply(kq_, &ev, 1);
    ::close(kq_);
  }

  const char* name() const override { return "kqueue"; }

  int open(int fd, PollDesc* pd) override {
    uint64_t t = tag(pd->index, pd->fdseq.load(std::memory_order_acquire));
    struct kevent ev[2] = {
        change(static_cast<uintptr_t>(fd), EVFILT_READ, EV_ADD | EV_CLEAR, 0, t),
        change(static_cast<uintptr_t>(fd), EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, t),
    };
    // If one filter was added and the other not, the caller's close of the
    // fd drops the one that was (kqueue(2): "calling close() on a file
    // descriptor will remove any kevents that reference the descriptor").
    return apply(kq_, ev, 2);
  }

  void close(int fd, PollDesc*) override {
    struct kevent ev[2] = {
        change(static_cast<uintptr_t>(fd), EVFILT_READ, EV_DELETE, 0, 0),
        change(static_cast<uintptr_t>(fd), EVFILT_WRITE, EV_DELETE, 0, 0),
    };
    // ENOENT: the filter is not there (an open that failed half-way);
    // EBADF: the fd is already closed, which dropped its events.
    if (int e = apply(kq_, ev, 2, ENOENT, EBADF))
      std::fprintf(stderr, "mnp: kevent(EV_DELETE, fd %d): %s\n", fd, std::strerror(e));
  }

  G* poll(int64_t delay) override {
    // kevent takes a timespec, to the nanosecond. nullptr blocks until an
    // event; {0, 0} does not block. macOS rejects very long timeouts with
    // EINVAL, so they are cut to 10^6 s, as Go does: the scheduler computes
    // the delay again after any return.
    timespec ts{};
    timespec* tp = nullptr;
    if (delay >= 0) {
      constexpr int64_t kMaxDelay = 1000000LL * 1000000000LL;
      int64_t d = delay < kMaxDelay ? delay : kMaxDelay;
      ts.tv_sec = static_cast<time_t>(d / 1000000000LL);
      ts.tv_nsec = static_cast<long>(d % 1000000000LL);
      tp = &ts;
    }
    struct kevent events[128];
    int n;
    for (;;) {
      stat_add(Stat::sys_poll_wait);
      n = kevent(kq_, nullptr, 0, events, 128, tp);
      if (n >= 0) break;
      // EINTR: a signal. ETIMEDOUT: returned now and then for a timed wait
      // that ran out (golang/go#59679; Go tolerates it): no events.
      if (errno != EINTR && errno != ETIMEDOUT) fatal("kevent", errno);
      // A timed poll returns so the scheduler recomputes its timeout; a
      // non-blocking or unbounded one just retries.
      if (delay > 0) return nullptr;
    }
    G* list = nullptr;
    for (int i = 0; i < n; i++) {
      const struct kevent& ev = events[i];
      if (ev.filter == EVFILT_USER) {
        // Only the blocking poller takes the wake-up; a non-blocking poll
        // leaves it triggered for that one.
        if (ev.ident == kWakeIdent && delay != 0) drain_wake();
        continue;
      }
      int mode = 0;
      if (ev.flags & EV_ERROR) {
        // Not produced for an empty change list, which is all poll passes;
        // treated like EPOLLERR should a kernel report one anyway.
        mode = 'r' + 'w';
      } else if (ev.filter == EVFILT_READ) {
        mode = (ev.flags & EV_EOF) ? 'r' + 'w' : 'r';
      } else if (ev.filter == EVFILT_WRITE) {
        mode = (ev.flags & EV_EOF) ? 'r' + 'w' : 'w';
      }
      if (mode == 0) continue;
      uint64_t t = from_udata(ev.udata);
      PollDesc* pd = pd_at(static_cast<uint32_t>(t));
      auto seq = static_cast<uint32_t>(t >> 32);
      if (!pd || pd->fdseq.load(std::memory_order_acquire) != seq) continue;  // stale
      stat_add(Stat::poll_events);
      netpoll_set_event_err(pd, (ev.flags & EV_ERROR) != 0);
      netpollready(&list, pd, mode);
    }
    return list;
  }

  void wake() override {
    uint32_t zero = 0;
    if (!wake_sig_.compare_exchange_strong(zero, 1, std::memory_order_acq_rel)) return;
    // EV_ENABLE undoes drain_wake's EV_DISABLE; NOTE_TRIGGER fires the event
    // (kqueue(2), EVFILT_USER: "NOTE_TRIGGER: cause the event to be
    // triggered").
    struct kevent ev = change(kWakeIdent, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER, 0);
    for (;;) {
      stat_add(Stat::sys_wake);
      if (kevent(kq_, &ev, 1, nullptr, 0, nullptr) >= 0) return;
      if (errno != EINTR) fatal("kevent(EVFILT_USER, NOTE_TRIGGER)", errno);
    }
  }

 private:
  // The blocking poller took the wake-up: turn the event off (it stays
  // triggered, but a disabled event is not returned: kqueue(2), EV_DISABLE),
  // then let the next wake() fire it again.
  void drain_wake() {
    struct kevent ev = change(kWakeIdent, EVFILT_USER, EV_DISABLE, 0, 0);
    if (int e = apply(kq_, &ev, 1)) fatal("kevent(EVFILT_USER, EV_DISABLE)", e);
    wake_sig_.store(0, std::memory_order_release);
  }

  int kq_;
  std::atomic<uint32_t> wake_sig_{0};  // 1 while a wake-up is pending (any M)
};

}  // namespace

Poller* make_kqueue_poller(std::string* why) {
  int kq = kqueue();
  if (kq < 0) {
    *why = std::string("kqueue: ") + std::strerror(errno);
    return nullptr;
  }
  // Not every system has kqueue1(O_CLOEXEC) (macOS has not); a kqueue is
  // not inherited across fork anyway (kqueue(2)), but exec must not see it.
  if (fcntl(kq, F_SETFD, FD_CLOEXEC) < 0) {
    *why = std::string("fcntl(kqueue, FD_CLOEXEC): ") + std::strerror(errno);
    ::close(kq);
    return nullptr;
  }
  // The wake-up event: added once, level (no EV_CLEAR), see the top of file.
  struct kevent ev = change(kWakeIdent, EVFILT_USER, EV_ADD, 0, 0);
  if (int e = apply(kq, &ev, 1)) {
    *why = std::string("kevent(EVFILT_USER, EV_ADD): ") + std::strerror(e);
    ::close(kq);
    return nullptr;
  }
  return new KqueuePoller(kq);
}

}  // namespace mnp::rt
