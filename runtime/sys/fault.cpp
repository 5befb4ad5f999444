// runtime/sys/fault — see fault.h.
#include "sys/fault.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <mutex>

#include "netpoll/netpoll.h"

namespace mnp::rt::sys {

std::atomic<const FaultPlan*> g_fault_plan{nullptr};

namespace {

constexpr const char* kOpNames[] = {"read", "write", "accept", "connect", "close"};
constexpr const char* kKindNames[] = {"eintr",  "eagain", "short",   "reset",  "pipe",
                                      "emfile", "nfile",  "aborted", "refused"};
static_assert(std::size(kOpNames) == static_cast<size_t>(FaultOp::count_));
static_assert(std::size(kKindNames) == static_cast<size_t>(FaultKind::count_));

constexpr unsigned bit(FaultKind k) {
  return 1u << static_cast<unsigned>(k);
}
// Which faults each op can have (fault.h's table).
constexpr unsigned kAllowed[] = {
    /* read */ bit(FaultKind::eintr) | bit(FaultKind::eagain) | bit(FaultKind::short_io) |
        bit(FaultKind::reset),
    /* write */ bit(FaultKind::eintr) | bit(FaultKind::eagain) | bit(FaultKind::short_io) |
        bit(FaultKind::reset) | bit(FaultKind::pipe),
    /* accept */ bit(FaultKind::eintr) | bit(FaultKind::eagain) | bit(FaultKind::emfile) |
        bit(FaultKind::nfile) | bit(FaultKind::aborted),
    /* connect */ bit(FaultKind::eintr) | bit(FaultKind::refused),
    /* close */ bit(FaultKind::eintr),
};

// Faults the runtime answers by trying again (close's EINTR is not one).
bool retried(FaultOp op, FaultKind k) {
  return op != FaultOp::close &&
         (k == FaultKind::eintr || k == FaultKind::eagain || k == FaultKind::aborted);
}

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

template <class T>
bool parse_num(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

// --- "a spurious wake-up, then EAGAIN" ----------------------------------------
// The pollDesc serving fd: the open one whose fd field is fd. A hint table
// (fd -> index + 1) makes the usual lookup one probe; a miss scans the cache.

constexpr int kHints = 1 << 16;
std::atomic<uint32_t> g_hint[kHints];

bool pd_serves(PollDesc* pd, int fd) {
  LockGuard<SpinLock> l(pd->lock);
  return pd->fd == fd && !pd->closing;
}

PollDesc* pd_for_fd(int fd) {
  if (fd >= 0 && fd < kHints) {
    uint32_t h = g_hint[fd].load(std::memory_order_relaxed);
    if (h != 0) {
      if (PollDesc* pd = pd_at(h - 1); pd && pd_serves(pd, fd)) return pd;
    }
  }
  for (uint32_t i = 0;; i++) {
    PollDesc* pd = pd_at(i);
    if (!pd) return nullptr;
    if (pd_serves(pd, fd)) {
      if (fd >= 0 && fd < kHints) g_hint[fd].store(i + 1, std::memory_order_relaxed);
      return pd;
    }
  }
}

// Readiness remembered in the slot: the wait that follows the EAGAIN returns
// at once (or wakes a G already parked there, which cannot happen while the
// caller holds the fd's read or write lock).
void owe_ready(int fd, int mode) {
  PollDesc* pd = pd_for_fd(fd);
  if (!pd) return;  // not a served fd: a plain EAGAIN
  auto& slot = mode == 'r' ? pd->rg : pd->wg;
  uintptr_t expect = pdNil;
  slot.compare_exchange_strong(expect, pdReady, std::memory_order_acq_rel);
}

// A short read or write needs more than one byte to cut, and more than
// `over` bytes at stake: queued in the socket for a read, asked for a write.
bool worth_cutting(FaultOp op, int fd, const size_t* n, uint64_t over) {
  if (!n || *n <= 1) return false;
  if (over == 0) return true;
  if (op == FaultOp::write) return *n > over;
  int queued = 0;
  return ::ioctl(fd, FIONREAD, &queued) == 0 && static_cast<uint64_t>(queued) > over;
}

// --- MNP_FAULTS --------------------------------------------------------------

FaultPlan* g_env_plan = nullptr;  // never freed: Ms may read it until exit

void report_env_plan() {
  if (g_env_plan) std::fprintf(stderr, "mnp: MNP_FAULTS: %s\n", g_env_plan->report().c_str());
}

}  // namespace

const char* fault_op_name(FaultOp op) {
  return op < FaultOp::count_ ? kOpNames[static_cast<int>(op)] : "?";
}
const char* fault_kind_name(FaultKind k) {
  return k < FaultKind::count_ ? kKindNames[static_cast<int>(k)] : "?";
}

bool FaultPlan::add(const FaultRule& r, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = rule_text(r) + ": " + m;
    return false;
  };
  if (n_ == kMaxRules) return fail("more than 16 rules");
  if (r.op >= FaultOp::count_ || r.kind >= FaultKind::count_) return fail("unknown op or fault");
  if (!(kAllowed[static_cast<int>(r.op)] & bit(r.kind)))
    return fail(std::string(fault_op_name(r.op)) + " cannot have " + fault_kind_name(r.kind));
  if (r.den == 0 || r.num == 0 || r.num > r.den) return fail("want 0 < N <= D in N/D");
  if (r.over && r.kind != FaultKind::short_io) return fail("over= is for short only");
  if (retried(r.op, r.kind) && r.num == r.den && r.max == UINT64_MAX)
    return fail(
        "the runtime retries this fault: firing on every call would never end (use "
        "N < D or max=)");
  rules_[n_++] = r;
  return true;
}

FaultPlan& FaultPlan::on(FaultOp op, FaultKind kind, uint32_t num, uint32_t den, uint64_t after,
                         uint64_t max, int fd) {
  FaultRule r;
  r.op = op;
  r.kind = kind;
  r.num = num;
  r.den = den;
  r.after = after;
  r.max = max;
  r.fd = fd;
  std::string why;
  if (!add(r, &why)) {
    std::fprintf(stderr, "mnp: fatal error: invalid fault rule %s\n", why.c_str());
    std::abort();
  }
  return *this;
}

bool FaultPlan::parse(std::string_view spec, std::string* why) {
  auto fail = [&](std::string_view tok, const std::string& m) {
    if (why) *why = "'" + std::string(tok) + "': " + m;
    return false;
  };
  while (!spec.empty()) {
    size_t comma = spec.find(',');
    std::string_view tok = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
    while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
    while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
    if (tok.empty()) continue;
    if (tok.starts_with("seed=")) {
      if (!parse_num(tok.substr(5), &seed_)) return fail(tok, "bad seed");
      continue;
    }
    // op:fault:N/D[:after=K][:max=M][:fd=F][:over=B]
    std::string_view f[6];
    int nf = 0;
    for (std::string_view rest = tok; nf < 6;) {
      size_t c = rest.find(':');
      f[nf++] = rest.substr(0, c);
      if (c == std::string_view::npos) break;
      rest = rest.substr(c + 1);
      if (nf == 6) return fail(tok, "too many fields");
    }
    if (nf < 3) return fail(tok, "want op:fault:N/D");
    FaultRule r;
    int op = -1, kind = -1;
    for (int i = 0; i < static_cast<int>(FaultOp::count_); i++)
      if (f[0] == kOpNames[i]) op = i;
    for (int i = 0; i < static_cast<int>(FaultKind::count_); i++)
      if (f[1] == kKindNames[i]) kind = i;
    if (op < 0) return fail(tok, "unknown op (read, write, accept, connect, close)");
    if (kind < 0)
      return fail(tok,
                  "unknown fault (eintr, eagain, short, reset, pipe, emfile, nfile, aborted, "
                  "refused)");
    r.op = static_cast<FaultOp>(op);
    r.kind = static_cast<FaultKind>(kind);
    size_t slash = f[2].find('/');
    if (slash == std::string_view::npos || !parse_num(f[2].substr(0, slash), &r.num) ||
        !parse_num(f[2].substr(slash + 1), &r.den))
      return fail(tok, "want a rate N/D");
    for (int i = 3; i < nf; i++) {
      std::string_view kv = f[i];
      bool ok = false;
      if (kv.starts_with("after=")) {
        ok = parse_num(kv.substr(6), &r.after);
      } else if (kv.starts_with("max=")) {
        ok = parse_num(kv.substr(4), &r.max);
      } else if (kv.starts_with("fd=")) {
        ok = parse_num(kv.substr(3), &r.fd);
      } else if (kv.starts_with("over=")) {
        ok = parse_num(kv.substr(5), &r.over);
      }
      if (!ok)
        return fail(tok, "bad field '" + std::string(kv) + "' (after=K, max=M, fd=F, over=B)");
    }
    if (!add(r, why)) return false;  // *why names the rule
  }
  return true;
}

std::string FaultPlan::rule_text(const FaultRule& r) {
  std::string s = std::string(fault_op_name(r.op)) + ":" + fault_kind_name(r.kind) + ":" +
                  std::to_string(r.num) + "/" + std::to_string(r.den);
  if (r.after) s += ":after=" + std::to_string(r.after);
  if (r.max != UINT64_MAX) s += ":max=" + std::to_string(r.max);
  if (r.fd >= 0) s += ":fd=" + std::to_string(r.fd);
  if (r.over) s += ":over=" + std::to_string(r.over);
  return s;
}

uint64_t FaultPlan::fired_total(FaultOp op) const {
  uint64_t t = 0;
  for (int i = 0; i < n_; i++)
    if (op == FaultOp::count_ || rules_[i].op == op) t += fired(i);
  return t;
}

std::string FaultPlan::report() const {
  std::string s;
  if (seed_) s = "seed=" + std::to_string(seed_) + " ";
  for (int i = 0; i < n_; i++) {
    if (i) s += ", ";
    s += rule_text(rules_[i]) + " fired " + std::to_string(fired(i)) + " of " +
         std::to_string(calls(i)) + " calls";
  }
  return s;
}

const FaultPlan* fault_set(const FaultPlan* p) noexcept {
  return g_fault_plan.exchange(p, std::memory_order_acq_rel);
}

bool fault_hit(FaultOp op, int fd, size_t* n) noexcept {
  const FaultPlan* plan = g_fault_plan.load(std::memory_order_acquire);
  if (!plan) return false;
  // Every rule matching the call counts it (each keeps its own schedule);
  // of those whose turn it is, the first listed fires.
  int win = -1;
  uint64_t win_k = 0;
  for (int i = 0; i < plan->n_; i++) {
    const FaultRule& r = plan->rules_[i];
    if (r.op != op || (r.fd >= 0 && r.fd != fd)) continue;
    FaultPlan::State& st = plan->state_[i];
    const uint64_t c = st.calls.fetch_add(1, std::memory_order_relaxed);
    if (win >= 0 || c < r.after) continue;
    const uint64_t k = c - r.after;
    const uint64_t pick = plan->seed_ ? mix(plan->seed_ ^ (uint64_t(i) << 56) ^ k) : k;
    if (pick % r.den >= r.num) continue;
    if (r.kind == FaultKind::short_io && !worth_cutting(op, fd, n, r.over)) continue;
    uint64_t f = st.fired.load(std::memory_order_relaxed);
    do {
      if (f >= r.max) break;
    } while (!st.fired.compare_exchange_weak(f, f + 1, std::memory_order_relaxed));
    if (f >= r.max) continue;
    win = i;
    win_k = k;
  }
  if (win < 0) return false;
  {
    const FaultRule& r = plan->rules_[win];
    const uint64_t k = win_k;
    switch (r.kind) {
      case FaultKind::short_io:
        *n = 1 + mix(k) % (*n - 1);
        return false;
      case FaultKind::eintr:
        if (op == FaultOp::close) ::close(fd);  // Linux: the fd is gone either way
        errno = EINTR;
        return true;
      case FaultKind::eagain:
        owe_ready(fd, op == FaultOp::write ? 'w' : 'r');
        errno = EAGAIN;
        return true;
      case FaultKind::reset:
        errno = ECONNRESET;
        return true;
      case FaultKind::pipe:
        errno = EPIPE;
        return true;
      case FaultKind::emfile:
        errno = EMFILE;
        return true;
      case FaultKind::nfile:
        errno = ENFILE;
        return true;
      case FaultKind::aborted:
        errno = ECONNABORTED;
        return true;
      case FaultKind::refused:
        errno = ECONNREFUSED;
        return true;
      case FaultKind::count_:
        break;
    }
  }
  return false;
}

bool fault_init_from_env() noexcept {
  static std::once_flag once;
  static bool ok = true;
  std::call_once(once, [] {
    const char* spec = std::getenv("MNP_FAULTS");
    if (!spec || !*spec) return;
    auto* plan = new FaultPlan;
    std::string why;
    if (!plan->parse(spec, &why)) {
      std::fprintf(stderr, "mnp: MNP_FAULTS: %s\n", why.c_str());
      delete plan;
      ok = false;
      return;
    }
    if (plan->size() == 0) {
      delete plan;
      return;
    }
    const FaultPlan* expect = nullptr;
    if (!g_fault_plan.compare_exchange_strong(expect, plan)) {
      delete plan;  // a test installed its own first
      return;
    }
    g_env_plan = plan;
    std::string rules;
    for (int i = 0; i < plan->size(); i++)
      rules += (i ? "," : "") + FaultPlan::rule_text(plan->rule(i));
    std::fprintf(stderr, "mnp: fault injection on (MNP_FAULTS): %s%s\n", rules.c_str(),
                 plan->seed() ? (" seed=" + std::to_string(plan->seed())).c_str() : "");
    std::atexit(report_env_plan);
  });
  return ok;
}

}  // namespace mnp::rt::sys
