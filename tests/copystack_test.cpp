// tests/copystack_test.cpp — copied stacks (MNP_STACK=copy; runtime/sched/sched.h).
//
// Every G spawned here runs on the one shared stack; a parked G's frames sit
// in a heap buffer until it runs again. What must still hold:
//   - whatever reaches into a parked G's frame does so correctly: a channel
//     hand-off into a parked receiver (unbuffered, buffered, select), a
//     receiver taking a parked sender's value;
//   - frames come back intact, deep ones too, across parks and yields;
//   - Mutex / WaitGroup on the heap, shared by many Gs, work; on a G's stack
//     they are refused with a fatal error naming them;
//   - echo round trips over sockets, many Gs parked in read, on every
//     readiness backend; the completion backend (uring) is refused at start;
//   - mnp::blocking keeps the P (no other G runs on the shared stack while
//     the blocking G still uses it).
// The binary sets MNP_STACK=copy and MNP_PROCS=1 itself (meson sets them
// too), so `build/tests/copystack-tests` runs as is.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "mnp/chan.h"
#include "mnp/debug.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "testutil.h"

namespace mnptest {
namespace {

// Before any test (and before a death test's fork): the mode under test.
const bool g_env = [] {
  setenv("MNP_STACK", "copy", 1);
  setenv("MNP_PROCS", "1", 1);
  return true;
}();

// Runs fn as the main G on the default backend under a watchdog.
template <class F>
void run_copy(F&& fn, const char* backend = nullptr) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  Watchdog dog(std::string(info->test_suite_name()) + "." + info->name(), 20s);
  mnp::Options o;
  o.backend = backend;
  bool ran = false;
  int rc = mnp::run(
      [&] {
        ASSERT_TRUE(mnp::rt::sched.copystack) << "MNP_STACK=copy did not take effect";
        fn();
        ran = true;
        wait_until([] { return mnp::num_goroutines() <= 1; }, 2s);
        EXPECT_EQ(mnp::num_goroutines(), 1) << "Gs outlived the test's main G";
      },
      o);
  ASSERT_EQ(rc, 0);
  EXPECT_TRUE(ran);
}

// Spawned Gs wait on a heap WaitGroup (one on a spawned G's stack is refused).
struct HeapGroup {
  std::shared_ptr<mnp::WaitGroup> wg = std::make_shared<mnp::WaitGroup>();
  template <class F>
  void go(F&& fn) {
    wg->add(1);
    mnp::go([wg = wg, f = std::forward<F>(fn)]() mutable {
      f();
      wg->done();
    });
  }
  void wait() { wg->wait(); }
};

// Yields until n copy-mode Gs wait (parked; all but the last one to park
// have had their frames saved, as another G ran on the shared stack).
void wait_parked(int n) {
  for (int i = 0; i < 100000; i++) {
    int w = 0;
    {
      mnp::rt::LockGuard<mnp::rt::SpinLock> l(mnp::rt::sched.allgs_lock);
      for (mnp::rt::G* gp : mnp::rt::sched.allgs)
        if (gp->copystack && gp->status.load() == mnp::rt::GStatus::waiting) w++;
    }
    if (w >= n) return;
    mnp::yield();
  }
  ADD_FAILURE() << "fewer than " << n << " copy-mode Gs parked";
}

// A value with a checksum, big enough to span several cache lines.
struct Big {
  std::array<uint64_t, 32> w{};
  static Big make(uint64_t seed) {
    Big b;
    for (size_t i = 0; i < b.w.size(); i++) b.w[i] = seed * 1000003 + i * 7919;
    return b;
  }
  bool is(uint64_t seed) const { return w == make(seed).w; }
};

TEST(CopyStack, SpawnedGsShareOneStackMainKeepsItsOwn) {
  run_copy([] {
    int main_local = 0;
    EXPECT_FALSE(mnp::rt::on_shared_stack(&main_local)) << "the main G keeps a page stack";
    HeapGroup g;
    auto addrs = std::make_shared<std::vector<uintptr_t>>(8);
    for (int i = 0; i < 8; i++) {
      g.go([addrs, i] {
        int local = i;
        (*addrs)[i] = reinterpret_cast<uintptr_t>(&local);
        EXPECT_TRUE(mnp::rt::on_shared_stack(&local));
        mnp::yield();
        EXPECT_EQ(local, i);
      });
    }
    g.wait();
    // Same closure, same depth: the same address on the one shared stack.
    for (int i = 1; i < 8; i++) EXPECT_EQ((*addrs)[i], (*addrs)[0]);
  });
}

// A closure is copied to the heap by spawn (not onto the busy shared stack),
// runs with its captures intact and is destroyed exactly once.
TEST(CopyStack, ClosureCapturesSurviveAndAreDestroyedOnce) {
  static std::atomic<int> destroyed{0};
  struct Probe {
    bool live = true;
    Probe() = default;
    Probe(Probe&& o) noexcept : live(o.live) { o.live = false; }
    ~Probe() {
      if (live) destroyed++;
    }
  };
  destroyed = 0;
  run_copy([] {
    HeapGroup g;
    for (int i = 0; i < 50; i++) {
      std::array<char, 3000> blob;
      for (size_t k = 0; k < blob.size(); k++) blob[k] = static_cast<char>(k * 31 + i);
      g.go([blob, i, s = std::string(100, static_cast<char>('a' + i % 26)), p = Probe()] {
        mnp::yield();
        for (size_t k = 0; k < blob.size(); k++)
          ASSERT_EQ(blob[k], static_cast<char>(k * 31 + i)) << "closure byte " << k;
        EXPECT_EQ(s, std::string(100, static_cast<char>('a' + i % 26)));
        EXPECT_TRUE(p.live);
      });
    }
    g.wait();
    wait_until([] { return mnp::num_goroutines() <= 1; }, 2s);
  });
  EXPECT_EQ(destroyed.load(), 50);
}

// Unbuffered: receivers park (frames saved); senders — copy-mode Gs on the
// shared stack — move values straight into the saved receivers' frames.
TEST(CopyStack, UnbufferedHandOffIntoParkedReceiver) {
  run_copy([] {
    constexpr int kN = 64;
    mnp::Chan<Big> big;
    mnp::Chan<std::string> str;
    auto got = std::make_shared<std::vector<int>>(kN, 0);
    HeapGroup g;
    for (int i = 0; i < kN; i++) {
      g.go([big, str, got, i]() mutable {
        char pad[200];  // some frame below the receive, to be saved and put back
        for (size_t k = 0; k < sizeof pad; k++) pad[k] = static_cast<char>(i + k);
        auto [b, ok] = big.recv();
        auto [s, ok2] = str.recv();
        EXPECT_TRUE(ok && ok2);
        uint64_t seed = b.w[0] / 1000003;
        EXPECT_TRUE(b.is(seed)) << "a value moved into a parked frame arrived torn";
        EXPECT_EQ(s, "value " + std::to_string(seed) + std::string(64, 'x'));
        for (size_t k = 0; k < sizeof pad; k++) ASSERT_EQ(pad[k], static_cast<char>(i + k));
        (*got)[seed]++;
      });
    }
    wait_parked(kN);
    for (int i = 0; i < kN; i++) {
      g.go([big, str, i]() mutable {
        EXPECT_FALSE(big.send(Big::make(i)));
        EXPECT_FALSE(str.send("value " + std::to_string(i) + std::string(64, 'x')));
      });
    }
    g.wait();
    for (int i = 0; i < kN; i++) EXPECT_EQ((*got)[i], 1) << "value " << i;
  });
}

// Unbuffered, the other way: senders park with the value in their frame; a
// receiver takes it out of the saved copy.
TEST(CopyStack, ReceiverTakesParkedSendersValue) {
  run_copy([] {
    constexpr int kN = 64;
    mnp::Chan<Big> ch;
    HeapGroup g;
    for (int i = 0; i < kN; i++) g.go([ch, i]() mutable { EXPECT_FALSE(ch.send(Big::make(i))); });
    wait_parked(kN);
    auto seen = std::make_shared<std::vector<int>>(kN, 0);
    g.go([ch, seen]() mutable {
      for (int k = 0; k < kN; k++) {
        auto [b, ok] = ch.recv();
        EXPECT_TRUE(ok);
        uint64_t seed = b.w[0] / 1000003;
        EXPECT_TRUE(b.is(seed));
        if (seed < kN) (*seen)[seed]++;
      }
    });
    g.wait();
    for (int i = 0; i < kN; i++) EXPECT_EQ((*seen)[i], 1);
  });
}

// Buffered and full: each receive takes the oldest buffered value and moves a
// parked sender's value (read from its saved frame) into the freed slot.
TEST(CopyStack, BufferedFullChannelServesParkedSendersInOrder) {
  run_copy([] {
    constexpr int kCap = 4, kN = 40;
    mnp::Chan<std::string> ch(kCap);
    HeapGroup g;
    g.go([ch]() mutable {
      for (int i = 0; i < kN; i++)
        EXPECT_FALSE(ch.send(std::string(50, 'a') + std::to_string(i)));  // parks when full
      ch.close();
    });
    wait_parked(1);  // the sender waits on the full buffer
    g.go([ch]() mutable {
      int i = 0;
      for (auto& s : ch) {
        EXPECT_EQ(s, std::string(50, 'a') + std::to_string(i));
        i++;
        if (i % 3 == 0) mnp::yield();
      }
      EXPECT_EQ(i, 40);
    });
    g.wait();
  });
}

// select: a G parked on several cases (its sudogs off the stack) is woken by
// one of them; a receive case's value lands in its saved frame.
TEST(CopyStack, SelectParkedOnManyCasesGetsTheValue) {
  run_copy([] {
    constexpr int kRounds = 300;
    std::array<mnp::Chan<Big>, 3> in;
    mnp::Chan<int> out;  // the selecting G sends here when asked to (case 3)
    HeapGroup g;
    auto tally = std::make_shared<std::array<int, 4>>();
    g.go([in, out, tally]() mutable {
      for (int r = 0; r < kRounds; r++) {
        char pad[128];
        for (size_t k = 0; k < sizeof pad; k++) pad[k] = static_cast<char>(r ^ k);
        uint64_t got = ~0ull;
        bool good = false;
        int idx = mnp::select(
            mnp::on_recv(in[0], [&](Big b, bool ok) { good = ok && b.is(got = b.w[0] / 1000003); }),
            mnp::on_recv(in[1], [&](Big b, bool ok) { good = ok && b.is(got = b.w[0] / 1000003); }),
            mnp::on_recv(in[2], [&](Big b, bool ok) { good = ok && b.is(got = b.w[0] / 1000003); }),
            mnp::on_send(out, r));
        EXPECT_TRUE(idx == 3 || good) << "round " << r << " case " << idx;
        if (idx < 3) {
          EXPECT_EQ(got, static_cast<uint64_t>(r * 10 + idx));
        }
        for (size_t k = 0; k < sizeof pad; k++) ASSERT_EQ(pad[k], static_cast<char>(r ^ k));
        (*tally)[idx]++;
      }
    });
    g.go([in, out]() mutable {
      for (int r = 0; r < kRounds; r++) {
        int which = (r * 7) % 4;
        mnp::yield();  // let the selector park first, most rounds
        if (which < 3) {
          EXPECT_FALSE(in[which].send(Big::make(r * 10 + which)));
        } else {
          auto [v, ok] = out.recv();
          EXPECT_TRUE(ok);
          EXPECT_EQ(v, r);
        }
      }
    });
    g.wait();
    int sum = 0;
    for (int i = 0; i < 4; i++) {
      EXPECT_GT((*tally)[i], 0) << "case " << i << " never fired";
      sum += (*tally)[i];
    }
    EXPECT_EQ(sum, kRounds);
  });
}

// A channel closed while Gs are parked on it wakes them all, in both
// directions.
TEST(CopyStack, CloseWakesParkedReceiversAndSenders) {
  run_copy([] {
    mnp::Chan<Big> rx, tx;
    HeapGroup g;
    auto closed = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < 20; i++) {
      g.go([rx, closed]() mutable {
        auto [b, ok] = rx.recv();
        if (!ok) (*closed)++;
      });
      g.go([tx, closed, i]() mutable {
        if (tx.send(Big::make(i))) (*closed)++;
      });
    }
    wait_parked(40);
    rx.close();
    tx.close();
    g.wait();
    EXPECT_EQ(closed->load(), 40);
  });
}

// A Mutex and a WaitGroup on the heap, shared by many copy-mode Gs that yield
// and park while holding the lock.
TEST(CopyStack, HeapMutexAndWaitGroupSharedByManyGs) {
  run_copy([] {
    struct Shared {
      mnp::Mutex mu;
      mnp::WaitGroup wg;
      long counter = 0;
    };
    auto sh = std::make_shared<Shared>();
    constexpr int kG = 100, kIters = 50;
    sh->wg.add(kG);
    for (int i = 0; i < kG; i++) {
      mnp::go([sh, i] {
        for (int k = 0; k < kIters; k++) {
          sh->mu.lock();
          long v = sh->counter;
          if ((i + k) % 7 == 0) mnp::yield();  // others contend and park on the Mutex
          sh->counter = v + 1;
          sh->mu.unlock();
        }
        sh->wg.done();
      });
    }
    sh->wg.wait();
    EXPECT_EQ(sh->counter, kG * kIters);
  });
}

// Deep frames, a checksummed array in each, parked and resumed many times at
// the bottom and on the way up; many such Gs interleave on the one stack.
uint64_t deep(int depth, uint64_t seed, mnp::Chan<int>* tick, int* bad) {
  volatile uint64_t a[24];
  for (int i = 0; i < 24; i++) a[i] = seed * 31 + static_cast<uint64_t>(depth) * 131 + i;
  uint64_t below = 0;
  if (depth > 0) {
    below = deep(depth - 1, seed, tick, bad);
  } else {
    for (int k = 0; k < 5; k++) tick->recv();  // park at the bottom
  }
  if (depth % 16 == 0) mnp::yield();  // and yield on the way up
  uint64_t sum = 0;
  for (int i = 0; i < 24; i++) {
    if (a[i] != seed * 31 + static_cast<uint64_t>(depth) * 131 + i) (*bad)++;
    sum += a[i];
  }
  return sum + below;
}

TEST(CopyStack, DeepRecursionSavedAndRestoredIntact) {
  run_copy([] {
    constexpr int kG = 16, kDepth = 150;
    mnp::Chan<int> tick;
    auto bad = std::make_shared<std::vector<int>>(kG, 0);
    auto sums = std::make_shared<std::vector<uint64_t>>(kG, 0);
    HeapGroup g;
    for (int i = 0; i < kG; i++)
      g.go([tick, bad, sums, i]() mutable {
        (*sums)[i] = deep(kDepth, static_cast<uint64_t>(i) + 1, &tick, &(*bad)[i]);
      });
    wait_parked(kG);
    // The saved images hold every frame: at least 24 words per level.
    {
      mnp::rt::LockGuard<mnp::rt::SpinLock> l(mnp::rt::sched.allgs_lock);
      for (mnp::rt::G* gp : mnp::rt::sched.allgs)
        if (gp->copystack && gp->saved) {
          EXPECT_GT(gp->save_size, kDepth * 24 * 8u);
        }
    }
    g.go([tick]() mutable {
      for (int k = 0; k < kG * 5; k++) tick.send(k);
    });
    g.wait();
    for (int i = 0; i < kG; i++) {
      EXPECT_EQ((*bad)[i], 0) << "G " << i << ": frame words changed across parks";
      uint64_t want = 0, seed = static_cast<uint64_t>(i) + 1;
      for (int d = 0; d <= kDepth; d++)
        for (int w = 0; w < 24; w++) want += seed * 31 + static_cast<uint64_t>(d) * 131 + w;
      EXPECT_EQ((*sums)[i], want) << "G " << i;
    }
  });
}

// mnp::blocking keeps the single P: no other G runs (on the shared stack,
// which the blocking G still uses) until it returns.
TEST(CopyStack, BlockingCallKeepsThePAndItsFrames) {
  run_copy([] {
    auto inside = std::make_shared<std::atomic<bool>>(false);
    auto ran_meanwhile = std::make_shared<std::atomic<int>>(0);
    HeapGroup g;
    g.go([inside] {
      char buf[256];
      for (size_t k = 0; k < sizeof buf; k++) buf[k] = static_cast<char>(k * 3);
      *inside = true;
      mnp::blocking([] { ::usleep(150 * 1000); });  // sysmon would retake after ~1 ms
      *inside = false;
      for (size_t k = 0; k < sizeof buf; k++) ASSERT_EQ(buf[k], static_cast<char>(k * 3));
    });
    for (int i = 0; i < 4; i++)
      g.go([inside, ran_meanwhile] {
        for (int k = 0; k < 50; k++) {
          if (inside->load()) (*ran_meanwhile)++;
          mnp::yield();
        }
      });
    g.wait();
    EXPECT_EQ(ran_meanwhile->load(), 0) << "a G ran on the shared stack during mnp::blocking";
  });
}

// The G dump walks a parked G's saved frames and reports their size.
TEST(CopyStack, DumpShowsSavedSizeAndBacktraceOfParkedG) {
  run_copy([] {
    mnp::Chan<int> ch;
    HeapGroup g;
    // Two parked Gs: the first one's frames were saved when the second ran;
    // the second's are still on the shared stack (saving is lazy).
    g.go([ch]() mutable { ch.recv(); });
    g.go([ch]() mutable { ch.recv(); });
    wait_parked(2);
    std::string d = mnp::debug::goroutines();
    EXPECT_NE(d.find("bytes saved (copied stack"), std::string::npos) << d;
    EXPECT_NE(d.find("on the shared stack (copied stack, not saved yet)"), std::string::npos) << d;
    size_t named = 0;
    for (size_t at = 0; (at = d.find("chan_recv", at)) != std::string::npos; at++) named++;
    EXPECT_GE(named, 2u) << "a parked G's walk did not name chan_recv:\n" << d;
    ch.send(1);
    ch.send(2);
    g.wait();
  });
}

// Echo round trips: 200 client Gs and 200 server Gs, each parked in read most
// of the time, their buffers in their frames; every byte checked.
class CopyStackEcho : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Readiness, CopyStackEcho, ::testing::Values("epoll", "uring-poll"),
                         backend_test_name);

TEST_P(CopyStackEcho, ManyParkedGsEchoEveryByte) {
  run_on_backend([] {
    ASSERT_TRUE(mnp::rt::sched.copystack);
    constexpr int kConns = 200, kRounds = 5, kMsg = 300;
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    std::string addr = ln->addr().to_string();
    auto lnp = std::shared_ptr<mnp::net::Listener>(std::move(ln));
    HeapGroup servers, clients;
    servers.go([lnp, servers]() mutable {
      for (int i = 0; i < kConns; i++) {
        auto [c, err] = lnp->accept();
        if (err) {
          ADD_FAILURE() << describe(err);
          return;
        }
        auto cp = std::shared_ptr<mnp::net::Conn>(std::move(c));
        servers.go([cp] {
          char buf[512];
          for (;;) {
            auto r = cp->read(buf, sizeof buf);
            if (r.n == 0) break;
            if (cp->write(buf, r.n).err) break;
          }
          cp->close();
        });
      }
    });
    auto bad = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < kConns; i++) {
      clients.go([addr, i, bad] {
        ConnPtr c = must_dial(addr);
        if (!c) return;
        for (int r = 0; r < kRounds; r++) {
          char out[kMsg], in[kMsg];
          size_t off = static_cast<size_t>(i) * 7919 + static_cast<size_t>(r) * kMsg;
          for (int k = 0; k < kMsg; k++) out[k] = pattern_byte(off + k);
          if (c->write(out, kMsg).err) {
            (*bad)++;
            break;
          }
          size_t got = 0;
          while (got < kMsg) {
            auto rr = c->read(in + got, kMsg - got);
            if (rr.n == 0) break;
            got += rr.n;
          }
          if (got != kMsg || pattern_mismatch(in, kMsg, off) != SIZE_MAX) (*bad)++;
          mnp::yield();
        }
        c->close();
      });
    }
    clients.wait();
    servers.wait();
    lnp->close();
    EXPECT_EQ(bad->load(), 0) << "round trips with a wrong or short echo";
  });
}

// ---------------------------------------------------------------------------
// What copy mode refuses.

// A WaitGroup in a copy-mode G's frame, shared with other Gs: while its owner
// is parked, its address belongs to whichever G runs on the shared stack.
TEST(CopyStackDeathTest, WaitGroupOnACoroutineStackIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        mnp::run([] {
          auto wg_done = std::make_shared<mnp::WaitGroup>();
          wg_done->add(1);
          mnp::go([wg_done] {
            mnp::WaitGroup wg;  // on this G's (shared) stack
            wg.add(1);
            mnp::go([&wg] { wg.done(); });
            wg.wait();
            wg_done->done();
          });
          wg_done->wait();
        });
      },
      "mnp: MNP_STACK=copy: a WaitGroup at 0x[0-9a-f]+ lives on a coroutine stack; allocate it "
      "on the heap");
}

TEST(CopyStackDeathTest, MutexOnACoroutineStackIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        mnp::run([] {
          auto wg = std::make_shared<mnp::WaitGroup>();
          wg->add(1);
          mnp::go([wg] {
            mnp::Mutex mu;
            mu.lock();
            mu.unlock();
            wg->done();
          });
          wg->wait();
        });
      },
      "mnp: MNP_STACK=copy: a Mutex at 0x[0-9a-f]+ lives on a coroutine stack");
}

// The completion backend lets the kernel write into a parked G's buffer:
// refused at start with one line, whether or not io_uring is available here.
TEST(CopyStack, UringCompletionBackendIsRefusedAtStart) {
  mnp::Options o;
  o.backend = "uring";
  bool ran = false;
  ::testing::internal::CaptureStderr();
  int rc = mnp::run([&] { ran = true; }, o);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 2);
  EXPECT_FALSE(ran);
  EXPECT_NE(err.find("MNP_STACK=copy cannot run on backend uring"), std::string::npos) << err;
}

// More than one P is not refused: run() uses one and says so in one line.
TEST(CopyStack, MoreProcsRunOnOneP) {
  mnp::Options o;
  o.procs = 4;
  int procs = 0;
  int rc = mnp::run([&] { procs = mnp::procs(); }, o);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(procs, 1);
}

}  // namespace
}  // namespace mnptest
