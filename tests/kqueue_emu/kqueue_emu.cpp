// tests/kqueue_emu/kqueue_emu.cpp — kqueue(2) over epoll(7), for tests.
//
// Only what sys/event.h beside this file declares: enough to run the kqueue
// backend (runtime/netpoll/poller_kqueue.cpp) on Linux, so that a logic error
// in it fails the conformance suite here and not first on a Mac. meson
// -Dkqueue_emu=true builds it into the runtime (runtime/meson.build). It is
// not a general kqueue: anything the backend does not use aborts with "not
// emulated" instead of guessing.
//
// The model. A kqueue is an epoll instance, and the kqueue's fd is the epoll
// fd. An fd with knotes (EVFILT_READ, EVFILT_WRITE) is registered in it once,
// edge-triggered, for the union of its knotes' interests; kevent() waits in
// epoll_wait and turns each epoll event into one kevent per interested knote,
// queueing what does not fit for the next call. EVFILT_USER knotes live only
// here; an eventfd in the epoll set is kept readable while any of them is
// active, so that a kevent() blocked in epoll_wait wakes when another thread
// triggers one.
//
// The rules, each with the sentence of kqueue(2) it follows (FreeBSD's page;
// macOS's reads the same in these places). Code below names them K1..K14.
//
//  K1  kqueue(): "creates a new kernel event queue and returns a descriptor."
//  K2  "All changes contained in the changelist are applied before any
//      pending events are read from the queue."
//  K3  EV_ADD: "Re-adding an existing event will modify the parameters of the
//      original event, and not result in a duplicate entry. Adding an event
//      automatically enables it, unless overridden by the EV_DISABLE flag."
//  K4  EV_DELETE: "Removes the event from the kqueue. Events which are
//      attached to file descriptors are automatically deleted on the last
//      close of the descriptor."
//  K5  EV_ENABLE: "Permit kevent() to return the event if it is triggered."
//      EV_DISABLE: "Disable the event so kevent() will not return it. The
//      filter itself is not disabled."
//  K6  EV_CLEAR: "After the event is retrieved by the user, its state is
//      reset." Without it an event is returned by every kevent() while its
//      condition holds; a knote is queued at most once at a time.
//  K7  EV_RECEIPT: "useful for making bulk changes to a kqueue without
//      draining any pending events. When passed as input, it forces EV_ERROR
//      to always be returned. When a filter is successfully added the data
//      field will be zero." So a call that placed receipts returns them and
//      reads no events.
//  K8  RETURN VALUES: "If an error occurs while processing an element of the
//      changelist and there is enough room in the eventlist, then the event
//      will be placed in the eventlist with EV_ERROR set in flags and the
//      system error in data. Otherwise, -1 will be returned, and errno will
//      be set to indicate the error condition." ENOENT: "The event could not
//      be found to be modified or deleted." EBADF: "The specified descriptor
//      is invalid." EINVAL: "The specified time limit or filter is invalid."
//  K9  "When nevents is zero, kevent() will return immediately even if there
//      is a timeout specified."
//  K10 "If timeout is a NULL pointer, kevent() waits indefinitely. To effect a
//      poll, the timeout argument should be non-NULL, pointing to a
//      zero-valued timespec structure." "If the time limit expires, then
//      kevent() returns 0." EINTR: "A signal was delivered before the timeout
//      expired and before any events were placed on the kevent queue."
//  K11 EVFILT_READ: "returns whenever there is data available to read";
//      a listening socket returns "when there is an incoming connection
//      pending". "If the read direction of the socket has shutdown, then the
//      filter also sets EV_EOF in flags."
//  K12 EVFILT_WRITE: "returns whenever it is possible to write to the
//      descriptor." "The filter will set EV_EOF when the reader disconnects."
//  K13 EVFILT_USER: "a user event identified by ident which is not associated
//      with any kernel mechanism but is triggered by user level code."
//      NOTE_TRIGGER: "Cause the event to be triggered."
//  K14 "kevent() returns the number of events placed in the eventlist, up to
//      the value given by nevents."
//
// Where the emulation is not kqueue (none of it matters to the backend,
// which treats every event as a hint and retries the syscall):
//  - data is 0 (no byte counts), and EV_EOF's fflags carry no socket error:
//    reading SO_ERROR to fill them would clear the error the retried syscall
//    must see.
//  - One epoll registration per fd reports every ready direction at each
//    wake-up, so a read knote may fire when only buffer space changed, and
//    the other way round (the epoll backend sees the same).
//  - EV_EOF on EVFILT_WRITE comes from EPOLLHUP/EPOLLERR only; after this
//    side's shutdown(SHUT_WR) a real kqueue sets it, epoll says nothing.
//  - Timeouts are rounded up to milliseconds (epoll_wait's unit).
//  - close() is not seen. Of a registered fd: its stale knotes are noticed
//    at the next EV_ADD/EV_DELETE for that number (epoll has already dropped
//    the registration, K4). Of the kqueue: its eventfd is released when its
//    last EVFILT_USER knote is deleted, or when a new kqueue() gets its
//    number. The backend deletes its user knote before closing for this.
//  - A kqueue is inherited by fork here (an epoll fd is); a real one is not.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/event.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace {

[[noreturn]] void not_emulated(const char* what) {
  std::fprintf(stderr, "kqueue_emu: %s is not emulated (tests/kqueue_emu/kqueue_emu.cpp)\n", what);
  std::abort();
}

// One EVFILT_READ or EVFILT_WRITE knote of an fd.
struct Knote {
  bool present = false;
  bool queued = false;  // on Kq::pending (K6: at most once)
  uint16_t eof = 0;     // EV_EOF seen since the last retrieval
  uint64_t id = 0;      // a queued entry of a deleted knote no longer matches
  void* udata = nullptr;
};

struct FdNotes {
  uint32_t gen = 0;  // the epoll registration; its events carry it
  Knote read, write;
};

struct UserNote {
  bool clear = false;
  bool enabled = true;
  bool triggered = false;
  void* udata = nullptr;
};

struct Queued {
  int fd;
  int16_t filter;
  uint64_t id;
};

constexpr uint64_t kUserTag = ~uint64_t{0};  // epoll data of the eventfd

struct Kq {
  explicit Kq(int fd) : epfd(fd) {}
  ~Kq() {
    if (evfd >= 0) ::close(evfd);
  }
  const int epfd;
  std::mutex mu;  // guards everything below
  std::unordered_map<int, FdNotes> fds;
  std::map<uintptr_t, UserNote> users;
  std::deque<Queued> pending;  // fd knotes with an event not yet returned
  int evfd = -1;               // readable iff some user knote is active
  bool evfd_set = false;
  uint32_t next_gen = 1;
  uint64_t next_id = 1;
};

// Every kqueue by fd number. Never destroyed: a late kevent() at exit must
// not find a dead map.
std::mutex g_mu;
std::unordered_map<int, std::shared_ptr<Kq>>& kqs() {
  static auto* m = new std::unordered_map<int, std::shared_ptr<Kq>>;
  return *m;
}

std::shared_ptr<Kq> find_kq(int fd) {
  std::lock_guard<std::mutex> l(g_mu);
  auto it = kqs().find(fd);
  return it == kqs().end() ? nullptr : it->second;
}

uint64_t fd_tag(int fd, uint32_t gen) {
  return (static_cast<uint64_t>(gen) << 32) | static_cast<uint32_t>(fd);
}

int ctl(int epfd, int op, int fd, uint32_t events, uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  return epoll_ctl(epfd, op, fd, &ev) < 0 ? errno : 0;
}

// EV_CLEAR is edge-triggering (K6): EPOLLET. EPOLLRDHUP carries the peer's
// shutdown to the read knote as EV_EOF (K11).
uint32_t epoll_mask(const FdNotes& n) {
  uint32_t m = EPOLLET;
  if (n.read.present) m |= EPOLLIN | EPOLLRDHUP;
  if (n.write.present) m |= EPOLLOUT;
  return m;
}

Knote& knote_of(FdNotes& n, int filter) {
  return filter == EVFILT_READ ? n.read : n.write;
}

// --- user knotes (K13) -------------------------------------------------------

// Keeps the eventfd readable exactly while some user knote is active, and
// releases it with the last user knote. Under q.mu.
void sync_user_fd(Kq& q) {
  if (q.users.empty()) {
    if (q.evfd >= 0) ::close(q.evfd);  // leaves the epoll set with it
    q.evfd = -1;
    q.evfd_set = false;
    return;
  }
  bool active = std::any_of(q.users.begin(), q.users.end(),
                            [](const auto& u) { return u.second.enabled && u.second.triggered; });
  if (active == q.evfd_set) return;
  uint64_t v = 1;
  ssize_t r = active ? ::write(q.evfd, &v, sizeof v) : ::read(q.evfd, &v, sizeof v);
  if (r != sizeof v) {
    std::perror("kqueue_emu: eventfd");
    std::abort();
  }
  q.evfd_set = active;
}

int change_user(Kq& q, const struct kevent& c) {
  constexpr unsigned kFlags = EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE | EV_CLEAR | EV_RECEIPT;
  if (c.flags & ~kFlags) not_emulated("this EVFILT_USER flag");
  if (c.fflags & ~static_cast<uint32_t>(NOTE_TRIGGER)) not_emulated("EVFILT_USER fflags");
  if (c.flags & EV_DELETE) {
    if (q.users.erase(c.ident) == 0) return ENOENT;
    sync_user_fd(q);
    return 0;
  }
  auto it = q.users.find(c.ident);
  if (it == q.users.end()) {
    if (!(c.flags & EV_ADD)) return ENOENT;  // K8: nothing to modify
    if (q.evfd < 0) {
      int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (fd < 0) return errno;
      if (int e = ctl(q.epfd, EPOLL_CTL_ADD, fd, EPOLLIN, kUserTag)) {
        ::close(fd);
        return e;
      }
      q.evfd = fd;
    }
    it = q.users.emplace(c.ident, UserNote{}).first;
  }
  UserNote& u = it->second;
  if (c.flags & EV_ADD) {  // K3: a re-add modifies
    u.clear = (c.flags & EV_CLEAR) != 0;
    u.udata = c.udata;
  }
  if (c.flags & EV_ENABLE) u.enabled = true;  // K5
  if (c.flags & EV_DISABLE) u.enabled = false;
  if (c.fflags & NOTE_TRIGGER) u.triggered = true;  // K13
  sync_user_fd(q);
  return 0;
}

// --- fd knotes (K11, K12) ------------------------------------------------------

int add_fd(Kq& q, const struct kevent& c) {
  // The backend's one way of adding: EV_ADD | EV_CLEAR. Level-triggered
  // knotes would need a different epoll registration; not emulated.
  if ((c.flags & ~(EV_ADD | EV_CLEAR | EV_RECEIPT)) || !(c.flags & EV_CLEAR))
    not_emulated("EVFILT_READ/EVFILT_WRITE other than EV_ADD|EV_CLEAR or EV_DELETE");
  if (c.ident > static_cast<uintptr_t>(INT_MAX)) return EBADF;
  int fd = static_cast<int>(c.ident);
  auto it = q.fds.find(fd);
  if (it != q.fds.end()) {
    FdNotes& n = it->second;
    Knote& k = knote_of(n, c.filter);
    bool existed = k.present;
    if (!existed) k = Knote{true, false, 0, q.next_id++, c.udata};
    k.udata = c.udata;  // K3: a re-add modifies, never duplicates
    int e = ctl(q.epfd, EPOLL_CTL_MOD, fd, epoll_mask(n), fd_tag(fd, n.gen));
    if (e == 0) return 0;
    if (!existed) k = Knote{};
    if (e != ENOENT) return e;
    // K4: the fd was closed since, and epoll dropped it; this number is a
    // new file. Its old knotes are gone: start afresh.
    q.fds.erase(it);
  }
  FdNotes n;
  n.gen = q.next_gen++;
  knote_of(n, c.filter) = Knote{true, false, 0, q.next_id++, c.udata};
  if (int e = ctl(q.epfd, EPOLL_CTL_ADD, fd, epoll_mask(n), fd_tag(fd, n.gen))) return e;
  q.fds.emplace(fd, n);
  return 0;
}

int delete_fd(Kq& q, const struct kevent& c) {
  if (c.flags & ~(EV_DELETE | EV_RECEIPT)) not_emulated("EV_DELETE with other flags");
  if (c.ident > static_cast<uintptr_t>(INT_MAX)) return EBADF;
  int fd = static_cast<int>(c.ident);
  auto it = q.fds.find(fd);
  if (fcntl(fd, F_GETFD) < 0) {  // K8: EBADF; K4: its knotes died with it
    if (it != q.fds.end()) q.fds.erase(it);
    return EBADF;
  }
  if (it == q.fds.end()) return ENOENT;
  FdNotes& n = it->second;
  Knote& k = knote_of(n, c.filter);
  if (!k.present) return ENOENT;
  k = Knote{};  // a queued event of it is dropped at delivery (id mismatch)
  if (n.read.present || n.write.present) {
    int e = ctl(q.epfd, EPOLL_CTL_MOD, fd, epoll_mask(n), fd_tag(fd, n.gen));
    if (e == ENOENT) q.fds.erase(it);  // K4: a closed fd's number, reused
    return e;
  }
  int e = ctl(q.epfd, EPOLL_CTL_DEL, fd, 0, 0);
  q.fds.erase(it);
  return e;
}

int apply_change(Kq& q, const struct kevent& c) {
  switch (c.filter) {
    case EVFILT_USER:
      return change_user(q, c);
    case EVFILT_READ:
    case EVFILT_WRITE:
      if (c.flags & EV_DELETE) return delete_fd(q, c);
      if (c.flags & EV_ADD) return add_fd(q, c);
      not_emulated("EVFILT_READ/EVFILT_WRITE without EV_ADD or EV_DELETE");
    default:
      return EINVAL;  // K8: "the specified ... filter is invalid"
  }
}

// --- events --------------------------------------------------------------------

// One epoll event → the knotes it concerns, queued once each (K6). Under q.mu.
void translate(Kq& q, const epoll_event& ev) {
  if (ev.data.u64 == kUserTag) return;  // user knotes are read by collect()
  int fd = static_cast<int>(static_cast<uint32_t>(ev.data.u64));
  auto it = q.fds.find(fd);
  if (it == q.fds.end() || it->second.gen != static_cast<uint32_t>(ev.data.u64 >> 32))
    return;  // for a registration that is gone
  FdNotes& n = it->second;
  auto queue = [&](int filter, bool eof) {
    Knote& k = knote_of(n, filter);
    if (eof) k.eof = EV_EOF;
    if (k.queued) return;
    k.queued = true;
    q.pending.push_back({fd, static_cast<int16_t>(filter), k.id});
  };
  uint32_t e = ev.events;
  if (n.read.present && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
    queue(EVFILT_READ, e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));  // K11
  if (n.write.present && (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
    queue(EVFILT_WRITE, e & (EPOLLHUP | EPOLLERR));  // K12
}

// Fills out[0..room) with what is ready: active user knotes, then queued fd
// knotes. Under q.mu.
int collect(Kq& q, struct kevent* out, int room) {
  int n = 0;
  for (auto& [ident, u] : q.users) {
    if (n == room) break;
    if (!u.enabled || !u.triggered) continue;  // K5
    out[n] = {};
    out[n].ident = ident;
    out[n].filter = EVFILT_USER;
    out[n].flags = u.clear ? EV_CLEAR : 0;
    out[n].udata = u.udata;
    n++;
    if (u.clear) u.triggered = false;  // K6
  }
  sync_user_fd(q);
  while (n < room && !q.pending.empty()) {
    Queued e = q.pending.front();
    q.pending.pop_front();
    auto it = q.fds.find(e.fd);
    if (it == q.fds.end()) continue;
    Knote& k = knote_of(it->second, e.filter);
    if (!k.present || k.id != e.id || !k.queued) continue;  // deleted since (K4)
    out[n] = {};
    out[n].ident = static_cast<uintptr_t>(e.fd);
    out[n].filter = e.filter;
    out[n].flags = static_cast<uint16_t>(EV_CLEAR | k.eof);
    out[n].udata = k.udata;
    n++;
    k.queued = false;  // K6: EV_CLEAR resets the state on retrieval
    k.eof = 0;
  }
  return n;
}

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace

extern "C" int kqueue(void) {
  int fd = epoll_create1(0);  // K1 (no close-on-exec, as kqueue())
  if (fd < 0) return -1;
  auto q = std::make_shared<Kq>(fd);
  std::lock_guard<std::mutex> l(g_mu);
  kqs()[fd] = q;  // drops what was left of a closed kqueue with this number
  return fd;
}

extern "C" int kevent(int kqfd, const struct kevent* changes, int nchanges, struct kevent* events,
                      int nevents, const struct timespec* timeout) {
  if (nchanges < 0 || nevents < 0 || (nchanges > 0 && !changes) || (nevents > 0 && !events) ||
      (timeout &&
       (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000L))) {
    errno = EINVAL;  // K8
    return -1;
  }
  std::shared_ptr<Kq> q = find_kq(kqfd);
  if (!q) {
    errno = EBADF;  // K8
    return -1;
  }

  // K2: the changes first. K7/K8: a receipt or an error goes to the event
  // list while there is room; an error without room ends the call.
  int nout = 0;
  {
    std::lock_guard<std::mutex> l(q->mu);
    for (int i = 0; i < nchanges; i++) {
      const struct kevent c = changes[i];  // a copy: the lists may be one array
      int err = apply_change(*q, c);
      if (err == 0 && !(c.flags & EV_RECEIPT)) continue;
      if (nout == nevents) {
        if (err == 0) not_emulated("EV_RECEIPT without room for the receipt");
        errno = err;
        return -1;
      }
      events[nout] = c;
      events[nout].flags = static_cast<uint16_t>(c.flags | EV_ERROR);
      events[nout].data = err;
      nout++;
    }
  }
  if (nout > 0) return nout;   // K7: no pending event is drained
  if (nevents == 0) return 0;  // K9

  // K10: wait until something is ready or the time is up.
  const int64_t deadline =
      timeout ? now_ns() + static_cast<int64_t>(timeout->tv_sec) * 1000000000LL + timeout->tv_nsec
              : 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> l(q->mu);
      if (int n = collect(*q, events, nevents)) return n;  // K14
    }
    int ms = -1;
    if (timeout) {
      int64_t left = std::max<int64_t>(deadline - now_ns(), 0);
      ms = static_cast<int>(std::min<int64_t>((left + 999999) / 1000000, INT_MAX));
    }
    epoll_event evs[64];
    int r = epoll_wait(q->epfd, evs, std::min(nevents, 64), ms);
    if (r < 0) return -1;  // EINTR (K10) or a real error: errno says which
    {
      std::lock_guard<std::mutex> l(q->mu);
      for (int i = 0; i < r; i++) translate(*q, evs[i]);
      if (int n = collect(*q, events, nevents)) return n;
    }
    if (timeout && now_ns() >= deadline) return 0;  // K10
    // Only events of deleted knotes, or a wake-up another caller took: wait on.
  }
}
