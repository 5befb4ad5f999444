// demos/leak/leak_client.cpp — experiments 2 and 3 of EXPERIMENTS.md: an fd
// leak, seen from both ends of the connections.
//
// Start the leaky echo server with a small fd limit, then this:
//   (ulimit -n 64; LEAK=true build/demos/echo-server --addr 127.0.0.1:9000) &
//   build/demos/leak-client --addr 127.0.0.1:9000 -n 80
//
// Each client connects, sends a line, waits at most 1 s for the echo, and
// closes first: the client is the active closer, the server the passive one.
// What to watch, twice a second, all read from the kernel:
//   server fds     /proc/PID/fd of the server (found as the owner of the
//                  listening socket): it climbs by one per client and stops
//                  at the limit; then the server logs "accept: too many open
//                  files" and stays alive (its accept backs off)
//   CLOSE-WAIT     server side (local port = the server's): the client's FIN
//                  was acked by the kernel, but the application never called
//                  close(). The fd is held. The bug is HERE.
//   FIN-WAIT-2     client side (remote port = the server's): we sent FIN, got
//                  the ACK, and wait for a FIN that never comes; the kernel
//                  gives up after net.ipv4.tcp_fin_timeout (60 s). The victim.
//   accept queue   connections the server could not accept (out of fds) wait
//                  in the listener's queue: Recv-Q of the LISTEN socket
// Confirm with: ss -tan state close-wait; ss -tan state fin-wait-2;
//               ls /proc/$(pgrep -n echo-server)/fd | wc -l; lsof -p PID
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sockstate_g.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string addr = "127.0.0.1:9000";
  int clients = 80;
  double rate = 100;  // clients started per second
  double watch = 2;   // seconds to keep watching after the last client
};

std::atomic<int> g_echoed{0}, g_no_echo{0}, g_failed{0};

// One client: connect, one line, the echo (1 s at most), close.
void client(const Flags& f, int id) {
  auto [conn, err] = mnp::net::dial_timeout("tcp", f.addr, 2s);
  if (err) {
    g_failed++;
    std::printf("leak-client: client %d: %s\n", id, err.message().c_str());
    return;
  }
  std::string line = "hello from client " + std::to_string(id) + "\n";
  conn->write(line);
  conn->set_read_deadline(mnp::Clock::now() + 1s);
  char buf[64];
  auto [n, rerr] = conn->read(buf, sizeof buf);
  (n > 0 ? g_echoed : g_no_echo)++;
  conn->close();  // we close first: this side goes to FIN-WAIT-2
}

// One line of what the kernel says about both sides.
void report(double t, uint16_t port, pid_t server, int started) {
  sockstate::Query srv;  // the server's sockets: local port = port
  srv.port = port;
  srv.side = sockstate::Query::Side::local;
  sockstate::Query cli = srv;  // the clients' sockets: remote port = port
  cli.side = sockstate::Query::Side::remote;
  sockstate::Counts s = sockstate::g::count(srv), c = sockstate::g::count(cli);
  sockstate::ProcStatus p = sockstate::g::proc_status(server);
  std::printf("%5.1f s %8d %6ld/%-6ld %12u %9u %12u %8u/%u\n", t, started, p.fds, p.fd_limit,
              s[sockstate::TcpState::close_wait], s[sockstate::TcpState::established],
              c[sockstate::TcpState::fin_wait2], s.listen_queue, s.listen_backlog);
}

int run(const Flags& f) {
  auto addr = mnp::net::resolve(f.addr);
  if (addr.err) {
    std::fprintf(stderr, "leak-client: %s\n", addr.err.message().c_str());
    return 2;
  }
  uint16_t port = addr.value.port();

  // The server's pid: the process holding the listening socket (as ss -p).
  sockstate::Query lq;
  lq.port = port;
  lq.side = sockstate::Query::Side::local;
  lq.states = 1u << static_cast<int>(sockstate::TcpState::listen);
  std::vector<sockstate::Socket> ls;
  sockstate::g::dump(lq, &ls);
  pid_t server = ls.empty() ? 0 : sockstate::g::owner_pid(ls.front().inode);
  if (server == 0) {
    std::fprintf(stderr, "leak-client: nobody listens on port %u here\n", port);
    return 1;
  }
  sockstate::ProcStatus p0 = sockstate::g::proc_status(server);
  std::printf("leak-client: %d clients to %s at %.0f/s; server pid %d, %ld fds open, limit %ld\n",
              f.clients, f.addr.c_str(), f.rate, static_cast<int>(server), p0.fds, p0.fd_limit);
  std::printf("%7s %8s %13s %12s %9s %12s %10s\n", "t", "clients", "server fds", "CLOSE-WAIT",
              "ESTAB", "FIN-WAIT-2", "acceptq");
  std::printf("%7s %8s %13s %12s %9s %12s %10s\n", "", "started", "(/proc)", "(server)", "(server)",
              "(clients)", "(listener)");

  // A reporter G prints twice a second while the clients come and go.
  int64_t t0 = mnp::nanotime();
  auto secs = [&] { return static_cast<double>(mnp::nanotime() - t0) / 1e9; };
  std::atomic<int> started{0};
  std::atomic<bool> done{false};
  mnp::WaitGroup reporter;
  reporter.add(1);
  mnp::go([&] {
    while (!done.load()) {
      report(secs(), port, server, started.load());
      mnp::sleep(500ms);
    }
    reporter.done();
  });

  mnp::WaitGroup wg;
  auto gap = std::chrono::duration_cast<mnp::Duration>(std::chrono::duration<double>(1 / f.rate));
  for (int id = 0; id < f.clients; id++) {
    wg.add(1);
    mnp::go([&f, &wg, id] {
      client(f, id);
      wg.done();
    });
    started++;
    mnp::sleep(gap);
  }
  wg.wait();
  mnp::sleep(std::chrono::duration_cast<mnp::Duration>(std::chrono::duration<double>(f.watch)));
  done = true;
  reporter.wait();
  report(secs(), port, server, started.load());

  std::printf(
      "leak-client: %d echoed, %d got no echo (not accepted: the server was out of fds), %d "
      "failed to connect\n",
      g_echoed.load(), g_no_echo.load(), g_failed.load());
  std::printf(
      "leak-client: CLOSE-WAIT is on the server: the peer closed, the application never did\n"
      "             (the leak; the fd stays open). FIN-WAIT-2 is on the clients: waiting for\n"
      "             the server's FIN, until tcp_fin_timeout (%ld s). Blame the side in "
      "CLOSE-WAIT.\n",
      sockstate::sysctl_long("net/ipv4/tcp_fin_timeout"));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    auto value = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "leak-client: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--addr") {
      f.addr = value();
    } else if (a == "-n" || a == "--clients") {
      f.clients = std::atoi(value());
    } else if (a == "--rate") {
      f.rate = std::atof(value());
      if (f.rate <= 0) f.rate = 1;
    } else if (a == "--watch") {
      f.watch = std::atof(value());
    } else {
      std::fprintf(stderr,
                   "usage: leak-client [--addr HOST:PORT] [-n CLIENTS] [--rate PER_SEC] "
                   "[--watch SEC]\n");
      return 2;
    }
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int status = 0;
  int rc = mnp::run([&] { status = run(f); });
  return rc != 0 ? rc : status;
}
