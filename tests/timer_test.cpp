// Timers: sleep, ordering, and stop never firing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "time/timer.h"

using namespace std::chrono_literals;

TEST(Timer, SleepSleepsAtLeastTheDuration) {
  int64_t slept = 0;
  mnp::run([&] {
    int64_t t0 = mnp::nanotime();
    mnp::sleep(50ms);
    slept = mnp::nanotime() - t0;
  });
  EXPECT_GE(slept, 50'000'000);
  EXPECT_LT(slept, 500'000'000);
}

TEST(Timer, SleepersWakeInDeadlineOrder) {
  std::vector<int> order;
  mnp::Mutex mu;
  mnp::run([&] {
    mnp::WaitGroup wg;
    int ms[] = {60, 20, 100, 40, 80};
    wg.add(5);
    // Deadlines from one start: the Gs may first run in any order, and
    // far apart on a slow machine (qemu translating the code on first use).
    const int64_t t0 = mnp::nanotime();
    for (int d : ms) {
      mnp::go([&, d, t0] {
        mnp::sleep(std::chrono::nanoseconds(t0 + int64_t{d} * 1'000'000 - mnp::nanotime()));
        mu.lock();
        order.push_back(d);
        mu.unlock();
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(order, (std::vector<int>{20, 40, 60, 80, 100}));
}

TEST(Timer, ManyTimersAllFire) {
  constexpr int kN = 2000;
  std::atomic<int> fired{0};
  mnp::run([&] {
    mnp::WaitGroup wg;
    wg.add(kN);
    for (int i = 0; i < kN; i++) {
      mnp::go([&, i] {
        mnp::sleep(std::chrono::microseconds(100 * (i % 50)));
        fired++;
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(fired.load(), kN);
}

TEST(Timer, StoppedTimerNeverFires) {
  std::atomic<int> fired{0};
  mnp::run([&] {
    mnp::rt::Timer t;
    t.f = [](void* a, uintptr_t) { static_cast<std::atomic<int>*>(a)->fetch_add(1); };
    t.arg = &fired;
    mnp::rt::timer_add(&t, mnp::rt::nanotime() + 20'000'000);
    EXPECT_TRUE(mnp::rt::timer_del(&t));
    EXPECT_FALSE(mnp::rt::timer_del(&t));  // already stopped
    mnp::sleep(60ms);
  });
  EXPECT_EQ(fired.load(), 0);
}

TEST(Timer, ModMovesTheTimer) {
  std::atomic<int64_t> at{0};
  int64_t t0 = 0;
  mnp::run([&] {
    mnp::rt::Timer t;
    t.f = [](void* a, uintptr_t) {
      static_cast<std::atomic<int64_t>*>(a)->store(mnp::rt::nanotime());
    };
    t.arg = &at;
    t0 = mnp::rt::nanotime();
    mnp::rt::timer_add(&t, t0 + 200'000'000);
    mnp::rt::timer_mod(&t, t0 + 30'000'000);
    mnp::sleep(100ms);
  });
  ASSERT_NE(at.load(), 0);
  EXPECT_GE(at.load() - t0, 30'000'000);
  EXPECT_LT(at.load() - t0, 150'000'000);
}

TEST(Timer, IdleSleepBurnsNoCpu) {
  // Every G asleep: the M blocks in the poller with the timer's timeout.
  uint64_t polls = 0;
  mnp::run([&] {
    uint64_t p0 = mnp::stat(mnp::Stat::polls);
    mnp::sleep(200ms);
    polls = mnp::stat(mnp::Stat::polls) - p0;
  });
  EXPECT_LT(polls, 10u) << "the scheduler spun while every G slept";
}
