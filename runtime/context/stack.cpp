// runtime/context/stack.cpp — coroutine stacks: mmap'd, a guard page below,
// pooled; and the SIGSEGV handler that turns a write into a guard page into
// a message naming the coroutine.
//
// A stack is one private anonymous mapping: a PROT_NONE guard page, then the
// usable area. MAP_NORESERVE and demand paging make the reservation cheap: a
// 256 KiB stack whose coroutine only ever used 6 KiB costs two pages of RSS.
//
// The pool: freed stacks keep their pages (no munmap, no page faults on
// reuse) in a free list per size, at most kStackPoolMaxPerSize of each; a
// stack freed beyond that is unmapped. The free-list node lives in the top
// bytes of the free stack itself (Go's stackpool does the same with its
// spans), so pooling allocates nothing. One mutex guards the pool: by the
// time a stack gets here the scheduler's own per-P free list of dead Gs
// (which keep their stacks) has missed, so this path is not hot.
//
// Overflow reporting (DESIGN.md §2): a coroutine that overruns its stack
// writes into the guard page and takes SIGSEGV with sp inside the guard page,
// where the kernel cannot push a signal frame. So every M runs with an
// alternate signal stack (stack_thread_init), the handler is installed with
// SA_ONSTACK, and it asks the runtime's describer whether the fault address
// is a guard page of the running G. If so it prints the describer's text and
// aborts; if not, it puts back the previous disposition and returns, so the
// faulting instruction faults again and the process dies (or is handled) as
// if we had never been there.
#include "context/stack.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__SANITIZE_ADDRESS__)
#define MNP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MNP_ASAN 1
#endif
#endif
#if defined(MNP_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace mnp::rt {
namespace {

// A failed mmap/mprotect/munmap/sigaltstack/sigaction leaves the runtime
// without stacks or without overflow reports: say which call and why, then
// stop. Checked in every build (marl checks mmap only in debug builds).
// `bytes` is the size the call was asked for, 0 when it takes none.
[[noreturn]] void sys_fatal(const char* call, int err, size_t bytes) {
  char size[48] = "";
  if (bytes != 0) std::snprintf(size, sizeof size, " of %zu bytes", bytes);
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "mnp: fatal: %s%s failed: %s (errno %d)\n", call, size,
                        std::strerror(err), err);
  if (n > 0) (void)!write(STDERR_FILENO, buf, std::min(static_cast<size_t>(n), sizeof buf - 1));
  std::abort();
}

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

// --- MNP_DEBUG=stacks: fill stacks with a pattern to measure their use -----

// The fill byte: a value that ordinary data (small integers, pointers, zeroed
// memory) rarely has.
constexpr unsigned char kFillByte = 0xA5;

// Read at the first use, and again at each mnp::run (stack_debug_reload):
// a process that runs the runtime several times (the tests) may change it
// in between.
bool read_debug_stacks() {
  const char* v = std::getenv("MNP_DEBUG");
  return v != nullptr && std::strstr(v, "stacks") != nullptr;
}
std::atomic<int> g_debug_stacks{-1};  // -1: not read yet
bool debug_stacks() {
  int on = g_debug_stacks.load(std::memory_order_relaxed);
  if (on < 0) {
    on = read_debug_stacks();
    g_debug_stacks.store(on, std::memory_order_relaxed);
  }
  return on != 0;
}

// --- Mapping and unmapping ---------------------------------------------------

// Maps guard + usable bytes and makes the lowest page the guard.
Stack map_stack(size_t usable) {
  const size_t guard = page_size();
  const size_t total = guard + usable;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#if defined(__linux__) || defined(__OpenBSD__)
  // Linux: a hint that this is a stack (THP avoids it since 6.7). OpenBSD
  // requires it for any memory sp points into. FreeBSD's MAP_STACK means a
  // grow-down region instead, which we do not want.
  flags |= MAP_STACK;
#endif
  void* map = mmap(nullptr, total, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (map == MAP_FAILED) sys_fatal("mmap", errno, total);
  if (mprotect(map, guard, PROT_NONE) != 0) sys_fatal("mprotect", errno, guard);
  Stack s;
  s.map = map;
  s.map_size = total;
  s.lo = static_cast<char*>(map) + guard;
  s.hi = s.lo + usable;
  return s;
}

void unmap_stack(const Stack& s) {
  if (munmap(s.map, s.map_size) != 0) sys_fatal("munmap", errno, s.map_size);
}

// --- The pool ------------------------------------------------------------------

// A free stack's link, written into the top bytes of its usable area.
struct FreeStack {
  FreeStack* next;
};

// One free list per stack size. Programs use one or two sizes (the
// default and perhaps a larger one for a few Gs); a size beyond the
// kMaxSizes-th distinct one is simply not pooled.
struct Bucket {
  size_t size = 0;  // usable bytes; 0: slot unused
  size_t count = 0;
  FreeStack* head = nullptr;
};

struct Pool {
  static constexpr int kMaxSizes = 8;
  std::mutex mu;
  Bucket buckets[kMaxSizes];  // guarded by mu
};

// Constant-initialised and trivially destructible in effect: usable from
// static constructors and from threads still running at exit.
constinit Pool g_pool;

FreeStack* node_of(const Stack& s) {
  return reinterpret_cast<FreeStack*>(s.hi) - 1;
}

Stack stack_of(FreeStack* node, size_t usable) {
  Stack s;
  s.hi = reinterpret_cast<char*>(node + 1);
  s.lo = s.hi - usable;
  s.map = s.lo - page_size();
  s.map_size = usable + page_size();
  return s;
}

// Takes a stack of `usable` bytes from the pool, or returns false.
bool pool_get(size_t usable, Stack* out) {
  std::lock_guard<std::mutex> lock(g_pool.mu);
  for (Bucket& b : g_pool.buckets) {
    if (b.size != usable || b.head == nullptr) continue;
    FreeStack* node = b.head;
    b.head = node->next;
    b.count--;
    *out = stack_of(node, usable);
    return true;
  }
  return false;
}

// Keeps s in the pool, or returns false when its size's list is full (or
// there is no list for its size and no free slot for one).
bool pool_put(const Stack& s) {
  const size_t usable = s.size();
  std::lock_guard<std::mutex> lock(g_pool.mu);
  Bucket* slot = nullptr;
  for (Bucket& b : g_pool.buckets) {
    if (b.size == usable) {
      slot = &b;
      break;
    }
    if (b.size == 0 && slot == nullptr) slot = &b;
  }
  if (slot == nullptr || slot->count >= kStackPoolMaxPerSize) return false;
  slot->size = usable;
  FreeStack* node = node_of(s);
  node->next = slot->head;
  slot->head = node;
  slot->count++;
  return true;
}

// --- Overflow reporting ------------------------------------------------------

std::atomic<OverflowDescriber> g_describer{nullptr};
std::once_flag g_handler_once;
// The dispositions we replaced, put back when a fault is not ours.
struct sigaction g_prev_segv;
struct sigaction g_prev_bus;

// write(2) until done or failed; async-signal-safe.
void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// The SIGSEGV/SIGBUS handler. Runs on the thread's alternate signal stack;
// calls only async-signal-safe functions (the describer must be one too).
void on_fault(int sig, siginfo_t* info, void*) {
  const int saved_errno = errno;
  if (OverflowDescriber describe = g_describer.load(std::memory_order_acquire)) {
    char buf[1024];
    size_t n = describe(info->si_addr, buf, sizeof buf);
    if (n > 0) {
      n = std::min(n, sizeof buf);
      write_all(STDERR_FILENO, buf, n);
      if (buf[n - 1] != '\n') write_all(STDERR_FILENO, "\n", 1);
      abort();
    }
  }
  // Not a guard-page hit. Put back what was there before us (SIG_DFL,
  // unless a sanitizer or the embedding program had a handler) and return:
  // the faulting instruction runs again and this time meets that
  // disposition. A signal sent with kill(2) would not come back by itself,
  // so raise it again; it stays blocked until this handler returns.
  sigaction(sig, sig == SIGBUS ? &g_prev_bus : &g_prev_segv, nullptr);
  if (info->si_code <= 0) raise(sig);
  errno = saved_errno;
}

void install_handler() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;  // on the alternate stack: sp may be in a guard page
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGSEGV, &sa, &g_prev_segv) != 0) sys_fatal("sigaction(SIGSEGV)", errno, 0);
  // macOS reports some guard-page hits as SIGBUS.
  if (sigaction(SIGBUS, &sa, &g_prev_bus) != 0) sys_fatal("sigaction(SIGBUS)", errno, 0);
}

// The calling thread's alternate signal stack, if we made it. Go's
// minitSignalStack keeps a stack someone else installed; so do we.
struct AltStack {
  bool done = false;  // stack_thread_init ran on this thread
  Stack stack;        // ours, or empty when the thread already had one
};
thread_local AltStack t_altstack;

}  // namespace

void stack_debug_reload() {
  g_debug_stacks.store(read_debug_stacks(), std::memory_order_relaxed);
}

size_t page_size() {
  static const size_t size = [] {
    long n = sysconf(_SC_PAGESIZE);
    if (n <= 0) sys_fatal("sysconf(_SC_PAGESIZE)", errno, 0);
    return static_cast<size_t>(n);
  }();
  return size;
}

Stack stack_alloc(size_t size) {
  const size_t usable = round_up(std::max<size_t>(size, 1), page_size());
  Stack s;
  if (!pool_get(usable, &s)) s = map_stack(usable);
  // Debug only: every byte starts as the fill pattern, which costs the whole
  // stack in RSS; stack_high_water then finds the deepest byte written.
  if (debug_stacks()) std::memset(s.lo, kFillByte, s.size());
  return s;
}

void stack_free(const Stack& s) {
  if (s.map == nullptr) return;
#if defined(MNP_ASAN)
  // Frames of the last coroutine that never returned leave poisoned
  // redzones; the next user of these pages must start clean.
  __asan_unpoison_memory_region(s.lo, s.size());
#endif
  if (!pool_put(s)) unmap_stack(s);
}

void stack_pool_drain() {
  std::lock_guard<std::mutex> lock(g_pool.mu);
  for (Bucket& b : g_pool.buckets) {
    while (FreeStack* node = b.head) {
      b.head = node->next;
      unmap_stack(stack_of(node, b.size));
    }
    b = Bucket{};
  }
}

void stack_set_overflow_describer(OverflowDescriber fn) {
  g_describer.store(fn, std::memory_order_release);
}

void stack_install_overflow_handler() {
  std::call_once(g_handler_once, install_handler);
}

void stack_thread_init() {
  AltStack& alt = t_altstack;
  if (alt.done) return;
  alt.done = true;
  stack_t cur;
  if (sigaltstack(nullptr, &cur) != 0) sys_fatal("sigaltstack", errno, 0);
  if ((cur.ss_flags & SS_DISABLE) == 0) return;  // the thread has one already: keep it
  // SIGSTKSZ is a run-time value in glibc >= 2.34 (it depends on the CPU's
  // register file), hence max() at run time. 64 KiB leaves the describer
  // room for snprintf.
  const size_t size = round_up(std::max<size_t>(SIGSTKSZ, 64 * 1024), page_size());
  alt.stack = map_stack(size);  // with a guard page of its own
  stack_t ss;
  std::memset(&ss, 0, sizeof ss);
  ss.ss_sp = alt.stack.lo;
  ss.ss_size = alt.stack.size();
  ss.ss_flags = 0;
  if (sigaltstack(&ss, nullptr) != 0) sys_fatal("sigaltstack", errno, ss.ss_size);
}

void stack_thread_fini() {
  AltStack& alt = t_altstack;
  if (alt.stack.map != nullptr) {
    stack_t ss;
    std::memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    if (sigaltstack(&ss, nullptr) != 0) sys_fatal("sigaltstack(SS_DISABLE)", errno, 0);
    unmap_stack(alt.stack);
  }
  alt = AltStack{};
}

// Only meaningful with MNP_DEBUG=stacks (else 0): stack_alloc filled the
// stack with kFillByte, and the stack grows down from hi, so the lowest
// byte that is no longer the pattern marks the deepest use. A frame that
// happened to store the pattern byte at its lowest address makes the answer
// a few bytes short; nothing overestimates. The mark is cumulative since
// stack_alloc: a G reused from the scheduler's free list keeps its stack
// and its mark.
size_t stack_high_water(const Stack& s) {
  if (!debug_stacks() || s.lo == nullptr) return 0;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.lo);
  const unsigned char* end = reinterpret_cast<const unsigned char*>(s.hi);
  // Word at a time over the untouched part (lo is page-aligned), then bytes.
  uint64_t pattern;
  std::memset(&pattern, kFillByte, sizeof pattern);
  while (p + sizeof pattern <= end) {
    uint64_t w;
    std::memcpy(&w, p, sizeof w);
    if (w != pattern) break;
    p += sizeof w;
  }
  while (p < end && *p == kFillByte) p++;
  return static_cast<size_t>(end - p);
}

}  // namespace mnp::rt
