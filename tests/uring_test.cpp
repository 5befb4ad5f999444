// The io_uring backends' own tests (the conformance suite covers the shared
// behaviour): late completions racing deadlines and close, batching, CQ
// overflow and SQ-full, setup fallbacks, and the one-line "unavailable"
// reason. Each backend case runs on every backend where it means something
// (epoll too, as a reference) and skips by name where io_uring is missing.
#include <sys/utsname.h>

#include <map>

#include "testutil.h"

#if defined(MNP_HAVE_URING)
#include "netpoll/poller.h"
#include "netpoll/uring_ring.h"
#include "sched/sched.h"
#endif

namespace mnptest {
namespace {

// Sets an environment variable for one scope (the io_uring test hooks are
// read when a ring is set up).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      setenv(name_, old_.c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

std::vector<std::string> uring_backends() {
  return {"uring-poll", "uring"};
}

// ---------------------------------------------------------------------------
// Late completions: close and deadlines racing in-flight recv and send.

class UringLate : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, UringLate, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// 1,000 connections, each with a G parked in read and a G parked in write (its
// peer never reads, the buffers are small), and a peer G that acts at a
// random moment against a deadline or a close fired at another random
// moment: the completion and the cancel race. Every G must end with data or
// with the error of what stopped it, and a read buffer must never change
// after its read returned (the kernel writing into it late would be a
// use-after-free of the G's memory: the canary check below sees it, ASan
// sees the runtime's side).
TEST_P(UringLate, CloseAndDeadlineRaceInFlightRecvAndSend) {
  run_on_backend(
      [] {
        constexpr int kConns = 1000;
        constexpr size_t kBuf = 512;
        constexpr size_t kWrite = 1 << 20;
        constexpr auto kSettle = 100ms;  // for 3,000 Gs to start and park (ASan: slow)
        ListenerPtr ln = must_listen();
        ASSERT_TRUE(ln);
        std::vector<ConnPtr> ours(kConns), peers(kConns);
        {
          Group g;
          g.go([&] {
            for (int i = 0; i < kConns; i++) ours[static_cast<size_t>(i)] = must_accept(*ln);
          });
          for (int i = 0; i < kConns; i++)
            peers[static_cast<size_t>(i)] = must_dial(ln->addr().to_string());
        }
        ln->close();
        for (int i = 0; i < kConns; i++) {
          ASSERT_TRUE(ours[static_cast<size_t>(i)] && peers[static_cast<size_t>(i)]);
          EXPECT_NO_ERR(ours[static_cast<size_t>(i)]->set_write_buffer(4 << 10));
          EXPECT_NO_ERR(peers[static_cast<size_t>(i)]->set_read_buffer(4 << 10));
        }
        const std::vector<char> wdata(kWrite, 'w');
        std::vector<std::unique_ptr<char[]>> rbuf(kConns);
        std::vector<mnp::IOResult> rres(kConns), wres(kConns);
        constexpr char kCanary = static_cast<char>(0xA5);
        std::atomic<int> bad_peer{0};
        {
          Group g;
          for (int i = 0; i < kConns; i++) {
            const size_t k = static_cast<size_t>(i);
            rbuf[k] = std::make_unique<char[]>(kBuf);
            mnp::net::Conn* c = ours[k].get();
            mnp::net::Conn* peer = peers[k].get();
            const int kind = i % 4;
            const auto t_fire = std::chrono::microseconds((i * 37) % 3000);
            const auto t_peer = std::chrono::microseconds((i * 53) % 3000);
            g.go([&, k, c] {  // parked in recv
              rres[k] = c->read(rbuf[k].get(), kBuf);
              // From here on the buffer is ours alone: mark it.
              std::memset(rbuf[k].get(), kCanary, kBuf);
            });
            g.go([&, k, c] {  // parked in send: the peer does not read (yet)
              wres[k] = c->write(wdata.data(), wdata.size());
            });
            g.go([&, k, c, peer, kind, t_fire, t_peer] {
              // Once every reader and writer is parked, start both clocks:
              // the deadline (or close) at t_fire, the peer's action at t_peer.
              mnp::sleep(kSettle);
              const auto t0 = now();
              if (kind == 0) c->set_read_deadline(t0 + t_fire);
              if (kind == 2) c->set_write_deadline(t0 + t_fire);
              if (kind == 1 || kind == 3) {
                g.go([c, t_fire] {
                  mnp::sleep(t_fire);
                  (void)c->close();
                });
              }
              mnp::sleep(t_peer);
              if (kind == 0 || kind == 1) {
                // Data for the reader, racing its deadline (0) or its close (1).
                auto r = peer->write("late data");
                if (r.err && !(r.err == Errc::reset)) bad_peer++;
              } else {
                // Drain, racing the writer's deadline (2) or its close (3).
                std::vector<char> sink(64 << 10);
                peer->set_read_deadline(now() + 200ms);
                for (size_t got = 0; got < kWrite;) {
                  auto r = peer->read(sink.data(), sink.size());
                  if (r.err) break;
                  got += r.n;
                }
              }
            });
          }
          // Readers of kinds 2 and 3 and writers of kinds 0 and 1 have
          // nothing racing them: end them with a deadline once the races
          // are over.
          mnp::sleep(kSettle + 100ms);
          for (int i = 0; i < kConns; i++) ours[static_cast<size_t>(i)]->set_deadline(now() - 1s);
        }
        EXPECT_EQ(bad_peer.load(), 0);

        // Late data for every connection still open: a recv that outlived its
        // G would now write into a buffer that is no longer its own.
        for (int i = 0; i < kConns; i++) (void)peers[static_cast<size_t>(i)]->write("LATE!LATE!");
        mnp::sleep(30ms);

        std::map<std::string, int> outcomes;
        int canary_broken = 0;
        for (int i = 0; i < kConns; i++) {
          const size_t k = static_cast<size_t>(i);
          for (size_t b = 0; b < kBuf; b++)
            if (rbuf[k][b] != kCanary) {
              canary_broken++;
              break;
            }
          const mnp::IOResult& r = rres[k];
          if (!r.err)
            EXPECT_GT(r.n, 0u);
          else
            EXPECT_TRUE(r.err == Errc::timeout || r.err == Errc::closed)
                << "conn " << i << " read: " << describe(r.err);
          const mnp::IOResult& w = wres[k];
          if (w.err)
            EXPECT_TRUE(w.err == Errc::timeout || w.err == Errc::closed || w.err == Errc::reset)
                << "conn " << i << " write: " << describe(w.err);
          else
            EXPECT_EQ(w.n, kWrite);
          outcomes[std::string("read ") + (r.err ? errc_name(r.err.kind()) : "data")]++;
          outcomes[std::string("write ") + (w.err ? errc_name(w.err.kind()) : "all")]++;
        }
        EXPECT_EQ(canary_broken, 0) << "read buffers written after their read returned";
        std::string summary;
        for (auto& [k, v] : outcomes) summary += k + "=" + std::to_string(v) + " ";
        std::printf("    outcomes on %s: %s\n", mnp::backend_name(), summary.c_str());
        for (auto& c : ours) (void)c->close();
        for (auto& c : peers) (void)c->close();
      },
      std::chrono::seconds(60));
}

// Closing a listener and listening again on its port works at once: a
// multishot poll (or accept) left armed would hold the socket, still
// listening, after close(2) (liburing #568).
TEST_P(UringLate, ClosedListenerReleasesItsPort) {
  run_on_backend([] {
    for (int i = 0; i < 20; i++) {
      ListenerPtr ln = must_listen();
      ASSERT_TRUE(ln);
      const std::string addr = ln->addr().to_string();
      ConnPtr c = must_dial(addr);
      ConnPtr s = must_accept(*ln);
      ASSERT_TRUE(c && s);
      EXPECT_NO_ERR(ln->close());
      auto again = mnp::net::listen("tcp", addr);
      EXPECT_NO_ERR(again.err) << "relisten on " << addr;
      // The accepted connection's close reaches the peer (FIN) promptly too.
      EXPECT_NO_ERR(s->close());
      c->set_read_deadline(now() + 2s);
      char b[4];
      EXPECT_ERRC(c->read(b, sizeof b).err, Errc::eof);
    }
  });
}

// ---------------------------------------------------------------------------
// io_uring only

class Uring : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, Uring, ::testing::ValuesIn(uring_backends()), backend_test_name);

// Submissions are batched: a burst of operations from many Gs costs far fewer
// io_uring_enter calls than operations.
TEST_P(Uring, SubmissionsAreBatched) {
  run_on_backend([this] {
    constexpr int kPairs = 200;
    std::vector<ConnPair> pairs;
    for (int i = 0; i < kPairs; i++) {
      pairs.push_back(connected_pair());
      ASSERT_TRUE(pairs.back());
    }
    mnp::sleep(10ms);
    StatWindow w;
    {
      Group g;
      for (auto& p : pairs) {
        g.go([&p] { (void)read_exact(*p.server, 5); });
      }
      for (auto& p : pairs) g.go([&p] { (void)p.client->write("hello"); });
    }
    const uint64_t enters = w(mnp::Stat::sys_uring_enter);
    // uring: 200 recvs + 200 sends (+ the EAGAIN-free cases); uring-poll:
    // 200 reads and writes by syscall, and enters only to wait.
    std::printf("    %s procs=%d: %llu io_uring_enter for %d reads + %d writes\n", backend(),
                mnp::procs(), static_cast<unsigned long long>(enters), kPairs, kPairs);
    EXPECT_LT(enters, static_cast<uint64_t>(kPairs)) << "one enter per operation: not batched";
    for (auto& p : pairs) {
      (void)p.client->close();
      (void)p.server->close();
    }
  });
}

// A tiny SQ and CQ: opens fill the SQ (it is submitted when full), and 64
// connections becoming ready at once overflow the CQ, which ends multishot
// polls (their last CQE lacks F_MORE): they must be re-armed, and no
// completion may be lost (FEAT_NODROP).
TEST_P(Uring, SurvivesSqFullAndCqOverflow) {
  ScopedEnv sq("MNP_URING_SQ_ENTRIES", "4");
  ScopedEnv cq("MNP_URING_CQ_ENTRIES", "8");
  run_on_backend([] {
    constexpr int kPairs = 64;
    std::vector<ConnPair> pairs;
    for (int i = 0; i < kPairs; i++) {
      pairs.push_back(connected_pair());
      ASSERT_TRUE(pairs.back());
    }
    for (int round = 0; round < 3; round++) {
      std::atomic<int> got{0};
      Group g;
      for (auto& p : pairs) {
        g.go([&p, &got] {
          p.server->set_read_deadline(now() + 5s);
          ReadAll r = read_exact(*p.server, 4);
          if (!r.err && r.data == "ping") got++;
        });
      }
      mnp::sleep(20ms);  // every reader parked
      for (auto& p : pairs) EXPECT_NO_ERR(p.client->write("ping").err);
      g.wait();
      EXPECT_EQ(got.load(), kPairs) << "round " << round;
    }
    for (auto& p : pairs) {
      (void)p.client->close();
      (void)p.server->close();
    }
  });
}

// The runtime can be started and stopped many times on one thread, with
// the ring fd registered (MNP_URING_REGRING=1): more runs than the kernel's
// 16 registered ring fds per thread, so each run must drop its own.
TEST_P(Uring, ManyRunsOnOneThread) {
  ScopedEnv reg("MNP_URING_REGRING", "1");
  for (int i = 0; i < 40; i++) {
    run_on_backend([] {
      ConnPair p = connected_pair();
      ASSERT_TRUE(p);
      EXPECT_NO_ERR(p.client->write("x").err);
      char b[1];
      EXPECT_EQ(p.server->read(b, 1).n, 1u);
    });
  }
}

#if defined(MNP_HAVE_URING)
std::string ring_description() {
  auto* u = dynamic_cast<mnp::rt::uring::UringBase*>(mnp::rt::sched.poller);
  return u ? u->describe() : std::string("(not an io_uring poller)");
}

bool kernel_at_least(int major, int minor) {
  utsname u{};
  if (uname(&u) != 0) return false;
  int ma = 0, mi = 0;
  if (std::sscanf(u.release, "%d.%d", &ma, &mi) != 2) return false;
  return ma > major || (ma == major && mi >= minor);
}

// What the ring was set up with, for the log; on a kernel that has them,
// the probed features are on.
TEST_P(Uring, FeaturesAreProbed) {
  run_on_backend([] {
    const std::string d = ring_description();
    std::printf("    %s\n", d.c_str());
    const char* rings = std::getenv("MNP_URING_RINGS");
    if (kernel_at_least(5, 19) && !(rings && std::string(rings) == "per-p")) {
      EXPECT_NE(d.find("SUBMIT_ALL"), std::string::npos) << d;
      EXPECT_NE(d.find("COOP_TASKRUN"), std::string::npos) << d;
    }
  });
}

// A setup flag the kernel rejects (EINVAL) is dropped, one at a time, and
// the backend still works.
TEST_P(Uring, RejectedSetupFlagsFallBackOneAtATime) {
  ScopedEnv reject("MNP_URING_REJECT_FLAGS",
                   std::to_string(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL).c_str());
  run_on_backend([] {
    const std::string d = ring_description();
    EXPECT_EQ(d.find("COOP_TASKRUN"), std::string::npos) << d;
    EXPECT_EQ(d.find("SUBMIT_ALL"), std::string::npos) << d;
    EXPECT_NE(d.find("CQSIZE"), std::string::npos) << d;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    EXPECT_NO_ERR(p.client->write("x").err);
    char b[1];
    EXPECT_EQ(p.server->read(b, 1).n, 1u);
  });
}
#endif

// io_uring refused (sysctl, seccomp, old kernel, memlock): the backend is
// unavailable with a one-line reason that names the cause, and a test skips
// it by name. (MNP_URING_FAIL_SETUP makes setup fail with that errno.)
TEST(UringUnavailable, ReasonNamesTheCause) {
  struct Case {
    const char* err;
    const char* expect;
  } cases[] = {
      {"EPERM", "kernel.io_uring_disabled"},
      {"ENOSYS", "ENOSYS"},
      {"ENOMEM", "RLIMIT_MEMLOCK"},
  };
  for (const Case& c : cases) {
    ScopedEnv fail("MNP_URING_FAIL_SETUP", c.err);
    for (const char* b : {"uring", "uring-poll"}) {
      const std::string why = mnp::backend_unavailable_reason(b);
#if defined(MNP_HAVE_URING)
      EXPECT_NE(why.find(c.expect), std::string::npos) << b << ": " << why;
      EXPECT_EQ(why.find('\n'), std::string::npos) << "one line: " << why;
#else
      EXPECT_FALSE(why.empty());
#endif
    }
  }
  // And mnp::run refuses to start rather than fall back silently.
  ScopedEnv fail("MNP_URING_FAIL_SETUP", "EPERM");
  mnp::Options o;
  o.backend = "uring";
  EXPECT_NE(mnp::run([] {}, o), 0);
}

}  // namespace
}  // namespace mnptest
