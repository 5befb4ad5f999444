// mnp/stats.h — what the runtime counts (DESIGN.md §8).
//
// Counters are per M (each M increments its own, without a lock prefix) and
// summed on read, so reading is cheap but not a snapshot across counters.
// They are cumulative for the process: take a difference around what you
// measure.
#pragma once

#include <cstdint>

namespace mnp {

enum class Stat : int {
  // syscalls, by kind
  sys_read,
  sys_write,
  sys_accept,
  sys_connect,
  sys_close,
  sys_shutdown,
  sys_socket,
  sys_sockopt,      // setsockopt / getsockopt / getpeername (multishot accept)
  sys_poll_wait,    // epoll_wait / kevent waits / io_uring_enter that wait (GETEVENTS)
  sys_poll_ctl,     // epoll_ctl / kevent changes
  sys_uring_enter,  // io_uring_enter that do not wait (submit, flush overflow): one count each,
                    // so sys_poll_wait + sys_uring_enter = every io_uring_enter
  sys_wake,         // the poller's wake-up write (eventfd, EVFILT_USER, ...)
  sys_futex,        // an idle M going to sleep (only when it must wait), or being woken
  eagain,           // syscalls that returned EAGAIN
  // the poller
  polls,         // calls of netpoll (blocking or not)
  poll_events,   // readiness events or completions delivered
  uring_nobufs,  // uring multishot recv: the provided-buffer ring ran dry (-ENOBUFS)
  // the scheduler
  ctx_switches,
  spawns,
  parks,
  parks_io,
  parks_chan,
  parks_sync,
  parks_sleep,
  wakeups,
  steals,
  count_  // number of counters
};

const char* stat_name(Stat s);
uint64_t stat(Stat s);
// Sum of all sys_* counters: the syscalls the runtime makes on its Ms.
// Not counted (see bench/shootout.py's strace pass for their share): futex
// calls of the scheduler's own locks (std::mutex) under contention, the
// sysmon thread's timed sleeps, and the other threads a program starts.
uint64_t stat_syscalls();

}  // namespace mnp
