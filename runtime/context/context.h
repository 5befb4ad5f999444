// runtime/context — one coroutine's registers and stack; nothing else.
//
// A Context is the saved state of a coroutine that is not running. The
// callee-saved registers live on the coroutine's own stack (pushed by the
// switch), so the Context itself holds only the stack pointer, plus what the
// sanitizers need to follow a switch (ASan's fiber API, TSan's fibers).
//
// ctx_switch(from, to) saves the running coroutine into `from` and resumes
// `to`; it returns when something switches back to `from`, possibly on
// another OS thread (a G may resume on another M). Code that spans a switch
// must therefore not cache thread-local addresses: see sched's getm().
#pragma once

#include <cstddef>

namespace mnp::rt {

struct Context {
  void* sp = nullptr;  // saved stack pointer; the frame map is in the .S file
  // The stack this context runs on, set by ctx_make / ctx_init_thread in
  // every build; read by the ASan hooks (and free for a stack report).
  const void* stack_lo = nullptr;  // lowest usable address of this stack
  size_t stack_size = 0;
  // Sanitizer bookkeeping (unused in plain builds):
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
  bool thread_stack = false;  // made by ctx_init_thread: the fiber is the thread's, not ours
};

// Prepares `ctx` so that the first ctx_switch to it calls entry(arg) on the
// stack [stack_lo, stack_lo + size), entered as after a call (16-byte
// aligned), with the FP control state a new process has (round to nearest,
// exceptions masked). entry must never return: it ends by switching away for
// good (ctx_switch_final); if it returns anyway the process dies at once
// (SIGILL on x86-64, SIGTRAP on AArch64). An exception that leaves entry ends
// the process in std::terminate: the unwinder stops at the coroutine's base.
void ctx_make(Context* ctx, void* stack_lo, size_t size, void (*entry)(void*), void* arg);

// Initialises the context of the calling OS thread's own stack (an M's g0),
// so that a coroutine can switch back to it. Records the thread's stack
// bounds (pthread_getattr_np on Linux), which ASan needs to follow a switch
// back to this stack.
void ctx_init_thread(Context* ctx);

// Releases what ctx_make / ctx_init_thread took (the TSan fiber of a
// coroutine; a thread's own fiber is left to the thread). Not while running
// on ctx. ctx_make on a context that ctx_destroy has not released reuses
// its TSan fiber.
void ctx_destroy(Context* ctx);

// Switch from the running context to `to`: the sanitizer annotations around
// the assembly routine below. Not inline: in a plain build it is a tail call
// of mnp_ctx_jump, and calling the routine directly made no difference
// beyond noise (bench/context_bench.cpp: BM_Switch_mnp vs
// BM_Switch_mnp_inline, 2.3-2.5 ns per switch either way), so the sanitizer
// hooks stay in one .cpp file.
void ctx_switch(Context* from, Context* to);

// The last switch away from a context that has finished for good (a G that
// exits): `from` is never switched to again. Tells ASan to drop the
// coroutine's fake stack; otherwise the same as ctx_switch. Never returns.
[[noreturn]] void ctx_switch_final(Context* from, Context* to);

// The sanitizer this build follows switches for ("AddressSanitizer",
// "ThreadSanitizer"), or nullptr in a plain build. Copied stacks
// (MNP_STACK=copy) refuse to run under one: they memcpy a G's frames out of
// and back into a shared stack behind the sanitizer's back (ASan's redzones
// and fake stacks, TSan's shadow of those bytes would describe the wrong G).
const char* ctx_sanitizer();

}  // namespace mnp::rt

// The assembly routine (switch_<arch>_<abi>.S): pushes the callee-saved
// registers and FP control state, stores sp into *save_sp, loads load_sp,
// pops the other side's registers and continues there.
extern "C" void mnp_ctx_jump(void** save_sp, void* load_sp);
// The same switch with the other ending (`ret` on x86-64, `br` on AArch64),
// kept only so that bench/context_bench.cpp can compare the two.
extern "C" void mnp_ctx_jump_alt(void** save_sp, void* load_sp);
