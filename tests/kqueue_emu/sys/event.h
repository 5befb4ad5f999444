// tests/kqueue_emu/sys/event.h — a <sys/event.h> for Linux, for tests only.
//
// It declares the part of kqueue(2) that runtime/netpoll/poller_kqueue.cpp
// uses, and nothing more, so that a backend change that reaches for more
// fails to compile here instead of being emulated wrongly:
//
//   kqueue(), kevent()
//   filters  EVFILT_READ, EVFILT_WRITE (sockets and pipes), EVFILT_USER
//   flags    EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_CLEAR, EV_RECEIPT
//            (input); EV_EOF, EV_ERROR (output)
//   fflags   NOTE_TRIGGER (EVFILT_USER)
//
// kqueue_emu.cpp implements them over epoll and says, rule by rule, which
// sentence of kqueue(2) each piece follows. The numbers are FreeBSD's; no
// program compiled against this header talks to a real kernel with them.
// meson -Dkqueue_emu=true puts this directory on the include path of the
// runtime (runtime/meson.build) so the conformance suite runs "kqueue" on
// Linux.
#ifndef MNP_TESTS_KQUEUE_EMU_SYS_EVENT_H
#define MNP_TESTS_KQUEUE_EMU_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
  uintptr_t ident;  // the fd (EVFILT_READ/WRITE) or a user-chosen number (EVFILT_USER)
  int16_t filter;   // EVFILT_*
  uint16_t flags;   // EV_*: actions on input, EV_EOF / EV_ERROR on output
  uint32_t fflags;  // filter-specific: NOTE_TRIGGER for EVFILT_USER
  intptr_t data;    // filter-specific; the errno in an EV_ERROR receipt
  void* udata;      // opaque, handed back with every event of this knote
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)
#define EVFILT_USER (-11)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ENABLE 0x0004
#define EV_DISABLE 0x0008
#define EV_CLEAR 0x0020
#define EV_RECEIPT 0x0040
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define NOTE_TRIGGER 0x01000000

#ifdef __cplusplus
extern "C" {
#endif

int kqueue(void);
int kevent(int kq, const struct kevent* changelist, int nchanges, struct kevent* eventlist,
           int nevents, const struct timespec* timeout);

#ifdef __cplusplus
}
#endif

#endif  // MNP_TESTS_KQUEUE_EMU_SYS_EVENT_H
