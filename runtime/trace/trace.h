// runtime/trace/trace — the Chrome trace-event timeline (MNP_TRACE=out.json).
//
// Each thread records into its own ring of fixed-size records (no lock, no
// allocation on the hot path; when the ring is full the oldest records are
// overwritten and counted as dropped). At exit (end of mnp::run), on
// debug::flush_trace(), and on SIGUSR2 (via sysmon) the rings are written as
// trace-event JSON: one track per M, a span per G run, instants for park and
// ready, and a span per poller call with its event count. Disabled, each
// hook costs one load and a predicted branch.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace mnp::rt {

enum class TraceEv : uint8_t {
  g_run,  // a G ran from `ts` for `dur` ns; `reason`: why it stopped
  ready,  // `g` was made runnable (instant)
  poll,   // a poller call from `ts` for `dur`; `arg`: Gs it readied; fd = blocking?
  spawn,  // `g` was created (instant)
  steal,  // `arg` Gs stolen (instant)
};

// Why a G's run ended (the M's action), for the g_run span.
enum class TraceStop : uint8_t { park, yield, exit, blocking };

struct TraceRec {
  int64_t ts;
  int64_t dur;
  uint64_t g;
  uint32_t arg;
  int32_t fd;
  TraceEv ev;
  uint8_t reason;  // TraceStop for g_run; the WaitReason for a park
  uint8_t wait;    // the WaitReason when reason == park
};

extern std::atomic<bool> trace_on;

void trace_record(const TraceRec& r);
inline bool tracing() {
  return trace_on.load(std::memory_order_relaxed);
}

// Called by mnp::run: start (path from MNP_TRACE) and stop + write.
void trace_start(const char* path);
void trace_stop();
void trace_flush();
const std::string& trace_path_for_debug();  // MNP_TRACE's file (mnp::debug::flush_trace)

}  // namespace mnp::rt
