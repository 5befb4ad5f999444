// bench/loadgen/loadgen.c — the shoot-out's load generator.
//
// Plain C, one thread, one epoll set (edge-triggered), so that it is neutral:
// it shares no code with mini-netpoll, Go or the C peer it drives. Pin it to
// its own CPU (taskset -c 1) so it never competes with the server.
//
// Every connection is a byte stream with a known content: byte k of
// connection c is pattern[(phase(c) + k) % kPeriod]. The generator writes the
// stream in chunks ("messages") of --size bytes and checks every byte that
// comes back against the same pattern, so a byte that is lost, duplicated,
// reordered or crosses connections is caught with its offset.
//
// Modes (--mode):
//   pingpong  each connection keeps exactly one message in flight: write S
//             bytes, wait for all S to come back, write the next.
//   stream    each connection keeps up to --window bytes in flight, written in
//             S-byte chunks as fast as the server drains them.
//   idle      opens connections in steps (--steps 1000,2000,...), optionally
//             exchanges one message on each (--ping 1), waits until the server
//             holds them all (its /proc/PID/fd count), lets it settle, and
//             records its RSS: the memory cost of a parked connection.
//
// A load run has three phases: connect (at most --parallel connections are
// connecting or awaiting their first echo at once, so the server's accept
// queue never overflows), warm-up (--warmup seconds of full load), then the
// measured window (--duration seconds). Latency is per message, from the
// write of its first byte to the read of its last, kept in a log-linear
// histogram (1/64 relative precision). With --server-pid the generator reads
// the server's utime+stime (/proc/PID/stat) and RSS at the window's edges.
// The window's edges are CLOCK_MONOTONIC times in the output, so that a caller
// can line them up with what the server itself prints. With --gate the window
// opens only on SIGUSR1, so that a tracer (strace -c -p) can attach first.
//
// Output: one JSON object on stdout; progress and errors on stderr. Exit 0 on
// success, 1 on any connection error or byte mismatch, 2 on bad usage. The
// whole run is bounded by --timeout (SIGALRM ends it with exit 3).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // accept4, SOCK_NONBLOCK (the build defines it too)
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kPeriod = 65521 };        // pattern period: a prime, so no size aligns with it
enum { kMaxChunk = 64 * 1024 };  // largest --size, and the read buffer
enum { kRing = 64 };             // chunks in flight per connection, at most
enum { kHistSub = 64 };          // sub-buckets per power of two
enum { kHistBuckets = 64 * kHistSub };

static uint8_t g_pattern[kPeriod + kMaxChunk];
static uint8_t g_readbuf[kMaxChunk];

// --- time and the histogram ---------------------------------------------------

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// Log-linear: values below kHistSub exactly; above, 64 buckets per power of
// two (HdrHistogram's idea with two significant digits).
static uint64_t g_hist[kHistBuckets];
static uint64_t g_hist_count;
static int64_t g_hist_max;

static int hist_index(uint64_t v) {
  if (v < kHistSub) return (int)v;
  int e = 63 - __builtin_clzll(v);  // >= 6
  int sub = (int)((v >> (e - 6)) & (kHistSub - 1));
  return (e - 5) * kHistSub + sub;
}

static uint64_t hist_value(int idx) {  // the middle of the bucket
  if (idx < kHistSub) return (uint64_t)idx;
  int e = idx / kHistSub + 5;
  uint64_t sub = (uint64_t)(idx % kHistSub);
  uint64_t lo = (kHistSub + sub) << (e - 6);
  return lo + ((uint64_t)1 << (e - 6)) / 2;
}

static void hist_add(int64_t v) {
  if (v < 0) v = 0;
  g_hist[hist_index((uint64_t)v)]++;
  g_hist_count++;
  if (v > g_hist_max) g_hist_max = v;
}

static double hist_pct_us(double pct) {
  if (g_hist_count == 0) return 0;
  uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)g_hist_count);
  if (rank == 0) rank = 1;
  uint64_t seen = 0;
  for (int i = 0; i < kHistBuckets; i++) {
    seen += g_hist[i];
    if (seen >= rank) return (double)hist_value(i) / 1000.0;
  }
  return (double)g_hist_max / 1000.0;
}

// --- the server, seen through /proc ---------------------------------------------

// utime+stime of the whole process (all threads, dead ones included), seconds.
static double proc_cpu_s(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char* p = strrchr(buf, ')');  // the command name may hold spaces
  if (!p) return -1;
  // Fields after the name: 3 state, 4 ppid, ... 14 utime, 15 stime.
  unsigned long long ut = 0, st = 0;
  int field = 2;
  for (char* tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
    field++;
    if (field == 14) ut = strtoull(tok, NULL, 10);
    if (field == 15) {
      st = strtoull(tok, NULL, 10);
      break;
    }
  }
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

// A "Key:   123 kB" line of /proc/PID/status, in KiB; -1 if absent.
static long proc_status_kib(int pid, const char* key) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  long v = -1;
  size_t klen = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
      v = strtol(line + klen + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

static long proc_fd_count(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  DIR* d = opendir(path);
  if (!d) return -1;
  long n = 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

// CPU time every process on the machine has used (the "cpu" line of
// /proc/stat, idle and iowait left out), seconds: less the server's and ours,
// what else ran during the window.
static double machine_busy_s(void) {
  FILE* f = fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long v[8] = {0};  // user nice system idle iowait irq softirq steal
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                 &v[4], &v[5], &v[6], &v[7]);
  fclose(f);
  if (n < 8) return -1;
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

// --- connections ---------------------------------------------------------------

enum conn_state { C_CONNECTING, C_OPEN, C_DEAD };

struct conn {
  int fd;
  uint32_t id;
  uint8_t state;
  bool first_done;         // the first message came back (counts against --parallel until then)
  bool write_blocked;      // a write stopped short: wait for EPOLLOUT
  uint64_t phase;          // where this connection's stream starts in the pattern
  uint64_t tx, rx;         // bytes written / read back
  uint64_t done;           // chunks fully echoed
  int64_t sent_at[kRing];  // when chunk k's first byte was written: sent_at[k % kRing]
};

struct opts {
  const char* mode;
  struct sockaddr_in addr;
  int conns;
  int size;
  int window;
  double duration;
  double warmup;
  double timeout;
  int parallel;
  int server_pid;
  // idle mode
  int steps[64];
  int nsteps;
  int ping;
  int settle_ms;
  bool gate;             // wait for SIGUSR1 between warm-up and window
  double setup_timeout;  // seconds allowed to establish the connections
};

static struct opts O;
static struct conn* g_conns;
static int g_nconns;       // connections created so far
static int g_pending;      // connecting, or open without their first echo
static int g_established;  // open with their first echo
static int g_epfd;
static volatile sig_atomic_t g_gate_open;  // --gate: SIGUSR1 arrived
static bool g_idle;                        // --mode idle
static bool g_sending = true;              // false once the run is over: no new messages
static bool g_measuring;                   // inside the measured window
static uint64_t g_msgs_window;             // chunks completed inside the window
static uint64_t g_msgs_total;              // chunks completed in the whole run
static uint64_t g_errors, g_mismatches;
static uint64_t g_errors_shown;

static void conn_error(struct conn* c, const char* what, int err) {
  if (c->state == C_DEAD) return;
  if (!c->first_done)
    g_pending--;
  else
    g_established--;
  c->state = C_DEAD;
  g_errors++;
  if (g_errors_shown++ < 5) {
    fprintf(stderr, "loadgen: conn %u: %s%s%s (tx %" PRIu64 ", rx %" PRIu64 ")\n", c->id, what,
            err ? ": " : "", err ? strerror(err) : "", c->tx, c->rx);
  }
  epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
}

static uint64_t window_bytes(void) {
  if (strcmp(O.mode, "stream") == 0) return (uint64_t)O.window;
  return (uint64_t)O.size;  // pingpong and idle: one message in flight
}

// Writes as much as the window allows, in whole chunks, timestamping each
// chunk when its first byte goes out.
static void conn_write(struct conn* c, int64_t now) {
  uint64_t win = window_bytes();
  while (c->state == C_OPEN && !c->write_blocked) {
    uint64_t in_chunk = c->tx % (uint64_t)O.size;
    if (in_chunk == 0) {
      // a new chunk: only while sending and within the window
      if (!g_sending || c->tx - c->rx + (uint64_t)O.size > win) return;
      if (g_idle && (!O.ping || c->tx > 0)) return;  // idle: one message at most
      c->sent_at[(c->tx / (uint64_t)O.size) % kRing] = now;
    }
    size_t len = (size_t)((uint64_t)O.size - in_chunk);
    const uint8_t* p = g_pattern + (c->phase + c->tx) % kPeriod;
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->write_blocked = true;
        return;
      }
      if (errno == EINTR) continue;
      conn_error(c, "send", errno);
      return;
    }
    c->tx += (uint64_t)n;
    if ((size_t)n < len) {
      c->write_blocked = true;  // the send buffer is full: an EPOLLOUT edge will come
      return;
    }
  }
}

static void chunk_done(struct conn* c, int64_t now) {
  int64_t sent = c->sent_at[c->done % kRing];
  c->done++;
  g_msgs_total++;
  if (g_measuring) {
    g_msgs_window++;
    hist_add(now - sent);
  }
  if (!c->first_done) {
    c->first_done = true;
    g_pending--;
    g_established++;
  }
}

// Reads what has come back and checks it. Stops when the socket is drained:
// a read shorter than asked for means nothing more was queued, and with
// edge-triggered epoll a later arrival brings a new edge.
static void conn_read(struct conn* c, int64_t now) {
  while (c->state == C_OPEN) {
    uint64_t inflight = c->tx - c->rx;
    size_t want = sizeof g_readbuf;
    if (inflight == 0)
      want = 1;  // nothing expected: any byte is an error (or EOF)
    else if (inflight < want)
      want = (size_t)inflight;
    ssize_t n = recv(c->fd, g_readbuf, want, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      conn_error(c, "recv", errno);
      return;
    }
    if (n == 0) {
      conn_error(c, "unexpected EOF from the server", 0);
      return;
    }
    if ((uint64_t)n > inflight) {
      g_mismatches++;
      conn_error(c, "the server sent bytes that were never written", 0);
      return;
    }
    const uint8_t* expect = g_pattern + (c->phase + c->rx) % kPeriod;
    if (memcmp(g_readbuf, expect, (size_t)n) != 0) {
      size_t at = 0;
      while (at < (size_t)n && g_readbuf[at] == expect[at]) at++;
      g_mismatches++;
      char what[128];
      snprintf(what, sizeof what, "byte mismatch at stream offset %" PRIu64, c->rx + at);
      conn_error(c, what, 0);
      return;
    }
    c->rx += (uint64_t)n;
    while ((c->done + 1) * (uint64_t)O.size <= c->rx) chunk_done(c, now);
    if ((size_t)n < want || c->rx == c->tx) return;
  }
}

static void conn_connected(struct conn* c, int64_t now) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    conn_error(c, "connect", err);
    return;
  }
  c->state = C_OPEN;
  if (g_idle && !O.ping) {  // nothing to exchange: connected is established
    c->first_done = true;
    g_pending--;
    g_established++;
  }
  conn_write(c, now);
}

static void conn_event(struct conn* c, uint32_t ev, int64_t now) {
  if (c->state == C_CONNECTING) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    conn_connected(c, now);
    if (c->state != C_OPEN) return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_read(c, now);
  if (c->state == C_OPEN && (ev & EPOLLOUT)) c->write_blocked = false;
  if (c->state == C_OPEN) conn_write(c, now);
}

// Starts connections until `target` exist or --parallel are pending.
static void start_connections(int target) {
  while (g_nconns < target && g_pending < O.parallel) {
    struct conn* c = &g_conns[g_nconns];
    memset(c, 0, sizeof *c);
    c->id = (uint32_t)g_nconns;
    c->phase = ((uint64_t)c->id * 7919u) % kPeriod;
    g_nconns++;
    g_pending++;
    c->state = C_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
      c->state = C_OPEN;  // so that conn_error accounts for it
      conn_error(c, "socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    if (epoll_ctl(g_epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
      conn_error(c, "epoll_ctl", errno);
      continue;
    }
    if (connect(c->fd, (struct sockaddr*)&O.addr, sizeof O.addr) != 0 && errno != EINPROGRESS) {
      conn_error(c, "connect", errno);
      continue;
    }
  }
}

// One round of the event loop: waits at most timeout_ms.
static void poll_once(int timeout_ms) {
  struct epoll_event evs[512];
  int n = epoll_wait(g_epfd, evs, 512, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    perror("loadgen: epoll_wait");
    exit(1);
  }
  int64_t now = now_ns();
  for (int i = 0; i < n; i++) conn_event(evs[i].data.ptr, evs[i].events, now);
}

static void close_all(void) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};  // RST: leave no TIME_WAIT behind
  for (int i = 0; i < g_nconns; i++) {
    if (g_conns[i].fd >= 0) {
      setsockopt(g_conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(g_conns[i].fd);
      g_conns[i].fd = -1;
    }
  }
}

static bool too_many_errors(void) {
  return g_errors > 0 || g_mismatches > 0;
}

// Opens connections until `target` are established (each has had its first
// echo; in idle mode without --ping: connected). False on error or timeout.
// A connect that has not completed counts as pending, as does an open
// connection whose first echo has not come back: that paces the connects to
// the server's accept rate.
static bool establish(int target, int64_t deadline) {
  for (;;) {
    start_connections(target);
    int ready = g_established;
    if (ready >= target) return true;
    if (too_many_errors()) return false;
    if (now_ns() > deadline) {
      fprintf(stderr, "loadgen: only %d of %d connections ready before the deadline\n", ready,
              target);
      return false;
    }
    poll_once(10);
  }
}

// --- output ----------------------------------------------------------------------

static void print_json_head(void) {
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &O.addr.sin_addr, ip, sizeof ip);
  printf("{\"mode\": \"%s\", \"addr\": \"%s:%d\", \"conns\": %d, \"size\": %d", O.mode, ip,
         ntohs(O.addr.sin_port), O.conns, O.size);
}

static int run_load(void) {
  int64_t t0 = now_ns();
  int64_t setup_deadline = t0 + (int64_t)(O.setup_timeout * 1e9);
  if (!establish(O.conns, setup_deadline)) {
    close_all();
    return 1;
  }
  double setup_s = (double)(now_ns() - t0) / 1e9;

  int64_t warm_end = now_ns() + (int64_t)(O.warmup * 1e9);
  while (now_ns() < warm_end && !too_many_errors()) poll_once(10);
  if (O.gate) {
    // --gate: say so, keep the load going, and open the window on SIGUSR1 (a
    // tracer attaches in between: the window is exactly what it sees).
    fprintf(stderr, "loadgen: ready\n");
    while (!g_gate_open && !too_many_errors()) poll_once(10);
  }

  double srv_cpu0 = O.server_pid ? proc_cpu_s(O.server_pid) : 0;
  double cli_cpu0 = self_cpu_s();
  double busy0 = machine_busy_s();
  int64_t w0 = now_ns();
  int64_t w_end = w0 + (int64_t)(O.duration * 1e9);
  g_measuring = true;
  while (!too_many_errors()) {
    int64_t now = now_ns();
    if (now >= w_end) break;
    int ms = (int)((w_end - now) / 1000000);
    poll_once(ms < 10 ? (ms < 1 ? 1 : ms) : 10);
  }
  g_measuring = false;
  int64_t w1 = now_ns();
  if (O.gate) fprintf(stderr, "loadgen: window closed\n");
  double srv_cpu1 = O.server_pid ? proc_cpu_s(O.server_pid) : 0;
  double cli_cpu1 = self_cpu_s();
  double busy1 = machine_busy_s();
  long rss = O.server_pid ? proc_status_kib(O.server_pid, "VmRSS") : -1;
  long hwm = O.server_pid ? proc_status_kib(O.server_pid, "VmHWM") : -1;
  g_sending = false;
  close_all();

  double secs = (double)(w1 - w0) / 1e9;
  if (secs < 1e-3) secs = 1e-3;  // a window cut short by an error: keep the rates finite
  double rate = (double)g_msgs_window / secs;
  print_json_head();
  printf(", \"window\": %d, \"duration_s\": %.4f, \"setup_s\": %.3f", (int)window_bytes(), secs,
         setup_s);
  printf(", \"window_start_ns\": %" PRId64 ", \"window_end_ns\": %" PRId64, w0, w1);
  printf(", \"msgs\": %" PRIu64 ", \"msgs_total\": %" PRIu64, g_msgs_window, g_msgs_total);
  printf(", \"msgs_per_s\": %.1f, \"mbytes_per_s\": %.3f", rate, rate * O.size / 1e6);
  printf(", \"p50_us\": %.2f, \"p90_us\": %.2f, \"p99_us\": %.2f, \"p999_us\": %.2f",
         hist_pct_us(50), hist_pct_us(90), hist_pct_us(99), hist_pct_us(99.9));
  printf(", \"max_us\": %.2f", (double)g_hist_max / 1000.0);
  printf(", \"client_cpu_frac\": %.3f", (cli_cpu1 - cli_cpu0) / secs);
  printf(", \"machine_busy_cpus\": %.3f", (busy1 - busy0) / secs);
  if (O.server_pid) {
    double cpu = srv_cpu1 - srv_cpu0;
    printf(", \"server_cpu_s\": %.3f, \"server_cpu_frac\": %.3f", cpu, cpu / secs);
    printf(", \"server_cpu_us_per_msg\": %.4f",
           g_msgs_window ? cpu * 1e6 / (double)g_msgs_window : 0.0);
    printf(", \"server_rss_kib\": %ld, \"server_hwm_kib\": %ld", rss, hwm);
  }
  printf(", \"errors\": %" PRIu64 ", \"mismatches\": %" PRIu64 "}\n", g_errors, g_mismatches);
  return too_many_errors() ? 1 : 0;
}

static int run_idle(void) {
  if (!O.server_pid) {
    fprintf(stderr, "loadgen: --mode idle needs --server-pid\n");
    return 2;
  }
  long fd_base = proc_fd_count(O.server_pid);
  long rss[64], anon[64];
  int64_t deadline = now_ns() + (int64_t)(O.timeout * 0.9e9);
  int done = 0;
  for (int s = 0; s < O.nsteps; s++) {
    int n = O.steps[s];
    if (!establish(n, deadline)) break;
    // The server holds them all once it has accepted them.
    while (proc_fd_count(O.server_pid) < fd_base + n) {
      if (now_ns() > deadline) {
        fprintf(stderr, "loadgen: the server never reached %ld fds\n", fd_base + n);
        goto out;
      }
      poll_once(5);
    }
    // Let the server park every G and return what it frees (a few ms).
    int64_t settle_end = now_ns() + (int64_t)O.settle_ms * 1000000;
    while (now_ns() < settle_end) poll_once(5);
    rss[s] = proc_status_kib(O.server_pid, "VmRSS");
    anon[s] = proc_status_kib(O.server_pid, "RssAnon");
    done = s + 1;
    fprintf(stderr, "loadgen: %d idle connections: server RSS %ld KiB\n", n, rss[s]);
  }
out:
  close_all();
  // Least-squares slope of RSS over connections, in bytes per connection.
  double slope = 0;
  if (done >= 2) {
    double mx = 0, my = 0;
    for (int i = 0; i < done; i++) {
      mx += O.steps[i];
      my += (double)rss[i] * 1024;
    }
    mx /= done;
    my /= done;
    double sxy = 0, sxx = 0;
    for (int i = 0; i < done; i++) {
      sxy += (O.steps[i] - mx) * ((double)rss[i] * 1024 - my);
      sxx += (O.steps[i] - mx) * (O.steps[i] - mx);
    }
    slope = sxx > 0 ? sxy / sxx : 0;
  }
  print_json_head();
  printf(", \"ping\": %d, \"steps\": [", O.ping);
  for (int i = 0; i < done; i++) {
    printf("%s{\"conns\": %d, \"rss_kib\": %ld, \"rss_anon_kib\": %ld}", i ? ", " : "", O.steps[i],
           rss[i], anon[i]);
  }
  printf("], \"slope_bytes_per_conn\": %.1f, \"errors\": %" PRIu64 ", \"mismatches\": %" PRIu64
         "}\n",
         slope, g_errors, g_mismatches);
  return (done == O.nsteps && !too_many_errors()) ? 0 : 1;
}

// --- flags -----------------------------------------------------------------------

static void usage(FILE* out) {
  fprintf(
      out,
      "usage: loadgen --addr HOST:PORT [--mode pingpong|stream|idle] [-c CONNS] [--size BYTES]\n"
      "               [--duration SEC] [--warmup SEC] [--window BYTES] [--parallel N]\n"
      "               [--server-pid PID] [--timeout SEC] [--setup-timeout SEC] [--gate]\n"
      "               idle mode: --steps N,N,... [--ping 0|1] [--settle MS]\n"
      "  pingpong: one message in flight per connection; stream: up to --window bytes\n"
      "  (default 16 x size) in flight; idle: server RSS as connections are added.\n"
      "  --gate: after the warm-up print 'loadgen: ready' to stderr and keep the load\n"
      "  running until SIGUSR1 opens the window ('loadgen: window closed' ends it).\n"
      "  Prints one JSON object. Exit 0 ok, 1 errors or mismatches, 2 usage, 3 timeout.\n");
}

static bool parse_addr(const char* s, struct sockaddr_in* a) {
  const char* colon = strrchr(s, ':');
  if (!colon) return false;
  char host[64];
  size_t hl = (size_t)(colon - s);
  if (hl == 0 || hl >= sizeof host) return false;
  memcpy(host, s, hl);
  host[hl] = 0;
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return false;
  // Loopback only: this tool must never load another machine.
  return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

static void on_gate(int sig) {
  (void)sig;
  g_gate_open = 1;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "loadgen: --timeout reached, giving up\n";
  ssize_t r = write(2, msg, sizeof msg - 1);
  (void)r;
  _exit(3);
}

int main(int argc, char** argv) {
  O.mode = "pingpong";
  O.conns = 1;
  O.size = 64;
  O.duration = 2;
  O.warmup = 0.3;
  O.parallel = 256;
  O.ping = 0;
  O.settle_ms = 300;
  O.timeout = 0;
  bool have_addr = false;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, true))
    if (ARG("--addr")) {
      if (!parse_addr(v, &O.addr)) {
        fprintf(stderr, "loadgen: --addr must be a loopback IPv4 HOST:PORT, not '%s'\n", v);
        return 2;
      }
      have_addr = true;
    } else if (ARG("--mode")) {
      O.mode = v;
    } else if (ARG("-c") || ARG("--conns")) {
      O.conns = atoi(v);
    } else if (ARG("--size")) {
      O.size = atoi(v);
    } else if (ARG("--window")) {
      O.window = atoi(v);
    } else if (ARG("--duration")) {
      O.duration = atof(v);
    } else if (ARG("--warmup")) {
      O.warmup = atof(v);
    } else if (ARG("--parallel")) {
      O.parallel = atoi(v);
    } else if (ARG("--server-pid")) {
      O.server_pid = atoi(v);
    } else if (ARG("--setup-timeout")) {
      O.setup_timeout = atof(v);
    } else if (ARG("--timeout")) {
      O.timeout = atof(v);
    } else if (ARG("--ping")) {
      O.ping = atoi(v);
    } else if (strcmp(a, "--gate") == 0) {
      O.gate = true;
    } else if (ARG("--settle")) {
      O.settle_ms = atoi(v);
    } else if (ARG("--steps")) {
      char* end;
      const char* p = v;
      O.nsteps = 0;
      while (*p && O.nsteps < 64) {
        O.steps[O.nsteps++] = (int)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) break;
      }
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "loadgen: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
#undef ARG
  }
  bool idle = g_idle = strcmp(O.mode, "idle") == 0;
  if (!have_addr || (!idle && strcmp(O.mode, "pingpong") != 0 && strcmp(O.mode, "stream") != 0) ||
      O.size < 1 || O.size > kMaxChunk || O.duration <= 0 || O.warmup < 0 || O.parallel < 1 ||
      (idle ? O.nsteps < 1 : O.conns < 1)) {
    usage(stderr);
    return 2;
  }
  if (idle) O.conns = O.steps[O.nsteps - 1];
  if (O.window == 0) O.window = 16 * O.size;
  if (O.window < O.size) O.window = O.size;
  if (O.window > kRing * O.size) O.window = kRing * O.size;
  O.window -= O.window % O.size;
  if (O.timeout <= 0) O.timeout = O.warmup + O.duration + 60;
  if (O.setup_timeout <= 0) O.setup_timeout = O.timeout / 2;

  // The open-file limit is the hard one here (no raising it past the hard
  // limit): say so before connecting rather than failing at connection 19990.
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)O.conns + 16 > rl.rlim_cur) {
    fprintf(stderr, "loadgen: %d connections need more fds than ulimit -n (%llu)\n", O.conns,
            (unsigned long long)rl.rlim_cur);
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  struct sigaction gate = {.sa_handler = on_gate};  // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGUSR1, &gate, NULL);
  alarm((unsigned)ceil(O.timeout));

  uint64_t x = 0x9E3779B97F4A7C15ull;  // xorshift: any fixed, non-repeating filler works
  for (size_t i = 0; i < kPeriod; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    g_pattern[i] = (uint8_t)(x >> 32);
  }
  // Repeated past the period, so that a chunk may start anywhere in it.
  for (size_t i = kPeriod; i < sizeof g_pattern; i++) g_pattern[i] = g_pattern[i - kPeriod];

  g_conns = calloc((size_t)O.conns, sizeof *g_conns);
  g_epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!g_conns || g_epfd < 0) {
    perror("loadgen: setup");
    return 1;
  }
  for (int i = 0; i < O.conns; i++) g_conns[i].fd = -1;
  int rc = idle ? run_idle() : run_load();
  fflush(stdout);
  return rc;
}
