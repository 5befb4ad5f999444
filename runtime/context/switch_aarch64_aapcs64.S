// runtime/context/switch_aarch64_aapcs64.S — the context switch for AArch64,
// AAPCS64 (Linux, macOS/Apple silicon, BSDs). GNU as / clang syntax, ELF or
// Mach-O.
//
//   void mnp_ctx_jump(void** save_sp /* x0 */, void* load_sp /* x1 */);
//
// Saves the running side's callee-saved state on its own stack, stores sp
// into *save_sp, loads load_sp and restores the other side's state from the
// frame found there. To the caller it looks like an ordinary call that
// returns once someone jumps back to *save_sp, perhaps much later and on
// another OS thread.
//
// The switch frame (offsets from the saved sp; frame.h defines them for this
// file and for ctx_make, and static_asserts them against a C++ struct):
//
//          high addresses
//  +176  ┌──────────────────┐ ◄── sp before the switch
//        │ padding          │
//  +168  ├──────────────────┤
//        │ FPCR             │
//  +160  ├──────────────────┤
//        │ d14, d15         │
//  +144  ├──────────────────┤
//        │ d12, d13         │
//  +128  ├──────────────────┤
//        │ d10, d11         │
//  +112  ├──────────────────┤
//        │ d8,  d9          │
//   +96  ├──────────────────┤
//        │ x29, x30 (lr)    │ lr: where this side continues
//   +80  ├──────────────────┤
//        │ x27, x28         │
//   +64  ├──────────────────┤
//        │ x25, x26         │
//   +48  ├──────────────────┤
//        │ x23, x24         │
//   +32  ├──────────────────┤
//        │ x21, x22         │
//   +16  ├──────────────────┤
//        │ x19, x20         │
//    +0  └──────────────────┘ ◄── saved sp (16-byte aligned, as sp always is)
//          low addresses
//
// What is saved, and why (AAPCS64, "General-purpose Registers" and "SIMD and
// Floating-Point Registers"): x19-x28 are callee-saved, x29 is the frame
// pointer, x30 the link register (our return address). Of v8-v15 only the
// low 64 bits (d8-d15) are callee-saved. x18 is the platform register
// (reserved on macOS): never touched. FPCR's modes (rounding, flush-to-zero,
// default NaN) are global state that a called function leaves as it found
// them unless changing them is its documented purpose (fesetround), so to
// the code around a switch they are preserved; FPSR holds only sticky status
// flags and is not preserved.
//
// Why save FPCR at all: marl skips it because a marl fiber always resumes on
// the thread that suspended it. Here a G may park on one M and resume on
// another, so a rounding mode set by a G (fesetround) must travel with the G,
// and must not leak into the g0 or the next G of the M it leaves. Writing
// FPCR can be slow (some cores synchronise on it), so it is written only when
// the two sides differ, which is rare.
//
// How the switch ends: `mnp_ctx_jump` ends with `ret` (to x30, the other
// side's return address); `mnp_ctx_jump_alt` ends with `br x30`, kept for
// bench/context_bench.cpp's comparison (BM_Switch_mnp_ret, _br). On x86-64
// the jump ending measured 4x faster than `ret` (see switch_x86_64_sysv.S),
// and the same reason, a return-stack predictor that is wrong after every
// switch, may hold here. But no AArch64 hardware was at hand to measure it
// (under qemu timings mean nothing), so `ret` stays until someone runs the
// benchmark on a real core: it is also the form that stays valid under BTI,
// where `br` may only land on a `bti j` instruction and return addresses
// carry none.

#include "frame.h"

// Mach-O prefixes C symbols with an underscore and has no .type/.size. Note
// for edits: on Apple's arm64 assembler `;` starts a comment, so every
// statement here is on its own line.
#if defined(__APPLE__)
#define MNP_SYM(name) _##name
#else
#define MNP_SYM(name) name
#endif

.macro MNP_FUNC_BEGIN name, visibility
  .text
  .globl \name
#if defined(__APPLE__)
  .ifc \visibility, hidden
  .private_extern \name
  .endif
#else
  .ifc \visibility, hidden
  .hidden \name
  .endif
  .type \name, %function
#endif
  .p2align 4
\name:
.endm

.macro MNP_FUNC_END name
#if !defined(__APPLE__)
  .size \name, . - \name
#endif
.endm

// The body shared by both variants: everything but the final branch. On exit
// sp is the other side's sp after the switch and x30 its return address.
.macro MNP_SWITCH_BODY
  .cfi_startproc
  sub   sp, sp, #MNP_A64_FRAME_SIZE            // room for the frame
  .cfi_adjust_cfa_offset MNP_A64_FRAME_SIZE
  // Callee-saved integer registers, two per store.
  stp   x19, x20, [sp, #MNP_A64_OFF_X19]
  stp   x21, x22, [sp, #MNP_A64_OFF_X21]
  stp   x23, x24, [sp, #MNP_A64_OFF_X23]
  stp   x25, x26, [sp, #MNP_A64_OFF_X25]
  stp   x27, x28, [sp, #MNP_A64_OFF_X27]
  stp   x29, x30, [sp, #MNP_A64_OFF_X29]      // frame pointer and return address
  .cfi_rel_offset x29, MNP_A64_OFF_X29
  .cfi_rel_offset x30, MNP_A64_OFF_X30
  // Callee-saved halves of the SIMD/FP registers.
  stp   d8,  d9,  [sp, #MNP_A64_OFF_D8]
  stp   d10, d11, [sp, #MNP_A64_OFF_D10]
  stp   d12, d13, [sp, #MNP_A64_OFF_D12]
  stp   d14, d15, [sp, #MNP_A64_OFF_D14]
  // FP control: rounding mode, flush-to-zero, default-NaN.
  mrs   x9, fpcr                              // x9 keeps ours for the comparison below
  str   x9, [sp, #MNP_A64_OFF_FPCR]

  // The switch proper: publish our sp, adopt the other side's.
  mov   x10, sp
  str   x10, [x0]                             // *save_sp = our frame
  mov   sp, x1                                // from here on we run on the other stack

  // The other side's FPCR, written only if it differs from ours.
  ldr   x10, [sp, #MNP_A64_OFF_FPCR]
  cmp   x9, x10
  b.eq  1f
  msr   fpcr, x10
1:
  // The other side's SIMD/FP halves.
  ldp   d8,  d9,  [sp, #MNP_A64_OFF_D8]
  ldp   d10, d11, [sp, #MNP_A64_OFF_D10]
  ldp   d12, d13, [sp, #MNP_A64_OFF_D12]
  ldp   d14, d15, [sp, #MNP_A64_OFF_D14]
  // The other side's integer registers, frame pointer and return address.
  ldp   x19, x20, [sp, #MNP_A64_OFF_X19]
  ldp   x21, x22, [sp, #MNP_A64_OFF_X21]
  ldp   x23, x24, [sp, #MNP_A64_OFF_X23]
  ldp   x25, x26, [sp, #MNP_A64_OFF_X25]
  ldp   x27, x28, [sp, #MNP_A64_OFF_X27]
  ldp   x29, x30, [sp, #MNP_A64_OFF_X29]
  add   sp, sp, #MNP_A64_FRAME_SIZE           // pop the frame
  .cfi_adjust_cfa_offset -MNP_A64_FRAME_SIZE
.endm

// mnp_ctx_jump: the switch the runtime uses. Ends with `ret`.
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_jump), default
  MNP_SWITCH_BODY
  ret                                         // continue at the other side's x30
  .cfi_endproc
MNP_FUNC_END MNP_SYM(mnp_ctx_jump)

// mnp_ctx_jump_alt: the same switch ending with `br x30`, for the benchmark's
// comparison only (bench/context_bench.cpp).
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_jump_alt), default
  MNP_SWITCH_BODY
  br    x30                                   // continue at the other side's x30
  .cfi_endproc
MNP_FUNC_END MNP_SYM(mnp_ctx_jump_alt)

// mnp_ctx_trampoline: where a new context's first switch lands (ctx_make
// stores its address in the x30 slot). The first switch has restored
// x19 = the function, x20 and x21 = its two arguments, x29 = 0 and sp = the
// 16-byte aligned top of the stack, so the function is entered as after any
// call. It must never return; if it does, brk raises SIGTRAP at once rather
// than running into whatever lies beyond.
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_trampoline), hidden
  .cfi_startproc
  .cfi_undefined x30                          // the outermost frame: unwinders and gdb stop here
  mov   x0, x20                               // first argument
  mov   x1, x21                               // second argument
  blr   x19
  brk   #0xc7                                 // entry returned: a bug in the caller of ctx_make
  .cfi_endproc
MNP_FUNC_END MNP_SYM(mnp_ctx_trampoline)

#if !defined(__APPLE__)
// No executable stack wanted: without this note the linker assumes this
// object needs one and makes every thread stack of the program executable.
.section .note.GNU-stack, "", %progbits
#endif
