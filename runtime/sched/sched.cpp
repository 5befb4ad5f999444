// runtime/sched — the scheduling loop (Go's proc.go, in miniature).
//
// findRunnable, in Go's order, each step only if the one before found nothing:
//
//   1. this P's expired timers                        (they ready Gs)
//   2. every 61st tick, the global queue first        (fairness: no starvation)
//   3. runnext, then the local ring
//   4. the global queue
//   5. netpoll(0), if someone waits on an fd and no M is blocked in netpoll
//   6. steal half of another P's queue (or its runnext, or run its timers),
//      as a "spinning" M; at most half the busy Ps' worth of Ms spin at once
//   7. give the P back; if no M is blocked in netpoll, become that M:
//      netpoll(until the earliest timer); else sleep until handed a P.
//
// Wake-ups: whoever makes a G runnable while Ps are idle calls wakep(),
// which starts (or wakes) one spinning M, never more: that M, on finding
// work, wakes the next (Go's "spinning M" hand-off). A timer earlier than the
// blocked poller's timeout wakes the poller (wake_netpoller).
#include "sched/sched.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <typeinfo>

#include "mnp/stats.h"
#include "netpoll/poller.h"
#include "sys/fault.h"
#include "trace/sysmon.h"
#include "trace/trace.h"

namespace mnp::rt {

Sched sched;

namespace {
thread_local M* tls_m = nullptr;

[[noreturn]] void fatal(const char* msg) {
  std::fprintf(stderr, "mnp: fatal error: %s\n", msg);
  std::abort();
}
}  // namespace

// Not inlined, so that a G resumed on another thread reads its new M: the
// compiler may otherwise keep the old thread's TLS address in a register
// across the switch (a call it cannot see through).
__attribute__((noinline)) M* getm() {
  asm volatile("" ::: "memory");
  return tls_m;
}
G* getg() {
  M* m = getm();
  return m ? m->curg : nullptr;
}

const char* wait_reason_text(WaitReason r) {
  switch (r) {
    case WaitReason::none:
      return "";
    case WaitReason::io_read:
      return "IO wait (read)";
    case WaitReason::io_write:
      return "IO wait (write)";
    case WaitReason::io_accept:
      return "IO wait (accept)";
    case WaitReason::io_connect:
      return "IO wait (connect)";
    case WaitReason::chan_send:
      return "chan send";
    case WaitReason::chan_recv:
      return "chan receive";
    case WaitReason::select:
      return "select";
    case WaitReason::select_no_cases:
      return "select (no cases)";
    case WaitReason::mutex:
      return "sync.Mutex.Lock";
    case WaitReason::waitgroup:
      return "sync.WaitGroup.Wait";
    case WaitReason::sema:
      return "semacquire";
    case WaitReason::sleep:
      return "sleep";
    case WaitReason::blocking:
      return "blocking call";
  }
  return "?";
}

// The initial state of M id's generator (splitmix64 of the seed and the id).
uint64_t m_rand_init(int id) {
  uint64_t z = (sched.seed ? sched.seed : 0x9E3779B97F4A7C15ull) + 0x9E3779B97F4A7C15ull * (id + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) | 1;
}

uint32_t fastrand() {
  M* m = getm();
  uint64_t x = m ? m->rand : 0x9E3779B97F4A7C15ull;
  // xorshift64*
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  if (m) m->rand = x;
  return static_cast<uint32_t>((x * 0x2545F4914F6CDD1Dull) >> 32);
}

// ---------------------------------------------------------------------------
// Local run queues (Go's runqput / runqget / runqgrab / runqsteal).

namespace {

bool runq_empty(P* pp) {
  // A consistent read of head, tail and runnext (see Go's runqempty).
  for (;;) {
    uint32_t head = pp->runq.head.load(std::memory_order_acquire);
    uint32_t tail = pp->runq.tail.load(std::memory_order_acquire);
    G* next = pp->runnext.load(std::memory_order_acquire);
    if (pp->runq.tail.load(std::memory_order_acquire) == tail) return head == tail && !next;
  }
}

void globrunqput_locked(G* gp) {
  gp->schedlink = nullptr;
  if (sched.runq_tail)
    sched.runq_tail->schedlink = gp;
  else
    sched.runq_head = gp;
  sched.runq_tail = gp;
  sched.runqsize.fetch_add(1, std::memory_order_relaxed);
}

void globrunqput_batch_locked(G* head, G* tail, int32_t n) {
  tail->schedlink = nullptr;
  if (sched.runq_tail)
    sched.runq_tail->schedlink = head;
  else
    sched.runq_head = head;
  sched.runq_tail = tail;
  sched.runqsize.fetch_add(n, std::memory_order_relaxed);
}

// Moves half the local queue plus gp to the global queue (the ring is full).
bool runqputslow(P* pp, G* gp, uint32_t head, uint32_t tail) {
  constexpr uint32_t n = RunQueue::kSize / 2;
  G* batch[n + 1];
  if (tail - head != RunQueue::kSize) fatal("runqputslow: queue is not full");
  for (uint32_t i = 0; i < n; i++)
    batch[i] = pp->runq.ring[(head + i) % RunQueue::kSize].load(std::memory_order_relaxed);
  if (!pp->runq.head.compare_exchange_strong(head, head + n, std::memory_order_release))
    return false;  // a thief took some: retry the fast path
  batch[n] = gp;
  for (uint32_t i = 0; i < n; i++) batch[i]->schedlink = batch[i + 1];
  std::lock_guard<std::mutex> l(sched.lock);
  globrunqput_batch_locked(batch[0], batch[n], n + 1);
  return true;
}

// Puts gp on pp's queue: into runnext if next (kicking the old runnext to the
// tail), else at the tail. Owner only.
void runqput(P* pp, G* gp, bool next) {
  if (next && sched.seed && (fastrand() & 1)) next = false;  // seeded: either is valid
  if (next) {
    G* old = pp->runnext.load(std::memory_order_relaxed);
    while (!pp->runnext.compare_exchange_weak(old, gp, std::memory_order_acq_rel)) {
    }
    if (!old) return;
    gp = old;
  }
  for (;;) {
    uint32_t head = pp->runq.head.load(std::memory_order_acquire);
    uint32_t tail = pp->runq.tail.load(std::memory_order_relaxed);
    if (tail - head < RunQueue::kSize) {
      pp->runq.ring[tail % RunQueue::kSize].store(gp, std::memory_order_relaxed);
      pp->runq.tail.store(tail + 1, std::memory_order_release);
      return;
    }
    if (runqputslow(pp, gp, head, tail)) return;
  }
}

// Gets a G from pp's queue; *inherit says it came from runnext (it then
// inherits the time slice: the schedtick is not advanced). Owner only.
//
// Two Gs that ready each other (a channel ping-pong) would keep trading
// runnext and the time slice for ever, and the rest of the queue would
// starve. Go ends such a chain when sysmon preempts it after 10 ms; our
// sysmon cannot preempt (it only reports), so a chain ends after
// kRunnextStreak hand-offs: the runnext G then goes to the tail and the head
// of the queue runs.
constexpr uint32_t kRunnextStreak = 64;
G* runqget(P* pp, bool* inherit) {
  G* next = pp->runnext.load(std::memory_order_relaxed);
  if (next && pp->runnext.compare_exchange_strong(next, nullptr, std::memory_order_acq_rel)) {
    if (++pp->runnext_streak < kRunnextStreak) {
      *inherit = true;
      return next;
    }
    runqput(pp, next, false);
  }
  pp->runnext_streak = 0;
  *inherit = false;
  for (;;) {
    uint32_t head = pp->runq.head.load(std::memory_order_acquire);
    uint32_t tail = pp->runq.tail.load(std::memory_order_relaxed);
    if (tail == head) return nullptr;
    G* gp = pp->runq.ring[head % RunQueue::kSize].load(std::memory_order_relaxed);
    if (pp->runq.head.compare_exchange_weak(head, head + 1, std::memory_order_release)) return gp;
  }
}

// Takes half of pp's queue into batch (from batch_head on); may take runnext.
uint32_t runqgrab(P* pp, G** batch, uint32_t batch_head, bool steal_runnext) {
  for (;;) {
    uint32_t head = pp->runq.head.load(std::memory_order_acquire);
    uint32_t tail = pp->runq.tail.load(std::memory_order_acquire);
    uint32_t n = tail - head;
    n -= n / 2;
    if (n == 0) {
      if (steal_runnext) {
        G* next = pp->runnext.load(std::memory_order_acquire);
        if (next) {
          // The owner is likely about to run it; Go sleeps a few µs here so
          // as not to steal a G that is being readied and run in a ping-pong.
          if (pp->m.load(std::memory_order_relaxed) != nullptr) {
            struct timespec ts = {0, 3000};
            nanosleep(&ts, nullptr);
          }
          if (pp->runnext.compare_exchange_strong(next, nullptr, std::memory_order_acq_rel)) {
            batch[batch_head % RunQueue::kSize] = next;
            return 1;
          }
        }
      }
      return 0;
    }
    if (n > RunQueue::kSize / 2) continue;  // inconsistent read of head and tail
    for (uint32_t i = 0; i < n; i++)
      batch[(batch_head + i) % RunQueue::kSize] =
          pp->runq.ring[(head + i) % RunQueue::kSize].load(std::memory_order_relaxed);
    if (pp->runq.head.compare_exchange_weak(head, head + n, std::memory_order_release)) return n;
  }
}

// Steals half of p2's queue into pp's; returns one G to run.
G* runqsteal(P* pp, P* p2, bool steal_runnext) {
  uint32_t tail = pp->runq.tail.load(std::memory_order_relaxed);
  G* batch[RunQueue::kSize];
  uint32_t n = runqgrab(p2, batch, 0, steal_runnext);
  if (n == 0) return nullptr;
  stat_add(Stat::steals);
  G* gp = batch[--n];
  if (n == 0) return gp;
  uint32_t head = pp->runq.head.load(std::memory_order_acquire);
  if (tail - head + n >= RunQueue::kSize) fatal("runqsteal: runq overflow");
  for (uint32_t i = 0; i < n; i++)
    pp->runq.ring[(tail + i) % RunQueue::kSize].store(batch[i], std::memory_order_relaxed);
  pp->runq.tail.store(tail + n, std::memory_order_release);
  return gp;
}

// Takes up to a fair share of the global queue: one to run, some to the
// local ring. Caller holds sched.lock.
G* globrunqget_locked(P* pp, int32_t max) {
  int32_t size = sched.runqsize.load(std::memory_order_relaxed);
  if (size == 0) return nullptr;
  int32_t n = size / sched.nprocs + 1;
  if (n > size) n = size;
  if (max > 0 && n > max) n = max;
  if (n > static_cast<int32_t>(RunQueue::kSize / 2)) n = RunQueue::kSize / 2;
  sched.runqsize.fetch_sub(n, std::memory_order_relaxed);
  G* gp = sched.runq_head;
  sched.runq_head = gp->schedlink;
  if (!sched.runq_head) sched.runq_tail = nullptr;
  for (int32_t i = 1; i < n; i++) {
    G* g2 = sched.runq_head;
    sched.runq_head = g2->schedlink;
    if (!sched.runq_head) sched.runq_tail = nullptr;
    runqput(pp, g2, false);
  }
  return gp;
}

// ---------------------------------------------------------------------------
// Idle Ps and Ms (Go's pidleput / pidleget / mput / mget). Under sched.lock.

void pidleput_locked(P* pp) {
  pp->link = sched.pidle;
  sched.pidle = pp;
  sched.npidle.fetch_add(1, std::memory_order_relaxed);
}

P* pidleget_locked() {
  P* pp = sched.pidle;
  if (pp) {
    sched.pidle = pp->link;
    sched.npidle.fetch_sub(1, std::memory_order_relaxed);
  }
  return pp;
}

void mput_locked(M* mp) {
  mp->link = sched.midle;
  sched.midle = mp;
  sched.nmidle++;
}

M* mget_locked() {
  M* mp = sched.midle;
  if (mp) {
    sched.midle = mp->link;
    sched.nmidle--;
  }
  return mp;
}

void acquirep(M* mp, P* pp) {
  if (pp->m.load(std::memory_order_relaxed)) fatal("acquirep: P already in use");
  pp->m.store(mp, std::memory_order_relaxed);
  mp->p = pp;
}

P* releasep(M* mp) {
  P* pp = mp->p;
  pp->m.store(nullptr, std::memory_order_relaxed);
  mp->p = nullptr;
  return pp;
}

void mstart(M* mp);
void stopm(M* mp);

// Starts an M to run pp (or an idle P if pp is null). With spinning, the M
// looks for work as a spinning M (the caller already counted it).
void startm(P* pp, bool spinning) {
  std::unique_lock<std::mutex> l(sched.lock);
  if (!pp) {
    pp = pidleget_locked();
    if (!pp) {
      l.unlock();
      if (spinning) sched.nmspinning.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
  }
  M* mp = mget_locked();
  if (!mp) {
    // No new M once the runtime exits: teardown joins the Ms it finds in
    // allm, so an M must be in allm with its thread set (both under the lock)
    // or not exist at all.
    if (sched.exiting.load(std::memory_order_acquire)) {
      pidleput_locked(pp);
      l.unlock();
      if (spinning) sched.nmspinning.fetch_sub(1, std::memory_order_relaxed);
      return;
    }
    mp = new M;
    mp->id = sched.nextmid.fetch_add(1);
    mp->rand = m_rand_init(mp->id);
    mp->spinning = spinning;
    mp->nextp = pp;
    sched.allm.push_back(mp);
    mp->thread = std::thread(mstart, mp);
    return;
  }
  // Before the unlock: a parked M woken by teardown reads nextp under the lock.
  mp->spinning = spinning;
  mp->nextp = pp;
  l.unlock();
  stat_add(Stat::sys_futex);
  mp->park.release();
}

// Wakes one more M to look for work, if there are idle Ps and no M already
// spinning (that one will wake the next when it finds something).
void wakep() {
  if (sched.npidle.load(std::memory_order_relaxed) == 0) return;
  int32_t zero = 0;
  if (sched.nmspinning.load(std::memory_order_relaxed) != 0 ||
      !sched.nmspinning.compare_exchange_strong(zero, 1))
    return;
  startm(nullptr, true);
}

// The M stops looking for work: if it was the last spinning M and it found a
// G, another M must take over the search (Go's resetspinning).
void resetspinning(M* mp) {
  mp->spinning = false;
  int32_t n = sched.nmspinning.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if (n < 0) fatal("resetspinning: negative nmspinning");
  wakep();
}

// Hands off pp from an M that is going to block (mnp::blocking): to a new M if
// there is work for it, else to the idle list (Go's handoffp).
void handoffp(P* pp) {
  if (!runq_empty(pp) || sched.runqsize.load(std::memory_order_relaxed) != 0) {
    startm(pp, false);
    return;
  }
  if (sched.nmspinning.load() + sched.npidle.load() == 0) {
    int32_t zero = 0;
    if (sched.nmspinning.compare_exchange_strong(zero, 1)) {
      startm(pp, true);
      return;
    }
  }
  std::unique_lock<std::mutex> l(sched.lock);
  if (sched.runqsize.load(std::memory_order_relaxed) != 0) {
    l.unlock();
    startm(pp, false);
    return;
  }
  // The last running P must keep someone polling the network and the timers.
  if (sched.npidle.load() == sched.nprocs - 1 && sched.lastpoll.load() != 0) {
    l.unlock();
    startm(pp, false);
    return;
  }
  pidleput_locked(pp);
  l.unlock();
  // Its timers are seen by the poller's timeout (timers_earliest): make sure
  // a blocked poller recomputes it.
  int64_t t0 = pp->timer0.load(std::memory_order_relaxed);
  if (t0 != 0) wake_netpoller(t0);
}

// Puts a list of Gs on run queues: up to one per idle P on the global queue
// (starting Ms for them), the rest on this P's queue.
void injectglist_impl(M* mp, G* list) {
  if (!list) return;
  int32_t n = 0;
  G* tail = nullptr;
  for (G* g = list; g; g = g->schedlink) {
    g->status.store(GStatus::runnable, std::memory_order_release);
    tail = g;
    n++;
  }
  stat_add(Stat::wakeups, n);
  if (!mp || !mp->p) {
    {
      std::lock_guard<std::mutex> l(sched.lock);
      globrunqput_batch_locked(list, tail, n);
    }
    for (int32_t i = 0; i < n && sched.npidle.load() != 0; i++) startm(nullptr, false);
    return;
  }
  int32_t npidle = sched.npidle.load(std::memory_order_relaxed);
  if (npidle > 0) {
    G* head = list;
    G* t = list;
    int32_t k = 1;
    while (k < npidle && t->schedlink) {
      t = t->schedlink;
      k++;
    }
    list = t->schedlink;
    {
      std::lock_guard<std::mutex> l(sched.lock);
      globrunqput_batch_locked(head, t, k);
    }
    for (int32_t i = 0; i < k && sched.npidle.load() != 0; i++) startm(nullptr, false);
  }
  while (list) {
    G* g = list;
    list = g->schedlink;
    runqput(mp->p, g, false);
  }
}

// ---------------------------------------------------------------------------
// G allocation: a G record at the top of its own stack, reused through free
// lists (per P, then global).

G* galloc() {
  Stack s = stack_alloc(sched.stack_size);
  uintptr_t top = reinterpret_cast<uintptr_t>(s.hi);
  uintptr_t at = (top - sizeof(G)) & ~uintptr_t(63);
  G* gp = new (reinterpret_cast<void*>(at)) G;
  gp->stack = s;
  LockGuard<SpinLock> l(sched.allgs_lock);
  sched.allgs.push_back(gp);
  return gp;
}

// A copy-mode G: the record on the heap, the stack shared (see sched.h).
G* galloc_copy() {
  G* gp = new G;
  gp->copystack = true;
  gp->stack = sched.shared;
  LockGuard<SpinLock> l(sched.allgs_lock);
  sched.allgs.push_back(gp);
  return gp;
}

G* gfget(P* pp) {
  if (!pp->gfree) {
    LockGuard<SpinLock> l(sched.gfree_lock);
    for (int i = 0; i < 32 && sched.gfree; i++) {
      G* gp = sched.gfree;
      sched.gfree = gp->schedlink;
      gp->schedlink = pp->gfree;
      pp->gfree = gp;
      pp->ngfree++;
    }
  }
  G* gp = pp->gfree;
  if (gp) {
    pp->gfree = gp->schedlink;
    pp->ngfree--;
  }
  return gp;
}

void gfput(P* pp, G* gp) {
  gp->status.store(GStatus::dead, std::memory_order_relaxed);
  gp->schedlink = pp->gfree;
  pp->gfree = gp;
  if (++pp->ngfree < 64) return;
  LockGuard<SpinLock> l(sched.gfree_lock);
  while (pp->ngfree > 32) {
    G* g = pp->gfree;
    pp->gfree = g->schedlink;
    pp->ngfree--;
    g->schedlink = sched.gfree;
    sched.gfree = g;
  }
}

void main_exited();
void gentry(void* arg);

// ---------------------------------------------------------------------------
// Copied stacks (MNP_STACK=copy; the design is at the top of sched.h). These
// run on g0 of the M holding the single P, never on the shared stack.

// A save buffer is reallocated to the exact size when the image no longer
// fits or would leave more than this many bytes unused: a G that parks at
// about the same depth each time (a connection's read loop) then keeps its
// buffer, one malloc for its life, while an idle G holds no more than its
// frames and this slack.
constexpr size_t kSaveSlack = 256;

// Copies gp's frames [ctx.sp, shared.hi) out of the shared stack.
void stack_save(G* gp) {
  auto* sp = static_cast<char*>(gp->ctx.sp);
  size_t n = static_cast<size_t>(sched.shared.hi - sp);
  if (n > sched.shared.size()) fatal("copied stack: a G's saved sp is not on the shared stack");
  if (gp->save_cap < n || gp->save_cap - n > kSaveSlack) {
    std::free(gp->save_buf);
    gp->save_buf = static_cast<char*>(std::malloc(n));
    if (!gp->save_buf) fatal("copied stack: out of memory for a saved stack");
    gp->save_cap = n;
  }
  std::memcpy(gp->save_buf, sp, n);
  gp->save_size = n;
  if (n > gp->save_max) gp->save_max = n;
  gp->saved = true;
}

// Makes the shared stack gp's before it runs: saves the G that left its
// frames there (parked or yielded: saving late is safe, as nothing but the G
// itself touches its frames; sched.h), then puts back gp's frames at their
// addresses, or builds a fresh G's first frame.
__attribute__((noinline)) void copystack_enter(G* gp) {
  G* owner = sched.shared_owner;
  if (owner == gp) return;  // it yielded and nothing else ran on the stack
  if (owner) stack_save(owner);
  if (!gp->ctx.sp) {
    ctx_make(&gp->ctx, sched.shared.lo, sched.shared.size(), gentry, gp);
  } else {
    if (!gp->saved) fatal("copied stack: a G to run has neither its frames nor a saved copy");
    std::memcpy(sched.shared.hi - gp->save_size, gp->save_buf, gp->save_size);
    gp->saved = false;
  }
  sched.shared_owner = gp;
}

// Every G starts here, on its own stack. An exception must not cross the
// switch: it ends the process like Go's unrecovered panic.
void gentry(void* arg) {
  G* gp = static_cast<G*>(arg);
  try {
    gp->fn->invoke(gp->closure);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnp: unhandled exception in goroutine %llu: %s: %s\n",
                 static_cast<unsigned long long>(gp->id), typeid(e).name(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "mnp: unhandled exception in goroutine %llu (not a std::exception)\n",
                 static_cast<unsigned long long>(gp->id));
    std::abort();
  }
  gp->fn->destroy(gp->closure);
  M* mp = getm();
  mp->action = M::Action::exit;
  ctx_switch_final(&gp->ctx, &mp->g0);
  fatal("a dead goroutine was resumed");
}

// ---------------------------------------------------------------------------
// Timers of other Ps, and the scheduling loop.

// Runs the action the G that just left asked for. On g0.
void finish_action(M* mp, G* gp) {
  M::Action a = mp->action;
  mp->action = M::Action::none;
  switch (a) {
    case M::Action::park: {
      gp->status.store(GStatus::waiting, std::memory_order_release);
      stat_add(Stat::parks);
      auto f = mp->unlockf;
      mp->unlockf = nullptr;
      if (f && !f(gp, mp->unlockarg)) {
        // The commit was refused (the event came first): run it again now.
        gp->status.store(GStatus::runnable, std::memory_order_release);
        runqput(mp->p, gp, true);
      }
      break;
    }
    case M::Action::yield:
      gp->status.store(GStatus::runnable, std::memory_order_release);
      {
        std::lock_guard<std::mutex> l(sched.lock);
        globrunqput_locked(gp);
      }
      break;
    case M::Action::exit: {
      bool was_main = gp->is_main;
      gp->is_main = false;
      gp->wait_reason = WaitReason::none;
      sched.ngoroutines.fetch_sub(1, std::memory_order_relaxed);
      if (gp->copystack) {
        // Its closure was on the heap (spawn_impl); its frames are garbage.
        ::operator delete(gp->closure, std::align_val_t(gp->fn->align < 16 ? 16 : gp->fn->align));
        if (sched.shared_owner == gp) sched.shared_owner = nullptr;
        gp->ctx.sp = nullptr;  // the next use builds a first frame
        gp->saved = false;
      }
      gp->fn = nullptr;
      gp->closure = nullptr;
      if (sched.copystack && !gp->copystack) {
        // The main G's page stack in copy mode: not for copy-mode spawns.
        gp->status.store(GStatus::dead, std::memory_order_relaxed);
      } else {
        gfput(mp->p, gp);
      }
      if (was_main) main_exited();
      break;
    }
    case M::Action::exitsyscall:
      if (gp->copystack) fatal("copied stack: a G's P was retaken in mnp::blocking");
      // The G came back from mnp::blocking and found no idle P: queue it and
      // let this M (which holds no P) go idle.
      gp->status.store(GStatus::runnable, std::memory_order_release);
      {
        std::lock_guard<std::mutex> l(sched.lock);
        globrunqput_locked(gp);
      }
      break;
    case M::Action::none:
      fatal("a G switched to g0 without an action");
  }
}

// The span of one G run, for the trace: why it ended and what it waits on.
void trace_g_run(G* gp, int64_t t0, M::Action a) {
  TraceRec r{};
  r.ts = t0;
  r.dur = nanotime() - t0;
  r.g = gp->id;
  r.ev = TraceEv::g_run;
  r.reason = static_cast<uint8_t>(a == M::Action::park    ? TraceStop::park
                                  : a == M::Action::yield ? TraceStop::yield
                                  : a == M::Action::exit  ? TraceStop::exit
                                                          : TraceStop::blocking);
  r.wait = static_cast<uint8_t>(a == M::Action::park ? gp->wait_reason : WaitReason::none);
  r.fd = a == M::Action::park ? gp->wait_fd : -1;
  trace_record(r);
}

void trace_instant(TraceEv ev, uint64_t g, uint32_t arg = 0) {
  TraceRec r{};
  r.ts = nanotime();
  r.g = g;
  r.ev = ev;
  r.arg = arg;
  trace_record(r);
}

// A poller call, for the trace.
// Seeded runs shuffle the Gs one poll readied (the kernel's order is one
// of many valid ones).
G* seeded_shuffle(G* list) {
  if (!sched.seed || !list || !list->schedlink) return list;
  std::vector<G*> v;
  for (G* g = list; g; g = g->schedlink) v.push_back(g);
  for (size_t i = v.size() - 1; i > 0; i--) std::swap(v[i], v[fastrand() % (i + 1)]);
  for (size_t i = 0; i + 1 < v.size(); i++) v[i]->schedlink = v[i + 1];
  v.back()->schedlink = nullptr;
  return v[0];
}

G* traced_poll(int64_t delay) {
  if (!tracing()) return seeded_shuffle(sched.poller->poll(delay));
  TraceRec r{};
  r.ts = nanotime();
  G* list = sched.poller->poll(delay);
  r.dur = nanotime() - r.ts;
  r.ev = TraceEv::poll;
  r.fd = delay != 0;
  for (G* g = list; g; g = g->schedlink) r.arg++;
  trace_record(r);
  return seeded_shuffle(list);
}

void execute(M* mp, G* gp, bool inherit) {
  mp->curg = gp;
  gp->status.store(GStatus::running, std::memory_order_relaxed);
  if (!inherit) mp->p->schedtick++;
  mp->p->runs++;
  stat_add(Stat::ctx_switches);
  int64_t t0 = tracing() ? nanotime() : 0;
  if (gp->copystack) copystack_enter(gp);
  ctx_switch(&mp->g0, &gp->ctx);
  // Back on g0: gp switched to us.
  mp->curg = nullptr;
  if (t0) trace_g_run(gp, t0, mp->action);
  finish_action(mp, gp);
}

bool exiting() {
  return sched.exiting.load(std::memory_order_acquire);
}

// Returns a G to run, blocking (in netpoll or asleep) until there is one.
// Returns nullptr when the runtime exits. Called with a P; returns with one.
G* find_runnable(M* mp, bool* inherit) {
top:
  if (exiting()) return nullptr;
  P* pp = mp->p;
  *inherit = false;
  sched.poller->flush();  // batched submissions (io_uring), once a round
  // The clock is read only when this P has timers: most rounds have none.
  int64_t now = 0;
  if (pp->timer0.load(std::memory_order_relaxed) != 0) check_timers(pp, now = nanotime());

  // Every 61st tick, look at the global queue first (fairness).
  if (pp->schedtick % 61 == 0 && sched.runqsize.load(std::memory_order_relaxed) > 0) {
    std::lock_guard<std::mutex> l(sched.lock);
    if (G* gp = globrunqget_locked(pp, 1)) return gp;
  }
  if (G* gp = runqget(pp, inherit)) return gp;
  if (sched.runqsize.load(std::memory_order_relaxed) != 0) {
    std::lock_guard<std::mutex> l(sched.lock);
    if (G* gp = globrunqget_locked(pp, 0)) return gp;
  }

  // The network, without blocking, if anyone waits and nobody polls already.
  // With one P there is nothing to steal: the blocking poll below comes next
  // and returns at once if anything is ready, so this one would be a second
  // epoll_wait per wake-up (bench profile: 2 polls per message at 1 conn).
  if (sched.nprocs > 1 && sched.netpoll_waiters.load(std::memory_order_relaxed) > 0 &&
      sched.lastpoll.load(std::memory_order_relaxed) != 0) {
    stat_add(Stat::polls);
    if (G* list = traced_poll(0)) {
      G* gp = list;
      list = list->schedlink;
      injectglist_impl(mp, list);
      gp->status.store(GStatus::runnable, std::memory_order_release);
      stat_add(Stat::wakeups);
      return gp;
    }
  }

  // Steal. Limit spinning Ms to half the busy Ps: it burns CPU.
  int nprocs = sched.nprocs;
  if (nprocs > 1 && (mp->spinning || 2 * sched.nmspinning.load() < nprocs - sched.npidle.load())) {
    if (!mp->spinning) {
      mp->spinning = true;
      sched.nmspinning.fetch_add(1);
    }
    for (int attempt = 0; attempt < 4; attempt++) {
      bool last = attempt == 3;
      uint32_t off = fastrand() % nprocs;
      for (int i = 0; i < nprocs; i++) {
        P* p2 = sched.allp[(off + i) % nprocs];
        if (p2 == pp) continue;
        if (last && p2->timer0.load(std::memory_order_relaxed) != 0) {
          // Run the timers of a P whose M is busy or gone (Go's stealWork).
          check_timers(p2, nanotime());
          if (G* gp = runqget(pp, inherit)) return gp;
        }
        if (G* gp = runqsteal(pp, p2, last)) return gp;
      }
    }
  }

  // Nothing: give up the P.
  {
    std::unique_lock<std::mutex> l(sched.lock);
    if (exiting()) return nullptr;
    if (sched.runqsize.load(std::memory_order_relaxed) != 0) {
      G* gp = globrunqget_locked(pp, 0);
      return gp;
    }
    releasep(mp);
    pidleput_locked(pp);
  }
  bool was_spinning = mp->spinning;
  if (mp->spinning) {
    mp->spinning = false;
    sched.nmspinning.fetch_sub(1);
    // Work may have been queued on a P after we looked and before we
    // stopped spinning: look once more (Go's "delicate dance").
    for (P* p2 : sched.allp) {
      if (!runq_empty(p2)) {
        std::unique_lock<std::mutex> l(sched.lock);
        P* np = pidleget_locked();
        l.unlock();
        if (np) {
          acquirep(mp, np);
          mp->spinning = true;
          sched.nmspinning.fetch_add(1);
          goto top;
        }
        break;
      }
    }
  }
  (void)was_spinning;

  // Become the M blocked in netpoll, if there is none.
  int64_t last = sched.lastpoll.load(std::memory_order_relaxed);
  if (last != 0 && sched.lastpoll.compare_exchange_strong(last, 0)) {
    int64_t until = timers_earliest();
    if (until != 0 && until <= (now = nanotime())) {
      // A timer is already due on some P whose M is busy (or descheduled):
      // run it from here rather than poll with a zero timeout in a loop.
      // Without a P, the Gs it readies go to the global queue.
      for (P* p2 : sched.allp)
        if (int64_t t = p2->timer0.load(std::memory_order_relaxed); t != 0 && t <= now)
          check_timers(p2, now);
      if (sched.runqsize.load(std::memory_order_relaxed) != 0) {
        // They readied Gs: run them instead of polling.
        sched.lastpoll.store(nanotime(), std::memory_order_release);
        P* np;
        {
          std::lock_guard<std::mutex> l(sched.lock);
          np = pidleget_locked();
        }
        if (!np) {
          stopm(mp);
          if (!mp->p) return nullptr;
        } else {
          acquirep(mp, np);
        }
        goto top;
      }
      until = timers_earliest();
    }
    int64_t delay = -1;
    if (until != 0) {
      now = nanotime();
      delay = until > now ? until - now : 0;
    }
    sched.poll_until.store(until, std::memory_order_relaxed);
    if (exiting()) {
      sched.lastpoll.store(nanotime());
      return nullptr;
    }
    stat_add(Stat::polls);
    G* list = traced_poll(delay);
    sched.poll_until.store(0, std::memory_order_relaxed);
    sched.lastpoll.store(nanotime(), std::memory_order_release);
    P* np;
    {
      std::lock_guard<std::mutex> l(sched.lock);
      np = pidleget_locked();
    }
    if (!np) {
      injectglist_impl(mp, list);
    } else {
      acquirep(mp, np);
      if (list) {
        G* gp = list;
        list = list->schedlink;
        injectglist_impl(mp, list);
        gp->status.store(GStatus::runnable, std::memory_order_release);
        stat_add(Stat::wakeups);
        return gp;
      }
      goto top;  // a timer is due, or a wake-up: look again
    }
  }
  stopm(mp);
  if (!mp->p) return nullptr;  // exiting
  goto top;
}

// Sleeps until startm hands this M a P (or the runtime exits).
// The only other wake-up is the runtime's exit (mp->p stays null then).
void stopm(M* mp) {
  {
    std::lock_guard<std::mutex> l(sched.lock);
    if (exiting()) return;
    mput_locked(mp);
  }
  // Count a sleep only when there is one: startm may have handed this M a P
  // between the unlock and here, and then the acquire returns at once.
  if (!mp->park.try_acquire()) {
    stat_add(Stat::sys_futex);
    mp->park.acquire();
  }
  std::lock_guard<std::mutex> l(sched.lock);
  if (mp->nextp) {
    acquirep(mp, mp->nextp);
    mp->nextp = nullptr;
  }
}

void schedule_loop(M* mp) {
  for (;;) {
    if (!mp->p) {
      stopm(mp);
      if (!mp->p) return;
    }
    bool inherit = false;
    G* gp = find_runnable(mp, &inherit);
    if (!gp) return;
    // A spinning M that found work wakes another to keep looking.
    if (mp->spinning) resetspinning(mp);
    execute(mp, gp, inherit);
  }
}

// Records the OS thread of mp (sysmon reads it to tell a CPU hog from a
// thread the OS preempted).
void m_note_thread(M* mp) {
#ifdef __linux__
  clockid_t c;
  if (pthread_getcpuclockid(pthread_self(), &c) == 0) {
    mp->cpu_clock = c;
    mp->os_tid.store(static_cast<int>(::gettid()), std::memory_order_release);
  }
#else
  (void)mp;
#endif
}

void mstart(M* mp) {
  tls_m = mp;
  m_note_thread(mp);
  stack_thread_init();
  ctx_init_thread(&mp->g0);
  {
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
  }
  if (mp->nextp) {
    acquirep(mp, mp->nextp);
    mp->nextp = nullptr;
  }
  schedule_loop(mp);
  // Leaving: give the P back so that teardown sees every P idle.
  if (mp->p) {
    std::lock_guard<std::mutex> l(sched.lock);
    pidleput_locked(releasep(mp));
  }
  ctx_destroy(&mp->g0);
  stack_thread_fini();
  tls_m = nullptr;
}

void main_exited() {
  sched.exiting.store(true, std::memory_order_release);
  // Wake everyone: the poller, and every idle M.
  sched.poller->wake();
  std::lock_guard<std::mutex> l(sched.lock);
  for (M* mp : sched.allm) mp->park.release();
}

// Stack overflow: the describer the SIGSEGV handler calls (async-signal-safe).
size_t describe_overflow(const void* addr, char* buf, size_t len) {
  M* mp = tls_m;
  if (!mp || !mp->curg) return 0;
  G* gp = mp->curg;
  auto a = reinterpret_cast<uintptr_t>(addr);
  auto guard_lo = reinterpret_cast<uintptr_t>(gp->stack.map);
  auto lo = reinterpret_cast<uintptr_t>(gp->stack.lo);
  // The guard page, or just below it (a large frame can skip over it).
  if (a >= lo || a + 64 * 1024 < guard_lo) return 0;
  char num[24];
  int n = 0;
  uint64_t id = gp->id;
  do {
    num[n++] = static_cast<char>('0' + id % 10);
    id /= 10;
  } while (id && n < 20);
  size_t k = 0;
  auto put = [&](const char* s) {
    while (*s && k + 1 < len) buf[k++] = *s++;
  };
  put("mnp: fatal error: stack overflow in goroutine ");
  while (n > 0 && k + 1 < len) buf[k++] = num[--n];
  put(" (stack ");
  size_t kib = gp->stack.size() / 1024;
  char sz[24];
  n = 0;
  do {
    sz[n++] = static_cast<char>('0' + kib % 10);
    kib /= 10;
  } while (kib && n < 20);
  while (n > 0 && k + 1 < len) buf[k++] = sz[--n];
  put(" KiB reserved, all of it used");
  // The start function (mangled: demangling is not async-signal-safe;
  // `c++filt` reads it).
  if (gp->fn && gp->fn->type) {
    put("; started as ");
    put(gp->fn->type->name());
  }
  put("). A deeper stack needs a larger reservation: MNP_STACK_SIZE_KIB=");
  kib = 2 * gp->stack.size() / 1024;
  n = 0;
  do {
    sz[n++] = static_cast<char>('0' + kib % 10);
    kib /= 10;
  } while (kib && n < 20);
  while (n > 0 && k + 1 < len) buf[k++] = sz[--n];
  put(" or more (MNP_DEBUG=stacks=1 reports how deep each G went)\n");
  return k;
}

// The CPUs this process may run on (its affinity mask, as Go's
// getproccount: `taskset -c 0` means one P), else the online CPUs.
int usable_cpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

int env_int(const char* name, int dflt) {
  const char* v = std::getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x <= 0 || x > 1024) {
    std::fprintf(stderr, "mnp: ignoring %s=%s (want a number from 1 to 1024)\n", name, v);
    return dflt;
  }
  return static_cast<int>(x);
}

}  // namespace

// sysmon: takes pp from an M that has been inside mnp::blocking longer than
// the grace period, and hands it to another M (Go's retake + handoffp).
bool retake(P* pp) {
  uint32_t one = 1;
  if (!pp->in_syscall.compare_exchange_strong(one, 0, std::memory_order_acq_rel)) return false;
  pp->m.store(nullptr, std::memory_order_release);
  handoffp(pp);
  return true;
}

void injectglist(G* list) {
  injectglist_impl(getm(), list);
}

void refuse_stack_object(const void* obj, const char* what) {
  std::fprintf(stderr,
               "mnp: MNP_STACK=copy: a %s at %p lives on a coroutine stack; allocate it on the "
               "heap (a parked G's copied frames are not where other Gs would reach them)\n",
               what, obj);
  std::abort();
}

size_t g_stack_used(const G* gp) {
  return gp->copystack ? gp->save_max : stack_high_water(gp->stack);
}

// ---------------------------------------------------------------------------
// park / ready

void gopark(bool (*unlockf)(G*, void*), void* arg, WaitReason reason, int32_t fd, const void* obj) {
  M* mp = getm();
  G* gp = mp->curg;
  gp->wait_reason = reason;
  gp->wait_fd = fd;
  gp->wait_obj = obj;
  gp->wait_since = nanotime_coarse();
  mp->action = M::Action::park;
  mp->unlockf = unlockf;
  mp->unlockarg = arg;
  ctx_switch(&gp->ctx, &mp->g0);
  // Resumed, perhaps on another M: `mp` is stale here.
  gp->wait_reason = WaitReason::none;
  gp->wait_obj = nullptr;
}

void goparkunlock(SpinLock* l, WaitReason reason, const void* obj) {
  gopark(
      [](G*, void* a) {
        static_cast<SpinLock*>(a)->unlock();
        return true;
      },
      l, reason, -1, obj);
}

void goready(G* gp) {
  GStatus st = gp->status.load(std::memory_order_acquire);
  if (st != GStatus::waiting) fatal("goready: G is not waiting");
  gp->status.store(GStatus::runnable, std::memory_order_release);
  stat_add(Stat::wakeups);
  if (tracing()) trace_instant(TraceEv::ready, gp->id);
  M* mp = getm();
  if (mp && mp->p) {
    runqput(mp->p, gp, true);
    wakep();
    return;
  }
  {
    std::lock_guard<std::mutex> l(sched.lock);
    globrunqput_locked(gp);
  }
  startm(nullptr, false);
  if (sched.lastpoll.load() == 0) sched.poller->wake();
}

void wake_netpoller(int64_t when) {
  if (sched.lastpoll.load(std::memory_order_acquire) == 0) {
    int64_t until = sched.poll_until.load(std::memory_order_relaxed);
    if (until == 0 || until > when) sched.poller->wake();
  } else {
    wakep();
  }
}

}  // namespace mnp::rt

// ---------------------------------------------------------------------------
// The public API (mnp/runtime.h).

namespace mnp {

using namespace rt;

namespace {

// copy: the G runs on the shared stack (MNP_STACK=copy), its record and
// closure on the heap; else on a page stack of its own, the record and the
// closure at its top.
void spawn_impl(const detail::SpawnFn& fn, void* src, bool copy) {
  M* mp = getm();
  if (!mp || !mp->p) {
    std::fprintf(stderr, "mnp: fatal error: mnp::go called outside the runtime (no running G)\n");
    std::abort();
  }
  P* pp = mp->p;
  // In copy mode the free lists hold copy-mode Gs only (the main G's page
  // stack is not put back: finish_action).
  G* gp = copy || !sched.copystack ? gfget(pp) : nullptr;
  if (!gp) gp = copy ? galloc_copy() : galloc();
  gp->id = sched.goidgen.fetch_add(1, std::memory_order_relaxed) + 1;
  gp->fn = &fn;
  gp->wait_reason = WaitReason::none;
  gp->held_mutexes = 0;
  if (copy) {
    // Another G owns the shared stack now: the closure goes to the heap and
    // the first frame is built when the G first runs (copystack_enter).
    size_t align = fn.align < 16 ? 16 : fn.align;
    void* mem = ::operator new(fn.size ? fn.size : 1, std::align_val_t(align));
    fn.construct(mem, src);
    gp->closure = mem;
    gp->ctx.sp = nullptr;
  } else {
    // The closure sits just below the G record, on the G's own stack.
    uintptr_t at = (reinterpret_cast<uintptr_t>(gp) - fn.size) & ~(uintptr_t(fn.align) - 1);
    at &= ~uintptr_t(15);
    fn.construct(reinterpret_cast<void*>(at), src);
    gp->closure = reinterpret_cast<void*>(at);
    ctx_make(&gp->ctx, gp->stack.lo, at - reinterpret_cast<uintptr_t>(gp->stack.lo), gentry, gp);
  }
  sched.ngoroutines.fetch_add(1, std::memory_order_relaxed);
  stat_add(Stat::spawns);
  if (tracing()) trace_instant(TraceEv::spawn, gp->id);
  gp->status.store(GStatus::runnable, std::memory_order_release);
  runqput(pp, gp, true);
  wakep();
}

}  // namespace

void detail::spawn(const SpawnFn& fn, void* src) {
  spawn_impl(fn, src, sched.copystack);
}

void yield() {
  M* mp = getm();
  G* gp = mp->curg;
  mp->action = M::Action::yield;
  ctx_switch(&gp->ctx, &mp->g0);
}

void sleep(Duration d) {
  if (d.count() <= 0) {
    yield();
    return;
  }
  G* gp = getg();
  gp->sleep_timer.f = [](void* arg, uintptr_t) { goready(static_cast<G*>(arg)); };
  gp->sleep_timer.arg = gp;
  int64_t when = rt::nanotime() + d.count();
  // Arm the timer on g0, after the G is off its stack: the timer may fire on
  // another M at once.
  gopark(
      [](G* g, void* w) {
        timer_add(&g->sleep_timer, *static_cast<int64_t*>(w));
        return true;
      },
      &when, WaitReason::sleep);
}

void blocking(void (*fn)(void*), void* arg) {
  M* mp = getm();
  G* gp = mp ? mp->curg : nullptr;
  if (!gp) {
    fn(arg);
    return;
  }
  // entersyscall: keep the P, but mark it so that sysmon may take it (and
  // hand it to another M) if fn blocks longer than a short grace period
  // (Go's retake). A short call thus costs no hand-off at all.
  gp->wait_reason = WaitReason::blocking;
  gp->wait_since = nanotime_coarse();
  gp->status.store(GStatus::syscall, std::memory_order_release);
  if (sched.copystack) {
    // Copied stacks: no retake (in_syscall stays 0, so sysmon leaves the P
    // alone). Another M given the P would run Gs on the shared stack that
    // this G is still using; the single P waits instead, as under a plain
    // blocking call. The syscall status keeps sysmon's hog report quiet.
    fn(arg);
    gp->wait_reason = WaitReason::none;
    gp->status.store(GStatus::running, std::memory_order_release);
    return;
  }
  P* pp = mp->p;
  pp->syscall_since.store(rt::nanotime(), std::memory_order_relaxed);
  pp->in_syscall.store(1, std::memory_order_release);
  sched.nsyscall.fetch_add(1, std::memory_order_relaxed);
  fn(arg);
  sched.nsyscall.fetch_sub(1, std::memory_order_relaxed);
  gp->wait_reason = WaitReason::none;
  uint32_t one = 1;
  if (pp->in_syscall.compare_exchange_strong(one, 0, std::memory_order_acq_rel)) {
    gp->status.store(GStatus::running, std::memory_order_release);
    return;  // fast path: sysmon did not take the P
  }
  // exitsyscall: the P was retaken. Take an idle P if there is one, else
  // queue the G and let this M go idle.
  mp = getm();
  mp->p = nullptr;
  P* np;
  {
    std::lock_guard<std::mutex> l(sched.lock);
    np = pidleget_locked();
  }
  if (np) {
    acquirep(mp, np);
    gp->status.store(GStatus::running, std::memory_order_release);
    return;
  }
  mp->action = M::Action::exitsyscall;
  ctx_switch(&gp->ctx, &mp->g0);
}

uint64_t goid() {
  G* gp = getg();
  return gp ? gp->id : 0;
}

int64_t num_goroutines() {
  return sched.ngoroutines.load(std::memory_order_relaxed);
}
int64_t nanotime() {
  return rt::nanotime();
}
int procs() {
  return sched.nprocs;
}

const char* backend_name() {
  return sched.poller ? sched.poller->name() : rt::default_backend();
}

int run(void (*main_fn)(void*), void* arg, const Options& opts) {
  if (getm()) {
    std::fprintf(stderr, "mnp: fatal error: mnp::run called from inside the runtime\n");
    std::abort();
  }
  // Writes to a peer that has gone never kill the process (EPIPE instead).
  signal(SIGPIPE, SIG_IGN);
  if (!sys::fault_init_from_env()) return 2;  // MNP_FAULTS set but invalid (sys/fault.h)

  const char* backend = opts.backend;
  if (!backend || !*backend) backend = std::getenv("MNP_BACKEND");
  if (!backend || !*backend) backend = default_backend();

  // MNP_STACK=copy: copied stacks (sched.h). Read at every run, so that one
  // process (a benchmark) may compare both modes.
  bool copystack = false;
  if (const char* sm = std::getenv("MNP_STACK"); sm && *sm) {
    if (std::strcmp(sm, "copy") == 0) {
      copystack = true;
    } else if (std::strcmp(sm, "page") != 0) {
      std::fprintf(stderr, "mnp: ignoring MNP_STACK=%s (want page or copy)\n", sm);
    }
  }
  if (copystack) {
    if (const char* san = ctx_sanitizer()) {
      std::fprintf(stderr,
                   "mnp: MNP_STACK=copy is not supported under %s (it copies frames behind "
                   "the sanitizer's back); unset MNP_STACK\n",
                   san);
      return 2;
    }
    if (std::strcmp(backend, "uring") == 0) {
      std::fprintf(stderr,
                   "mnp: MNP_STACK=copy cannot run on backend uring: the kernel completes "
                   "reads into buffers on a parked G's stack, which a copied stack has moved "
                   "away; use epoll or uring-poll\n");
      return 2;
    }
  }
  std::string why;
  Poller* poller = make_poller(backend, &why);
  if (!poller) {
    std::fprintf(stderr, "mnp: backend %s unavailable: %s\n", backend, why.c_str());
    return 2;
  }

  int nprocs = opts.procs > 0 ? opts.procs : env_int("MNP_PROCS", 0);
  if (nprocs <= 0) nprocs = usable_cpus();
  if (copystack && nprocs > 1) {
    // One shared stack, which one P uses at a time (sched.h). Said once
    // per process: the tests call run() many times.
    static std::atomic<bool> said{false};
    if (!said.exchange(true))
      std::fprintf(stderr,
                   "mnp: MNP_STACK=copy: running with 1 P instead of %d (copied stacks "
                   "share one stack)\n",
                   nprocs);
    nprocs = 1;
  }
  size_t stack_kib = opts.stack_size ? opts.stack_size / 1024
                                     : static_cast<size_t>(env_int("MNP_STACK_SIZE_KIB", 0));
  if (stack_kib == 0) stack_kib = MNP_DEFAULT_STACK_KIB;

  sched.exiting.store(false);
  sched.seed = 0;
  if (const char* sv = std::getenv("MNP_SCHED_SEED"); sv && *sv) {
    char* end = nullptr;
    sched.seed = std::strtoull(sv, &end, 10);
    if (*end != '\0' || sched.seed == 0) {
      std::fprintf(stderr, "mnp: ignoring MNP_SCHED_SEED=%s (want a number > 0)\n", sv);
      sched.seed = 0;
    }
  }
  sched.nprocs = nprocs;
  sched.stack_size = stack_kib * 1024;
  sched.copystack = copystack;
  sched.shared_owner = nullptr;
  sched.poller = poller;
  sched.lastpoll.store(rt::nanotime());
  sched.poll_until.store(0);
  sched.netpoll_waiters.store(0);
  sched.nmspinning.store(0);
  sched.npidle.store(0);
  sched.runqsize.store(0);
  sched.ngoroutines.store(0);
  sched.goidgen.store(0);
  sched.nextmid.store(0);
  for (int i = 0; i < nprocs; i++) {
    P* pp = new P;
    pp->id = i;
    sched.allp.push_back(pp);
  }
  {
    std::lock_guard<std::mutex> l(sched.lock);
    for (int i = nprocs - 1; i >= 1; i--) pidleput_locked(sched.allp[i]);
  }

  stack_debug_reload();
  stack_set_overflow_describer(describe_overflow);
  if (copystack) sched.shared = stack_alloc(sched.stack_size);
  stack_install_overflow_handler();
  parse_debug_env();
  trace_start(std::getenv("MNP_TRACE"));
  sysmon_start();

  // This thread becomes M0, holding P0, and runs main_fn as G 1.
  M* m0 = new M;
  m0->id = sched.nextmid.fetch_add(1);
  m0->rand = m_rand_init(m0->id);
  sched.allm.push_back(m0);
  tls_m = m0;
  m_note_thread(m0);
  stack_thread_init();
  ctx_init_thread(&m0->g0);
  acquirep(m0, sched.allp[0]);
  // The main G marks itself: once spawned it may be stolen by a spinning M
  // and run to its end before this thread could mark it (main_exited would
  // then never run, and every M would sleep for good).
  // In copy mode too, the main G gets a page stack of its own (sched.h).
  struct MainClosure {
    void (*fn)(void*);
    void* arg;
    void operator()() const {
      getg()->is_main = true;
      fn(arg);
    }
  } mc{main_fn, arg};
  spawn_impl(detail::SpawnOps<MainClosure>::ops, &mc, false);

  schedule_loop(m0);

  // Teardown: every other M leaves its loop (exiting is set); join them.
  if (m0->p) {
    std::lock_guard<std::mutex> l(sched.lock);
    pidleput_locked(releasep(m0));
  }
  for (;;) {
    std::vector<M*> ms;
    {
      std::lock_guard<std::mutex> l(sched.lock);
      ms = sched.allm;
    }
    bool all = true;
    for (M* mp : ms) {
      if (mp != m0 && mp->thread.joinable()) {
        mp->park.release();
        sched.poller->wake();
        mp->thread.join();
        all = false;
      }
    }
    if (all) break;
  }
  ctx_destroy(&m0->g0);
  stack_thread_fini();
  tls_m = nullptr;
  sysmon_stop_and_join();
  print_stack_report();
  trace_stop();

  // Free every G (abandoned ones included: their closures are not run down,
  // as a Go program's goroutines are not at exit) and every P and M.
  for (G* gp : sched.allgs) {
    if (gp->copystack) {
      // Abandoned while alive: its closure is not run down (as above), but
      // its heap memory goes, as a page stack's does.
      if (gp->fn)
        ::operator delete(gp->closure, std::align_val_t(gp->fn->align < 16 ? 16 : gp->fn->align));
      std::free(gp->save_buf);
      delete[] gp->selsudogs;
      ::operator delete(gp->stage, std::align_val_t(64));  // chan.cpp's kStageAlign
      ctx_destroy(&gp->ctx);
      delete gp;
      continue;
    }
    Stack s = gp->stack;
    ctx_destroy(&gp->ctx);  // its TSan fiber (TSan counts fibers as threads)
    gp->~G();
    stack_free(s);
  }
  if (sched.copystack) {
    stack_free(sched.shared);
    sched.shared = Stack{};
    sched.shared_owner = nullptr;
    sched.copystack = false;
  }
  sched.allgs.clear();
  sched.gfree = nullptr;
  for (P* pp : sched.allp) delete pp;
  sched.allp.clear();
  for (M* mp : sched.allm) delete mp;
  sched.allm.clear();
  sched.pidle = nullptr;
  sched.midle = nullptr;
  sched.nmidle = 0;
  sched.runq_head = sched.runq_tail = nullptr;
  delete sched.poller;
  sched.poller = nullptr;
  stack_pool_drain();
  return 0;
}

std::string backend_unavailable_reason(const char* backend) {
  if (!backend) backend = rt::default_backend();
  std::string why;
  Poller* p = make_poller(backend, &why);
  if (!p) return why.empty() ? std::string("unavailable") : why;
  delete p;
  return "";
}

const char* const* backend_names() {
  static const char* const names[] = {"epoll", "uring-poll", "uring", "kqueue", nullptr};
  return names;
}

}  // namespace mnp
