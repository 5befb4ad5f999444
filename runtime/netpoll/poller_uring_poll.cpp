// runtime/netpoll/poller_uring_poll — io_uring as a readiness source ("uring-poll").
//
// The same model as epoll (poller_epoll.cpp), with io_uring in place of the
// epoll set: each fd gets one multishot IORING_OP_POLL_ADD (5.13) at open,
// for POLLIN | POLLOUT | POLLRDHUP, and every CQE it posts is readiness fed
// to netpollready. G-side nothing changes: FD tries the syscall, parks on
// EAGAIN, retries (fd.cpp). What changes is the poller's side: registering
// is an SQE batched with the round's others (no epoll_ctl each), the wait
// is an io_uring_enter, and deregistering is submitted at once and waited
// for (see close below).
//
// One registration, its CQEs:
//
//   open ──► POLL_ADD multishot (tag: index + fdseq) ──► CQE F_MORE ... CQE F_MORE
//                 ▲                                            │ (each → netpollready)
//                 │ re-arm, if the pollDesc is still this      ▼
//                 └─ registration and not closing ◄───── CQE without F_MORE
//                                                       (CQ overflow ended it, IO_URING.md)
//   close ──► POLL_REMOVE(tag) ──► the poll's last CQE (-ECANCELED): close(2) may go
//                 ▲                │
//                 └── -EALREADY ◄──┘ (the poll was posting an event: still armed)
//
// close(2) cancels nothing: a multishot poll holds a reference to the file,
// so without POLL_REMOVE the socket would stay open (no FIN to the peer, a
// listener keeps its port) after its fd is closed (liburing #568). So close
// submits the remove at once (one io_uring_enter, as epoll's EPOLL_CTL_DEL)
// and waits for the poll's last CQE before close(2) runs: that CQE (and the
// file's release) is posted by task work of the M that submitted the poll,
// which may be another M, busy or asleep. netpoll_close then bumps fdseq,
// so any CQE still queued for the old registration names an old generation
// and is dropped (conformance 20).
//
// Re-arming races close: complete() re-arms under pd->lock only while
// !pd->closing, and netpoll_evict sets closing (under the same lock) before
// close() queues the POLL_REMOVE, so a re-arm is always queued before the
// remove that must find it.
#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "netpoll/netpoll.h"
#include "netpoll/uring_ring.h"

namespace mnp::rt {

namespace {

using uring::Kind;
using uring::tag;

class UringPollPoller final : public uring::UringBase {
 public:
  const char* name() const override { return "uring-poll"; }

  int open(int fd, PollDesc* pd) override {
    uring::FdState* st = uring::fd_state(pd);
    uring::Ring& r = submit_ring();
    {
      LockGuard<SpinLock> l(pd->lock);
      st->poll_armed = true;
      st->poll_ring = static_cast<uint16_t>(r.index);  // re-arms and the remove go there too
    }
    arm(r, fd, pd->index, pd->fdseq.load(std::memory_order_acquire));
    return 0;
  }

  // Called where the FD's last reference drops (always on a G), right
  // before close(2).
  void close(int, PollDesc* pd) override {
    uring::Ring& r = ring_at(poll_ring_of(pd));
    remove(r, pd->index, pd->fdseq.load(std::memory_order_acquire));
    submit_now(r);
    // The poll holds a reference to the file until its last CQE, and that
    // CQE is posted by task work of the M that submitted the poll, maybe
    // another, busy, M. close(2) must drop the last reference (a listener
    // keeps its port, a connection sends no FIN otherwise): wait for it, on
    // the read slot, whatever the pollDesc's error state (it is closing).
    uring::FdState* st = uring::fd_state(pd);
    for (;;) {
      {
        LockGuard<SpinLock> l(pd->lock);
        if (!st->poll_armed) break;
      }
      netpoll_wait_canceled(pd, 'r');
    }
  }

 protected:
  // The ring of pd's poll, written under pd->lock by open() on whichever M
  // ran it; read under it too (the SQE's trip through the kernel orders the
  // two, but not in a way ThreadSanitizer, or the C++ model, can see).
  static uint16_t poll_ring_of(PollDesc* pd) {
    LockGuard<SpinLock> l(pd->lock);
    return uring::fd_state(pd)->poll_ring;
  }

  void complete(const io_uring_cqe& cqe, G** list) override {
    const Kind kind = uring::tag_kind(cqe.user_data);
    if (kind != Kind::poll && kind != Kind::remove) return;
    PollDesc* pd = pd_at(uring::tag_index(cqe.user_data));
    uint32_t gen = uring::tag_gen(cqe.user_data);
    if (!pd || (pd->fdseq.load(std::memory_order_acquire) & uring::kGenMask) != gen) return;
    if (kind == Kind::remove) {
      // -EALREADY: the poll was posting an event just then and stays armed
      // (a multishot is not ended by a remove that loses that race): ask
      // again. close() is still waiting, so the registration is current.
      if (cqe.res == -EALREADY) remove(ring_at(poll_ring_of(pd)), pd->index, gen);
      return;
    }
    if (cqe.res >= 0) {
      auto ev = static_cast<unsigned>(cqe.res);
      int mode = 0;
      // POLLRDHUP is the peer's FIN: read readiness (the read returns EOF),
      // not a hang-up of the write side (conformance 31, mio#933).
      if (ev & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) mode += 'r';
      if (ev & (POLLOUT | POLLHUP | POLLERR)) mode += 'w';
      if (mode != 0) {
        stat_add(Stat::poll_events);
        netpollready(list, pd, mode);
      }
    } else if (cqe.res != -ECANCELED) {
      // The poll itself failed: let both sides retry their syscall, which
      // returns the fd's own error.
      netpollready(list, pd, 'r' + 'w');
    }
    if (cqe.flags & IORING_CQE_F_MORE) return;
    // The multishot ended. By CQ overflow (res >= 0), by the exit of the
    // thread that submitted it, or by a transient error: arm it again. By
    // POLL_REMOVE (the pollDesc is closing) or a lasting error: it is gone;
    // wake close(), which waits for this.
    int err = cqe.res < 0 ? -cqe.res : 0;
    bool again = err == 0 || err == ECANCELED || err == EINTR || err == EAGAIN || err == ENOMEM;
    {
      LockGuard<SpinLock> l(pd->lock);
      if (again && !pd->closing &&
          (pd->fdseq.load(std::memory_order_acquire) & uring::kGenMask) == gen) {
        arm(ring_at(uring::fd_state(pd)->poll_ring), pd->fd, pd->index, gen);
        return;
      }
      uring::fd_state(pd)->poll_armed = false;
    }
    netpollready(list, pd, 'r');
  }

 private:
  // POLL_REMOVE by the registration's tag. A success posts nothing (its
  // CQE is skipped); the poll's own last CQE (-ECANCELED) follows.
  void remove(uring::Ring& r, uint32_t index, uint32_t seq) {
    submit(r, [&](io_uring_sqe* sqe) {
      io_uring_prep_poll_remove(sqe, tag(Kind::poll, seq, index));
      sqe->user_data = tag(Kind::remove, seq, index);
      if (feat_.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    });
  }

  void arm(uring::Ring& r, int fd, uint32_t index, uint32_t seq) {
    submit(r, [&](io_uring_sqe* sqe) {
      io_uring_prep_poll_multishot(sqe, fd, POLLIN | POLLOUT | POLLRDHUP);
      sqe->user_data = tag(Kind::poll, seq, index);
    });
  }
};

}  // namespace

Poller* make_uring_poll_poller(std::string* why) {
  static const int ops[] = {IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE, IORING_OP_ASYNC_CANCEL, -1};
  auto* p = new UringPollPoller;
  if (!p->init("uring-poll", ops, why)) {
    delete p;
    return nullptr;
  }
  if (const char* v = std::getenv("MNP_URING_VERBOSE"); v && *v == '1')
    std::fprintf(stderr, "mnp: %s\n", p->describe().c_str());
  return p;
}

}  // namespace mnp::rt
