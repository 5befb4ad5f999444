// runtime/context/frame.h — the layout of a saved context, defined once.
//
// A coroutine that is not running keeps its callee-saved registers on its own
// stack, in a "switch frame" that mnp_ctx_jump pushes; Context::sp points at
// the frame's lowest byte. The assembly (switch_<arch>_<abi>.S) addresses the
// slots with the MNP_*_OFF_* numbers below; ctx_make (context.cpp) builds a
// first frame through the structs at the bottom of this file. Each offset is
// static_assert'ed against offsetof, so a slip in either place breaks the
// build instead of a coroutine at run time (marl's osfiber_asm_x64.h idea).
//
// This header is included by the assembler (__ASSEMBLER__ defined, plain
// #defines only) and by C++.
#pragma once

// ---------------------------------------------------------------------------
// x86-64, System V psABI. Offsets from the saved sp, which is 16-byte aligned.
//
//   sp + 56  return address   where the switched-to side continues
//   sp + 48  rbp
//   sp + 40  rbx
//   sp + 32  r12
//   sp + 24  r13
//   sp + 16  r14
//   sp +  8  r15
//   sp +  6  (2 bytes padding)
//   sp +  4  x87 control word (16 bits)
//   sp +  0  MXCSR (32 bits)
#define MNP_X64_OFF_MXCSR 0
#define MNP_X64_OFF_FPUCW 4
#define MNP_X64_OFF_R15 8
#define MNP_X64_OFF_R14 16
#define MNP_X64_OFF_R13 24
#define MNP_X64_OFF_R12 32
#define MNP_X64_OFF_RBX 40
#define MNP_X64_OFF_RBP 48
#define MNP_X64_OFF_RIP 56
#define MNP_X64_FRAME_SIZE 64
// The frame below the return address: what mnp_ctx_jump reserves after the
// `call` that entered it has pushed the return address.
#define MNP_X64_FRAME_BODY 56

// The values a new coroutine starts with: those the psABI gives a new process
// (3.4.1, "Initial Stack and Register State").
// MXCSR 0x1F80: all exceptions masked, round to nearest, no flush-to-zero.
// x87 CW 0x037F: all exceptions masked, 64-bit precision, round to nearest.
#define MNP_X64_MXCSR_INIT 0x1F80
#define MNP_X64_FPUCW_INIT 0x037F
// MXCSR's control bits; the low six are sticky exception flags (status).
#define MNP_X64_MXCSR_CONTROL 0xFFFFFFC0

// ---------------------------------------------------------------------------
// AArch64, AAPCS64. Offsets from the saved sp (sp is always 16-byte aligned).
//
//   sp + 160  FPCR (64-bit slot; the register is 32 bits wide)
//   sp + 144  d14, d15
//   sp + 128  d12, d13
//   sp + 112  d10, d11
//   sp +  96  d8,  d9     low 64 bits of v8-v15: all AAPCS64 makes callee-saved
//   sp +  80  x29 (fp), x30 (lr)   lr: where the switched-to side continues
//   sp +  64  x27, x28
//   sp +  48  x25, x26
//   sp +  32  x23, x24
//   sp +  16  x21, x22
//   sp +   0  x19, x20
#define MNP_A64_OFF_X19 0
#define MNP_A64_OFF_X21 16
#define MNP_A64_OFF_X23 32
#define MNP_A64_OFF_X25 48
#define MNP_A64_OFF_X27 64
#define MNP_A64_OFF_X29 80
#define MNP_A64_OFF_X30 88
#define MNP_A64_OFF_D8 96
#define MNP_A64_OFF_D10 112
#define MNP_A64_OFF_D12 128
#define MNP_A64_OFF_D14 144
#define MNP_A64_OFF_FPCR 160
#define MNP_A64_FRAME_SIZE 176  // 168 rounded up to keep sp 16-byte aligned

// FPCR of a new coroutine: 0 is round to nearest, no traps, no flush-to-zero,
// IEEE NaN handling: what Linux and macOS give a new process.
#define MNP_A64_FPCR_INIT 0

#ifndef __ASSEMBLER__

#include <cstddef>
#include <cstdint>

namespace mnp::rt::frame {

// The x86-64 switch frame as C++ sees it (ctx_make fills one in).
struct X64 {
  uint32_t mxcsr;
  uint16_t fpucw;
  uint16_t pad;
  uint64_t r15, r14, r13, r12, rbx, rbp;
  uint64_t rip;
};
static_assert(offsetof(X64, mxcsr) == MNP_X64_OFF_MXCSR);
static_assert(offsetof(X64, fpucw) == MNP_X64_OFF_FPUCW);
static_assert(offsetof(X64, r15) == MNP_X64_OFF_R15);
static_assert(offsetof(X64, r14) == MNP_X64_OFF_R14);
static_assert(offsetof(X64, r13) == MNP_X64_OFF_R13);
static_assert(offsetof(X64, r12) == MNP_X64_OFF_R12);
static_assert(offsetof(X64, rbx) == MNP_X64_OFF_RBX);
static_assert(offsetof(X64, rbp) == MNP_X64_OFF_RBP);
static_assert(offsetof(X64, rip) == MNP_X64_OFF_RIP);
static_assert(sizeof(X64) == MNP_X64_FRAME_SIZE);
static_assert(MNP_X64_FRAME_BODY + 8 == MNP_X64_FRAME_SIZE);
static_assert(MNP_X64_FRAME_SIZE % 16 == 0);

// The AArch64 switch frame as C++ sees it.
struct A64 {
  uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
  uint64_t x29, x30;
  uint64_t d8, d9, d10, d11, d12, d13, d14, d15;  // bit patterns of the doubles
  uint64_t fpcr;
  uint64_t pad;
};
static_assert(offsetof(A64, x19) == MNP_A64_OFF_X19);
static_assert(offsetof(A64, x21) == MNP_A64_OFF_X21);
static_assert(offsetof(A64, x23) == MNP_A64_OFF_X23);
static_assert(offsetof(A64, x25) == MNP_A64_OFF_X25);
static_assert(offsetof(A64, x27) == MNP_A64_OFF_X27);
static_assert(offsetof(A64, x29) == MNP_A64_OFF_X29);
static_assert(offsetof(A64, x30) == MNP_A64_OFF_X30);
static_assert(offsetof(A64, d8) == MNP_A64_OFF_D8);
static_assert(offsetof(A64, d10) == MNP_A64_OFF_D10);
static_assert(offsetof(A64, d12) == MNP_A64_OFF_D12);
static_assert(offsetof(A64, d14) == MNP_A64_OFF_D14);
static_assert(offsetof(A64, fpcr) == MNP_A64_OFF_FPCR);
static_assert(sizeof(A64) == MNP_A64_FRAME_SIZE);
static_assert(MNP_A64_FRAME_SIZE % 16 == 0);

}  // namespace mnp::rt::frame

#endif  // __ASSEMBLER__
