// demos/c10k/c10k_client.cpp — the other process of experiment 10: opens
// --conns connections to c10k-server and keeps them open, idle, one G each
// parked in read.
//
//   build/demos/c10k-client --addr 127.0.0.1:9200 --conns 10000 [--hold 10]
//
// At most 256 handshakes are under way at once, so the server's accept queue
// (4096) never overflows and no SYN waits a second for its retransmission.
// Every process may hold `ulimit -n` fds (20,000 here): that is why the client
// and the server are two processes. What to watch: "connected" climbing to
// --conns, then this process's own RSS per connection (it is a G per
// connection too). It exits after --hold seconds, or when the server goes.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "args.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sockstate_g.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string addr = "127.0.0.1:9200";
  int conns = 10000;
  double hold = 10;
};

std::atomic<int> g_connected{0}, g_failed{0}, g_closed{0};

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("c10k-client", "[--addr HOST:PORT] [--conns N] [--hold SEC]");
  args.str("--addr", &f.addr).num("--conns", &f.conns, 1, 50000).num("--hold", &f.hold, 0.0, 600.0);
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return mnp::run([&] {
    long rss0 = sockstate::g::proc_status().rss_kib;
    std::printf("c10k-client: %d connections to %s (fd limit %ld)\n", f.conns, f.addr.c_str(),
                sockstate::g::proc_status().fd_limit);
    mnp::Sema handshakes(256);
    int64_t t0 = mnp::nanotime();
    for (int i = 0; i < f.conns; i++) {
      handshakes.acquire();
      mnp::go([&] {
        auto [c, err] = mnp::net::dial_timeout("tcp", f.addr, 10s);
        handshakes.release();
        if (err) {
          if (g_failed++ < 3) std::fprintf(stderr, "c10k-client: %s\n", err.message().c_str());
          return;
        }
        g_connected++;
        char buf[64];
        c->read(buf, sizeof buf);  // parks until the server goes away
        g_closed++;
      });
    }
    while (g_connected.load() + g_failed.load() < f.conns) mnp::sleep(10ms);
    double secs = static_cast<double>(mnp::nanotime() - t0) / 1e9;
    long rss = sockstate::g::proc_status().rss_kib;
    std::printf("c10k-client: %d connected, %d failed, in %.2f s; client RSS +%.1f KiB/conn\n",
                g_connected.load(), g_failed.load(), secs,
                static_cast<double>(rss - rss0) / std::max(1, g_connected.load()));
    int64_t end = mnp::nanotime() + static_cast<int64_t>(f.hold * 1e9);
    while (mnp::nanotime() < end && g_closed.load() < g_connected.load()) mnp::sleep(100ms);
    std::printf("c10k-client: done (%d closed by the server)\n", g_closed.load());
    std::fflush(stdout);
    std::_Exit(g_failed.load() == 0 ? 0 : 1);  // 10,000 parked Gs: no need to unwind them
  });
}
