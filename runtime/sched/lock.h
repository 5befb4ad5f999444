// runtime/sched/lock — the runtime's own short lock.
//
// A test-and-test-and-set spinlock that yields the thread after a short spin.
// It guards a few words for a few dozen instructions (a wait queue, a timer
// heap, a pollDesc); nothing blocks or parks while holding it, except in the
// one pattern the scheduler provides for that: a park whose commit function
// releases the lock once the G is off its stack (gopark's unlockf).
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

namespace mnp::rt {

inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class SpinLock {
 public:
  void lock() {
    for (int spins = 0;; spins++) {
      if (!v_.exchange(true, std::memory_order_acquire)) return;
      while (v_.load(std::memory_order_relaxed)) {
        if (spins++ < 64)
          cpu_relax();
        else
          sched_yield();  // the holder was descheduled: let it run
      }
    }
  }
  bool try_lock() {
    return !v_.load(std::memory_order_relaxed) && !v_.exchange(true, std::memory_order_acquire);
  }
  void unlock() { v_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> v_{false};
};

template <class L>
struct LockGuard {
  explicit LockGuard(L& l) : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;
  L& l_;
};

}  // namespace mnp::rt
