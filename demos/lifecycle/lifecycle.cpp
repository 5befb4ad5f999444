// demos/lifecycle/lifecycle.cpp — experiment 1 of EXPERIMENTS.md, slowed down:
// the life of one TCP connection, one step at a time, on both ends.
//
//   build/demos/lifecycle
//
// What to watch, after each step:
//   syscalls       every socket syscall the runtime made in that step, in order,
//                  with its fd and result (recorded by a hook in this program:
//                  trace_hook.cpp), and the runtime's own counters for the step
//                  (mnp/stats.h). The listener: socket, bind, listen. The client:
//                  socket, connect -> EINPROGRESS (the G parks while the 3-way
//                  handshake runs), getsockopt(SO_ERROR) = 0. The server:
//                  accept4 returns a NEW fd for the client; the listener keeps its own.
//   the kernel     both ends' TCP states from sock_diag: LISTEN; the handshake
//                  completing BEFORE accept (the connection waits in the accept
//                  queue: LISTEN's Recv-Q is 1); FIN-WAIT-2 / CLOSE-WAIT after the
//                  client closes; TIME-WAIT on the client after the server closes
//   EADDRINUSE     a second listen on the same address fails at bind
//
// Confirm with: strace -f -e trace=network build/demos/lifecycle
//               tcpdump -i lo -n port PORT   (SYN, SYN-ACK, ACK; FIN, ACK; FIN, ACK)
#include <cstdio>
#include <string>

#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "sockstate_g.h"
#include "trace_hook.h"

namespace {

// The runtime's counters, before and after a step.
struct Counters {
  uint64_t v[static_cast<int>(mnp::Stat::count_)];
  Counters() {
    for (int i = 0; i < static_cast<int>(mnp::Stat::count_); i++) {
      v[i] = mnp::stat(static_cast<mnp::Stat>(i));
    }
  }
};

// What the runtime's counters say changed since `before`, for the kinds that
// belong to one connection (the poller's own waits run beside us and are left out).
std::string counter_diff(const Counters& before) {
  using mnp::Stat;
  const Stat kinds[] = {Stat::sys_socket,   Stat::sys_sockopt, Stat::sys_connect,  Stat::sys_accept,
                        Stat::sys_read,     Stat::sys_write,   Stat::sys_shutdown, Stat::sys_close,
                        Stat::sys_poll_ctl, Stat::eagain,      Stat::parks_io};
  Counters now;
  std::string out;
  for (Stat s : kinds) {
    uint64_t d = now.v[static_cast<int>(s)] - before.v[static_cast<int>(s)];
    if (d == 0) continue;
    out += std::string(out.empty() ? "" : ", ") + mnp::stat_name(s) + " +" + std::to_string(d);
  }
  return out.empty() ? "none" : out;
}

uint16_t g_port;  // the listener's

// One step: what it did (the hook's record and the counters) and what the
// kernel now says about both ends of port g_port.
class Step {
 public:
  explicit Step(const char* title) {
    std::printf("\n== %s\n", title);
    trace_hook::clear();
  }
  ~Step() {
    trace_hook::print("   syscall ");
    std::printf("   runtime counters: %s\n", counter_diff(before_).c_str());
    sockstate::Query server, client;
    server.port = client.port = g_port;
    server.side = sockstate::Query::Side::local;
    client.side = sockstate::Query::Side::remote;
    std::printf("   kernel, server side (port %u): %s\n", g_port,
                sockstate::summary(sockstate::g::count(server)).c_str());
    std::printf("   kernel, client side:           %s\n",
                sockstate::summary(sockstate::g::count(client)).c_str());
  }

 private:
  Counters before_;
};

void lifecycle() {
  std::unique_ptr<mnp::net::Listener> ln;
  {
    Step s("listen(\"tcp\", \"127.0.0.1:0\"): socket, bind, listen");
    auto [l, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    if (err) {
      std::printf("   %s\n", err.message().c_str());
      return;
    }
    ln = std::move(l);
    g_port = ln->addr().port();
    std::printf("   listening on %s, fd %d\n", ln->addr().to_string().c_str(), ln->sysfd());
  }

  std::unique_ptr<mnp::net::Conn> client;
  {
    Step s("dial: socket, connect (the 3-way handshake), before anyone accepts");
    auto [c, err] = mnp::net::dial("tcp", ln->addr().to_string());
    if (err) {
      std::printf("   %s\n", err.message().c_str());
      return;
    }
    client = std::move(c);
    std::printf(
        "   connected: fd %d, %s -> %s. The server has not called accept: the kernel\n"
        "   finished the handshake alone and queued the connection (accept queue 1).\n",
        client->sysfd(), client->local_addr().to_string().c_str(),
        client->remote_addr().to_string().c_str());
  }

  std::unique_ptr<mnp::net::Conn> server;
  {
    Step s("accept: a NEW fd for this client; the listener keeps listening");
    auto [c, err] = ln->accept();
    if (err) {
      std::printf("   %s\n", err.message().c_str());
      return;
    }
    server = std::move(c);
    std::printf("   accepted fd %d (listener fd %d) from %s\n", server->sysfd(), ln->sysfd(),
                server->remote_addr().to_string().c_str());
  }

  {
    Step s("one round trip: client writes, server reads and writes back, client reads");
    char buf[64];
    client->write("hello\n");
    auto r1 = server->read(buf, sizeof buf);
    server->write(buf, r1.n);
    auto r2 = client->read(buf, sizeof buf);
    std::printf("   echoed %zu bytes: %.*s", r2.n, static_cast<int>(r2.n), buf);
  }

  {
    Step s("the client closes first (active close): it sends FIN");
    client->close();
    // The server's kernel delays the ACK of a FIN (delayed ACK, 40 ms at
    // least): until it comes the client is in FIN-WAIT-1, then FIN-WAIT-2.
    mnp::sleep(std::chrono::milliseconds(100));
    std::printf(
        "   client: FIN-WAIT-2 (its FIN was acked; it waits for the server's FIN)\n"
        "   server: CLOSE-WAIT (the kernel acked the FIN; the application has not\n"
        "   closed yet). Before the (delayed) ACK the client was in FIN-WAIT-1.\n");
  }

  {
    Step s("the server reads EOF and closes (passive close)");
    char buf[8];
    auto r = server->read(buf, sizeof buf);
    std::printf("   server read: %s\n", r.err ? r.err.message().c_str() : "data?");
    server->close();
    mnp::sleep(std::chrono::milliseconds(100));
    std::printf("   the client, which closed first, keeps the connection in TIME-WAIT for 60 s\n");
  }

  {
    Step s("a second listen on the same address: bind fails");
    auto [l2, err] = mnp::net::listen("tcp", ln->addr().to_string());
    std::printf("   %s%s\n", err ? err.message().c_str() : "listening?!",
                err == mnp::Errc::addr_in_use ? "  (EADDRINUSE: the port is taken)" : "");
  }
  ln->close();
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  trace_hook::enable();
  return mnp::run([] {
    std::printf("lifecycle: one TCP connection, step by step (backend %s)\n", mnp::backend_name());
    lifecycle();
    std::printf("\nlifecycle: confirm with: strace -f -e trace=network build/demos/lifecycle\n");
  });
}
