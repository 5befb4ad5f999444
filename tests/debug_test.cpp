// The instruments (issue 8, "seeing"): the G dump, the poller's live table,
// lock-held-while-parked, SIGQUIT, schedtrace and the trace file.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <string>

#include "mnp/debug.h"
#include "testutil.h"

using namespace mnptest;

namespace {

// Sets an environment variable for one scope (the runtime reads MNP_DEBUG
// and MNP_TRACE at mnp::run).
struct EnvVar {
  EnvVar(const char* k, const char* v) : key(k) { setenv(k, v, 1); }
  ~EnvVar() { unsetenv(key); }
  const char* key;
};

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

}  // namespace

namespace {
// Internal linkage (anonymous namespace): not in the dynamic symbol table,
// so dladdr cannot name it; the dump's .symtab fallback must.
__attribute__((noinline)) void parked_in_internal_helper(mnp::net::Conn& c) {
  char b[8];
  c.read(b, sizeof b);            // parks until the test writes
  asm volatile("" ::: "memory");  // not a tail call: this frame stays on the stack
}
}  // namespace

TEST(Debug, DumpNamesParkedReaderWithFdAndReason) {
  std::string dump, table;
  int fd = -1;
  uint64_t reader = 0;
  ASSERT_EQ(
      mnp::run([&] {
        ConnPair p = connected_pair();
        ASSERT_TRUE(p);
        fd = p.client->sysfd();
        Group g;
        g.go([&] {
          reader = mnp::goid();
          parked_in_internal_helper(*p.client);
        });
        ASSERT_TRUE(wait_until([&] { return contains(mnp::debug::goroutines(), "IO wait"); }));
        dump = mnp::debug::goroutines();
        table = mnp::debug::netpoll_table();
        p.server->write("x", 1);
      }),
      0);
  std::string want =
      "goroutine " + std::to_string(reader) + " [IO wait (read) fd=" + std::to_string(fd) + ",";
  EXPECT_TRUE(contains(dump, want)) << dump;
  EXPECT_TRUE(contains(dump, "goroutine 1 [")) << dump;  // main, in the WaitGroup
  EXPECT_TRUE(contains(dump, "(main)")) << dump;
  EXPECT_TRUE(contains(dump, "netpoll")) << dump;  // a frame of the parked reader
#if defined(__linux__)
  // A function dladdr cannot name, named from the binary's .symtab.
  EXPECT_TRUE(contains(dump, "parked_in_internal_helper(mnp::net::Conn&)+0x")) << dump;
#endif
  // The table: the reader's fd row holds its G in the rg slot.
  std::istringstream rows(table);
  std::string row;
  bool found = false;
  while (std::getline(rows, row)) {
    std::istringstream cols(row);
    int rfd = -1;
    if (cols >> rfd && rfd == fd) {
      found = true;
      EXPECT_TRUE(contains(row, "G" + std::to_string(reader))) << row;
      EXPECT_TRUE(contains(row, "127.0.0.1:")) << row;
    }
  }
  EXPECT_TRUE(found) << table;
}

TEST(Debug, LockHeldWhileParkedIsReported) {
  EnvVar e("MNP_DEBUG", "lockpark=50,hog=0");
  testing::internal::CaptureStderr();
  ASSERT_EQ(mnp::run([&] {
              ConnPair p = connected_pair();
              ASSERT_TRUE(p);
              mnp::Mutex mu;
              Group g;
              g.go([&] {
                mu.lock();
                char b[1];
                p.client->read(b, 1);  // parked on I/O with the mutex held
                mu.unlock();
              });
              g.go([&] {
                mnp::sleep(5ms);
                mu.lock();  // queues on the mutex
                mu.unlock();
              });
              mnp::sleep(300ms);
              p.server->write("x", 1);
            }),
            0);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(err, "mnp: lock held while parked: goroutine")) << err;
  EXPECT_TRUE(contains(err, "IO wait (read)")) << err;
  EXPECT_TRUE(contains(err, "1 goroutine(s) queue on that mutex")) << err;
}

TEST(Debug, NoLockParkReportWithoutAMutexHeld) {
  EnvVar e("MNP_DEBUG", "lockpark=20,hog=0");
  testing::internal::CaptureStderr();
  ASSERT_EQ(mnp::run([&] {
              mnp::Mutex mu;
              mu.lock();
              mu.unlock();
              mnp::sleep(150ms);
            }),
            0);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(contains(err, "lock held while parked")) << err;
}

TEST(Debug, SigquitDumpsAndTheProcessGoesOn) {
  testing::internal::CaptureStderr();
  bool after = false;
  ASSERT_EQ(mnp::run([&] {
              ::raise(SIGQUIT);
              mnp::sleep(250ms);  // sysmon's tick prints it meanwhile
              after = true;
            }),
            0);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(after);
  EXPECT_TRUE(contains(err, "SIGQUIT: goroutine dump")) << err;
  EXPECT_TRUE(contains(err, "goroutine 1 [sleep")) << err;
}

TEST(Debug, HogIsReported) {
  EnvVar e("MNP_DEBUG", "hog=20");
  testing::internal::CaptureStderr();
  ASSERT_EQ(mnp::run([&] {
              auto t0 = now();
              while (ms_since(t0) < 150) {
              }  // no park, no yield
            }),
            0);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(err, "without parking or yielding")) << err;
}

TEST(Debug, SchedtraceLineHasGoFields) {
  std::string line;
  mnp::Options o;
  o.procs = 2;
  ASSERT_EQ(mnp::run([&] { line = mnp::debug::schedtrace_line(); }, o), 0);
  for (const char* f :
       {"SCHED ", "gomaxprocs=2", "idleprocs=", "threads=", "runqueue=", "gs=1", "syscalls="})
    EXPECT_TRUE(contains(line, f)) << f << " in " << line;
}

TEST(Debug, TraceFileIsWrittenWithRunSpans) {
  std::string path = testing::TempDir() + "mnp-trace-test.json";
  {
    EnvVar e("MNP_TRACE", path.c_str());
    testing::internal::CaptureStderr();
    ASSERT_EQ(mnp::run([&] {
                ConnPair p = connected_pair();
                ASSERT_TRUE(p);
                Group g;
                g.go([&] {
                  char b[4];
                  p.client->read(b, 4);
                });
                mnp::sleep(5ms);
                p.server->write("ping", 4);
              }),
              0);
    testing::internal::GetCapturedStderr();
  }
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string json = ss.str();
  std::remove(path.c_str());
  EXPECT_TRUE(contains(json, "\"traceEvents\":[")) << json.substr(0, 200);
  EXPECT_TRUE(contains(json, "\"ph\":\"X\",\"name\":\"G1\"")) << json.substr(0, 400);
  EXPECT_TRUE(contains(json, "\"wait\":\"IO wait (read)\"")) << json.substr(0, 400);
  EXPECT_TRUE(contains(json, "\"name\":\"netpoll")) << json.substr(0, 400);
  EXPECT_TRUE(contains(json, "ready G")) << json.substr(0, 400);
}

// ---- stacks you can size (issue 10) -------------------------------------------

namespace {

// Recursion whose frames the compiler cannot fold: each keeps 1 KiB live.
__attribute__((noinline)) int deep(int depth, int limit) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(depth);
  if (depth >= limit) return frame[0];
  return deep(depth + 1, limit) + frame[0];  // not a tail call
}

}  // namespace

// MNP_DEBUG=stacks=1: at exit, the deepest G, measured by its high-water
// mark. A G recursing ~48 KiB deep must be the one named, with at least that.
TEST(Debug, StackReportNamesTheDeepestGoroutine) {
  EnvVar e("MNP_DEBUG", "stacks=1");
  uint64_t deep_id = 0;
  testing::internal::CaptureStderr();
  ASSERT_EQ(mnp::run([&] {
              Group g;
              g.go([&] {
                deep_id = mnp::goid();
                deep(0, 48);
              });
              g.go([] { deep(0, 2); });
              g.wait();
            }),
            0);
  std::string err = testing::internal::GetCapturedStderr();
  const std::string key = "deepest ";
  auto at = err.find(key);
  ASSERT_NE(at, std::string::npos) << err;
  size_t bytes = std::stoul(err.substr(at + key.size()));
  EXPECT_GE(bytes, 48u * 1024) << err;
  EXPECT_LT(bytes, 96u * 1024) << err;
  EXPECT_TRUE(contains(err, "(goroutine " + std::to_string(deep_id) + ")")) << err;
  EXPECT_TRUE(contains(err, "MNP_STACK_SIZE_KIB=")) << err;
}

// A recursion with no end, in a G with a 64 KiB stack, runs into the guard
// page: the process dies with one line naming the G, its start function, the
// reservation and a reservation to try (not a silent memory corruption).
TEST(DebugDeathTest, DeepRecursionHitsTheGuardPageAndNamesTheGoroutine) {
  EXPECT_EXIT(
      {
        setenv("MNP_STACK_SIZE_KIB", "64", 1);
        mnp::run([] {
          Group g;
          g.go([] { deep(0, 1 << 30); });
          g.wait();
        });
      },
      ::testing::KilledBySignal(SIGABRT),
      "stack overflow in goroutine [0-9]+ \\(stack 64 KiB reserved, all of it used; started as "
      ".*MNP_STACK_SIZE_KIB=128");
}
