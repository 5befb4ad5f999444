// tests/kqueue_emu/kqueue_emu_test.cpp — the kqueue(2) rules the kqueue
// backend relies on, checked one by one.
//
// On Linux they test tests/kqueue_emu (built by meson -Dkqueue_emu=true); the
// file uses nothing but <sys/event.h> and POSIX, so on macOS or FreeBSD the
// same tests hold against the real kqueue — which is the point: each
// expectation is a sentence of the man page (K1..K14 in kqueue_emu.cpp), not
// a property of the emulation.
#include <sys/types.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

struct kevent ev(uintptr_t ident, int filter, unsigned flags, unsigned fflags = 0,
                 uintptr_t udata = 0) {
  struct kevent e;
  std::memset(&e, 0, sizeof e);
  e.ident = ident;
  e.filter = static_cast<decltype(e.filter)>(filter);
  e.flags = static_cast<decltype(e.flags)>(flags);
  e.fflags = fflags;
  e.udata = reinterpret_cast<decltype(e.udata)>(udata);
  return e;
}

uintptr_t udata_of(const struct kevent& e) {
  return reinterpret_cast<uintptr_t>(e.udata);
}

timespec ms(long n) {
  return timespec{static_cast<time_t>(n / 1000), (n % 1000) * 1000000L};
}

// A kqueue and a connected pair of stream sockets, closed at the end.
class Kqueue : public ::testing::Test {
 protected:
  void SetUp() override {
    kq = kqueue();
    ASSERT_GE(kq, 0) << std::strerror(errno);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0) << std::strerror(errno);
    for (int fd : sv) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  void TearDown() override {
    for (int fd : sv)
      if (fd >= 0) close(fd);
    close(kq);
  }

  int change(struct kevent c) { return kevent(kq, &c, 1, nullptr, 0, nullptr); }
  // Waits up to `wait_ms` (0: a poll) and returns how many events came.
  int wait(struct kevent* out, int n, long wait_ms) {
    timespec t = ms(wait_ms);
    return kevent(kq, nullptr, 0, out, n, &t);
  }
  void put(int fd, const char* s) {
    ASSERT_EQ(write(fd, s, std::strlen(s)), (ssize_t)std::strlen(s));
  }

  int kq = -1;
  int sv[2] = {-1, -1};
};

TEST_F(Kqueue, ClearReportsReadOnceThenAgainOnNewData) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0x1234)), 0);
  struct kevent out[4];
  EXPECT_EQ(wait(out, 4, 0), 0) << "nothing to read yet";
  put(sv[1], "a");
  ASSERT_EQ(wait(out, 4, 1000), 1);
  EXPECT_EQ(out[0].ident, (uintptr_t)sv[0]);
  EXPECT_EQ(out[0].filter, EVFILT_READ);
  EXPECT_EQ(udata_of(out[0]), 0x1234u);
  EXPECT_FALSE(out[0].flags & EV_EOF);
  EXPECT_EQ(wait(out, 4, 0), 0) << "EV_CLEAR: retrieved, so reset (the byte is still unread)";
  put(sv[1], "b");
  EXPECT_EQ(wait(out, 4, 1000), 1) << "new data is a new transition";
}

TEST_F(Kqueue, ReAddModifiesInsteadOfDuplicating) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 1)), 0);
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 2)), 0);
  put(sv[1], "a");
  struct kevent out[4];
  ASSERT_EQ(wait(out, 4, 1000), 1);
  EXPECT_EQ(udata_of(out[0]), 2u);
}

TEST_F(Kqueue, UdataCarriesA64BitTag) {
  const uintptr_t tag = (uintptr_t{0xDEADBEEF} << 32) | 0x00C0FFEE;
  ASSERT_EQ(change(ev(sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, tag)), 0);
  struct kevent out[4];
  ASSERT_EQ(wait(out, 4, 1000), 1) << "an empty send buffer is writable at once";
  EXPECT_EQ(out[0].filter, EVFILT_WRITE);
  EXPECT_EQ(udata_of(out[0]), tag);
}

TEST_F(Kqueue, PeerShutdownSetsEofOnTheReadFilter) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  ASSERT_EQ(shutdown(sv[1], SHUT_WR), 0);
  struct kevent out[4];
  ASSERT_EQ(wait(out, 4, 1000), 1);
  EXPECT_EQ(out[0].filter, EVFILT_READ);
  EXPECT_TRUE(out[0].flags & EV_EOF);
  EXPECT_EQ(wait(out, 4, 0), 0) << "EV_CLEAR: the EOF is not reported again and again";
}

TEST_F(Kqueue, PeerCloseSetsEofOnTheWriteFilter) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR)), 0);
  struct kevent out[4];
  ASSERT_EQ(wait(out, 4, 1000), 1);  // writable from the start
  EXPECT_FALSE(out[0].flags & EV_EOF);
  close(sv[1]);
  sv[1] = -1;
  ASSERT_EQ(wait(out, 4, 1000), 1);
  EXPECT_EQ(out[0].filter, EVFILT_WRITE);
  EXPECT_TRUE(out[0].flags & EV_EOF) << "the reader disconnected";
}

TEST_F(Kqueue, OneCallRegistersBothFiltersAndDeletesBoth) {
  struct kevent add[2] = {ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR, 0, 7),
                          ev(sv[0], EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 7)};
  ASSERT_EQ(kevent(kq, add, 2, nullptr, 0, nullptr), 0);
  put(sv[1], "a");
  struct kevent out[4];
  int n = wait(out, 4, 1000);
  ASSERT_GE(n, 1);
  bool read = false;
  for (int i = 0; i < n; i++) read |= out[i].filter == EVFILT_READ;
  EXPECT_TRUE(read);
  struct kevent del[2] = {ev(sv[0], EVFILT_READ, EV_DELETE), ev(sv[0], EVFILT_WRITE, EV_DELETE)};
  ASSERT_EQ(kevent(kq, del, 2, nullptr, 0, nullptr), 0);
  put(sv[1], "b");
  EXPECT_EQ(wait(out, 4, 50), 0) << "deleted: no more events";
}

TEST_F(Kqueue, DeleteDropsAnEventAlreadyPending) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  put(sv[1], "a");
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_DELETE)), 0);
  struct kevent out[4];
  EXPECT_EQ(wait(out, 4, 50), 0);
}

TEST_F(Kqueue, ErrorWithoutRoomIsMinusOneAndErrno) {
  errno = 0;
  EXPECT_EQ(change(ev(sv[0], EVFILT_READ, EV_DELETE)), -1);
  EXPECT_EQ(errno, ENOENT) << "the event could not be found to be deleted";
  int fd = dup(sv[0]);
  close(fd);
  errno = 0;
  EXPECT_EQ(change(ev(fd, EVFILT_READ, EV_DELETE)), -1);
  EXPECT_EQ(errno, EBADF) << "the specified descriptor is invalid";
}

TEST_F(Kqueue, ReceiptAnswersEachChangeAndDrainsNoEvent) {
  ASSERT_EQ(change(ev(sv[0], EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  put(sv[1], "a");  // a read event is now pending
  struct kevent ch[2] = {ev(sv[1], EVFILT_READ, EV_DELETE | EV_RECEIPT),
                         ev(sv[1], EVFILT_WRITE, EV_ADD | EV_CLEAR | EV_RECEIPT)};
  struct kevent res[2];
  ASSERT_EQ(kevent(kq, ch, 2, res, 2, nullptr), 2) << "one receipt per change, failing or not";
  EXPECT_TRUE(res[0].flags & EV_ERROR);
  EXPECT_EQ(res[0].data, ENOENT);
  EXPECT_TRUE(res[1].flags & EV_ERROR);
  EXPECT_EQ(res[1].data, 0) << "success reads as EV_ERROR with data 0";
  struct kevent out[4];
  int n = wait(out, 4, 1000);
  bool read = false;
  for (int i = 0; i < n; i++)
    read |= out[i].filter == EVFILT_READ && out[i].ident == (uintptr_t)sv[0];
  EXPECT_TRUE(read) << "the pending read event was not drained by the receipts";
}

TEST_F(Kqueue, ListenerIsReadableWhenAConnectionIsPending) {
  int ln = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(ln, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(ln, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(ln, 8), 0);
  ASSERT_EQ(getsockname(ln, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(change(ev(ln, EVFILT_READ, EV_ADD | EV_CLEAR)), 0);
  struct kevent out[4];
  EXPECT_EQ(wait(out, 4, 0), 0);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(wait(out, 4, 1000), 1);
  EXPECT_EQ(out[0].ident, (uintptr_t)ln);
  ASSERT_EQ(change(ev(ln, EVFILT_READ, EV_DELETE)), 0);
  close(c);
  close(ln);
}

TEST_F(Kqueue, ZeroTimeoutPollsAndATimedWaitReturnsZeroWhenItRunsOut) {
  struct kevent out[4];
  auto t0 = Clock::now();
  EXPECT_EQ(wait(out, 4, 0), 0);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(50));
  t0 = Clock::now();
  EXPECT_EQ(wait(out, 4, 60), 0);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(59));
}

TEST_F(Kqueue, NoRoomForEventsReturnsAtOnceEvenWithoutATimeout) {
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ADD)), 0);
  auto t0 = Clock::now();
  EXPECT_EQ(kevent(kq, nullptr, 0, nullptr, 0, nullptr), 0);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(50));
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_DELETE)), 0);
}

TEST_F(Kqueue, UserEventTriggerWakesABlockedWait) {
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ADD, 0, 42)), 0);
  std::atomic<int> got{-2};
  struct kevent out[4];
  std::thread waiter([&] { got = kevent(kq, nullptr, 0, out, 4, nullptr); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(got.load(), -2) << "nothing triggered yet";
  auto t0 = Clock::now();
  ASSERT_EQ(change(ev(0, EVFILT_USER, 0, NOTE_TRIGGER)), 0);
  waiter.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
  ASSERT_EQ(got.load(), 1);
  EXPECT_EQ(out[0].filter, EVFILT_USER);
  EXPECT_EQ(out[0].ident, 0u);
  EXPECT_EQ(udata_of(out[0]), 42u);
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_DELETE)), 0);
}

TEST_F(Kqueue, UserEventWithoutClearStaysTriggeredUntilDisabled) {
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ADD)), 0);
  struct kevent out[4];
  EXPECT_EQ(wait(out, 4, 0), 0);
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER)), 0);
  EXPECT_EQ(wait(out, 4, 0), 1);
  EXPECT_EQ(wait(out, 4, 0), 1) << "no EV_CLEAR: still triggered";
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_DISABLE)), 0);
  EXPECT_EQ(wait(out, 4, 0), 0) << "disabled: not returned";
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ENABLE, NOTE_TRIGGER)), 0);
  EXPECT_EQ(wait(out, 4, 0), 1) << "enabled and triggered again";
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_DELETE)), 0);
  EXPECT_EQ(wait(out, 4, 0), 0);
}

TEST_F(Kqueue, UserEventWithClearResetsWhenRetrieved) {
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_ADD | EV_CLEAR)), 0);
  ASSERT_EQ(change(ev(0, EVFILT_USER, 0, NOTE_TRIGGER)), 0);
  struct kevent out[4];
  EXPECT_EQ(wait(out, 4, 0), 1);
  EXPECT_EQ(wait(out, 4, 0), 0);
  ASSERT_EQ(change(ev(0, EVFILT_USER, EV_DELETE)), 0);
}

TEST_F(Kqueue, TriggeringAMissingUserEventIsEnoent) {
  errno = 0;
  EXPECT_EQ(change(ev(5, EVFILT_USER, 0, NOTE_TRIGGER)), -1);
  EXPECT_EQ(errno, ENOENT);
}

}  // namespace
