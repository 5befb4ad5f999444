// mnp/poll.h — a file descriptor the runtime serves (Go's internal/poll.FD).
//
// net/ builds Conn and Listener on this; nothing above it touches a raw fd's
// readiness. An FD owns:
//   - the kernel fd, non-blocking and close-on-exec;
//   - an fdMutex: a reference count taken by every operation, one lock per
//     direction (so two readers never wait on the same pollDesc slot) and a
//     "closing" bit, so close never races a syscall on the fd (CONFORMANCE 18);
//   - its pollDesc, registered with the poller once, in init().
//
// Every operation is the same loop (Photon's doio_once, Go's fd_unix.go):
// try the syscall; on EAGAIN, park on the pollDesc until ready, closed or past
// the deadline; retry. A read that finds data makes exactly one syscall.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>

#include "mnp/error.h"
#include "mnp/runtime.h"

namespace mnp {

namespace rt {
struct PollDesc;
}

class FD {
 public:
  enum class Kind : uint8_t { stream, listener, other };

  FD() = default;
  FD(const FD&) = delete;
  FD& operator=(const FD&) = delete;
  ~FD();  // closes the fd if still open (an error is dropped: call close() to see it)

  // Takes ownership of sysfd (already non-blocking and close-on-exec) and
  // registers it with the poller. On error sysfd is closed.
  Error init(int sysfd, Kind kind);

  // Reads up to n bytes; parks while none are available. {0, eof} at end of
  // file. Fewer than n bytes is not an error.
  IOResult read(void* buf, size_t n);
  // Writes all n bytes, parking as often as the send buffer demands. On error
  // n says how many bytes the kernel accepted before it.
  IOResult write(const void* buf, size_t n);
  // Accepts one connection; returns the new kernel fd (non-blocking,
  // close-on-exec), not yet registered: wrap it in an FD.
  Result<int> accept(sockaddr* sa, socklen_t* len);
  // Connects a socket; parks until the handshake ends, the write deadline
  // passes or the FD is closed.
  Error connect(const sockaddr* sa, socklen_t len);

  // Marks the FD closing, wakes every parked G (they return Errc::closed),
  // and closes the kernel fd once no G is inside a syscall on it. Returns
  // once the fd is closed. A second close returns Errc::closed.
  Error close();
  // shutdown(2) (SHUT_WR for a half-close).
  Error shutdown(int how);

  // Deadlines for future and already parked operations; Deadline{} clears.
  void set_read_deadline(Deadline d);
  void set_write_deadline(Deadline d);
  void set_deadline(Deadline d) {
    set_read_deadline(d);
    set_write_deadline(d);
  }

  // setsockopt / getsockopt, through the fdMutex (so never on a closed fd).
  Error setsockopt(int level, int name, const void* val, socklen_t len);
  Error getsockopt(int level, int name, void* val, socklen_t* len);

  // The kernel fd, for observation (ss, /proc) only; -1 once closed.
  int sysfd() const { return sysfd_; }
  Kind kind() const { return kind_; }

  // Bytes moved through this FD (also shown by the poller's live table).
  uint64_t bytes_read() const;
  uint64_t bytes_written() const;

 private:
  friend struct FDAccess;  // runtime/netpoll: the fdMutex, the completion path
  int sysfd_ = -1;
  Kind kind_ = Kind::other;
  // The pollDesc holds the fdMutex, the deadlines and the waiter slots; it
  // lives in the runtime's pollDesc cache and is reused, never freed.
  rt::PollDesc* pd_ = nullptr;
};

}  // namespace mnp
