// runtime/trace/counters — per-M counters behind mnp/stats.h.
//
// Each thread owns one block and is its only writer, so an increment is a
// relaxed load and store (no lock prefix on the hot path). Readers sum all
// blocks with relaxed loads. Blocks are never freed: a thread's counts
// outlive it, and the totals stay cumulative for the process.
#pragma once

#include <atomic>
#include <cstdint>

#include "mnp/stats.h"

namespace mnp::rt {

struct alignas(64) CounterBlock {
  std::atomic<uint64_t> v[static_cast<int>(Stat::count_)] = {};
  CounterBlock* next = nullptr;
};

CounterBlock* counter_block_slow();
inline thread_local CounterBlock* tls_counters = nullptr;

inline void stat_add(Stat s, uint64_t n = 1) {
  CounterBlock* b = tls_counters;
  if (__builtin_expect(b == nullptr, 0)) b = counter_block_slow();
  auto& c = b->v[static_cast<int>(s)];
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace mnp::rt
