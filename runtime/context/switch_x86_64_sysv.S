// runtime/context/switch_x86_64_sysv.S — the context switch for x86-64,
// System V psABI (Linux, BSDs, macOS). GNU as / clang syntax (AT&T), ELF or
// Mach-O.
//
//   void mnp_ctx_jump(void** save_sp /* %rdi */, void* load_sp /* %rsi */);
//
// Saves the running side's callee-saved state on its own stack, stores the
// stack pointer into *save_sp, loads load_sp and restores the other side's
// state from the frame found there. To the caller it looks like an ordinary
// call that returns once someone jumps back to *save_sp, perhaps much later
// and on another OS thread.
//
// The switch frame (offsets from the saved sp; frame.h defines them for this
// file and for ctx_make, and static_asserts them against a C++ struct):
//
//          high addresses
//   +56  ┌──────────────────┐
//        │ return address   │ pushed by the `call` that entered mnp_ctx_jump
//   +48  ├──────────────────┤
//        │ rbp              │
//   +40  ├──────────────────┤
//        │ rbx              │
//   +32  ├──────────────────┤
//        │ r12              │
//   +24  ├──────────────────┤
//        │ r13              │
//   +16  ├──────────────────┤
//        │ r14              │
//    +8  ├──────────────────┤
//        │ r15              │
//    +4  ├────────┬─────────┤
//        │ x87 CW │ padding │
//    +0  ├────────┴─────────┤
//        │ MXCSR            │ ◄── saved sp (16-byte aligned)
//        └──────────────────┘
//          low addresses
//
// What is saved, and why (psABI 3.2.1, "Registers and the Stack Frame", and
// its register-usage table): rbx, rbp, r12-r15 are callee-saved; rsp is the
// context itself. The control bits of MXCSR and the x87 control word are
// callee-saved too. xmm0-15 and the status bits are caller-saved: the C++
// caller of mnp_ctx_jump has already spilled whatever it needs.
//
// Why save the FP control state at all: marl skips it because a marl fiber
// always resumes on the thread that suspended it, so the thread's rounding
// mode is the fiber's. Here a G may park on one M and resume on another, so a
// rounding mode set by a G (fesetround) must travel with the G, and must not
// leak into the g0 or the next G of the M it leaves.
//
// Restoring is conditional: almost every switch finds the same control
// state on both sides, and reloading it was the most fragile cost measured
// here. In bench/context_bench.cpp's ping-pong (a Xeon under a hypervisor,
// 2 cores) an unconditional ldmxcsr/fldcw made BM_Switch_mnp 52 ns per switch
// instead of 2.3 ns, although Boost's fcontext reloads every time and costs
// 3.4 ns there: the penalty depends on code layout and stack addresses, so
// the reload stays off the common path. Comparing first costs about 0.5 ns;
// when the sides do differ the reload adds about 1.6 ns
// (BM_Switch_mnp_fp_differs: 3.9 ns). Only MXCSR's control bits are
// compared: its low six bits are sticky exception flags that ordinary
// arithmetic sets (inexact), and the psABI makes them caller-saved anyway.
//
// How the switch ends: `mnp_ctx_jump` loads the return address into a
// scratch register and jumps to it; `mnp_ctx_jump_alt` ends with a plain
// `ret`. Medians per switch on the same machine: 2.3 ns (jmp) vs 10.3 ns
// (ret) when ctx_switch tail-calls the switch, as it does in the runtime;
// 11.0 vs 17.0 ns when each side switches from its own call chain (the
// _deep benchmarks). A `ret` is predicted from the return-stack buffer,
// which remembers the call made on *this* stack and so is wrong after every
// switch; the indirect jmp is predicted from its own history, which learns
// the alternation. Hence the jmp. Its costs: the `call` that entered the
// switch is never matched by a `ret`, so the return-stack buffer is one
// entry off afterwards (the numbers above include that), and under Intel CET
// indirect-branch tracking a jmp to a return address would fault. This file
// claims no CET support (no .note.gnu.property), so the linker marks the
// program as not CET-ready and the kernel does not enforce it; shadow stacks
// could not follow a stack switch anyway.

#include "frame.h"

// Mach-O prefixes C symbols with an underscore and has no .type/.size. Note
// for edits: in a .macro body, Apple's assembler reads `$0`..`$9` as macro
// arguments, so immediates there are written `$(...)`.
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
  .type \name, @function
#endif
  .p2align 4
\name:
.endm

.macro MNP_FUNC_END name
#if !defined(__APPLE__)
  .size \name, . - \name
#endif
.endm

// The body shared by both variants: everything but the final branch. On
// exit %rsp points at the other side's return-address slot.
.macro MNP_SWITCH_BODY
  .cfi_startproc
  // The `call` pushed the return address: make room for the rest of the frame.
  leaq    -MNP_X64_FRAME_BODY(%rsp), %rsp
  .cfi_adjust_cfa_offset MNP_X64_FRAME_BODY
  // Callee-saved integer registers, each into its slot.
  movq    %rbp, MNP_X64_OFF_RBP(%rsp)    // frame pointer (callee-saved even when unused)
  .cfi_rel_offset %rbp, MNP_X64_OFF_RBP
  movq    %rbx, MNP_X64_OFF_RBX(%rsp)
  .cfi_rel_offset %rbx, MNP_X64_OFF_RBX
  movq    %r12, MNP_X64_OFF_R12(%rsp)
  .cfi_rel_offset %r12, MNP_X64_OFF_R12
  movq    %r13, MNP_X64_OFF_R13(%rsp)
  .cfi_rel_offset %r13, MNP_X64_OFF_R13
  movq    %r14, MNP_X64_OFF_R14(%rsp)
  .cfi_rel_offset %r14, MNP_X64_OFF_R14
  movq    %r15, MNP_X64_OFF_R15(%rsp)
  .cfi_rel_offset %r15, MNP_X64_OFF_R15
  // FP control state: MXCSR (SSE rounding, FTZ/DAZ, exception masks) and the
  // x87 control word (x87 rounding and precision, long double arithmetic).
  stmxcsr MNP_X64_OFF_MXCSR(%rsp)
  fnstcw  MNP_X64_OFF_FPUCW(%rsp)
  // Keep our own values in scratch registers for the comparison below.
  movl    MNP_X64_OFF_MXCSR(%rsp), %eax
  movzwl  MNP_X64_OFF_FPUCW(%rsp), %edx

  // The switch proper: publish our sp, adopt the other side's.
  movq    %rsp, (%rdi)                   // *save_sp = our frame
  movq    %rsi, %rsp                     // from here on we run on the other stack

  // Restore the other side's FP control state if it differs from ours.
  xorl    MNP_X64_OFF_MXCSR(%rsp), %eax
  andl    $(MNP_X64_MXCSR_CONTROL), %eax // ignore the six sticky exception flags
  jnz     1f
  cmpw    MNP_X64_OFF_FPUCW(%rsp), %dx
  jne     1f
2:
  // Callee-saved integer registers of the other side.
  movq    MNP_X64_OFF_R15(%rsp), %r15
  movq    MNP_X64_OFF_R14(%rsp), %r14
  movq    MNP_X64_OFF_R13(%rsp), %r13
  movq    MNP_X64_OFF_R12(%rsp), %r12
  movq    MNP_X64_OFF_RBX(%rsp), %rbx
  movq    MNP_X64_OFF_RBP(%rsp), %rbp
.endm

// The slow path of the FP restore, out of line so the common path falls
// straight through; it returns to label 2 of the body above.
.macro MNP_SWITCH_FP_RESTORE
1:
  ldmxcsr MNP_X64_OFF_MXCSR(%rsp)        // the other side's SSE control and flags
  fldcw   MNP_X64_OFF_FPUCW(%rsp)        // the other side's x87 control word
  jmp     2b
  .cfi_endproc
.endm

// mnp_ctx_jump: the switch the runtime uses. Ends with pop-and-jmp.
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_jump), default
  MNP_SWITCH_BODY
  movq    MNP_X64_OFF_RIP(%rsp), %rcx    // the other side's return address
  leaq    MNP_X64_FRAME_SIZE(%rsp), %rsp // pop the whole frame, return address included
  .cfi_adjust_cfa_offset -MNP_X64_FRAME_SIZE
  jmp     *%rcx                          // continue there (rcx is caller-saved: free)
  .cfi_adjust_cfa_offset MNP_X64_FRAME_SIZE
  MNP_SWITCH_FP_RESTORE
MNP_FUNC_END MNP_SYM(mnp_ctx_jump)

// mnp_ctx_jump_alt: the same switch ending with `ret`, kept for the
// benchmark's comparison (bench/context_bench.cpp). Not used by the runtime.
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_jump_alt), default
  MNP_SWITCH_BODY
  leaq    MNP_X64_FRAME_BODY(%rsp), %rsp // pop all but the return address
  .cfi_adjust_cfa_offset -MNP_X64_FRAME_BODY
  ret                                    // pop the return address and continue there
  .cfi_adjust_cfa_offset MNP_X64_FRAME_BODY
  MNP_SWITCH_FP_RESTORE
MNP_FUNC_END MNP_SYM(mnp_ctx_jump_alt)

// mnp_ctx_trampoline: where a new context's first switch lands (ctx_make
// stores its address in the return-address slot). The first switch has
// restored rbx = the function, r12 and r13 = its two arguments, rbp = 0, and
// left %rsp 16-byte aligned, so the `call` below enters the function exactly
// as the psABI requires (rsp + 8 aligned to 16 at its first instruction).
// The function must never return; if it does, ud2 raises SIGILL at once
// rather than running into whatever lies beyond.
MNP_FUNC_BEGIN MNP_SYM(mnp_ctx_trampoline), hidden
  .cfi_startproc
  .cfi_undefined %rip                    // the outermost frame: unwinders and gdb stop here
  movq    %r12, %rdi                     // first argument
  movq    %r13, %rsi                     // second argument
  call    *%rbx
  ud2                                    // entry returned: a bug in the caller of ctx_make
  .cfi_endproc
MNP_FUNC_END MNP_SYM(mnp_ctx_trampoline)

#if !defined(__APPLE__)
// No executable stack wanted: without this note the linker assumes this
// object needs one and makes every thread stack of the program executable.
.section .note.GNU-stack, "", @progbits
#endif
