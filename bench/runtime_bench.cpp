// Runtime micro-benchmarks: spawn, yield, park/ready, timers, netpoll wake-up.
//
// Each benchmark runs its timing loop inside a G (mnp::run), with the number
// of Ps it names. Run: build/bench/runtime-bench --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true and read the medians.
#include <benchmark/benchmark.h>
#include <sys/socket.h>

#include <atomic>

#include "mnp/poll.h"
#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "mnp/sync.h"

namespace {

mnp::Options procs(int n) {
  mnp::Options o;
  o.procs = n;
  return o;
}

// Spawn a G that exits at once, and wait for it: Go's `go f(); wg.Wait()`.
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
      procs(static_cast<int>(state.range(0))));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpawnExit)->Arg(1)->Arg(2)->UseRealTime();

// Spawn many, then wait for all (amortises the wait).
void BM_SpawnBatch(benchmark::State& state) {
  mnp::run(
      [&] {
        for (auto _ : state) {
          mnp::WaitGroup wg;
          wg.add(1000);
          for (int i = 0; i < 1000; i++) mnp::go([&wg] { wg.done(); });
          wg.wait();
        }
      },
      procs(static_cast<int>(state.range(0))));
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_SpawnBatch)->Arg(1)->Arg(2)->UseRealTime();

// N Gs yielding in turn on one P: the cost of one G-to-G switch through g0.
void BM_Yield(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  mnp::run(
      [&] {
        std::atomic<bool> stop{false};
        mnp::WaitGroup wg;
        wg.add(n - 1);
        for (int i = 0; i < n - 1; i++) {
          mnp::go([&] {
            while (!stop.load(std::memory_order_relaxed)) mnp::yield();
            wg.done();
          });
        }
        for (auto _ : state) mnp::yield();
        stop = true;
        wg.wait();
      },
      procs(1));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Yield)->Arg(2)->Arg(16)->Arg(1024)->UseRealTime();

// Park/ready hand-off through two semaphores (one P): two switches a round.
void BM_SemaPingPong(benchmark::State& state) {
  mnp::run(
      [&] {
        mnp::Sema ping(0), pong(0);
        std::atomic<bool> stop{false};
        mnp::WaitGroup wg;
        wg.add(1);
        mnp::go([&] {
          for (;;) {
            ping.acquire();
            if (stop.load(std::memory_order_relaxed)) break;
            pong.release();
          }
          wg.done();
        });
        for (auto _ : state) {
          ping.release();
          pong.acquire();
        }
        stop = true;
        ping.release();
        wg.wait();
      },
      procs(static_cast<int>(state.range(0))));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SemaPingPong)->Arg(1)->Arg(2)->UseRealTime();

// Mutex hand-off between two Gs that each hold it across a yield.
void BM_MutexContended(benchmark::State& state) {
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
          mu.unlock();
        }
        stop = true;
        wg.wait();
      },
      procs(1));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexContended)->UseRealTime();

// Arm and fire a 1 µs timer: sleep's full cost (park, timer heap, poller).
void BM_SleepShort(benchmark::State& state) {
  mnp::run(
      [&] {
        for (auto _ : state) mnp::sleep(std::chrono::microseconds(1));
      },
      procs(1));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SleepShort)->UseRealTime();

// Two Gs ping-pong one byte over a socketpair: each round is two writes,
// two reads that find the byte after a park, and the poller's wake-ups.
void BM_NetpollPingPong(benchmark::State& state) {
  const char* backend = mnp::backend_names()[state.range(0)];
  std::string why = mnp::backend_unavailable_reason(backend);
  if (!why.empty()) {
    state.SkipWithError((std::string(backend) + ": " + why).c_str());
    for (auto _ : state) {
    }
    return;
  }
  state.SetLabel(backend);
  mnp::Options o = procs(1);
  o.backend = backend;
  mnp::run(
      [&] {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
          state.SkipWithError("socketpair failed");
          return;
        }
        mnp::FD a, b;
        if (a.init(sv[0], mnp::FD::Kind::stream) || b.init(sv[1], mnp::FD::Kind::stream)) {
          state.SkipWithError("FD::init failed");
          return;
        }
        mnp::WaitGroup wg;
        wg.add(1);
        mnp::go([&] {
          char c;
          while (b.read(&c, 1).n == 1 && c != 'q') b.write(&c, 1);
          wg.done();
        });
        char c = 'x';
        uint64_t sys0 = mnp::stat_syscalls();
        for (auto _ : state) {
          a.write(&c, 1);
          a.read(&c, 1);
        }
        state.counters["syscalls/round"] =
            benchmark::Counter(static_cast<double>(mnp::stat_syscalls() - sys0) /
                               static_cast<double>(state.iterations()));
        c = 'q';
        a.write(&c, 1);
        wg.wait();
        a.close();
        b.close();
      },
      o);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NetpollPingPong)->DenseRange(0, 3)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
