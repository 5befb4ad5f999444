// demos/c10k/c10k_server.cpp — experiment 10 of EXPERIMENTS.md: 10,000 idle
// connections, one coroutine each, or one OS thread each, and what each costs
// in memory, measured.
//
//   build/demos/c10k-server --mode coro    --conns 10000 &   # one G per connection
//   build/demos/c10k-client --addr ADDR --conns 10000        # another process
//   MNP_STACK=copy build/demos/c10k-server --mode coro ... &  # the same, copied stacks
//   build/demos/c10k-server --mode threads --conns 10000 &   # one std::thread each
//
// Two kinds of coroutine stack (runtime/sched/sched.h), same handler:
//   page stacks (default)  each G has its own mmap'd stack; an idle G costs the
//                          pages its frames touched: one 4 KiB page here
//   copied stacks          MNP_STACK=copy: every G runs on one shared stack;
//                          a parked G's frames (a few hundred bytes here) are
//                          copied to a heap buffer of their size
// The handler's frame is what a copied stack saves, so it reads into a small
// buffer (64 bytes) in its frame, in both modes alike.
//
// Each connection's G (or thread) sits in read(), waiting for bytes that never
// come, as most connections of a real server do most of the time. What to
// watch, twice a second, from /proc:
//   RSS            resident memory of this process (VmRSS) above what it was
//                  before the first connection, divided by the connections:
//                  the user-space cost of one connection (a G's touched stack
//                  pages or saved frames, its G record, Conn and pollDesc; or
//                  a thread's touched stack, its TLS and glibc's struct pthread)
//   VmSize         the address space reserved: a G's stack reservation
//                  (MNP_STACK_SIZE, 256 KiB by default) or a thread's stack
//                  (--stack-kib; glibc's default is 8 MiB: 80 GiB for 10,000)
//   KernelStack    from /proc/meminfo, machine-wide: every thread also has a
//                  kernel stack (16 KiB on x86-64), which RSS does not show.
//                  Gs have none: they all run on a few Ms.
//   threads        Threads: in /proc/PID/status
// The kernel's own socket memory (buffers, ~1 KiB+ per idle socket) is the
// same in both modes and is in neither number.
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "args.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "sockstate.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string mode;
  std::string addr = "127.0.0.1:9200";
  int conns = 10000;   // print the per-connection figure when this many are open
  double hold = 0;     // then exit after this many seconds (0: run until killed)
  int stack_kib = 64;  // threads mode: each thread's stack
};

std::atomic<int> g_open{0};

// The memory figures, and a line about them. Runs on a plain thread in both
// modes (it only reads /proc), so it never competes with the Gs it measures.
struct Baseline {
  long rss_kib, vm_kib, kstack_kib, threads;
};
Baseline measure() {
  sockstate::ProcStatus p = sockstate::proc_status();
  return {p.rss_kib, p.vm_size_kib, sockstate::meminfo_kib("KernelStack"), p.threads};
}

void monitor(const Flags& f, const char* what) {
  Baseline b0 = measure();
  std::printf("c10k-server[%s]: before any connection: RSS %ld KiB, VmSize %ld KiB, threads %ld\n",
              what, b0.rss_kib, b0.vm_kib, b0.threads);
  int64_t full_since = 0;
  int last = -1;
  for (;;) {
    std::this_thread::sleep_for(500ms);
    Baseline b = measure();
    int n = g_open.load();
    double per = n > 0 ? static_cast<double>(b.rss_kib - b0.rss_kib) / n : 0;
    std::printf(
        "c10k-server[%s]: conns %5d | RSS %7ld KiB (+%.1f KiB/conn) | VmSize %9ld KiB | "
        "KernelStack +%ld KiB | threads %ld\n",
        what, n, b.rss_kib, per, b.vm_kib, b.kstack_kib - b0.kstack_kib, b.threads);
    // All connections in, and no change for a second: the result.
    if (n >= f.conns && n == last) {
      if (full_since == 0) {
        full_since = mnp::nanotime();
        std::printf(
            "c10k-server[%s]: result: conns %d rss_per_conn_kib %.1f vm_per_conn_kib %.1f "
            "kernel_stack_per_conn_kib %.1f threads %ld\n",
            what, n, per, static_cast<double>(b.vm_kib - b0.vm_kib) / n,
            static_cast<double>(b.kstack_kib - b0.kstack_kib) / n, b.threads);
      } else if (f.hold > 0 && static_cast<double>(mnp::nanotime() - full_since) / 1e9 >= f.hold) {
        std::fflush(stdout);
        std::_Exit(0);
      }
    }
    last = n;
  }
}

// --- coroutines: one G per connection, parked in read ------------------------------

int run_coro(const Flags& f) {
  // The label says which stacks the Gs have (MNP_STACK is the runtime's).
  const char* sm = std::getenv("MNP_STACK");
  static const char* what = sm && std::string_view(sm) == "copy" ? "coro-copy" : "coro";
  return mnp::run([&] {
    auto [ln, err] = mnp::net::listen("tcp", f.addr);
    if (err) {
      std::fprintf(stderr, "c10k-server: %s\n", err.message().c_str());
      std::exit(1);
    }
    std::printf("c10k-server[%s]: listening on %s (pid %d, backend %s, procs %d)\n", what,
                ln->addr().to_string().c_str(), static_cast<int>(getpid()), mnp::backend_name(),
                mnp::procs());
    std::thread(monitor, std::cref(f), what).detach();
    for (;;) {
      auto [c, aerr] = ln->accept();
      if (aerr) {
        std::fprintf(stderr, "c10k-server: %s\n", aerr.message().c_str());
        mnp::sleep(10ms);
        continue;
      }
      g_open++;
      mnp::go([c = std::move(c)] {
        char buf[64];
        auto r = c->read(buf, sizeof buf);  // parks until the client speaks or leaves
        (void)r;
        g_open--;
      });
    }
  });
}

// --- threads: one std::thread per connection, blocked in read(2) ---------------------

int run_threads(const Flags& f) {
  // std::thread has no stack size parameter; glibc's default attributes apply
  // to every thread created after this call (pthread_setattr_default_np(3)).
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, static_cast<size_t>(f.stack_kib) * 1024);
  if (int e = pthread_setattr_default_np(&attr); e != 0) {
    std::fprintf(stderr, "c10k-server: pthread_setattr_default_np: %s\n", std::strerror(e));
    return 1;
  }
  pthread_attr_destroy(&attr);

  auto addr = mnp::net::Addr::parse(f.addr);
  if (addr.err) {
    std::fprintf(stderr, "c10k-server: %s\n", addr.err.message().c_str());
    return 2;
  }
  int ln = socket(addr.value.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(ln, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ln < 0 || bind(ln, addr.value.sockaddr_ptr(), addr.value.len()) != 0 ||
      listen(ln, 4096) != 0) {
    std::fprintf(stderr, "c10k-server: listen %s: %s\n", f.addr.c_str(), std::strerror(errno));
    return 1;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(ln, reinterpret_cast<sockaddr*>(&ss), &len);
  std::printf(
      "c10k-server[threads]: listening on %s (pid %d, %d KiB stack per thread)\n",
      mnp::net::Addr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).to_string().c_str(),
      static_cast<int>(getpid()), f.stack_kib);
  std::thread(monitor, std::cref(f), "threads").detach();
  for (;;) {
    int fd = accept4(ln, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      std::fprintf(stderr, "c10k-server: accept: %s\n", std::strerror(errno));
      std::this_thread::sleep_for(10ms);
      continue;
    }
    g_open++;
    try {
      std::thread([fd] {
        char buf[64];
        ssize_t r = read(fd, buf, sizeof buf);  // blocks this OS thread
        (void)r;
        close(fd);
        g_open--;
      }).detach();
    } catch (const std::system_error& e) {  // EAGAIN: out of threads (ulimit -u, pids.max)
      std::fprintf(stderr, "c10k-server: thread %d: %s\n", g_open.load(), e.what());
      close(fd);
      g_open--;
      std::this_thread::sleep_for(100ms);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("c10k-server",
                  "--mode coro|threads [--addr HOST:PORT] [--conns N] [--hold SEC] "
                  "[--stack-kib KIB]\n"
                  "  --conns      print the per-connection result once N are open (default 10000)\n"
                  "  --hold       exit SEC seconds after that (default: run until killed)\n"
                  "  --stack-kib  threads mode: stack per thread (default 64; glibc's: 8192)");
  args.choice("--mode", &f.mode, {"coro", "threads"})
      .str("--addr", &f.addr)
      .num("--conns", &f.conns, 1, 50000)
      .num("--hold", &f.hold, 0.0, 3600.0)
      .num("--stack-kib", &f.stack_kib, 16, 1 << 20);
  if (!args.parse(argc, argv)) return 2;
  if (f.mode.empty()) {
    std::fprintf(stderr, "c10k-server: --mode is required\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return f.mode == "coro" ? run_coro(f) : run_threads(f);
}
