// runtime/netpoll/fd — FD (mnp/poll.h): the fdMutex and the try-park-retry loop.
//
// The fdMutex (Go's internal/poll/fd_mutex.go) is one 64-bit word:
//
//   bit 0      closed         set once, by close
//   bit 1      read lock      serialises readers (and accept)
//   bit 2      write lock     serialises writers (a write is write-all)
//   bits 3-22  references     every operation holds one while it runs
//   bits 23-42 read waiters   Gs parked on pd->rsema for the read lock
//   bits 43-62 write waiters  Gs parked on pd->wsema for the write lock
//
// close sets `closed` (new operations fail with Errc::closed), wakes the
// parked waiters (netpoll_evict), and the kernel fd is closed by whoever
// drops the last reference: never while another G is inside a syscall on it.
// close itself waits on pd->csema until that has happened.
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "mnp/poll.h"
#include "netpoll/netpoll.h"
#include "netpoll/poller.h"
#include "sys/sys.h"

namespace mnp {

using namespace rt;

namespace {

constexpr uint64_t mutexClosed = 1ull << 0;
constexpr uint64_t mutexRLock = 1ull << 1;
constexpr uint64_t mutexWLock = 1ull << 2;
constexpr uint64_t mutexRef = 1ull << 3;
constexpr uint64_t mutexRefMask = ((1ull << 20) - 1) << 3;
constexpr uint64_t mutexRWait = 1ull << 23;
constexpr uint64_t mutexRMask = ((1ull << 20) - 1) << 23;
constexpr uint64_t mutexWWait = 1ull << 43;
constexpr uint64_t mutexWMask = ((1ull << 20) - 1) << 43;

[[noreturn]] void fatal(const char* msg) {
  std::fprintf(stderr, "mnp: fatal error: %s\n", msg);
  std::abort();
}

bool incref(PollDesc* pd) {
  uint64_t old = pd->fdmu.load(std::memory_order_relaxed);
  for (;;) {
    if (old & mutexClosed) return false;
    uint64_t nv = old + mutexRef;
    if ((nv & mutexRefMask) == 0) fatal("too many concurrent operations on a single file");
    if (pd->fdmu.compare_exchange_weak(old, nv, std::memory_order_acquire)) return true;
  }
}

// Marks closed and takes a reference; wakes the Gs waiting for the locks
// (they see closed and fail). False if already closed.
bool incref_and_close(PollDesc* pd) {
  uint64_t old = pd->fdmu.load(std::memory_order_relaxed);
  for (;;) {
    if (old & mutexClosed) return false;
    uint64_t nv = (old | mutexClosed) + mutexRef;
    if ((nv & mutexRefMask) == 0) fatal("too many concurrent operations on a single file");
    nv &= ~(mutexRMask | mutexWMask);
    if (pd->fdmu.compare_exchange_weak(old, nv, std::memory_order_acq_rel)) break;
  }
  for (; old & mutexRMask; old -= mutexRWait) pd->rsema.release();
  for (; old & mutexWMask; old -= mutexWWait) pd->wsema.release();
  return true;
}

// Drops a reference; true if it was the last one of a closed FD.
bool decref(PollDesc* pd) {
  uint64_t old = pd->fdmu.load(std::memory_order_relaxed);
  for (;;) {
    if ((old & mutexRefMask) == 0) fatal("inconsistent fdMutex");
    uint64_t nv = old - mutexRef;
    if (pd->fdmu.compare_exchange_weak(old, nv, std::memory_order_acq_rel))
      return (nv & (mutexClosed | mutexRefMask)) == mutexClosed;
  }
}

// Takes the read (or write) lock and a reference; parks while another G
// holds the lock. False if the FD is closed.
bool rwlock(PollDesc* pd, bool read) {
  const uint64_t bit = read ? mutexRLock : mutexWLock;
  const uint64_t wait = read ? mutexRWait : mutexWWait;
  const uint64_t mask = read ? mutexRMask : mutexWMask;
  Sema& sema = read ? pd->rsema : pd->wsema;
  uint64_t old = pd->fdmu.load(std::memory_order_relaxed);
  for (;;) {
    if (old & mutexClosed) return false;
    uint64_t nv;
    if ((old & bit) == 0) {
      nv = (old | bit) + mutexRef;
      if ((nv & mutexRefMask) == 0) fatal("too many concurrent operations on a single file");
    } else {
      nv = old + wait;
      if ((nv & mask) == 0) fatal("too many concurrent operations on a single file");
    }
    if (pd->fdmu.compare_exchange_weak(old, nv, std::memory_order_acq_rel)) {
      if ((old & bit) == 0) return true;
      sema_acquire(&sema, WaitReason::sema);
      old = pd->fdmu.load(std::memory_order_relaxed);
    }
  }
}

// Releases the lock and the reference; true if it was the last reference
// of a closed FD.
bool rwunlock(PollDesc* pd, bool read) {
  const uint64_t bit = read ? mutexRLock : mutexWLock;
  const uint64_t wait = read ? mutexRWait : mutexWWait;
  const uint64_t mask = read ? mutexRMask : mutexWMask;
  Sema& sema = read ? pd->rsema : pd->wsema;
  uint64_t old = pd->fdmu.load(std::memory_order_relaxed);
  for (;;) {
    if ((old & bit) == 0 || (old & mutexRefMask) == 0) fatal("inconsistent fdMutex");
    uint64_t nv = (old & ~bit) - mutexRef;
    if (old & mask) nv -= wait;
    if (pd->fdmu.compare_exchange_weak(old, nv, std::memory_order_acq_rel)) {
      if (old & mask) sema.release();
      return (nv & (mutexClosed | mutexRefMask)) == mutexClosed;
    }
  }
}

// The byte counters have one writer at a time (the holder of the read or
// write lock): a plain add, no lock prefix on the hot path.
void add_relaxed(std::atomic<uint64_t>& c, uint64_t n) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// A Deadline as the runtime's clock: 0 none, -1 already past, else nanotime.
int64_t deadline_ns(Deadline d) {
  if (d == Deadline{}) return 0;
  int64_t now = rt::nanotime();
  int64_t ns = now + std::chrono::duration_cast<Duration>(d - Clock::now()).count();
  return ns <= now ? -1 : ns;
}

Error poll_error(PollErr e, const char* op) {
  switch (e) {
    case PollErr::closing:
      return Error(Errc::closed, op);
    case PollErr::timeout:
      return Error(Errc::timeout, op);
    default:
      return Error(Errc::sys, op, EIO);
  }
}

}  // namespace

// What runtime/netpoll's backends may reach of an FD.
struct FDAccess {
  // The last reference is gone: deregister, close the kernel fd, and let
  // close() (parked on csema) finish.
  static void destroy(FD* fd) {
    PollDesc* pd = fd->pd_;
    netpoll_close(pd);
    // close(2) is not retried on EINTR: on Linux the fd is gone either way.
    sys::close(fd->sysfd_);
    pd->csema.release();
  }
  // Scope guards for the operations: they drop the lock/reference and
  // destroy the FD if theirs was the last reference of a closed FD.
  struct ReadLock {
    FD* fd;
    bool ok;
    ReadLock(FD* f, bool read) : fd(f), read_(read) { ok = rwlock(f->pd_, read); }
    ~ReadLock() {
      if (ok && rwunlock(fd->pd_, read_)) destroy(fd);
    }
    bool read_;
  };
  struct Ref {
    FD* fd;
    bool ok;
    explicit Ref(FD* f) : fd(f) { ok = incref(f->pd_); }
    ~Ref() {
      if (ok && decref(fd->pd_)) destroy(fd);
    }
  };
};

Error FD::init(int sysfd, Kind kind) {
  if (pd_) fatal("FD::init on an FD already in use");
  if (!sched.poller) {
    sys::close(sysfd);
    return Error(Errc::invalid, "fd init").with_context("the runtime is not running (mnp::run)");
  }
  PollDesc* pd = pd_alloc();
  pd->fdmu.store(0, std::memory_order_relaxed);
  pd->kind = static_cast<uint8_t>(kind);
  Error err = netpoll_open(pd, sysfd);
  if (err) {
    // Never registered: no event can name it; mark it closed for pd_free.
    pd->closing = true;
    pd->fdseq.fetch_add(1);
    pd_free(pd);
    sys::close(sysfd);
    return err;
  }
  sysfd_ = sysfd;
  kind_ = kind;
  pd_ = pd;
  return {};
}

// The pollDesc (and its fdMutex, with the closed bit) stays with the FD until
// the FD itself is destroyed: an operation on a closed FD must find "closed",
// not another socket's pollDesc.
FD::~FD() {
  if (!pd_) return;
  if (!(pd_->fdmu.load() & mutexClosed)) close();
  pd_free(pd_);
  pd_ = nullptr;
}

uint64_t FD::bytes_read() const {
  return pd_ ? pd_->bytes_read.load() : 0;
}
uint64_t FD::bytes_written() const {
  return pd_ ? pd_->bytes_written.load() : 0;
}

IOResult FD::read(void* buf, size_t n) {
  if (!pd_) return {0, Error(Errc::closed, "read")};
  FDAccess::ReadLock lk(this, true);
  if (!lk.ok) return {0, Error(Errc::closed, "read")};
  if (n == 0) return {};
  if (sched.poller->completion()) {
    IOResult r = sched.poller->read(pd_, buf, n);
    if (r.n) pd_->bytes_read.fetch_add(r.n, std::memory_order_relaxed);
    return r;
  }
  // Fail at once on a closed pollDesc or an expired deadline.
  if (PollErr e = netpoll_check_err(pd_, 'r'); e != PollErr::none)
    return {0, poll_error(e, "read")};
  // Forget readiness remembered from before: we are about to ask the
  // kernel. (Parking first after a short read would save a syscall, but a
  // short read does not prove the socket empty — a signal can cut a copy
  // short — and then no new edge would ever come. Go always tries first.)
  netpoll_reset(pd_, 'r');
  for (;;) {
    ssize_t r = sys::read(sysfd_, buf, n);
    if (r > 0) {
      add_relaxed(pd_->bytes_read, static_cast<uint64_t>(r));
      return {static_cast<size_t>(r), {}};
    }
    if (r == 0) return {0, Error(Errc::eof, "read")};
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (PollErr e = netpoll_wait(pd_, 'r'); e != PollErr::none) return {0, poll_error(e, "read")};
      continue;
    }
    return {0, Error::from_errno("read", errno)};
  }
}

IOResult FD::write(const void* buf, size_t n) {
  if (!pd_) return {0, Error(Errc::closed, "write")};
  FDAccess::ReadLock lk(this, false);
  if (!lk.ok) return {0, Error(Errc::closed, "write")};
  if (sched.poller->completion()) {
    IOResult r = sched.poller->write(pd_, buf, n);
    if (r.n) pd_->bytes_written.fetch_add(r.n, std::memory_order_relaxed);
    return r;
  }
  if (PollErr e = netpoll_check_err(pd_, 'w'); e != PollErr::none)
    return {0, poll_error(e, "write")};
  netpoll_reset(pd_, 'w');
  const char* p = static_cast<const char*>(buf);
  size_t done = 0;
  while (done < n) {
    ssize_t r;
    // Sockets: send with MSG_NOSIGNAL, never SIGPIPE (mnp::run also ignores
    // it, for the kinds of fd that cannot take the flag).
    if (kind_ == Kind::stream) {
#ifdef MSG_NOSIGNAL
      r = sys::send(sysfd_, p + done, n - done, MSG_NOSIGNAL);
#else
      r = sys::send(sysfd_, p + done, n - done, 0);
#endif
    } else {
      r = sys::write(sysfd_, p + done, n - done);
    }
    if (r >= 0) {
      done += static_cast<size_t>(r);
      add_relaxed(pd_->bytes_written, static_cast<uint64_t>(r));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (PollErr e = netpoll_wait(pd_, 'w'); e != PollErr::none)
        return {done, poll_error(e, "write")};
      continue;
    }
    return {done, Error::from_errno("write", errno)};
  }
  return {done, {}};
}

Result<int> FD::accept(sockaddr* sa, socklen_t* len) {
  if (!pd_) return {-1, Error(Errc::closed, "accept")};
  FDAccess::ReadLock lk(this, true);
  if (!lk.ok) return {-1, Error(Errc::closed, "accept")};
  if (sched.poller->completion()) return sched.poller->accept(pd_, sa, len);
  if (PollErr e = netpoll_check_err(pd_, 'r'); e != PollErr::none)
    return {-1, poll_error(e, "accept")};
  netpoll_reset(pd_, 'r');
  socklen_t len0 = len ? *len : 0;
  for (;;) {
    if (len) *len = len0;
    int nfd = sys::accept(sysfd_, sa, len);
    if (nfd >= 0) return {nfd, {}};
    switch (errno) {
      case EINTR:
      case ECONNABORTED:  // the peer gave up while queued: take the next one
        continue;
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        if (PollErr e = netpoll_wait(pd_, 'r'); e != PollErr::none)
          return {-1, poll_error(e, "accept")};
        continue;
      default:
        // EMFILE/ENFILE: the connection stays queued; the caller backs off.
        return {-1, Error::from_errno("accept", errno)};
    }
  }
}

Error FD::connect(const sockaddr* sa, socklen_t len) {
  if (!pd_) return Error(Errc::closed, "connect");
  FDAccess::Ref ref(this);
  if (!ref.ok) return Error(Errc::closed, "connect");
  if (sched.poller->completion()) return sched.poller->connect(pd_, sa, len);
  if (PollErr e = netpoll_check_err(pd_, 'w'); e != PollErr::none) return poll_error(e, "connect");
  // The fd was registered before connect(2), and a socket that is not yet
  // connecting polls as writable + hung up (EPOLLOUT|EPOLLHUP): that edge
  // may already sit in the slot, or still be queued in the poller. Forget
  // what the slot remembers *before* connect(2), never after it: on loopback
  // the handshake can end, and its one edge arrive, before connect(2) has
  // even returned; a reset after it would drop that edge and the wait below
  // would never end (edge-triggered: no second edge comes). A stale edge
  // that still arrives is caught by getpeername below (ENOTCONN: wait again),
  // as Go's fd.connect does.
  netpoll_reset(pd_, 'w');
  for (;;) {
    if (sys::connect(sysfd_, sa, len) == 0) return {};
    int e = errno;
    if (e == EINTR) continue;
    if (e == EISCONN) return {};
    if (e == EINPROGRESS || e == EALREADY) break;
    return Error::from_errno("connect", e);
  }
  // The handshake is under way: writable means it ended; SO_ERROR says how.
  for (;;) {
    if (PollErr e = netpoll_wait(pd_, 'w'); e != PollErr::none) return poll_error(e, "connect");
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (sys::getsockopt(sysfd_, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
      return Error::from_errno("connect", errno);
    switch (soerr) {
      case 0:
      case EISCONN: {
        sockaddr_storage peer;
        socklen_t pl = sizeof peer;
        if (::getpeername(sysfd_, reinterpret_cast<sockaddr*>(&peer), &pl) == 0) return {};
        if (errno == ENOTCONN) continue;  // a stale edge: still connecting
        return Error::from_errno("connect", errno);
      }
      case EINPROGRESS:
      case EALREADY:
      case EINTR:
        continue;  // spurious wake-up: still connecting
      default:
        return Error::from_errno("connect", soerr);
    }
  }
}

Error FD::close() {
  if (!pd_) return Error(Errc::closed, "close");
  PollDesc* pd = pd_;
  if (!incref_and_close(pd)) return Error(Errc::closed, "close");
  if (!sched.poller) {
    // After mnp::run returned (a Conn destroyed late): no poller, no Gs.
    if (decref(pd)) {
      pd->closing = true;
      pd->fdseq.fetch_add(1);
      sys::close(sysfd_);
      // Its timers were in the heaps of Ps that are gone.
      pd->rt.pp.store(nullptr);
      pd->wt.pp.store(nullptr);
    }
    sysfd_ = -1;
    return {};
  }
  netpoll_evict(pd);  // wake the parked readers and writers: Errc::closed
  if (decref(pd)) FDAccess::destroy(this);
  // Wait until whoever held the last reference closed the kernel fd.
  sema_acquire(&pd->csema, WaitReason::sema);
  sysfd_ = -1;
  return {};
}

Error FD::shutdown(int how) {
  if (!pd_) return Error(Errc::closed, "shutdown");
  FDAccess::Ref ref(this);
  if (!ref.ok) return Error(Errc::closed, "shutdown");
  if (sys::shutdown(sysfd_, how) < 0) return Error::from_errno("shutdown", errno);
  return {};
}

void FD::set_read_deadline(Deadline d) {
  if (!pd_) return;
  FDAccess::Ref ref(this);
  if (!ref.ok) return;
  netpoll_set_deadline(pd_, deadline_ns(d), 'r');
}

void FD::set_write_deadline(Deadline d) {
  if (!pd_) return;
  FDAccess::Ref ref(this);
  if (!ref.ok) return;
  netpoll_set_deadline(pd_, deadline_ns(d), 'w');
}

Error FD::setsockopt(int level, int name, const void* val, socklen_t len) {
  if (!pd_) return Error(Errc::closed, "setsockopt");
  FDAccess::Ref ref(this);
  if (!ref.ok) return Error(Errc::closed, "setsockopt");
  if (sys::setsockopt(sysfd_, level, name, val, len) < 0)
    return Error::from_errno("setsockopt", errno);
  return {};
}

Error FD::getsockopt(int level, int name, void* val, socklen_t* len) {
  if (!pd_) return Error(Errc::closed, "getsockopt");
  FDAccess::Ref ref(this);
  if (!ref.ok) return Error(Errc::closed, "getsockopt");
  if (sys::getsockopt(sysfd_, level, name, val, len) < 0)
    return Error::from_errno("getsockopt", errno);
  return {};
}

}  // namespace mnp
