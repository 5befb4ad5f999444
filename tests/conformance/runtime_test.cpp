// Conformance: the runtime around the poller (CONFORMANCE.md 28–30), on every backend.
#include <algorithm>

#include "testutil.h"

namespace mnptest {
namespace {

class Runtime : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, Runtime, ::testing::ValuesIn(all_backends()), backend_test_name);

// 28. With every G parked on I/O (some with deadlines) or timers, the process
// sleeps in the poller: almost no CPU and a handful of polls over 800 ms.
TEST_P(Runtime, IdleProcessSleepsInPoller) {
  run_on_backend([] {
    constexpr int kConns = 20, kSleepers = 5;
    std::vector<ConnPair> pairs(kConns);
    for (auto& p : pairs) {
      p = connected_pair();
      ASSERT_TRUE(p);
    }
    std::atomic<int> readers_ok{0};
    Group g;
    for (int i = 0; i < kConns; i++) {
      if (i % 2) pairs[i].server->set_read_deadline(now() + 10s);
      g.go([&, i] {
        const ReadAll r = read_exact(*pairs[i].server, 4);
        if (!r.err && r.data == "wake") readers_ok++;
      });
    }
    for (int i = 0; i < kSleepers; i++) g.go([] { mnp::sleep(1200ms); });
    mnp::sleep(100ms);  // everyone parked

    StatWindow stats;
    const double cpu0 = cpu_ms();
    const auto t0 = now();
    mnp::sleep(800ms);
    const double wall = ms_since(t0);
    const double cpu = cpu_ms() - cpu0;
    EXPECT_LT(cpu, 40.0) << "ms of CPU over " << wall << " ms with every G parked";
    EXPECT_LT(stats(mnp::Stat::polls), 100u) << "netpoll calls while idle";
    EXPECT_LT(stats(mnp::Stat::ctx_switches), 100u) << "context switches while idle";

    for (auto& p : pairs) EXPECT_NO_ERR(p.client->write("wake").err);
    g.wait();
    EXPECT_EQ(readers_ok.load(), kConns);
  });
}

// 29. A timer added from another thread while an M is blocked in the poller
// with a long timeout (the only other wake-up is a deadline 10 s away) fires
// on time: the adder wakes the poller. The G that adds it comes back from
// mnp::blocking, i.e. from another OS thread.
TEST_P(Runtime, TimerAddedFromAnotherThreadWakesBlockedPoller) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    p.server->set_read_deadline(now() + 10s);
    Group g;
    g.go([&] {
      char buf[8];
      EXPECT_ERRC(p.server->read(buf, sizeof buf).err, Errc::closed);
    });
    std::vector<double> late_ms;
    for (int trial = 0; trial < 5; trial++) {
      // Meanwhile every M is idle and one sleeps in the poller until the 10 s deadline.
      mnp::blocking([] { std::this_thread::sleep_for(50ms); });
      const auto t0 = now();
      mnp::sleep(20ms);
      late_ms.push_back(ms_since(t0) - 20.0);
    }
    EXPECT_NO_ERR(p.server->close());
    g.wait();
    std::sort(late_ms.begin(), late_ms.end());
    EXPECT_GE(late_ms.front(), 0.0);
    EXPECT_LT(late_ms.front(), 10.0) << "ms late, best of 5 (a poller not woken for a new timer)";
    EXPECT_LT(late_ms.back(), 100.0) << "ms late, worst of 5";
  });
}

// 29. A G made runnable by another thread (its mnp::blocking call returning)
// runs promptly although the runtime's Ms are all idle, one of them in the
// poller with a long timeout.
TEST_P(Runtime, GoroutineReadiedFromAnotherThreadRunsPromptly) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    p.server->set_read_deadline(now() + 10s);
    Group g;
    g.go([&] {
      char buf[8];
      EXPECT_ERRC(p.server->read(buf, sizeof buf).err, Errc::closed);
    });
    std::vector<double> delay_ms;
    for (int trial = 0; trial < 5; trial++) {
      int64_t fn_end = 0;
      mnp::blocking([&] {
        std::this_thread::sleep_for(50ms);
        fn_end = mnp::nanotime();
      });
      delay_ms.push_back((mnp::nanotime() - fn_end) / 1e6);
    }
    EXPECT_NO_ERR(p.server->close());
    g.wait();
    std::sort(delay_ms.begin(), delay_ms.end());
    EXPECT_LT(delay_ms.front(), 10.0) << "ms from the blocking call's end to the G running";
    EXPECT_LT(delay_ms.back(), 100.0) << "ms, worst of 5";
  });
}

// 29. A G readied (a semaphore released) by a G on another P that then keeps
// its P busy runs promptly on another P: the readier wakes an idle M, even
// though one M is blocked in the poller. Needs two Ps.
TEST_P(Runtime, GoroutineReadiedOnBusyPRunsElsewherePromptly) {
  run_on_backend([] {
    if (mnp::procs() < 2) GTEST_SKIP() << "needs MNP_PROCS >= 2 (a second P to run it on)";
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    p.server->set_read_deadline(now() + 10s);
    std::vector<double> delay_ms;
    for (int trial = 0; trial < 5; trial++) {
      mnp::Sema sema(0);
      std::atomic<int64_t> released_at{0}, woke_at{0};
      Group g;
      g.go([&] {
        sema.acquire();
        woke_at = mnp::nanotime();
      });
      g.go([&] {  // long parked on I/O, keeps one M in the poller
        char buf[8];
        (void)p.server->read(buf, sizeof buf);
      });
      mnp::sleep(20ms);
      g.go([&] {
        released_at = mnp::nanotime();
        sema.release();
        const int64_t until = mnp::nanotime() + 50'000'000;
        while (mnp::nanotime() < until && woke_at.load() == 0) {
        }  // busy, never yields (stops early once the waiter ran)
      });
      wait_until([&] { return woke_at.load() != 0; }, 2s);
      p.server->set_read_deadline(now() - 1s);  // ends the I/O G
      g.wait();
      p.server->set_read_deadline(now() + 10s);
      delay_ms.push_back((woke_at.load() - released_at.load()) / 1e6);
    }
    std::sort(delay_ms.begin(), delay_ms.end());
    EXPECT_LT(delay_ms.front(), 10.0) << "ms from release to the waiter running, best of 5";
  });
}

// 30. After a run, the fds and live Gs are what they were before; a second
// run in the same process finds the same.
TEST_P(Runtime, FdsAndGoroutinesReturnToBaseline) {
  const int fds_before = count_open_fds();
  for (int run = 0; run < 2; run++) {
    run_on_backend([] {
      EXPECT_EQ(mnp::num_goroutines(), 1);
      const int fds_in_run = count_open_fds();
      {
        std::vector<ConnPair> pairs(20);
        for (auto& p : pairs) {
          p = connected_pair();
          ASSERT_TRUE(p);
        }
        Group g;
        for (auto& p : pairs) {
          g.go([&p] {
            const ReadAll r = read_exact(*p.server, 2);
            EXPECT_EQ(r.data, "hi");
            EXPECT_NO_ERR(p.server->write("ok").err);
          });
          g.go([] { mnp::sleep(5ms); });
        }
        EXPECT_GT(mnp::num_goroutines(), 20);  // the readers wait for "hi"
        for (auto& p : pairs) {
          EXPECT_NO_ERR(p.client->write("hi").err);
          EXPECT_EQ(read_exact(*p.client, 2).data, "ok");
        }
      }
      wait_until([] { return mnp::num_goroutines() == 1; }, 2s);
      EXPECT_EQ(mnp::num_goroutines(), 1);
      EXPECT_EQ(count_open_fds(), fds_in_run) << "fds left open inside the run";
    });
    EXPECT_EQ(count_open_fds(), fds_before)
        << "fds left open after mnp::run returned (run " << run << "):\n"
        << describe(open_fds());
  }
}

}  // namespace
}  // namespace mnptest
