// demos/vote/vote_attacker.cpp — the slow client of experiment 8: it sends its
// ID, votes once (so the server counts it among the voters and sends it every
// tally: without the vote it would get nothing and harm nothing), then never
// reads again.
//
//   build/demos/vote-attacker [--addr 127.0.0.1:9100] [--duration 30]
//
// What to watch, once a second, both ends of its one connection, from the
// kernel (sock_diag):
//   my Recv-Q         tallies that arrived and that it does not read: it fills
//                     up to its receive buffer, then its window is zero
//   server's Send-Q   the tallies the server wrote to it and that cannot be sent:
//                     it grows to the server's SO_SNDBUF; then the server's
//                     next write to it parks (naive: with the mutex held)
// Against the fixed server the connection is closed by the server once its
// outbox is full ("dropped by the server").
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "args.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "sockstate_g.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string addr = "127.0.0.1:9100";
  std::string id = "ATTACKER";
  double duration = 30;
  int rcvbuf = 4096;  // SO_RCVBUF; 0: the kernel's default (128 KiB, autotuned)
};

// The queues of the connection from my_port to server_port, both ends.
struct Ends {
  bool found = false;
  sockstate::TcpState state{}, server_state{};
  uint32_t my_recv_q = 0, server_send_q = 0;
};
Ends observe(uint16_t my_port, uint16_t server_port) {
  sockstate::Query q;
  q.port = my_port;  // my socket (local my_port) and the server's (remote my_port)
  std::vector<sockstate::Socket> socks;
  sockstate::g::dump(q, &socks);
  Ends e;
  for (const auto& s : socks) {
    if (s.local_port == my_port && s.remote_port == server_port) {
      e.found = true;
      e.state = s.state;
      e.my_recv_q = s.rqueue;
    } else if (s.local_port == server_port && s.remote_port == my_port) {
      e.server_send_q = s.wqueue;
      e.server_state = s.state;
    }
  }
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("vote-attacker",
                  "[--addr HOST:PORT] [--id NAME] [--duration SEC] [--rcvbuf BYTES]");
  args.str("--addr", &f.addr)
      .str("--id", &f.id)
      .num("--duration", &f.duration, 0.0, 600.0, true)
      .num("--rcvbuf", &f.rcvbuf, 0, 1 << 26);
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return mnp::run([&] {
    auto [conn, err] = mnp::net::dial_timeout("tcp", f.addr, 3s);
    if (err) {
      std::fprintf(stderr, "vote-attacker: %s\n", err.message().c_str());
      return;
    }
    if (f.rcvbuf > 0) conn->set_read_buffer(f.rcvbuf);
    conn->write(f.id + "\n");
    conn->write("VOTE A\n");  // now a voter: every tally comes here too
    uint16_t me = conn->local_addr().port(), server = conn->remote_addr().port();
    std::printf("vote-attacker: %s voted once from %s and will never read again (%.0f s)\n",
                f.id.c_str(), conn->local_addr().to_string().c_str(), f.duration);

    int64_t end = mnp::nanotime() + static_cast<int64_t>(f.duration * 1e9);
    for (int t = 0; mnp::nanotime() < end; t++) {
      Ends e = observe(me, server);
      // Dropped: the server closed its end. Its FIN waits behind the unsent
      // tallies (our window is zero), so our side still looks established.
      if (!e.found || e.server_state != sockstate::TcpState::established) {
        std::printf(
            "vote-attacker: %3d s: dropped by the server (its socket: %s, Send-Q %u; "
            "mine: %s, Recv-Q %u)\n",
            t, sockstate::state_name(e.server_state), e.server_send_q,
            e.found ? sockstate::state_name(e.state) : "gone", e.my_recv_q);
        break;
      }
      std::printf(
          "vote-attacker: %3d s: my Recv-Q %7u bytes unread | server's Send-Q to me %7u "
          "bytes\n",
          t, e.my_recv_q, e.server_send_q);
      mnp::sleep(1s);
    }
    conn->close();
  });
}
