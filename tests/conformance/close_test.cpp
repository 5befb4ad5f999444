// Conformance: closing (CONFORMANCE.md 16–21), on every backend.
#include "testutil.h"

namespace mnptest {
namespace {

class Close : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, Close, ::testing::ValuesIn(all_backends()), backend_test_name);

// 16. Closing a Conn wakes the G parked reading it with Errc::closed, at
// once; also when that read had a far deadline pending.
TEST_P(Close, UnblocksParkedRead) {
  run_on_backend([] {
    for (int with_deadline = 0; with_deadline < 2; with_deadline++) {
      ConnPair p = connected_pair();
      ASSERT_TRUE(p);
      if (with_deadline) p.server->set_read_deadline(now() + 10s);
      mnp::IOResult r;
      mnp::Deadline returned_at{};
      mnp::Error cerr;
      Group g;
      g.go([&] {
        char buf[16];
        r = p.server->read(buf, sizeof buf);
        returned_at = now();
      });
      mnp::sleep(30ms);
      const auto t0 = now();
      cerr = p.server->close();
      g.wait();
      EXPECT_NO_ERR(cerr);
      EXPECT_ERRC(r.err, Errc::closed) << " (deadline pending: " << with_deadline << ")";
      EXPECT_EQ(r.n, 0u);
      EXPECT_LT(ms_between(t0, returned_at), kSlackMs);
    }
  });
}

// 17. Same for a G parked writing (the peer never reads)...
TEST_P(Close, UnblocksParkedWrite) {
  run_on_backend([] {
    constexpr size_t kSize = 8 << 20;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    EXPECT_NO_ERR(p.client->set_write_buffer(16 << 10));
    EXPECT_NO_ERR(p.server->set_read_buffer(16 << 10));
    const std::vector<char> data(kSize, 'c');
    std::atomic<bool> done{false};
    mnp::IOResult r;
    mnp::Deadline returned_at{};
    Group g;
    g.go([&] {
      r = p.client->write(data.data(), data.size());
      returned_at = now();
      done = true;
    });
    mnp::sleep(50ms);
    EXPECT_FALSE(done) << "the write should be parked on a full buffer";
    const auto t0 = now();
    EXPECT_NO_ERR(p.client->close());
    g.wait();
    EXPECT_ERRC(r.err, Errc::closed);
    EXPECT_LT(r.n, kSize);
    EXPECT_LT(ms_between(t0, returned_at), kSlackMs);
  });
}

// 17. ...and for a G parked in accept on a Listener that is closed.
TEST_P(Close, UnblocksParkedAccept) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    mnp::Result<ConnPtr> r;
    mnp::Deadline returned_at{};
    Group g;
    g.go([&] {
      r = ln->accept();
      returned_at = now();
    });
    mnp::sleep(30ms);
    const auto t0 = now();
    EXPECT_NO_ERR(ln->close());
    g.wait();
    EXPECT_ERRC(r.err, Errc::closed);
    EXPECT_FALSE(r.value);
    EXPECT_LT(ms_between(t0, returned_at), kSlackMs);
  });
}

// 18. Close never releases the fd number while another G is inside an
// operation on it. One G parked in read, one closing: close() returns only
// after the reader has left read() (with MNP_PROCS=1 this is exact: the
// reader's flag is set before the closer can run again), and the fd number
// stays valid until then — a watcher G checks fcntl(F_GETFD) all along. Once
// close() has returned the number is free (poll.h: "returns once the fd is
// closed").
TEST_P(Close, FdNumberStaysValidUntilParkedReaderReturns) {
  run_on_backend([] {
    const bool one_proc = mnp::procs() == 1;
    for (int round = 0; round < 5; round++) {
      ConnPair p = connected_pair();
      ASSERT_TRUE(p);
      const int fd = p.server->sysfd();
      ASSERT_GE(fd, 0);
      std::atomic<bool> reader_returned{false}, stop_watch{false};
      std::atomic<int64_t> returned_ns{0}, invalid_ns{0};
      mnp::IOResult r;
      bool returned_when_close_returned = false;
      mnp::Error cerr;
      Group g;
      g.go([&] {
        char buf[16];
        r = p.server->read(buf, sizeof buf);
        returned_ns = mnp::nanotime();
        reader_returned.store(true);
      });
      g.go([&] {  // the watcher
        const auto until = now() + 5s;
        while (!stop_watch.load() && now() < until) {
          const bool ret = reader_returned.load();
          if (!fd_is_open(fd)) {
            if (!ret) invalid_ns = mnp::nanotime();
            break;
          }
          if (ret) break;
          mnp::yield();
        }
      });
      mnp::sleep(20ms);
      cerr = p.server->close();
      returned_when_close_returned = reader_returned.load();
      const bool open_after_close = fd_is_open(fd);
      if (!returned_when_close_returned && !one_proc) {
        // With several Ms the reader sets its flag a moment after leaving
        // read(), possibly after the closer resumed: only a reader that stays
        // inside read() is a failure here.
        wait_until([&] { return reader_returned.load(); }, 200ms);
        returned_when_close_returned = reader_returned.load();
      }
      stop_watch = true;
      g.wait();
      EXPECT_NO_ERR(cerr);
      EXPECT_ERRC(r.err, Errc::closed) << " (round " << round << ")";
      EXPECT_TRUE(returned_when_close_returned)
          << "close() returned while the reader was still inside read() (round " << round << ")";
      EXPECT_FALSE(open_after_close) << "fd " << fd << " still open after close() returned";
      if (invalid_ns.load() != 0) {
        // The watcher saw the number free before the reader said it returned.
        const double early_ms = (returned_ns.load() - invalid_ns.load()) / 1e6;
        if (one_proc) {
          ADD_FAILURE() << "fd " << fd << " was closed while the reader was still inside read()";
        } else {
          // With several Ms the reader's thread may be preempted between
          // leaving read() and noting it: only a long gap is a failure.
          EXPECT_LT(early_ms, 100.0)
              << "fd " << fd << " was closed " << early_ms << " ms before the reader left read()";
        }
      }
    }
  });
}

// 19. Closing twice: the second close returns Errc::closed; reading, writing
// and setting deadlines after close return Errc::closed (or do nothing).
TEST_P(Close, SecondCloseAndIoAfterCloseReturnClosed) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    EXPECT_NO_ERR(p.client->close());
    EXPECT_ERRC(p.client->close(), Errc::closed);
    char buf[16];
    const auto r = p.client->read(buf, sizeof buf);
    EXPECT_ERRC(r.err, Errc::closed);
    EXPECT_EQ(r.n, 0u);
    const auto w = p.client->write("x");
    EXPECT_ERRC(w.err, Errc::closed);
    EXPECT_EQ(w.n, 0u);
    p.client->set_deadline(now() + 1s);
    p.client->set_read_deadline(mnp::Deadline{});
    EXPECT_ERRC(p.client->read(buf, sizeof buf).err, Errc::closed);
    EXPECT_TRUE(p.client->close_write()) << "close_write after close succeeded";
    EXPECT_EQ(p.client->sysfd(), -1);

    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    EXPECT_NO_ERR(ln->close());
    EXPECT_ERRC(ln->close(), Errc::closed);
    const auto a = ln->accept();
    EXPECT_ERRC(a.err, Errc::closed);
    EXPECT_FALSE(a.value);
  });
}

// 20. Readiness that arrives for an fd number after its Conn was closed and
// the number reused by a new socket wakes nobody there. Each round: data is
// written to the old Conn's peer (readiness for the old fd), the old Conn is
// closed, a new Conn gets the same fd number, and a G parks reading it: it
// must neither wake before its deadline nor see data or an error it was not
// sent; then it gets exactly what its own peer writes.
TEST_P(Close, StaleReadinessOnReusedFdWakesNobody) {
  run_on_backend([] {
    RawListener rl;
    ASSERT_TRUE(rl.ok());
    int reused = 0;
    constexpr int kRounds = 4;
    for (int round = 0; round < kRounds; round++) {
      ConnPtr old = must_dial(rl.addr());
      ASSERT_TRUE(old);
      const int old_peer = rl.accept();
      ASSERT_GE(old_peer, 0);
      const int old_fd = old->sysfd();
      // Readiness for the old fd, with a G parked there in odd rounds.
      {
        Group g;
        if (round % 2) {
          g.go([&] {
            // Racing the close: the stale data, or the close (or the RST).
            char buf[16];
            const auto rr = old->read(buf, sizeof buf);
            EXPECT_TRUE(rr.err == Errc::closed || rr.err == Errc::reset ||
                        (!rr.err && std::string(buf, rr.n) == "stale"))
                << describe(rr.err) << ", " << rr.n << " bytes";
          });
          mnp::sleep(5ms);
        }
        EXPECT_TRUE(raw_write_all(old_peer, "stale"));
        if (round >= 2) raw_reset(old_peer);  // and an error event (RST)
        EXPECT_NO_ERR(old->close());
      }
      ConnPtr fresh;
      {
        LowestFreeFd hole(old_fd);
        fresh = must_dial(rl.addr());
      }
      ASSERT_TRUE(fresh);
      if (fresh->sysfd() == old_fd) reused++;
      const int peer = rl.accept();
      ASSERT_GE(peer, 0);
      if (round < 2) {
        // More traffic for the dead socket (best effort: the old Conn was
        // closed with "stale" unread, so the kernel has already reset it).
        (void)raw_write_all(old_peer, "more stale", 10, 10ms);
      }

      mnp::IOResult r;
      std::string got;
      std::atomic<bool> returned{false};
      const auto d = now() + 200ms;
      fresh->set_read_deadline(d);
      {
        Group g;
        g.go([&] {
          char buf[64];
          r = fresh->read(buf, sizeof buf);
          got.assign(buf, r.n);
          returned = true;
        });
        mnp::sleep(10ms);
        StatWindow stats;
        mnp::sleep(60ms);
        const uint64_t eagains = stats(mnp::Stat::eagain);
        const bool early = returned.load();
        if (now() < d) {  // a loaded machine may oversleep past the deadline
          // A woken reader finds nothing and retries: one more EAGAIN.
          EXPECT_EQ(eagains, 0u) << "the reader of the new socket was woken with nothing to "
                                    "read (round "
                                 << round << ")";
          EXPECT_FALSE(early) << "round " << round << ": returned early with " << describe(r.err)
                              << " and \"" << got << "\"";
        }
      }
      EXPECT_ERRC(r.err, Errc::timeout) << " (round " << round << ", got \"" << got << "\")";
      EXPECT_GE(now(), d);

      fresh->set_read_deadline(mnp::Deadline{});
      EXPECT_TRUE(raw_write_all(peer, "fresh"));
      const ReadAll own = read_exact(*fresh, 5);
      EXPECT_NO_ERR(own.err);
      EXPECT_EQ(own.data, "fresh");
      EXPECT_NO_ERR(fresh->write("back").err);
      EXPECT_EQ(raw_read_exact(peer, 4), "back");
      ::close(peer);
      if (round < 2) ::close(old_peer);
    }
    EXPECT_GE(reused, kRounds - 1) << "the new socket rarely got the old fd number: the test "
                                      "did not exercise reuse";
  });
}

// 20. A deadline timer armed on a Conn that is then closed, its fd number and
// pollDesc reused by a new Conn, does not fire on the new one: the new
// Conn's own, later deadlines hold, for reads and writes.
TEST_P(Close, StaleDeadlineTimerOnReusedFdDoesNotFire) {
  run_on_backend([] {
    RawListener rl;
    ASSERT_TRUE(rl.ok());
    for (int parked = 0; parked < 2; parked++) {
      ConnPtr old = must_dial(rl.addr());
      ASSERT_TRUE(old);
      const int old_peer = rl.accept();
      ASSERT_GE(old_peer, 0);
      const int old_fd = old->sysfd();
      old->set_read_deadline(now() + 60ms);
      old->set_write_deadline(now() + 60ms);
      {
        Group g;
        if (parked) {
          g.go([&] {
            char buf[16];
            EXPECT_ERRC(old->read(buf, sizeof buf).err, Errc::closed);
          });
          mnp::sleep(5ms);
        }
        EXPECT_NO_ERR(old->close());
      }
      ::close(old_peer);
      ConnPtr fresh;
      {
        LowestFreeFd hole(old_fd);
        fresh = must_dial(rl.addr());
      }
      ASSERT_TRUE(fresh);
      const int peer = rl.accept();
      ASSERT_GE(peer, 0);
      const auto t0 = now();
      const auto d = t0 + 250ms;
      fresh->set_read_deadline(d);
      char buf[16];
      const auto r = fresh->read(buf, sizeof buf);
      const auto t = now();
      EXPECT_ERRC(r.err, Errc::timeout);
      EXPECT_GE(t, d) << "the new Conn's read timed out after " << ms_between(t0, t)
                      << " ms: the old Conn's 60 ms timer fired on it";
      // The old write deadline (60 ms, long past) is not the new Conn's.
      EXPECT_NO_ERR(fresh->write("w").err);
      EXPECT_EQ(raw_read_exact(peer, 1), "w");
      ::close(peer);
    }
  });
}

// 21. close_write sends FIN: the peer reads EOF, and this side still reads
// the peer's reply; writing here after it fails.
TEST_P(Close, CloseWriteHalfCloses) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    ASSERT_NO_ERR(p.client->write("request").err);
    ASSERT_NO_ERR(p.client->close_write());
    ReadAll got = read_exact(*p.server, 7);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "request");
    char buf[16];
    for (int i = 0; i < 2; i++) {
      const auto r = p.server->read(buf, sizeof buf);
      EXPECT_EQ(r.n, 0u);
      EXPECT_ERRC(r.err, Errc::eof);
    }
    EXPECT_NO_ERR(p.server->write("reply").err);
    got = read_exact(*p.client, 5);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "reply");
    const auto w = p.client->write("more");
    EXPECT_TRUE(w.err) << "a write after close_write succeeded";
    EXPECT_NO_ERR(p.server->close());
    const auto r = p.client->read(buf, sizeof buf);
    EXPECT_ERRC(r.err, Errc::eof);
  });
}

}  // namespace
}  // namespace mnptest
