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
// Results, as epoll's path reports them: > 0 bytes; 0 = EOF for a read;
// -ECANCELED = the G's own cancel (timeout / closed) or, with no error
// state, the exit of the M that submitted it (retry); -EINTR: retry;
// -EAGAIN (some kernels, on non-blocking fds, IO_URING.md): wait for
// readiness with a one-shot POLL_ADD, then retry; short sends: loop.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
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
    uring::fd_state(pd);
    return 0;
  }
  // Every operation ended before the last fdMutex reference dropped.
  void close(int, PollDesc*) override {}

  // close: netpoll_evict has already woken the Gs parked on the slots (and a
  // G not yet parked sees `closing` before it parks); each cancels its own
  // operation. Not from here: a cancel queued by this thread could reach the
  // ring before the SQE of an operation its G is queuing at this moment,
  // find nothing, and leave that operation waiting (a recv for data that
  // never comes). The G's cancel always follows its own SQE on its ring.
  void evict(PollDesc*) override {}

  IOResult read(PollDesc* pd, void* buf, size_t n) override {
    n = std::min(n, kMaxIO);
    const int fd = pd->fd;
    const bool sock = pd->kind != kKindOther;
    for (;;) {
      if (PollErr e = netpoll_check_err(pd, 'r'); e != PollErr::none)
        return {0, poll_error(e, "read")};
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
      if (r > 0) return {static_cast<size_t>(r), {}};
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
    while (done < n) {
      if (PollErr e = netpoll_check_err(pd, 'w'); e != PollErr::none)
        return {done, poll_error(e, "write")};
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

  // An accept op that waits in the kernel took its RLIMIT_NOFILE when it was
  // submitted (io_accept_prep snapshots it), so it would ignore a limit
  // lowered meanwhile and hand out an fd past it (conformance 24 lowers the
  // limit to fill the table). With IORING_ACCEPT_DONTWAIT (6.10) the op
  // never waits: -EAGAIN, then a one-shot POLL_ADD until the listener is
  // readable, then a fresh accept op. Without it (older kernels), a plain
  // accept op that waits.
  Result<int> accept(PollDesc* pd, sockaddr* sa, socklen_t* len) override {
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
    if (k != Kind::op_read && k != Kind::op_write) return;
    PollDesc* pd = pd_at(uring::tag_index(cqe.user_data));
    auto* f = pd ? static_cast<FdState*>(pd->backend) : nullptr;
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
  return p;
}

}  // namespace mnp::rt
