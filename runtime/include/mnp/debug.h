// mnp/debug.h — what a learner (or someone debugging a frozen server) can see.
//
// Environment (read at mnp::run), comma-separated like Go's GODEBUG:
//   MNP_DEBUG=schedtrace=1000   one line per second: Ps, Ms, queues, Gs, syscalls
//   MNP_DEBUG=netpoll=500       the poller's live table every 500 ms
//   MNP_DEBUG=lockpark=100      report a G parked > 100 ms while holding a
//                               Mutex (default 100; 0 turns it off)
//   MNP_DEBUG=hog=10            report a G that ran > 10 ms without parking
//                               or yielding (default 10; 0 turns it off)
//   MNP_DEBUG=stacks=1          fill stacks to measure their high-water mark;
//                               a per-G summary at exit
//   MNP_TRACE=out.json          Chrome trace-event timeline (Perfetto)
// Signals: SIGQUIT prints every G (the process goes on; MNP_DEBUG=quitexit=1
// exits as Go does); SIGUSR1 prints the poller's table.
#pragma once

#include <cstdio>
#include <string>

namespace mnp::debug {

// Every G: id, state, wait reason and for how long, start function, mutexes
// held, stack use, and a backtrace of a parked G's frames.
std::string goroutines();
// The poller's live table: one row per open pollDesc.
std::string netpoll_table();
// One schedtrace line (Go's "SCHED 1004ms: gomaxprocs=4 ...").
std::string schedtrace_line();

// Writes the trace collected so far (MNP_TRACE) to its file now.
void flush_trace();

}  // namespace mnp::debug
