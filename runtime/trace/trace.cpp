// runtime/trace/trace — per-thread rings and the JSON writer (see trace.h).
#include "trace/trace.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "mnp/debug.h"
#include "sched/sched.h"

namespace mnp::rt {

std::atomic<bool> trace_on{false};

namespace {

constexpr uint32_t kRing = 1u << 16;  // records per thread (2.5 MiB)

struct Ring {
  TraceRec recs[kRing];
  std::atomic<uint64_t> n{0};  // records ever written (the writer's only)
  int tid = 0;                 // the M's id, or -1 for a thread without one
  Ring* next = nullptr;
};

std::mutex rings_mu;
Ring* rings = nullptr;
std::string trace_path;
thread_local Ring* tls_ring = nullptr;

Ring* my_ring() {
  if (tls_ring) return tls_ring;
  auto* r = new Ring;  // kept until trace_stop: the writer may read it
  M* m = getm();
  r->tid = m ? m->id : -1;
  std::lock_guard<std::mutex> l(rings_mu);
  r->next = rings;
  rings = r;
  tls_ring = r;
  return r;
}

const char* stop_text(uint8_t s) {
  switch (static_cast<TraceStop>(s)) {
    case TraceStop::park:
      return "park";
    case TraceStop::yield:
      return "yield";
    case TraceStop::exit:
      return "exit";
    case TraceStop::blocking:
      return "blocking";
  }
  return "?";
}

void write_json(FILE* f) {
  std::fputs("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n", f);
  bool first = true;
  auto sep = [&] {
    if (!first) std::fputs(",\n", f);
    first = false;
  };
  std::lock_guard<std::mutex> l(rings_mu);
  uint64_t dropped = 0;
  for (Ring* r = rings; r; r = r->next) {
    sep();
    std::fprintf(f,
                 "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":%d,"
                 "\"args\":{\"name\":\"M%d\"}}",
                 r->tid, r->tid);
    uint64_t n = r->n.load(std::memory_order_acquire);
    uint64_t start = n > kRing ? n - kRing : 0;
    dropped += start;
    for (uint64_t i = start; i < n; i++) {
      const TraceRec& e = r->recs[i % kRing];
      double ts = static_cast<double>(e.ts) / 1000.0;  // µs
      double dur = static_cast<double>(e.dur) / 1000.0;
      sep();
      switch (e.ev) {
        case TraceEv::g_run:
          std::fprintf(f,
                       "{\"ph\":\"X\",\"name\":\"G%" PRIu64
                       "\",\"cat\":\"g\",\"pid\":1,\"tid\":%d,"
                       "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"goid\":%" PRIu64
                       ",\"stop\":\"%s\",\"wait\":\"%s\",\"fd\":%d}}",
                       e.g, r->tid, ts, dur, e.g, stop_text(e.reason),
                       wait_reason_text(static_cast<WaitReason>(e.wait)), e.fd);
          break;
        case TraceEv::ready:
          std::fprintf(f,
                       "{\"ph\":\"i\",\"s\":\"t\",\"name\":\"ready G%" PRIu64
                       "\",\"cat\":\"sched\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,"
                       "\"args\":{\"goid\":%" PRIu64 "}}",
                       e.g, r->tid, ts, e.g);
          break;
        case TraceEv::spawn:
          std::fprintf(f,
                       "{\"ph\":\"i\",\"s\":\"t\",\"name\":\"spawn G%" PRIu64
                       "\",\"cat\":\"sched\",\"pid\":1,\"tid\":%d,\"ts\":%.3f,"
                       "\"args\":{\"goid\":%" PRIu64 "}}",
                       e.g, r->tid, ts, e.g);
          break;
        case TraceEv::poll:
          std::fprintf(
              f,
              "{\"ph\":\"X\",\"name\":\"netpoll%s\",\"cat\":\"netpoll\",\"pid\":1,"
              "\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"ready\":%u,\"blocking\":%s}}",
              e.fd ? " (blocking)" : "", r->tid, ts, dur, e.arg, e.fd ? "true" : "false");
          break;
        case TraceEv::steal:
          std::fprintf(f,
                       "{\"ph\":\"i\",\"s\":\"t\",\"name\":\"steal\",\"cat\":\"sched\",\"pid\":1,"
                       "\"tid\":%d,\"ts\":%.3f,\"args\":{\"gs\":%u}}",
                       r->tid, ts, e.arg);
          break;
      }
    }
  }
  std::fprintf(f, "\n],\"otherData\":{\"dropped\":%" PRIu64 "}}\n", dropped);
}

}  // namespace

void trace_record(const TraceRec& rec) {
  Ring* r = my_ring();
  uint64_t n = r->n.load(std::memory_order_relaxed);
  r->recs[n % kRing] = rec;
  r->n.store(n + 1, std::memory_order_release);
}

void trace_start(const char* path) {
  if (!path || !*path) return;
  trace_path = path;
  trace_on.store(true, std::memory_order_release);
}

void trace_flush() {
  if (trace_path.empty()) return;
  std::string tmp = trace_path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "mnp: trace: cannot write %s: %s\n", tmp.c_str(), std::strerror(errno));
    return;
  }
  write_json(f);
  bool ok = std::fflush(f) == 0;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), trace_path.c_str()) != 0)
    std::fprintf(stderr, "mnp: trace: writing %s failed: %s\n", trace_path.c_str(),
                 std::strerror(errno));
}

const std::string& trace_path_for_debug() {
  return trace_path;
}

void trace_stop() {
  if (!trace_on.load()) return;
  trace_on.store(false, std::memory_order_release);
  trace_flush();
  std::fprintf(stderr, "mnp: trace written to %s (open it in https://ui.perfetto.dev)\n",
               trace_path.c_str());
  // The rings of threads that are gone are freed; live ones (this thread's)
  // are kept for a next run.
  std::lock_guard<std::mutex> l(rings_mu);
  for (Ring* r = rings; r; r = r->next) r->n.store(0);
}

}  // namespace mnp::rt

void mnp::debug::flush_trace() {
  if (!rt::trace_on.load(std::memory_order_acquire)) return;
  rt::trace_flush();
  std::fprintf(stderr, "mnp: trace written to %s (open it in https://ui.perfetto.dev)\n",
               rt::trace_path_for_debug().c_str());
}
