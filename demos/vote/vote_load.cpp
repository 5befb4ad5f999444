// demos/vote/vote_load.cpp — well-behaved voters for vote-server: each sends
// its ID, then votes at a steady pace, and reads every tally the server sends.
//
//   build/demos/vote-load [--addr 127.0.0.1:9100] [--voters 16] [--rate 2000] [--duration 10]
//
// What to watch, twice a second: "tallied/s", the server's vote count going
// up, as read from the "total=" of the tallies the server broadcasts; it is
// the server's real throughput, seen from outside. "sent/s" stays at --rate
// (the votes go into the socket whatever the server does). Against a frozen
// naive server tallied/s is 0; against the fixed one it follows sent/s.
// The last line: "vote-load: tallied N votes/s on average".
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "args.h"
#include "mnp/bufio.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "vote_proto.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string addr = "127.0.0.1:9100";
  int voters = 16;
  double rate = 2000;  // votes per second, all voters together
  double duration = 10;
};

std::atomic<uint64_t> g_sent{0};
std::atomic<uint64_t> g_total{0};  // the highest "total=" seen in any tally
std::atomic<bool> g_stop{false};
std::atomic<int> g_dropped{0};      // voters the server disconnected
std::atomic<int> g_unconnected{0};  // voters that could not connect
std::atomic<uint64_t> g_bad{0};     // lines from the server that are not a tally

void raise_total(uint64_t t) {
  uint64_t cur = g_total.load();
  while (t > cur && !g_total.compare_exchange_weak(cur, t)) {
  }
}

// Writes one vote line. A frozen server stops reading: wake up every second
// to see whether the run is over, and finish the line where the last try left
// it. False if the server closed the connection.
bool send_vote(mnp::net::Conn& conn, int id, std::string_view vote) {
  size_t done = 0;
  while (done < vote.size() && !g_stop.load()) {
    conn.set_write_deadline(mnp::Clock::now() + 1s);
    auto w = conn.write(vote.data() + done, vote.size() - done);
    done += w.n;
    if (w.err && w.err != mnp::Errc::timeout) {
      std::printf("vote-load: voter-%d: %s: disconnected by the server\n", id,
                  w.err.message().c_str());
      g_dropped++;
      return false;
    }
  }
  return true;
}

void voter(const Flags& f, int id, mnp::WaitGroup& wg) {
  auto [conn, err] = mnp::net::dial_timeout("tcp", f.addr, 3s);
  if (err) {
    std::fprintf(stderr, "vote-load: voter %d: %s\n", id, err.message().c_str());
    g_unconnected++;
    wg.done();
    return;
  }
  // A reader G: every tally, as fast as they come (a voter that did not read
  // would be an attacker).
  mnp::WaitGroup reading;
  reading.add(1);
  mnp::go([&] {
    mnp::bufio::Reader in(*conn);
    for (;;) {
      auto [line, rerr] = in.read_line();
      if (rerr) break;
      vote::Tally tally;
      const char* why = nullptr;
      if (vote::parse_tally(line, &tally, &why)) {
        uint64_t total = 0;
        for (const auto& [option, n] : tally) total += n;
        raise_total(total);
      } else if (g_bad++ < 3) {  // an "ERR ..." or a malformed tally: say so, a few times
        std::printf("vote-load: voter-%d: unexpected line from the server (%s): %.*s\n", id,
                    line.starts_with("ERR ") ? "an error" : why, static_cast<int>(line.size()),
                    line.data());
      }
    }
    reading.done();
  });
  conn->write("voter-" + std::to_string(id) + "\n");
  auto gap =
      std::chrono::duration_cast<mnp::Duration>(std::chrono::duration<double>(f.voters / f.rate));
  // Paced by deadline, not by sleeping a gap after each vote, so a slow write
  // does not lower the rate asked for.
  auto next = mnp::Clock::now();
  for (uint64_t n = 0; !g_stop.load(); n++) {
    if (!send_vote(*conn, id, n % 3 == 0 ? "VOTE B\n" : "VOTE A\n")) break;
    g_sent++;
    next += gap;
    if (auto now = mnp::Clock::now(); next > now) mnp::sleep(next - now);
  }
  conn->close();  // wakes the reader G
  reading.wait();
  wg.done();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  demo::Args args("vote-load",
                  "[--addr HOST:PORT] [--voters N] [--rate VOTES_PER_SEC] [--duration SEC]");
  args.str("--addr", &f.addr)
      .num("--voters", &f.voters, 1, 1000)
      .num("--rate", &f.rate, 0.0, 1e7, true)
      .num("--duration", &f.duration, 0.0, 600.0, true);
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int rc = mnp::run([&] {
    std::printf("vote-load: %d voters, %.0f votes/s together, for %.1f s, to %s\n", f.voters,
                f.rate, f.duration, f.addr.c_str());
    mnp::WaitGroup wg;
    wg.add(f.voters);
    for (int i = 0; i < f.voters; i++) mnp::go([&f, &wg, i] { voter(f, i, wg); });

    // Twice a second: votes sent, and votes the server tallied.
    int64_t t0 = mnp::nanotime();
    uint64_t sent0 = 0, total0 = 0, first_total = 0;
    bool have_first = false;
    for (int tick = 1;; tick++) {
      // On a fixed schedule (t0 + 0.5 s * tick), so the lines do not drift.
      int64_t at = t0 + tick * 500'000'000LL;
      if (int64_t now = mnp::nanotime(); at > now) mnp::sleep(mnp::Duration(at - now));
      double t = tick * 0.5;
      uint64_t sent = g_sent.load(), total = g_total.load();
      if (!have_first && total > 0) {  // the server's count before our votes is unknown
        have_first = true;
        first_total = total0 = total;
      }
      std::printf("vote-load %6.1f s: sent/s %6.0f  tallied/s %6.0f  (server total %llu)\n", t,
                  static_cast<double>(sent - sent0) / 0.5,
                  static_cast<double>(total - total0) / 0.5,
                  static_cast<unsigned long long>(total));
      sent0 = sent;
      total0 = total;
      if (t >= f.duration) break;
    }
    double secs = static_cast<double>(mnp::nanotime() - t0) / 1e9;
    g_stop = true;
    wg.wait();
    if (g_dropped.load() > 0) {
      std::printf("vote-load: %d voter(s) were disconnected by the server\n", g_dropped.load());
    }
    if (g_bad.load() > 0) {
      std::printf("vote-load: %llu line(s) from the server were not well-formed tallies\n",
                  static_cast<unsigned long long>(g_bad.load()));
    }
    std::printf(
        "vote-load: sent %llu votes in %.1f s; the server tallied %llu: tallied %.0f "
        "votes/s on average\n",
        static_cast<unsigned long long>(g_sent.load()), secs,
        static_cast<unsigned long long>(g_total.load() - std::min(first_total, g_total.load())),
        static_cast<double>(g_total.load() - std::min(first_total, g_total.load())) / secs);
  });
  return rc != 0 ? rc : (g_unconnected.load() > 0 || g_bad.load() > 0) ? 1 : 0;
}
