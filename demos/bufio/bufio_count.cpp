// demos/bufio/bufio_count.cpp — experiment 7 of EXPERIMENTS.md: the same line
// protocol read byte by byte, then through bufio::Reader, syscalls counted.
//
//   build/demos/bufio-count [--lines 2000] [--mode both|bytes|bufio]
//
// A writer G sends --lines lines ("VOTE A\n", "VOTE B\n", ...) over a loopback
// connection and closes it; the reader then reads them all back, twice, on
// two connections: once with one read(2) per byte, once through a 4 KiB
// bufio::Reader. The writer is done before the reader starts, so neither
// reader ever waits and the counts are exact. What to watch:
//   read syscalls   the runtime's count (mnp::stat(Stat::sys_read)) around each
//                   reader: one per byte (+1 for the EOF) vs one per 4 KiB
//   kernel's count  /proc/self/io syscr, the kernel's own count of read-type
//                   syscalls made by this process (a few more: the poller's)
//   time            what those syscalls cost
// On the io_uring completion backend (MNP_BACKEND=uring) there is no read(2)
// at all: each read is an io_uring operation, and those are counted instead.
//
// Confirm with: strace -f -c -e trace=read build/demos/bufio-count --mode bytes
//               strace -f -c -e trace=read build/demos/bufio-count --mode bufio
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "args.h"
#include "mnp/bufio.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "mnp/sync.h"

namespace {

struct Flags {
  int lines = 2000;
  std::string mode = "both";
};

// The kernel's count of read syscalls by this process (proc(5), /proc/PID/io).
long kernel_read_syscalls() {
  FILE* f = std::fopen("/proc/self/io", "re");
  if (f == nullptr) return -1;
  char key[32];
  long v = -1, x = 0;
  while (std::fscanf(f, "%31s %ld", key, &x) == 2) {
    if (std::strcmp(key, "syscr:") == 0) v = x;
  }
  std::fclose(f);
  return v;
}

// A connection with every line already sent and the writer's side closed.
std::unique_ptr<mnp::net::Conn> connection_with_lines(mnp::net::Listener& ln, int lines,
                                                      size_t* bytes) {
  std::string data;
  for (int i = 0; i < lines; i++) data += i % 3 == 0 ? "VOTE B\n" : "VOTE A\n";
  *bytes = data.size();
  mnp::WaitGroup sent;
  sent.add(1);
  mnp::go([&] {
    auto [c, err] = ln.accept();
    if (!err) {
      c->write(data);  // fits in the socket buffers: nobody reads yet
      c->close();
    }
    sent.done();
  });
  auto [conn, err] = mnp::net::dial("tcp", ln.addr().to_string());
  if (err) {
    std::fprintf(stderr, "bufio-count: %s\n", err.message().c_str());
    std::exit(1);
  }
  sent.wait();
  return std::move(conn);
}

// Reads lines from conn one byte at a time, as code that does not buffer does.
int read_bytewise(mnp::net::Conn& conn) {
  int lines = 0;
  std::string line;
  for (;;) {
    char c;
    auto [n, err] = conn.read(&c, 1);  // one syscall per byte
    if (err) break;
    if (c == '\n') {
      lines++;
      line.clear();
    } else {
      line += c;
    }
  }
  return lines;
}

// The same with bufio: one syscall fills 4 KiB, read_line serves from memory.
int read_buffered(mnp::net::Conn& conn) {
  mnp::bufio::Reader in(conn);
  int lines = 0;
  for (;;) {
    auto [line, err] = in.read_line();
    if (err) break;
    lines++;
  }
  return lines;
}

void measure(const char* what, mnp::net::Listener& ln, const Flags& f,
             int (*reader)(mnp::net::Conn&)) {
  size_t bytes = 0;
  auto conn = connection_with_lines(ln, f.lines, &bytes);
  uint64_t sys0 = mnp::stat(mnp::Stat::sys_read);
  uint64_t ops0 = mnp::stat(mnp::Stat::poll_events), enter0 = mnp::stat(mnp::Stat::sys_uring_enter);
  long k0 = kernel_read_syscalls();
  int64_t t0 = mnp::nanotime();
  int lines = reader(*conn);
  int64_t ns = mnp::nanotime() - t0;
  uint64_t reads = mnp::stat(mnp::Stat::sys_read) - sys0;
  long kreads = kernel_read_syscalls() - k0;
  std::printf(
      "  %-28s %5d lines, %6zu bytes: %6llu read syscalls (%.1f bytes each); kernel's "
      "count (syscr) %ld; %.2f ms\n",
      what, lines, bytes, static_cast<unsigned long long>(reads),
      reads ? static_cast<double>(bytes) / static_cast<double>(reads) : 0.0, kreads,
      static_cast<double>(ns) / 1e6);
  // The completion backend does not read with read(2): each read is an
  // io_uring operation, its completion counted as a poll event.
  if (std::string_view(mnp::backend_name()) == "uring") {
    std::printf(
        "  %-28s (backend uring: %llu read operations completed, %llu io_uring_enter "
        "calls)\n",
        "", static_cast<unsigned long long>(mnp::stat(mnp::Stat::poll_events) - ops0),
        static_cast<unsigned long long>(mnp::stat(mnp::Stat::sys_uring_enter) - enter0));
  }
  conn->close();
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  // --lines: all of them must fit in the socket buffers before the reader starts.
  demo::Args args("bufio-count", "[--lines N] [--mode both|bytes|bufio]");
  args.num("--lines", &f.lines, 1, 4000).choice("--mode", &f.mode, {"both", "bytes", "bufio"});
  if (!args.parse(argc, argv)) return 2;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return mnp::run([&] {
    auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
    if (err) {
      std::fprintf(stderr, "bufio-count: %s\n", err.message().c_str());
      return;
    }
    std::printf("bufio-count: %d lines of the vote protocol over loopback (backend %s)\n", f.lines,
                mnp::backend_name());
    if (f.mode != "bufio") measure("byte by byte, read(&c, 1):", *ln, f, read_bytewise);
    if (f.mode != "bytes") measure("bufio::Reader, 4 KiB:", *ln, f, read_buffered);
  });
}
