// runtime/trace/sysmon — the monitor thread (Go's sysmon), without a P.
//
// Every tick (10 ms while Gs run, 100 ms when every P is idle) it:
//   - answers signals: SIGQUIT prints every G, SIGUSR1 the poller's table,
//     SIGUSR2 writes the trace (the handlers only set flags);
//   - prints schedtrace and netpoll tables on their MNP_DEBUG periods;
//   - reports a G parked longer than `lockpark` ms while it holds a Mutex
//     (one line naming the G, the mutex, what it waits on, how many queue);
//   - reports a G that has run longer than `hog` ms without parking or
//     yielding (a CPU hog, or a blocking call made behind the runtime's back).
// It never changes scheduling state: it only looks.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mnp/debug.h"
#include "mnp/sync.h"
#include "sched/sched.h"
#include "trace/sysmon.h"
#include "trace/trace.h"

#define MNP_NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined")))

namespace mnp::rt {

std::string dump_goroutines();
std::string dump_netpoll_table();
std::string schedtrace(int64_t since_start_ns);
std::string g_header(const G* gp, int64_t now);

DebugOptions debug_opts;

// How long an M may stay inside mnp::blocking before sysmon hands its P to
// another M (Go: 20 µs; sysmon's own tick makes it up to ~0.5 ms here).
constexpr int64_t kRetakeGraceNs = 20'000;

namespace {

std::atomic<bool> sig_quit{false}, sig_usr1{false}, sig_usr2{false};
std::thread sysmon_thread;
std::mutex sysmon_mu;
std::condition_variable sysmon_cv;
bool sysmon_stop = false;

void on_signal(int sig) {
  // Async-signal-safe: set a flag; sysmon does the work on its next tick.
  if (sig == SIGQUIT) sig_quit.store(true);
  if (sig == SIGUSR1) sig_usr1.store(true);
  if (sig == SIGUSR2) sig_usr2.store(true);
}

int parse_int(const char* v, int dflt) {
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v || x < 0 || x > 1000000) return dflt;
  return static_cast<int>(x);
}

void write_all(const std::string& s) {
  // stderr, unbuffered, in one piece where the kernel allows.
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(2, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Per-P memory of sysmon: the last schedtick seen and when it changed.
struct PWatch {
  uint32_t tick = 0;
  int64_t since = 0;
  int64_t cpu_since = 0;
  uint64_t reported_g = 0;
  uint32_t reported_tick = 0;
};

int64_t thread_cpu_ns(const M* mp) {
  // os_tid is stored after cpu_clock (Linux only), by the M's own thread.
  if (!mp || !mp->os_tid.load(std::memory_order_acquire)) return -1;
  struct timespec ts;
  if (clock_gettime(mp->cpu_clock, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The OS state of an M's thread ('R' running or runnable, 'S' asleep, ...),
// from /proc/self/task/TID/stat; 0 if unknown.
char thread_state(const M* mp) {
  int tid = mp->os_tid.load(std::memory_order_acquire);
  if (!tid) return 0;
  char path[64], buf[256];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
  FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the state follows "(comm)"
  return p && p[1] == ' ' ? p[2] : 0;
}

MNP_NO_SANITIZE void check_hogs(std::vector<PWatch>& w, int64_t now) {
  if (debug_opts.hog_ms <= 0) return;
  const int64_t limit = int64_t{debug_opts.hog_ms} * 1'000'000;
  for (size_t i = 0; i < sched.allp.size() && i < w.size(); i++) {
    P* pp = sched.allp[i];
    M* mp = pp->m.load(std::memory_order_relaxed);
    G* gp = mp ? mp->curg : nullptr;
    uint32_t tick = pp->runs;
    if (!gp || tick != w[i].tick) {
      w[i].tick = tick;
      w[i].since = now;
      w[i].cpu_since = thread_cpu_ns(mp);
      continue;
    }
    if (now - w[i].since < limit) continue;
    if (w[i].reported_g == gp->id && w[i].reported_tick == tick) continue;
    // Time inside mnp::blocking is declared blocking, not hogging.
    if (gp->status.load(std::memory_order_relaxed) == GStatus::syscall) continue;
    // Wall time alone would blame a G whose thread the OS preempted (two
    // busy cores): report a G that burnt the CPU itself, or whose thread
    // sleeps in the kernel behind the runtime's back.
    int64_t cpu = thread_cpu_ns(mp);
    if (cpu >= 0 && w[i].cpu_since >= 0 && cpu - w[i].cpu_since < limit) {
      char st = thread_state(mp);
      if (st != 'S' && st != 'D') continue;
    }
    w[i].reported_g = gp->id;
    w[i].reported_tick = tick;
    std::string s = "mnp: sysmon: " + g_header(gp, now);
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  " has run %" PRId64
                  " ms on P%zu without parking or yielding: a CPU hog, or a blocking call made "
                  "outside mnp::blocking\n",
                  (now - w[i].since) / 1'000'000, i);
    write_all(s + buf);
  }
}

MNP_NO_SANITIZE void check_lockpark(int64_t now_coarse) {
  if (debug_opts.lockpark_ms <= 0) return;
  const int64_t limit = int64_t{debug_opts.lockpark_ms} * 1'000'000;
  std::vector<G*> gs;
  {
    LockGuard<SpinLock> l(sched.allgs_lock);
    gs = sched.allgs;
  }
  for (G* gp : gs) {
    if (gp->status.load(std::memory_order_acquire) != GStatus::waiting) continue;
    if (gp->held_mutexes == 0) continue;
    int64_t since = gp->wait_since;
    if (now_coarse - since < limit || gp->lockpark_reported == since) continue;
    gp->lockpark_reported = since;
    const auto* mu = static_cast<const Mutex*>(gp->held_mutex);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  " holds sync.Mutex %p while parked for %" PRId64
                  " ms; %u goroutine(s) queue on that mutex\n",
                  static_cast<const void*>(mu), (now_coarse - since) / 1'000'000,
                  mu ? mu->waiters() : 0u);
    write_all("mnp: lock held while parked: " + g_header(gp, now_coarse) + buf);
  }
}

void sysmon_loop() {
  const int64_t start = nanotime();
  int64_t next_sched = debug_opts.schedtrace_ms > 0 ? start : 0;
  int64_t next_netpoll = debug_opts.netpoll_ms > 0 ? start : 0;
  std::vector<PWatch> watch(sched.allp.size());
  for (;;) {
    bool busy = sched.npidle.load(std::memory_order_relaxed) < sched.nprocs;
    // Ms inside mnp::blocking: tick fast enough that their P is retaken
    // within about a millisecond (Go starts at 20 µs and backs off).
    bool syscalls = sched.nsyscall.load(std::memory_order_relaxed) > 0;
    auto tick = std::chrono::microseconds(syscalls ? 500 : busy ? 10000 : 100000);
    {
      std::unique_lock<std::mutex> l(sysmon_mu);
      if (sysmon_cv.wait_for(l, tick, [] { return sysmon_stop; })) return;
    }
    int64_t now = nanotime();
    if (syscalls) {
      for (P* pp : sched.allp)
        if (pp->in_syscall.load(std::memory_order_acquire) &&
            now - pp->syscall_since.load(std::memory_order_relaxed) > kRetakeGraceNs)
          retake(pp);
    }
    if (sig_quit.exchange(false)) {
      write_all("SIGQUIT: goroutine dump\n" + dump_goroutines());
      if (debug_opts.quitexit) _exit(2);
    }
    if (sig_usr1.exchange(false)) write_all(dump_netpoll_table());
    if (sig_usr2.exchange(false)) trace_flush();
    if (next_sched && now >= next_sched) {
      write_all(schedtrace(now - start) + "\n");
      next_sched = now + int64_t{debug_opts.schedtrace_ms} * 1'000'000;
    }
    if (next_netpoll && now >= next_netpoll) {
      write_all(dump_netpoll_table());
      next_netpoll = now + int64_t{debug_opts.netpoll_ms} * 1'000'000;
    }
    check_lockpark(nanotime_coarse());
    check_hogs(watch, now);
  }
}

}  // namespace

void parse_debug_env() {
  debug_opts = DebugOptions{};
  const char* env = std::getenv("MNP_DEBUG");
  if (!env) return;
  std::string s(env);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? s.size() : comma + 1;
    size_t eq = item.find('=');
    std::string key = item.substr(0, eq);
    const char* val = eq == std::string::npos ? "1" : item.c_str() + eq + 1;
    if (key == "schedtrace")
      debug_opts.schedtrace_ms = parse_int(val, 1000);
    else if (key == "netpoll")
      debug_opts.netpoll_ms = parse_int(val, 1000);
    else if (key == "lockpark")
      debug_opts.lockpark_ms = parse_int(val, 100);
    else if (key == "hog")
      debug_opts.hog_ms = parse_int(val, 10);
    else if (key == "stacks")
      debug_opts.stacks = parse_int(val, 1) != 0;
    else if (key == "quitexit")
      debug_opts.quitexit = parse_int(val, 0) != 0;
    else if (!key.empty())
      std::fprintf(stderr, "mnp: MNP_DEBUG: unknown setting \"%s\" (ignored)\n", key.c_str());
  }
}

void sysmon_start() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGQUIT, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGUSR2, &sa, nullptr);
  {
    std::lock_guard<std::mutex> l(sysmon_mu);
    sysmon_stop = false;
  }
  sysmon_thread = std::thread(sysmon_loop);
}

void sysmon_stop_and_join() {
  {
    std::lock_guard<std::mutex> l(sysmon_mu);
    sysmon_stop = true;
  }
  sysmon_cv.notify_all();
  if (sysmon_thread.joinable()) sysmon_thread.join();
  // A SIGQUIT that came in the last tick still gets its dump.
  if (sig_quit.exchange(false)) write_all("SIGQUIT: goroutine dump\n" + dump_goroutines());
  struct sigaction sa {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGQUIT, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGUSR2, &sa, nullptr);
}

// MNP_DEBUG=stacks=1: at exit, how deep each G's stack went.
MNP_NO_SANITIZE void print_stack_report() {
  if (!debug_opts.stacks) return;
  size_t max = 0, n = 0;
  uint64_t max_g = 0;
  for (G* gp : sched.allgs) {
    size_t hw = g_stack_used(gp);  // copied stacks: the largest saved image
    if (hw == 0) continue;
    n++;
    if (hw > max) {
      max = hw;
      max_g = gp->id;
    }
  }
  if (n == 0) return;
  size_t size = sched.allgs.empty() ? 0 : sched.allgs[0]->stack.size();
  std::fprintf(stderr,
               "mnp: stacks: %zu Gs measured; deepest %zu bytes (goroutine %" PRIu64
               ") of %zu reserved per G; MNP_STACK_SIZE_KIB=%zu would fit it with a page to "
               "spare\n",
               n, max, max_g, size, (max + 4096 + 1023) / 1024 + 4);
}

}  // namespace mnp::rt
