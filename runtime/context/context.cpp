// runtime/context/context.cpp — building a coroutine's first frame, and the
// switch wrapper that keeps the sanitizers informed.
//
// The switch itself is assembly (switch_<arch>_<abi>.S); this file only
//   - lays out the frame that the first switch into a new context pops
//     (ctx_make), so that it "returns" into mnp_ctx_trampoline, which calls
//     the entry function;
//   - tells ASan and TSan about every switch, because both track "the
//     current stack" and would otherwise report false errors the moment sp
//     jumps to another stack.
//
// The sanitizer hooks are gathered in one block below and compile to nothing
// in plain builds, where ctx_switch is a tail call of mnp_ctx_jump.
#include "context/context.h"

#include <pthread.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "context/frame.h"

// Which sanitizer is on: GCC says so with __SANITIZE_*__, clang with
// __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define MNP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MNP_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define MNP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MNP_TSAN 1
#endif
#endif

#if defined(MNP_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(MNP_TSAN)
// The fiber API (declared by <sanitizer/tsan_interface.h> in recent
// toolchains; declared here so that older ones work too).
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

// Where a new context's first switch lands (the .S file): calls
// fn(arg0, arg1) from the registers ctx_make filled in, traps if fn returns.
extern "C" void mnp_ctx_trampoline();

namespace mnp::rt {
namespace {

// Context errors are bugs in the runtime, not conditions to handle: say what
// happened and stop.
[[noreturn]] void ctx_fatal(const char* what) {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "mnp: fatal: %s\n", what);
  if (n > 0) (void)!write(STDERR_FILENO, buf, static_cast<size_t>(n));
  std::abort();
}

// ---------------------------------------------------------------------------
// Sanitizer hooks. ASan: before a switch, start_switch_fiber names the stack
// we are going to and saves the leaving side's fake stack (where ASan keeps
// locals for use-after-return detection); after arriving, finish_switch_fiber
// hands back the arriving side's. A context that will never run again passes
// nullptr, and ASan frees its fake stack. TSan: each context is a fiber, and
// switch_to_fiber(to, 0) makes the switch a synchronisation point, as the
// hand-over of a G between Ms is.

#if defined(MNP_ASAN)
inline void before_switch(Context* from, Context* to) {
  __sanitizer_start_switch_fiber(&from->asan_fake_stack, to->stack_lo, to->stack_size);
}
inline void after_switch(Context* back) {
  __sanitizer_finish_switch_fiber(back->asan_fake_stack, nullptr, nullptr);
}
inline void before_final_switch(Context* to) {
  __sanitizer_start_switch_fiber(nullptr, to->stack_lo, to->stack_size);
}
// A new context's first instructions: finish the switch that brought us here
// (there is no fake stack of ours to restore yet).
void sanitizer_entry(void (*entry)(void*), void* arg) {
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
  entry(arg);
  __builtin_trap();  // entry must not return
}
// A reused stack may still carry the poisoned redzones of the frames of the
// coroutine that ran on it last and never returned from them.
inline void prepare_stack(void* lo, size_t size) {
  __asan_unpoison_memory_region(lo, size);
}
#elif defined(MNP_TSAN)
inline void before_switch(Context*, Context* to) {
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
}
inline void after_switch(Context*) {}
inline void before_final_switch(Context* to) {
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
}
inline void prepare_stack(void*, size_t) {}
#else
inline void before_switch(Context*, Context*) {}
inline void after_switch(Context*) {}
inline void before_final_switch(Context*) {}
inline void prepare_stack(void*, size_t) {}
#endif

// ---------------------------------------------------------------------------
// The first frame of a new context, per architecture: what the first
// mnp_ctx_jump into it pops. The registers it restores carry fn and its two
// arguments to the trampoline; the "return address" is the trampoline.

using TrampolineFn = uintptr_t;  // a function taking (arg0, arg1), as an address

#if defined(__x86_64__)
void* make_frame(uintptr_t top, TrampolineFn fn, uintptr_t arg0, uintptr_t arg1) {
  // top is 16-byte aligned and the frame is 64 bytes, so the trampoline
  // starts with %rsp = top, 16-byte aligned, and its `call` leaves the entry
  // function at rsp + 8 ≡ 0 (mod 16): the state right after any call.
  auto* f = reinterpret_cast<frame::X64*>(top - sizeof(frame::X64));
  std::memset(f, 0, sizeof *f);
  f->mxcsr = MNP_X64_MXCSR_INIT;
  f->fpucw = MNP_X64_FPUCW_INIT;
  f->rbx = fn;
  f->r12 = arg0;
  f->r13 = arg1;
  f->rbp = 0;  // ends the frame-pointer chain: debuggers stop here
  f->rip = reinterpret_cast<uintptr_t>(&mnp_ctx_trampoline);
  return f;
}
#elif defined(__aarch64__)
void* make_frame(uintptr_t top, TrampolineFn fn, uintptr_t arg0, uintptr_t arg1) {
  // The frame is popped whole before the trampoline runs, so the trampoline
  // starts with sp = top, 16-byte aligned as AAPCS64 requires at all times.
  auto* f = reinterpret_cast<frame::A64*>(top - sizeof(frame::A64));
  std::memset(f, 0, sizeof *f);
  f->fpcr = MNP_A64_FPCR_INIT;
  f->x19 = fn;
  f->x20 = arg0;
  f->x21 = arg1;
  f->x29 = 0;  // ends the frame-record chain: debuggers stop here
  f->x30 = reinterpret_cast<uintptr_t>(&mnp_ctx_trampoline);
  return f;
}
#else
#error "mini-netpoll has a context switch for x86_64 and aarch64 only"
#endif

// The calling thread's stack: [lo, lo + size).
void thread_stack_bounds(const void** lo, size_t* size) {
#if defined(__APPLE__)
  // macOS reports the top of the stack, not its bottom.
  pthread_t self = pthread_self();
  size_t sz = pthread_get_stacksize_np(self);
  *lo = static_cast<char*>(pthread_get_stackaddr_np(self)) - sz;
  *size = sz;
#elif defined(__linux__)
  pthread_attr_t attr;
  int err = pthread_getattr_np(pthread_self(), &attr);
  if (err != 0) ctx_fatal("ctx_init_thread: pthread_getattr_np failed");
  void* addr = nullptr;
  size_t sz = 0;
  err = pthread_attr_getstack(&attr, &addr, &sz);
  pthread_attr_destroy(&attr);
  if (err != 0) ctx_fatal("ctx_init_thread: pthread_attr_getstack failed");
  *lo = addr;
  *size = sz;
#else
  // Unknown here: the bounds stay empty. Only ASan reads them.
  *lo = nullptr;
  *size = 0;
#endif
}

}  // namespace

void ctx_make(Context* ctx, void* stack_lo, size_t size, void (*entry)(void*), void* arg) {
  auto lo = reinterpret_cast<uintptr_t>(stack_lo);
  uintptr_t top = (lo + size) & ~uintptr_t{15};
  // A stack that cannot hold the first frame and a little more is a bug in
  // the caller, not something to find out later by overwriting memory.
  constexpr uintptr_t kMinStack = 1024;
  if (stack_lo == nullptr || top < lo + kMinStack) {
    ctx_fatal("ctx_make: stack missing or too small for a first frame");
  }
  prepare_stack(stack_lo, size);

#if defined(MNP_ASAN)
  // Under ASan the trampoline calls sanitizer_entry(entry, arg), which
  // finishes the first switch before calling entry.
  ctx->sp = make_frame(top, reinterpret_cast<TrampolineFn>(&sanitizer_entry),
                       reinterpret_cast<uintptr_t>(entry), reinterpret_cast<uintptr_t>(arg));
#else
  // entry takes one argument; the trampoline's second one is simply ignored.
  ctx->sp =
      make_frame(top, reinterpret_cast<TrampolineFn>(entry), reinterpret_cast<uintptr_t>(arg), 0);
#endif
  ctx->stack_lo = stack_lo;
  ctx->stack_size = size;
  ctx->asan_fake_stack = nullptr;
#if defined(MNP_TSAN)
  if (ctx->tsan_fiber == nullptr || ctx->thread_stack) ctx->tsan_fiber = __tsan_create_fiber(0);
#endif
  ctx->thread_stack = false;
}

void ctx_init_thread(Context* ctx) {
  ctx->sp = nullptr;  // written by the first switch away from this thread
  thread_stack_bounds(&ctx->stack_lo, &ctx->stack_size);
  ctx->asan_fake_stack = nullptr;
#if defined(MNP_TSAN)
  ctx->tsan_fiber = __tsan_get_current_fiber();
#else
  ctx->tsan_fiber = nullptr;
#endif
  ctx->thread_stack = true;
}

void ctx_destroy(Context* ctx) {
#if defined(MNP_TSAN)
  if (ctx->tsan_fiber != nullptr && !ctx->thread_stack) __tsan_destroy_fiber(ctx->tsan_fiber);
#endif
  *ctx = Context{};
}

const char* ctx_sanitizer() {
#if defined(MNP_ASAN)
  return "AddressSanitizer";
#elif defined(MNP_TSAN)
  return "ThreadSanitizer";
#else
  return nullptr;
#endif
}

void ctx_switch(Context* from, Context* to) {
  before_switch(from, to);
  mnp_ctx_jump(&from->sp, to->sp);
  // Back in `from`, perhaps on another thread, perhaps much later.
  after_switch(from);
}

void ctx_switch_final(Context* from, Context* to) {
  before_final_switch(to);
  mnp_ctx_jump(&from->sp, to->sp);
  // Nobody may switch to a context that finished: if someone does, stop here.
  __builtin_trap();
}

}  // namespace mnp::rt
