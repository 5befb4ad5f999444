// demos/sockstate/sockstat.cpp — the TCP states of a port or of a process,
// counted live from the kernel's socket table (sock_diag, as `ss` reads it).
//
// What to watch: run it beside any experiment.
//   sockstat --port 9000                one line a second: every state's count for
//                                       sockets on port 9000, both sides
//   sockstat --port 9000 --local        the server's side only (CLOSE-WAIT of a leak)
//   sockstat --port 9000 --remote       the clients' side only (FIN-WAIT-2, TIME-WAIT)
//   sockstat --pid $(pgrep -n echo-server)   the sockets a process holds open
//   sockstat --port 9000 --list         every socket, with Recv-Q / Send-Q, as `ss -tan`
// For scripts, one number and exit:
//   sockstat --port 9000 --local --state CLOSE-WAIT     -> 57
//   sockstat --port 9000 --local --accept-queue         -> 9/8 (queued/backlog)
//   sockstat --port 9000 --local --send-q               -> bytes not yet acked
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sockstate.h"

namespace {

void usage(FILE* out) {
  std::fprintf(
      out,
      "usage: sockstat [--port P [--local|--remote]] [--pid PID] [--interval SEC] [--count N]\n"
      "                [--once] [--list] [--state NAME | --accept-queue | --send-q | --recv-q]\n"
      "  --port P        sockets whose local or remote port is P\n"
      "  --local         ... only those whose local port is P (the server's side)\n"
      "  --remote        ... only those whose remote port is P (the clients' side)\n"
      "  --pid PID       only sockets that are open fds of PID\n"
      "  --interval SEC  seconds between lines (default 1)\n"
      "  --count N       stop after N lines (default: until interrupted); --once: 1\n"
      "  --list          every matching socket, with its queues (as ss -tan)\n"
      "  --state NAME    print the number of sockets in state NAME (ESTAB, CLOSE-WAIT,\n"
      "                  FIN-WAIT-2, TIME-WAIT, LISTEN, SYN-SENT, ...) once, and exit\n"
      "  --accept-queue  print the LISTEN sockets' accept queue as QUEUED/BACKLOG, and exit\n"
      "  --send-q        print the Send-Q bytes (written, not acked) summed, and exit\n"
      "  --recv-q        print the Recv-Q bytes (received, not read) summed, and exit\n");
}

std::string now_text() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  localtime_r(&ts.tv_sec, &t);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03ld", t.tm_hour, t.tm_min, t.tm_sec,
                ts.tv_nsec / 1'000'000);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  sockstate::Query q;
  double interval = 1.0;
  long count = -1;
  bool list = false;
  enum class One { none, state, accept_queue, send_q, recv_q } one = One::none;
  sockstate::TcpState one_state{};

  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sockstat: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") {
      q.port = static_cast<uint16_t>(std::atoi(value()));
    } else if (a == "--local") {
      q.side = sockstate::Query::Side::local;
    } else if (a == "--remote") {
      q.side = sockstate::Query::Side::remote;
    } else if (a == "--pid") {
      q.pid = static_cast<pid_t>(std::atoi(value()));
    } else if (a == "--interval") {
      interval = std::atof(value());
    } else if (a == "--count") {
      count = std::atol(value());
    } else if (a == "--once") {
      count = 1;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--state") {
      one = One::state;
      if (!sockstate::parse_state(value(), &one_state)) {
        std::fprintf(stderr, "sockstat: unknown state '%s'\n", argv[i]);
        return 2;
      }
    } else if (a == "--accept-queue") {
      one = One::accept_queue;
    } else if (a == "--send-q") {
      one = One::send_q;
    } else if (a == "--recv-q") {
      one = One::recv_q;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "sockstat: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }

  if (one != One::none) {
    sockstate::Counts c = sockstate::count(q);
    if (c.error != 0) {
      std::fprintf(stderr, "sockstat: %s\n", sockstate::summary(c).c_str());
      return 1;
    }
    switch (one) {
      case One::state:
        std::printf("%u\n", c[one_state]);
        break;
      case One::accept_queue:
        std::printf("%u/%u\n", c.listen_queue, c.listen_backlog);
        break;
      case One::send_q:
        std::printf("%llu\n", static_cast<unsigned long long>(c.wqueue));
        break;
      case One::recv_q:
        std::printf("%llu\n", static_cast<unsigned long long>(c.rqueue));
        break;
      case One::none:
        break;
    }
    return 0;
  }

  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string what = q.port == 0 ? std::string("all ports") : ":" + std::to_string(q.port);
  if (q.side == sockstate::Query::Side::local) what += " (local side)";
  if (q.side == sockstate::Query::Side::remote) what += " (remote side)";
  if (q.pid != 0) what += " of pid " + std::to_string(q.pid);

  for (long n = 0; count < 0 || n < count; n++) {
    if (n > 0) std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    if (list) {
      std::vector<sockstate::Socket> socks;
      if (int err = sockstate::dump(q, &socks); err != 0) {
        std::fprintf(stderr, "sockstat: sock_diag: %s\n", std::strerror(err));
        return 1;
      }
      std::printf("%s %s: %zu sockets\n", now_text().c_str(), what.c_str(), socks.size());
      std::printf("  %-12s %8s %8s  %-24s %-24s %s\n", "State", "Recv-Q", "Send-Q", "Local", "Peer",
                  "Inode");
      for (const auto& s : socks) {
        std::printf("  %-12s %8u %8u  %-24s %-24s %llu\n", sockstate::state_name(s.state), s.rqueue,
                    s.wqueue, s.local.c_str(), s.remote.c_str(),
                    static_cast<unsigned long long>(s.inode));
      }
      continue;
    }
    sockstate::Counts c = sockstate::count(q);
    std::printf("%s %s: %s  | Recv-Q %llu Send-Q %llu\n", now_text().c_str(), what.c_str(),
                sockstate::summary(c).c_str(), static_cast<unsigned long long>(c.rqueue),
                static_cast<unsigned long long>(c.wqueue));
  }
  return 0;
}
