// Runtime micro-benchmarks: spawn, yield, park/ready, timers, netpoll wake-up.
//
// Each benchmark runs its timing loop inside a G (mnp::run), with the number
// of Ps it names. Run: build/bench/runtime-bench --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true and read the medians.
//
// Page stacks vs copied stacks (MNP_STACK=copy): BM_StackSwitch_* run each
// round once with page stacks and once with copied stacks (they set
// MNP_STACK for their own mnp::run; the rest of the file runs with whatever
// the environment says):
//   build/bench/runtime-bench --benchmark_filter=StackSwitch
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <memory>

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

// Runs fn as mnp::run's main G with MNP_STACK set to mode ("page", "copy").
template <class F>
void run_with_stack(benchmark::State& state, const char* mode, F&& fn) {
  setenv("MNP_STACK", mode, 1);
  state.SetLabel(mode);
  mnp::run(std::forward<F>(fn), procs(1));
  unsetenv("MNP_STACK");
}

const char* stack_mode(const benchmark::State& state) {
  return state.range(0) ? "copy" : "page";
}

// Two spawned Gs yield to each other on one P; the main G only waits. One
// iteration is a round: two G-to-G switches through g0 (and, with copied
// stacks, two saves and two restores of a shallow frame).
void BM_StackSwitch_Yield(benchmark::State& state) {
  run_with_stack(state, stack_mode(state), [&] {
    auto stop = std::make_shared<std::atomic<bool>>(false);
    auto wg = std::make_shared<mnp::WaitGroup>();  // heap: copied stacks refuse one on a G's stack
    wg->add(2);
    mnp::go([&state, stop, wg] {
      for (auto _ : state) mnp::yield();
      *stop = true;
      wg->done();
    });
    mnp::go([stop, wg] {
      while (!stop->load(std::memory_order_relaxed)) mnp::yield();
      wg->done();
    });
    wg->wait();
  });
  state.SetItemsProcessed(state.iterations() * 2);  // items: switches
}
BENCHMARK(BM_StackSwitch_Yield)->Arg(0)->Arg(1)->UseRealTime();

// Park/ready between two spawned Gs through two semaphores: each round, each
// G parks once and is readied once (two switches).
void BM_StackSwitch_ParkReady(benchmark::State& state) {
  run_with_stack(state, stack_mode(state), [&] {
    struct Shared {
      mnp::Sema ping{0}, pong{0};
      std::atomic<bool> stop{false};
      mnp::WaitGroup wg;
    };
    auto sh = std::make_shared<Shared>();
    sh->wg.add(2);
    mnp::go([sh] {
      for (;;) {
        sh->ping.acquire();
        if (sh->stop.load(std::memory_order_relaxed)) break;
        sh->pong.release();
      }
      sh->wg.done();
    });
    mnp::go([&state, sh] {
      for (auto _ : state) {
        sh->ping.release();
        sh->pong.acquire();
      }
      sh->stop = true;
      sh->ping.release();
      sh->wg.done();
    });
    sh->wg.wait();
  });
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_StackSwitch_ParkReady)->Arg(0)->Arg(1)->UseRealTime();

// The same yield round with a deeper parked frame (~2 KiB of locals live
// across the yield): what a copied stack's memcpy adds as frames grow.
__attribute__((noinline)) void yield_deep(benchmark::State& state, std::atomic<bool>* stop) {
  volatile char pad[2048];
  pad[0] = 1;
  pad[sizeof pad - 1] = 2;
  for (auto _ : state) mnp::yield();
  *stop = pad[0] + pad[sizeof pad - 1] == 3;
}
void BM_StackSwitch_Yield2KiB(benchmark::State& state) {
  run_with_stack(state, stack_mode(state), [&] {
    auto stop = std::make_shared<std::atomic<bool>>(false);
    auto wg = std::make_shared<mnp::WaitGroup>();
    wg->add(2);
    mnp::go([&state, stop, wg] {
      yield_deep(state, stop.get());
      *stop = true;
      wg->done();
    });
    mnp::go([stop, wg] {
      while (!stop->load(std::memory_order_relaxed)) mnp::yield();
      wg->done();
    });
    wg->wait();
  });
  state.SetItemsProcessed(state.iterations() * 2);
}
BENCHMARK(BM_StackSwitch_Yield2KiB)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
