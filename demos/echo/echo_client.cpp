// demos/echo/echo_client.cpp — the other half of experiment 1: N connections,
// each a G playing ping-pong with the echo server, every byte checked.
//
// What to watch:
//   strace -f -e trace=network build/demos/echo-client --count 3
//       socket, connect (EINPROGRESS: the G parks until the 3-way handshake
//       ends), getsockopt(SO_ERROR), then a write and a read per message.
//   tcpdump -i lo -n port 9000        SYN, SYN-ACK, ACK, then the payloads
//   --verbose                         each connection's fd and its two addresses
//
// Each message carries a pattern derived from (connection, message, offset),
// so a byte that comes back wrong, late or from another connection is caught
// with its offset. The summary gives messages/s, MB/s and the round-trip
// latency percentiles; the exit status is non-zero on any error or mismatch.
//
//   echo-client [--addr HOST:PORT] [-c N] [--size BYTES] [--count N | --duration SEC]
//               [--timeout SEC] [--verbose]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mnp/error.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"

namespace {

struct Flags {
  std::string addr = "127.0.0.1:9000";
  int conns = 1;
  size_t size = 64;
  int64_t count = -1;   // messages per connection; -1: not given
  double duration = 0;  // seconds; 0: not given
  double timeout = 10;  // seconds allowed per round trip; 0: none
  bool verbose = false;
};

// What one connection's G reports; each G writes only its own.
struct ConnResult {
  uint64_t messages = 0;
  uint64_t bytes = 0;
  std::vector<int64_t> latency_ns;
};

std::atomic<uint64_t> g_errors{0};
std::atomic<uint64_t> g_mismatches{0};
constexpr uint64_t kErrorsShown = 5;

// Prints the first few errors as they happen, then only counts them.
void report_error(int id, const std::string& what) {
  uint64_t n = g_errors.fetch_add(1, std::memory_order_relaxed);
  if (n < kErrorsShown) {
    std::fprintf(stderr, "echo-client: conn %d: %s\n", id, what.c_str());
  } else if (n == kErrorsShown) {
    std::fprintf(stderr, "echo-client: more errors: counting them without printing\n");
  }
}

// The byte at `off` of message `msg` on connection `id`.
inline uint8_t pattern(int id, uint64_t msg, size_t off) {
  return static_cast<uint8_t>(id * 131 + msg * 31 + off + (off >> 8) * 7);
}

void ping_pong(int id, const Flags& flags, int64_t end_ns, ConnResult& out) {
  auto [conn, derr] = mnp::net::dial("tcp", flags.addr);
  if (derr) {
    report_error(id, derr.message());
    return;
  }
  conn->set_no_delay(true);
  if (flags.verbose) {
    std::printf("echo-client: conn %d: fd %d, local %s, remote %s\n", id, conn->sysfd(),
                conn->local_addr().to_string().c_str(), conn->remote_addr().to_string().c_str());
  }
  std::vector<uint8_t> sent(flags.size), got(flags.size);
  if (flags.count > 0) out.latency_ns.reserve(static_cast<size_t>(flags.count));

  for (uint64_t msg = 0;; msg++) {
    if (flags.count >= 0 && msg >= static_cast<uint64_t>(flags.count)) break;
    if (end_ns != 0 && mnp::nanotime() >= end_ns) break;
    for (size_t i = 0; i < sent.size(); i++) sent[i] = pattern(id, msg, i);

    int64_t t0 = mnp::nanotime();
    if (flags.timeout > 0) {
      conn->set_deadline(mnp::Clock::now() + std::chrono::duration_cast<mnp::Duration>(
                                                 std::chrono::duration<double>(flags.timeout)));
    }
    if (auto w = conn->write(sent.data(), sent.size()); w.err) {
      report_error(id, "message " + std::to_string(msg) + ": " + w.err.message());
      return;
    }
    size_t have = 0;
    while (have < got.size()) {  // the echo may come back in pieces
      auto r = conn->read(got.data() + have, got.size() - have);
      have += r.n;
      if (r.err && have < got.size()) {
        report_error(id, "message " + std::to_string(msg) + ": got " + std::to_string(have) +
                             " of " + std::to_string(got.size()) + " bytes: " + r.err.message());
        return;
      }
    }
    out.latency_ns.push_back(mnp::nanotime() - t0);

    auto bad = std::mismatch(sent.begin(), sent.end(), got.begin());
    if (bad.first != sent.end()) {
      size_t off = static_cast<size_t>(bad.first - sent.begin());
      g_mismatches.fetch_add(1, std::memory_order_relaxed);
      char line[160];
      std::snprintf(line, sizeof line,
                    "message %llu: MISMATCH at offset %zu: got 0x%02x, want 0x%02x",
                    static_cast<unsigned long long>(msg), off, *bad.second, *bad.first);
      report_error(id, line);
      return;
    }
    out.messages++;
    out.bytes += got.size();
  }
  conn->close();
}

int64_t percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(i, sorted.size() - 1)];
}

int run_clients(const Flags& flags) {
  std::printf("echo-client: %d conn(s) x ", flags.conns);
  if (flags.count >= 0) {
    std::printf("%lld msgs", static_cast<long long>(flags.count));
  } else {
    std::printf("%.1f s", flags.duration);
  }
  std::printf(" of %zu B to %s (backend %s, procs %d)\n", flags.size, flags.addr.c_str(),
              mnp::backend_name(), mnp::procs());

  std::vector<ConnResult> results(static_cast<size_t>(flags.conns));
  int64_t start = mnp::nanotime();
  int64_t end_ns = flags.duration > 0 ? start + static_cast<int64_t>(flags.duration * 1e9) : 0;
  mnp::WaitGroup wg;
  wg.add(flags.conns);
  for (int id = 0; id < flags.conns; id++) {
    mnp::go([&, id] {
      ping_pong(id, flags, end_ns, results[static_cast<size_t>(id)]);
      wg.done();
    });
  }
  wg.wait();
  double elapsed = static_cast<double>(mnp::nanotime() - start) / 1e9;

  uint64_t messages = 0, bytes = 0;
  std::vector<int64_t> lat;
  for (auto& r : results) {
    messages += r.messages;
    bytes += r.bytes;
    lat.insert(lat.end(), r.latency_ns.begin(), r.latency_ns.end());
  }
  std::sort(lat.begin(), lat.end());
  auto us = [](int64_t ns) { return static_cast<long long>(ns / 1000); };

  std::printf("messages  %llu\n", static_cast<unsigned long long>(messages));
  std::printf("bytes     %llu echoed\n", static_cast<unsigned long long>(bytes));
  std::printf("errors    %llu (mismatches %llu)\n",
              static_cast<unsigned long long>(g_errors.load()),
              static_cast<unsigned long long>(g_mismatches.load()));
  std::printf("elapsed   %.3f s\n", elapsed);
  std::printf("rate      %.0f msgs/s, %.2f MB/s\n", static_cast<double>(messages) / elapsed,
              static_cast<double>(bytes) / elapsed / 1e6);
  std::printf("latency   p50 %lld us, p90 %lld us, p99 %lld us, max %lld us\n",
              us(percentile(lat, 0.50)), us(percentile(lat, 0.90)), us(percentile(lat, 0.99)),
              us(lat.empty() ? 0 : lat.back()));
  return g_errors.load() == 0 ? 0 : 1;
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: echo-client [--addr HOST:PORT] [-c|--conns N] [--size BYTES]\n"
               "                   [--count N | --duration SEC] [--timeout SEC] [--verbose]\n"
               "  --addr      the echo server (default 127.0.0.1:9000)\n"
               "  -c, --conns concurrent connections, one G each (default 1)\n"
               "  --size      bytes per message (default 64)\n"
               "  --count     messages per connection (default 1000 unless --duration)\n"
               "  --duration  run for SEC seconds instead of a count\n"
               "  --timeout   seconds allowed per round trip, 0 for none (default 10)\n"
               "  --verbose   print each connection's fd, local and remote address\n");
}

// Parses a number or exits with a usage error.
template <class T>
T number(std::string_view flag, const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || *end != '\0' || v < 0) {
    std::fprintf(stderr, "echo-client: %.*s wants a non-negative number, not '%s'\n",
                 static_cast<int>(flag.size()), flag.data(), s);
    std::exit(2);
  }
  return static_cast<T>(v);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; i++) {
    std::string_view a = argv[i];
    std::string_view name = a;
    const char* value = nullptr;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
      name = a.substr(0, eq);
      value = argv[i] + eq + 1;
    }
    auto arg = [&]() -> const char* {
      if (value != nullptr) return value;
      if (i + 1 >= argc) {
        std::fprintf(stderr, "echo-client: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (name == "--addr") {
      flags.addr = arg();
    } else if (name == "-c" || name == "--conns") {
      flags.conns = number<int>(name, arg());
    } else if (name == "--size") {
      flags.size = number<size_t>(name, arg());
    } else if (name == "--count") {
      flags.count = number<int64_t>(name, arg());
    } else if (name == "--duration") {
      flags.duration = number<double>(name, arg());
    } else if (name == "--timeout") {
      flags.timeout = number<double>(name, arg());
    } else if (name == "--verbose" || name == "-v") {
      flags.verbose = true;
    } else if (name == "--help" || name == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "echo-client: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (flags.conns < 1 || flags.size < 1) {
    std::fprintf(stderr, "echo-client: --conns and --size must be at least 1\n");
    return 2;
  }
  if (flags.count < 0 && flags.duration <= 0) flags.count = 1000;

  int status = 2;
  int rc = mnp::run([&] { status = run_clients(flags); });
  return rc != 0 ? rc : status;
}
