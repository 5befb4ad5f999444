// runtime/sched — who runs next: G, P, M, run queues, park and ready.
//
// Named as Go names them (DESIGN.md §2):
//   G  a coroutine: its saved context, its stack, a status and a wait reason.
//   P  a processor: a local run queue (a 256-slot ring plus `runnext`), a
//      timer heap and a cache of free Gs. MNP_PROCS of them.
//   M  an OS thread. It runs Gs only while it holds a P. Its own thread stack
//      is g0, where the scheduling loop runs between two Gs.
//
// A G's life:
//
//         spawn                execute             gopark (unlockf ok)
//   idle ───────► runnable ────────────► running ────────────────────► waiting
//                    ▲  ▲                │  │ yield                       │
//                    │  └────────────────┘  │                             │
//                    │        goready       │ exit                        │
//                    └──────────────────────┼─────────────────────────────┘
//                                           ▼
//                                         dead ──► (free list, reused by spawn)
//
// Switching from one G to another always passes through g0 (Go's mcall):
// the G saves itself and switches to its M's g0; on g0 the M finishes what
// the G asked (park: run the unlock function, which may refuse and make the
// G runnable at once; yield: queue it; exit: free it), then finds the next G.
// Running the park's commit on g0 is what makes park/ready race-free across
// threads: by the time another M can see the G as waiting, no one runs on
// its stack.
//
// Ownership: a G's fields are written by the M running it, or, while it is
// not running, by whoever holds it (a queue's owner, a waiter slot, ...).
// `status` is atomic and is the handover point.
//
// Copied stacks (MNP_STACK=copy; libco's and libaco's "shared stack"). Every
// G spawned in this mode runs on one shared stack (sched.shared); a parked
// G's used bytes [ctx.sp, shared.hi) are copied to a heap buffer of their
// size, and copied back, to the same addresses, when it next runs:
//
//   shared stack                     G 7 parked        G 9 parked
//   ┌─────────────┐ hi              ┌──────────┐      ┌──────────┐
//   │ G 12's      │ ◄── running     │ 416 B of │      │ 1.1 KiB  │
//   │ frames      │                 │ frames   │      │ of frames│
//   ├─────────────┤ sp              └──────────┘      └──────────┘
//   │   free      │                   save_buf          save_buf
//   └─────────────┘ lo (guard page below)
//
// The rules that make it correct, and what they cost:
//   - Same address on restore: frame pointers and pointers to locals inside
//     the frames stay valid. Hence one shared stack, and one P: two Ps would
//     need a stack each, and a G bound to one of them could never be stolen
//     by the other. run() forces MNP_PROCS=1 and says so in one line.
//     mnp::blocking keeps its P in this mode (no retake: another M would run
//     Gs on the stack the blocking G is still using).
//   - G records live on the heap (new G), closures too: spawn runs while
//     another G owns the shared stack, so it cannot write there. A fresh G
//     gets its first frame (ctx_make) when it first runs.
//   - Nothing outside a G reads or writes its frames while it is not
//     running. A channel's wait queues link sudogs and hand values over, so
//     a copy-mode G's sudogs live in its G record (chan send/receive) or a
//     per-G array (select), and the values pass through a staging area of
//     the G record (G::stage), never through the frame (chan.cpp says why
//     translating frame addresses to the saved copy is wrong: a moved
//     std::string may point at itself). A Mutex, WaitGroup or Sema on a
//     copy-mode G's stack is refused with a fatal error at its first use
//     (check_not_on_shared_stack): other Gs would write to an address that,
//     while its owner is parked, belongs to whichever G runs on the stack.
//   - Hence saving can be lazy, for parks and yields alike: a G's frames
//     stay on the shared stack (sched.shared_owner) until another copy-mode
//     G is about to run there (copystack_enter, on g0 of the M holding the
//     P). Race-free with wakers because no waker touches the frames; the one
//     reader is the park's commit (unlockf), which runs on g0 before any
//     other G can run. A park/ready round with the main G, or a G that runs
//     again before any other, copies nothing.
//   - The main G (G 1) keeps a page stack of its own: objects in main's
//     frame (`WaitGroup wg;` ... `wg.wait()`) stay put, as usual.
//   - Refused at start: the io_uring completion backend (the kernel writes
//     into a parked G's buffer, which is then no longer on the stack), and
//     sanitizer builds (ctx_sanitizer()).
#pragma once

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <semaphore>
#include <thread>
#include <vector>

#include "context/context.h"
#include "context/stack.h"
#include "mnp/chan.h"
#include "mnp/runtime.h"
#include "sched/lock.h"
#include "time/timer.h"
#include "trace/counters.h"

namespace mnp::rt {

class Poller;
struct M;
struct P;

enum class GStatus : uint8_t { idle, runnable, running, waiting, syscall, dead };

// Why a G waits (shown by the dump, counted by the stats).
enum class WaitReason : uint8_t {
  none,
  io_read,    // "IO wait" on a read (fd in G::wait_fd)
  io_write,   // "IO wait" on a write
  io_accept,  // "IO wait" on accept
  io_connect,
  chan_send,
  chan_recv,
  select,
  select_no_cases,
  mutex,      // "sync.Mutex.Lock"
  waitgroup,  // "sync.WaitGroup.Wait"
  sema,       // "semacquire" (the fdMutex, close waiting for readers)
  sleep,
  blocking,  // inside mnp::blocking on its own thread
};
const char* wait_reason_text(WaitReason r);

struct G {
  Context ctx;             // saved registers; valid while not running
  G* schedlink = nullptr;  // link in a run queue, a free list or a wait queue
  uint64_t id = 0;
  std::atomic<GStatus> status{GStatus::idle};
  WaitReason wait_reason = WaitReason::none;
  int32_t wait_fd = -1;
  int64_t wait_since = 0;               // nanotime_coarse() at park
  const void* wait_obj = nullptr;       // what it waits on (a Mutex, a Chan, ...)
  uintptr_t param = 0;                  // a value handed over by whoever readies it (Go's gp.param)
  void* elem = nullptr;                 // a channel hand-off's data pointer (Go's sudog.elem)
  const detail::SpawnFn* fn = nullptr;  // its start function
  void* closure = nullptr;              // the closure, on this G's own stack
  Stack stack;                          // the G record sits at the top of this stack
  Timer sleep_timer;                    // for mnp::sleep
  const void* held_mutex = nullptr;     // the Mutex it locked last (sysmon's report)
  int64_t lockpark_reported = 0;        // wait_since of the park already reported (sysmon)
  uint64_t held_mutexes = 0;            // Mutexes it holds (the lock-held-while-parked report)
  bool is_main = false;
  // Copied stacks (see the top of this file); all unused by page-stack Gs.
  // Written by the M that holds the (single) P, on g0 or by the G itself
  // (stage: by partners too, under the channel's lock, while it waits).
  bool copystack = false;          // runs on sched.shared (immutable while alive)
  bool saved = false;              // its frames are in save_buf, not on the stack
  char* save_buf = nullptr;        // [ctx.sp, shared.hi) while saved
  size_t save_size = 0;            // bytes in save_buf
  size_t save_cap = 0;             // bytes allocated
  size_t save_max = 0;             // the largest image saved (MNP_DEBUG=stacks)
  detail::Sudog sudog;             // chan send/receive's sudog, off the stack
  unsigned char* stage = nullptr;  // chan values of a parked hand-off, off the stack
  size_t stage_cap = 0;
  detail::Sudog* selsudogs = nullptr;  // select's sudogs, one per case
  int nselsudogs = 0;
  std::atomic<uint32_t> select_done{0};  // select's decision word, off the stack
};

// A P's local run queue: Go's lock-free ring. The owner puts at the tail and
// gets at the head; thieves take from the head with a CAS.
struct RunQueue {
  static constexpr uint32_t kSize = 256;
  std::atomic<uint32_t> head{0};  // CAS by owner and thieves
  std::atomic<uint32_t> tail{0};  // stored by the owner only
  std::atomic<G*> ring[kSize] = {};
};

struct P {
  int id = 0;
  std::atomic<M*> m{nullptr};  // the M holding this P (read racily by thieves)
  P* link = nullptr;           // in the idle list (under sched.lock)
  uint32_t schedtick = 1;      // incremented on each execute (not 0: see find_runnable)
  // 1 while its M runs a G inside mnp::blocking: sysmon may then take the
  // P (CAS to 0) and hand it to another M; the M takes it back with the same CAS.
  std::atomic<uint32_t> in_syscall{0};
  std::atomic<int64_t> syscall_since{0};
  uint32_t runs = 0;  // Gs executed, inherited slices too (sysmon's hog check)
  RunQueue runq;
  std::atomic<G*> runnext{nullptr};  // the next G to run, ahead of runq
  uint32_t runnext_streak = 0;       // Gs taken in a row from runnext (owner only)
  // Timers (time/timer.cpp): a 4-ary heap under timer_lock; timer0 is the
  // earliest `when` (0 if none), readable without the lock.
  SpinLock timer_lock;
  std::vector<Timer*> timers;
  std::atomic<int64_t> timer0{0};
  // Free Gs (dead, with their stacks), for spawn. Owner only.
  G* gfree = nullptr;
  int32_t ngfree = 0;
};

struct M {
  Context g0;          // this thread's own stack: the scheduling loop
  G* curg = nullptr;   // the G running on this M, if any
  P* p = nullptr;      // the P it holds
  P* nextp = nullptr;  // a P handed over by startm, taken after wake-up
  M* link = nullptr;   // in the idle M list (under sched.lock)
  int id = 0;
  bool spinning = false;  // looking for work without having found any
  // Sleeps here when idle (Go's m.park note). Counting, because teardown
  // may post it again while a wake-up is pending.
  std::counting_semaphore<1 << 20> park{0};
  uint64_t rand = 0;   // fastrand state: steal order
  std::thread thread;  // not for M0 (the thread that called run)
  // The OS thread, for sysmon's hog check (written once at the M's start).
  std::atomic<int> os_tid{0};  // stored (release) after cpu_clock, by the M itself
  clockid_t cpu_clock{};       // its CPU-time clock (Linux); 0 if unknown
  // What the G that just switched to g0 asked for (set by the G, done by g0).
  enum class Action : uint8_t { none, park, yield, exit, exitsyscall } action = Action::none;
  bool (*unlockf)(G*, void*) = nullptr;
  void* unlockarg = nullptr;
};

// The scheduler's global state (Go's schedt). Fields under `lock` say so.
struct Sched {
  std::mutex lock;
  G* runq_head = nullptr;  // global run queue (lock)
  G* runq_tail = nullptr;
  std::atomic<int32_t> runqsize{0};
  P* pidle = nullptr;  // idle Ps (lock)
  std::atomic<int32_t> npidle{0};
  M* midle = nullptr;  // idle Ms (lock)
  int32_t nmidle = 0;
  std::atomic<int32_t> nmspinning{0};
  // 0 while an M is blocked in netpoll; else when the last poll ended.
  std::atomic<int64_t> lastpoll{0};
  std::atomic<int64_t> poll_until{0};  // when the blocked poller will wake up
  std::atomic<uint32_t> netpoll_waiters{0};
  G* gfree = nullptr;  // global free Gs (gfree_lock)
  SpinLock gfree_lock;
  std::vector<G*> allgs;  // every G ever allocated in this run (allgs_lock)
  SpinLock allgs_lock;
  std::vector<P*> allp;
  std::vector<M*> allm;  // (lock)
  int nprocs = 1;
  size_t stack_size = 0;
  Poller* poller = nullptr;
  std::atomic<bool> exiting{false};
  std::atomic<int64_t> ngoroutines{0};
  std::atomic<uint64_t> goidgen{0};
  std::atomic<int32_t> nextmid{0};
  // MNP_SCHED_SEED: when non-zero, every choice the scheduler is free to make
  // (runnext or tail, steal victims, the order of Gs one poll readies) comes
  // from per-M generators seeded from it; with MNP_PROCS=1 a run replays.
  uint64_t seed = 0;
  std::atomic<int32_t> nsyscall{0};  // Ms inside mnp::blocking (sysmon ticks faster)
  // Copied stacks (MNP_STACK=copy): set by run() before any G, then read-only.
  bool copystack = false;
  Stack shared;  // the one stack every copy-mode G runs on
  // The copy-mode G whose frames are on the shared stack now (a G that
  // yielded, or the running one); nullptr when none is. Written only by the
  // M holding the single P, on g0.
  G* shared_owner = nullptr;
};

extern Sched sched;

// Copied stacks: is p inside the shared stack?
inline bool on_shared_stack(const void* p) {
  auto a = reinterpret_cast<uintptr_t>(p);
  auto lo = reinterpret_cast<uintptr_t>(sched.shared.lo);
  return a - lo < sched.shared.size();
}
// A sync object (what: "Mutex", "WaitGroup", "Sema") used from a copy-mode
// G's stack: a fatal error naming it (see the top of this file).
[[noreturn]] void refuse_stack_object(const void* obj, const char* what);
inline void check_not_on_shared_stack(const void* obj, const char* what) {
  if (__builtin_expect(sched.copystack, false) && on_shared_stack(obj))
    refuse_stack_object(obj, what);
}
// The bytes a G's stack holds for the reports: the high-water mark of a
// page stack (MNP_DEBUG=stacks), the largest saved image of a copied one.
size_t g_stack_used(const G* gp);

// The running M. Not inline, and never cached across a switch: the G that
// calls it may resume on another thread.
M* getm();
G* getg();  // the running G (nullptr on g0 or outside the runtime)

// Parks the running G. On g0, unlockf(gp, arg) runs first: if it returns
// false the G does not park and continues at once. The G resumes when
// someone calls goready(gp).
void gopark(bool (*unlockf)(G*, void*), void* arg, WaitReason reason, int32_t fd = -1,
            const void* obj = nullptr);
// gopark whose unlockf releases a SpinLock (Go's parkunlock).
void goparkunlock(SpinLock* l, WaitReason reason, const void* obj = nullptr);
// Makes a waiting G runnable: into the current P's runnext, or the global
// queue when the caller holds no P (a poller without P, a foreign thread).
void goready(G* gp);
// Makes a list of Gs (linked by schedlink) runnable; starts idle Ps for them.
void injectglist(G* list);
// sysmon: takes a P whose M is blocked in mnp::blocking; false if it came back.
bool retake(P* pp);

// The poller wants to know whether anyone waits (Go's netpollAnyWaiters).
inline void netpoll_waiter_added() {
  sched.netpoll_waiters.fetch_add(1, std::memory_order_relaxed);
}
inline void netpoll_waiter_removed() {
  sched.netpoll_waiters.fetch_sub(1, std::memory_order_relaxed);
}
// A timer earlier than the blocked poller's timeout was added: wake it.
void wake_netpoller(int64_t when);

uint32_t fastrand();

}  // namespace mnp::rt
namespace mnp {
class Sema;
namespace rt {
// Sema::acquire with the wait reason the dump shows (Mutex, WaitGroup, ...).
void sema_acquire(Sema* s, WaitReason reason);
}  // namespace rt
}  // namespace mnp
namespace mnp::rt {}  // namespace mnp::rt
