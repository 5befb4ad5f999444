// demos/echo/echo_server.cpp — experiments 1 (echo) and 2 (fd leak) of
// EXPERIMENTS.md: a TCP echo server with one G per connection.
//
// What to watch:
//   strace -f -e trace=network build/demos/echo-server
//       socket, bind, listen once; then one accept4 per client, each returning
//       a new fd; the reads and writes of each connection (recvfrom/sendto or
//       read/write) on that fd. Under io_uring ("uring") the I/O does not show
//       as syscalls at all: only io_uring_enter does.
//   ss -tanp '( sport = :9000 )'      the listener and every connection's state
//   lsof -p $(pgrep -n echo-server)   the fds: the listener, the poller, one per client
//   ls /proc/$(pgrep -n echo-server)/fd | wc -l
//
// Experiment 2: LEAK=true never closes a connection. Every client that has
// come and gone keeps its fd (its socket sits in CLOSE_WAIT: `ss -tan state
// close-wait`), the fd count printed each second climbs to `ulimit -n`, and
// then accept fails with "too many open files". The server does not die: it
// backs off (5 ms, doubling to 1 s, as Go's http.Server does), logs the error
// once per episode, and accepts again as soon as an fd is free. Try:
//   (ulimit -n 64; LEAK=true build/demos/echo-server)
//   build/demos/echo-client -c 80 --count 1 --timeout 2
//
// Flags: --addr HOST:PORT (default 127.0.0.1:9000; port 0 picks a free one,
// and the line "listening on ADDR" says which), --quiet (no per-second line),
// --verbose (one line per accepted and closed connection). SIGINT or SIGTERM
// prints the totals and exits 0.
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/debug.h"
#include "mnp/error.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "mnp/sync.h"

namespace {

using namespace std::chrono_literals;
using mnp::Errc;
using mnp::Error;

struct Flags {
  std::string addr = "127.0.0.1:9000";
  bool quiet = false;
  bool verbose = false;
  bool leak = false;  // from the environment: LEAK=true
};

// Set by the signal handler, read by the ticker G: the only thing a handler
// may safely do here is store to a lock-free atomic.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);
extern "C" void on_signal(int sig) {
  g_signal.store(sig, std::memory_order_relaxed);
}

// Counters, written by every connection's G, read by the ticker.
struct Counters {
  std::atomic<int64_t> open{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> conn_errors{0};
  std::atomic<uint64_t> accept_errors{0};
  std::atomic<uint64_t> leaked{0};
};
Counters g_count;

// Errors that end a connection (reset, timeout, ...), aggregated per second
// so that a thousand resets make one line, not a thousand.
constexpr size_t kErrcCount = static_cast<size_t>(Errc::sys) + 1;
struct ErrorLog {
  mnp::Mutex mu;
  uint64_t by_kind[kErrcCount] = {};  // guarded by mu
  std::string last;                   // guarded by mu
};
ErrorLog g_errors;

void record_conn_error(const Error& err) {
  g_count.conn_errors.fetch_add(1, std::memory_order_relaxed);
  std::string msg = err.message();  // allocates: error path only
  g_errors.mu.lock();
  g_errors.by_kind[static_cast<int>(err.kind())]++;
  g_errors.last = std::move(msg);
  g_errors.mu.unlock();
}

// Prints and clears what record_conn_error collected. Ticker only.
void flush_conn_errors() {
  uint64_t by_kind[kErrcCount];
  std::string last;
  g_errors.mu.lock();
  std::memcpy(by_kind, g_errors.by_kind, sizeof by_kind);
  std::memset(g_errors.by_kind, 0, sizeof g_errors.by_kind);
  last.swap(g_errors.last);
  g_errors.mu.unlock();
  if (last.empty()) return;
  std::string line = "echo-server: connections ended by errors since the last report:";
  for (size_t k = 0; k < kErrcCount; k++) {
    if (by_kind[k] == 0) continue;
    line += " " + std::string(mnp::errc_text(static_cast<Errc>(k))) + " " +
            std::to_string(by_kind[k]) + ",";
  }
  line += " last: " + last;
  std::printf("%s\n", line.c_str());
}

// The number of open fds, read from /proc/self/fd through a directory opened
// once at start: when the process is out of fds it could not open it anew.
// The count includes that directory's own fd, as `ls /proc/PID/fd` would.
class FdCounter {
 public:
  FdCounter() : dir_(opendir("/proc/self/fd")) {}
  long count() {
    if (dir_ == nullptr) return -1;  // no /proc (macOS): not shown
    mu_.lock();
    rewinddir(dir_);
    long n = 0;
    while (dirent* e = readdir(dir_)) {
      if (e->d_name[0] != '.') n++;
    }
    mu_.unlock();
    return n;
  }
  static long limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    return rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<long>(rl.rlim_cur);
  }
  std::string text() {
    long n = count();
    if (n < 0) return "?";
    return std::to_string(n) + "/" + std::to_string(limit());
  }

 private:
  DIR* dir_;
  mnp::Mutex mu_;  // the ticker and the accept loop may both count
};
FdCounter* g_fds;

// LEAK=true: connections that are done are kept here, open, forever.
mnp::Mutex g_leaked_mu;
std::vector<std::unique_ptr<mnp::net::Conn>>* g_leaked;  // guarded by g_leaked_mu; never freed

// One G per connection: read what arrives, write it back, until EOF or error.
void serve(std::unique_ptr<mnp::net::Conn> conn, const Flags& flags) {
  conn->set_no_delay(true);  // as Go does for every TCP conn
  char buf[16 * 1024];
  uint64_t echoed = 0;
  for (;;) {
    auto [n, rerr] = conn->read(buf, sizeof buf);
    if (n > 0) {
      auto w = conn->write(buf, n);
      echoed += w.n;
      g_count.bytes.fetch_add(w.n, std::memory_order_relaxed);
      if (w.err) {
        record_conn_error(w.err);
        break;
      }
    }
    if (rerr) {
      if (rerr != Errc::eof) record_conn_error(rerr);
      break;
    }
  }
  g_count.open.fetch_sub(1, std::memory_order_relaxed);
  if (flags.verbose) {
    std::printf("echo-server: %s fd %d (%s): %llu bytes echoed\n",
                flags.leak ? "done, NOT closing" : "closing", conn->sysfd(),
                conn->remote_addr().to_string().c_str(), static_cast<unsigned long long>(echoed));
  }
  if (flags.leak) {
    g_leaked_mu.lock();
    g_leaked->push_back(std::move(conn));
    g_leaked_mu.unlock();
    g_count.leaked.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  conn->close();
}

// MNP_STATS=1: the runtime's counters (mnp/stats.h) with the bytes echoed, on
// every ticker wake-up (100 ms) and at exit, for bench/shootout.py: syscalls
// per message is the difference of two lines over bytes/size.
bool g_print_stats = false;
void print_stats() {
  std::string line = "echo-server: stats t_ns " + std::to_string(mnp::nanotime()) + " bytes " +
                     std::to_string(g_count.bytes.load()) + " syscalls " +
                     std::to_string(mnp::stat_syscalls());
  for (int i = 0; i < static_cast<int>(mnp::Stat::count_); i++) {
    auto s = static_cast<mnp::Stat>(i);
    line += std::string(" ") + mnp::stat_name(s) + " " + std::to_string(mnp::stat(s));
  }
  std::printf("%s\n", line.c_str());
}

void print_totals(const char* why) {
  std::printf(
      "echo-server: %s: accepted %llu, bytes echoed %llu, connection errors %llu, accept errors "
      "%llu, open %lld, fds %s\n",
      why, static_cast<unsigned long long>(g_count.accepted.load()),
      static_cast<unsigned long long>(g_count.bytes.load()),
      static_cast<unsigned long long>(g_count.conn_errors.load()),
      static_cast<unsigned long long>(g_count.accept_errors.load()),
      static_cast<long long>(g_count.open.load()), g_fds->text().c_str());
}

// Wakes every 100 ms: exits on a signal, prints the per-second line.
void ticker(const Flags& flags) {
  int64_t next = mnp::nanotime() + 1'000'000'000;
  for (;;) {
    mnp::sleep(100ms);
    if (int sig = g_signal.load(std::memory_order_relaxed)) {
      flush_conn_errors();
      if (g_print_stats) print_stats();
      print_totals(sig == SIGINT ? "SIGINT" : "SIGTERM");
      std::fflush(stdout);
      mnp::debug::flush_trace();  // MNP_TRACE: the timeline up to now
      std::_Exit(0);              // other Gs may be mid-write: do not run destructors under them
    }
    if (g_print_stats) print_stats();
    if (mnp::nanotime() < next) continue;
    next = mnp::nanotime() + 1'000'000'000;
    flush_conn_errors();
    if (!flags.quiet) {
      std::printf("echo-server: conns open %lld, accepted %llu, bytes echoed %llu, fds %s%s\n",
                  static_cast<long long>(g_count.open.load()),
                  static_cast<unsigned long long>(g_count.accepted.load()),
                  static_cast<unsigned long long>(g_count.bytes.load()), g_fds->text().c_str(),
                  flags.leak ? (", leaked " + std::to_string(g_count.leaked.load())).c_str() : "");
    } else if (flags.leak) {
      std::printf("echo-server: fds %s, leaked %llu\n", g_fds->text().c_str(),
                  static_cast<unsigned long long>(g_count.leaked.load()));
    }
  }
}

// Go's http.Server manner for a failing accept: sleep 5 ms, 10 ms, ... up to
// 1 s between tries; a success resets it. Out of fds (EMFILE) the pending
// connection stays in the kernel's accept queue, so nothing is lost by
// waiting. An episode (the failures until the next success) is logged once
// when it starts and once when it ends; episodes starting within a second of
// the last logged one are only counted, so a server living at its fd limit
// prints about two lines a second, not two per episode.
class AcceptBackoff {
 public:
  void failed(const Error& err) {
    g_count.accept_errors.fetch_add(1, std::memory_order_relaxed);
    if (tries_++ == 0) {
      start_ = mnp::nanotime();
      logged_ = start_ - last_log_ >= kSecond;
      if (logged_) {
        std::printf("echo-server: %s (fds %s); backing off 5 ms doubling to 1 s until it works%s\n",
                    err.message().c_str(), g_fds->text().c_str(),
                    unlogged_ == 0 ? ""
                                   : (" (" + std::to_string(unlogged_) +
                                      " shorter episodes since the last report)")
                                         .c_str());
        last_log_ = start_;
        unlogged_ = 0;
      } else {
        unlogged_++;
      }
    }
    delay_ = delay_ == mnp::Duration::zero() ? mnp::Duration(5ms) : delay_ * 2;
    if (delay_ > 1s) delay_ = 1s;
    mnp::sleep(delay_);
  }

  void succeeded() {
    if (tries_ == 0) return;
    if (logged_) {
      std::printf("echo-server: accept works again after %llu failed tries in %.2f s (fds %s)\n",
                  static_cast<unsigned long long>(tries_),
                  static_cast<double>(mnp::nanotime() - start_) / 1e9, g_fds->text().c_str());
    }
    tries_ = 0;
    delay_ = mnp::Duration::zero();
  }

 private:
  static constexpr int64_t kSecond = 1'000'000'000;
  mnp::Duration delay_{0};
  uint64_t tries_ = 0;           // failures in this episode
  int64_t start_ = 0;            // when this episode began (ns)
  bool logged_ = false;          // this episode's start was printed
  int64_t last_log_ = -kSecond;  // when the last printed episode began
  uint64_t unlogged_ = 0;        // episodes counted, not printed, since then
};

// The accept loop (the program's first G): one G per accepted connection.
int serve_forever(const Flags& flags) {
  auto [ln, err] = mnp::net::listen("tcp", flags.addr);
  if (err) {
    std::fprintf(stderr, "echo-server: %s\n", err.message().c_str());
    return 1;
  }
  std::printf("echo-server: listening on %s (pid %d, backend %s, procs %d, fds %s%s)\n",
              ln->addr().to_string().c_str(), static_cast<int>(getpid()), mnp::backend_name(),
              mnp::procs(), g_fds->text().c_str(), flags.leak ? ", LEAK=true: never closing" : "");
  mnp::go([&flags] { ticker(flags); });

  AcceptBackoff backoff;
  for (;;) {
    auto [conn, aerr] = ln->accept();
    if (aerr) {
      if (aerr == Errc::closed) return 0;
      backoff.failed(aerr);
      continue;
    }
    backoff.succeeded();
    g_count.accepted.fetch_add(1, std::memory_order_relaxed);
    g_count.open.fetch_add(1, std::memory_order_relaxed);
    if (flags.verbose) {
      std::printf("echo-server: accepted fd %d from %s\n", conn->sysfd(),
                  conn->remote_addr().to_string().c_str());
    }
    mnp::go([c = std::move(conn), &flags]() mutable { serve(std::move(c), flags); });
  }
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: echo-server [--addr HOST:PORT] [--quiet] [--verbose]\n"
               "  --addr     where to listen (default 127.0.0.1:9000; port 0: any free port)\n"
               "  --quiet    no per-second status line\n"
               "  --verbose  one line per accepted and per closed connection\n"
               "environment: LEAK=true never closes connections (fd leak experiment);\n"
               "             MNP_BACKEND=epoll|uring-poll|uring|kqueue, MNP_PROCS=N;\n"
               "             MNP_STATS=1 prints the runtime's counters every 100 ms\n");
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    if (a == "--addr" && i + 1 < argc) {
      flags.addr = argv[++i];
    } else if (a.starts_with("--addr=")) {
      flags.addr = std::string(a.substr(7));
    } else if (a == "--quiet" || a == "-q") {
      flags.quiet = true;
    } else if (a == "--verbose" || a == "-v") {
      flags.verbose = true;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "echo-server: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (const char* leak = std::getenv("LEAK")) {
    flags.leak = std::strcmp(leak, "true") == 0 || std::strcmp(leak, "1") == 0;
  }
  if (const char* st = std::getenv("MNP_STATS")) g_print_stats = std::strcmp(st, "1") == 0;
  // Line-buffered even into a pipe or file, so tests and `tee` see each line.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  g_fds = new FdCounter;  // never freed: Gs may still use it at exit
  g_leaked = new std::vector<std::unique_ptr<mnp::net::Conn>>;
  int status = 0;
  int rc = mnp::run([&] { status = serve_forever(flags); });
  return rc != 0 ? rc : status;
}
