// demos/backpressure/backpressure.cpp — experiment 6 of EXPERIMENTS.md: a
// client that stops reading, and a server whose write parks the G, not the
// thread.
//
//   build/demos/backpressure [--seconds 4] [--rate-kib 4096]
//
// The server (Gs in this process) streams data to two clients at the same
// paced rate, one G per connection. The "fast" client reads everything; the
// "slow" one never reads (until the last second). What to watch, four times a
// second:
//   slow: wrote     bytes the server's write() got into the kernel for the slow
//                   client: it climbs, then stops. The writer G's own progress
//                   counter says it is "parked in write" (and for how long)
//   Send-Q          the server socket's unacknowledged bytes (sock_diag): it
//                   grows while the slow client's receive buffer (its Recv-Q)
//                   is full and its window is zero, then stays at the send
//                   buffer's size
//   fast: got       the other connection is served at full rate all along
//   threads         the process's OS threads (/proc/self/status): the same
//                   before and during the stall. The G parked; the M (thread)
//                   went on running the other Gs.
// In the last second the slow client starts reading: Send-Q drains and the
// parked writer wakes up.
//
// Confirm with: ss -tn 'sport = :PORT' (Send-Q of the server's sockets); the
//               runtime's G dump, where it has one (kill -QUIT PID): the slow
//               client's writer G in "IO wait (write)"
#include <atomic>
#include <cstdio>
#include <cstdlib>
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

struct Flags {
  double seconds = 4;      // before the slow client starts reading
  double rate_kib = 4096;  // per connection, KiB/s
};

constexpr size_t kChunk = 64 * 1024;

// A writer G's own account of itself, for the reporter (there is no G dump
// here to ask): how much write() has accepted, and since when the current
// write has been waiting (0: not in write).
struct Progress {
  std::atomic<uint64_t> written{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<int64_t> in_write_since{0};
};

// The server side of one connection: paced 64 KiB writes until an error.
void stream(std::unique_ptr<mnp::net::Conn> c, Progress& p, const Flags& f) {
  std::vector<char> chunk(kChunk, 'x');
  auto gap = std::chrono::duration_cast<mnp::Duration>(
      std::chrono::duration<double>(static_cast<double>(kChunk) / (f.rate_kib * 1024)));
  for (;;) {
    p.in_write_since = mnp::nanotime();
    auto w = c->write(chunk.data(), chunk.size());  // parks this G while the buffer is full
    p.in_write_since = 0;
    p.written += w.n;
    p.writes++;
    if (w.err) return;
    mnp::sleep(gap);
  }
}

// The Send-Q and Recv-Q of the server's socket towards client_port.
struct Queues {
  uint32_t send_q = 0, recv_q = 0;
};
Queues server_queues(uint16_t server_port, uint16_t client_port) {
  sockstate::Query q;
  q.port = server_port;
  q.side = sockstate::Query::Side::local;
  std::vector<sockstate::Socket> socks;
  sockstate::g::dump(q, &socks);
  for (const auto& s : socks) {
    if (s.remote_port == client_port) return {s.wqueue, s.rqueue};
  }
  return {};
}
// The Recv-Q of the client's own socket (bytes the kernel holds for it).
uint32_t client_recv_q(uint16_t client_port, uint16_t server_port) {
  sockstate::Query q;
  q.port = client_port;
  q.side = sockstate::Query::Side::local;
  std::vector<sockstate::Socket> socks;
  sockstate::g::dump(q, &socks);
  for (const auto& s : socks) {
    if (s.remote_port == server_port) return s.rqueue;
  }
  return 0;
}

std::string kib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%7.0f KiB", static_cast<double>(bytes) / 1024);
  return buf;
}

int run(const Flags& f) {
  auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
  if (err) {
    std::fprintf(stderr, "backpressure: %s\n", err.message().c_str());
    return 1;
  }
  uint16_t port = ln->addr().port();
  Progress slow_p, fast_p;
  std::atomic<uint64_t> fast_got{0};
  std::atomic<bool> slow_reads{false}, stop{false};

  // Connect the slow client first, then the fast one; the server accepts each
  // and starts its writer G.
  auto [slow, e1] = mnp::net::dial("tcp", ln->addr().to_string());
  auto [s1, a1] = ln->accept();
  auto [fast, e2] = mnp::net::dial("tcp", ln->addr().to_string());
  auto [s2, a2] = ln->accept();
  if (e1 || a1 || e2 || a2) {
    std::fprintf(stderr, "backpressure: could not connect\n");
    return 1;
  }
  uint16_t slow_port = slow->local_addr().port();
  mnp::WaitGroup writers;
  writers.add(2);
  mnp::go([c = std::move(s1), &slow_p, &f, &writers]() mutable {
    stream(std::move(c), slow_p, f);
    writers.done();
  });
  mnp::go([c = std::move(s2), &fast_p, &f, &writers]() mutable {
    stream(std::move(c), fast_p, f);
    writers.done();
  });

  // The fast client reads all the time; the slow one only when told.
  auto reader = [&stop](mnp::net::Conn* c, std::atomic<uint64_t>* got, std::atomic<bool>* go) {
    std::vector<char> buf(kChunk);
    while (!stop.load()) {
      if (go != nullptr && !go->load()) {
        mnp::sleep(10ms);
        continue;
      }
      auto r = c->read(buf.data(), buf.size());
      if (got != nullptr) *got += r.n;
      if (r.err) return;
    }
  };
  mnp::WaitGroup readers;
  readers.add(2);
  mnp::go([&] {
    reader(fast.get(), &fast_got, nullptr);
    readers.done();
  });
  mnp::go([&] {
    reader(slow.get(), nullptr, &slow_reads);
    readers.done();
  });

  std::printf(
      "backpressure: server %s streams %.0f KiB/s to each of two clients in 64 KiB "
      "writes, one G each; the slow client (port %u) reads nothing for %.1f s\n",
      ln->addr().to_string().c_str(), f.rate_kib, slow_port, f.seconds);
  std::printf("%6s | %-12s %-12s %-14s %-24s | %-12s | %s\n", "t", "slow: wrote", "Send-Q",
              "client Recv-Q", "slow writer G", "fast: got", "threads");

  int64_t t0 = mnp::nanotime();
  uint64_t last_written = 0, stalled_since_written = 0, send_q_max = 0, fast_at_stall = 0;
  double stall_started = -1, stall_seconds = 0;
  uint64_t fast_during_stall = 0;
  for (;;) {
    double t = static_cast<double>(mnp::nanotime() - t0) / 1e9;
    if (t >= f.seconds + 1) break;
    if (t >= f.seconds && !slow_reads.load()) {
      std::printf("backpressure: the slow client starts reading\n");
      slow_reads = true;
    }
    Queues q = server_queues(port, slow_port);
    uint32_t crq = client_recv_q(slow_port, port);
    uint64_t written = slow_p.written.load();
    int64_t since = slow_p.in_write_since.load();
    char state[48];
    if (since != 0) {
      std::snprintf(state, sizeof state, "parked in write %5.0f ms",
                    static_cast<double>(mnp::nanotime() - since) / 1e6);
    } else {
      std::snprintf(state, sizeof state, "running (%llu writes)",
                    static_cast<unsigned long long>(slow_p.writes.load()));
    }
    std::printf("%5.2fs | %s %s %s    %-24s | %s | %ld\n", t, kib(written).c_str(),
                kib(q.send_q).c_str(), kib(crq).c_str(), state, kib(fast_got.load()).c_str(),
                sockstate::g::proc_status().threads);
    if (q.send_q > send_q_max) send_q_max = q.send_q;
    // The stall: the slow writer's count has not moved since the last line.
    if (!slow_reads.load()) {
      if (written == last_written && written > 0 && since != 0) {
        if (stall_started < 0) {
          stall_started = t;
          fast_at_stall = fast_got.load();
          stalled_since_written = written;
        }
        stall_seconds = t - stall_started;
        fast_during_stall = fast_got.load() - fast_at_stall;
      }
    }
    last_written = written;
    mnp::sleep(250ms);
  }
  std::printf(
      "backpressure: the slow writer stopped at %s and stayed parked in write for %.2f s "
      "(while Send-Q peaked at %s); meanwhile the fast client got %s more\n",
      kib(stalled_since_written).c_str(), stall_seconds, kib(send_q_max).c_str(),
      kib(fast_during_stall).c_str());
  std::printf("backpressure: result: stall_s=%.2f send_q_max=%llu fast_during_stall=%llu\n",
              stall_seconds, static_cast<unsigned long long>(send_q_max),
              static_cast<unsigned long long>(fast_during_stall));
  // The end: the clients hang up, the readers stop, and the server's next
  // writes fail (the peer is gone), which ends the writer Gs.
  stop = true;
  slow->close();
  fast->close();
  readers.wait();
  writers.wait();
  ln->close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("backpressure", "[--seconds SEC] [--rate-kib KIB_PER_SEC]");
  args.num("--seconds", &f.seconds, 0.0, 60.0, true).num("--rate-kib", &f.rate_kib, 0.0, 1e7, true);
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int status = 0;
  int rc = mnp::run([&] { status = run(f); });
  return rc != 0 ? rc : status;
}
