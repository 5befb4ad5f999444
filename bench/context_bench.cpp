// bench/context_bench.cpp — what a context switch, a new context and a stack
// cost, and how the switch compares with Boost.Context's fcontext.
//
// Every switch benchmark is a ping-pong between the benchmark thread and one
// coroutine: one iteration is a round trip, two switches. The `per_switch`
// counter is the time of one switch (iterations x 2 / elapsed, inverted);
// items_per_second counts switches too.
//
// What to watch:
//   BM_Switch_mnp              the runtime's ctx_switch, as the scheduler calls it
//   BM_Switch_mnp_inline       the assembly routine called directly (an inline wrapper)
//   BM_Switch_mnp_<ending>     mnp_ctx_jump vs mnp_ctx_jump_alt: the same switch with
//                              the two ways of ending it (x86-64: pop+jmp vs ret;
//                              AArch64: ret vs br). The runtime keeps the faster.
//   ..._deep                   the same, but each side switches from its own call
//                              chain and returns through it, as a G in gopark and
//                              g0 in schedule do
//   BM_Switch_mnp_fp_differs   the two sides have different rounding modes, so every
//                              switch also reloads the FP control state
//   BM_Switch_boost_fcontext   Boost.Context's jump_fcontext, same ping-pong
//   BM_CtxMake, BM_CtxMakeRunExit, BM_StackAllocFree (pool hit), BM_StackMapUnmap (miss)
//
// Run: context-bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cfenv>
#include <cstdint>
#include <string>

#include "context/context.h"
#include "context/stack.h"

#if defined(MNP_HAVE_BOOST_CONTEXT)
#include <boost/context/detail/fcontext.hpp>
#endif

namespace {

using namespace mnp::rt;

constexpr size_t kBenchStack = 64 * 1024;

void count_switches(benchmark::State& state) {
  const double switches = 2.0 * static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(switches));
  state.counters["per_switch"] =
      benchmark::Counter(switches, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// ---------------------------------------------------------------------------
// The ping-pong partner: a coroutine that switches back forever.

using SwitchFn = void (*)(Context* from, Context* to);

struct PingPong {
  Context main;
  Context co;
  Stack stack;
  SwitchFn sw;
};

void ping_pong_entry(void* p) {
  auto* pp = static_cast<PingPong*>(p);
  for (;;) pp->sw(&pp->co, &pp->main);
}

// The two endings behind identical wrappers, so only the ending differs.
// Like ctx_switch in a plain build, each compiles to a tail call of the
// assembly routine.
template <void (*Jump)(void**, void*)>
__attribute__((noinline)) void switch_via(Context* from, Context* to) {
  Jump(&from->sp, to->sp);
}

template <SwitchFn Sw>
void run_ping_pong(benchmark::State& state) {
  PingPong pp;
  pp.sw = Sw;
  ctx_init_thread(&pp.main);
  pp.stack = stack_alloc(kBenchStack);
  ctx_make(&pp.co, pp.stack.lo, pp.stack.size(), ping_pong_entry, &pp);
  for (auto _ : state) Sw(&pp.main, &pp.co);
  count_switches(state);
  // The coroutine stays parked for good; its stack goes back to the pool.
  ctx_destroy(&pp.co);
  stack_free(pp.stack);
}

void BM_Switch_mnp(benchmark::State& state) {
  run_ping_pong<ctx_switch>(state);
}
BENCHMARK(BM_Switch_mnp);

// What an inline ctx_switch would be in a plain build: each side calls the
// assembly routine itself, with no wrapper in between.
struct InlinePingPong {
  Context main;
  Context co;
  Stack stack;
};

void inline_entry(void* p) {
  auto* d = static_cast<InlinePingPong*>(p);
  for (;;) mnp_ctx_jump(&d->co.sp, d->main.sp);
}

void BM_Switch_mnp_inline(benchmark::State& state) {
  InlinePingPong d;
  ctx_init_thread(&d.main);
  d.stack = stack_alloc(kBenchStack);
  ctx_make(&d.co, d.stack.lo, d.stack.size(), inline_entry, &d);
  for (auto _ : state) mnp_ctx_jump(&d.main.sp, d.co.sp);
  count_switches(state);
  ctx_destroy(&d.co);
  stack_free(d.stack);
}
BENCHMARK(BM_Switch_mnp_inline);

void BM_Switch_mnp_kept(benchmark::State& state) {
  run_ping_pong<switch_via<mnp_ctx_jump>>(state);
}
void BM_Switch_mnp_alt(benchmark::State& state) {
  run_ping_pong<switch_via<mnp_ctx_jump_alt>>(state);
}

// ---------------------------------------------------------------------------
// Deep: each side calls the switch from a function of its own and returns
// through it afterwards, so the return after the switch goes to a different
// place on each side (what the return-address predictor sees in the runtime).

struct DeepPingPong {
  Context main;
  Context co;
  Stack stack;
  void (*jump)(void**, void*);
};

__attribute__((noinline)) void deep_main_side(DeepPingPong* d) {
  d->jump(&d->main.sp, d->co.sp);
  asm volatile("" ::: "memory");  // no tail call: return through this frame
}
__attribute__((noinline)) void deep_co_side(DeepPingPong* d) {
  d->jump(&d->co.sp, d->main.sp);
  asm volatile("" ::: "memory");
}

void deep_entry(void* p) {
  auto* d = static_cast<DeepPingPong*>(p);
  for (;;) deep_co_side(d);
}

template <void (*Jump)(void**, void*)>
void run_deep_ping_pong(benchmark::State& state) {
  DeepPingPong d;
  d.jump = Jump;
  ctx_init_thread(&d.main);
  d.stack = stack_alloc(kBenchStack);
  ctx_make(&d.co, d.stack.lo, d.stack.size(), deep_entry, &d);
  for (auto _ : state) deep_main_side(&d);
  count_switches(state);
  ctx_destroy(&d.co);
  stack_free(d.stack);
}

void BM_Switch_mnp_kept_deep(benchmark::State& state) {
  run_deep_ping_pong<mnp_ctx_jump>(state);
}
void BM_Switch_mnp_alt_deep(benchmark::State& state) {
  run_deep_ping_pong<mnp_ctx_jump_alt>(state);
}

// Registered with the ending in the name, which depends on the architecture.
#if defined(__x86_64__)
constexpr const char* kKeptEnding = "jmp";
constexpr const char* kAltEnding = "ret";
#else
constexpr const char* kKeptEnding = "ret";
constexpr const char* kAltEnding = "br";
#endif
[[maybe_unused]] const bool registered_endings = [] {
  const std::string base = "BM_Switch_mnp_";
  benchmark::RegisterBenchmark((base + kKeptEnding).c_str(), BM_Switch_mnp_kept);
  benchmark::RegisterBenchmark((base + kAltEnding).c_str(), BM_Switch_mnp_alt);
  benchmark::RegisterBenchmark((base + kKeptEnding + "_deep").c_str(), BM_Switch_mnp_kept_deep);
  benchmark::RegisterBenchmark((base + kAltEnding + "_deep").c_str(), BM_Switch_mnp_alt_deep);
  return true;
}();

// ---------------------------------------------------------------------------
// The slow path: the coroutine rounds upward, the benchmark thread to
// nearest, so every switch reloads the FP control state.

struct FpPingPong {
  Context main;
  Context co;
  Stack stack;
};

void fp_entry(void* p) {
  auto* f = static_cast<FpPingPong*>(p);
  std::fesetround(FE_UPWARD);
  for (;;) ctx_switch(&f->co, &f->main);
}

void BM_Switch_mnp_fp_differs(benchmark::State& state) {
  FpPingPong f;
  ctx_init_thread(&f.main);
  f.stack = stack_alloc(kBenchStack);
  ctx_make(&f.co, f.stack.lo, f.stack.size(), fp_entry, &f);
  ctx_switch(&f.main, &f.co);  // let it set its rounding mode
  for (auto _ : state) ctx_switch(&f.main, &f.co);
  count_switches(state);
  ctx_destroy(&f.co);
  stack_free(f.stack);
}
BENCHMARK(BM_Switch_mnp_fp_differs);

// ---------------------------------------------------------------------------
// Boost.Context: make_fcontext/jump_fcontext, the same ping-pong.

#if defined(MNP_HAVE_BOOST_CONTEXT)
namespace bctx = boost::context::detail;

void boost_entry(bctx::transfer_t t) {
  for (;;) t = bctx::jump_fcontext(t.fctx, nullptr);
}

void BM_Switch_boost_fcontext(benchmark::State& state) {
  Stack stack = stack_alloc(kBenchStack);
  // fcontext takes the top of the stack and grows down from it.
  bctx::fcontext_t co = bctx::make_fcontext(stack.hi, stack.size(), boost_entry);
  for (auto _ : state) co = bctx::jump_fcontext(co, nullptr).fctx;
  count_switches(state);
  stack_free(stack);
}
BENCHMARK(BM_Switch_boost_fcontext);
#endif

// ---------------------------------------------------------------------------
// Making contexts and stacks.

void never_runs(void*) {}

void BM_CtxMake(benchmark::State& state) {
  Stack stack = stack_alloc(kBenchStack);
  Context ctx;
  for (auto _ : state) {
    ctx_make(&ctx, stack.lo, stack.size(), never_runs, nullptr);
    benchmark::DoNotOptimize(ctx.sp);
  }
  ctx_destroy(&ctx);
  stack_free(stack);
}
BENCHMARK(BM_CtxMake);

struct RunExit {
  Context main;
  Context co;
};
void run_exit_entry(void* p) {
  auto* r = static_cast<RunExit*>(p);
  ctx_switch_final(&r->co, &r->main);
}

// A context's whole life at this layer: make, first switch, final switch.
void BM_CtxMakeRunExit(benchmark::State& state) {
  Stack stack = stack_alloc(kBenchStack);
  RunExit r;
  ctx_init_thread(&r.main);
  for (auto _ : state) {
    ctx_make(&r.co, stack.lo, stack.size(), run_exit_entry, &r);
    ctx_switch(&r.main, &r.co);
  }
  ctx_destroy(&r.co);
  stack_free(stack);
}
BENCHMARK(BM_CtxMakeRunExit);

// A pool hit: what spawn pays when the scheduler's G free lists are empty.
void BM_StackAllocFree(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0)) * 1024;
  stack_free(stack_alloc(size));  // warm the pool
  for (auto _ : state) {
    Stack s = stack_alloc(size);
    benchmark::DoNotOptimize(s.lo);
    stack_free(s);
  }
}
BENCHMARK(BM_StackAllocFree)->Arg(256)->ArgName("KiB");

// A pool miss: mmap + mprotect, then munmap (the drain).
void BM_StackMapUnmap(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0)) * 1024;
  stack_pool_drain();
  for (auto _ : state) {
    Stack s = stack_alloc(size);
    benchmark::DoNotOptimize(s.lo);
    stack_free(s);
    stack_pool_drain();
  }
}
BENCHMARK(BM_StackMapUnmap)->Arg(256)->ArgName("KiB");

}  // namespace

BENCHMARK_MAIN();
