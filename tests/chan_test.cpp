// Chan<T>: hand-off, buffering, close, non-blocking operations, values that
// move, wait reasons, and a many-producers/many-consumers stress.
//
// Every case runs with the Ps of $MNP_PROCS (the suite runs with 1 and 4),
// waits for the Gs it started and checks that only main is left.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "mnp/chan.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "synctest.h"

using namespace std::chrono_literals;

namespace {

// Counts live instances, to check that the channel destroys what it holds.
struct Tracked {
  static inline std::atomic<int> live{0};
  int v = 0;
  explicit Tracked(int x) : v(x) { live++; }
  Tracked(Tracked&& o) noexcept : v(o.v) { live++; }
  Tracked(const Tracked&) = delete;
  ~Tracked() { live--; }
};

struct NoDefault {
  explicit NoDefault(int x) : v(x) {}
  int v;
};

}  // namespace

TEST(Chan, UnbufferedSendWaitsForReceiver) {
  synctest::run([] {
    mnp::Chan<int> ch;
    std::atomic<bool> sent{false};
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      EXPECT_FALSE(ch.send(7));
      sent = true;
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_send, ch.core()));
    EXPECT_FALSE(sent.load());  // nobody received: the sender is still parked
    auto [v, ok] = ch.recv();
    EXPECT_TRUE(ok);
    EXPECT_EQ(v, 7);
    wg.wait();
    EXPECT_TRUE(sent.load());
  });
}

TEST(Chan, UnbufferedRecvWaitsForSender) {
  synctest::run([] {
    mnp::Chan<std::string> ch;
    std::string got;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      auto [v, ok] = ch.recv();
      EXPECT_TRUE(ok);
      got = std::move(v);
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_recv, ch.core()));
    EXPECT_FALSE(ch.send(std::string(100, 'x')));  // moved into the parked receiver's frame
    wg.wait();
    EXPECT_EQ(got, std::string(100, 'x'));
  });
}

TEST(Chan, UnbufferedHandOffKeepsOrder) {
  static constexpr int kN = 20000;
  synctest::run([] {
    mnp::Chan<int> ch;
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      for (int i = 0; i < kN; i++) EXPECT_FALSE(ch.send(i));
      EXPECT_FALSE(ch.close());
      wg.done();
    });
    int want = 0;
    for (int v : ch) {
      ASSERT_EQ(v, want);
      want++;
    }
    EXPECT_EQ(want, kN);
    wg.wait();
  });
}

// Each send completes only once its value was received: the sender can
// never be more than one value ahead of the receiver.
TEST(Chan, UnbufferedSenderNeverRunsAhead) {
  synctest::run([] {
    mnp::Chan<int> ch;
    std::atomic<int> received{0};
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      for (int i = 0; i < 2000; i++) {
        EXPECT_FALSE(ch.send(i));
        // Sent i: the receiver holds value i, and has counted i values before it.
        EXPECT_GE(received.load(), i);
      }
      wg.done();
    });
    for (int i = 0; i < 2000; i++) {
      auto [v, ok] = ch.recv();
      ASSERT_EQ(v, i);
      received.store(i + 1);
      if (i % 16 == 0) mnp::yield();
    }
    wg.wait();
  });
}

// Two Gs that hand a value back and forth ready each other into runnext and
// would share one time slice for ever; on one P the rest of the run queue
// must still get its turn (Go ends the chain by preemption after 10 ms).
TEST(Chan, PingPongDoesNotStarveTheRunQueue) {
  synctest::run(
      [] {
        mnp::Chan<int> ping, pong;
        std::atomic<bool> stop{false};
        mnp::WaitGroup wg;
        wg.add(3);
        mnp::go([&] {
          while (!stop.load()) {
            EXPECT_FALSE(ping.send(1));
            EXPECT_TRUE(pong.recv().ok);
          }
          EXPECT_FALSE(ping.close());
          wg.done();
        });
        mnp::go([&] {
          for (int v : ping) EXPECT_FALSE(pong.send(v));
          wg.done();
        });
        mnp::go([&] {  // queued behind the pair: must run, and stops it
          stop = true;
          wg.done();
        });
        wg.wait();
      },
      1);
}

TEST(Chan, BufferedHoldsCapValues) {
  synctest::run([] {
    mnp::Chan<int> ch(3);
    EXPECT_EQ(ch.cap(), 3u);
    EXPECT_EQ(ch.len(), 0u);
    for (int i = 0; i < 3; i++) EXPECT_EQ(ch.try_send(i), mnp::ChanStatus::ok);
    EXPECT_EQ(ch.len(), 3u);
    EXPECT_EQ(ch.try_send(99), mnp::ChanStatus::would_block);  // full, nobody receiving
    for (int i = 0; i < 3; i++) {
      auto [v, ok] = ch.recv();
      EXPECT_TRUE(ok);
      EXPECT_EQ(v, i);
    }
    EXPECT_EQ(ch.len(), 0u);
    EXPECT_EQ(ch.try_recv().status, mnp::ChanStatus::would_block);
  });
}

TEST(Chan, BufferedSenderParksWhenFullAndKeepsOrder) {
  synctest::run([] {
    mnp::Chan<int> ch(2);
    std::atomic<int> sent{0};
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      for (int i = 0; i < 5; i++) {
        EXPECT_FALSE(ch.send(i));
        sent = i + 1;
      }
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_send, ch.core()));
    EXPECT_EQ(sent.load(), 2);  // two in the buffer, the third waits
    EXPECT_EQ(ch.len(), 2u);
    // The parked sender's value goes into the slot the receive frees.
    for (int i = 0; i < 5; i++) {
      auto [v, ok] = ch.recv();
      EXPECT_TRUE(ok);
      EXPECT_EQ(v, i);
    }
    wg.wait();
  });
}

TEST(Chan, CloseWakesAllReceivers) {
  static constexpr int kN = 16;
  synctest::run([] {
    mnp::Chan<int> ch;
    std::atomic<int> closed_seen{0};
    mnp::WaitGroup wg;
    wg.add(kN);
    for (int i = 0; i < kN; i++) {
      mnp::go([&] {
        auto [v, ok] = ch.recv();
        if (!ok && v == 0) closed_seen++;
        wg.done();
      });
    }
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_recv, ch.core(), kN));
    EXPECT_FALSE(ch.close());
    wg.wait();
    EXPECT_EQ(closed_seen.load(), kN);
  });
}

TEST(Chan, CloseFailsWaitingSenders) {
  static constexpr int kN = 8;
  synctest::run([] {
    mnp::Chan<int> ch(1);
    ASSERT_EQ(ch.try_send(-1), mnp::ChanStatus::ok);  // full
    std::atomic<int> errors{0};
    mnp::WaitGroup wg;
    wg.add(kN);
    for (int i = 0; i < kN; i++) {
      mnp::go([&, i] {
        mnp::Error err = ch.send(i);
        if (err == mnp::Errc::chan_closed) errors++;
        wg.done();
      });
    }
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_send, ch.core(), kN));
    EXPECT_FALSE(ch.close());
    wg.wait();
    EXPECT_EQ(errors.load(), kN);
    // The value buffered before the close is still delivered.
    auto [v, ok] = ch.recv();
    EXPECT_TRUE(ok);
    EXPECT_EQ(v, -1);
  });
}

TEST(Chan, ClosedChannelDrainsThenReportsClosed) {
  synctest::run([] {
    mnp::Chan<int> ch(4);
    EXPECT_FALSE(ch.send(1));
    EXPECT_FALSE(ch.send(2));
    EXPECT_FALSE(ch.close());
    EXPECT_EQ(ch.recv().value, 1);
    EXPECT_EQ(ch.recv().value, 2);
    auto [v, ok] = ch.recv();
    EXPECT_FALSE(ok);
    EXPECT_EQ(v, 0);
    EXPECT_EQ(ch.try_recv().status, mnp::ChanStatus::closed);
    EXPECT_FALSE(ch.recv_opt().has_value());
  });
}

TEST(Chan, SendOnClosedIsAnError) {
  synctest::run([] {
    mnp::Chan<int> ch(1);
    EXPECT_FALSE(ch.close());
    mnp::Error err = ch.send(1);
    EXPECT_EQ(err, mnp::Errc::chan_closed);
    EXPECT_STREQ(err.op(), "send");
    EXPECT_EQ(ch.try_send(1), mnp::ChanStatus::closed);
    EXPECT_EQ(ch.len(), 0u);
  });
}

TEST(Chan, CloseTwiceIsAnError) {
  synctest::run([] {
    mnp::Chan<int> ch;
    EXPECT_FALSE(ch.close());
    mnp::Error err = ch.close();
    EXPECT_EQ(err, mnp::Errc::chan_closed);
    EXPECT_STREQ(err.op(), "close");
    EXPECT_EQ(mnp::Chan<int>::nil().close(), mnp::Errc::chan_closed);
  });
}

TEST(Chan, TryOperationsNeverBlock) {
  synctest::run([] {
    mnp::Chan<int> ch;
    EXPECT_EQ(ch.try_send(1), mnp::ChanStatus::would_block);  // unbuffered, no receiver
    EXPECT_EQ(ch.try_recv().status, mnp::ChanStatus::would_block);
    int v = 5;
    EXPECT_EQ(ch.try_send(std::move(v)), mnp::ChanStatus::would_block);
    // With a receiver parked, try_send hands the value over.
    mnp::WaitGroup wg;
    wg.add(1);
    int got = 0;
    mnp::go([&] {
      got = ch.recv().value;
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_recv, ch.core()));
    EXPECT_EQ(ch.try_send(42), mnp::ChanStatus::ok);
    wg.wait();
    EXPECT_EQ(got, 42);
    // With a sender parked, try_recv takes its value.
    wg.add(1);
    mnp::go([&] {
      EXPECT_FALSE(ch.send(43));
      wg.done();
    });
    ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_send, ch.core()));
    auto r = ch.try_recv();
    EXPECT_EQ(r.status, mnp::ChanStatus::ok);
    ASSERT_TRUE(r.value.has_value());
    EXPECT_EQ(*r.value, 43);
    wg.wait();
  });
}

TEST(Chan, FailedTrySendLeavesTheValue) {
  synctest::run([] {
    mnp::Chan<std::unique_ptr<int>> ch;
    auto p = std::make_unique<int>(3);
    EXPECT_EQ(ch.try_send(std::move(p)), mnp::ChanStatus::would_block);
    ASSERT_NE(p, nullptr);  // not moved from: nothing was sent
    EXPECT_EQ(*p, 3);
  });
}

TEST(Chan, MoveOnlyValues) {
  synctest::run([] {
    mnp::Chan<std::unique_ptr<int>> unbuf;
    mnp::Chan<std::unique_ptr<int>> buf(2);
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      for (int i = 0; i < 100; i++) EXPECT_FALSE(unbuf.send(std::make_unique<int>(i)));
      for (int i = 0; i < 100; i++) EXPECT_FALSE(buf.send(std::make_unique<int>(i)));
      wg.done();
    });
    for (int i = 0; i < 100; i++) EXPECT_EQ(*unbuf.recv().value, i);
    for (int i = 0; i < 100; i++) EXPECT_EQ(*buf.recv().value, i);
    wg.wait();
  });
}

TEST(Chan, ValuesNeedNoDefaultConstructor) {
  synctest::run([] {
    mnp::Chan<NoDefault> ch(1);
    EXPECT_FALSE(ch.send(NoDefault(4)));
    auto v = ch.recv_opt();
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->v, 4);
    EXPECT_EQ(ch.try_send(NoDefault(5)), mnp::ChanStatus::ok);
    auto r = ch.try_recv();
    ASSERT_TRUE(r.value.has_value());
    EXPECT_EQ(r.value->v, 5);
    EXPECT_FALSE(ch.close());
    EXPECT_FALSE(ch.recv_opt().has_value());
  });
}

TEST(Chan, BufferedValuesAreDestroyedWithTheChannel) {
  Tracked::live = 0;
  synctest::run([] {
    {
      mnp::Chan<Tracked> ch(8);
      for (int i = 0; i < 5; i++) EXPECT_FALSE(ch.send(Tracked(i)));
      EXPECT_EQ(Tracked::live.load(), 5);
      EXPECT_EQ(ch.recv_opt()->v, 0);
      EXPECT_EQ(Tracked::live.load(), 4);
      mnp::Chan<Tracked> copy = ch;  // a second handle to the same channel
      EXPECT_TRUE(copy == ch);
      EXPECT_EQ(copy.len(), 4u);
    }
    EXPECT_EQ(Tracked::live.load(), 0);  // the last handle freed the 4 left
    // The wrap-around of the ring, and a parked sender's value moved in.
    mnp::Chan<Tracked> ch(3);
    mnp::WaitGroup wg;
    wg.add(1);
    mnp::go([&] {
      for (int i = 0; i < 50; i++) EXPECT_FALSE(ch.send(Tracked(i)));
      wg.done();
    });
    for (int i = 0; i < 50; i++) EXPECT_EQ(ch.recv_opt()->v, i);
    wg.wait();
    EXPECT_EQ(Tracked::live.load(), 0);
  });
}

TEST(Chan, HandlesShareOneChannel) {
  synctest::run([] {
    mnp::Chan<int> a(1);
    mnp::Chan<int> b = a;
    EXPECT_EQ(a.try_send(9), mnp::ChanStatus::ok);
    EXPECT_EQ(b.len(), 1u);
    EXPECT_EQ(b.recv().value, 9);
    mnp::Chan<int> moved = std::move(b);
    EXPECT_TRUE(b.is_nil());  // NOLINT(bugprone-use-after-move): a moved-from handle is nil
    EXPECT_TRUE(moved == a);
    // A channel outlives the frame that made it while a G holds a handle.
    mnp::Chan<int> out(1);
    {
      mnp::Chan<int> local;
      mnp::go([local, out]() mutable { EXPECT_FALSE(out.send(local.recv().value + 1)); });
      ASSERT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_recv, local.core()));
      EXPECT_FALSE(local.send(1));
    }
    EXPECT_EQ(out.recv().value, 2);
  });
}

TEST(Chan, NilChannelNeverReady) {
  synctest::run([] {
    auto nil = mnp::Chan<int>::nil();
    EXPECT_TRUE(nil.is_nil());
    EXPECT_EQ(nil.try_send(1), mnp::ChanStatus::would_block);
    EXPECT_EQ(nil.try_recv().status, mnp::ChanStatus::would_block);
    EXPECT_EQ(nil.len(), 0u);
    EXPECT_EQ(nil.cap(), 0u);
  });
}

TEST(Chan, BlockedGoroutinesCarryWaitReasons) {
  synctest::run([] {
    mnp::Chan<int> s, r;
    mnp::WaitGroup wg;
    wg.add(2);
    mnp::go([&] {
      EXPECT_FALSE(s.send(1));
      wg.done();
    });
    mnp::go([&] {
      EXPECT_TRUE(r.recv().ok);
      wg.done();
    });
    EXPECT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_send, s.core()));
    EXPECT_TRUE(synctest::wait_parked(mnp::rt::WaitReason::chan_recv, r.core()));
    EXPECT_STREQ(mnp::rt::wait_reason_text(mnp::rt::WaitReason::chan_send), "chan send");
    EXPECT_STREQ(mnp::rt::wait_reason_text(mnp::rt::WaitReason::chan_recv), "chan receive");
    EXPECT_EQ(s.recv().value, 1);
    EXPECT_FALSE(r.send(2));
    wg.wait();
  });
}

TEST(Chan, AfterReceivesOnceWhenTheTimeComes) {
  synctest::run([] {
    auto t0 = mnp::Clock::now();
    auto ch = mnp::after(20ms);
    EXPECT_EQ(ch.cap(), 1u);
    auto [when, ok] = ch.recv();
    EXPECT_TRUE(ok);
    EXPECT_GE(when - t0, 20ms);
    EXPECT_GE(mnp::Clock::now() - t0, 20ms);
    EXPECT_EQ(ch.try_recv().status, mnp::ChanStatus::would_block);  // once only
  });
}

// Many producers and consumers over one channel: every value arrives once.
void stress(size_t cap) {
  static constexpr int kProducers = 8, kConsumers = 8, kPerProducer = 5000;
  int64_t sum = 0, count = 0;
  synctest::run([&] {
    mnp::Chan<int64_t> ch(cap);
    mnp::WaitGroup producers, consumers;
    mnp::Mutex mu;
    producers.add(kProducers);
    consumers.add(kConsumers);
    for (int p = 0; p < kProducers; p++) {
      mnp::go([&, p] {
        for (int i = 0; i < kPerProducer; i++) EXPECT_FALSE(ch.send(int64_t{p} * kPerProducer + i));
        producers.done();
      });
    }
    for (int c = 0; c < kConsumers; c++) {
      mnp::go([&] {
        int64_t s = 0, n = 0;
        for (int64_t v : ch) {
          s += v;
          n++;
        }
        mu.lock();
        sum += s;
        count += n;
        mu.unlock();
        consumers.done();
      });
    }
    producers.wait();
    EXPECT_FALSE(ch.close());
    consumers.wait();
  });
  static constexpr int64_t total = int64_t{kProducers} * kPerProducer;
  EXPECT_EQ(count, total);
  EXPECT_EQ(sum, total * (total - 1) / 2);
}

TEST(Chan, ManyProducersManyConsumersUnbuffered) {
  stress(0);
}
TEST(Chan, ManyProducersManyConsumersBuffered) {
  stress(64);
}
