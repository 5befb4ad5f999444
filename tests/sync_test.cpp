// Mutex and WaitGroup semantics across Ps, their wait reasons, misuse that
// must be fatal, and the two combined with channels (a worker pool).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "mnp/chan.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "synctest.h"

using namespace std::chrono_literals;

TEST(Mutex, BlockedLockWaitsWithReasonMutex) {
  synctest::run([] {
    mnp::Mutex mu;
    mu.lock();
    bool got = false;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      mu.lock();
      got = true;
      mu.unlock();
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::mutex));
    EXPECT_STREQ(mnp::rt::wait_reason_text(mnp::rt::WaitReason::mutex), "sync.Mutex.Lock");
    EXPECT_FALSE(got);
    mu.unlock();
    wg.wait();
    EXPECT_TRUE(got);
  });
}

// Two Gs pass the lock back and forth through a channel: the lock is always
// held by exactly one of them, and each sees the other's writes.
TEST(Mutex, HandOffBetweenGoroutines) {
  static constexpr int kRounds = 5000;
  synctest::run([] {
    mnp::Mutex mu;
    mnp::Chan<int> turn_a(1), turn_b(1);
    std::vector<int> log;  // guarded by mu
    mnp::WaitGroup wg;
    wg.add(2);
    auto player = [&](mnp::Chan<int>& mine, mnp::Chan<int>& other, int who) {
      for (int i = 0; i < kRounds; i++) {
        EXPECT_TRUE(mine.recv().ok);
        mu.lock();
        log.push_back(who);
        mu.unlock();
        EXPECT_FALSE(other.send(0));
      }
      wg.done();
    };
    mnp::go([&] { player(turn_a, turn_b, 0); });
    mnp::go([&] { player(turn_b, turn_a, 1); });
    EXPECT_FALSE(turn_a.send(0));
    wg.wait();
    (void)turn_a.try_recv();  // the last token
    ASSERT_EQ(log.size(), size_t{2 * kRounds});
    for (size_t i = 0; i < log.size(); i++) ASSERT_EQ(log[i], static_cast<int>(i % 2));
  });
}

TEST(Mutex, ContendedAcrossProcessors) {
  static constexpr int kG = 32, kIters = 3000;
  int64_t counter = 0;  // not atomic: the mutex orders every access
  synctest::run([&] {
    mnp::Mutex mu;
    mnp::WaitGroup wg;
    wg.add(kG);
    for (int g = 0; g < kG; g++) {
      mnp::go([&] {
        for (int i = 0; i < kIters; i++) {
          mu.lock();
          counter++;
          mu.unlock();
          if (i % 100 == 0) mnp::yield();
        }
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(counter, int64_t{kG} * kIters);
}

TEST(MutexDeathTest, UnlockOfUnlockedMutexIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(synctest::run([] {
                 mnp::Mutex mu;
                 mu.unlock();
               }),
               "fatal error: sync: unlock of unlocked mutex");
}

TEST(WaitGroup, WaitWithZeroCounterReturnsAtOnce) {
  synctest::run([] {
    mnp::WaitGroup wg;
    wg.wait();
    wg.add(2);
    wg.add(-2);
    wg.wait();
  });
}

TEST(WaitGroup, BlockedWaitHasReasonWaitGroup) {
  synctest::run([] {
    mnp::WaitGroup wg, done;
    wg.add(1);
    done.add(1);
    mnp::go([&] {
      wg.wait();
      done.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::waitgroup));
    EXPECT_STREQ(mnp::rt::wait_reason_text(mnp::rt::WaitReason::waitgroup), "sync.WaitGroup.Wait");
    wg.done();
    done.wait();
  });
}

TEST(WaitGroup, ReusableAfterWait) {
  synctest::run([] {
    mnp::WaitGroup wg;
    std::atomic<int> n{0};
    for (int round = 0; round < 50; round++) {
      wg.add(8);
      for (int i = 0; i < 8; i++) {
        mnp::go([&] {
          n++;
          wg.done();
        });
      }
      wg.wait();
      EXPECT_EQ(n.load(), 8 * (round + 1));
    }
  });
}

TEST(WaitGroupDeathTest, NegativeCounterIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(synctest::run([] {
                 mnp::WaitGroup wg;
                 wg.done();
               }),
               "fatal error: sync: negative WaitGroup counter");
}

// A worker pool: jobs on a channel, results on another, a WaitGroup to know
// when to close the results, a Mutex around a shared tally.
TEST(Sync, WorkerPoolWithChannelsMutexAndWaitGroup) {
  static constexpr int kWorkers = 8, kJobs = 20000;
  int64_t tally = 0;
  synctest::run([&] {
    mnp::Chan<int> jobs(16);
    mnp::Chan<int64_t> results(16);
    mnp::Mutex mu;
    mnp::WaitGroup workers;
    workers.add(kWorkers);
    for (int w = 0; w < kWorkers; w++) {
      mnp::go([&] {
        for (int j : jobs) {
          EXPECT_FALSE(results.send(int64_t{j} * 2));
          mu.lock();
          tally++;
          mu.unlock();
        }
        workers.done();
      });
    }
    mnp::go([&] {
      for (int j = 0; j < kJobs; j++) EXPECT_FALSE(jobs.send(j));
      EXPECT_FALSE(jobs.close());
    });
    mnp::go([&] {
      workers.wait();
      EXPECT_FALSE(results.close());
    });
    int64_t sum = 0, n = 0;
    for (int64_t r : results) {
      sum += r;
      n++;
    }
    EXPECT_EQ(n, kJobs);
    EXPECT_EQ(sum, int64_t{kJobs} * (kJobs - 1));
  });
  EXPECT_EQ(tally, kJobs);
}
