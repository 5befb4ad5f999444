// mnp/sync.h — coroutine-aware blocking (Go's sync package, DESIGN.md §6).
//
// A blocked G parks (the M runs other Gs); its wait reason shows in the G
// dump: "sync.Mutex.Lock", "sync.WaitGroup.Wait".
#pragma once

#include <atomic>
#include <cstdint>

namespace mnp {

namespace rt {
struct G;
}

// A runtime semaphore (Go's runtime_Semacquire / Semrelease): the building
// block of Mutex, WaitGroup and the fdMutex. release() hands the count
// straight to the longest waiter. A G whose acquire() returned may destroy
// the Sema at once (a WaitGroup on the waiter's stack): release() touches it
// no more by then.
class Sema {
 public:
  explicit Sema(uint32_t count = 0) : count_(count) {}
  Sema(const Sema&) = delete;
  Sema& operator=(const Sema&) = delete;
  void acquire();
  bool try_acquire();
  void release(uint32_t n = 1);  // n tickets at once
  uint32_t waiters() const { return nwait_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint32_t> count_;
  std::atomic<uint32_t> nwait_{0};
  std::atomic<uint32_t> lock_{0};  // spinlock over the wait queue
  rt::G* head_ = nullptr;          // FIFO of parked Gs, linked by G::schedlink
  rt::G* tail_ = nullptr;
  friend struct SemaAccess;
};

class Mutex {
 public:
  void lock();
  bool try_lock();
  void unlock();
  // The G that holds the lock (0 when free): the lock-held-while-parked report.
  uint64_t owner() const { return owner_.load(std::memory_order_relaxed); }
  // Gs parked waiting for it.
  uint32_t waiters() const { return sema_.waiters(); }

 private:
  std::atomic<int32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
  std::atomic<uint64_t> owner_{0};
  Sema sema_;
};

class WaitGroup {
 public:
  void add(int64_t delta);  // a negative counter is a fatal error, as in Go
  void done() { add(-1); }
  void wait();

 private:
  // The counter (high 32 bits, signed) and the number of waiters (low 32
  // bits) in one word, so that "counter reached 0 with waiters" is one
  // atomic observation (Go's WaitGroup.state).
  std::atomic<uint64_t> state_{0};
  Sema sema_;
};

}  // namespace mnp
