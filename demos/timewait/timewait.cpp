// demos/timewait/timewait.cpp — experiment 4 of EXPERIMENTS.md: the TIME_WAIT
// bomb, and the connection pool that defuses it.
//
//   build/demos/timewait                 the bomb, then the pool, same work
//   build/demos/timewait --mode bomb     only the bomb (--mode pool: only the pool)
//
// The server (a G in this process) answers "GET n\n" with "OK n\n" on a
// connection until the client closes. The bomb opens one connection per
// request and closes it first, so every request leaves one socket in
// TIME_WAIT on the client side for 2*MSL (60 s on Linux). What to watch:
//   TIME-WAIT      counted live by sock_diag (client side: remote port = the
//                  server's): it climbs with every request...
//   dial errors    ... until every port of the range is held by a TIME_WAIT
//                  towards this one server address: connect fails with
//                  "cannot assign requested address" (EADDRNOTAVAIL)
//   the pool       the same requests over 4 connections kept open and
//                  reused: TIME-WAIT stays at 0 while it works
//
// Safely: the bomb does not use the machine's ephemeral ports
// (net.ipv4.ip_local_port_range), only a small range set per socket with
// IP_LOCAL_PORT_RANGE (Linux 6.3; DialConfig::local_port_lo/hi), checked to
// lie inside the machine's (outside it, the kernel would ignore it), and it
// stops after --requests or --duration. A TIME_WAIT socket only blocks its own
// quadruple (this client address, that port, the server's address and port):
// other destinations can still use these ports. For full isolation run it in
// a private network namespace: sudo unshare -n sh -c 'ip link set lo up; ...'
//
// Confirm with: ss -tan state time-wait | wc -l; sysctl net.ipv4.ip_local_port_range
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/bufio.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sockstate_g.h"

namespace {

using namespace std::chrono_literals;
using mnp::Errc;

struct Flags {
  std::string mode = "both";
  uint16_t lo = 50000, hi = 50999;  // the per-socket port range
  int requests = 4000;
  double duration = 2.5;  // seconds, at most, for the bomb
  double rate = 2000;     // bomb connections per second (so the climb can be watched)
  int pool = 4;           // connections in the pool
};

// --- the server: answers "GET n" with "OK n" until the client closes ----------

void serve(std::unique_ptr<mnp::net::Conn> c) {
  mnp::bufio::Reader in(*c);
  for (;;) {
    auto [line, err] = in.read_line();
    if (err) break;  // EOF: the client closed first, as a client should
    std::string reply = "OK " + std::string(line.substr(4)) + "\n";
    if (c->write(reply).err) break;
  }
  c->close();  // passive close: this side goes LAST-ACK -> CLOSED, no TIME_WAIT
}

std::unique_ptr<mnp::net::Listener> start_server() {
  auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
  if (err) {
    std::fprintf(stderr, "timewait: %s\n", err.message().c_str());
    std::exit(1);
  }
  mnp::go([l = ln.get()] {
    for (;;) {
      auto [c, aerr] = l->accept();
      if (aerr) return;
      mnp::go([c = std::move(c)]() mutable { serve(std::move(c)); });
    }
  });
  return std::move(ln);
}

// One request on an open connection: "GET n\n" -> "OK n\n".
mnp::Error request(mnp::net::Conn& c, mnp::bufio::Reader& in, int n) {
  if (auto w = c.write("GET " + std::to_string(n) + "\n"); w.err) return w.err;
  auto [line, err] = in.read_line();
  return err;
}

// --- what the kernel says ---------------------------------------------------------

struct Watch {
  uint16_t port;    // the server's
  uint16_t lo, hi;  // our local port range: other programs' sockets are not counted
  int64_t t0 = mnp::nanotime();
  uint32_t peak_tw = 0;

  void line(const char* who, int done, int errors) {
    sockstate::Query q;
    q.port = port;
    q.side = sockstate::Query::Side::remote;  // the client side of each connection
    std::vector<sockstate::Socket> socks;
    sockstate::g::dump(q, &socks);
    uint32_t tw = 0, estab = 0;
    for (const auto& s : socks) {
      if (s.local_port < lo || s.local_port > hi) continue;
      if (s.state == sockstate::TcpState::time_wait) tw++;
      if (s.state == sockstate::TcpState::established) estab++;
    }
    if (tw > peak_tw) peak_tw = tw;
    std::printf(
        "%s %5.2f s  requests done %6d  dial errors %6d  | client side: TIME-WAIT %6u  "
        "ESTAB %3u\n",
        who, static_cast<double>(mnp::nanotime() - t0) / 1e9, done, errors, tw, estab);
  }
};

// --- the bomb: one connection per request, closed by the client ----------------

struct Tally {
  std::atomic<int> next{0}, done{0}, errors{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> printed_error{false};
  std::atomic<int64_t> first_error_ns{0};
  std::atomic<int> done_at_first_error{0};
};

void bomb_worker(const Flags& f, const std::string& addr, Tally& t, mnp::Duration gap) {
  mnp::net::DialConfig cfg;
  cfg.timeout = 2s;
  cfg.local_port_lo = f.lo;
  cfg.local_port_hi = f.hi;
  while (!t.stop.load()) {
    int n = t.next.fetch_add(1);
    if (n >= f.requests) return;
    mnp::sleep(gap);
    auto [c, err] = mnp::net::dial("tcp", addr, cfg);
    if (err) {
      t.errors++;
      if (!t.printed_error.exchange(true)) {
        t.first_error_ns = mnp::nanotime();
        t.done_at_first_error = t.done.load();
        std::printf("bomb: request %d: %s\n", n, err.message().c_str());
      }
      if (err != Errc::addr_not_avail) t.stop = true;  // only exhaustion is expected
      t.next--;                                        // the request is still to be done: retry it
      continue;
    }
    uint16_t lport = c->local_addr().port();
    if (lport < f.lo || lport > f.hi) {  // the range was not applied: stop at once
      std::printf("bomb: local port %u outside %u-%u: IP_LOCAL_PORT_RANGE ignored; stopping\n",
                  lport, f.lo, f.hi);
      std::exit(1);
    }
    mnp::bufio::Reader in(*c);
    if (request(*c, in, n)) {
      t.errors++;
    } else {
      t.done++;
    }
    c->close();  // active close: this socket enters TIME_WAIT for 60 s
  }
}

void run_bomb(const Flags& f) {
  auto ln = start_server();
  std::string addr = ln->addr().to_string();
  long reuse = sockstate::sysctl_long("net/ipv4/tcp_tw_reuse");
  std::printf(
      "bomb: %d requests to %s, one connection each, closed by the client; local ports "
      "%u-%u (%d ports, IP_LOCAL_PORT_RANGE), %.0f connections/s, at most %.1f s\n",
      f.requests, addr.c_str(), f.lo, f.hi, f.hi - f.lo + 1, f.rate, f.duration);

  Watch w{ln->addr().port(), f.lo, f.hi};
  Tally t;
  constexpr int kWorkers = 8;
  auto gap =
      std::chrono::duration_cast<mnp::Duration>(std::chrono::duration<double>(kWorkers / f.rate));
  mnp::WaitGroup wg;
  wg.add(kWorkers);
  for (int i = 0; i < kWorkers; i++) {
    mnp::go([&] {
      bomb_worker(f, addr, t, gap);
      wg.done();
    });
  }
  int64_t end = mnp::nanotime() + static_cast<int64_t>(f.duration * 1e9);
  while (t.next.load() < f.requests && !t.stop.load() && mnp::nanotime() < end) {
    w.line("bomb:", t.done.load(), t.errors.load());
    mnp::sleep(200ms);
  }
  t.stop = true;
  wg.wait();
  w.line("bomb:", t.done.load(), t.errors.load());

  std::printf(
      "bomb: %d of %d requests done, %d dial errors; TIME-WAIT peak %u for a range of %d "
      "ports\n",
      t.done.load(), f.requests, t.errors.load(), w.peak_tw, f.hi - f.lo + 1);
  if (t.first_error_ns.load() != 0) {
    std::printf(
        "bomb: the first 'cannot assign requested address' came after %d connections, "
        "at %.2f s: every port of the range was in TIME_WAIT towards %s\n",
        t.done_at_first_error.load(), static_cast<double>(t.first_error_ns.load() - w.t0) / 1e9,
        addr.c_str());
  }
  std::printf(
      "bomb: net.ipv4.tcp_tw_reuse = %ld here. It only helps connect() (the client side):\n"
      "        0: never reuse a TIME_WAIT port: exhausted until the oldest TIME_WAIT expires "
      "(60 s)\n"
      "        1: reuse one whose last TCP timestamp is >= 1 s old, if the peer uses timestamps\n"
      "           (their check protects the new connection from the old one's packets)\n"
      "        2: as 1, for loopback traffic only (the default since Linux 5.7)\n"
      "      So with 1 or 2 on loopback the errors stop after about 1 s, and the range serves\n"
      "      about its size in connections per second; a server's TIME_WAITs never benefit.\n"
      "      (tcp_tw_recycle, which broke clients behind NAT, was removed in Linux 4.12.)\n"
      "      The fix is not a sysctl: reuse connections.\n",
      reuse);
  ln->close();
}

// --- the pool: the same requests over a few kept-alive connections ---------------

void run_pool(const Flags& f) {
  auto ln = start_server();  // a fresh port: the bomb's TIME_WAITs are not counted here
  std::string addr = ln->addr().to_string();
  std::printf(
      "pool: the same %d requests to %s over %d kept-alive connections, same port "
      "range %u-%u\n",
      f.requests, addr.c_str(), f.pool, f.lo, f.hi);
  Watch w{ln->addr().port(), f.lo, f.hi};
  Tally t;
  mnp::WaitGroup wg;
  wg.add(f.pool);
  for (int i = 0; i < f.pool; i++) {
    mnp::go([&] {
      mnp::net::DialConfig cfg;
      cfg.timeout = 2s;
      cfg.local_port_lo = f.lo;
      cfg.local_port_hi = f.hi;
      auto [c, err] = mnp::net::dial("tcp", addr, cfg);
      if (err) {
        std::printf("pool: %s\n", err.message().c_str());
        t.errors++;
      } else {
        c->set_keep_alive(true, 15s);  // TCP keep-alive: an idle pooled conn is probed
        mnp::bufio::Reader in(*c);
        for (int n; (n = t.next.fetch_add(1)) < f.requests;) {
          if (request(*c, in, n)) {
            t.errors++;
            break;
          }
          t.done++;
        }
      }
      wg.done();
      // The connection stays open (in the pool) until the end of the work.
      while (!t.stop.load()) mnp::sleep(10ms);
    });
  }
  int64_t start = mnp::nanotime();
  while (t.done.load() + t.errors.load() < f.requests && t.errors.load() == 0) {
    w.line("pool:", t.done.load(), t.errors.load());
    mnp::sleep(100ms);
  }
  wg.wait();
  double secs = static_cast<double>(mnp::nanotime() - start) / 1e9;
  w.line("pool:", t.done.load(), t.errors.load());
  uint32_t during = w.peak_tw;
  t.stop = true;  // the pool is done: its connections close (the client closes first)
  mnp::sleep(100ms);
  w.line("pool:", t.done.load(), t.errors.load());
  std::printf(
      "pool: %d of %d requests done in %.2f s, %d errors; TIME-WAIT while working: %u; "
      "after closing the pool: %u (one per pooled connection)\n",
      t.done.load(), f.requests, secs, t.errors.load(), during, w.peak_tw);
  ln->close();
}

bool parse_range(std::string_view s, uint16_t* lo, uint16_t* hi) {
  auto dash = s.find('-');
  if (dash == std::string_view::npos) return false;
  long a = std::atol(std::string(s.substr(0, dash)).c_str());
  long b = std::atol(std::string(s.substr(dash + 1)).c_str());
  if (a <= 0 || b > 65535 || a > b) return false;
  *lo = static_cast<uint16_t>(a);
  *hi = static_cast<uint16_t>(b);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "timewait: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--mode") {
      f.mode = value();
    } else if (a == "--ports") {
      if (!parse_range(value(), &f.lo, &f.hi)) {
        std::fprintf(stderr, "timewait: --ports wants LO-HI\n");
        return 2;
      }
    } else if (a == "--requests") {
      f.requests = std::atoi(std::string(value()).c_str());
    } else if (a == "--duration") {
      f.duration = std::atof(std::string(value()).c_str());
    } else if (a == "--rate") {
      f.rate = std::atof(std::string(value()).c_str());
    } else if (a == "--pool") {
      f.pool = std::atoi(std::string(value()).c_str());
    } else {
      std::fprintf(stderr,
                   "usage: timewait [--mode bomb|pool|both] [--ports LO-HI] [--requests N]\n"
                   "                [--duration SEC] [--rate CONNS_PER_SEC] [--pool N]\n");
      return 2;
    }
  }
  if (f.mode != "bomb" && f.mode != "pool" && f.mode != "both") {
    std::fprintf(stderr, "timewait: --mode is bomb, pool or both\n");
    return 2;
  }
  // Bounded, whatever the flags say.
  if (f.requests < 1 || f.requests > 50000 || f.duration <= 0 || f.duration > 30 || f.rate <= 0 ||
      f.pool < 1 || f.pool > 64) {
    std::fprintf(stderr, "timewait: requests 1..50000, duration 0..30 s, rate > 0, pool 1..64\n");
    return 2;
  }
  // The per-socket range must lie inside the machine's, or the kernel ignores
  // it and the bomb would use (and exhaust) the machine's whole range.
  FILE* r = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
  long mlo = 0, mhi = 0;
  if (r == nullptr || std::fscanf(r, "%ld %ld", &mlo, &mhi) != 2) {
    std::fprintf(stderr, "timewait: cannot read net.ipv4.ip_local_port_range\n");
    return 1;
  }
  std::fclose(r);
  if (f.lo < mlo || f.hi > mhi || f.hi - f.lo + 1 > 5000) {
    std::fprintf(stderr,
                 "timewait: --ports %u-%u must lie inside net.ipv4.ip_local_port_range (%ld-%ld) "
                 "and span at most 5000 ports\n",
                 f.lo, f.hi, mlo, mhi);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("timewait: the machine's ephemeral range is %ld-%ld (untouched); ours %u-%u\n", mlo,
              mhi, f.lo, f.hi);
  return mnp::run([&] {
    if (f.mode != "pool") run_bomb(f);
    if (f.mode == "both") std::printf("\n");
    if (f.mode != "bomb") run_pool(f);
  });
}
