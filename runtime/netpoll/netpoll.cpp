// runtime/netpoll — the pollDesc state machine (see netpoll.h for the picture).
#include "netpoll/netpoll.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "netpoll/poller.h"

namespace mnp::rt {

namespace {

[[noreturn]] void fatal(const char* msg) {
  std::fprintf(stderr, "mnp: fatal error: %s\n", msg);
  std::abort();
}

// --- the pollDesc cache ------------------------------------------------------
// Chunks of PollDescs, never freed: an index (the poller's tag) stays valid
// for the life of the process, and a late event for a closed fd lands on a
// pollDesc whose fdseq has moved on.
constexpr uint32_t kChunk = 256;
constexpr uint32_t kMaxChunks = 1u << 14;  // 4M pollDescs
struct PdCache {
  std::mutex lock;
  PollDesc* first = nullptr;                       // free list (lock)
  std::atomic<PollDesc*> chunks[kMaxChunks] = {};  // written once each (lock)
  uint32_t nchunks = 0;
};
PdCache& pdcache() {
  static PdCache* c = new PdCache;  // never destroyed: late events may use it
  return *c;
}

}  // namespace

PollDesc* pd_alloc() {
  PdCache& c = pdcache();
  std::lock_guard<std::mutex> l(c.lock);
  if (!c.first) {
    if (c.nchunks == kMaxChunks) fatal("pollDesc cache exhausted");
    auto* chunk = new PollDesc[kChunk];
    for (uint32_t i = 0; i < kChunk; i++) {
      chunk[i].index = c.nchunks * kChunk + i;
      chunk[i].link = (i + 1 < kChunk) ? &chunk[i + 1] : nullptr;
    }
    c.chunks[c.nchunks].store(chunk, std::memory_order_release);
    c.nchunks++;
    c.first = chunk;
  }
  PollDesc* pd = c.first;
  c.first = pd->link;
  pd->link = nullptr;
  return pd;
}

void pd_free(PollDesc* pd) {
  PdCache& c = pdcache();
  std::lock_guard<std::mutex> l(c.lock);
  pd->link = c.first;
  c.first = pd;
}

PollDesc* pd_at(uint32_t index) {
  PdCache& c = pdcache();
  uint32_t ci = index / kChunk;
  if (ci >= kMaxChunks) return nullptr;
  PollDesc* chunk = c.chunks[ci].load(std::memory_order_acquire);
  return chunk ? &chunk[index % kChunk] : nullptr;
}

void pd_foreach(void (*fn)(PollDesc*, void*), void* arg) {
  PdCache& c = pdcache();
  for (uint32_t ci = 0; ci < kMaxChunks; ci++) {
    PollDesc* chunk = c.chunks[ci].load(std::memory_order_acquire);
    if (!chunk) break;
    for (uint32_t i = 0; i < kChunk; i++) fn(&chunk[i], arg);
  }
}

// --- error state ---------------------------------------------------------------

namespace {

// Recomputes pd->info from the fields under pd->lock (Go's publishInfo).
void publish_info(PollDesc* pd) {
  uint32_t info = 0;
  if (pd->closing) info |= pollClosing;
  if (pd->rd < 0) info |= pollExpiredReadDeadline;
  if (pd->wd < 0) info |= pollExpiredWriteDeadline;
  uint32_t old = pd->info.load(std::memory_order_relaxed);
  while (!pd->info.compare_exchange_weak(old, (old & pollEventErr) | info,
                                         std::memory_order_release)) {
  }
}

std::atomic<uintptr_t>& slot(PollDesc* pd, int mode) {
  return mode == 'r' ? pd->rg : pd->wg;
}

// Park commit, on g0 after the G left its stack: pdWait → G, unless an event
// (or a timeout, or close) got there first; then the G does not sleep.
bool netpollblockcommit(G* gp, void* gpp) {
  auto* s = static_cast<std::atomic<uintptr_t>*>(gpp);
  uintptr_t expect = pdWait;
  bool ok = s->compare_exchange_strong(expect, reinterpret_cast<uintptr_t>(gp),
                                       std::memory_order_acq_rel);
  if (ok) netpoll_waiter_added();
  return ok;
}

// Returns true if I/O is ready, false if the wait ended for another reason
// (timeout, close): the caller re-checks netpoll_check_err.
bool netpollblock(PollDesc* pd, int mode, bool waitio) {
  auto& gpp = slot(pd, mode);
  for (;;) {
    uintptr_t old = pdReady;
    if (gpp.compare_exchange_strong(old, pdNil, std::memory_order_acq_rel)) return true;
    if (old == pdNil) {
      if (gpp.compare_exchange_strong(old, pdWait, std::memory_order_acq_rel)) break;
      continue;
    }
    if (old != pdReady) fatal("netpollblock: double wait on one pollDesc slot");
  }
  // The error state must be re-read after setting pdWait: a close or
  // deadline that came before it would otherwise not wake us.
  if (waitio || netpoll_check_err(pd, mode) == PollErr::none) {
    WaitReason r = mode == 'r' ? WaitReason::io_read : WaitReason::io_write;
    if (pd->kind == 1 /* FD::Kind::listener */ && mode == 'r') r = WaitReason::io_accept;
    stat_add(Stat::parks_io);
    gopark(netpollblockcommit, &gpp, r, pd->fd, pd);
  }
  uintptr_t old = gpp.exchange(pdNil, std::memory_order_acq_rel);
  if (old > pdWait) fatal("netpollblock: corrupted pollDesc slot");
  return old == pdReady;
}

// Takes the G (if any) out of a slot. ioready: leave pdReady behind, so the
// next wait returns at once. Returns the G to make runnable, or nullptr.
G* netpollunblock(PollDesc* pd, int mode, bool ioready) {
  auto& gpp = slot(pd, mode);
  for (;;) {
    uintptr_t old = gpp.load(std::memory_order_acquire);
    if (old == pdReady) return nullptr;
    if (old == pdNil && !ioready) return nullptr;
    uintptr_t nv = ioready ? pdReady : pdNil;
    if (gpp.compare_exchange_weak(old, nv, std::memory_order_acq_rel)) {
      if (old == pdWait) return nullptr;  // the G has not parked: its commit fails
      if (old != pdNil) {
        netpoll_waiter_removed();
        return reinterpret_cast<G*>(old);
      }
      return nullptr;
    }
  }
}

void ready_if(G* gp) {
  if (gp) goready(gp);
}

// The deadline timers' function: arg is the pollDesc, seq the rseq/wseq the
// timer was armed with.
void netpolldeadlineimpl(PollDesc* pd, uintptr_t seq, bool read, bool write) {
  G *rg = nullptr, *wg = nullptr;
  {
    LockGuard<SpinLock> l(pd->lock);
    // A timer armed for an older deadline, or before a close, does nothing.
    uintptr_t cur = read ? pd->rseq : pd->wseq;
    if (seq != cur) return;
    if (read) {
      if (pd->rd <= 0) return;
      pd->rd = -1;
      publish_info(pd);
      rg = netpollunblock(pd, 'r', false);
    }
    if (write) {
      if (pd->wd <= 0) return;
      pd->wd = -1;
      publish_info(pd);
      wg = netpollunblock(pd, 'w', false);
    }
  }
  ready_if(rg);
  ready_if(wg);
}

void netpoll_read_deadline(void* arg, uintptr_t seq) {
  netpolldeadlineimpl(static_cast<PollDesc*>(arg), seq, true, false);
}
void netpoll_write_deadline(void* arg, uintptr_t seq) {
  netpolldeadlineimpl(static_cast<PollDesc*>(arg), seq, false, true);
}

}  // namespace

PollErr netpoll_check_err(PollDesc* pd, int mode) {
  uint32_t info = pd->info.load(std::memory_order_acquire);
  if (info & pollClosing) return PollErr::closing;
  if ((mode == 'r' && (info & pollExpiredReadDeadline)) ||
      (mode == 'w' && (info & pollExpiredWriteDeadline)))
    return PollErr::timeout;
  // An error event (EPOLLERR) is not an error of the wait: the backends
  // report it as readiness in both directions, and the retried syscall
  // returns the socket's error (ECONNRESET, ...) itself.
  return PollErr::none;
}

Error netpoll_open(PollDesc* pd, int fd) {
  {
    LockGuard<SpinLock> l(pd->lock);
    uintptr_t r = pd->rg.load(), w = pd->wg.load();
    if ((r != pdNil && r != pdReady) || (w != pdNil && w != pdReady))
      fatal("netpoll_open: blocked write on free pollDesc");
    pd->fd = fd;
    pd->closing = false;
    pd->info.store(0, std::memory_order_relaxed);
    pd->rseq++;
    pd->rg.store(pdNil);
    pd->rd = 0;
    pd->wseq++;
    pd->wg.store(pdNil);
    pd->wd = 0;
    pd->bytes_read.store(0, std::memory_order_relaxed);
    pd->bytes_written.store(0, std::memory_order_relaxed);
    publish_info(pd);
  }
  int err = sched.poller->open(fd, pd);
  if (err != 0) return Error::from_errno("netpoll open", err);
  return {};
}

void netpoll_evict(PollDesc* pd) {
  G *rg, *wg;
  {
    LockGuard<SpinLock> l(pd->lock);
    if (pd->closing) fatal("netpoll_evict: already closing");
    pd->closing = true;
    pd->rseq++;
    pd->wseq++;
    publish_info(pd);
    rg = netpollunblock(pd, 'r', false);
    wg = netpollunblock(pd, 'w', false);
    timer_del(&pd->rt);
    timer_del(&pd->wt);
  }
  ready_if(rg);
  ready_if(wg);
  if (sched.poller->completion()) sched.poller->evict(pd);
}

void netpoll_close(PollDesc* pd) {
  if (!pd->closing) fatal("netpoll_close: close without evict");
  uintptr_t r = pd->rg.load(), w = pd->wg.load();
  if ((r != pdNil && r != pdReady) || (w != pdNil && w != pdReady))
    fatal("netpoll_close: a G is still parked on the pollDesc");
  if (sched.poller) sched.poller->close(pd->fd, pd);
  // From here on, events tagged with the old fdseq are dropped. The pollDesc
  // goes back to the cache later (pd_free), once its closer stops waiting on
  // pd->csema.
  pd->fdseq.fetch_add(1, std::memory_order_acq_rel);
}

PollErr netpoll_wait(PollDesc* pd, int mode) {
  PollErr e = netpoll_check_err(pd, mode);
  if (e != PollErr::none) return e;
  while (!netpollblock(pd, mode, false)) {
    e = netpoll_check_err(pd, mode);
    if (e != PollErr::none) return e;
    // Woken without readiness and without an error: a deadline that was
    // moved, or a spurious wake-up. Wait again.
  }
  return PollErr::none;
}

void netpoll_wait_canceled(PollDesc* pd, int mode) {
  // waitio: park even though the pollDesc is closing or past its deadline;
  // only readiness (the operation's completion) ends the wait.
  while (!netpollblock(pd, mode, true)) {
  }
}

void netpoll_reset(PollDesc* pd, int mode) {
  auto& gpp = slot(pd, mode);
  uintptr_t expect = pdReady;
  gpp.compare_exchange_strong(expect, pdNil, std::memory_order_acq_rel);
}

void netpoll_set_deadline(PollDesc* pd, int64_t d, int mode) {
  G *rg = nullptr, *wg = nullptr;
  {
    LockGuard<SpinLock> l(pd->lock);
    if (pd->closing) return;
    int64_t now = nanotime();
    // d: 0 none; a time in the past: expired (-1); else the absolute time.
    if (d > 0 && d <= now) d = -1;
    if (mode == 'r' || mode == 'r' + 'w') {
      pd->rd = d;
      pd->rseq++;  // an armed timer for the old deadline is now stale
      timer_del(&pd->rt);
      if (d > 0) {
        pd->rt.f = netpoll_read_deadline;
        pd->rt.arg = pd;
        pd->rt.seq = pd->rseq;
        timer_add(&pd->rt, d);
      }
    }
    if (mode == 'w' || mode == 'r' + 'w') {
      pd->wd = d;
      pd->wseq++;
      timer_del(&pd->wt);
      if (d > 0) {
        pd->wt.f = netpoll_write_deadline;
        pd->wt.arg = pd;
        pd->wt.seq = pd->wseq;
        timer_add(&pd->wt, d);
      }
    }
    publish_info(pd);
    // A deadline in the past wakes the parked Gs now, with the timeout.
    if (pd->rd < 0) rg = netpollunblock(pd, 'r', false);
    if (pd->wd < 0) wg = netpollunblock(pd, 'w', false);
  }
  // A moved (not expired) deadline: the parked G sleeps on; its new timer
  // wakes it. (Go does the same: the timer is the only waker.)
  ready_if(rg);
  ready_if(wg);
}

void netpollready(G** list, PollDesc* pd, int mode) {
  G *rg = nullptr, *wg = nullptr;
  if (mode == 'r' || mode == 'r' + 'w') rg = netpollunblock(pd, 'r', true);
  if (mode == 'w' || mode == 'r' + 'w') wg = netpollunblock(pd, 'w', true);
  if (rg) {
    rg->schedlink = *list;
    *list = rg;
  }
  if (wg) {
    wg->schedlink = *list;
    *list = wg;
  }
}

void netpoll_set_event_err(PollDesc* pd, bool on) {
  uint32_t old = pd->info.load(std::memory_order_relaxed);
  for (;;) {
    uint32_t nv = on ? (old | pollEventErr) : (old & ~pollEventErr);
    if (nv == old) return;
    if (pd->info.compare_exchange_weak(old, nv, std::memory_order_release)) return;
  }
}

}  // namespace mnp::rt
