// runtime/netpoll/poller_uring — io_uring as a completion backend ("uring").
//
// The proactor model: FD hands each read, write, accept and connect to this
// backend (fd.cpp: `if (sched.poller->completion())`), which submits it as
// an io_uring operation; the G parks on its own operation and resumes with
// its result. No readiness is ever reported and no syscall is retried on
// EAGAIN: the kernel waits for the socket (FEAT_FAST_POLL, 5.7) and does the
// I/O when it can.
//
// Where a G parks: on its pollDesc's slot for the direction (rg for recv,
// read and accept; wg for send, write and connect), with netpoll_wait, as a
// readiness backend's G does. The CQE handler calls netpollready on that
// slot. So the pollDesc machinery works unchanged: the deadline timers and
// close (netpoll_evict) wake the G through the same slot with
// PollErr::timeout / PollErr::closing, and netpollblock's pdWait/commit
// dance covers a CQE that arrives before the G has finished parking.
//
// ── An operation's life ────────────────────────────────────────────────────
// One Op per direction per pollDesc (fdMutex: at most one read and one
// write in flight per fd), in the never-freed per-pollDesc state, tagged
// with a generation:
//
//            G: gen++, SQE queued                  CQE with this gen:
//     idle ─────────────────────► inflight ──────────────────────► done ───┐
//      ▲                             │       op.res = res,           ▲       │
//      │                             │       netpollready(slot)      │       │
//      │  G woken by its deadline    │                               │       │
//      │  or by close before the CQE:│     CQE: -ECANCELED, or the   │       │
//      │  ASYNC_CANCEL(tag), then    ▼     op's own result if it won │       │
//      │  netpoll_wait_canceled   canceling ─────────────────────────┘       │
//      │                   (inflight + cancel_sent)                           │
//      └─────────────── the G takes res (only it does) ◄──────────────────────┘
//
// The G never returns while its operation is in flight: after a deadline
// or a close it cancels (IORING_OP_ASYNC_CANCEL, 5.5) and parks again until
// the operation's final CQE (Go's Windows execIO does the same with
// CancelIoEx + runtime_pollWaitCanceled). So the caller's buffer, and the
// sockaddr of accept/connect, stay valid until the kernel is done with
// them, with no copy; the G's fdMutex reference also keeps the fd open
// until then (close(2) cancels nothing, IO_URING.md). A cancel that loses
// the race lets the operation's own result through: data that arrived is
// returned, not lost (conformance 10), an accepted fd is returned, not leaked.
//
// evict (close) cancels nothing itself: netpoll_evict wakes the parked Gs
// and each cancels its own operation, so the cancel is always queued after
// the SQE it targets, on the same ring (see evict below).
//
// ── Multishot accept (5.19; MNP_URING_ACCEPT=multishot|single) ─────────────
// A listener owns one operation at a time, armed by the first accept() that
// finds its queue empty, and a queue of connections the kernel accepted
// (AcceptState, under pd->lock). accept() pops the queue without a park
// while it holds connections; the G parks only on an empty queue.
//
//   accept(): queue empty ─► MULTISHOT ACCEPT + DONTWAIT (6.10) ──► CQE fd (F_MORE) → queue
//                                   ▲        one burst: the kernel   CQE fd (F_MORE) → queue
//                                   │        drains the backlog      CQE -EAGAIN (ends it)
//                  readable: arm ───┤                                      │
//                                   └────── POLL_ADD (one-shot) ◄──────────┘
//
// DONTWAIT makes each multishot a burst that ends on an empty backlog, and
// a one-shot poll waits for the next one. Why not one multishot left armed
// for good: it snapshots RLIMIT_NOFILE when armed (io_accept_prep), so a
// limit lowered meanwhile is ignored and fds past it are handed out
// (conformance 24 and bugclass 32 lower it); a burst re-snapshots it. A
// kernel before 6.10 answers EINVAL to DONTWAIT: the multishot that waits
// (armed for good, with that caveat) is next, then single-shot accept
// (5.5), one level at a time, learnt once per poller.
// The queue is bounded (kAcceptQueueMax): past it the multishot is
// cancelled and the rest waits in the kernel's backlog. A CQE without
// F_MORE and with a connection (CQ overflow) re-arms. -EMFILE ends the
// multishot and leaves the connection in the backlog: accept() returns it
// and the next accept() (after the caller's back-off) re-arms, never a
// loop here. A deadline ends only the G's wait: the operation and the queue
// are the listener's. close: cancel (again on -EALREADY), wait for the last
// CQE (the operation holds the file: close(2) cancels nothing), close every
// queued connection. The peer address: the multishot has one sockaddr for
// all its CQEs, so accept() asks getpeername (counted in sys_sockopt).
//
// Measured (2-CPU VM, debugoptimized build, MNP_PROCS=1): the shoot-out's pp 64B
// x10000 cell, where the loadgen opens 10,000 connections (256 pending at a
// time) while the established ones ping-pong at full speed: single-shot
// never got there ("only 6,355 of 10,000 connections ready" after 20 s;
// each accept is an op round trip, and each waits behind every runnable G,
// so accepting 10,000 cost 10,000 trips through a run queue growing to
// thousands); multishot: all 10,000 ready in 5.1-7.1 s (epoll 1.4-3.1 s;
// the remaining gap is each new connection's first recv+send, two more op
// round trips before its first echo). In bench/results/latest.md the cell
// has a result again: 207,918 msgs/s, 4.68 µs CPU/msg (epoll 131,145).
// A plain thread connecting serially
// (UringAccept.ManyConnectsAllAccepted, MNP_TEST_ACCEPT_N=10000): 90k vs
// 87k accepts/s, multishot vs single-shot: the client's connect is the
// bottleneck there, and the two tie.
//
// ── Multishot recv (6.0; MNP_URING_RECV=multishot, off by default) ───────────
// One multishot recv per connection into a provided-buffer ring (one per
// runtime, on ring 0, set up by hand: UringBase::setup_bufs), armed by the
// first read that finds nothing buffered. Each CQE's bytes are kept per fd
// (RecvState: chunks of buffers, in arrival order); read() copies from
// them, gives emptied buffers back, and parks only when nothing is
// buffered. Ends of the request (a CQE without F_MORE): EOF (res 0, kept
// and returned after the last byte); -ENOBUFS (the ring ran dry; the data
// is still in the socket: the next read that finds nothing buffered does
// one plain recv into the caller's buffer, so no order can break, and the
// read after that re-arms); our cancel (past recv_cap_ bytes buffered per
// connection the multishot is cancelled: memory is bounded by the ring,
// BUF_COUNT x BUF_SIZE, 256 x 16 KiB by default, and per connection by the
// cap); an error (returned after the buffered bytes). A deadline ends the
// G's wait only; close cancels, waits for the last CQE, gives the
// connection's buffers back.
// Measured against plain recv (same shoot-out, 3 interleaved rounds, CPU
// µs/msg, syscalls/msg; the machine was shared, "other" ~0.9 CPU):
//   pp 64B x50     3.21 vs 3.22 µs, 0.041 vs 0.045   (a tie)
//   pp 64B x1000   4.61 vs 4.22 µs, 0.038 vs 0.032   (worse: 1,000 messages in
//                  flight hold 1,000 16 KiB buffers of 256: -ENOBUFS 0.68/msg)
//   stream 16K x8  6.20 vs 6.83 µs, 0.15 vs 0.34     (better: parks 1.08 vs 2.03
//                  per chunk, 90k vs 82k msgs/s)
// It does not pay where it matters most for this runtime (many connections,
// small messages: a whole provided buffer per small message; incremental
// buffer consumption, IOU_PBUF_RING_INC in 6.12, would fix that, liburing
// 2.3 lacks it), so it stays off by default and tested (UringRecv).
//
// ── Streaming: direct syscalls while data keeps coming (MNP_URING_DIRECT) ────
// A read of at least kDirectMin bytes that fills the caller's buffer says
// more is probably waiting. Then the next read and write of that fd try a
// plain non-blocking recv/send first, and only on EAGAIN become operations
// (a read that comes back short, or EAGAIN, ends it). Small messages never
// fill a buffer, nor do exact small reads count (a 4-byte header read
// says nothing), so ping-pong stays on the ring at 0.03 syscalls/msg.
// Why: with operations only, each chunk cost two parks (the recv's CQE,
// then the send's: the caller's buffer must outlive the send) and one trip
// through the scheduler each; the server fell behind, the client went idle
// between bursts, and every send then paid the kernel's wake-up of a
// sleeping client (perf: 25% of server CPU in _raw_spin_unlock_irqrestore
// under sock_def_readable, vs 4% on epoll). Measured (shoot-out, stream 16K
// x8, 3 interleaved rounds, medians): 109,375 -> 272,958 msgs/s (0.40x ->
// 0.99x Go, now client-bound), 9.14 -> 3.59 CPU us/msg, 0.26 -> 2.03
// syscalls/msg; pp 64B x1/x50/x1000 unchanged within noise (sys/msg 2.00 /
// 0.04 / 0.03 both ways). Sending without waiting for the CQE (a copy of
// the caller's bytes) was the other way: it keeps one park per chunk, and
// the direct send alone measured 116,555 msgs/s, so the read side decides.
// Ordering is safe: a side has one read or write at a time (fdMutex), and
// an operation is waited for to its CQE before the next syscall.
//
// Results, as epoll's path reports them: > 0 bytes; 0 = EOF for a read;
// -ECANCELED = the G's own cancel (timeout / closed) or, with no error
// state, the exit of the M that submitted it (retry); -EINTR: retry;
// -EAGAIN (some kernels, on non-blocking fds, IO_URING.md): wait for
// readiness with a one-shot POLL_ADD, then retry; short sends: loop.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>

#include "netpoll/netpoll.h"
#include "netpoll/uring_ring.h"
#include "sys/sys.h"

namespace mnp::rt {

namespace {

using uring::Kind;
using uring::tag;

using uring::FdState;
using uring::Op;
using uring::opDone;
using uring::opIdle;
using uring::opInflight;

// An SQE's length is 32 bits: larger transfers go in pieces (reads return
// less, writes loop).
constexpr size_t kMaxIO = size_t{1} << 30;

// Streaming: a read of at least this many bytes that fills the caller's
// buffer makes the next read and write try a plain syscall first.
constexpr size_t kDirectMin = 4096;

constexpr uint8_t kKindOther = 2;  // FD::Kind::other: read(2)/write(2), not recv/send

// IORING_ACCEPT_DONTWAIT (6.10; liburing 2.3 lacks the name): the accept
// fails with -EAGAIN instead of waiting in the kernel.
constexpr uint16_t kAcceptDontwait = 1u << 1;

Error poll_error(PollErr e, const char* op) {
  return e == PollErr::closing ? Error(Errc::closed, op) : Error(Errc::timeout, op);
}

class UringPoller final : public uring::UringBase {
 public:
  const char* name() const override { return "uring"; }
  bool completion() const override { return true; }

  int open(int, PollDesc* pd) override {
    FdState* st = uring::fd_state(pd);
    if (uring::AcceptState* a = st->acc.load(std::memory_order_acquire)) {
      // A pollDesc that served a listener before (close emptied it).
      LockGuard<SpinLock> l(pd->lock);
      a->err = 0;
      a->level = static_cast<uint8_t>(acc_level_.load(std::memory_order_relaxed));
    }
    if (uring::RecvState* rs = st->rcv.load(std::memory_order_acquire)) {
      LockGuard<SpinLock> l(pd->lock);
      rs->end = 0;
      rs->stopped = false;
    }
    return 0;
  }

  // The G's own operations ended before the last fdMutex reference dropped
  // (run() waits for their final CQEs). What the pollDesc itself owns does
  // not: a listener's multishot accept (or its readiness poll) holds the
  // file until its last CQE (close(2) cancels nothing), and accepted
  // connections may wait in its queue. Cancel, wait for the last CQE, close
  // what nobody accepted.
  void close(int, PollDesc* pd) override {
    auto* st = static_cast<FdState*>(pd->backend.load(std::memory_order_acquire));
    if (!st) return;
    if (uring::RecvState* rs = st->rcv.load(std::memory_order_acquire)) close_recv(pd, *rs);
    uring::AcceptState* a = st->acc.load(std::memory_order_acquire);
    if (!a) return;
    int ring = -1;
    {
      LockGuard<SpinLock> l(pd->lock);
      if (a->armed) {
        cancel_accept_locked(pd, *a);
        ring = a->ring;
      }
    }
    if (ring >= 0) {
      submit_now(ring_at(ring));
      for (;;) {
        {
          LockGuard<SpinLock> l(pd->lock);
          if (!a->armed) break;
        }
        netpoll_wait_canceled(pd, 'r');
      }
    }
    std::deque<int> left;
    {
      LockGuard<SpinLock> l(pd->lock);
      left.swap(a->fds);
      a->err = 0;
    }
    for (int fd : left) sys::close(fd);
  }

  // close: netpoll_evict has already woken the Gs parked on the slots (and a
  // G not yet parked sees `closing` before it parks); each cancels its own
  // operation. Not from here: a cancel queued by this thread could reach the
  // ring before the SQE of an operation its G is queuing at this moment,
  // find nothing, and leave that operation waiting (a recv for data that
  // never comes). The G's cancel always follows its own SQE on its ring.
  void evict(PollDesc*) override {}

  IOResult read(PollDesc* pd, void* buf, size_t n) override {
    n = std::min(n, kMaxIO);
    const bool sock = pd->kind != kKindOther;
    if (sock && recv_multi_) return read_multi(pd, static_cast<char*>(buf), n);
    return read_single(pd, buf, n);
  }

  IOResult read_single(PollDesc* pd, void* buf, size_t n) {
    const int fd = pd->fd;
    const bool sock = pd->kind != kKindOther;
    std::atomic<bool>& streaming = uring::fd_state(pd)->streaming;
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'r'); e != PollErr::none)
        return {0, poll_error(e, "read")};
      if (sock && direct_ && streaming.load(std::memory_order_relaxed)) {
        ssize_t r = sys::recv(fd, buf, n, MSG_DONTWAIT);
        if (r > 0) {
          if (static_cast<size_t>(r) < n) streaming.store(false, std::memory_order_relaxed);
          return {static_cast<size_t>(r), {}};
        }
        if (r == 0) return {0, Error(Errc::eof, "read")};
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return {0, Error::from_errno("read", errno)};
        streaming.store(false, std::memory_order_relaxed);
      }
      PollErr gave;
      int r = run(
          pd, 0,
          [&](io_uring_sqe* sqe) {
            if (sock)
              io_uring_prep_recv(sqe, fd, buf, n, 0);
            else
              io_uring_prep_read(sqe, fd, buf, static_cast<unsigned>(n), static_cast<uint64_t>(-1));
          },
          &gave);
      if (r > 0) {
        if (sock && direct_ && static_cast<size_t>(r) == n && n >= kDirectMin)
          streaming.store(true, std::memory_order_relaxed);
        return {static_cast<size_t>(r), {}};
      }
      if (r == 0) return {0, Error(Errc::eof, "read")};
      if (Error e = retry_or_error(pd, 0, r, gave, "read")) return {0, e};
    }
  }

  IOResult write(PollDesc* pd, const void* buf, size_t n) override {
    const int fd = pd->fd;
    const bool sock = pd->kind != kKindOther;
    const char* p = static_cast<const char*>(buf);
    size_t done = 0;
    // A stream send can be short (IO_URING.md: an 8 MiB send returned 32 KiB):
    // loop until every byte is handed over, as write(2) callers must.
    const bool direct =
        sock && direct_ && uring::fd_state(pd)->streaming.load(std::memory_order_relaxed);
    while (done < n) {
      if (PollErr e = netpoll_check_err(pd, 'w'); e != PollErr::none)
        return {done, poll_error(e, "write")};
      if (direct) {
        ssize_t r =
            sys::send(fd, p + done, std::min(n - done, kMaxIO), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) {
          done += static_cast<size_t>(r);
          continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          return {done, Error::from_errno("write", errno)};
      }
      PollErr gave;
      int r = run(
          pd, 1,
          [&](io_uring_sqe* sqe) {
            if (sock)
              io_uring_prep_send(sqe, fd, p + done, std::min(n - done, kMaxIO), MSG_NOSIGNAL);
            else
              io_uring_prep_write(sqe, fd, p + done,
                                  static_cast<unsigned>(std::min(n - done, kMaxIO)),
                                  static_cast<uint64_t>(-1));
          },
          &gave);
      if (r >= 0) {
        done += static_cast<size_t>(r);
        continue;
      }
      if (Error e = retry_or_error(pd, 1, r, gave, "write")) return {done, e};
    }
    return {done, {}};
  }

  // accept: the multishot path (see "Multishot accept" at the top), or the
  // single-shot one (MNP_URING_ACCEPT=single, or a kernel without it).
  Result<int> accept(PollDesc* pd, sockaddr* sa, socklen_t* len) override {
    const int lvl = acc_level_.load(std::memory_order_relaxed);
    if (lvl >= kAccSingle) return accept_single(pd, sa, len);
    FdState* st = uring::fd_state(pd);
    if (!st->acc.load(std::memory_order_acquire)) {
      LockGuard<SpinLock> l(pd->lock);
      if (!st->acc.load(std::memory_order_relaxed)) {
        auto* fresh = new uring::AcceptState;
        fresh->level = static_cast<uint8_t>(lvl);
        st->acc.store(fresh, std::memory_order_release);
      }
    }
    uring::AcceptState& a = *st->acc.load(std::memory_order_acquire);
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'r'); e != PollErr::none)
        return {-1, poll_error(e, "accept")};
      int fd = -1, err = 0, level;
      {
        LockGuard<SpinLock> l(pd->lock);
        level = a.level;
        if (!a.fds.empty()) {
          fd = a.fds.front();
          a.fds.pop_front();
        } else if (a.err) {
          err = a.err;
          a.err = 0;
        } else if (!a.armed && level < kAccSingle) {
          if (pd->closing) return {-1, Error(Errc::closed, "accept")};
          arm_accept_locked(pd, a);
        }
      }
      if (fd >= 0) {
        note_accept_level(level);
        // The multishot has no address buffer of its own per connection
        // (one buffer would be overwritten by the next): ask the socket.
        if (sa && len) {
          stat_add(Stat::sys_sockopt);
          if (::getpeername(fd, sa, len) != 0) *len = 0;
        }
        return {fd, {}};
      }
      if (level >= kAccSingle) {
        // This listener fell back to single-shot accept (EINVAL below).
        Result<int> r = accept_single(pd, sa, len);
        if (r.err && r.err.sys_errno() == EINVAL) {
          // Not a listening socket at all: the multishot was not at fault.
          LockGuard<SpinLock> l(pd->lock);
          a.level = static_cast<uint8_t>(acc_level_.load(std::memory_order_relaxed));
          return r;
        }
        note_accept_level(kAccSingle);
        return r;
      }
      if (err == EINVAL) {
        // The kernel rejected the flags (DONTWAIT before 6.10, multishot
        // before 5.19), or the socket does not listen: try the next level
        // down; where the socket is at fault every level says EINVAL.
        LockGuard<SpinLock> l(pd->lock);
        if (a.level < kAccSingle) a.level++;
        continue;
      }
      if (err == ECONNABORTED || err == EINTR) continue;
      if (err) {
        note_accept_level(level);
        return {-1, Error::from_errno("accept", err)};
      }
      if (PollErr e = netpoll_wait(pd, 'r'); e != PollErr::none)
        return {-1, poll_error(e, "accept")};
    }
  }

  // An accept op that waits in the kernel took its RLIMIT_NOFILE when it was
  // submitted (io_accept_prep snapshots it), so it would ignore a limit
  // lowered meanwhile and hand out an fd past it (conformance 24 lowers the
  // limit to fill the table). With IORING_ACCEPT_DONTWAIT (6.10) the op
  // never waits: -EAGAIN, then a one-shot POLL_ADD until the listener is
  // readable, then a fresh accept op. Without it (older kernels), a plain
  // accept op that waits.
  Result<int> accept_single(PollDesc* pd, sockaddr* sa, socklen_t* len) {
    const int fd = pd->fd;
    const socklen_t len0 = len ? *len : 0;
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'r'); e != PollErr::none)
        return {-1, poll_error(e, "accept")};
      if (len) *len = len0;
      const bool dontwait = accept_dontwait_.load(std::memory_order_relaxed);
      PollErr gave;
      int r = run(
          pd, 0,
          [&](io_uring_sqe* sqe) {
            io_uring_prep_accept(sqe, fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (dontwait) sqe->ioprio |= kAcceptDontwait;
          },
          &gave);
      if (r >= 0) return {r, {}};
      if (r == -EINVAL && dontwait && gave == PollErr::none) {
        // A kernel before 6.10 rejects the flag; a socket that does not
        // listen fails with EINVAL too, so the flag is only dropped if the
        // plain accept does not fail the same way.
        if (len) *len = len0;
        r = run(
            pd, 0,
            [&](io_uring_sqe* sqe) {
              io_uring_prep_accept(sqe, fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            },
            &gave);
        if (r != -EINVAL) accept_dontwait_.store(false, std::memory_order_relaxed);
        if (r >= 0) return {r, {}};
      }
      if (r == -ECONNABORTED) continue;  // the peer gave up while queued: take the next one
      // EMFILE/ENFILE: the connection stays queued; the caller backs off.
      // EAGAIN (nothing queued): wait for readability, then accept again.
      if (Error e = retry_or_error(pd, 0, r, gave, "accept")) return {-1, e};
    }
  }

  Error connect(PollDesc* pd, const sockaddr* sa, socklen_t len) override {
    const int fd = pd->fd;
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'w'); e != PollErr::none)
        return poll_error(e, "connect");
      PollErr gave;
      int r = run(
          pd, 1, [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, sa, len); }, &gave);
      if (r == 0 || r == -EISCONN) return {};
      // Kernels before 5.x's in-progress tracking report the handshake as
      // still under way: wait for writability and ask SO_ERROR, as fd.cpp does.
      if (r == -EINPROGRESS || r == -EALREADY) break;
      // EAGAIN from connect means no local port is free: an error, as in fd.cpp.
      if (r == -EAGAIN && gave == PollErr::none) return Error::from_errno("connect", EAGAIN);
      if (Error e = retry_or_error(pd, 1, r, gave, "connect")) return e;
    }
    for (;;) {
      if (Error e = wait_ready(pd, 1, POLLOUT, "connect")) return e;
      int soerr = 0;
      socklen_t sl = sizeof soerr;
      if (sys::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return Error::from_errno("connect", errno);
      switch (soerr) {
        case 0:
        case EISCONN:
          return {};
        case EINPROGRESS:
        case EALREADY:
        case EINTR:
          continue;
        default:
          return Error::from_errno("connect", soerr);
      }
    }
  }

 protected:
  void complete(const io_uring_cqe& cqe, G** list) override {
    Kind k = uring::tag_kind(cqe.user_data);
    if (k == Kind::acc || k == Kind::acc_poll || k == Kind::acc_cancel) {
      complete_accept(cqe, list);
      return;
    }
    if (k == Kind::recv_ms || k == Kind::recv_cancel) {
      complete_recv(cqe, list);
      return;
    }
    if (k != Kind::op_read && k != Kind::op_write) return;
    PollDesc* pd = pd_at(uring::tag_index(cqe.user_data));
    auto* f = pd ? static_cast<FdState*>(pd->backend.load(std::memory_order_acquire)) : nullptr;
    if (!f) return;
    const int side = k == Kind::op_write ? 1 : 0;
    Op& op = f->op[side];
    // An older operation's CQE (cannot happen while Gs wait for their final
    // CQEs, but a generation check is cheap and makes it certain).
    if ((op.gen.load(std::memory_order_relaxed) & uring::kGenMask) !=
            uring::tag_gen(cqe.user_data) ||
        op.state.load(std::memory_order_acquire) != opInflight)
      return;
    op.res.store(cqe.res, std::memory_order_relaxed);
    op.state.store(opDone, std::memory_order_release);
    stat_add(Stat::poll_events);
    netpollready(list, pd, side ? 'w' : 'r');
  }

 private:
  std::atomic<bool> accept_dontwait_{true};  // until a kernel says EINVAL

  // --- multishot recv ---
 public:
  bool direct_ = true;
  bool recv_multi_ = false;
  // A connection stops receiving into provided buffers past this many
  // bytes buffered and unread (its multishot is cancelled, the rest waits
  // in the socket, and the next read that finds nothing buffered re-arms).
  size_t recv_cap_ = 64 << 10;
  void enable_recv_multi(unsigned entries, unsigned size) {
    recv_multi_ = true;
    feat_.recv_multi = true;
    recv_cap_ = std::max<size_t>(recv_cap_, size);
    (void)entries;
  }
  bool setup_recv_bufs(unsigned entries, unsigned size, std::string* why) {
    return setup_bufs(ring_at(0), entries, size, why);
  }

 private:
  // Copies what is buffered for this connection into buf, in arrival
  // order, and gives the buffers it emptied back. Under pd->lock.
  size_t take_locked(uring::RecvState& rs, char* buf, size_t n) {
    uring::Ring& r0 = ring_at(0);
    size_t got = 0;
    while (got < n && !rs.chunks.empty()) {
      uring::RecvState::Chunk& c = rs.chunks.front();
      const size_t k = std::min<size_t>(n - got, c.len);
      std::memcpy(buf + got, r0.bufs->addr(c.bid) + c.off, k);
      c.off += static_cast<uint32_t>(k);
      c.len -= static_cast<uint32_t>(k);
      got += k;
      rs.buffered -= k;
      if (c.len == 0) {
        give_buf(r0, c.bid);
        rs.chunks.pop_front();
      }
    }
    return got;
  }

  void arm_recv_locked(PollDesc* pd, uring::RecvState& rs) {
    uring::Ring& r0 = ring_at(0);  // the ring that holds the buffer group
    rs.gen++;
    rs.armed = true;
    rs.cancel_sent = false;
    rs.ring = 0;
    const uint64_t t = tag(Kind::recv_ms, rs.gen, pd->index);
    const int fd = pd->fd;
    const uint16_t bgid = r0.bufs->bgid;
    submit(r0, [&](io_uring_sqe* sqe) {
      io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = bgid;
      sqe->user_data = t;
    });
  }

  void cancel_recv_locked(PollDesc* pd, uring::RecvState& rs) {
    if (!rs.armed || rs.cancel_sent) return;
    rs.cancel_sent = true;
    const uint64_t target = tag(Kind::recv_ms, rs.gen, pd->index);
    const uint64_t t = tag(Kind::recv_cancel, rs.gen, pd->index);
    const bool skip = feat_.cqe_skip;
    submit(ring_at(rs.ring), [&](io_uring_sqe* sqe) {
      io_uring_prep_cancel64(sqe, target, 0);
      sqe->user_data = t;
      if (skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    });
  }

  // read with multishot recv: buffered bytes first; else arm (once) and wait.
  IOResult read_multi(PollDesc* pd, char* buf, size_t n) {
    FdState* st = uring::fd_state(pd);
    if (!st->rcv.load(std::memory_order_acquire)) {
      LockGuard<SpinLock> l(pd->lock);
      if (!st->rcv.load(std::memory_order_relaxed))
        st->rcv.store(new uring::RecvState, std::memory_order_release);
    }
    uring::RecvState& rs = *st->rcv.load(std::memory_order_acquire);
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'r'); e != PollErr::none)
        return {0, poll_error(e, "read")};
      size_t got;
      int end = 0;
      bool single = false;
      {
        LockGuard<SpinLock> l(pd->lock);
        got = take_locked(rs, buf, n);
        if (got == 0) {
          if (rs.end) {
            end = rs.end;
          } else if (!rs.armed) {
            if (pd->closing) return {0, Error(Errc::closed, "read")};
            if (rs.stopped) {
              // The buffer ring ran dry (-ENOBUFS): the data is still in the
              // socket. Nothing is buffered and nothing armed, so one plain
              // recv into the caller's buffer keeps the order; the next
              // read arms the multishot again.
              rs.stopped = false;
              single = true;
            } else {
              arm_recv_locked(pd, rs);
            }
          }
        }
      }
      if (got) return {got, {}};
      if (end == 1) return {0, Error(Errc::eof, "read")};
      if (end) return {0, Error::from_errno("read", end)};
      if (single) return read_single(pd, buf, n);
      if (PollErr e = netpoll_wait(pd, 'r'); e != PollErr::none) return {0, poll_error(e, "read")};
    }
  }

  void complete_recv(const io_uring_cqe& cqe, G** list) {
    const Kind k = uring::tag_kind(cqe.user_data);
    PollDesc* pd = pd_at(uring::tag_index(cqe.user_data));
    auto* f = pd ? static_cast<FdState*>(pd->backend.load(std::memory_order_acquire)) : nullptr;
    uring::RecvState* rs = f ? f->rcv.load(std::memory_order_acquire) : nullptr;
    const bool has_buf = (cqe.flags & IORING_CQE_F_BUFFER) != 0;
    const auto bid = static_cast<uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    if (!rs) {
      if (has_buf) give_buf(ring_at(0), bid);  // cannot happen; never leak a buffer
      return;
    }
    bool wake = false;
    {
      LockGuard<SpinLock> l(pd->lock);
      const bool current = uring::tag_gen(cqe.user_data) == (rs->gen & uring::kGenMask);
      if (k == Kind::recv_cancel) {
        if (cqe.res == -EALREADY && current && rs->armed) {
          rs->cancel_sent = false;
          cancel_recv_locked(pd, *rs);
        }
        return;
      }
      if (cqe.res > 0 && has_buf) {
        rs->chunks.push_back({bid, 0, static_cast<uint32_t>(cqe.res)});
        rs->buffered += static_cast<size_t>(cqe.res);
        stat_add(Stat::poll_events);
        wake = true;
      } else if (has_buf) {
        give_buf(ring_at(0), bid);
      }
      if (!current) {
        // An older request's CQE: only its data mattered.
      } else if (cqe.flags & IORING_CQE_F_MORE) {
        if (rs->buffered >= recv_cap_) cancel_recv_locked(pd, *rs);
      } else {
        // The request ended: EOF (0), the buffer ring ran dry (-ENOBUFS),
        // our cancel (cap, close), CQ overflow (data without F_MORE), or
        // the socket's error.
        rs->armed = false;
        rs->cancel_sent = false;
        if (cqe.res == 0) {
          rs->end = 1;
        } else if (cqe.res == -ENOBUFS) {
          rs->stopped = true;
          stat_add(Stat::uring_nobufs);
        } else if (cqe.res < 0 && cqe.res != -ECANCELED && cqe.res != -EINTR &&
                   cqe.res != -EAGAIN && !pd->closing) {
          rs->end = -cqe.res;
        }
        wake = true;
      }
    }
    if (wake) netpollready(list, pd, 'r');
  }

  // close: the multishot holds the file until its last CQE; then the
  // buffers of what nobody read go back to the ring.
  void close_recv(PollDesc* pd, uring::RecvState& rs) {
    bool wait = false;
    {
      LockGuard<SpinLock> l(pd->lock);
      if (rs.armed) {
        cancel_recv_locked(pd, rs);
        wait = true;
      }
    }
    if (wait) {
      submit_now(ring_at(rs.ring));
      for (;;) {
        {
          LockGuard<SpinLock> l(pd->lock);
          if (!rs.armed) break;
        }
        netpoll_wait_canceled(pd, 'r');
      }
    }
    LockGuard<SpinLock> l(pd->lock);
    for (const auto& c : rs.chunks) give_buf(ring_at(0), c.bid);
    rs.chunks.clear();
    rs.buffered = 0;
    rs.end = 0;
    rs.stopped = false;
  }

  // --- multishot accept ---
 public:
  // acc_level_: how this poller accepts. 0 multishot with DONTWAIT (6.10),
  // 1 multishot that waits in the kernel (5.19), 2 single-shot. It only
  // goes down a level when a listener saw EINVAL at one level and a
  // result at the next (the kernel lacks the feature, the socket is fine).
  static constexpr int kAccSingle = 2;
  std::atomic<int> acc_level_{0};
  void set_accept_level(int lvl) {
    acc_level_.store(lvl, std::memory_order_relaxed);
    feat_.accept_multi = lvl < kAccSingle;
  }

 private:
  // A listener's queue is bounded: past this many connections accepted and
  // not yet returned, the multishot is cancelled (the rest wait in the
  // kernel's backlog) and re-armed once accept() finds the queue empty.
  static constexpr size_t kAcceptQueueMax = 256;

  void note_accept_level(int level) {
    int cur = acc_level_.load(std::memory_order_relaxed);
    if (level > cur) set_accept_level(level);
  }

  // Under pd->lock: the SQE is queued before the lock is released, so a
  // close that cancels under the same lock always finds it (its cancel
  // follows in the SQ).
  void arm_accept_locked(PollDesc* pd, uring::AcceptState& a) {
    uring::Ring& r = submit_ring();
    a.gen++;
    a.armed = 1;
    a.armed_level = a.level;
    a.cancel_sent = false;
    a.ring = static_cast<uint16_t>(r.index);
    const uint64_t t = tag(Kind::acc, a.gen, pd->index);
    const int fd = pd->fd;
    const bool dontwait = a.level == 0;
    submit(r, [&](io_uring_sqe* sqe) {
      io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (dontwait) sqe->ioprio |= kAcceptDontwait;
      sqe->user_data = t;
    });
  }

  // Between bursts (DONTWAIT): a one-shot poll until the backlog has a
  // connection again; its CQE arms the next multishot, whose RLIMIT_NOFILE
  // snapshot is then fresh (conformance 24).
  void arm_accept_poll_locked(PollDesc* pd, uring::AcceptState& a) {
    uring::Ring& r = submit_ring();
    a.gen++;
    a.armed = 2;
    a.cancel_sent = false;
    a.ring = static_cast<uint16_t>(r.index);
    const uint64_t t = tag(Kind::acc_poll, a.gen, pd->index);
    const int fd = pd->fd;
    submit(r, [&](io_uring_sqe* sqe) {
      io_uring_prep_poll_add(sqe, fd, POLLIN);
      sqe->user_data = t;
    });
  }

  void cancel_accept_locked(PollDesc* pd, uring::AcceptState& a) {
    if (!a.armed || a.cancel_sent) return;
    a.cancel_sent = true;
    const uint64_t target = tag(a.armed == 1 ? Kind::acc : Kind::acc_poll, a.gen, pd->index);
    const uint64_t t = tag(Kind::acc_cancel, a.gen, pd->index);
    const bool skip = feat_.cqe_skip;
    submit(ring_at(a.ring), [&](io_uring_sqe* sqe) {
      io_uring_prep_cancel64(sqe, target, 0);
      sqe->user_data = t;
      if (skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    });
  }

  void complete_accept(const io_uring_cqe& cqe, G** list) {
    const Kind k = uring::tag_kind(cqe.user_data);
    PollDesc* pd = pd_at(uring::tag_index(cqe.user_data));
    auto* f = pd ? static_cast<FdState*>(pd->backend.load(std::memory_order_acquire)) : nullptr;
    uring::AcceptState* a = f ? f->acc.load(std::memory_order_acquire) : nullptr;
    if (!a) {
      if (k == Kind::acc && cqe.res >= 0) sys::close(cqe.res);  // cannot happen; never leak
      return;
    }
    bool wake = false;
    {
      LockGuard<SpinLock> l(pd->lock);
      const bool current = uring::tag_gen(cqe.user_data) == (a->gen & uring::kGenMask);
      if (k == Kind::acc_cancel) {
        // -EALREADY: the target was running (posting a connection) and
        // stays armed: ask again. -ENOENT: its last CQE is on its way.
        if (cqe.res == -EALREADY && current && a->armed) {
          a->cancel_sent = false;
          cancel_accept_locked(pd, *a);
        }
        return;
      }
      if (k == Kind::acc && cqe.res >= 0) {
        a->fds.push_back(cqe.res);
        stat_add(Stat::poll_events);
        wake = true;
      }
      if (!current) {
        // An older operation's CQE: only its connection mattered.
      } else if (k == Kind::acc && (cqe.flags & IORING_CQE_F_MORE)) {
        if (a->fds.size() >= kAcceptQueueMax) cancel_accept_locked(pd, *a);
      } else {
        // The operation ended: the multishot (CQE without F_MORE), or the
        // readiness poll.
        const int err = cqe.res < 0 ? -cqe.res : 0;
        a->armed = 0;
        a->cancel_sent = false;
        const bool room = !pd->closing && a->fds.size() < kAcceptQueueMax;
        if (k == Kind::acc_poll) {
          // Readable: drain the backlog. ECANCELED (close) or an error: let
          // accept() look (its next multishot reports the socket's error).
          if (room && err == 0) arm_accept_locked(pd, *a);
        } else if (err == EAGAIN) {
          // DONTWAIT: the backlog is empty. Wait for the next connection.
          if (room) arm_accept_poll_locked(pd, *a);
        } else if (err == 0) {
          // CQ overflow ended it (IO_URING.md): arm it again.
          if (room) arm_accept_locked(pd, *a);
        } else if (err != ECANCELED && !pd->closing) {
          // EMFILE (the connection stays in the backlog), EINVAL, ...:
          // accept() returns it; re-arming is the next accept()'s, after
          // the caller's back-off, never a loop here.
          a->err = err;
        }
        if (!a->armed) wake = true;
      }
    }
    if (wake) netpollready(list, pd, 'r');
  }

  void request_cancel(Op& op, uint64_t target) {
    if (op.cancel_sent.exchange(true, std::memory_order_acq_rel)) return;
    cancel(ring_at(op.ring.load(std::memory_order_relaxed)), target);
  }

  // Runs one operation to its final CQE and returns the CQE's result.
  // *gave says whether the G gave up on the way (deadline, close): then the
  // operation was cancelled, and the result is -ECANCELED or, if the
  // operation won the race, its own.
  template <class Prep>
  int run(PollDesc* pd, int side, Prep&& prep, PollErr* gave) {
    Op& op = uring::fd_state(pd)->op[side];
    const int mode = side ? 'w' : 'r';
    // A completion left in the slot by an earlier operation that the G
    // abandoned after it had arrived: not this operation's.
    netpoll_reset(pd, mode);
    const uint32_t gen = op.gen.load(std::memory_order_relaxed) + 1;
    op.gen.store(gen, std::memory_order_relaxed);
    op.cancel_sent.store(false, std::memory_order_relaxed);
    uring::Ring& r = submit_ring();
    op.ring.store(static_cast<uint16_t>(r.index), std::memory_order_relaxed);
    op.state.store(opInflight, std::memory_order_release);
    const uint64_t t = tag(side ? Kind::op_write : Kind::op_read, gen, pd->index);
    submit(r, [&](io_uring_sqe* sqe) {
      prep(sqe);
      sqe->user_data = t;
    });
    PollErr e;
    do {
      e = netpoll_wait(pd, mode);
    } while (e == PollErr::none && op.state.load(std::memory_order_acquire) != opDone);
    if (e != PollErr::none && op.state.load(std::memory_order_acquire) != opDone) {
      request_cancel(op, t);
      while (op.state.load(std::memory_order_acquire) != opDone) netpoll_wait_canceled(pd, mode);
    }
    *gave = e;
    int res = op.res.load(std::memory_order_relaxed);
    op.state.store(opIdle, std::memory_order_relaxed);
    return res;
  }

  // Waits for readiness with a one-shot POLL_ADD (the -EAGAIN fallback).
  Error wait_ready(PollDesc* pd, int side, unsigned mask, const char* what) {
    if (PollErr e = netpoll_check_err(pd, side ? 'w' : 'r'); e != PollErr::none)
      return poll_error(e, what);
    PollErr gave;
    int r = run(
        pd, side, [&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, pd->fd, mask); }, &gave);
    if (r >= 0) return {};
    if (gave != PollErr::none) return poll_error(gave, what);
    if (r == -ECANCELED || r == -EINTR) return {};  // retry the operation
    return Error::from_errno(what, -r);
  }

  // A negative result: the error to return, or no error for "try again".
  Error retry_or_error(PollDesc* pd, int side, int r, PollErr gave, const char* what) {
    int err = -r;
    if (err == ECANCELED || err == EINTR || err == EAGAIN) {
      if (gave != PollErr::none) return poll_error(gave, what);
      if (err == ECANCELED) {
        // Not our cancel: the M that submitted it exited. The pollDesc's
        // own state decides.
        if (PollErr e = netpoll_check_err(pd, side ? 'w' : 'r'); e != PollErr::none)
          return poll_error(e, what);
        return {};
      }
      if (err == EAGAIN) return wait_ready(pd, side, side ? POLLOUT : POLLIN, what);
      return {};
    }
    return Error::from_errno(what, err);
  }
};

}  // namespace

Poller* make_uring_poller(std::string* why) {
  static const int ops[] = {IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL, IORING_OP_RECV,
                            IORING_OP_SEND,     IORING_OP_ACCEPT,       IORING_OP_CONNECT,
                            IORING_OP_READ,     IORING_OP_WRITE,        -1};
  auto* p = new UringPoller;
  if (!p->init("uring", ops, why)) {
    delete p;
    return nullptr;
  }
  // Multishot accept (5.19) has no opcode of its own: CANCEL_FD|ALL came in
  // the same release (the stand-in the ring's probe already uses), and an
  // older kernel's EINVAL still falls back at the first accept.
  // MNP_URING_ACCEPT=single forces the single-shot path.
  const char* acc = std::getenv("MNP_URING_ACCEPT");
  const bool single = (acc && std::strcmp(acc, "single") == 0) || !p->features().cancel_fd;
  // MNP_URING_ACCEPT=multishot-wait: the multishot without DONTWAIT (what a
  // kernel before 6.10 gets), for measurement.
  const bool wait = acc && std::strcmp(acc, "multishot-wait") == 0;
  p->set_accept_level(single ? UringPoller::kAccSingle : wait ? 1 : 0);
  // Multishot recv into a provided buffer ring (6.0): MNP_URING_RECV=
  // multishot turns it on (off by default: see the numbers at the top).
  // IORING_OP_SEND_ZC came in 6.0 too: the stand-in probe; a kernel that
  // refuses the buffer ring leaves it off, with a note under
  // MNP_URING_VERBOSE. MNP_URING_BUF_COUNT / MNP_URING_BUF_SIZE size it.
  const bool verbose = std::getenv("MNP_URING_VERBOSE") && *std::getenv("MNP_URING_VERBOSE") == '1';
  if (const char* rv = std::getenv("MNP_URING_RECV"); rv && std::strcmp(rv, "multishot") == 0) {
    auto env_u = [](const char* name, unsigned dflt, unsigned lo, unsigned hi) {
      const char* v = std::getenv(name);
      long x = v ? std::strtol(v, nullptr, 10) : 0;
      return x >= lo && x <= hi ? static_cast<unsigned>(x) : dflt;
    };
    unsigned count = env_u("MNP_URING_BUF_COUNT", 256, 1, 32768);
    while (count & (count - 1)) count &= count - 1;  // a power of two
    const unsigned size = env_u("MNP_URING_BUF_SIZE", 16384, 16, 1u << 20);
    std::string bwhy;
    const bool has_op = p->probe_op(IORING_OP_SEND_ZC);
    if (!has_op) {
      if (verbose)
        std::fprintf(stderr, "mnp: uring: multishot recv off: the kernel lacks 6.0's ops\n");
    } else if (!p->setup_recv_bufs(count, size, &bwhy)) {
      if (verbose) std::fprintf(stderr, "mnp: uring: multishot recv off: %s\n", bwhy.c_str());
    } else {
      p->enable_recv_multi(count, size);
    }
  }
  // Streaming reads and writes go direct first (see "Streaming" at the top);
  // MNP_URING_DIRECT=0: operations only.
  if (const char* d = std::getenv("MNP_URING_DIRECT"); d && std::strcmp(d, "0") == 0)
    p->direct_ = false;
  if (verbose) std::fprintf(stderr, "mnp: %s\n", p->describe().c_str());
  return p;
}

}  // namespace mnp::rt
