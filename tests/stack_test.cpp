// tests/stack_test.cpp — coroutine stacks: sizes, the guard page, the pool,
// the overflow report, the alternate signal stack, the high-water mark.
//
// The overflow tests die on purpose (EXPECT_EXIT runs them in a child): a
// deep recursion on a coroutine stack runs into the guard page, and the
// SIGSEGV handler, running on the alternate signal stack, prints what the
// describer says and aborts. A fault the describer does not claim must end
// as an ordinary SIGSEGV.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "context/context.h"
#include "context/stack.h"

using namespace mnp::rt;

namespace {

// A fault that nobody claims ends as the process's ordinary SIGSEGV. Under a
// sanitizer, "ordinary" is the sanitizer's own SEGV handler (our handler put
// it back), which prints a report and exits with an error instead.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define MNP_TEST_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define MNP_TEST_SANITIZER 1
#endif
#endif
#if defined(MNP_TEST_SANITIZER)
bool died_of_segv(int status) {
  return (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
         (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}
constexpr const char* kSegvText = "SEGV|stack-overflow";
#else
bool died_of_segv(int status) {
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}
constexpr const char* kSegvText = "";
#endif

// Whether [p, p + len) is mapped: msync fails with ENOMEM on unmapped pages.
bool is_mapped(const void* p, size_t len) {
  void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(page_size() - 1));
  return msync(page, len, MS_ASYNC) == 0 || errno != ENOMEM;
}

}  // namespace

// ---------------------------------------------------------------------------
// Allocation

TEST(Stack, SizeIsRoundedUpToWholePages) {
  const size_t page = page_size();
  struct Case {
    size_t asked, usable;
  } cases[] = {{1, page}, {page, page}, {page + 1, 2 * page}, {3 * page - 5, 3 * page}};
  for (const Case& c : cases) {
    Stack s = stack_alloc(c.asked);
    EXPECT_EQ(s.size(), c.usable) << "asked " << c.asked;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(s.lo) % page, 0u);
    EXPECT_EQ(s.lo - static_cast<char*>(s.map), static_cast<ptrdiff_t>(page)) << "one guard page";
    EXPECT_EQ(s.map_size, c.usable + page);
    stack_free(s);
  }
}

TEST(Stack, UsableAreaIsReadableAndWritable) {
  Stack s = stack_alloc(64 * 1024);
  std::memset(s.lo, 0x5A, s.size());
  EXPECT_EQ(s.lo[0], 0x5A);
  EXPECT_EQ(s.hi[-1], 0x5A);
  stack_free(s);
}

TEST(StackDeathTest, GuardPageBelowTheStackIsNotAccessible) {
  Stack s = stack_alloc(64 * 1024);
  volatile char* guard = s.lo - 1;
  // No overflow handler in these children: a plain SIGSEGV.
  EXPECT_EXIT(*guard = 1, died_of_segv, kSegvText);
  EXPECT_EXIT((void)*guard, died_of_segv, kSegvText);
  volatile char* lowest_guard_byte = static_cast<char*>(s.map);
  EXPECT_EXIT((void)*lowest_guard_byte, died_of_segv, kSegvText);
  stack_free(s);
}

// ---------------------------------------------------------------------------
// The pool. Each test uses sizes of its own and drains the pool first, so
// what other tests left there does not count.

TEST(StackPool, FreedStackIsReusedWithItsPages) {
  stack_pool_drain();
  const size_t size = 40 * page_size();
  Stack a = stack_alloc(size);
  a.lo[0] = 42;  // touched: the page stays with the stack in the pool
  stack_free(a);
  Stack b = stack_alloc(size);
  EXPECT_EQ(b.lo, a.lo);
  EXPECT_EQ(b.map, a.map);
  EXPECT_EQ(b.lo[0], 42) << "a pooled stack keeps its pages (no munmap, no fresh zero page)";
  stack_free(b);
  stack_pool_drain();
}

TEST(StackPool, SizesAreKeptApart) {
  stack_pool_drain();
  Stack small = stack_alloc(24 * page_size());
  stack_free(small);
  Stack big = stack_alloc(28 * page_size());
  EXPECT_NE(big.lo, small.lo);
  EXPECT_EQ(big.size(), 28 * page_size());
  Stack small_again = stack_alloc(24 * page_size());
  EXPECT_EQ(small_again.lo, small.lo);
  stack_free(big);
  stack_free(small_again);
  stack_pool_drain();
}

TEST(StackPool, IsBoundedPerSizeAndDrainUnmapsEverything) {
  stack_pool_drain();
  const size_t size = 9 * page_size();
  const size_t extra = 8;
  std::vector<Stack> stacks;
  for (size_t i = 0; i < kStackPoolMaxPerSize + extra; i++) stacks.push_back(stack_alloc(size));
  for (const Stack& s : stacks) stack_free(s);
  size_t mapped = 0;
  for (const Stack& s : stacks) mapped += is_mapped(s.lo, s.size());
  EXPECT_EQ(mapped, kStackPoolMaxPerSize) << "the first kStackPoolMaxPerSize freed are pooled";
  for (size_t i = kStackPoolMaxPerSize; i < stacks.size(); i++) {
    EXPECT_FALSE(is_mapped(stacks[i].lo, stacks[i].size())) << "freed beyond the cap: unmapped";
  }
  stack_pool_drain();
  mapped = 0;
  for (const Stack& s : stacks) mapped += is_mapped(s.lo, s.size());
  EXPECT_EQ(mapped, 0u);
}

// ---------------------------------------------------------------------------
// Stack overflow

namespace {

// The stack the describer watches, and the coroutine it pretends to be.
Stack g_watched;
constexpr char kOverflowText[] = "goroutine 42 [running]: stack overflow (guard page hit)\n";

// A describer as the scheduler writes one: async-signal-safe (no locks, no
// allocation), claims only faults in the guard page it knows.
size_t test_describer(const void* fault, char* buf, size_t len) {
  auto a = reinterpret_cast<uintptr_t>(fault);
  auto guard_lo = reinterpret_cast<uintptr_t>(g_watched.map);
  auto guard_hi = reinterpret_cast<uintptr_t>(g_watched.lo);
  if (a < guard_lo || a >= guard_hi) return 0;
  size_t n = sizeof kOverflowText - 1;
  if (n > len) n = len;
  std::memcpy(buf, kOverflowText, n);
  return n;
}

volatile int g_depth_limit = 1 << 30;  // never reached; keeps the recursion finite to the compiler

__attribute__((noinline)) int recurse(int depth) {
  volatile char frame[256];
  frame[0] = static_cast<char>(depth);
  if (depth >= g_depth_limit) return frame[0];
  int below = recurse(depth + 1);  // not a tail call: the result is used
  return below + frame[0];
}

struct OverflowRun {
  Context main;
};

void recurse_entry(void*) {
  recurse(0);
  std::abort();  // unreachable: the recursion overflows first
}

// Runs a deep recursion on a fresh coroutine stack, with the overflow
// handler installed and `describer` set.
void overflow_on_a_coroutine(OverflowDescriber describer) {
  stack_install_overflow_handler();
  stack_thread_init();
  stack_set_overflow_describer(describer);
  g_watched = stack_alloc(64 * 1024);
  OverflowRun run;
  ctx_init_thread(&run.main);
  Context co;
  ctx_make(&co, g_watched.lo, g_watched.size(), recurse_entry, nullptr);
  ctx_switch(&run.main, &co);
}

// A fault that is no stack overflow: a write into a page of our own.
void fault_elsewhere() {
  stack_install_overflow_handler();
  stack_thread_init();
  stack_set_overflow_describer(test_describer);
  g_watched = stack_alloc(64 * 1024);
  void* p = mmap(nullptr, page_size(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) std::abort();
  *static_cast<volatile char*>(p) = 1;
}

}  // namespace

TEST(StackOverflowDeathTest, GuardPageHitPrintsTheDescriptionAndAborts) {
  EXPECT_EXIT(overflow_on_a_coroutine(test_describer), testing::KilledBySignal(SIGABRT),
              "goroutine 42 \\[running\\]: stack overflow \\(guard page hit\\)");
}

TEST(StackOverflowDeathTest, FaultOutsideAGuardPageIsAnOrdinarySegfault) {
  EXPECT_EXIT(fault_elsewhere(), died_of_segv, kSegvText);
}

TEST(StackOverflowDeathTest, OverflowWithoutADescriberIsAnOrdinarySegfault) {
  EXPECT_EXIT(overflow_on_a_coroutine(nullptr), died_of_segv, kSegvText);
}

// ---------------------------------------------------------------------------
// The alternate signal stack

namespace {
stack_t current_altstack() {
  stack_t ss;
  std::memset(&ss, 0, sizeof ss);
  if (sigaltstack(nullptr, &ss) != 0) std::abort();
  return ss;
}
}  // namespace

TEST(AltStack, InstalledPerThreadAndRemovedByFini) {
  bool had_one = false;
  std::thread([&] {
    if ((current_altstack().ss_flags & SS_DISABLE) == 0) {
      had_one = true;  // a sanitizer's: see AltStack.KeepsOneTheThreadAlreadyHas
      return;
    }
    stack_thread_init();
    stack_t ss = current_altstack();
    EXPECT_EQ(ss.ss_flags & SS_DISABLE, 0);
    EXPECT_GE(ss.ss_size, static_cast<size_t>(64 * 1024));
    EXPECT_GE(ss.ss_size, static_cast<size_t>(SIGSTKSZ));
    stack_thread_init();  // idempotent
    EXPECT_EQ(current_altstack().ss_sp, ss.ss_sp);
    stack_thread_fini();
    EXPECT_NE(current_altstack().ss_flags & SS_DISABLE, 0);
    EXPECT_FALSE(is_mapped(ss.ss_sp, ss.ss_size)) << "fini unmaps it";
  }).join();
  if (had_one) GTEST_SKIP() << "new threads already get an alternate signal stack here";
}

TEST(AltStack, KeepsOneTheThreadAlreadyHas) {
  std::thread([] {
    std::vector<char> mine(128 * 1024);
    stack_t ss, before;
    std::memset(&ss, 0, sizeof ss);
    ss.ss_sp = mine.data();
    ss.ss_size = mine.size();
    ASSERT_EQ(sigaltstack(&ss, &before), 0);
    stack_thread_init();
    EXPECT_EQ(current_altstack().ss_sp, mine.data());
    stack_thread_fini();
    EXPECT_EQ(current_altstack().ss_sp, mine.data()) << "not ours to remove";
    // Put back what the thread had (a sanitizer unmaps its own at exit).
    if ((before.ss_flags & SS_DISABLE) != 0) {
      before.ss_flags = SS_DISABLE;
    } else {
      before.ss_flags = 0;
    }
    ASSERT_EQ(sigaltstack(&before, nullptr), 0);
  }).join();
}

// ---------------------------------------------------------------------------
// High-water mark

TEST(StackHighWater, IsZeroWithoutDebugStacks) {
  const char* debug = std::getenv("MNP_DEBUG");
  if (debug != nullptr && std::strstr(debug, "stacks") != nullptr) {
    GTEST_SKIP() << "MNP_DEBUG contains \"stacks\" in this run";
  }
  Stack s = stack_alloc(64 * 1024);
  std::memset(s.hi - 4096, 1, 4096);
  EXPECT_EQ(stack_high_water(s), 0u);
  stack_free(s);
}

namespace {
struct DeepUse {
  Context main;
  Context co;
};
void use_20k_entry(void* p) {
  auto* d = static_cast<DeepUse*>(p);
  volatile char buf[20000];
  for (size_t i = 0; i < sizeof buf; i += 64) buf[i] = 1;
  buf[0] = 1;
  ctx_switch_final(&d->co, &d->main);
}
// Exits 0 when a coroutine that used about 20 KB of its stack shows a
// high-water mark of at least that, and not much more.
void measure_high_water() {
  Stack s = stack_alloc(64 * 1024);
  DeepUse d;
  ctx_init_thread(&d.main);
  ctx_make(&d.co, s.lo, s.size(), use_20k_entry, &d);
  ctx_switch(&d.main, &d.co);
  size_t hw = stack_high_water(s);
  std::fprintf(stderr, "high water: %zu\n", hw);
  std::_Exit(hw >= 20000 && hw < 32 * 1024 ? 0 : 1);
}
}  // namespace

// MNP_DEBUG is read once per process, so this runs in a child started
// afresh ("threadsafe" death tests re-execute the binary) with the variable
// set.
TEST(StackHighWaterDeathTest, MeasuresTheDeepestUseWithDebugStacks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const char* old = std::getenv("MNP_DEBUG");
  std::string saved = old ? old : "";
  setenv("MNP_DEBUG", "stacks", 1);
  EXPECT_EXIT(measure_high_water(), testing::ExitedWithCode(0), "high water: ");
  if (old) {
    setenv("MNP_DEBUG", saved.c_str(), 1);
  } else {
    unsetenv("MNP_DEBUG");
  }
  GTEST_FLAG_SET(death_test_style, "fast");
}
