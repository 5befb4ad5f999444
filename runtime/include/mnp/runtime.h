// mnp/runtime.h — the program's view of the runtime: run, go, yield, sleep.
//
//   int main() {
//     return mnp::run([] {
//       mnp::go([] { mnp::sleep(std::chrono::milliseconds(10)); });
//     });
//   }
//
// mnp::run starts the runtime (Ps, Ms, the poller), runs main_fn as the first
// G and returns when main_fn returns, as a Go program exits when main returns.
// Gs still alive at that point are abandoned (counted by num_goroutines()).
// run may be called again afterwards (the tests do, once per case).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace mnp {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;
// Deadlines are points on the monotonic clock. Deadline{} means "none".
using Deadline = Clock::time_point;

struct Options {
  int procs = 0;                  // number of Ps; 0: $MNP_PROCS, else the number of CPUs
  const char* backend = nullptr;  // nullptr: $MNP_BACKEND, else the platform's default
  size_t stack_size = 0;          // per-G stack reservation; 0: $MNP_STACK_SIZE or 256 KiB
};

// Runs main_fn as the first G. Returns 0 when it returns, or 2 after printing
// one line that says why the runtime could not start (e.g. the backend is
// unavailable: "mnp: backend uring unavailable: io_uring_setup: Operation not
// permitted (kernel.io_uring_disabled=2)").
int run(void (*main_fn)(void*), void* arg, const Options& opts = {});

template <class F>
int run(F&& main_fn, const Options& opts = {}) {
  using Fn = std::decay_t<F>;
  Fn fn(std::forward<F>(main_fn));
  return run([](void* p) { (*static_cast<Fn*>(p))(); }, &fn, opts);
}

// Names the backend the next run would use and whether this machine can run
// it: returns "" when it can, else the reason in one line.
std::string backend_unavailable_reason(const char* backend);
// The backend of the running runtime ("epoll", "kqueue", "uring-poll", "uring").
const char* backend_name();
// All backends this build knows, available or not (for test matrices).
const char* const* backend_names();  // nullptr-terminated
int procs();                         // number of Ps of the running runtime

namespace detail {
// A spawn request: the runtime allocates a G with its stack, and calls
// construct(closure_mem, src) to move the closure onto the top of the new
// G's stack (no heap allocation); invoke runs it there; destroy ends it.
struct SpawnFn {
  size_t size;
  size_t align;
  void (*construct)(void* dst, void* src);
  void (*invoke)(void* closure);
  void (*destroy)(void* closure);
  const std::type_info* type;  // the closure's type, named by the G dump
};
void spawn(const SpawnFn& fn, void* src);

template <class Fn>
struct SpawnOps {
  static void construct(void* dst, void* src) { ::new (dst) Fn(std::move(*static_cast<Fn*>(src))); }
  static void invoke(void* c) { (*static_cast<Fn*>(c))(); }
  static void destroy(void* c) { static_cast<Fn*>(c)->~Fn(); }
  static constexpr SpawnFn ops{sizeof(Fn), alignof(Fn), construct, invoke, destroy,
                               &typeid(Fn)};
};
}  // namespace detail

// Starts a new G running fn. The closure lives on the new G's stack.
template <class F>
void go(F&& fn) {
  using Fn = std::decay_t<F>;
  Fn local(std::forward<F>(fn));
  detail::spawn(detail::SpawnOps<Fn>::ops, &local);
}

// Gives up the processor: the G goes to the back of the global run queue
// (Go's runtime.Gosched).
void yield();

// Parks the G for at least d.
void sleep(Duration d);
template <class Rep, class Period>
void sleep(std::chrono::duration<Rep, Period> d) {
  sleep(std::chrono::duration_cast<Duration>(d));
}

// Runs fn, which may block its OS thread (a libc call, DNS, a disk read),
// without stopping other Gs (Go's entersyscall / exitsyscall).
void blocking(void (*fn)(void*), void* arg);
template <class F>
void blocking(F&& fn) {
  blocking([](void* p) { (*static_cast<std::remove_reference_t<F>*>(p))(); }, &fn);
}

uint64_t goid();           // the running G's id (main is 1); 0 outside a G
int64_t num_goroutines();  // live Gs, the caller included
int64_t nanotime();        // monotonic clock, ns

}  // namespace mnp
