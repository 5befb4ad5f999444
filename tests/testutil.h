// tests/testutil.h — what every runtime test shares.
//
//   class ReadWrite : public mnptest::BackendTest {};
//   INSTANTIATE_TEST_SUITE_P(Backends, ReadWrite, ::testing::ValuesIn(mnptest::all_backends()),
//                            mnptest::backend_test_name);
//   TEST_P(ReadWrite, Something) {
//     run_on_backend([] {            // mnp::run on this case's backend, under a watchdog
//       mnptest::ConnPair p = mnptest::connected_pair();
//       ASSERT_TRUE(p);
//       mnptest::Group g;            // declared after what its Gs use: waits for them first
//       g.go([&] { ... });
//     });
//   }
//
// The rules the helpers enforce (CONFORMANCE.md 30 and "no test may hang"):
//   - a backend this machine cannot run is skipped by name, with the reason;
//   - every run is watched: past its limit the process prints which test hung,
//     asks the runtime for a G dump (SIGQUIT, if it handles it) and aborts;
//   - when a test's main G returns, no other G may be alive (mnp::num_goroutines()
//     == 1), and the fds open after the test are those open before it.
//
// Inside a G, ASSERT_* returns from the enclosing lambda: use it only before
// Gs that borrow the lambda's locals are spawned, EXPECT_* afterwards.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "mnp/error.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/stats.h"
#include "mnp/sync.h"

// ThreadSanitizer slows every memory access 5-15x: a test that counts what
// one scheduling round batches (not what is correct) skips under it.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif
#else
inline constexpr bool kUnderTsan = false;
#endif

namespace mnptest {

using namespace std::chrono_literals;
using mnp::Errc;
using ConnPtr = std::unique_ptr<mnp::net::Conn>;
using ListenerPtr = std::unique_ptr<mnp::net::Listener>;

// ---------------------------------------------------------------------------
// Time and CPU

inline mnp::Deadline now() {
  return mnp::Clock::now();
}
inline double ms_between(mnp::Deadline a, mnp::Deadline b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
inline double ms_since(mnp::Deadline t) {
  return ms_between(t, now());
}

// "Within a small bound" for deadlines and wake-ups: generous, CI has 2 cores.
inline constexpr double kSlackMs = 250.0;

// CPU time used by the whole process (every thread), in ms.
inline double cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

// Polls pred from a G (sleeping `step` between tries) until it holds or
// `timeout` passes; returns its last value.
template <class Pred>
bool wait_until(Pred pred, mnp::Duration timeout = 2s, mnp::Duration step = 1ms) {
  const auto until = now() + timeout;
  while (!pred()) {
    if (now() >= until) return pred();
    mnp::sleep(step);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Errors, printed by kind and message

inline const char* errc_name(Errc e) {
  switch (e) {
    case Errc::ok:
      return "ok";
    case Errc::closed:
      return "Errc::closed";
    case Errc::timeout:
      return "Errc::timeout";
    case Errc::eof:
      return "Errc::eof";
    case Errc::reset:
      return "Errc::reset";
    case Errc::refused:
      return "Errc::refused";
    case Errc::addr_in_use:
      return "Errc::addr_in_use";
    case Errc::addr_not_avail:
      return "Errc::addr_not_avail";
    case Errc::too_many_files:
      return "Errc::too_many_files";
    case Errc::invalid:
      return "Errc::invalid";
    case Errc::line_too_long:
      return "Errc::line_too_long";
    case Errc::not_supported:
      return "Errc::not_supported";
    case Errc::chan_closed:
      return "Errc::chan_closed";
    case Errc::sys:
      return "Errc::sys";
    case Errc::no_such_host:
      return "Errc::no_such_host";
    default:
      break;  // a kind added after these tests
  }
  return "Errc::(other)";
}

inline std::string describe(const mnp::Error& e) {
  if (!e) return "no error";
  std::string s = errc_name(e.kind());
  s += " (\"" + e.message() + "\"";
  if (e.sys_errno()) s += ", errno " + std::to_string(e.sys_errno());
  return s + ")";
}

#define EXPECT_ERRC(err, kind)                                                          \
  EXPECT_TRUE((err) == (kind)) << "expected " << ::mnptest::errc_name(kind) << ", got " \
                               << ::mnptest::describe(err)
#define ASSERT_ERRC(err, kind)                                                          \
  ASSERT_TRUE((err) == (kind)) << "expected " << ::mnptest::errc_name(kind) << ", got " \
                               << ::mnptest::describe(err)
#define EXPECT_NO_ERR(err) EXPECT_FALSE(err) << ::mnptest::describe(err)
#define ASSERT_NO_ERR(err) ASSERT_FALSE(err) << ::mnptest::describe(err)

// ---------------------------------------------------------------------------
// Open fds (/proc/self/fd)

struct OpenFd {
  int fd;
  std::string target;  // readlink: "socket:[123]", "/dev/null", "anon_inode:[eventpoll]"
};

// The process's open fds, without the one used to list them. Empty if the
// directory cannot be opened (e.g. the fd table is full).
inline std::vector<OpenFd> open_fds() {
  std::vector<OpenFd> out;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return out;
  const int self = dirfd(dir);
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == self) continue;
    char buf[512];
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t n = readlink(path.c_str(), buf, sizeof buf);
    out.push_back({fd, n >= 0 ? std::string(buf, static_cast<size_t>(n)) : std::string("?")});
  }
  closedir(dir);
  std::sort(out.begin(), out.end(), [](const OpenFd& a, const OpenFd& b) { return a.fd < b.fd; });
  return out;
}

inline int count_open_fds() {
  return static_cast<int>(open_fds().size());
}

// The fds of `after` that are not in `before` (same number and same target).
inline std::vector<OpenFd> fds_added(const std::vector<OpenFd>& before,
                                     const std::vector<OpenFd>& after) {
  std::vector<OpenFd> out;
  for (const auto& a : after) {
    const bool known = std::any_of(before.begin(), before.end(), [&](const OpenFd& b) {
      return b.fd == a.fd && b.target == a.target;
    });
    if (!known) out.push_back(a);
  }
  return out;
}

inline std::string describe(const std::vector<OpenFd>& fds) {
  std::string s;
  for (const auto& f : fds) s += "  fd " + std::to_string(f.fd) + " -> " + f.target + "\n";
  return s.empty() ? "  (none)\n" : s;
}

inline bool fd_is_open(int fd) {
  return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

// ---------------------------------------------------------------------------
// Backends

inline std::vector<std::string> all_backends() {
  std::vector<std::string> v;
  for (const char* const* p = mnp::backend_names(); p && *p; ++p) v.emplace_back(*p);
  return v;
}

// GoogleTest names allow [A-Za-z0-9_] only: "uring-poll" becomes "uring_poll".
inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

// ---------------------------------------------------------------------------
// The watchdog: no test may hang

class Watchdog {
 public:
  Watchdog(std::string what, std::chrono::milliseconds limit)
      : what_(std::move(what)), limit_(limit), thread_([this] { watch(); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void watch() {
    std::unique_lock<std::mutex> lk(mu_);
    if (cv_.wait_for(lk, limit_, [this] { return done_; })) return;
    std::fprintf(stderr,
                 "\nmnp-tests watchdog: %s still running after %lld ms: the test hung "
                 "(a lost wake-up, a deadlock, or a G waiting for something that never "
                 "comes). Aborting.\n",
                 what_.c_str(), static_cast<long long>(limit_.count()));
    std::fflush(stderr);
    // If the runtime dumps its Gs on SIGQUIT (DESIGN.md §8), ask for it first.
    struct sigaction sa {};
    if (sigaction(SIGQUIT, nullptr, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
        (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN)) {
      std::abort();
    }
    ::kill(::getpid(), SIGQUIT);
    std::this_thread::sleep_for(2s);
    std::abort();
  }

  std::string what_;
  std::chrono::milliseconds limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

// ---------------------------------------------------------------------------
// Gs spawned by a test, awaited before the test returns

class Group {
 public:
  Group() = default;
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group() { wg_.wait(); }

  template <class F>
  void go(F&& fn) {
    wg_.add(1);
    mnp::go([wg = &wg_, f = std::forward<F>(fn)]() mutable {
      f();
      wg->done();
    });
  }
  void wait() { wg_.wait(); }

 private:
  mnp::WaitGroup wg_;
};

// ---------------------------------------------------------------------------
// The fixture: one instance per backend

class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string why = mnp::backend_unavailable_reason(GetParam().c_str());
    if (!why.empty()) GTEST_SKIP() << GetParam() << ": " << why;
    fds_before_ = open_fds();
    check_fds_ = true;
  }

  void TearDown() override {
    if (!check_fds_) return;
    // 30: the test leaves the fd table as it found it.
    const auto after = open_fds();
    EXPECT_EQ(after.size(), fds_before_.size())
        << "open fds changed across the test on backend " << GetParam() << "; new:\n"
        << describe(fds_added(fds_before_, after)) << "gone:\n"
        << describe(fds_added(after, fds_before_));
  }

  const char* backend() const { return GetParam().c_str(); }

  // Runs fn as the main G of mnp::run on this case's backend (processors from
  // $MNP_PROCS), under a watchdog. When fn returns no other G may be alive.
  template <class F>
  void run_on_backend(F&& fn, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    mnp::Options opts;
    opts.backend = GetParam().c_str();
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    Watchdog dog(std::string(info->test_suite_name()) + "." + info->name(), limit);
    bool main_returned = false;
    const int rc = mnp::run(
        [&] {
          fn();
          main_returned = true;
          // 30: every G the test started has ended. One that just called
          // done() may still be on its way out: give it a moment.
          wait_until([] { return mnp::num_goroutines() <= 1; }, 2s);
          EXPECT_EQ(mnp::num_goroutines(), 1) << "Gs outlived the test's main G (leaked)";
        },
        opts);
    ASSERT_EQ(rc, 0) << "mnp::run could not start backend " << GetParam();
    EXPECT_TRUE(main_returned) << "mnp::run returned before the test's main G did (the main G "
                                  "was abandoned mid-test)";
  }

 private:
  std::vector<OpenFd> fds_before_;
  bool check_fds_ = false;
};

// ---------------------------------------------------------------------------
// Listening, dialing, connected pairs (through the runtime)

inline ListenerPtr must_listen(std::string_view network = "tcp",
                               std::string_view addr = "127.0.0.1:0",
                               const mnp::net::ListenConfig& cfg = {}) {
  auto r = mnp::net::listen(network, addr, cfg);
  if (r.err || !r.value) {
    ADD_FAILURE() << "listen " << network << " " << addr << ": " << describe(r.err);
    return nullptr;
  }
  return std::move(r.value);
}

inline ConnPtr must_dial(std::string_view addr, std::string_view network = "tcp") {
  auto r = mnp::net::dial(network, addr);
  if (r.err || !r.value) {
    ADD_FAILURE() << "dial " << network << " " << addr << ": " << describe(r.err);
    return nullptr;
  }
  return std::move(r.value);
}

inline ConnPtr must_accept(mnp::net::Listener& ln) {
  auto r = ln.accept();
  if (r.err || !r.value) {
    ADD_FAILURE() << "accept on " << ln.addr().to_string() << ": " << describe(r.err);
    return nullptr;
  }
  return std::move(r.value);
}

struct ConnPair {
  ConnPtr client;  // the dialer's end
  ConnPtr server;  // the accepted end
  explicit operator bool() const { return client && server; }
};

// Listens on `addr` (port 0), dials it, accepts, closes the listener.
inline ConnPair connected_pair(std::string_view network = "tcp",
                               std::string_view addr = "127.0.0.1:0") {
  ConnPair p;
  ListenerPtr ln = must_listen(network, addr);
  if (!ln) return p;
  p.client = must_dial(ln->addr().to_string(), network);
  if (p.client) p.server = must_accept(*ln);
  ln->close();
  return p;
}

struct ReadAll {
  std::string data;
  mnp::Error err;
};

// Reads until n bytes arrived or an error (eof included) stops it.
inline ReadAll read_exact(mnp::net::Conn& c, size_t n) {
  ReadAll out;
  std::vector<char> buf(std::min<size_t>(n, 64 << 10) + 1);
  while (out.data.size() < n) {
    const auto r = c.read(buf.data(), std::min(buf.size(), n - out.data.size()));
    out.data.append(buf.data(), r.n);
    if (r.err) {
      out.err = r.err;
      break;
    }
    if (r.n == 0) {
      out.err = mnp::Error(Errc::sys, "read returned 0 bytes without an error");
      break;
    }
  }
  return out;
}

// A byte pattern with no short period, so a lost, duplicated or reordered
// chunk shows up at its offset.
inline char pattern_byte(size_t i) {
  return static_cast<char>(((i * 2654435761u) >> 11) ^ (i >> 16));
}
inline std::vector<char> make_pattern(size_t n, size_t offset = 0) {
  std::vector<char> v(n);
  for (size_t i = 0; i < n; i++) v[i] = pattern_byte(offset + i);
  return v;
}
// The offset of the first byte of buf that differs from the pattern at
// `offset`, or SIZE_MAX.
inline size_t pattern_mismatch(const char* buf, size_t n, size_t offset) {
  for (size_t i = 0; i < n; i++)
    if (buf[i] != pattern_byte(offset + i)) return offset + i;
  return SIZE_MAX;
}

// ---------------------------------------------------------------------------
// Plain kernel sockets: the simplest peer when the test needs what the
// runtime would hide (an RST with SO_LINGER 0, a peer that never reads, a
// shutdown(SHUT_WR) of its own). Non-blocking; the helpers wait with
// mnp::sleep, so they must run inside a G.

inline void set_int_opt(int fd, int level, int name, int v) {
  setsockopt(fd, level, name, &v, sizeof v);
}

// SO_LINGER {on, 0}: close() sends RST instead of FIN.
inline void raw_linger_zero(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}
inline void raw_reset(int fd) {
  raw_linger_zero(fd);
  ::close(fd);
}

class RawListener {
 public:
  // Listens on 127.0.0.1:0. A non-zero rcvbuf is set before listen(2), so
  // every accepted socket inherits it (a small receive window).
  explicit RawListener(int rcvbuf = 0, int backlog = 128) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (rcvbuf > 0) set_int_opt(fd_, SOL_SOCKET, SO_RCVBUF, rcvbuf);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(fd_, backlog) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    port_ = ntohs(sa.sin_port);
  }
  RawListener(const RawListener&) = delete;
  RawListener& operator=(const RawListener&) = delete;
  ~RawListener() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  uint16_t port() const { return port_; }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }

  // Accepts one queued connection (non-blocking, close-on-exec); -1 after
  // `timeout` or on error.
  int accept(mnp::Duration timeout = 2s) {
    const auto until = now() + timeout;
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c >= 0) return c;
      if (errno != EAGAIN && errno != EINTR) return -1;
      if (now() >= until) return -1;
      mnp::sleep(1ms);
    }
  }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A non-blocking, close-on-exec TCP socket, not connected.
inline int raw_socket(int family = AF_INET) {
  return ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

// Connects fd to addr and waits (up to timeout) for the handshake. Needs no
// new fd, so it works while the fd table is full.
inline bool raw_connect(int fd, const mnp::net::Addr& addr, mnp::Duration timeout = 2s) {
  if (::connect(fd, addr.sockaddr_ptr(), addr.len()) == 0) return true;
  if (errno != EINPROGRESS) return false;
  const auto until = now() + timeout;
  for (;;) {
    pollfd pfd{fd, POLLOUT, 0};
    if (::poll(&pfd, 1, 0) == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      return err == 0;
    }
    if (now() >= until) return false;
    mnp::sleep(1ms);
  }
}

// Sends all n bytes; false on error or timeout.
inline bool raw_write_all(int fd, const void* p, size_t n, mnp::Duration timeout = 2s) {
  const char* b = static_cast<const char*>(p);
  const auto until = now() + timeout;
  while (n > 0) {
    const ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      b += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (now() >= until) return false;
    mnp::sleep(1ms);
  }
  return true;
}
inline bool raw_write_all(int fd, std::string_view s) {
  return raw_write_all(fd, s.data(), s.size());
}

// Reads up to n bytes: > 0 bytes, 0 at EOF, -1 on error (errno), -2 after timeout.
inline ssize_t raw_read_some(int fd, void* p, size_t n, mnp::Duration timeout = 2s) {
  const auto until = now() + timeout;
  for (;;) {
    const ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r >= 0) return r;
    if (errno != EAGAIN && errno != EINTR) return -1;
    if (now() >= until) return -2;
    mnp::sleep(1ms);
  }
}

// Reads exactly n bytes (fewer on EOF, error or timeout).
inline std::string raw_read_exact(int fd, size_t n, mnp::Duration timeout = 2s) {
  std::string out;
  std::vector<char> buf(std::min<size_t>(n, 64 << 10) + 1);
  const auto until = now() + timeout;
  while (out.size() < n) {
    const auto left = std::chrono::duration_cast<mnp::Duration>(until - now());
    if (left <= mnp::Duration::zero()) break;
    const ssize_t r = raw_read_some(fd, buf.data(), std::min(buf.size(), n - out.size()), left);
    if (r <= 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Counters: differences over a window

class StatWindow {
 public:
  StatWindow() { reset(); }
  void reset() {
    for (int i = 0; i < kN; i++) base_[i] = mnp::stat(static_cast<mnp::Stat>(i));
  }
  uint64_t operator()(mnp::Stat s) const { return mnp::stat(s) - base_[static_cast<int>(s)]; }

 private:
  static constexpr int kN = static_cast<int>(mnp::Stat::count_);
  uint64_t base_[kN];
};

// ---------------------------------------------------------------------------
// The fd table: limits, exhaustion, reuse of a given number

// Raises the soft RLIMIT_NOFILE to at least `want` for the scope.
class ScopedNofile {
 public:
  explicit ScopedNofile(rlim_t want) {
    getrlimit(RLIMIT_NOFILE, &old_);
    if (old_.rlim_cur >= want) {
      ok_ = true;
      return;
    }
    if (old_.rlim_max != RLIM_INFINITY && old_.rlim_max < want) return;
    rlimit r = old_;
    r.rlim_cur = want;
    ok_ = setrlimit(RLIMIT_NOFILE, &r) == 0;
    changed_ = ok_;
  }
  ScopedNofile(const ScopedNofile&) = delete;
  ScopedNofile& operator=(const ScopedNofile&) = delete;
  ~ScopedNofile() {
    if (changed_) setrlimit(RLIMIT_NOFILE, &old_);
  }
  bool ok() const { return ok_; }
  rlim_t hard() const { return old_.rlim_max; }

 private:
  rlimit old_{};
  bool ok_ = false;
  bool changed_ = false;
};

// Fills the fd table: lowers the soft RLIMIT_NOFILE to a few above the
// highest fd in use and opens /dev/null until EMFILE. release() (or the
// destructor) closes the fillers and restores the limit. While it holds,
// nothing in the process can open an fd, /proc/self/fd listings included.
class FdExhaustion {
 public:
  FdExhaustion() {
    const auto fds = open_fds();
    const int maxfd = fds.empty() ? 1024 : fds.back().fd;
    getrlimit(RLIMIT_NOFILE, &old_);
    rlimit r = old_;
    r.rlim_cur = static_cast<rlim_t>(maxfd) + 1 + 8;
    if (r.rlim_cur > old_.rlim_cur) r.rlim_cur = old_.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) return;
    lowered_ = true;
    lowered_limit_ = r.rlim_cur;
    for (int i = 0; i < 100000; i++) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        last_errno_ = errno;
        break;
      }
      fillers_.push_back(fd);
    }
  }
  FdExhaustion(const FdExhaustion&) = delete;
  FdExhaustion& operator=(const FdExhaustion&) = delete;
  ~FdExhaustion() { release(); }

  bool exhausted() const { return last_errno_ == EMFILE; }
  rlim_t limit() const { return lowered_limit_; }
  void release() {
    for (int fd : fillers_) ::close(fd);
    fillers_.clear();
    if (lowered_) setrlimit(RLIMIT_NOFILE, &old_);
    lowered_ = false;
  }

 private:
  rlimit old_{};
  bool lowered_ = false;
  rlim_t lowered_limit_ = 0;
  int last_errno_ = 0;
  std::vector<int> fillers_;
};

// Makes `target` the lowest free fd number, so the next socket(2) gets it:
// fills the free numbers below it with /dev/null placeholders, closed when
// this goes out of scope. ok() is false if target is taken.
class LowestFreeFd {
 public:
  explicit LowestFreeFd(int target) {
    for (int i = 0; i < 65536; i++) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) return;
      if (fd == target) {
        ::close(fd);
        ok_ = true;
        return;
      }
      if (fd > target) {
        ::close(fd);
        return;
      }
      held_.push_back(fd);
    }
  }
  LowestFreeFd(const LowestFreeFd&) = delete;
  LowestFreeFd& operator=(const LowestFreeFd&) = delete;
  ~LowestFreeFd() {
    for (int fd : held_) ::close(fd);
  }
  bool ok() const { return ok_; }

 private:
  std::vector<int> held_;
  bool ok_ = false;
};

// ---------------------------------------------------------------------------
// IPv6

// "" when [::1] can be bound here, else why not (for GTEST_SKIP).
inline std::string ipv6_loopback_unavailable_reason() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket(AF_INET6): ") + std::strerror(errno);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  std::string why;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    why = std::string("bind [::1]:0: ") + std::strerror(errno);
  ::close(fd);
  return why;
}

}  // namespace mnptest
