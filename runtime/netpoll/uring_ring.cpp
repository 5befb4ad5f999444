// runtime/netpoll/uring_ring — the shared io_uring instance (see uring_ring.h).
#include "netpoll/uring_ring.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <poll.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "netpoll/netpoll.h"
#include "sched/sched.h"
#include "sys/sys.h"

namespace mnp::rt::uring {

namespace {

// The SQ holds one round's operations; the CQ also holds one multishot
// readiness CQE per ready fd (uring-poll), so it is much larger. Overflow is
// survivable (FEAT_NODROP, and multishots re-arm) but costs syscalls.
constexpr unsigned kSqEntries = 1024;
constexpr unsigned kCqEntries = 16384;
// The deferred flush submits anyway past this many SQEs or this age.
constexpr uint32_t kBatch = 64;
constexpr int64_t kMaxDelayNs = 50'000;

[[noreturn]] void fatal(const char* what, int err) {
  std::fprintf(stderr, "mnp: fatal error: io_uring: %s: %s\n", what, std::strerror(err));
  std::abort();
}

bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "off") == 0);
}

std::atomic<uint64_t> ring_ids{0};

// This thread's registered ring fd (IORING_REGISTER_RING_FDS is per thread:
// the index is only valid in the thread that registered it). One entry: an
// M serves one runtime, hence one shared ring, at a time.
thread_local uint64_t t_ring_id = 0;
thread_local int t_ring_index = -1;

int sys_register(int fd, unsigned op, void* arg, unsigned nr) {
  return static_cast<int>(::syscall(__NR_io_uring_register, fd, op, arg, nr));
}

// The M holding a P has other Gs to run before it would look further.
bool p_has_local_work() {
  M* mp = getm();
  P* pp = mp ? mp->p : nullptr;
  if (!pp) return false;
  return pp->runnext.load(std::memory_order_relaxed) != nullptr ||
         pp->runq.tail.load(std::memory_order_relaxed) !=
             pp->runq.head.load(std::memory_order_relaxed);
}

// CQEs waiting in ring's CQ, peeked without its cq_lock (a hint: whoever
// reaps takes the lock and looks again). io_uring_cq_ready reads the head
// with a plain load, which races, for TSan and for C++, with the reaper's
// store-release of it on another M: load it atomically instead.
unsigned cq_pending(const io_uring& ring) {
  unsigned tail = __atomic_load_n(ring.cq.ktail, __ATOMIC_ACQUIRE);
  unsigned head = __atomic_load_n(ring.cq.khead, __ATOMIC_RELAXED);
  return tail - head;
}

}  // namespace

FdState* fd_state(PollDesc* pd) {
  // pd->backend is set by the pollDesc's opener, before any SQE names it.
  // Only the opener (holding the FD's first reference) creates it.
  void* st = pd->backend.load(std::memory_order_acquire);
  if (!st) {
    st = new FdState;
    pd->backend.store(st, std::memory_order_release);
  }
  return static_cast<FdState*>(st);
}

std::string explain_setup_errno(int err) {
  switch (err) {
    case EPERM: {
      // kernel.io_uring_disabled (6.6): 0 all, 1 only kernel.io_uring_group, 2 nobody.
      int disabled = -1;
      if (FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r")) {
        if (std::fscanf(f, "%d", &disabled) != 1) disabled = -1;
        std::fclose(f);
      }
      if (disabled == 2) return "io_uring is disabled (sysctl kernel.io_uring_disabled=2)";
      if (disabled == 1)
        return "io_uring is limited to kernel.io_uring_group (sysctl kernel.io_uring_disabled=1) "
               "and this process is not in it";
      return "io_uring_setup: EPERM with kernel.io_uring_disabled=" +
             std::string(disabled < 0 ? "absent" : std::to_string(disabled)) +
             ": a seccomp filter blocks it (Docker's default profile does)";
    }
    case ENOSYS:
      return "io_uring_setup: ENOSYS: the kernel has no io_uring, or a sandbox hides it";
    case ENOMEM:
      return "io_uring_setup: ENOMEM: before Linux 5.12 rings are charged to RLIMIT_MEMLOCK "
             "(raise ulimit -l)";
    default:
      return std::string("io_uring_setup: ") + std::strerror(err);
  }
}

std::string Features::describe() const {
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(cqsize, "CQSIZE");
  add(submit_all, "SUBMIT_ALL");
  add(coop_taskrun, "COOP_TASKRUN");
  add(cqe_skip, "CQE_SKIP_SUCCESS");
  add(reg_ring, "registered-ring-fd");
  add(cancel_fd, "CANCEL_FD");
  add(accept_multi, "multishot-accept");
  add(recv_multi, "multishot-recv");
  return s.empty() ? "(none)" : s;
}

std::string UringBase::describe() const {
  const char* pol = policy_ == SubmitPolicy::defer   ? "defer"
                    : policy_ == SubmitPolicy::round ? "round"
                                                     : "op";
  const io_uring& r0 = rings_[0].load()->ring;
  return std::string(name()) + (per_p_ ? ": a ring per P (+ a hub ring)" : ": one shared ring") +
         ", sq " + std::to_string(r0.sq.ring_entries) + " cq " +
         std::to_string(r0.cq.ring_entries) + ", " + feat_.describe() + ", submit=" + pol;
}

Ring* UringBase::setup_ring(int index, std::string* why) {
  auto* r = new Ring;
  io_uring_params p{};
  p.flags = setup_flags_;
  p.cq_entries = cq_entries_;
  int err = io_uring_queue_init_params(sq_entries_, &r->ring, &p);
  if (err != 0) {
    if (why) *why = explain_setup_errno(-err);
    delete r;
    return nullptr;
  }
  // liburing fills the SQ index array at setup since 2.2; make sure, since
  // this file publishes the SQ tail itself (publish_locked).
  for (unsigned i = 0; i < r->ring.sq.ring_entries; i++) r->ring.sq.array[i] = i;
  r->index = index;
  r->id = ring_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  rings_[index].store(r, std::memory_order_release);
  int n = nrings_.load(std::memory_order_relaxed);
  while (n < index + 1 && !nrings_.compare_exchange_weak(n, index + 1)) {
  }
  return r;
}

bool UringBase::init(const char* backend, const int* ops, std::string* why) {
  (void)backend;
  // A test hook: pretend io_uring_setup failed with this errno, to check
  // that tests skip by name and say why (tests/uring_test.cpp).
  if (const char* fake = std::getenv("MNP_URING_FAIL_SETUP"); fake && *fake) {
    int err = std::strcmp(fake, "EPERM") == 0    ? EPERM
              : std::strcmp(fake, "ENOSYS") == 0 ? ENOSYS
              : std::strcmp(fake, "ENOMEM") == 0 ? ENOMEM
                                                 : std::atoi(fake);
    *why = explain_setup_errno(err > 0 ? err : EPERM) + " (simulated by MNP_URING_FAIL_SETUP)";
    return false;
  }
  if (const char* s = std::getenv("MNP_URING_SUBMIT"); s && *s) {
    if (std::strcmp(s, "round") == 0)
      policy_ = SubmitPolicy::round;
    else if (std::strcmp(s, "op") == 0)
      policy_ = SubmitPolicy::op;
  }
  if (const char* s = std::getenv("MNP_URING_RINGS"); s && std::strcmp(s, "per-p") == 0)
    per_p_ = true;
  defer_to_poll_ = !env_off("MNP_URING_DEFER_TO_POLL");

  // Sizes: powers of two, CQ > SQ. MNP_URING_SQ_ENTRIES / _CQ_ENTRIES shrink
  // them for tests (tests/uring_test.cpp forces SQ-full and CQ overflow).
  auto env_size = [](const char* name, unsigned dflt) {
    const char* v = std::getenv(name);
    long x = v ? std::strtol(v, nullptr, 10) : 0;
    return x >= 2 && x <= (1 << 20) ? static_cast<unsigned>(x) : dflt;
  };
  sq_entries_ = env_size("MNP_URING_SQ_ENTRIES", kSqEntries);
  cq_entries_ = env_size("MNP_URING_CQ_ENTRIES", kCqEntries);

  // Flags, newest first in the fallback order: on EINVAL the newest one we
  // asked for goes, and we try again (an older kernel rejects unknown flags).
  struct Flag {
    unsigned bit;
    bool* on;
  };
  Flag flags[] = {
      {IORING_SETUP_COOP_TASKRUN, &feat_.coop_taskrun},  // 5.19
      {IORING_SETUP_SUBMIT_ALL, &feat_.submit_all},      // 5.18
      {IORING_SETUP_CQSIZE, &feat_.cqsize},              // 5.5
  };
  unsigned want = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  if (!env_off("MNP_URING_COOP")) want |= IORING_SETUP_COOP_TASKRUN;
  // A test hook: setup flags to treat as unknown to the kernel (EINVAL), to
  // exercise the fallback on a kernel that has them all.
  const unsigned reject = static_cast<unsigned>(env_size("MNP_URING_REJECT_FLAGS", 0));
  io_uring_params p{};
  io_uring ring{};
  for (;;) {
    std::memset(&p, 0, sizeof p);
    p.flags = want;
    p.cq_entries = cq_entries_;
    int r = io_uring_queue_init_params(sq_entries_, &ring, &p);
    if (r == 0 && (want & reject)) {
      io_uring_queue_exit(&ring);
      r = -EINVAL;
    }
    if (r == 0) break;
    if (r == -EINVAL && want != 0) {
      for (const Flag& f : flags) {
        if (want & f.bit) {
          want &= ~f.bit;
          break;
        }
      }
      continue;
    }
    *why = explain_setup_errno(-r);
    return false;
  }
  for (const Flag& f : flags) *f.on = (want & f.bit) != 0;
  feat_.cqe_skip = (p.features & IORING_FEAT_CQE_SKIP) != 0;

  // What the backends cannot do without (each a kernel feature bit).
  struct Need {
    unsigned bit;
    const char* what;
  } needs[] = {
      {IORING_FEAT_NODROP, "IORING_FEAT_NODROP (5.5)"},
      {IORING_FEAT_FAST_POLL, "IORING_FEAT_FAST_POLL (5.7)"},
      {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG (5.11)"},
      // Multishot POLL_ADD came in 5.13 with no bit of its own; RSRC_TAGS
      // came in the same release.
      {IORING_FEAT_RSRC_TAGS, "multishot poll (5.13)"},
  };
  std::string missing;
  for (const Need& n : needs)
    if (!(p.features & n.bit) && missing.empty())
      missing = std::string("io_uring: the kernel lacks ") + n.what;
  if (missing.empty()) {
    if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
      for (const int* op = ops; *op >= 0 && missing.empty(); op++)
        if (!io_uring_opcode_supported(probe, *op))
          missing = "io_uring: the kernel lacks opcode " + std::to_string(*op);
      // IORING_OP_SOCKET (5.19) came with CANCEL_FD|ALL (5.19) and after the
      // registered ring fds (5.18): a stand-in for both, as neither has a bit.
      feat_.cancel_fd = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
      io_uring_free_probe(probe);
    } else {
      missing = "io_uring: IORING_REGISTER_PROBE failed (kernel older than 5.6)";
    }
  }
  io_uring_queue_exit(&ring);  // the probe ring; the real ones follow
  if (!missing.empty()) {
    *why = missing;
    return false;
  }
  // Registered ring fd: off unless MNP_URING_REGRING=1. It saves the fd
  // lookup of each io_uring_enter, but with batching an echo server makes
  // 0.03-0.04 enters per message, and the measured difference was nil (see
  // the report of issue 4). The registered-fd cache holds one ring per
  // thread: with a ring per P an M alternates between its P's ring and the
  // hub, so it stays off there anyway.
  const char* reg = std::getenv("MNP_URING_REGRING");
  feat_.reg_ring = feat_.cancel_fd && !per_p_ && reg && std::strcmp(reg, "1") == 0;
  setup_flags_ = want;

  if (!setup_ring(0, why)) return false;
  evfd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (evfd_ < 0) {
    *why = std::string("eventfd: ") + std::strerror(errno);
    return false;
  }
  {
    LockGuard<SpinLock> l(ring_at(0).sq_lock);
    arm_wake_locked(ring_at(0));
  }
  submit_now(ring_at(0));
  return true;
}

UringBase::~UringBase() {
  int n = nrings_.load();
  for (int i = 0; i < n; i++) {
    Ring* r = rings_[i].load();
    if (!r) continue;
    // Only the thread that registered the ring fd can drop it; the Ms that
    // did have exited by now (that drops theirs), the runtime's first M is
    // here.
    if (t_ring_id == r->id && t_ring_index >= 0) {
      io_uring_rsrc_update up{};
      up.offset = static_cast<unsigned>(t_ring_index);
      sys_register(r->ring.ring_fd, IORING_UNREGISTER_RING_FDS, &up, 1);
      t_ring_id = 0;
      t_ring_index = -1;
    }
    // Closing the ring cancels what is still in flight (abandoned Gs' ops).
    io_uring_queue_exit(&r->ring);
    // The buffers only after the ring is gone: a recv still in flight until
    // then may write into them.
    if (BufRing* b = r->bufs) {
      ::munmap(b->br, b->br_bytes);
      ::munmap(b->mem, b->mem_bytes);
      delete b;
    }
    delete r;
  }
  if (evfd_ >= 0) ::close(evfd_);
}

int UringBase::thread_ring_index(Ring& r) {
  if (!feat_.reg_ring) return -1;
  if (t_ring_id == r.id) return t_ring_index;
  // A registration left by an older ring (destroyed on another thread) stays
  // until this thread exits; the kernel allows 16 per thread, then -1 here.
  io_uring_rsrc_update up{};
  up.offset = static_cast<unsigned>(-1);  // any free slot
  up.data = static_cast<uint64_t>(r.ring.ring_fd);
  int res = sys_register(r.ring.ring_fd, IORING_REGISTER_RING_FDS, &up, 1);
  t_ring_id = r.id;
  t_ring_index = res == 1 ? static_cast<int>(up.offset) : -1;
  return t_ring_index;
}

int UringBase::enter(Ring& r, unsigned to_submit, unsigned min_complete, unsigned flags, void* arg,
                     size_t argsz) {
  unsigned fd = static_cast<unsigned>(r.ring.ring_fd);
  int idx = thread_ring_index(r);
  if (idx >= 0) {
    fd = static_cast<unsigned>(idx);
    flags |= IORING_ENTER_REGISTERED_RING;
  }
  // One syscall, one count (stat_syscalls sums both): a wait is
  // sys_poll_wait, like epoll_wait; a submit-only enter sys_uring_enter.
  stat_add(min_complete ? Stat::sys_poll_wait : Stat::sys_uring_enter);
  return io_uring_enter2(fd, to_submit, min_complete, flags, static_cast<sigset_t*>(arg), argsz);
}

// --- rings per P (the alternative mapping) --------------------------------------

Ring& UringBase::submit_ring() {
  if (!per_p_) return ring_at(0);
  M* mp = getm();
  P* pp = mp ? mp->p : nullptr;
  if (!pp || 1 + pp->id >= kMaxRings) return ring_at(0);
  if (Ring* r = rings_[1 + pp->id].load(std::memory_order_acquire)) return *r;
  return *create_p_ring(1 + pp->id);
}

Ring* UringBase::create_p_ring(int index) {
  Ring* r;
  {
    LockGuard<SpinLock> l(create_lock_);
    r = rings_[index].load(std::memory_order_acquire);
    if (r) return r;
    r = setup_ring(index, nullptr);
    if (!r) return &ring_at(0);  // out of memory for rings: share the hub
  }
  arm_hub_poll(index);
  return r;
}

// A one-shot poll on a P ring's fd, in the hub: the blocking poll waits in
// the hub, and a CQE on any P ring makes its fd readable. (A multishot poll
// on an io_uring fd ends after its first CQE: checked on 6.18.)
void UringBase::arm_hub_poll(int index) {
  Ring& hub = ring_at(0);
  int fd = ring_at(index).ring.ring_fd;
  submit(hub, [&](io_uring_sqe* sqe) {
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    sqe->user_data = tag(Kind::ring, 0, static_cast<uint32_t>(index));
  });
}

// --- the submission queue ----------------------------------------------------

io_uring_sqe* UringBase::get_sqe_locked(Ring& r) {
  tsan_release(&r);  // see uring_ring.h
  for (;;) {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&r.ring)) return sqe;
    // The SQ is full: hand it to the kernel now, holding the lock (a submit
    // without GETEVENTS does not sleep waiting for completions).
    unsigned n = publish_locked(r);
    if (n == 0) {
      sched_yield();  // another M is inside an enter with our SQEs
      continue;
    }
    int res = enter(r, n, 0, 0, nullptr, 0);
    unsigned took = res > 0 ? static_cast<unsigned>(res) : 0;
    if (took < n) r.queued.fetch_add(n - took, std::memory_order_relaxed);
    if (res < 0 && res != -EAGAIN && res != -EBUSY && res != -EINTR)
      fatal("submit (SQ full)", -res);
    if (took == 0) sched_yield();
  }
}

void UringBase::queued_locked(Ring& r) {
  if (r.queued.fetch_add(1, std::memory_order_relaxed) == 0)
    r.first_queued.store(policy_ == SubmitPolicy::defer ? nanotime() : 0,
                         std::memory_order_relaxed);
}

// Makes the prepared SQEs visible to the kernel (the SQ tail, with release:
// the kernel may read them from another thread's io_uring_enter) and takes
// the count of SQEs no enter has taken yet.
unsigned UringBase::publish_locked(Ring& r) {
  io_uring_sq& sq = r.ring.sq;
  unsigned tail = sq.sqe_tail;
  if (sq.sqe_head != tail) {
    sq.sqe_head = tail;
    io_uring_smp_store_release(sq.ktail, tail);
  }
  return r.queued.exchange(0, std::memory_order_relaxed);
}

void UringBase::give_back(Ring& r, unsigned n) {
  LockGuard<SpinLock> l(r.sq_lock);
  r.queued.fetch_add(n, std::memory_order_relaxed);
}

void UringBase::submit_now(Ring& r) {
  unsigned n;
  {
    LockGuard<SpinLock> l(r.sq_lock);
    n = publish_locked(r);
  }
  if (n == 0) return;
  // The enter runs without the lock: other Ms keep preparing SQEs.
  int res = enter(r, n, 0, 0, nullptr, 0);
  if (res < 0) {
    // -EBUSY/-EAGAIN: the CQ overflow list is full, or out of memory for a
    // moment: keep them for the next flush.
    if (res != -EAGAIN && res != -EBUSY && res != -EINTR) fatal("io_uring_enter (submit)", -res);
    give_back(r, n);
    return;
  }
  if (static_cast<unsigned>(res) < n) give_back(r, n - static_cast<unsigned>(res));
}

void UringBase::flush() {
  // Completions first. The scheduler polls only when it finds no other work
  // (findRunnable's netpoll(0)), so a G that keeps yielding would hold back
  // every completion: a cancelled operation's G, for one, waits for its
  // CQE. Here a look costs a load from the shared CQ, not a syscall: reap
  // whatever is there, once a round.
  G* list = nullptr;
  const int n = nrings_.load(std::memory_order_acquire);
  Ring* mine = per_p_ ? nullptr : &ring_at(0);
  if (per_p_) {
    M* mp = getm();
    if (mp && mp->p && 1 + mp->p->id < n) mine = rings_[1 + mp->p->id].load();
  }
  for (int i = 0; i < n; i++) {
    Ring* r = rings_[i].load(std::memory_order_acquire);
    if (!r) continue;
    if (cq_pending(r->ring) != 0 && r->cq_lock.try_lock()) {
      bool woke = false;
      G* l = reap_locked(*r, false, &woke);
      r->cq_lock.unlock();
      while (l) {
        G* next = l->schedlink;
        l->schedlink = list;
        list = l;
        l = next;
      }
    }
    uint32_t q = r->queued.load(std::memory_order_relaxed);
    if (q == 0) continue;
    // (The hub's SQEs too: a poll on a new P's ring must be armed while an M
    // already waits in the hub, or that ring's CQEs would wake no one.)
    // The M's own ring waits while it runs another G of its P, so that the
    // G adds to the batch; any other ring (a cancel for an op submitted on
    // another P) is submitted now.
    //
    // And when no M waits in the kernel (lastpoll != 0), an M that finds no
    // G next becomes that M, and the blocking poll submits the ring's SQEs
    // with its wait, in one io_uring_enter: submitting here would be a
    // second enter per park (3 per message at 1 connection, 2 with this).
    // If another M takes the poller's role first, its wait submits them
    // (it publishes the SQ after it set lastpoll to 0, see poll); if an M
    // waits already (lastpoll == 0), submit now, or they would wait with it.
    if (r == mine && policy_ == SubmitPolicy::defer && q < kBatch &&
        (p_has_local_work() ||
         (defer_to_poll_ && !per_p_ && sched.lastpoll.load(std::memory_order_acquire) != 0)) &&
        nanotime() - r->first_queued.load(std::memory_order_relaxed) < kMaxDelayNs)
      continue;
    submit_now(*r);
  }
  if (list) injectglist(list);
}

// --- provided buffers ----------------------------------------------------------

bool UringBase::setup_bufs(Ring& r, unsigned entries, unsigned size, std::string* why) {
  auto* b = new BufRing;
  b->entries = entries;
  b->size = size;
  b->bgid = 0;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  b->br_bytes = (entries * sizeof(io_uring_buf) + page - 1) / page * page;
  b->mem_bytes = static_cast<size_t>(entries) * size;
  void* br =
      ::mmap(nullptr, b->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* mem =
      ::mmap(nullptr, b->mem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (br == MAP_FAILED || mem == MAP_FAILED) {
    if (why) *why = std::string("mmap: ") + std::strerror(errno);
    if (br != MAP_FAILED) ::munmap(br, b->br_bytes);
    if (mem != MAP_FAILED) ::munmap(mem, b->mem_bytes);
    delete b;
    return false;
  }
  b->br = static_cast<io_uring_buf_ring*>(br);
  b->mem = static_cast<char*>(mem);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br);
  reg.ring_entries = entries;
  reg.bgid = b->bgid;
  int err = io_uring_register_buf_ring(&r.ring, &reg, 0);
  if (err != 0) {
    if (why) *why = std::string("io_uring_register_buf_ring: ") + std::strerror(-err);
    ::munmap(br, b->br_bytes);
    ::munmap(mem, b->mem_bytes);
    delete b;
    return false;
  }
  io_uring_buf_ring_init(b->br);
  const int mask = io_uring_buf_ring_mask(entries);
  for (unsigned i = 0; i < entries; i++)
    io_uring_buf_ring_add(b->br, b->addr(static_cast<uint16_t>(i)), size, static_cast<uint16_t>(i),
                          mask, static_cast<int>(i));
  io_uring_buf_ring_advance(b->br, static_cast<int>(entries));
  r.bufs = b;
  return true;
}

bool UringBase::probe_op(int op) {
  io_uring_probe* probe = io_uring_get_probe_ring(&ring_at(0).ring);
  if (!probe) return false;
  const bool ok = io_uring_opcode_supported(probe, op);
  io_uring_free_probe(probe);
  return ok;
}

void UringBase::give_buf(Ring& r, uint16_t bid) {
  BufRing* b = r.bufs;
  LockGuard<SpinLock> l(b->lock);
  io_uring_buf_ring_add(b->br, b->addr(bid), b->size, bid, io_uring_buf_ring_mask(b->entries), 0);
  io_uring_buf_ring_advance(b->br, 1);  // a release store of the tail: the kernel reads it
}

void UringBase::cancel(Ring& r, uint64_t target) {
  submit(r, [&](io_uring_sqe* sqe) {
    io_uring_prep_cancel64(sqe, target, 0);
    sqe->user_data = tag(Kind::ignore, 0, 0);
    if (feat_.cqe_skip) sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  });
}

// --- wake-up -------------------------------------------------------------------

// The eventfd's multishot poll (5.13), on ring 0: one CQE per write, and the
// counter is never read (each write wakes the waitqueue again).
void UringBase::arm_wake_locked(Ring& r) {
  io_uring_sqe* sqe = get_sqe_locked(r);
  io_uring_prep_poll_multishot(sqe, evfd_, POLLIN);
  sqe->user_data = tag(Kind::wake, 0, 0);
  queued_locked(r);
}

void UringBase::wake() {
  uint32_t zero = 0;
  if (!wake_sig_.compare_exchange_strong(zero, 1, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  for (;;) {
    stat_add(Stat::sys_wake);
    ssize_t r = ::write(evfd_, &one, sizeof one);
    if (r == sizeof one) return;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) return;  // the counter is full: a wake-up is pending
    fatal("write(eventfd)", errno);
  }
}

// --- the completion queue ----------------------------------------------------

G* UringBase::reap_locked(Ring& r, bool blocking, bool* woke_out) {
  G* list = nullptr;
  bool woke = false;
  // Two passes at most: the CQ, then what the kernel kept on overflow. More
  // would let a CQ too small for its multishots (each re-arm of a ready fd
  // posts at once, overflows, ends, is re-armed...) keep this M reaping
  // forever; what is left waits for the next poll.
  for (int pass = 0; pass < 2; pass++) {
    io_uring_cq& cq = r.ring.cq;
    unsigned head = *cq.khead;
    unsigned tail = io_uring_smp_load_acquire(cq.ktail);
    tsan_acquire(&r);  // see uring_ring.h
    for (; head != tail; head++) {
      const io_uring_cqe cqe = cq.cqes[head & cq.ring_mask];
      switch (tag_kind(cqe.user_data)) {
        case Kind::wake:
          woke = true;
          // CQ overflow (or an error) ended the multishot: arm it again.
          if (!(cqe.flags & IORING_CQE_F_MORE)) {
            LockGuard<SpinLock> l(r.sq_lock);
            arm_wake_locked(r);
          }
          break;
        case Kind::ring:
          // A P's ring has CQEs (reap_all looks at every ring): poll again.
          arm_hub_poll(static_cast<int>(tag_index(cqe.user_data)));
          break;
        case Kind::ignore:
        case Kind::none:
          break;
        default:
          complete(cqe, &list);
      }
    }
    io_uring_smp_store_release(cq.khead, head);
    if (pass == 1 || !io_uring_cq_has_overflow(&r.ring)) break;
    // FEAT_NODROP kept the CQEs that did not fit: have the kernel move them in.
    stat_add(Stat::sys_uring_enter);
    io_uring_get_events(&r.ring);
  }
  if (woke) {
    wake_sig_.store(0, std::memory_order_release);
    // A non-blocking poll took the wake-up meant for the M blocked in the
    // kernel (one CQ, first come first served). If that M started waiting
    // before the CQE was posted it woke anyway; if not, it sleeps on: pass
    // the wake-up on (rare: poll(0) runs only while lastpoll != 0).
    if (!blocking && sched.lastpoll.load(std::memory_order_acquire) == 0) wake();
  }
  if (woke_out) *woke_out = woke;
  return list;
}

bool UringBase::any_cq_ready() {
  const int n = nrings_.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    Ring* r = rings_[i].load(std::memory_order_acquire);
    if (r && (cq_pending(r->ring) != 0 || io_uring_cq_has_overflow(&r->ring))) return true;
  }
  return false;
}

G* UringBase::reap_all(bool blocking) {
  G* list = nullptr;
  const int n = nrings_.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    Ring* r = rings_[i].load(std::memory_order_acquire);
    if (!r || (cq_pending(r->ring) == 0 && !io_uring_cq_has_overflow(&r->ring))) continue;
    if (blocking)
      r->cq_lock.lock();
    else if (!r->cq_lock.try_lock())
      continue;  // another M is reaping this one
    G* l = reap_locked(*r, blocking, nullptr);
    r->cq_lock.unlock();
    while (l) {
      G* next = l->schedlink;
      l->schedlink = list;
      list = l;
      l = next;
    }
  }
  return list;
}

G* UringBase::poll(int64_t delay) {
  // Nothing to reap: no syscall, no lock.
  if (delay == 0) return any_cq_ready() ? reap_all(false) : nullptr;
  // Blocking: submit what is queued and wait in one io_uring_enter on ring 0
  // (the shared ring, or the hub), holding no lock (a lock held across a
  // waiting enter deadlocks, liburing #1478).
  const int nr = nrings_.load(std::memory_order_acquire);
  for (int i = 1; i < nr; i++)
    if (Ring* r = rings_[i].load(std::memory_order_acquire)) submit_now(*r);
  Ring& r0 = ring_at(0);
  unsigned n;
  {
    LockGuard<SpinLock> l(r0.sq_lock);
    n = publish_locked(r0);
  }
  unsigned want = any_cq_ready() ? 0 : 1;
  if (n > 0 || want > 0) {
    __kernel_timespec ts{};
    io_uring_getevents_arg arg{};
    if (delay > 0) {
      ts.tv_sec = delay / 1'000'000'000;
      ts.tv_nsec = delay % 1'000'000'000;
      arg.ts = reinterpret_cast<uint64_t>(&ts);
    }
    unsigned flags = want ? IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG : 0;
    int res = want ? enter(r0, n, want, flags, &arg, sizeof arg) : enter(r0, n, 0, 0, nullptr, 0);
    // With SQEs to submit the result is how many the kernel took (the wait's
    // own result is then dropped); without, 0 or the wait's error.
    if (n > 0) {
      unsigned took = res > 0 ? static_cast<unsigned>(res) : 0;
      if (took < n) give_back(r0, n - took);
    }
    if (res < 0 && res != -ETIME && res != -EINTR && res != -EAGAIN && res != -EBUSY)
      fatal("io_uring_enter (wait)", -res);
  }
  return reap_all(true);
}

}  // namespace mnp::rt::uring
