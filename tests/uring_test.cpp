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
  if (kUnderTsan) GTEST_SKIP() << "a batch's size depends on timing, which TSan stretches 5-15x";
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

// ---------------------------------------------------------------------------
// Multishot accept (poller_uring.cpp): the default on "uring", and the
// single-shot fallback forced with MNP_URING_ACCEPT=single. Each case runs in
// both modes.

class UringAccept : public BackendTest {};
// "uring" only: its accept is an io_uring operation (uring-poll accepts by
// syscall, as epoll does). Each case runs once per mode.
INSTANTIATE_TEST_SUITE_P(Backends, UringAccept, ::testing::Values(std::string("uring")),
                         backend_test_name);
constexpr const char* kAcceptModes[] = {"multishot", "single"};

// Many connects from a plain thread (blocking connect, closed with RST so
// that no TIME_WAIT piles up), every one accepted, and the accept rate
// printed: MNP_TEST_ACCEPT_N connects (default 2,000; the report used 10,000).
TEST_P(UringAccept, ManyConnectsAllAccepted) {
  int n = 2000;
  if (const char* v = std::getenv("MNP_TEST_ACCEPT_N"); v && std::atoi(v) > 0) n = std::atoi(v);
  ScopedNofile nofile(static_cast<rlim_t>(n) + 512);
  for (const char* mode : kAcceptModes) {
    ScopedEnv env("MNP_URING_ACCEPT", mode);
    run_on_backend(
        [n] {
          ListenerPtr ln = must_listen();
          ASSERT_TRUE(ln);
          const mnp::net::Addr addr = ln->addr();
          std::atomic<int> connected{0}, failed{0};
          std::atomic<bool> done{false};
          const auto t0 = now();
          std::thread client([&] {
            for (int i = 0; i < n; i++) {
              const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
              if (fd < 0 || ::connect(fd, addr.sockaddr_ptr(), addr.len()) != 0) {
                failed++;
              } else {
                connected++;
              }
              if (fd >= 0) raw_reset(fd);
            }
            done = true;
          });
          int accepted = 0;
          ln->set_deadline(now() + 30s);
          while (accepted < n) {
            auto r = ln->accept();
            if (r.err) {
              ADD_FAILURE() << "accept " << accepted << ": " << describe(r.err);
              break;
            }
            accepted++;
          }
          const double ms = ms_since(t0);
          while (!done.load()) mnp::sleep(1ms);
          client.join();
          EXPECT_EQ(failed.load(), 0);
          EXPECT_EQ(accepted, n);
          std::printf(
              "    %s accept=%s procs=%d: %d connects accepted in %.0f ms: %.0f accepts/s\n",
              mnp::backend_name(), std::getenv("MNP_URING_ACCEPT"), mnp::procs(), accepted, ms,
              accepted / (ms / 1e3));
        },
        std::chrono::seconds(60));
  }
}

// Connections the multishot accepted that nobody asked for yet wait in the
// listener's queue, holding fds; closing the listener closes them (no fd
// leak: BackendTest checks the fd table too), and their peers see the close.
TEST_P(UringAccept, CloseListenerClosesQueuedConnections) {
  for (const char* mode : kAcceptModes) {
    ScopedEnv env("MNP_URING_ACCEPT", mode);
    run_on_backend([this] {
      constexpr int kQueued = 40;
      const int fds0 = count_open_fds();
      ListenerPtr ln = must_listen();
      ASSERT_TRUE(ln);
      // One accept arms the listener's multishot.
      const int first = raw_socket();
      ASSERT_TRUE(raw_connect(first, ln->addr()));
      ConnPtr c0 = must_accept(*ln);
      ASSERT_TRUE(c0);
      std::vector<int> clients;
      for (int i = 0; i < kQueued; i++) {
        clients.push_back(raw_socket());
        ASSERT_TRUE(raw_connect(clients.back(), ln->addr()));
      }
      // Multishot: the kernel accepts them at once (the listener holds their
      // fds); single-shot: they wait in the kernel's backlog.
      const bool multishot = std::string(std::getenv("MNP_URING_ACCEPT")) == "multishot";
      const int expect_fds =
          fds0 + 1 /*listener*/ + 2 /*first, c0*/ + kQueued + (multishot ? kQueued : 0);
      EXPECT_TRUE(wait_until([&] { return count_open_fds() == expect_fds; }, 2s))
          << backend() << ": " << count_open_fds() << " fds open, expected " << expect_fds;
      // Take a few, then close the listener with the rest still queued.
      for (int i = 0; i < 5; i++) {
        ConnPtr c = must_accept(*ln);
        EXPECT_TRUE(c);
      }
      EXPECT_NO_ERR(ln->close());
      // Every queued connection was closed: its peer reads EOF (or a reset).
      int ended = 0;
      for (int fd : clients) {
        char b[8];
        const ssize_t r = raw_read_some(fd, b, sizeof b, 2s);
        if (r == 0 || (r < 0 && r != -2)) ended++;
      }
      EXPECT_EQ(ended, kQueued - 0) << "peers that saw their queued connection closed";
      for (int fd : clients) ::close(fd);
      ::close(first);
      c0.reset();
      EXPECT_EQ(count_open_fds(), fds0);
    });
  }
}

// A deadline on accept still ends it (the multishot stays armed, owned by
// the listener), and the listener keeps working after it: a connection
// that arrives later is accepted, and a deadline that expires while
// connections are queued does not lose them.
TEST_P(UringAccept, DeadlineEndsAcceptAndTheListenerStillWorks) {
  for (const char* mode : kAcceptModes) {
    ScopedEnv env("MNP_URING_ACCEPT", mode);
    run_on_backend([] {
      ListenerPtr ln = must_listen();
      ASSERT_TRUE(ln);
      for (int round = 0; round < 3; round++) {
        ln->set_deadline(now() + 30ms);
        const auto t0 = now();
        auto r = ln->accept();
        EXPECT_ERRC(r.err, Errc::timeout);
        EXPECT_LT(ms_since(t0), 30.0 + kSlackMs);
        ln->set_deadline({});
        const int c = raw_socket();
        ASSERT_TRUE(raw_connect(c, ln->addr()));
        ConnPtr s = must_accept(*ln);
        ASSERT_TRUE(s);
        EXPECT_TRUE(raw_write_all(c, "hi"));
        EXPECT_EQ(read_exact(*s, 2).data, "hi");
        ::close(c);
      }
      // Queued, then a deadline in the past: accept fails at once, the
      // connection stays queued for the next accept.
      const int c = raw_socket();
      ASSERT_TRUE(raw_connect(c, ln->addr()));
      mnp::sleep(20ms);
      ln->set_deadline(now() - 1s);
      EXPECT_ERRC(ln->accept().err, Errc::timeout);
      ln->set_deadline({});
      ConnPtr s = must_accept(*ln);
      EXPECT_TRUE(s);
      ::close(c);
    });
  }
}

// ---------------------------------------------------------------------------
// Multishot recv into a provided buffer ring (MNP_URING_RECV=multishot; off
// by default): bytes that arrived in provided buffers and did not fit the
// caller's read wait per connection for the next read.

class UringRecv : public BackendTest {
 protected:
  // The buffer ring as each case wants it (read when the ring is set up).
  void with_recv(const char* count, const char* size) {
    env_.clear();
    env_.push_back(std::make_unique<ScopedEnv>("MNP_URING_RECV", "multishot"));
    env_.push_back(std::make_unique<ScopedEnv>("MNP_URING_BUF_COUNT", count));
    env_.push_back(std::make_unique<ScopedEnv>("MNP_URING_BUF_SIZE", size));
  }
  void TearDown() override {
    env_.clear();
    BackendTest::TearDown();
  }
  std::vector<std::unique_ptr<ScopedEnv>> env_;
};
INSTANTIATE_TEST_SUITE_P(Backends, UringRecv, ::testing::Values(std::string("uring")),
                         backend_test_name);

#if defined(MNP_HAVE_URING)
bool recv_multi_on() {
  auto* u = dynamic_cast<mnp::rt::uring::UringBase*>(mnp::rt::sched.poller);
  return u && u->features().recv_multi;
}
#else
bool recv_multi_on() {
  return false;
}
#endif

// Reads of odd small sizes against large writes: every byte, in order.
// `pairs` connections at once share the buffer ring.
void small_reads_in_order(int pairs, size_t total) {
  std::vector<ConnPair> ps;
  for (int i = 0; i < pairs; i++) {
    ps.push_back(connected_pair());
    ASSERT_TRUE(ps.back());
  }
  std::atomic<int> bad{0};
  {
    Group g;
    for (auto& p : ps) {
      g.go([&p, total] {
        const std::vector<char> data = make_pattern(total);
        EXPECT_NO_ERR(p.client->write(data.data(), data.size()).err);
      });
      g.go([&p, total, &bad] {
        std::vector<char> buf(8192);
        size_t off = 0, step = 0;
        p.server->set_read_deadline(now() + 10s);
        while (off < total) {
          const size_t want = 1 + (step++ * 7919) % 5000;  // 1 .. 5000 bytes
          auto r = p.server->read(buf.data(), std::min(want, total - off));
          if (r.err) {
            ADD_FAILURE() << "read at " << off << ": " << describe(r.err);
            bad++;
            return;
          }
          if (size_t m = pattern_mismatch(buf.data(), r.n, off); m != SIZE_MAX) {
            ADD_FAILURE() << "byte " << m << " lost or out of order";
            bad++;
            return;
          }
          off += r.n;
        }
      });
    }
  }
  EXPECT_EQ(bad.load(), 0);
  for (auto& p : ps) {
    (void)p.client->close();
    (void)p.server->close();
  }
}

TEST_P(UringRecv, SmallReadsGetEveryByteInOrder) {
  with_recv("256", "16384");
  run_on_backend([] {
    if (!recv_multi_on()) GTEST_SKIP() << "multishot recv unavailable on this kernel";
    small_reads_in_order(4, 2 << 20);
  });
}

// Two 64-byte buffers for 8 connections: the ring runs dry all the time
// (-ENOBUFS without F_MORE ends the request; the data stays in the socket):
// still every byte, in order.
TEST_P(UringRecv, TinyBufferRingRunsDryAndLosesNothing) {
  with_recv("2", "64");
  run_on_backend([] {
    if (!recv_multi_on()) GTEST_SKIP() << "multishot recv unavailable on this kernel";
    StatWindow w;
    small_reads_in_order(8, 256 << 10);
    std::printf("    the ring ran dry %llu times\n",
                static_cast<unsigned long long>(w(mnp::Stat::uring_nobufs)));
    EXPECT_GT(w(mnp::Stat::uring_nobufs), 0u) << "the -ENOBUFS path was not exercised";
  });
}

// Data buffered and not read when a deadline passes stays for the next
// read; EOF comes after the last byte; closing with bytes still buffered
// gives their buffers back (a ring of 4 would be dry for good otherwise).
TEST_P(UringRecv, DeadlineEofAndCloseWithBufferedData) {
  with_recv("4", "4096");
  run_on_backend([] {
    if (!recv_multi_on()) GTEST_SKIP() << "multishot recv unavailable on this kernel";
    for (int round = 0; round < 20; round++) {
      ConnPair p = connected_pair();
      ASSERT_TRUE(p);
      const std::vector<char> data = make_pattern(3000, static_cast<size_t>(round));
      ASSERT_NO_ERR(p.client->write(data.data(), data.size()).err);
      char b[1000];
      ReadAll first = read_exact(*p.server, 10);
      ASSERT_NO_ERR(first.err);
      EXPECT_EQ(pattern_mismatch(first.data.data(), 10, static_cast<size_t>(round)), SIZE_MAX);
      if (round % 2 == 0) {
        // The rest waits through an expired deadline.
        p.server->set_read_deadline(now() - 1s);
        EXPECT_ERRC(p.server->read(b, sizeof b).err, Errc::timeout);
        p.server->set_read_deadline({});
        (void)p.client->close();
        ReadAll rest = read_exact(*p.server, 2990);
        EXPECT_NO_ERR(rest.err);
        EXPECT_EQ(pattern_mismatch(rest.data.data(), rest.data.size(), 10u + round), SIZE_MAX);
        EXPECT_ERRC(p.server->read(b, sizeof b).err, Errc::eof);
        (void)p.server->close();
      } else {
        // Closed with 2,990 bytes still buffered.
        mnp::sleep(2ms);
        EXPECT_NO_ERR(p.server->close());
        (void)p.client->close();
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Streaming: after a read that filled the caller's buffer, the uring
// backend tries the next read and write as plain non-blocking syscalls and
// falls back to an operation on EAGAIN (MNP_URING_DIRECT=0 turns it off).

class UringDirect : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, UringDirect, ::testing::Values(std::string("uring")),
                         backend_test_name);

// `pairs` echo streams of `total` bytes each, read and echoed in 16 KiB
// pieces: every byte comes back, in order. Returns the syscalls made by
// read/recv and write/send (io_uring_enter not included).
std::pair<uint64_t, uint64_t> echo_streams(int pairs, size_t total) {
  std::vector<ConnPair> ps;
  for (int i = 0; i < pairs; i++) {
    ps.push_back(connected_pair());
    if (!ps.back()) return {};
  }
  StatWindow w;
  {
    Group g;
    for (auto& p : ps) {
      p.server->set_deadline(now() + 15s);
      p.client->set_deadline(now() + 15s);
      g.go([&p, total] {  // the source
        const std::vector<char> data = make_pattern(total);
        EXPECT_NO_ERR(p.client->write(data.data(), data.size()).err);
      });
      g.go([&p] {  // the echo
        std::vector<char> buf(16384);
        for (;;) {
          auto r = p.server->read(buf.data(), buf.size());
          if (r.n) {
            EXPECT_NO_ERR(p.server->write(buf.data(), r.n).err);
          }
          if (r.err) {
            EXPECT_ERRC(r.err, Errc::eof);
            return;
          }
        }
      });
      g.go([&p, total] {  // the sink
        std::vector<char> buf(65536);
        size_t off = 0;
        while (off < total) {
          auto r = p.client->read(buf.data(), std::min(buf.size(), total - off));
          if (r.err) {
            ADD_FAILURE() << "echo read at " << off << ": " << describe(r.err);
            break;
          }
          if (size_t m = pattern_mismatch(buf.data(), r.n, off); m != SIZE_MAX) {
            ADD_FAILURE() << "byte " << off + m << " lost or out of order";
            break;
          }
          off += r.n;
        }
        EXPECT_EQ(off, total);
        (void)p.client->close_write();  // the echo sees EOF and ends
      });
    }
  }
  const std::pair<uint64_t, uint64_t> sys{w(mnp::Stat::sys_read), w(mnp::Stat::sys_write)};
  for (auto& p : ps) {
    (void)p.client->close();
    (void)p.server->close();
  }
  return sys;
}

TEST_P(UringDirect, StreamingGoesDirectAndLosesNothing) {
  ScopedEnv on("MNP_URING_DIRECT", "1");
  run_on_backend([] {
    auto [reads, writes] = echo_streams(4, 8 << 20);
    std::printf("    direct: %llu reads, %llu writes by syscall for 4 x 8 MiB echoed\n",
                static_cast<unsigned long long>(reads), static_cast<unsigned long long>(writes));
    EXPECT_GT(reads, 0u) << "no read went direct while streaming";
    EXPECT_GT(writes, 0u) << "no write went direct while streaming";
  });
}

TEST_P(UringDirect, OffMeansOperationsOnly) {
  ScopedEnv off("MNP_URING_DIRECT", "0");
  run_on_backend([] {
    auto [reads, writes] = echo_streams(4, 4 << 20);
    EXPECT_EQ(reads, 0u);
    EXPECT_EQ(writes, 0u);
  });
}

// Small messages stay on the ring: the server's reads do not fill its
// buffer, and the client's exact 4-byte reads do, but are too small to say
// that more is waiting.
TEST_P(UringDirect, PingPongStaysOnTheRing) {
  ScopedEnv on("MNP_URING_DIRECT", "1");
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    StatWindow w;
    Group g;
    g.go([&p] {
      char b[4096];
      for (int i = 0; i < 200; i++) {
        auto r = p.server->read(b, sizeof b);
        ASSERT_NO_ERR(r.err);
        ASSERT_NO_ERR(p.server->write(b, r.n).err);
      }
    });
    for (int i = 0; i < 200; i++) {
      ASSERT_NO_ERR(p.client->write("ping", 4).err);
      ReadAll r = read_exact(*p.client, 4);
      ASSERT_NO_ERR(r.err);
      ASSERT_EQ(r.data, "ping");
    }
    g.wait();
    EXPECT_EQ(w(mnp::Stat::sys_read), 0u);
    EXPECT_EQ(w(mnp::Stat::sys_write), 0u);
    (void)p.client->close();
    (void)p.server->close();
  });
}

// On the direct path an expired deadline still wins, the bytes stay for the
// next read, and EOF comes after the last one.
TEST_P(UringDirect, DeadlineAndEofOnTheDirectPath) {
  ScopedEnv on("MNP_URING_DIRECT", "1");
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    const std::vector<char> data = make_pattern(64 << 10);
    ASSERT_NO_ERR(p.client->write(data.data(), data.size()).err);
    ASSERT_NO_ERR(p.client->close_write());
    char b[8192];
    ReadAll first = read_exact(*p.server, sizeof b);  // a full 8 KiB buffer: streaming
    ASSERT_NO_ERR(first.err);
    StatWindow w;
    p.server->set_read_deadline(now() - 1s);
    EXPECT_ERRC(p.server->read(b, sizeof b).err, Errc::timeout);
    p.server->set_read_deadline({});
    ReadAll rest = read_exact(*p.server, data.size() - sizeof b);
    EXPECT_NO_ERR(rest.err);
    EXPECT_EQ(pattern_mismatch(rest.data.data(), rest.data.size(), sizeof b), SIZE_MAX);
    EXPECT_ERRC(p.server->read(b, sizeof b).err, Errc::eof);
    EXPECT_GT(w(mnp::Stat::sys_read), 0u) << "the rest was not read directly";
    (void)p.client->close();
    (void)p.server->close();
  });
}

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
