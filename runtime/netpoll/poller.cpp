// runtime/netpoll/poller — picking a backend by name (MNP_BACKEND).
#include "netpoll/poller.h"

#include <cstring>

namespace mnp::rt {

const char* default_backend() {
#if defined(MNP_HAVE_EPOLL)
  return "epoll";
#elif defined(MNP_HAVE_KQUEUE)
  return "kqueue";
#else
  return "none";
#endif
}

Poller* make_poller(const char* name, std::string* why) {
  if (std::strcmp(name, "epoll") == 0) {
#if defined(MNP_HAVE_EPOLL)
    return make_epoll_poller(why);
#else
    *why = "epoll is Linux's: not on this platform";
    return nullptr;
#endif
  }
  if (std::strcmp(name, "kqueue") == 0) {
#if defined(MNP_HAVE_KQUEUE)
    return make_kqueue_poller(why);
#else
    *why = "kqueue is the BSDs' and macOS's: not on this platform";
    return nullptr;
#endif
  }
  if (std::strcmp(name, "uring-poll") == 0 || std::strcmp(name, "uring") == 0) {
#if defined(MNP_HAVE_URING)
    return name[5] == '-' ? make_uring_poll_poller(why) : make_uring_poller(why);
#else
    *why = "built without liburing (meson -Dio_uring=enabled needs liburing-dev)";
    return nullptr;
#endif
  }
  *why = std::string("unknown backend \"") + name + "\" (epoll, kqueue, uring-poll, uring)";
  return nullptr;
}

}  // namespace mnp::rt
