// runtime/time — timers: sleep, deadlines, and the poller's timeout.
//
// Each P has a 4-ary min-heap of timers ordered by `when` (Go's layout: a
// 4-ary heap is shallower than a binary one and its four children share a
// cache line or two). A timer lives in at most one P's heap; `pp` says which.
//
//   timer_add(t, when)   put t in the current P's heap
//   timer_del(t)         take t out; true if it had not fired yet
//   timer_mod(t, when)   del + add (t may be in another P's heap)
//   check_timers(pp,now) run pp's expired timers; the scheduler calls it
//
// A timer's function runs on an M (with or without a P), outside every heap
// lock, and must not block: it readies Gs. Because it runs outside the lock,
// timer_del can lose the race with a timer already taken off the heap to
// run; such a late call carries the `seq` value the timer had when it was
// armed, and the function compares it with its owner's current value (Go's
// pollDesc rseq/wseq): a stopped or re-armed timer never acts.
#pragma once

#include <atomic>
#include <cstdint>

namespace mnp::rt {

struct P;

struct Timer {
  int64_t when = 0;  // nanotime() at which f runs
  void (*f)(void* arg, uintptr_t seq) = nullptr;
  void* arg = nullptr;
  uintptr_t seq = 0;
  // The P whose heap holds this timer, or nullptr. Written under that P's
  // timer lock; read without it to find which lock to take.
  std::atomic<P*> pp{nullptr};
  int32_t idx = -1;  // position in pp's heap; under pp's timer lock
};

// Arms t to run f(arg, seq) at `when` on the calling M's P. t must not be armed.
void timer_add(Timer* t, int64_t when);
// Disarms t. Returns true if it was armed (it will not run), false if it had
// already fired or been taken to run.
bool timer_del(Timer* t);
// Re-arms t for `when`, armed or not.
void timer_mod(Timer* t, int64_t when);

// Runs pp's timers due at `now`; returns the `when` of the earliest timer
// left (0 if none). Gs they ready go to the calling M's P, or the global
// queue when it has none.
int64_t check_timers(P* pp, int64_t now);

// The earliest timer over all Ps, 0 if none (the blocking poller's timeout).
int64_t timers_earliest();

int64_t nanotime();
// A cheap clock (CLOCK_MONOTONIC_COARSE, a few ms resolution) for wait-since
// stamps that only a dump reads.
int64_t nanotime_coarse();

}  // namespace mnp::rt
