// tests/synctest.h — what the chan, select and sync tests share.
//
//   TEST(Chan, Something) {
//     synctest::run([] { ... });   // main G under a watchdog; no G may outlive it
//   }
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "mnp/runtime.h"
#include "sched/sched.h"
#include "testutil.h"

namespace synctest {

using namespace std::chrono_literals;

// Runs fn as the main G with the Ps of $MNP_PROCS (or `procs`), under a watchdog. When fn
// returns, every G it started must have ended: one that has just called
// WaitGroup::done may still be on its way out, so it gets a moment.
template <class F>
void run(F&& fn, int procs = 0, std::chrono::milliseconds limit = 60s) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  mnptest::Watchdog dog(std::string(info->test_suite_name()) + "." + info->name(), limit);
  mnp::Options opts;
  opts.procs = procs;
  const int rc = mnp::run(
      [&] {
        fn();
        mnptest::wait_until([] { return mnp::num_goroutines() <= 1; }, 5s);
        EXPECT_EQ(mnp::num_goroutines(), 1) << "Gs outlived the test's main G (leaked)";
      },
      opts);
  ASSERT_EQ(rc, 0);
}

// The number of Gs parked with `reason` (on `obj`, unless it is nullptr: a
// select parks on several channels, a Mutex or WaitGroup on its semaphore).
inline int parked(mnp::rt::WaitReason reason, const void* obj = nullptr) {
  using namespace mnp::rt;
  int n = 0;
  LockGuard<SpinLock> l(sched.allgs_lock);
  for (G* g : sched.allgs)
    if (g->status.load(std::memory_order_acquire) == GStatus::waiting && g->wait_reason == reason &&
        (obj == nullptr || g->wait_obj == obj))
      n++;
  return n;
}

// Waits (bounded) until at least n Gs are parked so; from a G.
inline bool wait_parked(mnp::rt::WaitReason reason, const void* obj = nullptr, int n = 1) {
  return mnptest::wait_until([&] { return parked(reason, obj) >= n; }, 5s);
}

}  // namespace synctest
