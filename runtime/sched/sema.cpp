// runtime/sched/sema — the runtime semaphore (Go's sema.go, one queue per
// semaphore instead of Go's address-keyed tree).
//
// count_ is the number of tickets. acquire takes one or parks in FIFO order;
// release adds one and, if someone waits, takes it back on their behalf and
// readies the longest waiter (a hand-off: the woken G owns the ticket, so a
// stream of newcomers cannot starve it).
//
// Lifetime: a G that got its ticket may destroy the Sema at once (a
// WaitGroup on the waiter's stack). Go's semaphores live in a global table,
// so semrelease never touches the object; ours live in the object, so
// release() does all its work under lock_ and drops it last (the Gs are
// readied after), and an acquire that took a ticket without the lock waits
// until no release holds it (settle).
//
// Copied stacks (MNP_STACK=copy, sched.h): a Sema on a copy-mode G's stack
// is refused at every entry point (check_not_on_shared_stack): while its G
// is parked, the address belongs to whichever G runs on the shared stack.
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
  // After a lock-free take: the ticket may come from a release() that still
  // holds lock_; wait until it is out of the Sema before returning.
  static void settle(Sema* s) {
    if (s->lock_.load(std::memory_order_acquire) != 0) {
      lock(s);
      unlock(s);
    }
  }
  static bool can_acquire(Sema* s) {
    uint32_t c = s->count_.load(std::memory_order_relaxed);
    while (c > 0)
      if (s->count_.compare_exchange_weak(c, c - 1, std::memory_order_acquire)) return true;
    return false;
  }
};

bool Sema::try_acquire() {
  check_not_on_shared_stack(this, "Sema");
  if (!SemaAccess::can_acquire(this)) return false;
  SemaAccess::settle(this);
  return true;
}

void Sema::acquire() {
  sema_acquire(this, WaitReason::sema);
}

void rt::sema_acquire(Sema* s, WaitReason reason) {
  SemaAccess::acquire(s, reason);
}

void SemaAccess::acquire(Sema* self, WaitReason reason) {
  check_not_on_shared_stack(self, reason == WaitReason::sema ? "Sema" : wait_reason_text(reason));
  if (can_acquire(self)) {
    settle(self);
    return;
  }
  G* gp = getg();
  if (!gp) {  // outside the runtime (a destructor after mnp::run): just spin
    while (!can_acquire(self)) sched_yield();
    settle(self);
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

void Sema::release(uint32_t n) {
  check_not_on_shared_stack(this, "Sema");
  SemaAccess::lock(this);
  // Release order: an acquire that takes this ticket lock-free then sees
  // lock_ held (settle) until the unlock below.
  count_.fetch_add(n, std::memory_order_acq_rel);
  G* first = nullptr;  // the waiters served, in arrival order
  G** link = &first;
  while (head_ && SemaAccess::can_acquire(this)) {
    G* gp = head_;
    head_ = gp->schedlink;
    if (!head_) tail_ = nullptr;
    *link = gp;
    link = &gp->schedlink;
    nwait_.fetch_sub(1, std::memory_order_relaxed);
  }
  *link = nullptr;
  SemaAccess::unlock(this);  // the last touch of *this
  while (first) {
    G* gp = first;
    first = gp->schedlink;
    gp->schedlink = nullptr;
    goready(gp);
  }
}

}  // namespace mnp
