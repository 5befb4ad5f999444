// runtime/sys/fault — fault injection for the syscall wrappers (sys.h), for tests.
//
// A FaultPlan says which syscalls fail, how and how often:
//
//   read:eintr:1/3            one read(2) in three returns EINTR
//   write:short:1/2           every other send(2) is cut short (1..n-1 bytes)
//   accept:emfile:1/10        one accept4(2) in ten returns EMFILE
//   read:reset:1/1:after=5:max=1   the sixth read returns ECONNRESET, once
//   read:short:1/4:over=256   one read in four is cut, when more than 256
//                             bytes are queued (fields: after=, max=, fd=,
//                             over=)
//   seed=42                   decide by a seeded hash of the call number
//                             instead of the call number itself
//
// From code (tests): build a plan, install it for a scope with ScopedFaults.
// From the environment: MNP_FAULTS="read:eintr:1/3,write:short:1/2" is parsed
// once, at the first mnp::run (a bad spec makes mnp::run return 2), and a
// summary of what fired is printed to stderr at exit.
//
// What each fault does (the real syscall is not made unless said):
//   eintr    -1/EINTR. close: the fd is closed first, as Linux does.
//   eagain   -1/EAGAIN, and the pollDesc's slot for that direction is marked
//            ready: a spurious wake-up followed by EAGAIN, which the kernel
//            can produce; the runtime must park, wake and retry, not fail.
//            (A bare EAGAIN with data queued and no edge to come is
//            something the kernel never does: modelling it would only hang.)
//   short    the real syscall with a smaller count (1..n-1 bytes).
//   reset    -1/ECONNRESET;  pipe -1/EPIPE;  refused -1/ECONNREFUSED.
//   emfile   -1/EMFILE; nfile -1/ENFILE (the connection stays queued).
//   aborted  -1/ECONNABORTED (accept: the runtime takes the next one).
//
//   op       faults
//   read     eintr eagain short reset
//   write    eintr eagain short reset pipe      (write(2) and send(2))
//   accept   eintr eagain emfile nfile aborted
//   connect  eintr refused
//   close    eintr
//
// Decisions are deterministic: each rule counts every call it matches (op
// and optional fd), whatever the other rules do; call c (after the first
// `after`) is its turn when (c mod den) < num, or hash(seed, rule, c) mod den
// < num with a seed, at most `max` times. When several rules' turns fall on
// one call, the first listed fires and the others let that turn go. With
// several Ms the order of calls across threads varies, so which call fires
// can too; the proportions do not.
//
// Cost when off: one relaxed load of a global pointer and a branch predicted
// not taken, in each wrapper. -DMNP_NO_FAULT_INJECTION removes even that.
//
// Only the readiness backends (epoll, uring-poll, kqueue) make their I/O
// through these wrappers; the io_uring completion backend ("uring") does its
// reads, writes, accepts and connects in the kernel, so only close applies.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mnp::rt::sys {

enum class FaultOp : uint8_t { read, write, accept, connect, close, count_ };
enum class FaultKind : uint8_t {
  eintr,
  eagain,
  short_io,
  reset,
  pipe,
  emfile,
  nfile,
  aborted,
  refused,
  count_
};

const char* fault_op_name(FaultOp op);
const char* fault_kind_name(FaultKind k);

struct FaultRule {
  FaultOp op = FaultOp::read;
  FaultKind kind = FaultKind::eintr;
  uint32_t num = 1, den = 1;  // fires on num of every den matching calls
  uint64_t after = 0;         // the first `after` matching calls pass
  uint64_t max = UINT64_MAX;  // fires at most this many times
  int fd = -1;                // only this fd; -1: any
  // short only: cut only when more than `over` bytes are at stake (a read:
  // queued in the socket, FIONREAD; a write: asked for). A kernel splits
  // bulk transfers, not a 5-byte message sent in one write: over=256 lets a
  // test that reads a small message whole keep its assumption.
  uint64_t over = 0;
};

class FaultPlan {
 public:
  static constexpr int kMaxRules = 16;

  FaultPlan() = default;
  FaultPlan(const FaultPlan&) = delete;
  FaultPlan& operator=(const FaultPlan&) = delete;

  // Adds a rule; false (and *why) if it is not valid: a fault the op cannot
  // have, 0 < num <= den violated, a fault the runtime retries (eintr,
  // eagain, aborted; not close's eintr)
  // firing on every call with no max (the runtime would retry for ever), or
  // more than kMaxRules rules.
  bool add(const FaultRule& r, std::string* why = nullptr);
  // Chaining form for tests; aborts on an invalid rule (a test bug).
  FaultPlan& on(FaultOp op, FaultKind kind, uint32_t num, uint32_t den, uint64_t after = 0,
                uint64_t max = UINT64_MAX, int fd = -1);
  // Parses MNP_FAULTS syntax (rules separated by ',', fields by ':'); adds to
  // this plan. False and *why on a syntax or validity error.
  bool parse(std::string_view spec, std::string* why);

  void set_seed(uint64_t s) { seed_ = s; }
  uint64_t seed() const { return seed_; }
  int size() const { return n_; }
  const FaultRule& rule(int i) const { return rules_[i]; }

  // What happened so far: matching calls seen and faults fired, per rule and
  // in total (per op, or every op with FaultOp::count_).
  uint64_t calls(int i) const { return state_[i].calls.load(std::memory_order_relaxed); }
  uint64_t fired(int i) const { return state_[i].fired.load(std::memory_order_relaxed); }
  uint64_t fired_total(FaultOp op = FaultOp::count_) const;
  // "read:eintr:1/3 fired 12 of 37 calls, ..." (one line).
  std::string report() const;
  // The spec of one rule, in MNP_FAULTS syntax.
  static std::string rule_text(const FaultRule& r);

 private:
  friend bool fault_hit(FaultOp op, int fd, size_t* n) noexcept;
  struct State {
    std::atomic<uint64_t> calls{0};
    std::atomic<uint64_t> fired{0};
  };
  FaultRule rules_[kMaxRules];
  mutable State state_[kMaxRules];
  int n_ = 0;
  uint64_t seed_ = 0;
};

// The plan in force, or nullptr (faults off). Written rarely (tests, the
// first mnp::run), read by every wrapper.
extern std::atomic<const FaultPlan*> g_fault_plan;

// Installs p (nullptr: off) and returns the previous plan. The plan must
// outlive every syscall that may still see it: install and remove plans
// while no other thread is making the runtime's syscalls (outside mnp::run,
// or from a test's main G while its other Gs are idle).
const FaultPlan* fault_set(const FaultPlan* p) noexcept;

inline bool fault_on() noexcept {
#ifdef MNP_NO_FAULT_INJECTION
  return false;
#else
  return __builtin_expect(g_fault_plan.load(std::memory_order_relaxed) != nullptr, 0);
#endif
}

// The wrappers' hook, called only when fault_on(): true if this call fails
// (errno is set; the caller returns -1 without the syscall); false if it goes
// ahead, with *n possibly made smaller (a short read or write). Out of line
// and cold, so the wrappers stay small.
[[gnu::cold, gnu::noinline]] bool fault_hit(FaultOp op, int fd, size_t* n) noexcept;

// MNP_FAULTS: parsed and installed once per process, at the first call
// (mnp::run calls it), unless a plan is already installed. False (after a
// message on stderr) if the variable is set but invalid.
bool fault_init_from_env() noexcept;

// Installs a plan for a scope and restores the previous one at its end.
class ScopedFaults {
 public:
  explicit ScopedFaults(const FaultPlan& p) : prev_(fault_set(&p)) {}
  ScopedFaults(const ScopedFaults&) = delete;
  ScopedFaults& operator=(const ScopedFaults&) = delete;
  ~ScopedFaults() { fault_set(prev_); }

 private:
  const FaultPlan* prev_;
};

}  // namespace mnp::rt::sys
