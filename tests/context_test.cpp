// tests/context_test.cpp — the context switch, tested without the scheduler.
//
// What a switch must keep (the ABI's callee-saved state), what a new context
// must look like when it starts (an aligned stack, default FP environment),
// and what must follow a coroutine from one OS thread to another (its FP
// control state: a G may resume on another M). The register tests drive the
// switch from assembly, because C++ cannot name callee-saved registers; see
// mnp_test_switch_with_regs below.
#include <gtest/gtest.h>
#include <signal.h>

#include <cfenv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "context/context.h"
#include "context/stack.h"

using namespace mnp::rt;

namespace {

constexpr size_t kTestStack = 64 * 1024;

// A coroutine under test: a pooled stack and the context made on it.
struct Coro {
  Stack stack;
  Context ctx;
  Coro(void (*entry)(void*), void* arg, size_t size = kTestStack) : stack(stack_alloc(size)) {
    ctx_make(&ctx, stack.lo, stack.size(), entry, arg);
  }
  ~Coro() {
    ctx_destroy(&ctx);
    stack_free(stack);
  }
  Coro(const Coro&) = delete;
  Coro& operator=(const Coro&) = delete;
};

// The calling thread's own context (an M's g0, in the runtime's terms).
struct ThreadCtx {
  Context ctx;
  ThreadCtx() { ctx_init_thread(&ctx); }
  ~ThreadCtx() { ctx_destroy(&ctx); }
};

// Restores the test thread's FP environment whatever a test did to it.
struct FenvGuard {
  std::fenv_t saved;
  FenvGuard() { std::fegetenv(&saved); }
  ~FenvGuard() { std::fesetenv(&saved); }
};

// 1/3 under the current rounding mode; volatile so that the compiler
// neither folds it nor moves it across fesetround.
double one_third() {
  volatile double one = 1.0, three = 3.0;
  volatile double q = one / three;
  return q;
}

}  // namespace

// ---------------------------------------------------------------------------
// Ping-pong

namespace {
struct PingPong {
  Context main;
  Coro* co = nullptr;
  uint64_t value = 0;    // main -> coroutine
  uint64_t answer = 0;   // coroutine -> main
  uint64_t resumes = 0;  // counted on the coroutine's own stack, copied out
};

void ping_pong_entry(void* p) {
  auto* pp = static_cast<PingPong*>(p);
  uint64_t resumes = 0;  // lives on the coroutine's stack across switches
  for (;;) {
    resumes++;
    pp->answer = pp->value * 3 + 1;
    pp->resumes = resumes;
    ctx_switch(&pp->co->ctx, &pp->main);
  }
}
}  // namespace

TEST(Switch, PingPongPassesValuesBothWays) {
  PingPong pp;
  ctx_init_thread(&pp.main);
  Coro co(ping_pong_entry, &pp);
  pp.co = &co;
  constexpr uint64_t kRounds = 200000;
  uint64_t wrong = 0;
  for (uint64_t i = 1; i <= kRounds; i++) {
    pp.value = i;
    ctx_switch(&pp.main, &co.ctx);
    if (pp.answer != i * 3 + 1 || pp.resumes != i) wrong++;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(pp.resumes, kRounds);
}

namespace {
struct Chain {
  Context main;
  Coro* a = nullptr;
  Coro* b = nullptr;
  std::vector<int> trace;
};
void chain_b(void* p) {
  auto* c = static_cast<Chain*>(p);
  c->trace.push_back(2);
  ctx_switch(&c->b->ctx, &c->a->ctx);  // back to a, not to main
  c->trace.push_back(4);
  ctx_switch_final(&c->b->ctx, &c->main);
}
void chain_a(void* p) {
  auto* c = static_cast<Chain*>(p);
  c->trace.push_back(1);
  ctx_switch(&c->a->ctx, &c->b->ctx);
  c->trace.push_back(3);
  ctx_switch(&c->a->ctx, &c->b->ctx);
  std::abort();  // b ends by going to main
}
}  // namespace

TEST(Switch, CoroutineSwitchesDirectlyToAnotherCoroutine) {
  Chain c;
  ctx_init_thread(&c.main);
  Coro a(chain_a, &c), b(chain_b, &c);
  c.a = &a;
  c.b = &b;
  ctx_switch(&c.main, &a.ctx);
  EXPECT_EQ(c.trace, (std::vector<int>{1, 2, 3, 4}));
}

// ---------------------------------------------------------------------------
// Callee-saved registers, driven from assembly.
//
//   void mnp_test_switch_with_regs(Context* from, Context* to,
//                                  const uint64_t* in, uint64_t* out);
//
// Saves the C++ caller's callee-saved registers (it is a normal function),
// loads every callee-saved register from in[], calls ctx_switch(from, to)
// through mnp_test_ctx_switch, and when control comes back stores the same
// registers into out[]. Both sides of a switch use it with different values:
// each must get back exactly what it loaded.

extern "C" void mnp_test_ctx_switch(Context* from, Context* to) {
  ctx_switch(from, to);
}
extern "C" void mnp_test_switch_with_regs(Context* from, Context* to, const uint64_t* in,
                                          uint64_t* out);

#if defined(__APPLE__)
#define MNP_TEST_SYM(name) "_" #name
#else
#define MNP_TEST_SYM(name) #name
#endif

#if defined(__x86_64__)
// rbx, rbp, r12, r13, r14, r15. No FP registers: xmm are all caller-saved in
// the System V ABI; the FP test below checks MXCSR and the x87 control word.
constexpr int kSavedInts = 6;
constexpr int kSavedFloats = 0;
const char* const kRegNames[] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};
asm(R"(
  .text
  .globl )" MNP_TEST_SYM(mnp_test_switch_with_regs) R"(
  .p2align 4
)" MNP_TEST_SYM(mnp_test_switch_with_regs) R"(:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  pushq %rcx              # out; seven pushes leave rsp 16-byte aligned for the call
  movq  0(%rdx), %rbx
  movq  8(%rdx), %rbp
  movq  16(%rdx), %r12
  movq  24(%rdx), %r13
  movq  32(%rdx), %r14
  movq  40(%rdx), %r15
  call  )" MNP_TEST_SYM(mnp_test_ctx_switch) R"(
  movq  (%rsp), %rcx
  movq  %rbx, 0(%rcx)
  movq  %rbp, 8(%rcx)
  movq  %r12, 16(%rcx)
  movq  %r13, 24(%rcx)
  movq  %r14, 32(%rcx)
  movq  %r15, 40(%rcx)
  popq  %rcx
  popq  %r15
  popq  %r14
  popq  %r13
  popq  %r12
  popq  %rbx
  popq  %rbp
  ret
)");
#elif defined(__aarch64__)
// x19-x28 and x29 (the frame pointer, callee-saved like the others), then
// the low halves of v8-v15 (d8-d15).
constexpr int kSavedInts = 11;
constexpr int kSavedFloats = 8;
const char* const kRegNames[] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                 "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                 "d11", "d12", "d13", "d14", "d15"};
asm(R"(
  .text
  .globl )" MNP_TEST_SYM(mnp_test_switch_with_regs) R"(
  .p2align 4
)" MNP_TEST_SYM(mnp_test_switch_with_regs) R"(:
  stp x29, x30, [sp, #-176]!
  stp x19, x20, [sp, #16]
  stp x21, x22, [sp, #32]
  stp x23, x24, [sp, #48]
  stp x25, x26, [sp, #64]
  stp x27, x28, [sp, #80]
  stp d8, d9, [sp, #96]
  stp d10, d11, [sp, #112]
  stp d12, d13, [sp, #128]
  stp d14, d15, [sp, #144]
  str x3, [sp, #160]
  ldp x19, x20, [x2, #0]
  ldp x21, x22, [x2, #16]
  ldp x23, x24, [x2, #32]
  ldp x25, x26, [x2, #48]
  ldp x27, x28, [x2, #64]
  ldr x29, [x2, #80]
  ldp d8, d9, [x2, #88]
  ldp d10, d11, [x2, #104]
  ldp d12, d13, [x2, #120]
  ldp d14, d15, [x2, #136]
  bl )" MNP_TEST_SYM(mnp_test_ctx_switch) R"(
  ldr x3, [sp, #160]
  stp x19, x20, [x3, #0]
  stp x21, x22, [x3, #16]
  stp x23, x24, [x3, #32]
  stp x25, x26, [x3, #48]
  stp x27, x28, [x3, #64]
  str x29, [x3, #80]
  stp d8, d9, [x3, #88]
  stp d10, d11, [x3, #104]
  stp d12, d13, [x3, #120]
  stp d14, d15, [x3, #136]
  ldp x19, x20, [sp, #16]
  ldp x21, x22, [sp, #32]
  ldp x23, x24, [sp, #48]
  ldp x25, x26, [sp, #64]
  ldp x27, x28, [sp, #80]
  ldp d8, d9, [sp, #96]
  ldp d10, d11, [sp, #112]
  ldp d12, d13, [sp, #128]
  ldp d14, d15, [sp, #144]
  ldp x29, x30, [sp], #176
  ret
)");
#endif

namespace {
constexpr int kSaved = kSavedInts + kSavedFloats;

struct RegTest {
  Context main;
  Coro* co = nullptr;
  uint64_t main_in[kSaved], main_out[kSaved];
  uint64_t co_in[kSaved], co_out[kSaved];
};

void fill_pattern(uint64_t* v, uint64_t seed) {
  for (int i = 0; i < kSaved; i++) v[i] = seed ^ (0x0101010101010101ull * (i + 1));
}

void reg_test_entry(void* p) {
  auto* t = static_cast<RegTest*>(p);
  // Clobber every callee-saved register with other values, then go back.
  mnp_test_switch_with_regs(&t->co->ctx, &t->main, t->co_in, t->co_out);
  // Resumed: our values must have come back too. Go back for good.
  ctx_switch_final(&t->co->ctx, &t->main);
}

// One round trip each way with every callee-saved register loaded with a
// known value on both sides.
std::unique_ptr<RegTest> run_reg_test() {
  auto t = std::make_unique<RegTest>();
  ctx_init_thread(&t->main);
  Coro co(reg_test_entry, t.get());
  t->co = &co;
  fill_pattern(t->main_in, 0xA1B2C3D4E5F60718ull);
  fill_pattern(t->co_in, 0x5EC0ED5EC0ED5EC0ull);
  // First trip: main loads main_in, the coroutine loads co_in and comes back.
  mnp_test_switch_with_regs(&t->main, &co.ctx, t->main_in, t->main_out);
  // Second trip: the coroutine resumes, stores what it finds, and ends.
  ctx_switch(&t->main, &co.ctx);
  t->co = nullptr;
  return t;
}

void expect_preserved(const RegTest& t, int first, int last) {
  for (int i = first; i < last; i++) {
    EXPECT_EQ(t.main_out[i], t.main_in[i]) << kRegNames[i] << " of the main side";
    EXPECT_EQ(t.co_out[i], t.co_in[i]) << kRegNames[i] << " of the coroutine";
  }
}
}  // namespace

TEST(Switch, PreservesCalleeSavedIntegerRegisters) {
  auto t = run_reg_test();
  expect_preserved(*t, 0, kSavedInts);
}

TEST(Switch, PreservesCalleeSavedFloatingPointRegisters) {
  if (kSavedFloats == 0) {
    GTEST_SKIP() << "x86-64 System V: every xmm register is caller-saved, so a switch has no FP "
                    "register to keep (MXCSR and the x87 control word: see "
                    "Switch.PreservesFloatingPointControlState)";
  }
  auto t = run_reg_test();
  expect_preserved(*t, kSavedInts, kSaved);
}

// ---------------------------------------------------------------------------
// Floating-point control state.

namespace {
#if defined(__x86_64__)
// The FP control state as the switch sees it: MXCSR's control bits and the
// x87 control word.
struct FpControl {
  uint32_t mxcsr;
  uint16_t fpucw;
  bool operator==(const FpControl& o) const {
    return (mxcsr & ~0x3Fu) == (o.mxcsr & ~0x3Fu) && fpucw == o.fpucw;
  }
};
FpControl get_fp_control() {
  FpControl c;
  asm volatile("stmxcsr %0" : "=m"(c.mxcsr));
  asm volatile("fnstcw %0" : "=m"(c.fpucw));
  return c;
}
void set_fp_control(FpControl c) {
  asm volatile("ldmxcsr %0" : : "m"(c.mxcsr));
  asm volatile("fldcw %0" : : "m"(c.fpucw));
}
// Two states unlike each other and unlike the default (0x1F80, 0x037F):
//   main: MXCSR round toward zero (RC, bits 13-14 = 11) + flush-to-zero (bit 15);
//         x87 round down (RC, bits 10-11 = 01), 53-bit precision (PC, bits 8-9 = 10).
//   co:   MXCSR round up (RC = 10) + denormals-are-zero (bit 6);
//         x87 round up (RC = 10), 24-bit precision (PC = 00).
const FpControl kMainFp = {0xFF80, 0x067F};
const FpControl kCoFp = {0x5FC0, 0x087F};
const FpControl kDefaultFp = {0x1F80, 0x037F};
std::string describe(const FpControl& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mxcsr=%#x fpucw=%#x", c.mxcsr, c.fpucw);
  return buf;
}
#elif defined(__aarch64__)
struct FpControl {
  uint64_t fpcr;
  bool operator==(const FpControl& o) const { return fpcr == o.fpcr; }
};
FpControl get_fp_control() {
  FpControl c;
  asm volatile("mrs %0, fpcr" : "=r"(c.fpcr));
  return c;
}
void set_fp_control(FpControl c) {
  asm volatile("msr fpcr, %0" : : "r"(c.fpcr));
}
// RMode (bits 22-23) toward zero + FZ (bit 24); RMode up + DN (bit 25).
const FpControl kMainFp = {(3ull << 22) | (1ull << 24)};
const FpControl kCoFp = {(1ull << 22) | (1ull << 25)};
const FpControl kDefaultFp = {0};
std::string describe(const FpControl& c) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "fpcr=%#llx", static_cast<unsigned long long>(c.fpcr));
  return buf;
}
#endif

struct FpTest {
  Context main;
  Coro* co = nullptr;
  FpControl co_at_start{}, co_after_resume{};
};

void fp_test_entry(void* p) {
  auto* t = static_cast<FpTest*>(p);
  t->co_at_start = get_fp_control();
  set_fp_control(kCoFp);
  ctx_switch(&t->co->ctx, &t->main);
  t->co_after_resume = get_fp_control();
  set_fp_control(kDefaultFp);  // leave nothing odd behind on this stack
  ctx_switch_final(&t->co->ctx, &t->main);
}
}  // namespace

TEST(Switch, PreservesFloatingPointControlState) {
  FenvGuard guard;
  FpTest t;
  ctx_init_thread(&t.main);
  Coro co(fp_test_entry, &t);
  t.co = &co;
  set_fp_control(kMainFp);
  ctx_switch(&t.main, &co.ctx);
  FpControl main_back = get_fp_control();
  ctx_switch(&t.main, &co.ctx);
  FpControl main_end = get_fp_control();
  set_fp_control(kDefaultFp);

  EXPECT_EQ(t.co_at_start, kDefaultFp)
      << "a new coroutine starts with the default, got " << describe(t.co_at_start);
  EXPECT_EQ(main_back, kMainFp) << "main's state after the coroutine changed its own: "
                                << describe(main_back);
  EXPECT_EQ(t.co_after_resume, kCoFp)
      << "the coroutine's state after a round trip: " << describe(t.co_after_resume);
  EXPECT_EQ(main_end, kMainFp) << describe(main_end);
}

namespace {
struct RoundingTest {
  Context main;
  Coro* up = nullptr;
  Coro* other = nullptr;
  int up_mode_after = -1, other_mode_first = -1, other_mode_after = -1;
  double up_third = 0, other_third = 0;
};

void rounding_up_entry(void* p) {
  auto* t = static_cast<RoundingTest*>(p);
  std::fesetround(FE_UPWARD);
  ctx_switch(&t->up->ctx, &t->main);
  t->up_mode_after = std::fegetround();
  t->up_third = one_third();
  std::fesetround(FE_TONEAREST);
  ctx_switch_final(&t->up->ctx, &t->main);
}

void rounding_other_entry(void* p) {
  auto* t = static_cast<RoundingTest*>(p);
  t->other_mode_first = std::fegetround();
  ctx_switch(&t->other->ctx, &t->main);
  t->other_mode_after = std::fegetround();
  t->other_third = one_third();
  ctx_switch_final(&t->other->ctx, &t->main);
}
}  // namespace

TEST(Switch, RoundingModeDoesNotLeakIntoOtherCoroutines) {
  FenvGuard guard;
  std::fesetround(FE_DOWNWARD);  // main's own mode: a third, different one
  RoundingTest t;
  ctx_init_thread(&t.main);
  Coro up(rounding_up_entry, &t), other(rounding_other_entry, &t);
  t.up = &up;
  t.other = &other;
  ctx_switch(&t.main, &other.ctx);  // other starts, parks
  ctx_switch(&t.main, &up.ctx);     // up sets FE_UPWARD, parks
  int main_mode = std::fegetround();
  ctx_switch(&t.main, &other.ctx);  // other resumes after up changed its mode
  ctx_switch(&t.main, &up.ctx);     // up resumes
  std::fesetround(FE_TONEAREST);
  double nearest_third = one_third();

  EXPECT_EQ(main_mode, FE_DOWNWARD);
  EXPECT_EQ(t.other_mode_first, FE_TONEAREST) << "a new coroutine starts rounding to nearest";
  EXPECT_EQ(t.other_mode_after, FE_TONEAREST);
  EXPECT_EQ(t.up_mode_after, FE_UPWARD);
  // The arithmetic itself follows the mode, not only fegetround.
  EXPECT_EQ(t.other_third, nearest_third);
  EXPECT_GT(t.up_third, nearest_third);
}

namespace {
struct MigrateTest {
  Context* home = nullptr;  // the context of whichever thread runs us now
  Coro* co = nullptr;
  int mode_on_second_thread = -1;
  double third_on_second_thread = 0;
};

void migrate_entry(void* p) {
  auto* t = static_cast<MigrateTest*>(p);
  std::fesetround(FE_UPWARD);
  ctx_switch(&t->co->ctx, t->home);  // park on the first thread ...
  // ... resumed by the second thread, whose own mode is the default.
  t->mode_on_second_thread = std::fegetround();
  t->third_on_second_thread = one_third();
  std::fesetround(FE_TONEAREST);
  ctx_switch_final(&t->co->ctx, t->home);
}
}  // namespace

// The reason the switch saves FP control state at all: a G parked on one M
// and resumed on another keeps its rounding mode, and leaves the M's alone.
TEST(Switch, FpControlStateTravelsWithTheCoroutineAcrossThreads) {
  MigrateTest t;
  Coro co(migrate_entry, &t);
  t.co = &co;
  int first_thread_mode = -1, second_thread_mode = -1;
  double nearest_third = 0;
  std::thread([&] {
    ThreadCtx self;
    t.home = &self.ctx;
    ctx_switch(&self.ctx, &co.ctx);
    first_thread_mode = std::fegetround();
  }).join();
  std::thread([&] {
    ThreadCtx self;
    t.home = &self.ctx;
    ctx_switch(&self.ctx, &co.ctx);
    second_thread_mode = std::fegetround();
    nearest_third = one_third();
  }).join();
  EXPECT_EQ(first_thread_mode, FE_TONEAREST);
  EXPECT_EQ(second_thread_mode, FE_TONEAREST);
  EXPECT_EQ(t.mode_on_second_thread, FE_UPWARD);
  EXPECT_GT(t.third_on_second_thread, nearest_third);
}

// ---------------------------------------------------------------------------
// A new context's entry.

// mnp_test_entry_sp(Probe*) records sp at its very first instruction, then
// tail-jumps to mnp_test_entry_continue(Probe*) with the same stack.
namespace {
struct Probe {
  uintptr_t sp_at_entry;
  uintptr_t frame_address;
  uintptr_t aligned_local;
  Context main;
  Coro* co;
};
}  // namespace

extern "C" void mnp_test_entry_sp(void* probe);
extern "C" [[noreturn]] __attribute__((noinline)) void mnp_test_entry_continue(void* p) {
  auto* probe = static_cast<Probe*>(p);
  alignas(16) volatile char local[16] = {};
  probe->frame_address = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  probe->aligned_local = reinterpret_cast<uintptr_t>(&local[0]);
  ctx_switch_final(&probe->co->ctx, &probe->main);
}

#if defined(__x86_64__)
asm(R"(
  .text
  .globl )" MNP_TEST_SYM(mnp_test_entry_sp) R"(
  .p2align 4
)" MNP_TEST_SYM(mnp_test_entry_sp) R"(:
  movq %rsp, (%rdi)
  jmp  )" MNP_TEST_SYM(mnp_test_entry_continue) R"(
)");
constexpr uintptr_t kSpMod16AtEntry = 8;  // psABI: (rsp + 8) % 16 == 0 at a function's entry
#elif defined(__aarch64__)
asm(R"(
  .text
  .globl )" MNP_TEST_SYM(mnp_test_entry_sp) R"(
  .p2align 4
)" MNP_TEST_SYM(mnp_test_entry_sp) R"(:
  mov x9, sp
  str x9, [x0]
  b   )" MNP_TEST_SYM(mnp_test_entry_continue) R"(
)");
constexpr uintptr_t kSpMod16AtEntry = 0;  // AAPCS64: sp is always 16-byte aligned
#endif

TEST(Entry, StackIsAlignedAsAfterACall) {
  // Several stack sizes, some not a multiple of 16: ctx_make aligns the top.
  for (size_t trim : {0, 8, 4, 13}) {
    Probe probe{};
    ctx_init_thread(&probe.main);
    Coro co(mnp_test_entry_sp, &probe);
    ctx_destroy(&co.ctx);
    ctx_make(&co.ctx, co.stack.lo, co.stack.size() - trim, mnp_test_entry_sp, &probe);
    probe.co = &co;
    ctx_switch(&probe.main, &co.ctx);
    EXPECT_EQ(probe.sp_at_entry % 16, kSpMod16AtEntry) << "trim " << trim;
    EXPECT_EQ(probe.frame_address % 16, 0u) << "trim " << trim;
    EXPECT_EQ(probe.aligned_local % 16, 0u) << "trim " << trim;
    // The coroutine ran on its own stack, at or below the top it was given
    // (AArch64's bl pushes nothing: there sp at entry is the aligned top).
    EXPECT_GE(probe.sp_at_entry, reinterpret_cast<uintptr_t>(co.stack.lo));
    EXPECT_LE(probe.sp_at_entry, reinterpret_cast<uintptr_t>(co.stack.hi) - trim);
  }
}

namespace {
struct LibcTest {
  Context main;
  Coro* co = nullptr;
  char text[128] = {};
  double parsed = 0;
};
void libc_entry(void* p) {
  auto* t = static_cast<LibcTest*>(p);
  // Variadic calls with doubles: glibc's printf family saves xmm registers
  // with aligned stores on entry, so a misaligned stack crashes here.
  std::snprintf(t->text, sizeof t->text, "%.3f %g %.2e %s", 3.14159, 2.5e-7, 1e300, "ok");
  t->parsed = std::strtod("6.02214076e23", nullptr);
  std::fprintf(stderr, "%s", "");  // a stdio call that takes the stream's lock
  ctx_switch_final(&t->co->ctx, &t->main);
}
}  // namespace

TEST(Entry, CoroutineCanCallLibcWithDoubles) {
  LibcTest t;
  ctx_init_thread(&t.main);
  Coro co(libc_entry, &t);
  t.co = &co;
  ctx_switch(&t.main, &co.ctx);
  EXPECT_STREQ(t.text, "3.142 2.5e-07 1.00e+300 ok");
  EXPECT_EQ(t.parsed, 6.02214076e23);
}

namespace {
struct ReturnTest {
  Context main;
};
void returning_entry(void*) {}  // breaks the contract: returns

void throwing_entry(void*) {
  throw std::runtime_error("boom from a coroutine");
}

void run_once(void (*entry)(void*)) {
  ReturnTest t;
  ctx_init_thread(&t.main);
  Coro co(entry, &t);
  ctx_switch(&t.main, &co.ctx);
}

bool killed_by_trap(int status) {
  return WIFSIGNALED(status) && (WTERMSIG(status) == SIGILL || WTERMSIG(status) == SIGTRAP);
}
}  // namespace

TEST(EntryDeathTest, ReturningFromEntryTrapsAtOnce) {
  EXPECT_EXIT(run_once(returning_entry), killed_by_trap, "");
}

// The trampoline is the outermost frame for the unwinder, so an exception
// that leaves entry finds no handler and ends in std::terminate; it must not
// unwind into the stack of whoever switched to the coroutine.
TEST(EntryDeathTest, ExceptionLeavingEntryTerminates) {
  EXPECT_DEATH(run_once(throwing_entry), "boom from a coroutine");
}

// ---------------------------------------------------------------------------
// Many coroutines.

namespace {
struct Counter {
  Context main;
  Coro* co = nullptr;
  int runs = 0;
};
void count_entry(void* p) {
  auto* c = static_cast<Counter*>(p);
  c->runs++;
  ctx_switch_final(&c->co->ctx, &c->main);
}
}  // namespace

TEST(Lifecycle, ManyCoroutinesCreatedAndDestroyed) {
  Counter c;
  ctx_init_thread(&c.main);
  constexpr int kCount = 20000;
  for (int i = 0; i < kCount; i++) {
    auto co = std::make_unique<Coro>(count_entry, &c);
    c.co = co.get();
    ctx_switch(&c.main, &co->ctx);
  }
  EXPECT_EQ(c.runs, kCount);
}

namespace {
struct Crowd {
  Context main;
  std::vector<std::unique_ptr<Coro>> cos;
  std::vector<uint64_t> seen;  // what each coroutine last reported
};
struct CrowdArg {
  Crowd* crowd;
  size_t index;
};
void crowd_entry(void* p) {
  auto* a = static_cast<CrowdArg*>(p);
  Crowd* crowd = a->crowd;
  const size_t me = a->index;
  uint64_t mine = me * 1000;  // on this coroutine's stack
  for (int round = 0; round < 10; round++) {
    crowd->seen[me] = mine + round;
    ctx_switch(&crowd->cos[me]->ctx, &crowd->main);
  }
  ctx_switch_final(&crowd->cos[me]->ctx, &crowd->main);
}
}  // namespace

TEST(Lifecycle, ManyLiveCoroutinesKeepTheirOwnStacks) {
  Crowd crowd;
  ctx_init_thread(&crowd.main);
  constexpr size_t kLive = 1000;
  std::vector<CrowdArg> args(kLive);
  crowd.seen.assign(kLive, 0);
  for (size_t i = 0; i < kLive; i++) {
    args[i] = {&crowd, i};
    crowd.cos.push_back(std::make_unique<Coro>(crowd_entry, &args[i]));
  }
  size_t wrong = 0;
  for (int round = 0; round < 11; round++) {
    for (size_t i = 0; i < kLive; i++) {
      ctx_switch(&crowd.main, &crowd.cos[i]->ctx);
      if (round < 10 && crowd.seen[i] != i * 1000 + round) wrong++;
    }
  }
  EXPECT_EQ(wrong, 0u);
}
