// select: ready cases chosen fairly, default never blocking, one park woken
// by whichever case fires (the others withdrawn), close and timeouts, and a
// stress of many selects over overlapping channels.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <vector>

#include "mnp/chan.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "synctest.h"

using namespace std::chrono_literals;

TEST(Select, DefaultNeverBlocks) {
  synctest::run([] {
    mnp::Chan<int> a, b(1);
    ASSERT_EQ(b.try_send(0), mnp::ChanStatus::ok);  // b is full: a send on it would block
    int defaults = 0;
    for (int i = 0; i < 10000; i++) {
      int r =
          mnp::select(mnp::on_recv(a), mnp::on_send(b, 1), mnp::on_default([&] { defaults++; }));
      ASSERT_EQ(r, 2);
    }
    EXPECT_EQ(defaults, 10000);
    // A default among ready cases is not taken.
    EXPECT_EQ(mnp::select(mnp::on_recv(b), mnp::on_default()), 0);
    // Only nil channels and a default: the default.
    auto nil = mnp::Chan<int>::nil();
    EXPECT_EQ(mnp::select(mnp::on_recv(nil), mnp::on_send(nil, 1), mnp::on_default()), 2);
  });
}

TEST(Select, ReadyCasesAreChosenFairly) {
  static constexpr int kIters = 10000;
  synctest::run([] {
    mnp::Chan<int> a(1), b(1), c(1);
    int hits[3] = {};
    for (int i = 0; i < kIters; i++) {
      // All three are ready every time.
      for (auto* ch : {&a, &b, &c}) ch->try_send(i);
      int r = mnp::select(mnp::on_recv(a), mnp::on_recv(b), mnp::on_recv(c));
      ASSERT_GE(r, 0);
      hits[r]++;
    }
    // Uniform: ~3333 each; 2500 is more than 15 standard deviations away.
    for (int h : hits) EXPECT_GT(h, 2500) << hits[0] << " " << hits[1] << " " << hits[2];
  });
}

// Two producers, on other Gs (and Ps), keep two channels full; a receiver
// selects over both 10k times. Both cases are ready at every select (the
// channels start full and only this G receives), and each receive meets a
// parked producer whose value moves into the freed slot while it wakes and
// races to send again. Neither case may starve: each must win about half.
TEST(Select, NoCaseStarvesUnderContention) {
  static constexpr int kIters = 10000;
  synctest::run([] {
    mnp::Chan<int> a(kIters), b(kIters);
    for (int i = 0; i < kIters; i++) {
      ASSERT_EQ(a.try_send(i), mnp::ChanStatus::ok);
      ASSERT_EQ(b.try_send(i), mnp::ChanStatus::ok);
    }
    mnp::WaitGroup wg;
    wg.add(2);
    for (auto* ch : {&a, &b}) {
      mnp::go([&, ch] {
        while (!ch->send(1)) {
        }  // until closed
        wg.done();
      });
    }
    int hits[2] = {};
    for (int i = 0; i < kIters; i++) {
      int r = mnp::select(mnp::on_recv(a), mnp::on_recv(b));
      hits[r]++;
    }
    EXPECT_FALSE(a.close());
    EXPECT_FALSE(b.close());
    wg.wait();
    // Uniform: 5000 each, sd 50; 4000 is 20 sd away.
    EXPECT_GT(hits[0], 4000) << hits[0] << " vs " << hits[1];
    EXPECT_GT(hits[1], 4000) << hits[0] << " vs " << hits[1];
  });
}

TEST(Select, RecvHandlersGetTheValue) {
  synctest::run([] {
    mnp::Chan<int> a(1);
    mnp::Chan<std::string> s(1);
    ASSERT_EQ(a.try_send(5), mnp::ChanStatus::ok);
    int got = 0;
    EXPECT_EQ(mnp::select(mnp::on_recv(a,
                                       [&](int v, bool ok) {
                                         EXPECT_TRUE(ok);
                                         got = v;
                                       })),
              0);
    EXPECT_EQ(got, 5);
    ASSERT_EQ(s.try_send("hello"), mnp::ChanStatus::ok);
    std::optional<std::string> o;
    mnp::select(mnp::on_recv(s, [&](std::optional<std::string> v) { o = std::move(v); }));
    EXPECT_EQ(o, "hello");
  });
}

TEST(Select, ParksOnceAndTheFirstCaseToFireWins) {
  synctest::run([] {
    mnp::Chan<int> a, b, c;
    int which = -1, value = 0;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      which = mnp::select(mnp::on_recv(a), mnp::on_recv(b, [&](int v, bool) { value = v; }),
                          mnp::on_recv(c));
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    EXPECT_FALSE(b.send(77));  // hands off to the parked select
    wg.wait();
    EXPECT_EQ(which, 1);
    EXPECT_EQ(value, 77);
    // The losing cases were withdrawn: nobody receives on a or c any more.
    EXPECT_EQ(a.try_send(1), mnp::ChanStatus::would_block);
    EXPECT_EQ(c.try_send(1), mnp::ChanStatus::would_block);
  });
}

TEST(Select, SendCaseFiresWhenAReceiverComes) {
  synctest::run([] {
    mnp::Chan<int> out, in;
    int r = -1;
    bool sent = false;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      r = mnp::select(mnp::on_recv(in), mnp::on_send(out, 123, [&] { sent = true; }));
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    auto [v, ok] = out.recv();
    wg.wait();
    EXPECT_TRUE(ok);
    EXPECT_EQ(v, 123);
    EXPECT_EQ(r, 1);
    EXPECT_TRUE(sent);
    EXPECT_EQ(in.try_send(1), mnp::ChanStatus::would_block);
  });
}

TEST(Select, CloseFiresAParkedRecvCase) {
  synctest::run([] {
    mnp::Chan<int> a, b;
    bool closed = false;
    int r = -1;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      r = mnp::select(mnp::on_recv(a), mnp::on_recv(b, [&](int, bool ok) { closed = !ok; }));
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    EXPECT_FALSE(b.close());
    wg.wait();
    EXPECT_EQ(r, 1);
    EXPECT_TRUE(closed);
  });
}

TEST(Select, SendOnClosedChannelReachesTheHandler) {
  synctest::run([] {
    mnp::Chan<int> a;
    EXPECT_FALSE(a.close());
    mnp::Error err;
    EXPECT_EQ(mnp::select(mnp::on_send(a, 1, [&](mnp::Error e) { err = e; })), 0);
    EXPECT_EQ(err, mnp::Errc::chan_closed);
    // A parked send case woken by close gets the error too.
    mnp::Chan<int> b;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      mnp::select(mnp::on_send(b, 1, [&](mnp::Error e) { err = e; }));
      wg.done();
    });
    err = mnp::Error();
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    EXPECT_FALSE(b.close());
    wg.wait();
    EXPECT_EQ(err, mnp::Errc::chan_closed);
  });
}

TEST(SelectDeathTest, SendOnClosedChannelWithoutErrorHandlerIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(synctest::run([] {
                 mnp::Chan<int> a;
                 (void)a.close();
                 mnp::select(mnp::on_send(a, 1));
               }),
               "fatal error: select: send on closed channel");
}

TEST(Select, SameChannelInSeveralCases) {
  synctest::run([] {
    mnp::Chan<int> ch;
    mnp::WaitGroup wg;
    wg.add(1);
    int r = -1;
    mnp::go([&] {
      // A send and two receives on one channel: only a partner can match.
      r = mnp::select(mnp::on_send(ch, 1), mnp::on_recv(ch), mnp::on_recv(ch));
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    EXPECT_FALSE(ch.send(2));  // goes to one of the receive cases
    wg.wait();
    EXPECT_TRUE(r == 1 || r == 2) << r;
    EXPECT_EQ(ch.try_recv().status, mnp::ChanStatus::would_block);  // the send case was withdrawn
  });
}

TEST(Select, TimeoutWithAfter) {
  synctest::run([] {
    mnp::Chan<int> never;
    auto t0 = mnp::Clock::now();
    int r = mnp::select(mnp::on_recv(never), mnp::on_recv(mnp::after(20ms)));
    EXPECT_EQ(r, 1);
    EXPECT_GE(mnp::Clock::now() - t0, 20ms);
    // A timer that has not fired yet loses to a ready case.
    mnp::Chan<int> ready(1);
    ASSERT_EQ(ready.try_send(1), mnp::ChanStatus::ok);
    EXPECT_EQ(mnp::select(mnp::on_recv(ready), mnp::on_recv(mnp::after(1h))), 0);
  });
}

TEST(Select, BlockedGoroutineWaitsWithReasonSelect) {
  synctest::run([] {
    mnp::Chan<int> a, b;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      mnp::select(mnp::on_recv(a), mnp::on_recv(b));
      wg.done();
    });
    EXPECT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::select));
    EXPECT_STREQ(mnp::rt::wait_reason_text(mnp::rt::WaitReason::select), "select");
    EXPECT_FALSE(a.close());
    wg.wait();
  });
}

// Producers select-send over two channels, consumers select-receive over the
// same two plus a quit channel: every value arrives exactly once. Exercises
// lock ordering (every G locks {a, b} or {a, b, quit}) and withdrawn sudogs.
TEST(Select, ManySelectsOverSharedChannels) {
  static constexpr int kProducers = 6, kConsumers = 6, kPerProducer = 4000;
  int64_t sum = 0, count = 0;
  synctest::run([&] {
    mnp::Chan<int64_t> a, b(4);
    mnp::Chan<int> quit;
    mnp::Mutex mu;
    mnp::WaitGroup producers, consumers;
    producers.add(kProducers);
    consumers.add(kConsumers);
    for (int p = 0; p < kProducers; p++) {
      mnp::go([&, p] {
        for (int i = 0; i < kPerProducer; i++) {
          int64_t v = int64_t{p} * kPerProducer + i;
          mnp::select(mnp::on_send(a, v), mnp::on_send(b, v));
        }
        producers.done();
      });
    }
    for (int c = 0; c < kConsumers; c++) {
      mnp::go([&] {
        int64_t s = 0, n = 0;
        bool done = false;
        while (!done) {
          auto take = [&](int64_t v, bool ok) {
            if (ok) {
              s += v;
              n++;
            }
          };
          int r = mnp::select(mnp::on_recv(a, take), mnp::on_recv(b, take), mnp::on_recv(quit));
          if (r == 2) {
            // Quit: drain what is left, without waiting.
            for (;;) {
              int d = mnp::select(mnp::on_recv(a, take), mnp::on_recv(b, take), mnp::on_default());
              if (d == 2) break;
            }
            done = true;
          }
        }
        mu.lock();
        sum += s;
        count += n;
        mu.unlock();
        consumers.done();
      });
    }
    producers.wait();
    EXPECT_FALSE(quit.close());
    consumers.wait();
  });
  static constexpr int64_t total = int64_t{kProducers} * kPerProducer;
  EXPECT_EQ(count, total);
  EXPECT_EQ(sum, total * (total - 1) / 2);
}
