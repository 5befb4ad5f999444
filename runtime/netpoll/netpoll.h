// runtime/netpoll — the pollDesc: who waits on which fd (Go's runtime/netpoll.go).
//
// Every fd the runtime serves has one PollDesc, registered with the poller
// once (edge-triggered read + write + hang-up) and deregistered at close.
// A PollDesc has two waiter slots, rg (read) and wg (write). Each slot holds:
//
//     pdNil    nobody waits, no readiness remembered
//     pdReady  readiness arrived while nobody waited: the next wait returns
//     pdWait   a G is about to park here (set before the park commits)
//     G*       that G is parked here
//
//                 netpollblock                   commit (on g0)
//       ┌──────► pdNil ─────────────► pdWait ──────────────────► G*
//       │          ▲ │                  │                          │
//       │ consume  │ │ netpollready     │ netpollready:            │ netpollunblock:
//       │ (wait    │ ▼ (ioready)        │ commit fails, the G      │ G made runnable,
//       │ returns) pdReady ◄────────────┘ never sleeps             │ slot → pdNil
//       └──────────┘         (ioready)                            (or pdReady if ioready)
//
// netpollblock(pd, mode): pdReady → pdNil and return at once; pdNil →
// pdWait, then park with netpollblockcommit, which moves pdWait → G only if
// nobody touched the slot meanwhile. netpollunblock(pd, mode, ioready): takes
// the G out of the slot (or the pdWait), leaving pdReady if this was
// readiness, pdNil if it was a timeout or close. Waits re-check the pollDesc's
// error state (closing, expired deadline) after every wake-up.
//
// Deadlines: rd/wd are 0 (none), -1 (expired) or an absolute nanotime(). A
// per-direction Timer fires netpolldeadline; the timer carries rseq/wseq, and
// any change of the deadline or a close bumps them, so a timer that fires
// late for an old deadline does nothing.
//
// Stale events: PollDescs are reused, never freed. `fdseq` grows at every
// close; the poller tags each registration with it and drops events whose
// tag no longer matches (the fd number may already be another socket's).
//
// Locks: `lock` guards rd, wd, rseq, wseq, the timers and `closing`. The
// slots are atomics, changed by CAS without the lock. `info` mirrors the
// error state for lock-free checks.
#pragma once

#include <atomic>
#include <cstdint>

#include "mnp/error.h"
#include "mnp/sync.h"
#include "sched/lock.h"
#include "sched/sched.h"
#include "time/timer.h"

namespace mnp::rt {

constexpr uintptr_t pdNil = 0;
constexpr uintptr_t pdReady = 1;
constexpr uintptr_t pdWait = 2;

// pd->info bits (Go's pollInfo).
constexpr uint32_t pollClosing = 1u << 0;
constexpr uint32_t pollEventErr = 1u << 1;
constexpr uint32_t pollExpiredReadDeadline = 1u << 2;
constexpr uint32_t pollExpiredWriteDeadline = 1u << 3;

// What a wait ended with (Go's pollNoError, pollErrClosing, ...).
enum class PollErr : uint8_t { none, closing, timeout, not_pollable };

// Layout: what every read and write touches (the fdMutex, the slots, the
// error bits, the fd, the byte counters) shares the first cache line; the
// deadline machinery and the semaphores come after (bench profile: three
// cache lines per read before).
struct alignas(64) PollDesc {
  // --- the hot line ---
  std::atomic<uint64_t> fdmu{0};  // the FD's fdMutex (fd.cpp): closed bit, locks, refs
  std::atomic<uintptr_t> rg{pdNil};
  std::atomic<uintptr_t> wg{pdNil};
  std::atomic<uint32_t> info{0};
  std::atomic<uint32_t> fdseq{0};  // bumped at close: stale-event tag
  int fd = -1;                     // under lock; read-only while open
  uint8_t kind = 0;                // FD::Kind
  // Observation (the poller's live table): one writer at a time (the
  // holder of the read or write lock), so plain stores, no lock prefix.
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};

  // --- the rest ---
  PollDesc* link = nullptr;  // in the free list (pdcache lock)
  uint32_t index = 0;        // position in the pdcache (the poller's tag)

  SpinLock lock;  // guards what follows
  bool closing = false;
  int64_t rd = 0, wd = 0;  // deadlines: 0 none, -1 expired, else nanotime
  uintptr_t rseq = 0, wseq = 0;
  Timer rt, wt;  // deadline timers

  Sema rsema, wsema;  // Gs waiting for the read / write lock
  Sema csema;         // close waits here until the last reference drops

  // Backend-private state (io_uring: in-flight operations), owned by the poller.
  // Set once, by the first opener (a G), before any SQE names the pollDesc;
  // read by the M that reaps a CQE: atomic, so that order is one C++ (and
  // TSan) can see, not only the kernel's.
  std::atomic<void*> backend{nullptr};
};

// The pollDesc cache: allocation never frees, so an index stays valid forever.
PollDesc* pd_alloc();
void pd_free(PollDesc* pd);
PollDesc* pd_at(uint32_t index);  // nullptr if out of range
// Visits every pollDesc ever allocated (open, closed or free): the live table.
void pd_foreach(void (*fn)(PollDesc*, void*), void* arg);

// Go's poll_runtime_poll* functions.
Error netpoll_open(PollDesc* pd, int fd);      // register with the poller
void netpoll_close(PollDesc* pd);              // deregister; pd must be evicted (not freed)
void netpoll_evict(PollDesc* pd);              // closing: wake both waiters
PollErr netpoll_wait(PollDesc* pd, int mode);  // mode 'r' or 'w'
// A completion backend cancelled an operation the G gave up on (deadline,
// close): park until the operation's own completion readies the slot,
// whatever the error state says (Go's poll_runtime_pollWaitCanceled).
void netpoll_wait_canceled(PollDesc* pd, int mode);
PollErr netpoll_check_err(PollDesc* pd, int mode);
void netpoll_reset(PollDesc* pd, int mode);                    // forget remembered readiness
void netpoll_set_deadline(PollDesc* pd, int64_t d, int mode);  // 'r', 'w', or 'r'+'w'

// Called by the backends: readiness for pd in mode ('r', 'w' or 'r'+'w');
// appends the G it wakes (if any) to *list (linked by schedlink).
void netpollready(G** list, PollDesc* pd, int mode);
// Called by the backends on an error event (EPOLLERR): later reads see it.
void netpoll_set_event_err(PollDesc* pd, bool on);

}  // namespace mnp::rt
