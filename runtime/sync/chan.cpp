// runtime/sync/chan — channels and select (Go's chan.go and select.go).
//
// A channel (Go's hchan) is a lock, an optional ring buffer and two queues of
// waiting Gs, one per direction. A waiting G is represented by a sudog that
// lives in its own frame (mnp/chan.h, detail::Sudog).
//
//                 ┌──────────── ChanCore ─────────────┐
//    senders ───► │ sendq: sudog ⇄ sudog ⇄ ...         │
//                 │ buf:   [ recvx ... sendx ) qcount  │ ───► receivers
//    receivers ─► │ recvq: sudog ⇄ sudog ⇄ ...         │
//                 └────────────────────────────────────┘
//
// Invariants, under the lock (Go's):
//   - sendq is non-empty only when the buffer is full (or there is none) and
//     recvq is empty; recvq is non-empty only when the buffer is empty.
//     So a send first looks for a waiting receiver, then for room; a receive
//     first for a waiting sender, then for a buffered value.
//   - A waiting receiver is handed the value directly: the sender moves it
//     from its own frame into the receiver's (sudog.elem), never through buf.
//     A waiting sender of a full buffered channel is served by the receiver:
//     it takes the oldest value and moves the sender's into the freed slot.
//   - Closing wakes everyone: receivers with "closed" (success = false),
//     senders with "closed" (their send fails). Nobody queues on a closed
//     channel.
//
// Park and wake: the waiting G queues its sudog under the lock and parks
// with gopark, whose commit (on g0, once the G is off its stack) releases the
// lock — so a partner cannot ready the G before it has really stopped. The
// partner dequeues the sudog, moves the value, sets sudog.success and
// G::param (which sudog fired), and calls goready after dropping the lock.
//
// select (selectgo) locks every channel of its cases in address order (one
// global order: two selects over the same channels cannot deadlock), then:
//   pass 1: looks at the cases in a random order (fastrand; fairness) and
//           does the first that can proceed;
//   pass 2: none can: queues one sudog per case, all pointing at one
//           select_done word, and parks once, unlocking in the commit;
//   pass 3: woken by the case that won the select_done CAS (G::param names
//           its sudog), relocks everything and takes its other sudogs off
//           their queues. A partner that finds a sudog whose select_done was
//           already taken skips it (the select was decided elsewhere).
//
// Stacks: with page stacks (the default), sudogs and elem pointers point into
// parked Gs' frames, which never move. With copied stacks (MNP_STACK=copy,
// sched.h) a parked G's frames may be in a heap buffer while the shared stack
// serves another G, so a copy-mode G keeps everything a partner touches off
// its stack:
//   - its sudogs: chan send/receive use the one in the G record (G::sudog),
//     select a per-G array (G::selsudogs) and the decision word
//     G::select_done. The queues link only off-stack nodes, which a partner
//     may walk and unlink at any time;
//   - its value: elem points at a staging slot in the G record's heap area
//     (G::stage), not into the frame. A sender moves its value there before
//     it parks (and back if the channel closes); a receiver finds the value
//     there when it wakes and moves it into its frame itself, on its own
//     stack. Two extra moves per parked hand-off, in copy mode only.
// Why not translate frame addresses to the saved copy instead (write into
// save_buf at the offset the frame will have)? Because a move constructor
// may store the address of the object itself: a short std::string built in
// save_buf would point into save_buf, and once the frame is copied back to
// the stack it would point at a stale heap buffer (free(): invalid pointer;
// CopyStack.ReceiverTakesParkedSendersValue found it). With staging, every
// object is built at the address it lives at. Go moves stacks too and fixes
// pointers up afterwards (adjustsudogs); it can, because its compiler knows
// where the pointers are.
#include "mnp/chan.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "sched/sched.h"

namespace mnp::detail {

using namespace rt;

namespace {

struct WaitQ {
  Sudog* first = nullptr;
  Sudog* last = nullptr;

  void enqueue(Sudog* sg) {
    sg->next = nullptr;
    sg->prev = last;
    if (last)
      last->next = sg;
    else
      first = sg;
    last = sg;
  }

  // Takes the first waiter still to be had. A select's sudog whose select
  // was decided by another case is unlinked and skipped; its G removes its
  // remaining sudogs itself once it holds the locks again.
  Sudog* dequeue() {
    for (;;) {
      Sudog* sg = first;
      if (!sg) return nullptr;
      first = sg->next;
      if (first)
        first->prev = nullptr;
      else
        last = nullptr;
      sg->next = sg->prev = nullptr;
      if (sg->select_done) {
        uint32_t zero = 0;
        if (!sg->select_done->compare_exchange_strong(zero, 1, std::memory_order_acq_rel)) continue;
      }
      return sg;
    }
  }

  // Removes sg, if it is still queued (a partner may have dequeued and
  // skipped it already: Go's dequeueSudoG).
  void remove(Sudog* sg) {
    Sudog* x = sg->prev;
    Sudog* y = sg->next;
    if (x) {
      if (y) {
        x->next = y;
        y->prev = x;
      } else {
        x->next = nullptr;
        last = x;
      }
    } else if (y) {
      y->prev = nullptr;
      first = y;
    } else if (first == sg) {  // the only element
      first = last = nullptr;
    }
    sg->next = sg->prev = nullptr;
  }
};

}  // namespace

// Go's hchan.
struct ChanCore {
  SpinLock lock;
  std::atomic<uint32_t> refs{1};  // Chan handles; the last one frees
  const ElemOps* ops = nullptr;   // immutable
  size_t cap = 0;                 // immutable
  size_t stride = 0;              // bytes per slot in buf (immutable)
  unsigned char* buf = nullptr;   // cap slots, right after this struct
  // Under lock; qcount is also read without it by len() (relaxed).
  std::atomic<size_t> qcount{0};
  size_t sendx = 0;  // next slot to fill
  size_t recvx = 0;  // next slot to drain
  bool closed = false;
  WaitQ recvq;  // waiting receivers
  WaitQ sendq;  // waiting senders

  void* slot(size_t i) const { return buf + i * stride; }
};

namespace {

size_t round_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

size_t core_align(const ElemOps* ops) {
  return std::max(alignof(ChanCore), ops->align);
}

// ---- Copied stacks: what a copy-mode G parks with (see "Stacks" above) ----

// The alignment of every staging area; a T that wants more is refused.
constexpr size_t kStageAlign = 64;

// gp's staging area, at least `size` bytes (owned by gp; freed at teardown).
unsigned char* stage_area(G* gp, size_t size) {
  if (gp->stage_cap < size) {
    ::operator delete(gp->stage, std::align_val_t(kStageAlign));
    gp->stage_cap = size < 64 ? 64 : size;
    gp->stage =
        static_cast<unsigned char*>(::operator new(gp->stage_cap, std::align_val_t(kStageAlign)));
  }
  return gp->stage;
}

void check_stage_align(const ElemOps* ops) {
  if (ops->align > kStageAlign)
    chan_fatal("MNP_STACK=copy: a channel element type aligned to more than 64 bytes");
}

// A copy-mode sender about to park: its value goes to the staging slot, so
// that a receiver never reaches into the frame. src stays a moved-from T.
void* stage_send(G* gp, const ElemOps* ops, void* src) {
  check_stage_align(ops);
  void* st = stage_area(gp, ops->size);
  ops->move_to(st, src);
  return st;
}

// The sender woke: sent (the staged, moved-from T just goes), or not (the
// channel closed: the value goes back to src, which callers see unmoved).
void unstage_send(const ElemOps* ops, void* src, void* st, bool sent) {
  if (!sent) {
    ops->destroy(src);
    ops->move_to(src, st);
  }
  ops->destroy(st);
}

// The receiver woke with a value in the staging slot: move it to dst.
void unstage_recv(const ElemOps* ops, void* dst, void* st) {
  ops->move_to(dst, st);
  ops->destroy(st);
}

// The sudog of a blocking send or receive: in the frame, or in the G record
// for a copy-mode G.
inline Sudog* chan_sudog(G* gp, Sudog* local) {
  if (__builtin_expect(!gp->copystack, true)) return local;
  gp->sudog = Sudog{};
  return &gp->sudog;
}

// A copy-mode select's n sudogs (indexed by case), from the G's array.
Sudog* select_sudogs(G* gp, int n) {
  if (gp->nselsudogs < n) {
    delete[] gp->selsudogs;
    gp->nselsudogs = n < 8 ? 8 : n;
    gp->selsudogs = new Sudog[static_cast<size_t>(gp->nselsudogs)];
  }
  for (int i = 0; i < n; i++) gp->selsudogs[i] = Sudog{};
  return gp->selsudogs;
}

// A sender found a waiting receiver sg: move the value into its frame and
// tell it. The caller unlocks, then readies sg->g.
void send_direct(ChanCore* c, Sudog* sg, void* src) {
  c->ops->move_to(sg->elem, src);
  sg->success = true;
  sg->g->param = reinterpret_cast<uintptr_t>(sg);
}

// A receiver found a waiting sender sg: take its value (unbuffered), or the
// oldest buffered one and put sg's value in the freed slot (full buffer).
void recv_direct(ChanCore* c, Sudog* sg, void* dst) {
  if (c->cap == 0) {
    c->ops->move_to(dst, sg->elem);
  } else {
    void* s = c->slot(c->recvx);
    c->ops->move_to(dst, s);
    c->ops->destroy(s);
    c->ops->move_to(s, sg->elem);
    if (++c->recvx == c->cap) c->recvx = 0;
    c->sendx = c->recvx;  // the buffer stays full
  }
  sg->success = true;
  sg->g->param = reinterpret_cast<uintptr_t>(sg);
}

void buf_put(ChanCore* c, void* src) {
  c->ops->move_to(c->slot(c->sendx), src);
  if (++c->sendx == c->cap) c->sendx = 0;
  c->qcount.store(c->qcount.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void buf_take(ChanCore* c, void* dst) {
  void* s = c->slot(c->recvx);
  c->ops->move_to(dst, s);
  c->ops->destroy(s);
  if (++c->recvx == c->cap) c->recvx = 0;
  c->qcount.store(c->qcount.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

// Send or receive on a nil channel: park for good, as Go does.
[[noreturn]] void block_forever(WaitReason reason) {
  gopark(nullptr, nullptr, reason);
  chan_fatal("a goroutine blocked on a nil channel was woken");
}

bool park_commit_unlock(G*, void* lock) {
  static_cast<SpinLock*>(lock)->unlock();
  return true;
}

// Parks gp on queue q of c (whose lock the caller holds; the park's commit
// releases it) until a partner or close takes sg; elem is where the value
// is (send) or goes (receive).
void chan_park(G* gp, ChanCore* c, WaitQ& q, Sudog* sg, void* elem, WaitReason why) {
  sg->g = gp;
  sg->c = c;
  sg->elem = elem;
  gp->param = 0;
  gp->elem = elem;
  q.enqueue(sg);
  stat_add(Stat::parks_chan);
  gopark(park_commit_unlock, &c->lock, why, -1, c);
  gp->elem = nullptr;
  gp->param = 0;
}

}  // namespace

void chan_fatal(const char* msg) {
  std::fprintf(stderr, "mnp: fatal error: %s\n", msg);
  std::abort();
}

ChanCore* chan_make(const ElemOps* ops, size_t cap) {
  size_t align = core_align(ops);
  size_t stride = round_up(ops->size, ops->align);
  size_t head = round_up(sizeof(ChanCore), align);
  if (cap != 0 && stride != 0 && cap > (SIZE_MAX - head) / stride)
    chan_fatal("makechan: size out of range");
  void* mem = ::operator new(head + cap * stride, std::align_val_t(align));
  auto* c = new (mem) ChanCore;
  c->ops = ops;
  c->cap = cap;
  c->stride = stride;
  c->buf = static_cast<unsigned char*>(mem) + head;
  return c;
}

void chan_ref(ChanCore* c) noexcept {
  c->refs.fetch_add(1, std::memory_order_relaxed);
}

void chan_unref(ChanCore* c) noexcept {
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // The last handle: nobody can be queued (a waiter holds a handle).
  size_t n = c->qcount.load(std::memory_order_relaxed);
  for (size_t i = 0, x = c->recvx; i < n; i++) {
    c->ops->destroy(c->slot(x));
    if (++x == c->cap) x = 0;
  }
  size_t align = core_align(c->ops);
  c->~ChanCore();
  ::operator delete(static_cast<void*>(c), std::align_val_t(align));
}

size_t chan_len(const ChanCore* c) noexcept {
  return c->qcount.load(std::memory_order_relaxed);
}

size_t chan_cap(const ChanCore* c) noexcept {
  return c->cap;
}

// Go's chansend.
ChanStatus chan_send(ChanCore* c, void* src, bool block) {
  if (!c) {
    if (!block) return ChanStatus::would_block;
    block_forever(WaitReason::chan_send);
  }
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    return ChanStatus::closed;
  }
  if (Sudog* sg = c->recvq.dequeue()) {
    send_direct(c, sg, src);
    c->lock.unlock();
    goready(sg->g);
    return ChanStatus::ok;
  }
  if (c->qcount.load(std::memory_order_relaxed) < c->cap) {
    buf_put(c, src);
    c->lock.unlock();
    return ChanStatus::ok;
  }
  if (!block) {
    c->lock.unlock();
    return ChanStatus::would_block;
  }
  // Wait for a receiver (or close). A receiver moves the value out of src,
  // which stays in this frame while we are parked.
  G* gp = getg();
  Sudog local;
  Sudog* sg = chan_sudog(gp, &local);
  chan_park(gp, c, c->sendq, sg, gp->copystack ? stage_send(gp, c->ops, src) : src,
            WaitReason::chan_send);
  if (gp->copystack) unstage_send(c->ops, src, sg->elem, sg->success);
  return sg->success ? ChanStatus::ok : ChanStatus::closed;
}

// Go's chanrecv.
ChanStatus chan_recv(ChanCore* c, void* dst, bool block) {
  if (!c) {
    if (!block) return ChanStatus::would_block;
    block_forever(WaitReason::chan_recv);
  }
  c->lock.lock();
  if (c->closed && c->qcount.load(std::memory_order_relaxed) == 0) {
    c->lock.unlock();
    return ChanStatus::closed;
  }
  if (Sudog* sg = c->sendq.dequeue()) {
    recv_direct(c, sg, dst);
    c->lock.unlock();
    goready(sg->g);
    return ChanStatus::ok;
  }
  if (c->qcount.load(std::memory_order_relaxed) > 0) {
    buf_take(c, dst);
    c->lock.unlock();
    return ChanStatus::ok;
  }
  if (!block) {
    c->lock.unlock();
    return ChanStatus::would_block;
  }
  // Wait for a sender (or close): it constructs the value in dst.
  G* gp = getg();
  Sudog local;
  Sudog* sg = chan_sudog(gp, &local);
  if (gp->copystack) check_stage_align(c->ops);
  chan_park(gp, c, c->recvq, sg, gp->copystack ? stage_area(gp, c->ops->size) : dst,
            WaitReason::chan_recv);
  if (gp->copystack && sg->success) unstage_recv(c->ops, dst, sg->elem);
  return sg->success ? ChanStatus::ok : ChanStatus::closed;
}

// Go's closechan.
bool chan_close(ChanCore* c) {
  c->lock.lock();
  if (c->closed) {
    c->lock.unlock();
    return false;
  }
  c->closed = true;
  // Collect every waiter (linked through G::schedlink, free while a G waits
  // on a channel), then ready them without the lock.
  G* list = nullptr;
  for (WaitQ* q : {&c->recvq, &c->sendq}) {
    while (Sudog* sg = q->dequeue()) {
      sg->success = false;  // a receiver's elem is left unconstructed
      sg->g->param = reinterpret_cast<uintptr_t>(sg);
      sg->g->schedlink = list;
      list = sg->g;
    }
  }
  c->lock.unlock();
  while (list) {
    G* gp = list;
    list = gp->schedlink;
    gp->schedlink = nullptr;
    goready(gp);
  }
  return true;
}

// ---------------------------------------------------------------------------
// select

namespace {

// Locks the channels of lockorder[0, n) (sorted by address), each once.
void sellock(SelectCase* cases, const uint16_t* lockorder, int n) {
  ChanCore* last = nullptr;
  for (int i = 0; i < n; i++) {
    ChanCore* c = cases[lockorder[i]].c;
    if (c != last) c->lock.lock();
    last = c;
  }
}

void selunlock(SelectCase* cases, const uint16_t* lockorder, int n) {
  // Backwards, as Go does (any order would do).
  for (int i = n - 1; i >= 0; i--) {
    ChanCore* c = cases[lockorder[i]].c;
    if (i > 0 && c == cases[lockorder[i - 1]].c) continue;  // unlock at the first instance
    c->lock.unlock();
  }
}

struct SelParkArg {
  SelectCase* cases;
  const uint16_t* lockorder;
  int n;
};

// The park commit of a select (Go's selparkcommit), on g0. From the moment a
// channel is unlocked, a partner may wake the G, which then runs pass 3 on
// another M and relocks the channels in order: it blocks on the first one
// still held here. So this may read the G's frame (the lock order, the
// cases) only while it still holds a lock the G needs; once the last lock
// is dropped it must not touch the frame again.
bool selparkcommit(G*, void* a) {
  auto* arg = static_cast<SelParkArg*>(a);
  SelectCase* cases = arg->cases;
  const uint16_t* lockorder = arg->lockorder;
  int n = arg->n;
  ChanCore* last = nullptr;
  for (int i = 0; i < n; i++) {
    ChanCore* c = cases[lockorder[i]].c;
    if (c != last && last) last->lock.unlock();
    last = c;
  }
  if (last) last->lock.unlock();
  return true;
}

}  // namespace

// Go's selectgo.
int selectgo(SelectCase* cases, uint16_t* order, int n, bool block, bool* ok) {
  uint16_t* pollorder = order;
  uint16_t* lockorder = order + n;
  *ok = false;

  // A random permutation of the cases that have a channel (a nil channel's
  // case never fires and is left out), then the same cases by address.
  int norder = 0;
  for (int i = 0; i < n; i++) {
    if (!cases[i].c) continue;
    int j = static_cast<int>(fastrand() % static_cast<uint32_t>(norder + 1));
    pollorder[norder] = pollorder[j];
    pollorder[j] = static_cast<uint16_t>(i);
    norder++;
  }
  if (norder == 0) {
    if (!block) return -1;
    block_forever(n == 0 ? WaitReason::select_no_cases : WaitReason::select);
  }
  std::copy(pollorder, pollorder + norder, lockorder);
  std::sort(lockorder, lockorder + norder, [cases](uint16_t a, uint16_t b) {
    return std::less<ChanCore*>()(cases[a].c, cases[b].c);
  });

  sellock(cases, lockorder, norder);

  // Pass 1: the first case, in poll order, that can go now.
  for (int k = 0; k < norder; k++) {
    int i = pollorder[k];
    SelectCase& cs = cases[i];
    ChanCore* c = cs.c;
    if (cs.send) {
      if (c->closed) {
        selunlock(cases, lockorder, norder);
        *ok = false;  // send on a closed channel: the caller reports it
        return i;
      }
      if (Sudog* sg = c->recvq.dequeue()) {
        send_direct(c, sg, cs.elem);
        selunlock(cases, lockorder, norder);
        goready(sg->g);
        *ok = true;
        return i;
      }
      if (c->qcount.load(std::memory_order_relaxed) < c->cap) {
        buf_put(c, cs.elem);
        selunlock(cases, lockorder, norder);
        *ok = true;
        return i;
      }
    } else {
      if (Sudog* sg = c->sendq.dequeue()) {
        recv_direct(c, sg, cs.elem);
        selunlock(cases, lockorder, norder);
        goready(sg->g);
        *ok = true;
        return i;
      }
      if (c->qcount.load(std::memory_order_relaxed) > 0) {
        buf_take(c, cs.elem);
        selunlock(cases, lockorder, norder);
        *ok = true;
        return i;
      }
      if (c->closed) {
        selunlock(cases, lockorder, norder);
        *ok = false;
        return i;
      }
    }
  }

  if (!block) {
    selunlock(cases, lockorder, norder);
    return -1;
  }

  // Pass 2: queue on every channel, park once. Copied stacks: the sudogs
  // and the decision word off the stack (see "Stacks" above).
  G* gp = getg();
  std::atomic<uint32_t> local_done{0};
  std::atomic<uint32_t>* done = &local_done;
  Sudog* sgs = nullptr;  // copied stacks: sgs[i] is case i's sudog
  unsigned char* stage = nullptr;
  if (__builtin_expect(gp->copystack, false)) {
    sgs = select_sudogs(gp, n);
    gp->select_done.store(0, std::memory_order_relaxed);
    done = &gp->select_done;
    // One staging area, a slot per case (in lock order), laid out once.
    size_t total = 0;
    for (int k = 0; k < norder; k++) {
      const ElemOps* ops = cases[lockorder[k]].c->ops;
      check_stage_align(ops);
      total = round_up(total, ops->align ? ops->align : 1) + ops->size;
    }
    stage = stage_area(gp, total);
  }
  auto sudog_of = [&](int i) -> Sudog& { return sgs ? sgs[i] : cases[i].sg; };
  gp->param = 0;
  size_t stage_off = 0;
  for (int k = 0; k < norder; k++) {
    SelectCase& cs = cases[lockorder[k]];
    Sudog& sg = sudog_of(lockorder[k]);
    sg.g = gp;
    sg.c = cs.c;
    sg.elem = cs.elem;
    if (stage) {
      const ElemOps* ops = cs.c->ops;
      stage_off = round_up(stage_off, ops->align ? ops->align : 1);
      sg.elem = stage + stage_off;
      stage_off += ops->size;
      if (cs.send) ops->move_to(sg.elem, cs.elem);
    }
    sg.select_done = done;
    sg.success = false;
    if (cs.send)
      cs.c->sendq.enqueue(&sg);
    else
      cs.c->recvq.enqueue(&sg);
  }
  stat_add(Stat::parks_chan);
  SelParkArg arg{cases, lockorder, norder};
  gopark(selparkcommit, &arg, WaitReason::select);

  // Pass 3: the winner set param to its sudog; unqueue the others.
  auto* won = reinterpret_cast<Sudog*>(gp->param);
  gp->param = 0;
  sellock(cases, lockorder, norder);
  int chosen = -1;
  for (int k = 0; k < norder; k++) {
    int i = lockorder[k];
    SelectCase& cs = cases[i];
    Sudog* sg = &sudog_of(i);
    if (sg == won) {
      chosen = i;
      *ok = won->success;
    } else if (cs.send) {
      cs.c->sendq.remove(sg);
    } else {
      cs.c->recvq.remove(sg);
    }
  }
  selunlock(cases, lockorder, norder);
  if (chosen < 0) chan_fatal("selectgo: woken without a case");
  if (stage) {
    // Every sudog is off its queue: settle the staging slots. The chosen
    // receive takes its value; every send gets its value back unless it is
    // the chosen one and went through.
    for (int k = 0; k < norder; k++) {
      int i = lockorder[k];
      SelectCase& cs = cases[i];
      void* st = sudog_of(i).elem;
      if (cs.send)
        unstage_send(cs.c->ops, cs.elem, st, i == chosen && *ok);
      else if (i == chosen && *ok)
        unstage_recv(cs.c->ops, cs.elem, st);
    }
  }
  return chosen;
}

}  // namespace mnp::detail

// ---------------------------------------------------------------------------
// after(d): a channel that receives once, from a timer.

namespace mnp {

namespace {

struct AfterTimer {
  rt::Timer t;
  Chan<Deadline> ch{1};
};

}  // namespace

Chan<Deadline> after(Duration d) {
  auto* at = new AfterTimer;
  Chan<Deadline> ch = at->ch;
  at->t.f = [](void* arg, uintptr_t) {
    // Runs on an M, outside the timer heap's lock: a non-blocking send (the
    // buffer has room for this one value), then the timer is done for good.
    auto* a = static_cast<AfterTimer*>(arg);
    a->ch.try_send(Clock::now());
    delete a;
  };
  at->t.arg = at;
  int64_t when = rt::nanotime() + (d.count() > 0 ? d.count() : 0);
  rt::timer_add(&at->t, when);
  return ch;
}

}  // namespace mnp
