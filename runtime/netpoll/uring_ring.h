// runtime/netpoll/uring_ring — the io_uring instance under both io_uring
// backends (poller_uring_poll.cpp: readiness; poller_uring.cpp: completion).
//
// What they share, and what this file owns:
//   - setup: flags behind probes, falling back one flag at a time on EINVAL,
//     and the one-line reason when io_uring cannot be used at all;
//   - the submission queue: any M (any G) prepares SQEs under Ring::sq_lock;
//     they are handed to the kernel in batches, by flush() (once per
//     scheduling round, see the policy below) or when the SQ is full;
//   - the completion queue: poll() and flush() reap it and hand each CQE to
//     the backend (complete()), which turns it into runnable Gs;
//   - the wake-up: an eventfd with a multishot POLL_ADD kept armed in the ring;
//   - the provided-buffer ring of multishot recv (setup_bufs: liburing 2.3
//     lacks io_uring_setup_buf_ring), freed after the ring itself.
//
// Features, each behind its probe (Features; MNP_URING_VERBOSE=1 prints
// them): setup flags by EINVAL fallback; multishot accept (5.19, poller_uring
// .cpp, with DONTWAIT from 6.10 and EINVAL fallbacks down to single-shot);
// multishot recv + buffer ring (6.0, opt-in). Their measured effects are at
// the top of poller_uring.cpp.
//
// ── Rings, Ps and Ms ──────────────────────────────────────────────────────
// One ring per runtime (per Poller), shared by every M:
//
//      G on M1 ─┐  prep SQE                         ┌─ flush/poll(0) on M1..Mn
//      G on M2 ─┼─► [sq_lock]  SQ ──► io_uring_enter │  (try cq_lock, reap)
//      G on Mn ─┘   (memory only)     (submit batch,  ├─ poll(delay) on one M
//                                     by flush())    │  (io_uring_enter GETEVENTS
//                                          CQ ───────┘   without any lock, then
//                                                         cq_lock and reap)
//
// Why not a ring per M or per P (IO_URING.md, "Threads and rings"):
//   - Go's model moves Gs between Ms and lets one M at a time sleep in the
//     poller. A ring per M needs every M with operations in flight to sleep
//     in *its own* ring (Photon pauses stealing for that); the scheduler
//     here parks idle Ms on a futex and has exactly one poller M.
//   - SINGLE_ISSUER (6.0) / DEFER_TASKRUN (6.1) tie submit (and, for
//     DEFER_TASKRUN, completion) to one thread; any M submits here, so
//     neither flag is set.
//   - ASYNC_CANCEL only finds operations of its own ring; a deadline or a
//     close runs on whatever M fires it, so a ring per P still needs a lock
//     for cancels, and a "hub" to let one M wait on every ring.
//   The alternative, a ring per P, is built in for measurement
//   (MNP_URING_RINGS=per-p): a G submits to the ring of the P it runs on,
//   cancels go to the op's ring, and the blocking poll waits in a hub ring
//   holding a one-shot POLL_ADD on each P ring's fd. Echo ping-pong, 64 B,
//   2-CPU machine, medians of 5 interleaved runs (issue 4's report):
//   50 conns, MNP_PROCS=2: shared 308k msgs/s, 3.08 µs CPU/msg; per-P 302k,
//   3.11 µs; 1000 conns, MNP_PROCS=4: shared 229k, 4.52 µs; per-P 234k,
//   4.57 µs, with 0.056 vs 0.085 io_uring_enter per message (the hub's
//   re-arms). A tie within noise: the SQ lock is not where the time goes,
//   so the simpler mapping is kept. (Per-P rings also appear lazily during
//   a run, so the fd-baseline test fails in that mode by design.)
//
// Thread-exit cancellation: the kernel cancels an operation when the thread
// that submitted it exits (-ECANCELED; kernel io_uring/poll.c, PF_EXITING).
// Ms never exit while the runtime runs (mnp::run joins them only after the
// main G returned), so that only matters at teardown, where every
// operation is abandoned anyway. The backends still treat an unexpected
// -ECANCELED as "retry" rather than as an error.
//
// Task work: a socket operation that had to wait completes through task
// work queued to its *submitter* thread (the M that flushed the SQ). An M
// asleep on its futex is woken for it (TWA_SIGNAL; also with COOP_TASKRUN,
// whose NO_IPI only spares a *running* thread the interrupt: checked here,
// see the report). COOP_TASKRUN (5.19) is therefore safe with many
// submitters and saves IPIs; it is on by default, behind its probe
// (1000 conns: 4.37 µs CPU/msg with it, 5.12 µs without, MNP_URING_COOP=0).
//
// ── Counting (mnp/stats.h) ────────────────────────────────────────────────
// Every io_uring_enter counts once: as sys_poll_wait if it waits
// (GETEVENTS), else as sys_uring_enter. (Before, a waiting enter counted in
// both, and stat_syscalls, their sum, said 4.00 per message at 1 connection
// for 3 real ones. The shoot-out's strace said 21.9: its -qq hid the
// "attached" line it waited 5 s for, and it divided the whole trace by the
// window's messages; it now counts only calls inside the window.)
//
// ── Batching (flush) ──────────────────────────────────────────────────────
// SQEs wait in the SQ until flush(), which the scheduler calls at the top
// of each round of findRunnable. A round comes after every park, so
// "submit at every flush" would still be one io_uring_enter per operation
// whenever Gs run one after another. The default policy submits only when
// the M is about to look further than its own P (its run queue is empty:
// it may poll, steal, or sleep next), or when the batch is large (kBatch)
// or old (kMaxDelayNs). MNP_URING_SUBMIT=round submits at every flush,
// MNP_URING_SUBMIT=op right after each SQE (the unbatched baseline).
// Echo, 1000 conns, 64 B: 0.034 io_uring_enter per message and 4.37 µs
// CPU/msg deferred; 2.0 and 5.10 µs with "op"; "round" is no better than
// "op" (2.0), for the reason above.
// Deferred to the poll: when no M waits in the kernel, the M about to
// look further will most likely become that M, and its blocking poll
// submits the SQ with its wait (one io_uring_enter, not a submit and then a
// wait). 1 connection, ping-pong: 3 enters per message before, 2 after
// (strace agrees: 2.00); MNP_URING_DEFER_TO_POLL=0 turns it off.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>

#include "netpoll/poller.h"
#include "sched/lock.h"

// The kernel orders an SQE before its CQE, so what a G wrote before it
// queued an operation is visible to the M that reaps the completion: an
// ordering ThreadSanitizer cannot see (it goes through shared memory the
// kernel writes). Told as a release on the ring when an SQE is taken and
// an acquire when CQEs are reaped — per ring, so slightly coarser than the
// kernel's per-operation order.
#if defined(__SANITIZE_THREAD__)
#define MNP_URING_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MNP_URING_TSAN 1
#endif
#endif
#ifdef MNP_URING_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif
namespace mnp::rt::uring {
inline void tsan_release([[maybe_unused]] void* ring) {
#ifdef MNP_URING_TSAN
  __tsan_release(ring);
#endif
}
inline void tsan_acquire([[maybe_unused]] void* ring) {
#ifdef MNP_URING_TSAN
  __tsan_acquire(ring);
#endif
}
}  // namespace mnp::rt::uring

namespace mnp::rt {

struct G;
struct PollDesc;

namespace uring {

// user_data layout: | kind:8 | gen:24 | index:32 |. `index` is the
// pollDesc's position in the pdcache (never freed, so always resolvable);
// `gen` is a generation (the pollDesc's fdseq, or an operation's counter),
// so a CQE for an older registration or operation is recognised and dropped.
enum class Kind : uint8_t {
  none = 0,
  wake,         // the eventfd's multishot poll
  ignore,       // cancels, poll removals: their own CQEs carry nothing we need
  poll,         // uring-poll: a pollDesc's multishot readiness poll
  op_read,      // uring: the read side's operation (recv, read, accept, poll-in)
  op_write,     // uring: the write side's operation (send, write, connect, poll-out)
  remove,       // uring-poll: a POLL_REMOVE whose failure matters (-EALREADY: try again)
  ring,         // per-P mode: the hub's poll on a P's ring fd (index: the ring)
  acc,          // uring: a listener's multishot accept (gen: its arm counter)
  acc_poll,     // uring: a listener's one-shot readiness poll between accept bursts
  acc_cancel,   // uring: the cancel of either, at close (-EALREADY: ask again)
  recv_ms,      // uring: a connection's multishot recv into the buffer ring
  recv_cancel,  // uring: the cancel of a multishot recv (-EALREADY: ask again)
  buf_ring,     // uring: (reserved) the buffer ring's own bookkeeping
};
constexpr uint32_t kGenMask = (1u << 24) - 1;

inline uint64_t tag(Kind k, uint32_t gen, uint32_t index) {
  return (static_cast<uint64_t>(k) << 56) | (static_cast<uint64_t>(gen & kGenMask) << 32) | index;
}
inline Kind tag_kind(uint64_t t) {
  return static_cast<Kind>(t >> 56);
}
inline uint32_t tag_gen(uint64_t t) {
  return static_cast<uint32_t>(t >> 32) & kGenMask;
}
inline uint32_t tag_index(uint64_t t) {
  return static_cast<uint32_t>(t);
}

// Per-pollDesc state of both io_uring backends, in pd->backend: one type for
// both, because a pollDesc outlives a run and the next run may use the
// other backend. Allocated at the pollDesc's first open, never freed (nor is
// the pollDesc: a late CQE may still look here).
enum OpState : uint8_t { opIdle, opInflight, opDone };

// uring: one operation (one per direction: fdMutex lets one read and one
// write be in flight per fd). See poller_uring.cpp for its life.
struct Op {
  std::atomic<uint16_t> ring{0};  // the ring it was submitted to (cancels go there)
  // Written by the op's G (which holds the direction's fdMutex lock) before
  // the SQE is queued; read by the reaper after the CQE.
  std::atomic<uint32_t> gen{0};
  std::atomic<uint8_t> state{opIdle};  // G: idle→inflight, done→idle; reaper: inflight→done
  std::atomic<bool> cancel_sent{false};
  std::atomic<int32_t> res{0};  // written by the reaper before state = done
};

// uring: a listener's accepted-but-not-yet-returned connections and the
// listener-owned operation that fills them (poller_uring.cpp, "Multishot
// accept"). Under pd->lock. Allocated at the first accept, never freed.
struct AcceptState {
  std::deque<int> fds;      // accepted by the kernel, not yet returned by accept()
  int err = 0;              // what ended the multishot (EMFILE, ...), for the next accept()
  uint8_t armed = 0;        // 0 nothing in flight, 1 the multishot accept, 2 the readiness poll
  uint8_t level = 0;        // 0 multishot+DONTWAIT, 1 multishot, 2 single-shot (fallbacks)
  uint8_t armed_level = 0;  // the level the multishot in flight was armed with
  bool cancel_sent = false;
  uint16_t ring = 0;  // the ring the armed operation lives on
  uint32_t gen = 0;   // bumped at every arm: the tag of the operation in flight
};

// uring: a connection's multishot recv (poller_uring.cpp, "Multishot recv").
// Bytes that arrived in provided buffers and did not fit the caller's read
// wait here, in order, for the next read. Under pd->lock.
struct RecvState {
  struct Chunk {
    uint16_t bid;  // the provided buffer holding it (given back once consumed)
    uint32_t off, len;
  };
  std::deque<Chunk> chunks;  // received, not yet read: in arrival order
  size_t buffered = 0;       // bytes in chunks
  int end = 0;               // 0, or what ended the stream: 1 EOF, or an errno
  bool armed = false;        // a multishot recv is in flight
  bool cancel_sent = false;
  bool stopped = false;  // ended by -ENOBUFS or by the cap: re-arm when drained
  uint16_t ring = 0;
  uint32_t gen = 0;
};

struct FdState {
  Op op[2];  // uring: [0] read side, [1] write side
  // Made by the G on first use (under pd->lock), read by the M reaping a
  // CQE: atomic, release-stored once, acquire-loaded (the SQE's trip
  // through the kernel orders them too, invisibly to the C++ model).
  std::atomic<AcceptState*> acc{nullptr};  // uring: listeners only
  std::atomic<RecvState*> rcv{nullptr};    // uring with multishot recv: connections only
  // uring-poll: the multishot poll may still post CQEs (it holds a reference
  // to the file until its last CQE), and the ring it lives on. Under pd->lock.
  bool poll_armed = false;
  uint16_t poll_ring = 0;
  // uring: the last read filled the caller's buffer, so more is probably
  // waiting: try the next read and write as plain syscalls first (see
  // "Streaming" in poller_uring.cpp). Only a hint, and relaxed.
  std::atomic<bool> streaming{false};
};

FdState* fd_state(PollDesc* pd);

// What the ring was set up with (each behind its probe).
struct Features {
  bool cqsize = false;        // IORING_SETUP_CQSIZE (5.5): a CQ larger than the SQ
  bool submit_all = false;    // IORING_SETUP_SUBMIT_ALL (5.18): a bad SQE does not stop the batch
  bool coop_taskrun = false;  // IORING_SETUP_COOP_TASKRUN (5.19): no IPI for task work
  bool cqe_skip = false;      // IORING_FEAT_CQE_SKIP (5.17): no CQE for a successful cancel
  bool reg_ring = false;      // IORING_REGISTER_RING_FDS (5.18): per-M registered ring fd
  bool cancel_fd = false;     // IORING_ASYNC_CANCEL_FD|ALL (5.19)
  bool accept_multi = false;  // multishot accept (5.19) in use (MNP_URING_ACCEPT)
  bool recv_multi = false;  // multishot recv + a provided buffer ring (6.0) in use (MNP_URING_RECV)
  std::string describe() const;
};

enum class SubmitPolicy : uint8_t { defer, round, op };

// A provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19), set up by hand:
// liburing 2.3 lacks io_uring_setup_buf_ring (IO_URING.md). `entries`
// buffers of `size` bytes in one mapping; the kernel picks one per
// multishot recv CQE, the reader gives it back once it has copied it out.
struct BufRing {
  io_uring_buf_ring* br = nullptr;  // the ring of buffer descriptors (page-aligned)
  size_t br_bytes = 0;
  char* mem = nullptr;  // the buffers
  size_t mem_bytes = 0;
  unsigned entries = 0, size = 0;
  uint16_t bgid = 0;
  SpinLock lock;  // the descriptor ring's tail: any M gives buffers back
  char* addr(uint16_t bid) const { return mem + static_cast<size_t>(bid) * size; }
};

// One io_uring instance and its two locks.
struct Ring {
  io_uring ring{};
  int index = 0;    // in UringBase::rings_
  uint64_t id = 0;  // unique in the process: the registered-fd cache key
  // The SQ: sq_lock guards liburing's sq fields.
  SpinLock sq_lock;
  // SQEs prepared and not yet handed to an enter (read without the lock by
  // flush's fast path), and when the oldest of them was (defer policy).
  std::atomic<uint32_t> queued{0};
  std::atomic<int64_t> first_queued{0};
  // The CQ: one reaper at a time. poll(0) try-locks it; the blocking poll
  // waits in the kernel without it and takes it to reap.
  SpinLock cq_lock;
  // The provided buffers of multishot recv (uring, MNP_URING_RECV=multishot).
  BufRing* bufs = nullptr;
};

class UringBase : public Poller {
 public:
  ~UringBase() override;

  G* poll(int64_t delay) override;
  void wake() override;
  void flush() override;

  const Features& features() const { return feat_; }
  // Whether the kernel has opcode `op` (IORING_REGISTER_PROBE on ring 0).
  bool probe_op(int op);
  std::string describe() const;

  // Sets the ring up; false (and *why) if io_uring cannot be used. `ops`
  // lists the opcodes this backend needs (IORING_OP_*), ended by -1.
  bool init(const char* backend, const int* ops, std::string* why);

 protected:
  UringBase() = default;

  // A CQE for this backend (kinds poll, remove, op_read, op_write). Called
  // with the ring's cq_lock held; appends the Gs it makes runnable to *list.
  virtual void complete(const io_uring_cqe& cqe, G** list) = 0;

  // The ring the running M submits to: the shared ring (the default), or its
  // P's (MNP_URING_RINGS=per-p, the alternative measured against it).
  Ring& submit_ring();
  Ring& ring_at(int index) { return *rings_[index].load(std::memory_order_acquire); }

  // Prepares one SQE on ring r under its SQ lock: prep(sqe) fills it,
  // user_data included. Submitted later by flush() (or now, if the SQ is
  // full or the policy is "op").
  template <class F>
  void submit(Ring& r, F&& prep) {
    {
      LockGuard<SpinLock> l(r.sq_lock);
      io_uring_sqe* sqe = get_sqe_locked(r);
      prep(sqe);
      queued_locked(r);
    }
    if (policy_ == SubmitPolicy::op) submit_now(r);
  }
  // Hands ring r's prepared SQEs to the kernel now (one io_uring_enter).
  void submit_now(Ring& r);

  // Sets up ring r's provided-buffer ring; false (and *why) if the kernel
  // refuses it. Freed with the ring.
  bool setup_bufs(Ring& r, unsigned entries, unsigned size, std::string* why);
  // Gives buffer `bid` back to ring r's buffer ring.
  void give_buf(Ring& r, uint16_t bid);

  // Cancels the operation tagged `target` on ring r (IORING_OP_ASYNC_CANCEL,
  // 5.5): its CQE (-ECANCELED, or its own result if it won the race) follows.
  void cancel(Ring& r, uint64_t target);

  Features feat_;
  SubmitPolicy policy_ = SubmitPolicy::defer;

 private:
  // rings_[0]: the shared ring; in per-P mode the hub (the wake-up, and a
  // one-shot poll on each P's ring fd, where the blocking poll waits), and
  // rings_[1 + P's id] each P's ring, set up at its first submission.
  static constexpr int kMaxRings = 1 + 1024;

  Ring* setup_ring(int index, std::string* why);
  Ring* create_p_ring(int index);
  void arm_hub_poll(int index);
  io_uring_sqe* get_sqe_locked(Ring& r);
  void queued_locked(Ring& r);
  unsigned publish_locked(Ring& r);
  int enter(Ring& r, unsigned to_submit, unsigned min_complete, unsigned flags, void* arg,
            size_t argsz);
  void give_back(Ring& r, unsigned n);
  G* reap_locked(Ring& r, bool blocking, bool* woke);
  G* reap_all(bool blocking);
  void arm_wake_locked(Ring& r);
  bool any_cq_ready();

  // Registered ring fd for the calling thread, or -1 (then the plain fd).
  int thread_ring_index(Ring& r);

  std::atomic<Ring*> rings_[kMaxRings] = {};
  std::atomic<int> nrings_{0};  // highest index set up + 1
  SpinLock create_lock_;        // setting up a P's ring
  bool per_p_ = false;
  bool defer_to_poll_ =
      true;  // flush leaves SQEs to the blocking poll's enter (MNP_URING_DEFER_TO_POLL=0: off)
  unsigned setup_flags_ = 0, sq_entries_ = 0, cq_entries_ = 0;
  int evfd_ = -1;

  // Coalesces wake(): many wakers, one eventfd write, until a poll sees it.
  std::atomic<uint32_t> wake_sig_{0};
};

// io_uring_setup's errno, explained (kernel.io_uring_disabled, seccomp,
// ENOSYS, ENOMEM) in one line.
std::string explain_setup_errno(int err);

}  // namespace uring
}  // namespace mnp::rt
