// runtime/sync — Mutex and WaitGroup on the runtime semaphore.
//
// Copied stacks (MNP_STACK=copy, sched.h): each entry point refuses an
// object on a copy-mode G's stack, with a fatal error that names it.
#include <cstdio>
#include <cstdlib>

#include "mnp/sync.h"
#include "sched/sched.h"

namespace mnp {

using namespace rt;

// A three-state lock (0 free, 1 locked, 2 locked and maybe contended):
// uncontended lock and unlock are one atomic each; a contended unlock
// releases the semaphore once, and a woken G retries.
void Mutex::lock() {
  check_not_on_shared_stack(this, "Mutex");
  int32_t c = 0;
  if (!state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) {
    while (state_.exchange(2, std::memory_order_acquire) != 0)
      sema_acquire(&sema_, WaitReason::mutex);
  }
  G* gp = getg();
  if (gp) {
    owner_.store(gp->id, std::memory_order_relaxed);
    gp->held_mutexes++;
    gp->held_mutex = this;
  }
}

bool Mutex::try_lock() {
  check_not_on_shared_stack(this, "Mutex");
  int32_t c = 0;
  if (!state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return false;
  G* gp = getg();
  if (gp) {
    owner_.store(gp->id, std::memory_order_relaxed);
    gp->held_mutexes++;
    gp->held_mutex = this;
  }
  return true;
}

void Mutex::unlock() {
  check_not_on_shared_stack(this, "Mutex");
  G* gp = getg();
  if (gp && gp->held_mutexes > 0) gp->held_mutexes--;
  owner_.store(0, std::memory_order_relaxed);
  int32_t prev = state_.exchange(0, std::memory_order_release);
  if (prev == 0) {
    std::fprintf(stderr, "mnp: fatal error: sync: unlock of unlocked mutex\n");
    std::abort();
  }
  if (prev == 2) sema_.release();
}

void WaitGroup::add(int64_t delta) {
  check_not_on_shared_stack(this, "WaitGroup");
  uint64_t s = state_.fetch_add(static_cast<uint64_t>(delta) << 32, std::memory_order_acq_rel) +
               (static_cast<uint64_t>(delta) << 32);
  auto v = static_cast<int32_t>(s >> 32);
  auto w = static_cast<uint32_t>(s);
  if (v < 0) {
    std::fprintf(stderr, "mnp: fatal error: sync: negative WaitGroup counter\n");
    std::abort();
  }
  if (v > 0 || w == 0) return;
  // The counter reached zero with waiters: wake them all. Nobody can add a
  // waiter now (wait() sees 0 and returns), so the reset is safe.
  state_.store(0, std::memory_order_release);
  // All w tickets in one release: the first waiter to wake may return and
  // destroy the WaitGroup (it is often on its stack), so sema_ must not be
  // touched again after that.
  sema_.release(w);
}

void WaitGroup::wait() {
  check_not_on_shared_stack(this, "WaitGroup");
  uint64_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<int32_t>(s >> 32) == 0) return;
    if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) {
      sema_acquire(&sema_, WaitReason::waitgroup);
      return;
    }
  }
}

}  // namespace mnp
