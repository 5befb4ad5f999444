// mnp/error.h — errors are values (Go's internal/poll and net manners).
//
// An Error is small and cheap to return on the hot path: a kind that callers
// compare against (closed, deadline exceeded, EOF, reset, ...), the errno the
// kernel gave where there was one, the operation that failed ("read",
// "accept", ...) and, off the hot path only, a context string (an address).
//
//   auto [n, err] = conn.read(buf);
//   if (err == mnp::Errc::timeout) { ... }   // compared by identity, never by text
//   if (err) std::puts(err.message().c_str());
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace mnp {

// What went wrong, as a caller tests for it. The kernel errno is kept beside
// the kind, so `sys` covers every errno that has no kind of its own.
enum class Errc : int {
  ok = 0,
  closed,          // use of closed network connection (Go: net.ErrClosed)
  timeout,         // i/o deadline exceeded (Go: os.ErrDeadlineExceeded)
  eof,             // end of file: the peer closed its side (Go: io.EOF)
  reset,           // connection reset by peer / broken pipe (ECONNRESET, EPIPE)
  refused,         // connection refused (ECONNREFUSED)
  addr_in_use,     // address already in use (EADDRINUSE)
  addr_not_avail,  // cannot assign requested address (EADDRNOTAVAIL)
  too_many_files,  // too many open files (EMFILE, ENFILE)
  no_such_host,    // a name lookup found nothing (Go: "no such host")
  invalid,         // bad argument: malformed address, bad flag, ...
  line_too_long,   // bufio: a line longer than the reader's maximum
  not_supported,   // the backend or platform lacks what was asked
  chan_closed,     // send on a closed channel (runtime/sync)
  sys,             // any other errno: see Error::sys_errno()
};

// The canonical text of a kind, as Go prints it ("i/o timeout", ...).
const char* errc_text(Errc e) noexcept;

// Maps an errno to its kind (ECONNRESET -> reset, EMFILE -> too_many_files, ...).
Errc errc_from_errno(int err) noexcept;

class Error {
 public:
  Error() noexcept = default;
  Error(Errc kind, const char* op = nullptr, int sys_errno = 0) noexcept
      : kind_(kind), errno_(sys_errno), op_(op) {}

  // An error from a failed syscall: the kind is derived from the errno.
  static Error from_errno(const char* op, int err) noexcept {
    return Error(errc_from_errno(err), op, err);
  }

  explicit operator bool() const noexcept { return kind_ != Errc::ok; }
  bool ok() const noexcept { return kind_ == Errc::ok; }
  Errc kind() const noexcept { return kind_; }
  int sys_errno() const noexcept { return errno_; }
  const char* op() const noexcept { return op_; }
  bool timeout() const noexcept { return kind_ == Errc::timeout; }

  // Adds where it happened ("127.0.0.1:9000->127.0.0.1:41234"); allocates,
  // so only error paths call it.
  Error& with_context(std::string ctx) {
    context_ = std::move(ctx);
    return *this;
  }
  const std::string& context() const noexcept { return context_; }

  // "read tcp 127.0.0.1:9000->127.0.0.1:41234: connection reset by peer"
  std::string message() const;

  friend bool operator==(const Error& e, Errc k) noexcept { return e.kind_ == k; }

 private:
  Errc kind_ = Errc::ok;
  int errno_ = 0;
  const char* op_ = nullptr;  // static string
  std::string context_;       // empty (no allocation) on the hot path
};

// The result of an I/O call: bytes moved, and the error that stopped it.
// n may be > 0 together with an error (a write cut short by a reset).
struct IOResult {
  size_t n = 0;
  Error err;
};

// A value or an error, for calls that produce something (accept, dial).
template <class T>
struct Result {
  T value{};
  Error err;
};

}  // namespace mnp
