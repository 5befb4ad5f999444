// Conformance: deadlines (CONFORMANCE.md 8–15), on every backend.
#include "testutil.h"

namespace mnptest {
namespace {

class Deadline : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, Deadline, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// Makes c's writes park soon: small send buffer; the peer is expected not to read.
void shrink_send_buffer(mnp::net::Conn& c) {
  EXPECT_NO_ERR(c.set_write_buffer(16 << 10));
}

// 8. A parked read returns Errc::timeout at, not before, its deadline.
TEST_P(Deadline, ParkedReadTimesOutAtDeadline) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    for (int i = 0; i < 2; i++) {
      const auto d = now() + 100ms;
      if (i == 0) {
        p.server->set_read_deadline(d);
      } else {
        p.server->set_deadline(d);
      }
      char buf[16];
      const auto r = p.server->read(buf, sizeof buf);
      const auto t = now();
      EXPECT_ERRC(r.err, Errc::timeout);
      EXPECT_EQ(r.n, 0u);
      EXPECT_GE(t, d) << "the read timed out " << ms_between(t, d) << " ms early";
      EXPECT_LT(ms_between(d, t), kSlackMs) << "ms late";
    }
  });
}

// 8. Same for a write parked on a full send buffer (the peer never reads):
// it has written part of the data and times out at its deadline.
TEST_P(Deadline, ParkedWriteTimesOutAtDeadline) {
  run_on_backend([] {
    constexpr size_t kSize = 8 << 20;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    shrink_send_buffer(*p.client);
    EXPECT_NO_ERR(p.server->set_read_buffer(16 << 10));
    const std::vector<char> data(kSize, 'd');
    const auto d = now() + 100ms;
    p.client->set_write_deadline(d);
    const auto r = p.client->write(data.data(), data.size());
    const auto t = now();
    EXPECT_ERRC(r.err, Errc::timeout);
    EXPECT_LT(r.n, kSize);
    EXPECT_GE(t, d) << "the write timed out " << ms_between(t, d) << " ms early";
    EXPECT_LT(ms_between(d, t), kSlackMs) << "ms late";
  });
}

// 9. A deadline already in the past fails the next read and write at once
// with Errc::timeout: no park, no syscall (even with data waiting, as Go's
// prepareRead does), and the waiting data is still there afterwards.
TEST_P(Deadline, PastDeadlineFailsAtOnceWithoutWaiting) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    ASSERT_NO_ERR(p.client->write("data").err);
    mnp::sleep(10ms);

    p.server->set_read_deadline(now() - 1s);
    char buf[16];
    StatWindow stats;
    auto t0 = now();
    auto r = p.server->read(buf, sizeof buf);
    EXPECT_LT(ms_since(t0), 20.0) << "ms for a read whose deadline had passed";
    EXPECT_ERRC(r.err, Errc::timeout);
    EXPECT_EQ(r.n, 0u);
    EXPECT_EQ(stats(mnp::Stat::sys_read), 0u) << "read(2) attempted past the deadline";
    EXPECT_EQ(stats(mnp::Stat::parks_io), 0u) << "the G parked although the deadline had passed";

    p.client->set_write_deadline(now() - 1ms);
    stats.reset();
    t0 = now();
    const auto w = p.client->write("more");
    EXPECT_LT(ms_since(t0), 20.0);
    EXPECT_ERRC(w.err, Errc::timeout);
    EXPECT_EQ(w.n, 0u);
    EXPECT_EQ(stats(mnp::Stat::sys_write), 0u) << "write(2) attempted past the deadline";
    EXPECT_EQ(stats(mnp::Stat::parks_io), 0u);

    p.server->set_read_deadline(mnp::Deadline{});
    const ReadAll got = read_exact(*p.server, 4);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "data");
  });
}

// 10. After a timeout the Conn is usable again: clearing or extending the
// deadline lets the next read return the data that arrived meanwhile.
TEST_P(Deadline, ReadUsableAfterTimeoutAndDataNotLost) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    char buf[16];
    // Clear.
    p.server->set_read_deadline(now() + 50ms);
    auto r = p.server->read(buf, sizeof buf);
    ASSERT_ERRC(r.err, Errc::timeout);
    ASSERT_NO_ERR(p.client->write("late").err);
    mnp::sleep(10ms);
    p.server->set_read_deadline(mnp::Deadline{});
    ReadAll got = read_exact(*p.server, 4);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "late");
    // Extend.
    p.server->set_read_deadline(now() + 50ms);
    r = p.server->read(buf, sizeof buf);
    ASSERT_ERRC(r.err, Errc::timeout);
    ASSERT_NO_ERR(p.client->write("more").err);
    mnp::sleep(10ms);
    p.server->set_read_deadline(now() + 2s);
    const auto t0 = now();
    got = read_exact(*p.server, 4);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "more");
    EXPECT_LT(ms_since(t0), 100.0);
    // Data written while a G is parked, then the deadline cleared: arrives.
    p.server->set_read_deadline(now() + 50ms);
    r = p.server->read(buf, sizeof buf);
    ASSERT_ERRC(r.err, Errc::timeout);
    p.server->set_read_deadline(mnp::Deadline{});
    Group g;
    g.go([&] { got = read_exact(*p.server, 5); });
    mnp::sleep(10ms);
    EXPECT_NO_ERR(p.client->write("again").err);
    g.wait();
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "again");
  });
}

// 10. A write that timed out, then the deadline cleared: the stream goes on
// where it stopped; the peer sees the first n bytes then the next write, with
// nothing lost or repeated.
TEST_P(Deadline, WriteUsableAfterTimeoutAndStreamIntact) {
  run_on_backend([] {
    constexpr size_t kFirst = 8 << 20, kSecond = 64 << 10;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    shrink_send_buffer(*p.client);
    EXPECT_NO_ERR(p.server->set_read_buffer(16 << 10));
    const std::vector<char> data = make_pattern(kFirst + kSecond);
    p.client->set_write_deadline(now() + 50ms);
    const auto w1 = p.client->write(data.data(), kFirst);
    ASSERT_ERRC(w1.err, Errc::timeout);
    ASSERT_LT(w1.n, kFirst);
    ASSERT_GT(w1.n, 0u);
    p.client->set_write_deadline(mnp::Deadline{});
    const size_t total = w1.n + kSecond;
    ReadAll got;
    Group g;
    g.go([&] { got = read_exact(*p.server, total); });
    const auto w2 = p.client->write(data.data() + w1.n, kSecond);
    g.wait();
    EXPECT_NO_ERR(w2.err);
    EXPECT_EQ(w2.n, kSecond);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data.size(), total);
    EXPECT_EQ(pattern_mismatch(got.data.data(), got.data.size(), 0), SIZE_MAX);
  });
}

// 11. Extending the deadline of a parked read moves its wake-up later.
TEST_P(Deadline, ExtendWhileParked) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    mnp::IOResult r;
    mnp::Deadline returned_at{};
    p.server->set_read_deadline(now() + 100ms);
    Group g;
    g.go([&] {
      char buf[16];
      r = p.server->read(buf, sizeof buf);
      returned_at = now();
    });
    mnp::sleep(30ms);
    const auto d = now() + 300ms;
    p.server->set_read_deadline(d);
    g.wait();
    EXPECT_ERRC(r.err, Errc::timeout);
    EXPECT_GE(returned_at, d) << "woke " << ms_between(returned_at, d)
                              << " ms before the extended deadline (at the old one?)";
    EXPECT_LT(ms_between(d, returned_at), kSlackMs);
  });
}

// 11. Shortening it wakes the G earlier; setting it in the past wakes it now;
// setting one on a read parked without any wakes it at the new time.
TEST_P(Deadline, ShortenWhileParked) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    for (int variant = 0; variant < 3; variant++) {
      mnp::IOResult r;
      mnp::Deadline returned_at{};
      // 0: +5 s shortened; 1: +5 s moved to the past; 2: none, then set.
      p.server->set_read_deadline(variant < 2 ? now() + 5s : mnp::Deadline{});
      Group g;
      g.go([&] {
        char buf[16];
        r = p.server->read(buf, sizeof buf);
        returned_at = now();
      });
      mnp::sleep(30ms);
      const auto d = variant == 1 ? now() : now() + 50ms;
      p.server->set_read_deadline(variant == 1 ? now() - 1s : d);
      g.wait();
      EXPECT_ERRC(r.err, Errc::timeout) << " (variant " << variant << ")";
      EXPECT_GE(returned_at, d) << "variant " << variant;
      EXPECT_LT(ms_between(d, returned_at), kSlackMs) << "variant " << variant;
    }
  });
}

// 12. Read and write deadlines are independent; set_deadline sets both.
TEST_P(Deadline, ReadAndWriteDeadlinesAreIndependent) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    char buf[16];
    auto& s = *p.server;
    // An expired read deadline: writes still work.
    s.set_read_deadline(now() - 1s);
    EXPECT_NO_ERR(s.write("w1").err);
    EXPECT_EQ(read_exact(*p.client, 2).data, "w1");
    EXPECT_ERRC(s.read(buf, sizeof buf).err, Errc::timeout);
    // An expired write deadline: reads still work.
    s.set_read_deadline(mnp::Deadline{});
    s.set_write_deadline(now() - 1s);
    EXPECT_NO_ERR(p.client->write("r1").err);
    const ReadAll got = read_exact(s, 2);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "r1");
    EXPECT_ERRC(s.write("w2").err, Errc::timeout);
    // set_deadline: both.
    s.set_write_deadline(mnp::Deadline{});
    s.set_deadline(now() - 1s);
    EXPECT_ERRC(s.read(buf, sizeof buf).err, Errc::timeout);
    EXPECT_ERRC(s.write("w3").err, Errc::timeout);
    s.set_deadline(mnp::Deadline{});
    EXPECT_NO_ERR(s.write("w4").err);
    EXPECT_EQ(read_exact(*p.client, 2).data, "w4");

    // A write deadline expiring does not wake a parked reader.
    std::atomic<bool> returned{false};
    ReadAll late;
    Group g;
    g.go([&] {
      late = read_exact(s, 1);
      returned = true;
    });
    mnp::sleep(10ms);
    s.set_write_deadline(now() + 20ms);
    mnp::sleep(60ms);
    EXPECT_FALSE(returned) << "the write deadline woke the parked reader";
    EXPECT_NO_ERR(p.client->write("z").err);
    g.wait();
    EXPECT_NO_ERR(late.err);
    EXPECT_EQ(late.data, "z");
  });
}

// 13. The timeout error is told apart, by kind, from closed, EOF, reset and
// refused; only it says timeout().
TEST_P(Deadline, TimeoutIsDistinguishableFromOtherErrors) {
  run_on_backend([] {
    char buf[16];
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    p.server->set_read_deadline(now() + 10ms);
    const mnp::Error timeout = p.server->read(buf, sizeof buf).err;
    EXPECT_NO_ERR(p.client->close());
    p.server->set_read_deadline(mnp::Deadline{});
    const mnp::Error eof = p.server->read(buf, sizeof buf).err;
    EXPECT_NO_ERR(p.server->close());
    const mnp::Error closed = p.server->read(buf, sizeof buf).err;

    auto rl = std::make_unique<RawListener>();
    ASSERT_TRUE(rl->ok());
    ConnPtr c = must_dial(rl->addr());
    ASSERT_TRUE(c);
    const int peer = rl->accept();
    ASSERT_GE(peer, 0);
    raw_reset(peer);
    mnp::sleep(10ms);
    const mnp::Error reset = c->write("x").err;

    const std::string free_addr = rl->addr();
    rl.reset();  // nobody listens there any more
    const mnp::Error refused = mnp::net::dial("tcp", free_addr).err;

    EXPECT_ERRC(timeout, Errc::timeout);
    EXPECT_TRUE(timeout.timeout());
    EXPECT_ERRC(eof, Errc::eof);
    EXPECT_ERRC(closed, Errc::closed);
    EXPECT_ERRC(reset, Errc::reset);
    EXPECT_ERRC(refused, Errc::refused);
    for (const mnp::Error* e : {&eof, &closed, &reset, &refused}) {
      EXPECT_FALSE(e->timeout()) << describe(*e) << " claims to be a timeout";
      EXPECT_FALSE(*e == Errc::timeout) << describe(*e);
      EXPECT_NE(e->message(), timeout.message());
    }
    EXPECT_NE(closed.kind(), eof.kind());
    EXPECT_NE(closed.kind(), reset.kind());
    EXPECT_NE(eof.kind(), reset.kind());
  });
}

// 14. Accept honours the listener's deadline: a timeout at (not before) it, at
// once when it has passed; the listener accepts again once it is cleared.
TEST_P(Deadline, AcceptHonoursDeadline) {
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    auto d = now() + 100ms;
    ln->set_deadline(d);
    auto r = ln->accept();
    auto t = now();
    EXPECT_ERRC(r.err, Errc::timeout);
    EXPECT_FALSE(r.value);
    EXPECT_GE(t, d);
    EXPECT_LT(ms_between(d, t), kSlackMs);

    ln->set_deadline(now() - 1s);
    const auto t0 = now();
    r = ln->accept();
    EXPECT_ERRC(r.err, Errc::timeout);
    EXPECT_LT(ms_since(t0), 20.0);

    // Extended while parked.
    ln->set_deadline(now() + 50ms);
    mnp::Result<ConnPtr> parked;
    mnp::Deadline returned_at{};
    {
      Group g;
      g.go([&] {
        parked = ln->accept();
        returned_at = now();
      });
      mnp::sleep(20ms);
      d = now() + 150ms;
      ln->set_deadline(d);
      g.wait();
    }
    EXPECT_ERRC(parked.err, Errc::timeout);
    EXPECT_GE(returned_at, d);
    EXPECT_LT(ms_between(d, returned_at), kSlackMs);

    ln->set_deadline(mnp::Deadline{});
    ConnPtr c = must_dial(ln->addr().to_string());
    ASSERT_TRUE(c);
    ConnPtr s = must_accept(*ln);
    EXPECT_TRUE(s);
  });
}

// 15. Dial with a timeout to an address that never answers: a loopback
// listener with backlog 1 whose accept queue is full (its connections are
// never accepted), so the kernel drops further SYNs. The dial returns
// Errc::timeout at its timeout, and so does a dial with a deadline.
TEST_P(Deadline, DialTimeoutToUnansweringAddress) {
  run_on_backend([] {
    mnp::net::ListenConfig cfg;
    cfg.backlog = 1;
    ListenerPtr ln = must_listen("tcp", "127.0.0.1:0", cfg);
    ASSERT_TRUE(ln);
    std::vector<int> fillers;
    bool full = false;
    for (int i = 0; i < 16 && !full; i++) {
      const int fd = raw_socket();
      if (fd < 0) break;
      if (raw_connect(fd, ln->addr(), 200ms)) {
        fillers.push_back(fd);
      } else {
        full = true;  // this SYN was dropped: the queue is full
        ::close(fd);
      }
    }
    if (!full) {
      for (int fd : fillers) ::close(fd);
      ADD_FAILURE() << "could not fill a backlog-1 accept queue with " << fillers.size()
                    << " connections: no unanswering address to dial";
      return;
    }
    for (int variant = 0; variant < 2; variant++) {
      mnp::net::DialConfig dc;
      const auto t0 = now();
      mnp::Deadline d;
      if (variant == 0) {
        dc.timeout = 200ms;
        d = t0 + 200ms;
      } else {
        d = t0 + 150ms;
        dc.deadline = d;
      }
      const auto r = mnp::net::dial("tcp", ln->addr().to_string(), dc);
      const auto t = now();
      EXPECT_ERRC(r.err, Errc::timeout) << " (variant " << variant << ")";
      EXPECT_FALSE(r.value);
      EXPECT_GE(t, d) << "variant " << variant << ": " << ms_between(t, d) << " ms early";
      EXPECT_LT(ms_between(d, t), kSlackMs) << "variant " << variant;
    }
    for (int fd : fillers) ::close(fd);
  });
}

}  // namespace
}  // namespace mnptest
