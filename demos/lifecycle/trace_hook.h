// demos/lifecycle/trace_hook.h — a tiny syscall recorder for the lifecycle demo.
//
// trace_hook.cpp defines socket, bind, listen, accept4, connect, getsockname,
// getsockopt, setsockopt, shutdown, close, send, read and epoll_ctl in this
// program. The runtime (linked into the same executable) calls these by name,
// so its calls land here first: each is recorded (name, fd, arguments, result)
// and then made with syscall(2), exactly as libc would. Calls on fds that are
// not sockets (the poller's eventfd, files) are not recorded.
//
// It is an LD_PRELOAD-style interposer built in, not a tracer: it sees what
// the runtime asks for, not what other libraries do inside libc. strace -f
// -e trace=network sees the same calls from the kernel's side.
#pragma once

namespace trace_hook {

void enable();  // start recording (off at start)
void clear();   // forget what was recorded
// Prints each recorded call on its own line, in order, after prefix.
void print(const char* prefix);

}  // namespace trace_hook
