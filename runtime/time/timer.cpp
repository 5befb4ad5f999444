// runtime/time — per-P 4-ary timer heaps (see timer.h for the contract).
#include "time/timer.h"

#include <time.h>

#include <cstdio>
#include <cstdlib>

#include "sched/sched.h"

namespace mnp::rt {

int64_t nanotime() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t nanotime_coarse() {
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

namespace {

// 4-ary heap over pp->timers, keyed by when; each timer knows its index.
void sift_up(std::vector<Timer*>& h, size_t i) {
  Timer* t = h[i];
  while (i > 0) {
    size_t parent = (i - 1) / 4;
    if (h[parent]->when <= t->when) break;
    h[i] = h[parent];
    h[i]->idx = static_cast<int32_t>(i);
    i = parent;
  }
  h[i] = t;
  t->idx = static_cast<int32_t>(i);
}

void sift_down(std::vector<Timer*>& h, size_t i) {
  size_t n = h.size();
  Timer* t = h[i];
  for (;;) {
    size_t c = 4 * i + 1;
    if (c >= n) break;
    size_t best = c;
    for (size_t k = c + 1; k < c + 4 && k < n; k++)
      if (h[k]->when < h[best]->when) best = k;
    if (h[best]->when >= t->when) break;
    h[i] = h[best];
    h[i]->idx = static_cast<int32_t>(i);
    i = best;
  }
  h[i] = t;
  t->idx = static_cast<int32_t>(i);
}

// Removes h[i]. Caller holds the P's timer lock.
void heap_remove(P* pp, size_t i) {
  auto& h = pp->timers;
  Timer* t = h[i];
  Timer* last = h.back();
  h.pop_back();
  if (last != t) {
    h[i] = last;
    last->idx = static_cast<int32_t>(i);
    if (i > 0 && h[(i - 1) / 4]->when > last->when)
      sift_up(h, i);
    else
      sift_down(h, i);
  }
  t->idx = -1;
  t->pp.store(nullptr, std::memory_order_release);
  pp->timer0.store(h.empty() ? 0 : h[0]->when, std::memory_order_relaxed);
}

}  // namespace

void timer_add(Timer* t, int64_t when) {
  M* mp = getm();
  P* pp = mp ? mp->p : nullptr;
  if (!pp) pp = sched.allp[0];  // no P (a poller, a foreign thread): any heap will do
  if (when <= 0) when = 1;
  {
    LockGuard<SpinLock> l(pp->timer_lock);
    if (t->pp.load(std::memory_order_relaxed) != nullptr) {
      std::fprintf(stderr, "mnp: fatal error: timer_add: timer already armed\n");
      std::abort();
    }
    t->when = when;
    t->pp.store(pp, std::memory_order_release);
    pp->timers.push_back(t);
    sift_up(pp->timers, pp->timers.size() - 1);
    pp->timer0.store(pp->timers[0]->when, std::memory_order_relaxed);
  }
  wake_netpoller(when);
}

bool timer_del(Timer* t) {
  for (;;) {
    P* pp = t->pp.load(std::memory_order_acquire);
    if (!pp) return false;
    LockGuard<SpinLock> l(pp->timer_lock);
    if (t->pp.load(std::memory_order_relaxed) != pp) continue;  // moved meanwhile
    heap_remove(pp, static_cast<size_t>(t->idx));
    return true;
  }
}

void timer_mod(Timer* t, int64_t when) {
  timer_del(t);
  timer_add(t, when);
}

int64_t check_timers(P* pp, int64_t now) {
  for (;;) {
    Timer* t;
    void (*f)(void*, uintptr_t);
    void* arg;
    uintptr_t seq;
    {
      LockGuard<SpinLock> l(pp->timer_lock);
      if (pp->timers.empty()) return 0;
      t = pp->timers[0];
      if (t->when > now) return t->when;
      f = t->f;
      arg = t->arg;
      seq = t->seq;
      heap_remove(pp, 0);
    }
    // Outside the lock: f readies Gs and may take other locks (a pollDesc's).
    f(arg, seq);
  }
}

int64_t timers_earliest() {
  int64_t min = 0;
  for (P* pp : sched.allp) {
    int64_t w = pp->timer0.load(std::memory_order_relaxed);
    if (w != 0 && (min == 0 || w < min)) min = w;
  }
  return min;
}

}  // namespace mnp::rt
