// demos/acceptq/acceptq.cpp — experiment 5 of EXPERIMENTS.md: the accept
// queue of a listener that stops accepting.
//
//   build/demos/acceptq [--backlog 8] [--clients 16] [--pause 1.5]
//
// listen(2) gives a socket two queues: the SYN queue (handshakes under way)
// and the accept queue (handshakes done, waiting for accept(2)). The kernel
// completes a handshake without the application: connect() returns as soon as
// the connection is in the accept queue. This listener does not accept for
// --pause seconds while --clients clients connect at once. What to watch, four
// times a second, all from the kernel:
//   accept queue   the LISTEN socket's Recv-Q / Send-Q in sock_diag: queued
//                  connections / the backlog. It fills to backlog + 1 (Linux
//                  accepts while the queue is not yet *over* the backlog)...
//   SYN-SENT       ... and the clients after that stall: their SYN is dropped
//                  (TcpExtListenOverflows counts it), they stay in SYN-SENT and
//                  retransmit the SYN: after 1 s, 3 s, 7 s... (doubling), or on
//                  kernels with net.ipv4.tcp_syn_linear_timeouts (N > 0) every
//                  second for the first N tries
//   then accept    the queue drains at once; the stalled clients get in at
//                  their next SYN retransmission: seconds late, not refused.
// (net.ipv4.tcp_abort_on_overflow=1 would reset them instead of dropping.)
//
// Confirm with: ss -ltn 'sport = :PORT' (Recv-Q / Send-Q of the listener);
//               nstat -az TcpExtListenOverflows TcpExtListenDrops
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sockstate_g.h"

namespace {

using namespace std::chrono_literals;
using sockstate::TcpState;

struct Flags {
  int backlog = 8;
  int clients = 16;
  double pause = 1.5;  // seconds without accepting
};

int64_t g_t0;
double secs(int64_t ns = mnp::nanotime()) {
  return static_cast<double>(ns - g_t0) / 1e9;
}

// One line: the listener's queue, both sides' states, the kernel's drop counter.
void report(uint16_t port, long overflows0, int connected, int accepted) {
  sockstate::Query server, clients;
  server.port = clients.port = port;
  server.side = sockstate::Query::Side::local;
  clients.side = sockstate::Query::Side::remote;
  sockstate::Counts s = sockstate::g::count(server), c = sockstate::g::count(clients);
  std::printf(
      "%5.2f s  accept queue %3u/%-3u | clients: ESTAB %3u SYN-SENT %3u | connected %3d "
      "accepted %3d | ListenOverflows +%ld\n",
      secs(), s.listen_queue, s.listen_backlog, c[TcpState::established], c[TcpState::syn_sent],
      connected, accepted, sockstate::netstat_counter("ListenOverflows") - overflows0);
}

int run(const Flags& f) {
  mnp::net::ListenConfig cfg;
  cfg.backlog = f.backlog;
  auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0", cfg);
  if (err) {
    std::fprintf(stderr, "acceptq: %s\n", err.message().c_str());
    return 1;
  }
  uint16_t port = ln->addr().port();
  long overflows0 = sockstate::netstat_counter("ListenOverflows");
  std::printf(
      "acceptq: listening on %s with backlog %d (net.core.somaxconn %ld); %d clients "
      "connect at once; no accept for %.1f s\n",
      ln->addr().to_string().c_str(), f.backlog, sockstate::sysctl_long("net/core/somaxconn"),
      f.clients, f.pause);
  long linear = sockstate::sysctl_long("net/ipv4/tcp_syn_linear_timeouts");
  std::printf("acceptq: a dropped SYN is sent again after 1 s, then %s\n",
              linear > 0 ? "every second (net.ipv4.tcp_syn_linear_timeouts)"
                         : "after 2 s, 4 s, ... (doubling)");

  // The clients: each dials (5 s at most) and records when it got in.
  g_t0 = mnp::nanotime();
  std::atomic<int> connected{0}, accepted{0}, failed{0}, premature{0};
  std::vector<int64_t> connected_at(static_cast<size_t>(f.clients), 0);
  std::vector<std::unique_ptr<mnp::net::Conn>> conns(static_cast<size_t>(f.clients));
  mnp::WaitGroup wg;
  wg.add(f.clients);
  for (int i = 0; i < f.clients; i++) {
    mnp::go([&, i] {
      auto [c, derr] = mnp::net::dial_timeout("tcp", ln->addr().to_string(), 5s);
      if (derr) {
        failed++;
        std::printf("acceptq: client %d: %s\n", i, derr.message().c_str());
        wg.done();
        return;
      }
      // A dial must not return before the handshake is done. If the runtime
      // ever does (a spurious write-readiness taken for "connected"), say so
      // and wait for the real thing, as Go's connect does with getpeername.
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      if (getpeername(c->sysfd(), reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
        premature++;
        std::printf(
            "acceptq: client %d: dial returned before the handshake completed (getpeername: "
            "%s): a runtime bug; waiting for the connection\n",
            i, std::strerror(errno));
        for (int tries = 0; tries < 500; tries++) {
          plen = sizeof peer;
          if (getpeername(c->sysfd(), reinterpret_cast<sockaddr*>(&peer), &plen) == 0) break;
          mnp::sleep(10ms);
        }
      }
      connected_at[static_cast<size_t>(i)] = mnp::nanotime();
      conns[static_cast<size_t>(i)] = std::move(c);
      connected++;
      wg.done();
    });
  }

  // Not accepting: watch the queue fill and the late clients stall.
  while (secs() < f.pause) {
    report(port, overflows0, connected.load(), accepted.load());
    mnp::sleep(250ms);
  }
  report(port, overflows0, connected.load(), accepted.load());
  std::printf(
      "acceptq: the accept queue is full (backlog %d + 1); the other clients' SYNs were "
      "dropped. Now accepting:\n",
      f.backlog);

  std::vector<std::unique_ptr<mnp::net::Conn>> served;
  std::atomic<bool> clients_done{false};
  mnp::go([&] {
    wg.wait();
    clients_done = true;
  });
  int64_t next = mnp::nanotime();
  while (!clients_done.load() || accepted.load() < connected.load()) {
    ln->set_deadline(mnp::Clock::now() + 50ms);
    auto [c, aerr] = ln->accept();
    if (!aerr) {
      served.push_back(std::move(c));
      accepted++;
    }
    if (mnp::nanotime() >= next) {
      report(port, overflows0, connected.load(), accepted.load());
      next = mnp::nanotime() + 250'000'000;
    }
  }
  report(port, overflows0, connected.load(), accepted.load());

  int on_time = 0, late = 0;
  double latest = 0;
  for (int64_t t : connected_at) {
    if (t == 0) continue;
    if (secs(t) < f.pause) {
      on_time++;
    } else {
      late++;
      latest = std::max(latest, secs(t));
    }
  }
  std::printf(
      "acceptq: %d clients got in while nobody accepted (the queue holds backlog + 1 = "
      "%d); %d waited in SYN-SENT and got in after accept resumed, the last at %.2f s "
      "(SYN retransmission); %d failed\n",
      on_time, f.backlog + 1, late, latest, failed.load());
  if (premature.load() > 0) {
    std::printf("acceptq: %d dial(s) returned before their handshake completed (runtime bug)\n",
                premature.load());
  }
  ln->close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("acceptq", "[--backlog N] [--clients N] [--pause SEC]");
  args.num("--backlog", &f.backlog, 1, 65535)
      .num("--clients", &f.clients, 1, 1000)
      .num("--pause", &f.pause, 0.0, 30.0);
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int status = 0;
  int rc = mnp::run([&] { status = run(f); });
  return rc != 0 ? rc : status;
}
