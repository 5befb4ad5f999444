#include "trace/counters.h"

namespace mnp::rt {

namespace {
std::atomic<CounterBlock*> all_blocks{nullptr};
}

CounterBlock* counter_block_slow() {
  auto* b = new CounterBlock;  // never freed: counts outlive their thread
  b->next = all_blocks.load(std::memory_order_relaxed);
  while (!all_blocks.compare_exchange_weak(b->next, b, std::memory_order_release,
                                           std::memory_order_relaxed)) {
  }
  tls_counters = b;
  return b;
}

}  // namespace mnp::rt

namespace mnp {

const char* stat_name(Stat s) {
  static const char* const names[] = {
      "sys_read",        "sys_write",    "sys_accept",   "sys_connect",   "sys_close",
      "sys_shutdown",    "sys_socket",   "sys_sockopt",  "sys_poll_wait", "sys_poll_ctl",
      "sys_uring_enter", "sys_wake",     "sys_futex",    "eagain",        "polls",
      "poll_events",     "uring_nobufs", "ctx_switches", "spawns",        "parks",
      "parks_io",        "parks_chan",   "parks_sync",   "parks_sleep",   "wakeups",
      "steals",
  };
  static_assert(sizeof(names) / sizeof(names[0]) == static_cast<int>(Stat::count_));
  return names[static_cast<int>(s)];
}

uint64_t stat(Stat s) {
  uint64_t sum = 0;
  for (auto* b = rt::all_blocks.load(std::memory_order_acquire); b; b = b->next)
    sum += b->v[static_cast<int>(s)].load(std::memory_order_relaxed);
  return sum;
}

uint64_t stat_syscalls() {
  uint64_t sum = 0;
  for (int i = static_cast<int>(Stat::sys_read); i <= static_cast<int>(Stat::sys_futex); i++)
    sum += stat(static_cast<Stat>(i));
  return sum;
}

}  // namespace mnp
