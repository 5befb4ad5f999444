// Fault injection (runtime/sys/fault.h): the plan itself, then targeted
// faults on every readiness backend. What must hold:
//   - EINTR storms on read, write, accept, connect and close are invisible;
//   - short reads and writes: a write still writes all, bytes arrive intact;
//   - EAGAIN storms park and retry, never turn into errors, never spin;
//   - ECONNRESET / EPIPE surface as Errc::reset;
//   - EMFILE / ENFILE on accept surface as Errc::too_many_files, the
//     connection stays queued, and the listener accepts it afterwards;
//   - ECONNABORTED on accept is retried; ECONNREFUSED on connect is refused;
//   - close's EINTR is not retried (the fd is gone: a retry would close a
//     reused number).
// The whole conformance suite also runs with MNP_FAULTS set (tests/meson.build,
// test "conformance with faults").
//
// The io_uring completion backend ("uring") makes its reads, writes, accepts
// and connects in the kernel, not through runtime/sys: those cases skip it by
// name; close goes through runtime/sys on every backend.
#include "sys/fault.h"

#include <string>

#include "mnp/bufio.h"
#include "testutil.h"

namespace mnptest {
namespace {

using mnp::rt::sys::FaultKind;
using mnp::rt::sys::FaultOp;
using mnp::rt::sys::FaultPlan;
using mnp::rt::sys::FaultRule;
using mnp::rt::sys::ScopedFaults;

// --- the plan ---------------------------------------------------------------

// Calls fault_hit as a wrapper would, n times; "x" for a fault, "." for a pass.
std::string pattern(const FaultPlan& plan, FaultOp op, int n, int fd = 3) {
  ScopedFaults on(plan);
  std::string s;
  for (int i = 0; i < n; i++) {
    size_t len = 100;
    const bool failed = mnp::rt::sys::fault_hit(op, fd, &len);
    s += failed ? 'x' : (len < 100 ? 's' : '.');
  }
  return s;
}

TEST(FaultPlan, CounterRateAfterAndMaxAreDeterministic) {
  {
    FaultPlan p;
    p.on(FaultOp::read, FaultKind::eintr, 1, 3);
    EXPECT_EQ(pattern(p, FaultOp::read, 9), "x..x..x..");
    EXPECT_EQ(p.calls(0), 9u);
    EXPECT_EQ(p.fired(0), 3u);
  }
  {
    FaultPlan p;
    p.on(FaultOp::read, FaultKind::eintr, 2, 3, /*after=*/2, /*max=*/3);
    EXPECT_EQ(pattern(p, FaultOp::read, 12), "..xx.x......");
  }
  {
    FaultPlan p;  // other ops and other fds are not counted
    p.on(FaultOp::accept, FaultKind::emfile, 1, 1, 0, UINT64_MAX, /*fd=*/7);
    EXPECT_EQ(pattern(p, FaultOp::read, 3, 7), "...");
    EXPECT_EQ(pattern(p, FaultOp::accept, 3, 8), "...");
    EXPECT_EQ(pattern(p, FaultOp::accept, 3, 7), "xxx");
    EXPECT_EQ(p.calls(0), 3u);
  }
  {
    FaultPlan p;  // a short read: the count is cut to 1..n-1, the call goes ahead
    p.on(FaultOp::read, FaultKind::short_io, 1, 2);
    EXPECT_EQ(pattern(p, FaultOp::read, 4), "s.s.");
  }
  {
    FaultPlan p;  // over=: a write of 100 bytes is cut only if over < 100
    FaultRule r;
    r.op = FaultOp::write;
    r.kind = FaultKind::short_io;
    r.over = 99;
    ASSERT_TRUE(p.add(r));
    r.over = 100;
    ASSERT_TRUE(p.add(r));
    EXPECT_EQ(pattern(p, FaultOp::write, 2), "ss");
    EXPECT_EQ(p.fired(0), 2u);
    EXPECT_EQ(p.fired(1), 0u);
  }
}

TEST(FaultPlan, SeededPlansRepeatAndKeepTheirRate) {
  auto run = [](uint64_t seed) {
    FaultPlan p;
    p.set_seed(seed);
    p.on(FaultOp::write, FaultKind::eagain, 1, 4);
    std::string s = pattern(p, FaultOp::write, 4000);
    return std::make_pair(s, p.fired(0));
  };
  const auto a = run(42), b = run(42), c = run(43);
  EXPECT_EQ(a.first, b.first) << "the same seed gave another sequence";
  EXPECT_NE(a.first, c.first);
  EXPECT_NE(a.first.substr(0, 40), std::string("x...x...x...x...x...x...x...x...x...x..."));
  EXPECT_GT(a.second, 850u);
  EXPECT_LT(a.second, 1150u);
}

TEST(FaultPlan, ParsesTheEnvironmentSyntax) {
  FaultPlan p;
  std::string why;
  ASSERT_TRUE(
      p.parse("read:eintr:1/3, write:short:1/2,accept:emfile:1/10:after=5:max=2,"
              "close:eintr:1/4:fd=9,write:short:1/4:over=256,seed=7",
              &why))
      << why;
  ASSERT_EQ(p.size(), 5);
  EXPECT_EQ(p.seed(), 7u);
  EXPECT_EQ(FaultPlan::rule_text(p.rule(0)), "read:eintr:1/3");
  EXPECT_EQ(FaultPlan::rule_text(p.rule(1)), "write:short:1/2");
  EXPECT_EQ(FaultPlan::rule_text(p.rule(2)), "accept:emfile:1/10:after=5:max=2");
  EXPECT_EQ(FaultPlan::rule_text(p.rule(3)), "close:eintr:1/4:fd=9");
  EXPECT_EQ(FaultPlan::rule_text(p.rule(4)), "write:short:1/4:over=256");

  for (const char* bad : {
           "read:eintr",              // no rate
           "read:eintr:3/2",          // N > D
           "read:eintr:0/2",          // N = 0
           "read:emfile:1/2",         // read cannot have EMFILE
           "close:reset:1/2",         // close cannot have ECONNRESET
           "accept:eagain:1/1",       // retried for ever
           "write:eintr:5/5",         // retried for ever
           "frob:eintr:1/2",          // unknown op
           "read:frob:1/2",           // unknown fault
           "read:eintr:1/2:after=x",  // bad number
           "read:eintr:1/2:color=3",  // unknown field
           "read:eintr:1/2:over=9",   // over= is for short only
           "seed=abc",
       }) {
    FaultPlan q;
    std::string e;
    EXPECT_FALSE(q.parse(bad, &e)) << bad << " was accepted";
    EXPECT_FALSE(e.empty()) << bad;
  }
  FaultPlan q;  // retried faults are fine with a max
  EXPECT_TRUE(q.parse("accept:eagain:1/1:max=3", &why)) << why;
}

// An invalid MNP_FAULTS makes mnp::run refuse to start (exit status 2) and say
// why: a typo must not silently run the suite without faults.
TEST(FaultPlan, InvalidEnvironmentSpecStopsRun) {
  EXPECT_EXIT(
      {
        ::setenv("MNP_FAULTS", "read:emfile:1/2", 1);
        const int rc = mnp::run([] {});
        std::_Exit(rc);
      },
      ::testing::ExitedWithCode(2), "MNP_FAULTS: read:emfile:1/2: read cannot have emfile");
}

// A valid one is announced, injects, and reports at exit.
TEST(FaultPlan, EnvironmentSpecInjectsAndReports) {
  EXPECT_EXIT(
      {
        ::setenv("MNP_FAULTS", "read:eintr:1/2,write:short:1/2", 1);
        std::string got;
        const int rc = mnp::run([&] {
          ConnPair p = connected_pair();
          if (!p) return;
          const std::vector<char> data = make_pattern(100000);
          Group g;
          g.go([&] { (void)p.client->write(data.data(), data.size()); });
          got = read_exact(*p.server, data.size()).data;
        });
        // exit, not _Exit: the report is printed by an atexit handler.
        std::exit(rc == 0 && got.size() == 100000 &&
                          pattern_mismatch(got.data(), got.size(), 0) == SIZE_MAX
                      ? 0
                      : 3);
      },
      ::testing::ExitedWithCode(0),
      "fault injection on \\(MNP_FAULTS\\): read:eintr:1/2,write:short:1/2.*"
      "MNP_FAULTS: read:eintr:1/2 fired [1-9]");
}

// --- on the backends --------------------------------------------------------

class Faults : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped()) return;
    if (GetParam() == "uring" && !close_only_)
      GTEST_SKIP() << "uring does its I/O in the kernel (io_uring), not through runtime/sys: "
                      "no syscall to make fail";
  }
  bool close_only_ = false;
};
INSTANTIATE_TEST_SUITE_P(Backends, Faults, ::testing::ValuesIn(all_backends()), backend_test_name);

// A client writes `size` bytes of the pattern in one write; the server echoes
// them back through one G with a small buffer; both directions arrive intact.
void echo_round_trip(size_t size, mnp::Error* werr, mnp::Error* eerr, ReadAll* back) {
  ListenerPtr ln = must_listen();
  ASSERT_TRUE(ln);
  ConnPtr server;
  Group g;
  g.go([&] {
    auto r = ln->accept();
    if (r.err) {
      *eerr = r.err;
      return;
    }
    server = std::move(r.value);
    char buf[1500];
    size_t total = 0;
    while (total < size) {
      const auto rr = server->read(buf, sizeof buf);
      if (rr.n) {
        const auto w = server->write(buf, rr.n);
        if (w.err) {
          *eerr = w.err;
          return;
        }
        total += rr.n;
      }
      if (rr.err) {
        *eerr = rr.err;
        return;
      }
    }
  });
  ConnPtr client = must_dial(ln->addr().to_string());
  ASSERT_TRUE(client);
  const std::vector<char> data = make_pattern(size);
  g.go([&] {
    const auto w = client->write(data.data(), data.size());
    if (w.err || w.n != size) *werr = w.err ? w.err : mnp::Error(Errc::sys, "short write");
  });
  *back = read_exact(*client, size);
  g.wait();
}

TEST_P(Faults, EintrStormsAreInvisible) {
  FaultPlan plan;
  plan.on(FaultOp::read, FaultKind::eintr, 9, 10)
      .on(FaultOp::write, FaultKind::eintr, 9, 10)
      .on(FaultOp::accept, FaultKind::eintr, 9, 10)
      .on(FaultOp::connect, FaultKind::eintr, 9, 10);
  ScopedFaults on(plan);
  run_on_backend([] {
    mnp::Error werr, eerr;
    ReadAll back;
    echo_round_trip(1 << 20, &werr, &eerr, &back);
    EXPECT_NO_ERR(werr);
    EXPECT_NO_ERR(eerr);
    EXPECT_NO_ERR(back.err);
    EXPECT_EQ(back.data.size(), 1u << 20);
    EXPECT_EQ(pattern_mismatch(back.data.data(), back.data.size(), 0), SIZE_MAX);
  });
  EXPECT_GT(plan.fired_total(FaultOp::read), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::write), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::accept), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::connect), 0u);
}

TEST_P(Faults, ShortReadsAndWritesStillWriteAllAndArriveIntact) {
  FaultPlan plan;
  plan.on(FaultOp::write, FaultKind::short_io, 1, 1).on(FaultOp::read, FaultKind::short_io, 1, 1);
  ScopedFaults on(plan);
  run_on_backend([&] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    constexpr size_t kSize = 256 << 10;
    const std::vector<char> data = make_pattern(kSize);
    mnp::IOResult w;
    mnptest::StatWindow stats;
    Group g;
    g.go([&] { w = p.client->write(data.data(), data.size()); });
    const ReadAll got = read_exact(*p.server, kSize);
    g.wait();
    EXPECT_NO_ERR(w.err);
    EXPECT_EQ(w.n, kSize) << "one write call must write all, however short each send(2) is";
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data.size(), kSize);
    EXPECT_EQ(pattern_mismatch(got.data.data(), got.data.size(), 0), SIZE_MAX);
    EXPECT_GE(stats(mnp::Stat::sys_write), 2u) << "the write was not cut into pieces";
  });
  EXPECT_GT(plan.fired_total(FaultOp::write), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::read), 0u);
}

// Lines through bufio over a Conn whose reads are cut to 1..n-1 bytes.
TEST_P(Faults, BufioLinesSurviveShortReads) {
  FaultPlan plan;
  plan.on(FaultOp::read, FaultKind::short_io, 1, 1).on(FaultOp::write, FaultKind::short_io, 1, 2);
  ScopedFaults on(plan);
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    constexpr int kLines = 2000;
    Group g;
    g.go([&] {
      mnp::bufio::Writer out(*p.client, 512);
      for (int i = 0; i < kLines; i++) {
        if (out.write("line " + std::to_string(i) + " " + std::string(i % 97, 'x') + "\r\n").err)
          return;
      }
      EXPECT_NO_ERR(out.flush());
      p.client->close_write();
    });
    mnp::bufio::Reader in(*p.server, 64, 256);
    int n = 0;
    for (;; n++) {
      auto [line, err] = in.read_line();
      if (err) {
        EXPECT_ERRC(err, Errc::eof);
        break;
      }
      EXPECT_EQ(line, "line " + std::to_string(n) + " " + std::string(n % 97, 'x'));
    }
    EXPECT_EQ(n, kLines);
  });
}

// EAGAIN (after a spurious wake-up) on 4 calls in 5: the data still flows,
// nothing fails; and a reader with no data does not spin once the storm has
// passed: it parks.
TEST_P(Faults, EagainStormsParkAndRetryNeverFail) {
  FaultPlan plan;
  plan.on(FaultOp::read, FaultKind::eagain, 4, 5)
      .on(FaultOp::write, FaultKind::eagain, 4, 5)
      .on(FaultOp::accept, FaultKind::eagain, 4, 5);
  ScopedFaults on(plan);
  run_on_backend([] {
    mnp::Error werr, eerr;
    ReadAll back;
    echo_round_trip(512 << 10, &werr, &eerr, &back);
    EXPECT_NO_ERR(werr);
    EXPECT_NO_ERR(eerr);
    EXPECT_NO_ERR(back.err);
    EXPECT_EQ(pattern_mismatch(back.data.data(), back.data.size(), 0), SIZE_MAX);

    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    std::atomic<bool> returned{false};
    ReadAll got;
    Group g;
    g.go([&] {
      got = read_exact(*p.server, 5);
      returned = true;
    });
    mnp::sleep(20ms);
    StatWindow stats;
    const double cpu0 = cpu_ms();
    mnp::sleep(300ms);
    const double cpu = cpu_ms() - cpu0;
    EXPECT_FALSE(returned);
    EXPECT_LE(stats(mnp::Stat::sys_read), 1u) << "a parked reader kept calling read(2)";
    EXPECT_LT(cpu, 100.0) << "ms of CPU over 300 ms with the only reader parked";
    EXPECT_NO_ERR(p.client->write("hello").err);
    g.wait();
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "hello");
  });
  EXPECT_GT(plan.fired_total(FaultOp::read), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::write), 0u);
  EXPECT_GT(plan.fired_total(FaultOp::accept), 0u);
}

TEST_P(Faults, ConnResetAndBrokenPipeSurfaceAsReset) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    const int sfd = p.server->sysfd();
    {
      FaultPlan plan;
      plan.on(FaultOp::read, FaultKind::reset, 1, 1, 0, 1, sfd);
      ScopedFaults on(plan);
      ASSERT_NO_ERR(p.client->write("abc").err);
      char buf[8];
      const auto r = p.server->read(buf, sizeof buf);
      EXPECT_EQ(r.n, 0u);
      EXPECT_ERRC(r.err, Errc::reset);
      EXPECT_EQ(r.err.sys_errno(), ECONNRESET);
      EXPECT_EQ(plan.fired(0), 1u);
    }
    {
      FaultPlan plan;  // a reset after part of a write went out: n says how much
      plan.on(FaultOp::write, FaultKind::short_io, 1, 1, 0, 1, sfd)
          .on(FaultOp::write, FaultKind::reset, 1, 1, 1, 1, sfd);
      ScopedFaults on(plan);
      const auto w = p.server->write("0123456789", 10);
      EXPECT_ERRC(w.err, Errc::reset);
      EXPECT_GE(w.n, 1u);
      EXPECT_LT(w.n, 10u);
    }
    {
      FaultPlan plan;
      plan.on(FaultOp::write, FaultKind::pipe, 1, 1, 0, 1, sfd);
      ScopedFaults on(plan);
      const auto w = p.server->write("x", 1);
      EXPECT_ERRC(w.err, Errc::reset);
      EXPECT_EQ(w.err.sys_errno(), EPIPE);
    }
    // The faults were one-offs: the connection itself is fine.
    ASSERT_NO_ERR(p.server->write("ok").err);
    // What the client receives: the part of the cut write, then "ok".
    p.client->set_read_deadline(now() + 2s);
    char buf[32];
    std::string got;
    while (got.find("ok") == std::string::npos) {
      const auto r = p.client->read(buf, sizeof buf);
      if (r.err) {
        ADD_FAILURE() << describe(r.err);
        break;
      }
      got.append(buf, r.n);
    }
    EXPECT_EQ(got.substr(got.size() - 2), "ok");
    EXPECT_EQ(std::string("0123456789").substr(0, got.size() - 2), got.substr(0, got.size() - 2));
    const ReadAll abc = read_exact(*p.server, 3);
    EXPECT_EQ(abc.data, "abc") << "the injected reset consumed nothing";
  });
}

// EMFILE (and ENFILE) on accept: Errc::too_many_files at once, the connection
// stays queued, and the next accept (faults over) returns that connection.
TEST_P(Faults, AcceptEmfileSurfacesAndListenerRecovers) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    FaultPlan plan;
    plan.on(FaultOp::accept, FaultKind::emfile, 1, 1, 0, 3, ln->sysfd())
        .on(FaultOp::accept, FaultKind::nfile, 1, 1, 0, 1, ln->sysfd());
    ScopedFaults on(plan);
    ConnPtr c = must_dial(ln->addr().to_string());
    ASSERT_TRUE(c);
    ASSERT_NO_ERR(c->write("queued").err);
    for (int i = 0; i < 4; i++) {
      const auto t0 = now();
      auto r = ln->accept();
      EXPECT_ERRC(r.err, Errc::too_many_files) << " (accept #" << i << ")";
      EXPECT_EQ(r.err.sys_errno(), i < 3 ? EMFILE : ENFILE);
      EXPECT_FALSE(r.value);
      EXPECT_LT(ms_since(t0), kSlackMs) << "accept waited instead of reporting at once";
    }
    ln->set_deadline(now() + 2s);
    ConnPtr s = must_accept(*ln);
    ASSERT_TRUE(s);
    const ReadAll got = read_exact(*s, 6);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "queued");
    EXPECT_EQ(plan.fired_total(), 4u);
  });
}

// A server loop that backs off on too_many_files (as the echo demo does)
// serves every client while one accept in three fails with EMFILE.
TEST_P(Faults, AcceptLoopWithBackoffServesEveryoneUnderEmfile) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    FaultPlan plan;
    plan.on(FaultOp::accept, FaultKind::emfile, 1, 3, 0, UINT64_MAX, ln->sysfd());
    ScopedFaults on(plan);
    constexpr int kClients = 50;
    std::atomic<int> served{0}, emfiles{0};
    Group servers;
    servers.go([&] {
      auto backoff = 1ms;
      while (served.load() < kClients) {
        auto r = ln->accept();
        if (r.err == Errc::too_many_files) {
          emfiles++;
          mnp::sleep(backoff);
          backoff = std::min<std::chrono::milliseconds>(backoff * 2, 20ms);
          continue;
        }
        if (r.err) return;
        backoff = 1ms;
        served++;
        std::shared_ptr<mnp::net::Conn> c(std::move(r.value));
        servers.go([c] {
          char buf[64];
          for (;;) {
            auto rr = c->read(buf, sizeof buf);
            if (rr.n && c->write(buf, rr.n).err) return;
            if (rr.err) return;
          }
        });
      }
    });
    std::atomic<int> ok{0};
    {
      Group clients;
      for (int i = 0; i < kClients; i++) {
        clients.go([&, i] {
          ConnPtr c = must_dial(ln->addr().to_string());
          if (!c) return;
          const std::string msg = "client " + std::to_string(i);
          if (c->write(msg).err) return;
          const ReadAll back = read_exact(*c, msg.size());
          if (!back.err && back.data == msg) ok++;
        });
      }
    }
    EXPECT_EQ(ok.load(), kClients);
    EXPECT_GT(emfiles.load(), 0);
    ln->close();
  });
}

TEST_P(Faults, AcceptAbortedIsRetriedAndConnectRefusedIsRefused) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    {
      FaultPlan plan;
      plan.on(FaultOp::accept, FaultKind::aborted, 1, 1, 0, 5, ln->sysfd());
      ScopedFaults on(plan);
      ConnPtr c = must_dial(ln->addr().to_string());
      ASSERT_TRUE(c);
      ln->set_deadline(now() + 2s);
      ConnPtr s = must_accept(*ln);
      EXPECT_TRUE(s) << "ECONNABORTED was not retried";
      EXPECT_EQ(plan.fired(0), 5u);
    }
    {
      FaultPlan plan;
      plan.on(FaultOp::connect, FaultKind::refused, 1, 1, 0, 1);
      ScopedFaults on(plan);
      auto r = mnp::net::dial("tcp", ln->addr().to_string());
      EXPECT_ERRC(r.err, Errc::refused);
      EXPECT_FALSE(r.value);
    }
  });
}

class FaultsClose : public Faults {
 protected:
  void SetUp() override {
    close_only_ = true;
    Faults::SetUp();
  }
};
INSTANTIATE_TEST_SUITE_P(Backends, FaultsClose, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// close(2) returning EINTR has closed the fd all the same (Linux): the runtime
// must not close it again. Each close here is followed at once by a new fd
// that takes the freed number; a second close would close that one.
TEST_P(FaultsClose, CloseEintrIsNotRetried) {
  FaultPlan plan;
  plan.on(FaultOp::close, FaultKind::eintr, 1, 1);
  ScopedFaults on(plan);
  run_on_backend([] {
    for (int i = 0; i < 50; i++) {
      ConnPair p = connected_pair();
      ASSERT_TRUE(p);
      const int fd = p.server->sysfd();
      StatWindow stats;
      EXPECT_NO_ERR(p.server->close());
      EXPECT_EQ(stats(mnp::Stat::sys_close), 1u) << "close(2) retried after EINTR";
      const int reused = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      ASSERT_GE(reused, 0);
      mnp::sleep(1ms);
      EXPECT_TRUE(fd_is_open(reused)) << "fd " << reused << " (was " << fd << ") closed behind us";
      ::close(reused);
    }
  });
  EXPECT_GE(plan.fired(0), 100u);
}

}  // namespace
}  // namespace mnptest
