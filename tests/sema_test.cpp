// Sema, Mutex, WaitGroup: the blocking primitives the runtime itself uses.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "mnp/runtime.h"
#include "mnp/sync.h"

using namespace std::chrono_literals;

TEST(Mutex, ExcludesAcrossGoroutines) {
  constexpr int kG = 8, kIters = 2000;
  int64_t counter = 0;  // deliberately not atomic: the mutex protects it
  mnp::run([&] {
    mnp::Mutex mu;
    mnp::WaitGroup wg;
    wg.add(kG);
    for (int g = 0; g < kG; g++) {
      mnp::go([&] {
        for (int i = 0; i < kIters; i++) {
          mu.lock();
          int64_t v = counter;
          if (i % 64 == 0) mnp::yield();  // hold the lock across a reschedule
          counter = v + 1;
          mu.unlock();
        }
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(counter, int64_t{kG} * kIters);
}

TEST(Mutex, KnowsItsOwner) {
  mnp::run([&] {
    mnp::Mutex mu;
    EXPECT_EQ(mu.owner(), 0u);
    mu.lock();
    EXPECT_EQ(mu.owner(), mnp::goid());
    EXPECT_FALSE(mu.try_lock());
    mu.unlock();
    EXPECT_TRUE(mu.try_lock());
    mu.unlock();
  });
}

TEST(WaitGroup, WaitReturnsOnlyAfterEveryDone) {
  std::atomic<int> done{0};
  int seen = -1;
  mnp::run([&] {
    mnp::WaitGroup wg;
    wg.add(5);
    for (int i = 0; i < 5; i++) {
      mnp::go([&, i] {
        mnp::sleep(std::chrono::milliseconds(5 * i));
        done++;
        wg.done();
      });
    }
    wg.wait();
    seen = done.load();
  });
  EXPECT_EQ(seen, 5);
}

TEST(WaitGroup, ManyWaiters) {
  std::atomic<int> woke{0};
  mnp::run([&] {
    mnp::WaitGroup gate, all;
    gate.add(1);
    all.add(10);
    for (int i = 0; i < 10; i++) {
      mnp::go([&] {
        gate.wait();
        woke++;
        all.done();
      });
    }
    mnp::sleep(10ms);
    EXPECT_EQ(woke.load(), 0);
    gate.done();
    all.wait();
  });
  EXPECT_EQ(woke.load(), 10);
}

TEST(Sema, WakesWaitersInArrivalOrder) {
  std::vector<int> order;
  mnp::run(
      [&] {
        mnp::Sema s(0);
        mnp::WaitGroup wg;
        wg.add(3);
        for (int i = 0; i < 3; i++) {
          mnp::go([&, i] {
            s.acquire();
            order.push_back(i);
            wg.done();
          });
          // Let G i park before the next one arrives (bounded).
          for (int k = 0; k < 1000 && s.waiters() < static_cast<uint32_t>(i + 1); k++) mnp::yield();
          ASSERT_EQ(s.waiters(), static_cast<uint32_t>(i + 1));
        }
        // One ticket at a time: each goes to the longest waiter.
        for (int i = 0; i < 3; i++) {
          s.release();
          for (int k = 0; k < 1000 && order.size() < static_cast<size_t>(i + 1); k++) mnp::yield();
        }
        wg.wait();
      },
      mnp::Options{1, nullptr, 0});
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(Sema, ReleaseBeforeAcquireIsKept) {
  mnp::run([&] {
    mnp::Sema s(0);
    s.release();
    EXPECT_TRUE(s.try_acquire());
    EXPECT_FALSE(s.try_acquire());
  });
}
