// Conformance: reading and writing (CONFORMANCE.md 1–7), on every backend.
#include <algorithm>
#include <random>

#include "testutil.h"

namespace mnptest {
namespace {

class ReadWrite : public BackendTest {};
INSTANTIATE_TEST_SUITE_P(Backends, ReadWrite, ::testing::ValuesIn(all_backends()),
                         backend_test_name);

// 1. A read with no data parks the G: other Gs run meanwhile, the read makes
// no further syscalls and burns no CPU while it waits, and it returns the
// bytes once the peer writes.
TEST_P(ReadWrite, ParkedReadWakesOnData) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    std::atomic<bool> returned{false};
    std::atomic<int> ticks{0};
    ReadAll got;
    Group g;
    g.go([&] {
      char buf[64];
      const auto r = p.server->read(buf, sizeof buf);
      got.data.assign(buf, r.n);
      got.err = r.err;
      returned = true;
    });
    g.go([&] {
      for (int i = 0; i < 100; i++) {
        ticks++;
        mnp::yield();
      }
    });
    mnp::sleep(20ms);  // the reader has parked by now
    StatWindow stats;
    const double cpu0 = cpu_ms();
    mnp::sleep(300ms);
    const double cpu = cpu_ms() - cpu0;
    EXPECT_FALSE(returned) << "the read returned although no data was sent";
    EXPECT_EQ(ticks.load(), 100) << "other Gs did not run while the reader was parked";
    EXPECT_LE(stats(mnp::Stat::sys_read), 2u)
        << "a parked read kept retrying read(2) while no data arrived (spinning)";
    EXPECT_LT(cpu, 100.0) << "ms of CPU used over 300 ms while the only reader was parked";

    EXPECT_NO_ERR(p.client->write("hello").err);
    g.wait();
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "hello");
  });
}

// 2. A read returns what is available and never waits for more once it has
// some: with or without having parked first.
TEST_P(ReadWrite, ReadReturnsAvailableBytesWithoutWaitingForMore) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    std::vector<char> buf(64 << 10);
    // A safety net only: the reads below must return long before it.
    p.server->set_read_deadline(now() + 5s);

    ASSERT_NO_ERR(p.client->write("abcde").err);
    mnp::sleep(20ms);  // all five bytes are in the server's receive queue
    auto t0 = now();
    auto r = p.server->read(buf.data(), buf.size());
    EXPECT_NO_ERR(r.err);
    EXPECT_EQ(std::string(buf.data(), r.n), "abcde");
    EXPECT_LT(ms_since(t0), 100.0) << "ms for a read that had data available";

    // Fewer bytes than available when asked for fewer.
    ASSERT_NO_ERR(p.client->write("xyz").err);
    mnp::sleep(20ms);
    r = p.server->read(buf.data(), 1);
    EXPECT_NO_ERR(r.err);
    EXPECT_EQ(std::string(buf.data(), r.n), "x");
    r = p.server->read(buf.data(), buf.size());
    EXPECT_NO_ERR(r.err);
    EXPECT_EQ(std::string(buf.data(), r.n), "yz");

    // A parked read asking for 64 KiB returns the 3 bytes that arrive.
    std::atomic<bool> returned{false};
    ReadAll got;
    Group g;
    g.go([&] {
      const auto rr = p.server->read(buf.data(), buf.size());
      got.data.assign(buf.data(), rr.n);
      got.err = rr.err;
      returned = true;
    });
    mnp::sleep(20ms);
    EXPECT_FALSE(returned);
    t0 = now();
    EXPECT_NO_ERR(p.client->write("123").err);
    EXPECT_TRUE(wait_until([&] { return returned.load(); }, 1s))
        << "a parked read with 3 of 65536 bytes available did not return";
    g.wait();
    EXPECT_LT(ms_since(t0), 250.0);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "123");
  });
}

// 3. After the peer closed: the data it sent, then EOF (0 bytes and
// Errc::eof), every time the read is repeated.
TEST_P(ReadWrite, ReadAfterPeerCloseReturnsEofEveryTime) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    ASSERT_NO_ERR(p.client->write("bye").err);
    ASSERT_NO_ERR(p.client->close());
    const ReadAll got = read_exact(*p.server, 3);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "bye");
    char buf[16];
    for (int i = 0; i < 3; i++) {
      const auto r = p.server->read(buf, sizeof buf);
      EXPECT_EQ(r.n, 0u) << "read #" << i << " after EOF";
      EXPECT_ERRC(r.err, Errc::eof) << " (read #" << i << " after EOF)";
    }
  });
}

// 3. A read parked when the peer closes wakes with EOF.
TEST_P(ReadWrite, ParkedReadWakesWithEofWhenPeerCloses) {
  run_on_backend([] {
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    mnp::IOResult r;
    Group g;
    g.go([&] {
      char buf[16];
      r = p.server->read(buf, sizeof buf);
    });
    mnp::sleep(20ms);
    const auto t0 = now();
    EXPECT_NO_ERR(p.client->close());
    g.wait();
    EXPECT_LT(ms_since(t0), kSlackMs);
    EXPECT_EQ(r.n, 0u);
    EXPECT_ERRC(r.err, Errc::eof);
  });
}

// 4. One write of 6 MiB against a slow reader and small socket buffers: the
// write parks as often as it must, returns only once every byte is with the
// kernel, and the peer receives exactly those bytes in order.
TEST_P(ReadWrite, LargeWriteParksUntilAllBytesReachSlowReader) {
  run_on_backend([] {
    constexpr size_t kSize = 6 << 20;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    EXPECT_NO_ERR(p.client->set_write_buffer(64 << 10));
    EXPECT_NO_ERR(p.server->set_read_buffer(64 << 10));
    const std::vector<char> data = make_pattern(kSize);
    std::atomic<bool> write_done{false};
    mnp::IOResult wres;
    StatWindow stats;
    Group g;
    g.go([&] {
      wres = p.client->write(data.data(), data.size());
      write_done = true;
    });
    mnp::sleep(50ms);
    EXPECT_FALSE(write_done) << "a 6 MiB write returned before the reader read anything: "
                                "it cannot all fit in the socket buffers";

    std::vector<char> buf(32 << 10);
    size_t total = 0, since_nap = 0, mismatch = SIZE_MAX;
    while (total < kSize) {
      const auto r = p.server->read(buf.data(), buf.size());
      if (r.err) {
        ADD_FAILURE() << "read after " << total << " bytes: " << describe(r.err);
        p.server->close();  // unblocks the writer
        break;
      }
      if (mismatch == SIZE_MAX) mismatch = pattern_mismatch(buf.data(), r.n, total);
      total += r.n;
      since_nap += r.n;
      if (since_nap >= (64 << 10)) {  // the slow reader: a nap every 64 KiB
        since_nap = 0;
        mnp::sleep(1ms);
      }
    }
    g.wait();
    EXPECT_EQ(total, kSize);
    EXPECT_EQ(mismatch, SIZE_MAX) << "the received stream differs from what was written";
    EXPECT_NO_ERR(wres.err);
    EXPECT_EQ(wres.n, kSize);
    EXPECT_GE(stats(mnp::Stat::parks_io), 2u) << "the writer never parked on a full buffer";
  });
}

// 5. A write to a peer that reset the connection returns Errc::reset (ECONNRESET
// or EPIPE), and keeps doing so; the process is still here.
TEST_P(ReadWrite, WriteToResetPeerReturnsReset) {
  run_on_backend([] {
    RawListener rl;
    ASSERT_TRUE(rl.ok());
    ConnPtr c = must_dial(rl.addr());
    ASSERT_TRUE(c);
    const int peer = rl.accept();
    ASSERT_GE(peer, 0);
    raw_reset(peer);
    mnp::sleep(10ms);
    mnp::Error err;
    for (int i = 0; i < 50 && !err; i++) {
      err = c->write("x").err;
      if (!err) mnp::sleep(1ms);
    }
    EXPECT_ERRC(err, Errc::reset);
    for (int i = 0; i < 3; i++) EXPECT_ERRC(c->write("again").err, Errc::reset);
  });
}

// 5. A write parked on a full buffer when the peer resets wakes with
// Errc::reset, having written less than asked.
TEST_P(ReadWrite, ParkedWriteFailsWithResetWhenPeerResets) {
  run_on_backend([] {
    constexpr size_t kSize = 8 << 20;
    RawListener rl(4096);
    ASSERT_TRUE(rl.ok());
    ConnPtr c = must_dial(rl.addr());
    ASSERT_TRUE(c);
    EXPECT_NO_ERR(c->set_write_buffer(16 << 10));
    const int peer = rl.accept();
    ASSERT_GE(peer, 0);
    const std::vector<char> data(kSize, 'w');
    std::atomic<bool> done{false};
    mnp::IOResult wres;
    Group g;
    g.go([&] {
      wres = c->write(data.data(), data.size());
      done = true;
    });
    mnp::sleep(50ms);
    EXPECT_FALSE(done) << "the write should be parked: the peer never reads";
    raw_reset(peer);
    EXPECT_TRUE(wait_until([&] { return done.load(); }, 2s))
        << "the parked writer was not woken by the peer's reset";
    if (!done) c->close();
    g.wait();
    EXPECT_ERRC(wres.err, Errc::reset);
    EXPECT_LT(wres.n, kSize);
  });
}

// 5. No SIGPIPE: in a child process whose SIGPIPE is at its default (fatal)
// action, writes to a reset peer return errors and the child exits normally.
TEST_P(ReadWrite, WriteToResetPeerRaisesNoSigpipe) {
  const std::string backend_name = GetParam();
  EXPECT_EXIT(
      {
        ::signal(SIGPIPE, SIG_DFL);
        ::alarm(20);  // the child's watchdog: SIGALRM ends it if it hangs
        mnp::Options opts;
        opts.backend = backend_name.c_str();
        int errors = 0;
        const int rc = mnp::run(
            [&] {
              RawListener rl;
              if (!rl.ok()) return;
              ConnPtr c = mnp::net::dial("tcp", rl.addr()).value;
              if (!c) return;
              const int peer = rl.accept();
              if (peer < 0) return;
              raw_reset(peer);
              mnp::sleep(10ms);
              for (int i = 0; i < 20; i++) {
                if (c->write("pipe").err) errors++;
                mnp::sleep(1ms);
              }
            },
            opts);
        std::_Exit(rc == 0 && errors > 0 ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

// 6. A G parked reading a Conn does not stop another G writing the same
// Conn: 2 MiB go out (and are read by the peer) while the reader waits.
TEST_P(ReadWrite, ReaderAndWriterOnOneConnProgressIndependently) {
  run_on_backend([] {
    constexpr size_t kSize = 2 << 20;
    ConnPair p = connected_pair();
    ASSERT_TRUE(p);
    const std::vector<char> data = make_pattern(kSize);
    std::atomic<bool> read_done{false}, write_done{false};
    ReadAll got;
    mnp::IOResult wres;
    Group g;
    g.go([&] {
      got = read_exact(*p.server, 1);
      read_done = true;
    });
    mnp::sleep(10ms);
    g.go([&] {
      wres = p.server->write(data.data(), data.size());
      write_done = true;
    });
    const ReadAll echoed = read_exact(*p.client, kSize);
    EXPECT_NO_ERR(echoed.err);
    EXPECT_EQ(pattern_mismatch(echoed.data.data(), echoed.data.size(), 0), SIZE_MAX);
    EXPECT_TRUE(wait_until([&] { return write_done.load(); }, 2s));
    EXPECT_FALSE(read_done) << "the reader returned although the peer sent nothing";
    EXPECT_NO_ERR(p.client->write("R").err);
    g.wait();
    EXPECT_NO_ERR(wres.err);
    EXPECT_EQ(wres.n, kSize);
    EXPECT_NO_ERR(got.err);
    EXPECT_EQ(got.data, "R");
  });
}

// 7. 1,000 Gs, each parked reading its own Conn, woken as data arrives in a
// random order: each gets its own message, and only those written to wake.
TEST_P(ReadWrite, ThousandParkedReadersWakeInRandomOrder) {
  static constexpr int kN = 1000;
  ScopedNofile nofile(2 * kN + 256);
  if (!nofile.ok()) GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << nofile.hard() << " < 2,256";
  run_on_backend([] {
    ListenerPtr ln = must_listen();
    ASSERT_TRUE(ln);
    std::vector<ConnPtr> clients(kN), servers(kN);
    for (int i = 0; i < kN; i++) {
      clients[i] = must_dial(ln->addr().to_string());
      ASSERT_TRUE(clients[i]);
      servers[i] = must_accept(*ln);
      ASSERT_TRUE(servers[i]);
    }
    auto msg = [](int i) {
      char b[16];
      std::snprintf(b, sizeof b, "m%07d", i);
      return std::string(b, 8);
    };
    std::vector<std::atomic<bool>> returned(kN);
    std::atomic<int> correct{0}, woken{0};
    StatWindow stats;
    Group g;
    for (int i = 0; i < kN; i++) {
      g.go([&, i] {
        const ReadAll r = read_exact(*servers[i], 8);
        if (!r.err && r.data == msg(i)) correct++;
        returned[i] = true;
        woken++;
      });
    }
    EXPECT_TRUE(wait_until([&] { return stats(mnp::Stat::parks_io) >= kN; }, 5s))
        << "only " << stats(mnp::Stat::parks_io) << " of " << kN << " readers parked";
    std::vector<int> order(kN);
    for (int i = 0; i < kN; i++) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(20240601));
    // First half: exactly those wake.
    for (int k = 0; k < kN / 2; k++) EXPECT_NO_ERR(clients[order[k]]->write(msg(order[k])).err);
    EXPECT_TRUE(wait_until([&] { return woken.load() >= kN / 2; }, 5s));
    mnp::sleep(20ms);
    EXPECT_EQ(woken.load(), kN / 2) << "readers with no data woke up";
    int early = 0;
    for (int k = kN / 2; k < kN; k++) early += returned[order[k]].load();
    EXPECT_EQ(early, 0) << "readers returned before their data was written";
    for (int k = kN / 2; k < kN; k++) EXPECT_NO_ERR(clients[order[k]]->write(msg(order[k])).err);
    g.wait();
    EXPECT_EQ(correct.load(), kN) << "readers that got exactly their own message";
  });
}

}  // namespace
}  // namespace mnptest
