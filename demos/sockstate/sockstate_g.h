// demos/sockstate/sockstate_g.h — the observer's calls for code running in a
// G: each runs inside mnp::blocking (Go's entersyscall), so a netlink dump or
// a scan of /proc never holds a P while other Gs wait for it.
#pragma once

#include "mnp/runtime.h"
#include "sockstate.h"

namespace sockstate::g {

inline Counts count(const Query& q) {
  Counts c;
  mnp::blocking([&] { c = sockstate::count(q); });
  return c;
}
inline int dump(const Query& q, std::vector<Socket>* out) {
  int err = 0;
  mnp::blocking([&] { err = sockstate::dump(q, out); });
  return err;
}
inline ProcStatus proc_status(pid_t pid = 0) {
  ProcStatus st;
  mnp::blocking([&] { st = sockstate::proc_status(pid); });
  return st;
}
inline pid_t owner_pid(uint64_t inode) {
  pid_t pid = 0;
  mnp::blocking([&] { pid = sockstate::owner_pid(inode); });
  return pid;
}

}  // namespace sockstate::g
