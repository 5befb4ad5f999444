// Conformance: bug classes other runtimes shipped (CONFORMANCE.md 31–35),
// on every backend. Each test would have caught the bug it names.
#include "testutil.h"

namespace mnptest {
namespace {

class BugClass : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, BugClass, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// 31. The peer's shutdown(SHUT_WR) (RDHUP, not a full hang-up — mio PR#933):
// a parked read wakes with EOF and later reads return EOF; a write parked on
// the full buffer is not woken with an error, nothing spins while it waits,
// and all its bytes reach the peer once it reads.
TEST_P(BugClass, PeerHalfCloseIsNotAHangUp) {
  run_on_backend([] {
    constexpr size_t kSize = 2 << 20;
    RawListener rl(8192);
    ASSERT_TRUE(rl.ok());
    ConnPtr c = must_dial(rl.addr());
    ASSERT_TRUE(c);
    EXPECT_NO_ERR(c->set_write_buffer(16 << 10));
    const int peer = rl.accept();
    ASSERT_GE(peer, 0);

    mnp::IOResult rres;
    {
      Group g;
      g.go([&] {
        char buf[16];
        rres = c->read(buf, sizeof buf);
      });
      mnp::sleep(20ms);
      ASSERT_EQ(::shutdown(peer, SHUT_WR), 0);
    }
    EXPECT_ERRC(rres.err, Errc::eof) << " (a read parked when the peer half-closed)";
    char buf[16];
    for (int i = 0; i < 2; i++) EXPECT_ERRC(c->read(buf, sizeof buf).err, Errc::eof);

    const std::vector<char> data = make_pattern(kSize);
    std::atomic<bool> done{false};
    mnp::IOResult wres;
    Group g;
    g.go([&] {
      wres = c->write(data.data(), data.size());
      done = true;
    });
    mnp::sleep(50ms);
    EXPECT_FALSE(done) << "the write returned (" << describe(wres.err)
                       << ") although the peer reads nothing";
    StatWindow stats;
    const double cpu0 = cpu_ms();
    mnp::sleep(300ms);
    const double cpu = cpu_ms() - cpu0;
    EXPECT_LT(cpu, 60.0) << "ms of CPU over 300 ms with one writer parked on a half-closed Conn";
    EXPECT_LT(stats(mnp::Stat::poll_events), 20u) << "readiness events while nothing changed";
    EXPECT_LT(stats(mnp::Stat::eagain), 20u) << "writes retried while nothing changed";
    EXPECT_LT(stats(mnp::Stat::polls), 100u);

    const std::string got = raw_read_exact(peer, kSize, 10s);
    g.wait();
    EXPECT_EQ(got.size(), kSize);
    EXPECT_EQ(pattern_mismatch(got.data(), got.size(), 0), SIZE_MAX);
    EXPECT_NO_ERR(wres.err);
    EXPECT_EQ(wres.n, kSize);
    ::close(peer);
  });
}

// 32. Out of fds (tokio#3529): a server G parked in accept when a connection
// arrives gets Errc::too_many_files, backs off (5 ms doubling to 100 ms, like
// Go's http.Server) and retries; over 1 s of exhaustion the process uses
// almost no CPU and makes few accept calls; once fds are freed the same
// connection is accepted.
TEST_P(BugClass, AcceptBacksOffWhileOutOfFdsAndRecovers) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    const int client = raw_socket();
    ASSERT_GE(client, 0);
    std::atomic<int> emfiles{0};
    std::atomic<bool> accepted{false}, fds_full{false}, accepted_while_full{false};
    int accepted_fd = -1;
    rlim_t limit = 0;
    ConnPtr conn;
    mnp::Error other;
    double cpu = 0;
    uint64_t accepts = 0, polls = 0;
    bool exhausted = false, connected = false, saw_emfile = false;
    mnp::Deadline freed_at{}, accepted_at{};
    {
      Group g;
      g.go([&] {
        auto backoff = 5ms;
        const auto until = now() + 10s;
        while (now() < until) {
          auto r = ln->accept();
          if (!r.err) {
            accepted_at = now();
            accepted_while_full = fds_full.load();
            conn = std::move(r.value);
            accepted_fd = conn->sysfd();
            accepted = true;
            return;
          }
          if (!(r.err == Errc::too_many_files)) {
            other = r.err;
            return;
          }
          emfiles++;
          mnp::sleep(backoff);
          backoff = std::min<std::chrono::milliseconds>(backoff * 2, 100ms);
        }
      });
      mnp::sleep(20ms);  // the server is parked in accept
      {
        FdExhaustion full;
        exhausted = full.exhausted();
        limit = full.limit();
        fds_full = exhausted;
        connected = exhausted && raw_connect(client, ln->addr());
        if (connected) {
          saw_emfile = wait_until([&] { return emfiles.load() > 0; }, 1s);
          StatWindow stats;
          const double cpu0 = cpu_ms();
          mnp::sleep(1s);
          cpu = cpu_ms() - cpu0;
          accepts = stats(mnp::Stat::sys_accept);
          polls = stats(mnp::Stat::polls);
        }
        fds_full = false;
        full.release();
        freed_at = now();
      }
      if (!connected) ln->close();  // ends the server G
    }
    ::close(client);
    ASSERT_TRUE(exhausted) << "could not fill the fd table";
    ASSERT_TRUE(connected) << "connect to the listener failed";
    EXPECT_FALSE(accepted_while_full)
        << "accept returned a connection (fd " << accepted_fd
        << ") while the fd table was full: the fd is past the soft RLIMIT_NOFILE of " << limit;
    EXPECT_TRUE(saw_emfile) << "accept never reported too_many_files";
    EXPECT_NO_ERR(other) << " (accept failed with an unexpected error)";
    EXPECT_LT(cpu, 100.0) << "ms of CPU over 1 s of fd exhaustion (spinning accept)";
    EXPECT_LT(accepts, 200u) << "accept(2) calls over 1 s of exhaustion";
    // A spinning accept loop polls ~10^5-10^6 times a second; a few thousand
    // extra non-blocking polls show up on a CPU-starved machine and cost nothing.
    RecordProperty("polls", static_cast<int>(polls));
    EXPECT_LT(polls, 50000u) << "netpoll calls over 1 s of exhaustion";
    EXPECT_TRUE(accepted) << "the queued connection was not accepted after fds were freed";
    if (accepted) {
      // At most one back-off step (100 ms) after the fds came back.
      EXPECT_LT(ms_between(freed_at, accepted_at), 100.0 + kSlackMs)
          << "ms from freeing fds to the accept";
    }
  });
}

// 33. A deadline moved by another G at the very moment it expires
// (golang/go#35532): extended, cleared (then data sent), moved to the past,
// or data sent then the deadline re-armed. Every round the parked reader
// returns exactly once, with a timeout or data; nothing deadlocks; no byte is
// lost or duplicated over the whole run.
TEST_P(BugClass, DeadlineMovedAtExpiryHasExactlyOneOutcome) {
  run_on_backend(
      [] {
        ConnPair p = connected_pair();
        ASSERT_TRUE(p);
        auto& s = *p.server;
        constexpr int kMaxRounds = 2000;
        const auto stop = now() + 6s;
        int rounds = 0, timeouts = 0, data_outcomes = 0, bad = 0;
        std::atomic<int> returns{0};
        size_t sent = 0, received = 0;
        for (; rounds < kMaxRounds && now() < stop; rounds++) {
          const auto d0 = now() + std::chrono::microseconds(300);
          s.set_read_deadline(d0);
          mnp::IOResult r;
          bool wrote = false;
          Group g;
          g.go([&] {
            char buf[64];
            r = s.read(buf, sizeof buf);
            returns++;
          });
          g.go([&, rounds] {
            // Act a little before, at, or a little after the expiry.
            const auto at = d0 + std::chrono::microseconds(50 * (rounds % 5) - 100);
            while (now() < at) mnp::yield();
            switch (rounds % 4) {
              case 0:
                s.set_read_deadline(now() + std::chrono::microseconds(500));
                break;
              case 1:
                s.set_read_deadline(mnp::Deadline{});
                wrote = !p.client->write("a").err;
                break;
              case 2:
                s.set_read_deadline(now() - 1ms);
                break;
              case 3:
                wrote = !p.client->write("b").err;
                s.set_read_deadline(now() + std::chrono::microseconds(200));
                break;
            }
          });
          g.wait();
          sent += wrote;
          if (r.err == Errc::timeout && r.n == 0) {
            timeouts++;
          } else if (!r.err && r.n > 0) {
            data_outcomes++;
            received += r.n;
          } else {
            if (bad++ < 5)
              ADD_FAILURE() << "round " << rounds << ": " << describe(r.err) << ", " << r.n
                            << " bytes";
          }
        }
        EXPECT_EQ(returns.load(), rounds) << "a parked read returned more or less than once";
        EXPECT_EQ(bad, 0);
        EXPECT_GE(rounds, 200) << "too few rounds in the time allowed";
        EXPECT_GT(timeouts, 0);
        // Bytes that raced a timeout are still queued: all arrive, once.
        s.set_read_deadline(now() + 2s);
        const ReadAll rest = read_exact(s, sent - received);
        EXPECT_NO_ERR(rest.err) << " draining " << (sent - received) << " bytes";
        s.set_read_deadline(now() + 20ms);
        char extra[8];
        EXPECT_ERRC(s.read(extra, sizeof extra).err, Errc::timeout) << " (more bytes than sent)";
        RecordProperty("rounds", rounds);
        RecordProperty("data_outcomes", data_outcomes);
      },
      std::chrono::seconds(40));
}

// 34. Close racing readiness (golang/go#59545, #7970): one G parked reading,
// the peer sending data or an RST, another G closing — at once, the poller
// possibly reporting on another thread. The closer's close succeeds, the
// reader returns (closed, or the data/reset that won the race), and the
// socket that next gets the fd number sees only its own data and no error.
TEST_P(BugClass, CloseRacingReadinessDoesNotLeakToReusedFd) {
  run_on_backend(
      [] {
        RawListener rl;
        ASSERT_TRUE(rl.ok());
        constexpr int kMaxRounds = 2000;
        const auto stop = now() + 8s;
        int rounds = 0, reused = 0, bad = 0;
        auto fail = [&](int round, const std::string& what) {
          if (bad++ < 5) ADD_FAILURE() << "round " << round << ": " << what;
        };
        for (; rounds < kMaxRounds && now() < stop && bad < 20; rounds++) {
          ConnPtr a = must_dial(rl.addr());
          if (!a) break;
          const int pa = rl.accept();
          if (pa < 0) break;
          const int old_fd = a->sysfd();
          const bool rst = rounds % 2;
          mnp::IOResult r;
          std::string got;
          mnp::Error cerr;
          {
            Group g;
            g.go([&] {
              char buf[16];
              r = a->read(buf, sizeof buf);
              got.assign(buf, r.n);
            });
            if (rounds % 3 == 0) mnp::yield();  // sometimes parked, sometimes not yet
            g.go([&] {
              if (rst) {
                raw_reset(pa);
              } else {
                raw_write_all(pa, "x");
              }
            });
            g.go([&] { cerr = a->close(); });
          }
          if (cerr) fail(rounds, "close: " + describe(cerr));
          const bool ok = r.err == Errc::closed ||
                          (rst && (r.err == Errc::reset || r.err == Errc::eof)) ||
                          (!rst && !r.err && got == "x");
          if (!ok) fail(rounds, "reader: " + describe(r.err) + ", \"" + got + "\"");

          ConnPtr b;
          {
            LowestFreeFd hole(old_fd);
            b = must_dial(rl.addr());
          }
          if (!b) break;
          reused += b->sysfd() == old_fd;
          const int pb = rl.accept();
          if (pb < 0) break;
          ReadAll rb;
          {
            Group g;
            g.go([&] { rb = read_exact(*b, 1); });
            mnp::yield();
            mnp::yield();
            if (!raw_write_all(pb, "B")) fail(rounds, "write to the new peer");
          }
          if (rb.err || rb.data != "B")
            fail(rounds, "new socket read: " + describe(rb.err) + ", \"" + rb.data + "\"");
          const auto w = b->write("k");
          if (w.err) fail(rounds, "new socket write: " + describe(w.err));
          if (raw_read_exact(pb, 1) != "k") fail(rounds, "new peer did not get the write");
          ::close(pb);  // the peer closes first: TIME_WAIT stays off the ephemeral side
          b->close();
          if (!rst) ::close(pa);
        }
        EXPECT_EQ(bad, 0);
        EXPECT_GE(rounds, 200) << "too few rounds in the time allowed";
        EXPECT_GE(reused, rounds * 9 / 10) << "the fd number was rarely reused";
        RecordProperty("rounds", rounds);
      },
      std::chrono::seconds(40));
}

// 35. A G parked writing to a peer that never reads (zero window) holds no
// lock other Gs need: another G reads the same Conn, sets its deadlines and
// options, and other Conns work, all while it waits; close from another G
// then wakes it with Errc::closed.
TEST_P(BugClass, ParkedWriterOnZeroWindowHoldsNoLockAndCloseWakesIt) {
  run_on_backend([] {
    constexpr size_t kSize = 8 << 20;
    RawListener rl(4096);
    ASSERT_TRUE(rl.ok());
    ConnPtr c = must_dial(rl.addr());
    ASSERT_TRUE(c);
    EXPECT_NO_ERR(c->set_write_buffer(16 << 10));
    const int peer = rl.accept();
    ASSERT_GE(peer, 0);
    ConnPair other = connected_pair();
    ASSERT_TRUE(other);

    const std::vector<char> data(kSize, 'z');
    std::atomic<bool> write_done{false};
    mnp::IOResult wres;
    Group g;
    g.go([&] {
      wres = c->write(data.data(), data.size());
      write_done = true;
    });
    mnp::sleep(50ms);
    EXPECT_FALSE(write_done) << "the write should be parked: the peer never reads";

    // Everything below must finish promptly while the writer stays parked.
    std::atomic<bool> side_done{false};
    ReadAll ping;
    g.go([&] {
      ping = read_exact(*c, 4);  // the read side of the same Conn
      c->set_read_deadline(now() + 10s);
      c->set_read_deadline(mnp::Deadline{});
      EXPECT_NO_ERR(c->set_no_delay(true));
      EXPECT_NO_ERR(other.client->write("free").err);
      const ReadAll o = read_exact(*other.server, 4);
      EXPECT_EQ(o.data, "free");
      side_done = true;
    });
    mnp::sleep(10ms);
    EXPECT_TRUE(raw_write_all(peer, "ping"));
    EXPECT_TRUE(wait_until([&] { return side_done.load(); }, 2s))
        << "work on the same and other Conns was blocked by the parked writer";
    EXPECT_EQ(ping.data, "ping");
    EXPECT_FALSE(write_done);

    std::atomic<bool> close_done{false};
    mnp::Error cerr;
    const auto t0 = now();
    g.go([&] {
      cerr = c->close();
      close_done = true;
    });
    EXPECT_TRUE(wait_until([&] { return write_done.load() && close_done.load(); }, 2s))
        << "close did not wake the parked writer";
    g.wait();
    EXPECT_LT(ms_since(t0), kSlackMs + 100);
    EXPECT_NO_ERR(cerr);
    EXPECT_ERRC(wres.err, Errc::closed);
    EXPECT_LT(wres.n, kSize);
    ::close(peer);
  });
}

}  // namespace
}  // namespace mnptest
