// Sync micro-benchmarks: channels, spawn, Mutex, and multi-P scaling.
//
// Each case has a twin in Go 1.19 (bench/peers/gomicro/sync_bench_test.go)
// doing the same work with the same parameters; bench/sync_vs_go.sh runs both
// and prints the medians side by side. The argument is the number of Ps
// (GOMAXPROCS for the Go twin). One "op" is:
//
//   ChanPingPong   one round trip over two unbuffered channels (2 sends, 2 receives)
//   ChanBuffered   one value through a buffered channel (cap 128), producer -> consumer
//   SpawnExit      go + WaitGroup: spawn a G that calls done(), wait for it
//   MutexHandOff   two Gs each lock, yield, unlock: one lock taken from a parked waiter
//   Scaling        one batch: 8 Gs x 16 units of (~10 µs of CPU work + yield)
//
// Run: build/bench/sync-bench --benchmark_repetitions=5
//      --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

#include "mnp/chan.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"

namespace {

mnp::Options procs(const benchmark::State& state) {
  mnp::Options o;
  o.procs = static_cast<int>(state.range(0));
  return o;
}

void BM_ChanPingPong(benchmark::State& state) {
  mnp::run(
      [&] {
        mnp::Chan<int> ping, pong;
        mnp::WaitGroup wg;
        wg.add(1);
        mnp::go([&] {
          for (int v : ping) (void)pong.send(v);
          wg.done();
        });
        for (auto _ : state) {
          (void)ping.send(1);
          benchmark::DoNotOptimize(pong.recv());
        }
        (void)ping.close();
        wg.wait();
      },
      procs(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ChanPingPong)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

void BM_ChanBuffered(benchmark::State& state) {
  mnp::run(
      [&] {
        mnp::Chan<int64_t> ch(128);
        const int64_t n = state.max_iterations;
        mnp::WaitGroup wg;
        wg.add(1);
        // The producer sends exactly as many values as the loop will take.
        mnp::go([&] {
          for (int64_t i = 0; i < n; i++) (void)ch.send(i);
          wg.done();
        });
        for (auto _ : state) benchmark::DoNotOptimize(ch.recv());
        wg.wait();
      },
      procs(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ChanBuffered)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

void BM_SpawnExit(benchmark::State& state) {
  mnp::run(
      [&] {
        mnp::WaitGroup wg;
        for (auto _ : state) {
          wg.add(1);
          mnp::go([&wg] { wg.done(); });
          wg.wait();
        }
      },
      procs(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnExit)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

void BM_MutexHandOff(benchmark::State& state) {
  mnp::run(
      [&] {
        mnp::Mutex mu;
        std::atomic<bool> stop{false};
        mnp::WaitGroup wg;
        wg.add(1);
        mnp::go([&] {
          while (!stop.load(std::memory_order_relaxed)) {
            mu.lock();
            mnp::yield();
            mu.unlock();
          }
          wg.done();
        });
        for (auto _ : state) {
          mu.lock();
          mnp::yield();
          mu.unlock();
        }
        stop = true;
        wg.wait();
      },
      procs(state));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexHandOff)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

// ~10 µs of dependent multiplies (no closed form a compiler could find); the
// Go twin runs the same loop. Units much shorter than an idle M's wake-up
// (a futex, tens of µs in a VM) would measure wake-ups, not scaling.
__attribute__((noinline)) uint64_t work(uint64_t x) {
  for (int i = 0; i < 10000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
  return x;
}

void BM_Scaling(benchmark::State& state) {
  constexpr int kGs = 8, kUnits = 16;
  mnp::run(
      [&] {
        std::atomic<uint64_t> sink{0};
        for (auto _ : state) {
          mnp::WaitGroup wg;
          wg.add(kGs);
          for (int g = 0; g < kGs; g++) {
            mnp::go([&, g] {
              uint64_t x = static_cast<uint64_t>(g);
              for (int u = 0; u < kUnits; u++) {
                x = work(x);
                mnp::yield();
              }
              sink.fetch_add(x, std::memory_order_relaxed);
              wg.done();
            });
          }
          wg.wait();
        }
        benchmark::DoNotOptimize(sink.load());
      },
      procs(state));
  state.SetItemsProcessed(state.iterations() * kGs * kUnits);
}
BENCHMARK(BM_Scaling)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
