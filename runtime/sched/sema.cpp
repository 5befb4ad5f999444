// runtime/sched/sema — the runtime semaphore (Go's sema.go, one queue per
// semaphore instead of Go's address-keyed tree).
//
// count_ is the number of tickets. acquire takes one or parks in FIFO order;
// release adds one and, if someone waits, takes it back on their behalf and
// readies the longest waiter (a hand-off: the woken G owns the ticket, so a
// stream of newcomers cannot starve it).
#include "mnp/sync.h"

#include "sched/sched.h"

namespace mnp {

using namespace rt;

struct SemaAccess {
  static void lock(Sema* s) {
    for (;;) {
      if (!s->lock_.exchange(1, std::memory_order_acquire)) return;
      while (s->lock_.load(std::memory_order_relaxed)) cpu_relax();
    }
  }
  static void unlock(Sema* s) { s->lock_.store(0, std::memory_order_release); }
  static void acquire(Sema* self, WaitReason reason);
  static bool can_acquire(Sema* s) {
    uint32_t c = s->count_.load(std::memory_order_relaxed);
    while (c > 0)
      if (s->count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire)) return true;
    return false;
  }
};

bool Sema::try_acquire() {
  return SemaAccess::can_acquire(this);
}

void Sema::acquire() {
  sema_acquire(this, WaitReason::sema);
}

void rt::sema_acquire(Sema* s, WaitReason reason) {
  SemaAccess::acquire(s, reason);
}

void SemaAccess::acquire(Sema* self, WaitReason reason) {
  if (can_acquire(self)) return;
  G* gp = getg();
  if (!gp) {  // outside the runtime (a destructor after mnp::run): just spin
    while (!can_acquire(self)) sched_yield();
    return;
  }
  lock(self);
  self->nwait_.fetch_add(1, std::memory_order_seq_cst);
  if (can_acquire(self)) {
    self->nwait_.fetch_sub(1, std::memory_order_relaxed);
    unlock(self);
    return;
  }
  gp->schedlink = nullptr;
  if (self->tail_)
    self->tail_->schedlink = gp;
  else
    self->head_ = gp;
  self->tail_ = gp;
  stat_add(Stat::parks_sync);
  gopark(
      [](G*, void* s) {
        SemaAccess::unlock(static_cast<Sema*>(s));
        return true;
      },
      self, reason, -1, self);
  // Woken by release, which took the ticket for us.
}

void Sema::release() {
  count_.fetch_add(1, std::memory_order_seq_cst);
  if (nwait_.load(std::memory_order_seq_cst) == 0) return;
  SemaAccess::lock(this);
  G* gp = nullptr;
  if (head_ && SemaAccess::can_acquire(this)) {
    gp = head_;
    head_ = gp->schedlink;
    if (!head_) tail_ = nullptr;
    gp->schedlink = nullptr;
    nwait_.fetch_sub(1, std::memory_order_relaxed);
  }
  SemaAccess::unlock(this);
  if (gp) goready(gp);
}

}  // namespace mnp
