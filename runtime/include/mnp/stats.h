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
  sys_sockopt,
  sys_poll_wait,    // epoll_wait / kevent waits / io_uring_enter that wait
  sys_poll_ctl,     // epoll_ctl / kevent changes
  sys_uring_enter,  // every io_uring_enter (submit or wait)
  sys_wake,         // the poller's wake-up write (eventfd, EVFILT_USER, ...)
  sys_futex,        // an idle M sleeping or being woken
  eagain,           // syscalls that returned EAGAIN
  // the poller
  polls,        // calls of netpoll (blocking or not)
  poll_events,  // readiness events or completions delivered
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
// Sum of all sys_* counters.
uint64_t stat_syscalls();

}  // namespace mnp
