// tests/soak/soak.cpp — mnp-soak: connection churn through the echo server.
//
//   mnp-soak --server build/demos/echo-server [--backend B] [--cycles N]
//            [--conns C] [--fin-every K] [--max-seconds S] [--server-backend B]
//
// For each backend (default: every one this build knows; one this machine
// cannot run is skipped by name, with the reason), it starts the echo server
// on 127.0.0.1:0 with MNP_BACKEND set, and N times (default 100,000):
// connect, write a 64-byte message naming the cycle, read the echo back and
// compare, close. C client Gs (default 64) in this process, on the same
// backend, share the cycles. Loopback only.
//
// TIME_WAIT: the client closes first, so a graceful close would leave every
// cycle's port in TIME_WAIT on the client side for 60 s (100,000 of them
// exhaust the ephemeral range). So all but one cycle in K (default 100) close
// with SO_LINGER 0: an RST, no TIME_WAIT (and the server's read sees
// Errc::reset: the reset path is soaked too); one in K closes with a FIN, so
// the graceful path is soaked as well (1,000 TIME_WAITs per 100,000 cycles).
//
// Asserted, after a warm-up of the same shape (2% of N, at least 1,000
// cycles: the runtime's caches of Gs, stacks and pollDescs reach their
// working size) and again after the N cycles, once the server has closed
// everything:
//   - every cycle's echo was exact, no dial/read/write failed;
//   - the server accepted exactly the cycles made, and exits 0 on SIGTERM;
//   - server: open fds (/proc/PID/fd) back to the baseline exactly; its G
//     count (from its SIGQUIT dump, "mnp: N goroutines") back to baseline;
//     RSS (VmRSS) within max(4 MiB, 10%) of it;
//   - this process: the same for its own fds, Gs (mnp::num_goroutines())
//     and RSS.
// It prints cycles per second per backend. Exit status: 0 all passed, 1 a
// check failed, 2 bad usage or the server could not start.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/error.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using mnp::Errc;

struct Flags {
  std::string server;
  std::vector<std::string> backends;
  std::string server_backend;  // "": the same as the client's
  uint64_t cycles = 100000;
  int conns = 64;
  uint64_t fin_every = 100;
  double max_seconds = 120;
};

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

long count_fds(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  long n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

// A field of /proc/PID/status ("VmRSS:", "SigCgt:"), as text.
std::string status_field(const std::string& pid, const char* name) {
  std::ifstream f("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(name, 0) == 0) return line.substr(std::strlen(name));
  return {};
}

long rss_kib(const std::string& pid) {
  return std::strtol(status_field(pid, "VmRSS:").c_str(), nullptr, 10);
}

struct Server {
  pid_t pid = -1;
  std::string log;  // its stdout and stderr
  std::string addr;

  std::string spid() const { return std::to_string(pid); }

  bool start(const std::string& path, const std::string& backend) {
    char tmpl[] = "/tmp/mnp-soak-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) return false;
    log = tmpl;
    std::vector<std::string> env_s;
    for (char** e = environ; *e; e++) {
      if (std::strncmp(*e, "MNP_BACKEND=", 12) != 0) env_s.emplace_back(*e);
    }
    env_s.push_back("MNP_BACKEND=" + backend);
    std::vector<char*> envp;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string a0 = path, a1 = "--addr", a2 = "127.0.0.1:0", a3 = "--quiet";
    char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), nullptr};
    // fork + exec, not posix_spawn: the server must die with this process
    // (PR_SET_PDEATHSIG), even when a CI timeout kills it. Called outside
    // mnp::run (no other thread), and the child makes only async-signal-safe
    // calls before exec.
    const pid_t parent = getpid();
    pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(fd, 1);
      dup2(fd, 2);
      ::close(fd);
      execve(path.c_str(), argv, envp.data());
      _exit(127);
    }
    ::close(fd);
    if (pid < 0) {
      std::fprintf(stderr, "mnp-soak: cannot start %s: %s\n", path.c_str(), std::strerror(errno));
      pid = -1;
      return false;
    }
    // "echo-server: listening on 127.0.0.1:PORT (pid ...)"
    for (int i = 0; i < 500; i++) {
      const std::string out = read_file(log);
      const size_t p = out.find("listening on ");
      if (p != std::string::npos) {
        const size_t e = out.find(' ', p + 13);
        if (e != std::string::npos) {
          addr = out.substr(p + 13, e - p - 13);
          return true;
        }
      }
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        std::fprintf(stderr, "mnp-soak: the server exited at start:\n%s", out.c_str());
        pid = -1;
        return false;
      }
      usleep(10000);
    }
    std::fprintf(stderr, "mnp-soak: the server did not say where it listens:\n%s",
                 read_file(log).c_str());
    return false;
  }

  long fds() const { return count_fds("/proc/" + spid() + "/fd"); }
  long rss() const { return rss_kib(spid()); }

  // Its G count, from the runtime's SIGQUIT dump; -1 when it does not catch
  // SIGQUIT (a runtime without the dump: the signal would kill it).
  long goroutines() const {
    const std::string cgt = status_field(spid(), "SigCgt:");
    const unsigned long long mask = std::strtoull(cgt.c_str(), nullptr, 16);
    if (!(mask & (1ull << (SIGQUIT - 1)))) return -1;
    const size_t from = read_file(log).size();
    kill(pid, SIGQUIT);
    for (int i = 0; i < 300; i++) {
      usleep(10000);
      const std::string out = read_file(log);
      const size_t p = out.find(" goroutines (", from);
      if (p == std::string::npos) continue;
      const size_t b = out.rfind("mnp: ", p);
      if (b == std::string::npos || b < from) continue;
      return std::strtol(out.c_str() + b + 5, nullptr, 10);
    }
    return -2;
  }

  // SIGTERM; the exit status, and the "accepted N" of its last line.
  int stop(uint64_t* accepted) {
    if (pid < 0) return -1;
    kill(pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 500; i++) {
      if (waitpid(pid, &st, WNOHANG) == pid) break;
      usleep(10000);
      if (i == 499) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
      }
    }
    pid = -1;
    const std::string out = read_file(log);
    const size_t p = out.rfind("accepted ");
    if (p != std::string::npos) *accepted = std::strtoull(out.c_str() + p + 9, nullptr, 10);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  void remove_log() const { ::unlink(log.c_str()); }
};

struct Churn {
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> failures{0};
  mnp::Mutex mu;
  std::string first_failure;  // guarded by mu

  void fail(const std::string& what) {
    if (failures.fetch_add(1) == 0) {
      mu.lock();
      first_failure = what;
      mu.unlock();
    }
  }
};

// One client G: cycles until `end` are taken.
void client(Churn& ch, const std::string& addr, uint64_t end, uint64_t fin_every) {
  char msg[64], buf[64];
  for (;;) {
    const uint64_t i = ch.next.fetch_add(1);
    if (i >= end) return;
    // Bounded: a connect that never completes (a lost wake-up) fails the
    // cycle instead of hanging the soak.
    auto [c, err] = mnp::net::dial_timeout("tcp", addr, 10s);
    if (err) {
      ch.fail("dial: " + err.message());
      continue;
    }
    c->set_deadline(mnp::Clock::now() + 10s);
    std::memset(msg, '.', sizeof msg);
    std::snprintf(msg, sizeof msg, "cycle %" PRIu64 " ", i);
    msg[sizeof msg - 1] = '\n';
    if (auto w = c->write(msg, sizeof msg); w.err) {
      ch.fail("write: " + w.err.message());
      continue;
    }
    size_t got = 0;
    while (got < sizeof buf) {
      auto r = c->read(buf + got, sizeof buf - got);
      got += r.n;
      if (r.err) break;
    }
    if (got != sizeof buf || std::memcmp(buf, msg, sizeof msg) != 0) {
      ch.fail("cycle " + std::to_string(i) + ": echoed " + std::to_string(got) +
              " bytes, not the 64 sent");
      continue;
    }
    if (i % fin_every != 0) c->set_linger(0);  // RST: no TIME_WAIT
    c->close();
    ch.done.fetch_add(1, std::memory_order_relaxed);
  }
}

// Runs cycles [from, to) with `conns` client Gs; false past the time limit.
bool churn(Churn& ch, const std::string& addr, uint64_t from, uint64_t to, int conns,
           uint64_t fin_every, double limit_s) {
  ch.next.store(from);  // each G's last fetch_add went past the previous end
  mnp::WaitGroup wg;
  for (int k = 0; k < conns; k++) {
    wg.add(1);
    mnp::go([&] {
      client(ch, addr, to, fin_every);
      wg.done();
    });
  }
  // A watchdog G: past the limit, the remaining cycles are given up.
  std::atomic<bool> over{false}, finished{false};
  mnp::WaitGroup wd;
  wd.add(1);
  mnp::go([&] {
    const auto t0 = std::chrono::steady_clock::now();
    while (!finished.load()) {
      if (secs_since(t0) > limit_s) {
        over = true;
        ch.next.store(to);
        break;
      }
      mnp::sleep(50ms);
    }
    wd.done();
  });
  wg.wait();
  finished = true;
  wd.wait();
  return !over.load();
}

struct Snapshot {
  long s_fds, s_rss, s_gs, c_fds, c_rss, c_gs;
};

Snapshot snap(const Server& s) {
  return {s.fds(),         s.rss(),
          s.goroutines(),  count_fds("/proc/self/fd"),
          rss_kib("self"), static_cast<long>(mnp::num_goroutines())};
}

int soak_backend(const Flags& f, const std::string& backend) {
  const std::string why = mnp::backend_unavailable_reason(backend.c_str());
  if (!why.empty()) {
    std::printf("mnp-soak: %s: SKIPPED (%s)\n", backend.c_str(), why.c_str());
    return 0;
  }
  Server srv;
  if (!srv.start(f.server, f.server_backend.empty() ? backend : f.server_backend)) return 2;
  int failed = 0;
  auto check = [&](bool ok, const std::string& what) {
    std::printf("mnp-soak: %s:   %s  %s\n", backend.c_str(), ok ? "ok  " : "FAIL", what.c_str());
    if (!ok) failed++;
  };
  uint64_t warm = std::max<uint64_t>(1000, f.cycles / 50);
  mnp::Options opts;
  opts.backend = backend.c_str();
  double rate = 0, took = 0;
  bool in_time = true;
  Churn ch;
  Snapshot base{}, after{};
  long waited_ms = 0;
  const int rc = mnp::run(
      [&] {
        // The server's own Gs (accept loop, ticker) and fds: its idle state.
        churn(ch, srv.addr, 0, warm, f.conns, f.fin_every, f.max_seconds);
        mnp::sleep(200ms);  // the server closes its side of the last cycles
        base = snap(srv);
        const auto t0 = std::chrono::steady_clock::now();
        in_time = churn(ch, srv.addr, warm, warm + f.cycles, f.conns, f.fin_every, f.max_seconds);
        took = secs_since(t0);
        rate = static_cast<double>(ch.done.load() - warm) / took;
        // The server closes each connection once it reads the RST or EOF:
        // wait (bounded) until its fds are back, then look.
        const auto t1 = std::chrono::steady_clock::now();
        while (srv.fds() > base.s_fds && secs_since(t1) < 5) mnp::sleep(10ms);
        mnp::sleep(100ms);
        waited_ms = static_cast<long>(secs_since(t1) * 1000);
        after = snap(srv);
      },
      opts);
  if (rc != 0) {
    std::printf("mnp-soak: %s: FAIL mnp::run returned %d\n", backend.c_str(), rc);
    uint64_t acc = 0;
    srv.stop(&acc);
    return 1;
  }
  std::printf("mnp-soak: %s: %" PRIu64
              " cycles in %.1f s: %.0f cycles/s (%d client Gs, 1 in %" PRIu64
              " closed with FIN, the rest with RST; %" PRIu64 " warm-up cycles before)\n",
              backend.c_str(), ch.done.load() - warm, took, rate, f.conns, f.fin_every, warm);
  check(in_time, "finished within " + std::to_string(static_cast<int>(f.max_seconds)) + " s");
  check(ch.failures.load() == 0,
        std::to_string(ch.failures.load()) + " failed cycles" +
            (ch.first_failure.empty() ? "" : " (first: " + ch.first_failure + ")"));
  check(ch.done.load() == warm + f.cycles, std::to_string(ch.done.load()) + " of " +
                                               std::to_string(warm + f.cycles) +
                                               " cycles echoed exactly");
  auto line = [](const char* what, long a, long b, const char* unit = "") {
    return std::string(what) + " " + std::to_string(a) + unit + " -> " + std::to_string(b) + unit;
  };
  check(after.s_fds == base.s_fds, line("server fds", base.s_fds, after.s_fds) + " (after " +
                                       std::to_string(waited_ms) + " ms)");
  if (base.s_gs == -1) {
    std::printf("mnp-soak: %s:   skip  server G count (its runtime does not catch SIGQUIT)\n",
                backend.c_str());
  } else {
    check(base.s_gs > 0 && after.s_gs == base.s_gs, line("server Gs", base.s_gs, after.s_gs));
  }
  const long s_tol = std::max(4096L, base.s_rss * 10 / 100);
  check(after.s_rss <= base.s_rss + s_tol, line("server RSS", base.s_rss, after.s_rss, " KiB") +
                                               " (tolerance +" + std::to_string(s_tol) + " KiB)");
  check(after.c_fds == base.c_fds, line("client fds", base.c_fds, after.c_fds));
  check(after.c_gs == base.c_gs, line("client Gs", base.c_gs, after.c_gs));
  const long c_tol = std::max(4096L, base.c_rss * 10 / 100);
  check(after.c_rss <= base.c_rss + c_tol, line("client RSS", base.c_rss, after.c_rss, " KiB") +
                                               " (tolerance +" + std::to_string(c_tol) + " KiB)");
  uint64_t accepted = 0;
  const int st = srv.stop(&accepted);
  check(st == 0, "server exit status " + std::to_string(st) + " on SIGTERM");
  check(accepted == ch.done.load() + ch.failures.load(),
        "server accepted " + std::to_string(accepted) +
            " (cycles made: " + std::to_string(ch.done.load() + ch.failures.load()) + ")");
  if (failed) {
    std::printf("mnp-soak: %s: the server's output is in %s\n", backend.c_str(), srv.log.c_str());
  } else {
    srv.remove_log();
  }
  return failed ? 1 : 0;
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: mnp-soak --server PATH [--backend NAME]... [--cycles N] [--conns C]\n"
               "                [--fin-every K] [--max-seconds S]\n"
               "  --server       the echo server binary (build/demos/echo-server)\n"
               "  --backend      a backend to soak (repeatable; default: every one built)\n"
               "  --server-backend  the server's, if not the same (to tell which side fails)\n"
               "  --cycles       connect/echo/close cycles per backend (default 100000)\n"
               "  --conns        concurrent client Gs (default 64)\n"
               "  --fin-every    one cycle in K closes with FIN, the rest with RST (100)\n"
               "  --max-seconds  time limit per backend (default 120)\n");
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) {
        usage(stderr);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--server") {
      f.server = val();
    } else if (a == "--backend") {
      f.backends.emplace_back(val());
    } else if (a == "--server-backend") {
      f.server_backend = val();
    } else if (a == "--cycles") {
      f.cycles = std::strtoull(val(), nullptr, 10);
    } else if (a == "--conns") {
      f.conns = std::atoi(val());
    } else if (a == "--fin-every") {
      f.fin_every = std::max<uint64_t>(1, std::strtoull(val(), nullptr, 10));
    } else if (a == "--max-seconds") {
      f.max_seconds = std::atof(val());
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (f.server.empty() || f.cycles == 0 || f.conns <= 0) {
    usage(stderr);
    return 2;
  }
  if (f.backends.empty()) {
    for (const char* const* p = mnp::backend_names(); p && *p; ++p) f.backends.emplace_back(*p);
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int rc = 0;
  int passed = 0, failed = 0, skipped = 0;
  for (const auto& b : f.backends) {
    const bool avail = mnp::backend_unavailable_reason(b.c_str()).empty();
    const int r = soak_backend(f, b);
    if (!avail) {
      skipped++;
    } else if (r == 0) {
      passed++;
    } else {
      failed++;
    }
    rc = std::max(rc, r);
  }
  std::printf("soak: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return rc;
}
