// runtime/netpoll/poller — the one interface every backend implements.
//
// Go's netpoll_<os>.go has five functions: init, open, close, poll, break.
// So does this (init is the constructor, break is wake). A completion
// backend (io_uring "uring") also performs the I/O itself: FD's operations
// ask `completion()` and, if set, hand the operation to the backend instead
// of trying the syscall and waiting for readiness.
//
// Threads: open/close/wake may be called from any M. poll(0) may be called
// by several Ms at once; poll(delay != 0) by one M at a time (the scheduler
// guarantees it: sched.lastpoll is 0 while that M blocks).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "mnp/error.h"

namespace mnp::rt {

struct G;
struct PollDesc;

class Poller {
 public:
  virtual ~Poller() = default;
  virtual const char* name() const = 0;

  // Registers fd with pd, for read and write readiness and hang-up, once.
  // Returns 0 or an errno.
  virtual int open(int fd, PollDesc* pd) = 0;
  // Deregisters fd; pd is closing and no G waits on it.
  virtual void close(int fd, PollDesc* pd) = 0;
  // Waits up to `delay` ns (< 0: until an event or wake; 0: do not block)
  // and returns the Gs that readiness made runnable, linked by schedlink.
  virtual G* poll(int64_t delay) = 0;
  // Interrupts a blocked poll from another thread (Go's netpollBreak).
  // Coalesced: many calls before the poller wakes cost one syscall.
  virtual void wake() = 0;

  // Submits what the backend has batched (io_uring SQEs). The scheduler
  // calls it once per scheduling round, from any M, before it looks for the
  // next G; a backend with nothing pending returns at once.
  virtual void flush() {}

  // --- completion backends ------------------------------------------------
  virtual bool completion() const { return false; }
  virtual IOResult read(PollDesc*, void*, size_t) { return {0, Error(Errc::not_supported)}; }
  virtual IOResult write(PollDesc*, const void*, size_t) { return {0, Error(Errc::not_supported)}; }
  virtual Result<int> accept(PollDesc*, sockaddr*, socklen_t*) {
    return {-1, Error(Errc::not_supported)};
  }
  virtual Error connect(PollDesc*, const sockaddr*, socklen_t) {
    return Error(Errc::not_supported);
  }
  // The pollDesc is closing: cancel its in-flight operations and return once
  // none can touch it (their memory) any more.
  virtual void evict(PollDesc*) {}
};

// Creates the named backend ("epoll", "kqueue", "uring-poll", "uring"), or
// returns nullptr and says why in *why (one line).
Poller* make_poller(const char* name, std::string* why);
// The platform's readiness poller: "epoll" on Linux, "kqueue" on BSD/macOS.
const char* default_backend();

// Per-backend factories (each backend's file defines its own).
Poller* make_epoll_poller(std::string* why);
Poller* make_kqueue_poller(std::string* why);
Poller* make_uring_poll_poller(std::string* why);
Poller* make_uring_poller(std::string* why);

}  // namespace mnp::rt
