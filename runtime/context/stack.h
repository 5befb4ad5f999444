// runtime/context/stack — coroutine stacks: mmap'd, a guard page below, pooled.
//
//   map ──► ┌──────────────┐ low addresses
//           │ guard page   │ PROT_NONE: a write here is a stack overflow
//   lo  ──► ├──────────────┤
//           │   usable     │ pages are touched (and cost RSS) on demand
//           │   stack      │
//   hi  ──► └──────────────┘ high addresses; the stack grows down from hi
//
// The scheduler keeps its G record in the top bytes of the usable area, so an
// idle G and the top frames of its stack share one page.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mnp::rt {

struct Stack {
  void* map = nullptr;  // start of the mapping (the guard page)
  size_t map_size = 0;  // guard + usable
  char* lo = nullptr;   // lowest usable byte
  char* hi = nullptr;   // one past the highest usable byte
  size_t size() const { return static_cast<size_t>(hi - lo); }
};

size_t page_size();

// Allocates a stack of at least `size` usable bytes (rounded up to pages),
// from the pool when one of that size is free. Aborts with a message naming
// the failed mmap/mprotect if the kernel refuses: a runtime without stacks
// cannot go on.
Stack stack_alloc(size_t size);
// Returns a stack to the pool (bounded: beyond the cap it is unmapped).
// Pooled stacks keep their pages, so reuse costs no page faults.
void stack_free(const Stack& s);
// The pool's cap: at most this many free stacks of one size stay mapped.
inline constexpr size_t kStackPoolMaxPerSize = 1024;
// Unmaps every pooled stack (end of mnp::run).
void stack_pool_drain();

// Stack overflow reporting. The SIGSEGV handler runs on an alternate signal
// stack; it asks the describer whether the faulting address is in the guard
// page of the running coroutine and, if so, what to print. The describer must
// be async-signal-safe: it formats into buf and returns the length, or 0 when
// the fault is not a guard-page hit (then the handler re-raises SIGSEGV with
// the default action, as an ordinary crash).
using OverflowDescriber = size_t (*)(const void* fault_addr, char* buf, size_t len);
void stack_set_overflow_describer(OverflowDescriber fn);
// Installs the SIGSEGV/SIGBUS handler (once per process) and an alternate
// signal stack for the calling thread (once per thread; every M calls it).
void stack_install_overflow_handler();
void stack_thread_init();
void stack_thread_fini();

// Deepest use of a stack so far, in bytes, found by scanning from lo for the
// first byte that is no longer the fill pattern. stack_alloc fills stacks
// only when $MNP_DEBUG contains "stacks" (read once, at the first use); the
// fill touches every page, so it costs each stack its full size in RSS.
// Without it this returns 0. Used by the stack report (MNP_DEBUG=stacks=1).
size_t stack_high_water(const Stack& s);
// Reads $MNP_DEBUG again (mnp::run calls it at each start, before any G).
void stack_debug_reload();

}  // namespace mnp::rt
