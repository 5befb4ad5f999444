// runtime/trace/dump — the G dump, the poller's live table, schedtrace lines.
//
// These read other threads' Gs and pollDescs without stopping them (Go stops
// the world for its dump; a learner's tool here must not freeze the server
// it is looking at). Each row is therefore a snapshot of racing fields:
// consistent enough to read, not to act on. The readers are excluded from
// TSan and ASan instrumentation for that reason (they read another G's stack
// to walk its frames, and fields their owner may be writing).
#include <arpa/inet.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__linux__)
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>
#endif

#include "context/frame.h"
#include "mnp/debug.h"
#include "mnp/stats.h"
#include "mnp/sync.h"
#include "netpoll/netpoll.h"
#include "netpoll/poller.h"
#include "sched/sched.h"

#define MNP_NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined")))

namespace mnp::rt {

namespace {

void appendf(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string& s, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) s.append(buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1);
}

std::string demangle(const char* name) {
  if (!name) return "?";
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string s = (status == 0 && d) ? d : name;
  std::free(d);
  return s;
}

const char* status_text(GStatus s) {
  switch (s) {
    case GStatus::idle:
      return "idle";
    case GStatus::runnable:
      return "runnable";
    case GStatus::running:
      return "running";
    case GStatus::waiting:
      return "waiting";
    case GStatus::syscall:
      return "syscall";
    case GStatus::dead:
      return "dead";
  }
  return "?";
}

// dladdr knows only exported (dynamic) symbols: a function with internal
// linkage — everything in an anonymous namespace, a lambda's operator() —
// shows as "file+0x1234", which is where a server's own code lives. The
// fallback reads the object's full symbol table (.symtab, present unless the
// binary was stripped) once, and looks pc up in it. Linux (ELF) only.
struct ElfSym {
  uintptr_t addr, size;
  std::string name;
};
struct ElfSyms {
  bool pie = true;            // ET_DYN: symbol values are offsets from the load base
  std::vector<ElfSym> funcs;  // sorted by addr
};

#if defined(__linux__)
bool pread_all(int fd, void* buf, size_t n, off_t at) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, at);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r, n -= static_cast<size_t>(r), at += r;
  }
  return true;
}

std::unique_ptr<ElfSyms> load_elf_syms(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  auto out = std::make_unique<ElfSyms>();
  Elf64_Ehdr eh;
  bool ok = pread_all(fd, &eh, sizeof eh, 0) && std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
            eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_shentsize == sizeof(Elf64_Shdr) &&
            eh.e_shnum > 0 && eh.e_shnum < 4096;
  std::vector<Elf64_Shdr> sh(ok ? eh.e_shnum : 0);
  ok = ok &&
       pread_all(fd, sh.data(), sh.size() * sizeof(Elf64_Shdr), static_cast<off_t>(eh.e_shoff));
  for (size_t i = 0; ok && i < sh.size(); i++) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= sh.size()) continue;
    const Elf64_Shdr& strs = sh[sh[i].sh_link];
    if (sh[i].sh_size > (64u << 20) || strs.sh_size > (64u << 20)) break;  // not ours to read
    std::vector<Elf64_Sym> syms(sh[i].sh_size / sizeof(Elf64_Sym));
    std::vector<char> names(strs.sh_size + 1, '\0');
    if (!pread_all(fd, syms.data(), syms.size() * sizeof(Elf64_Sym),
                   static_cast<off_t>(sh[i].sh_offset)) ||
        !pread_all(fd, names.data(), strs.sh_size, static_cast<off_t>(strs.sh_offset)))
      break;
    for (const Elf64_Sym& y : syms) {
      if (ELF64_ST_TYPE(y.st_info) != STT_FUNC || y.st_value == 0 || y.st_name >= strs.sh_size)
        continue;
      out->funcs.push_back({y.st_value, y.st_size, &names[y.st_name]});
    }
    break;
  }
  ::close(fd);
  out->pie = eh.e_type == ET_DYN;
  std::sort(out->funcs.begin(), out->funcs.end(),
            [](const ElfSym& a, const ElfSym& b) { return a.addr < b.addr; });
  return out;
}
#endif

#if defined(__linux__)
// Whether pc lies in the main program. Its file is then /proc/self/exe:
// dladdr names it by argv[0], which need not be the file (a wrapper that
// exec'd it under another name: qemu-user's -0, for one).
bool in_main_program(uintptr_t pc) {
  struct Q {
    uintptr_t pc;
    bool found;
  } q{pc, false};
  dl_iterate_phdr(
      [](dl_phdr_info* i, size_t, void* arg) {
        auto* q = static_cast<Q*>(arg);
        for (int k = 0; k < i->dlpi_phnum; k++) {
          const ElfW(Phdr)& ph = i->dlpi_phdr[k];
          uintptr_t lo = i->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD && q->pc >= lo && q->pc < lo + ph.p_memsz) {
            q->found = i->dlpi_name == nullptr || i->dlpi_name[0] == '\0';
            return 1;
          }
        }
        return 0;
      },
      &q);
  return q.found;
}
#endif

// The function around pc in the object dladdr named, from its .symtab, and
// pc's offset into it.
const ElfSym* elf_lookup(const Dl_info& info, uintptr_t pc, uintptr_t* off) {
#if defined(__linux__)
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<ElfSyms>> cache;  // per object, for good
  std::lock_guard<std::mutex> l(mu);
  const char* path = in_main_program(pc) ? "/proc/self/exe" : info.dli_fname;
  auto& syms = cache[path];
  if (!syms) syms = load_elf_syms(path);
  if (!syms || syms->funcs.empty()) return nullptr;
  uintptr_t at = syms->pie ? pc - reinterpret_cast<uintptr_t>(info.dli_fbase) : pc;
  auto it = std::upper_bound(syms->funcs.begin(), syms->funcs.end(), at,
                             [](uintptr_t a, const ElfSym& f) { return a < f.addr; });
  if (it == syms->funcs.begin()) return nullptr;
  --it;
  if (at >= it->addr + std::max<uintptr_t>(it->size, 1)) return nullptr;
  *off = at - it->addr;
  return &*it;
#else
  (void)info;
  (void)pc;
  (void)off;
  return nullptr;
#endif
}

std::string symbol(uintptr_t pc) {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(pc), &info) && info.dli_sname) {
    std::string s = demangle(info.dli_sname);
    if (s.size() > 100) s = s.substr(0, 97) + "...";
    appendf(s, "+0x%" PRIxPTR, pc - reinterpret_cast<uintptr_t>(info.dli_saddr));
    return s;
  }
  if (info.dli_fname && info.dli_fbase) {
    uintptr_t off = 0;
    if (const ElfSym* f = elf_lookup(info, pc, &off)) {
      std::string s = demangle(f->name.c_str());
      if (s.size() > 100) s = s.substr(0, 97) + "...";
      appendf(s, "+0x%" PRIxPTR, off);
      return s;
    }
  }
  if (info.dli_fname) {
    std::string s;
    appendf(s, "%s+0x%" PRIxPTR, info.dli_fname, pc - reinterpret_cast<uintptr_t>(info.dli_fbase));
    return s;
  }
  return "?";
}

// Walks a parked G's frame-pointer chain from its saved switch frame. The
// runtime is built with -fno-omit-frame-pointer; frames of code built
// without it end the walk early. Every load is checked against the G's
// stack bounds, so a torn read cannot fault.
//
// Copied stacks (MNP_STACK=copy): a saved G's frames are in its save_buf,
// at the offsets they will have on the shared stack again; the walk reads
// the copy through the same address arithmetic (load below). The G whose
// frames are still on the shared stack (saving is lazy) is walked there,
// like a page stack. Any other copy-mode G (one that is just being switched)
// gets no backtrace.
MNP_NO_SANITIZE void backtrace_g(const G* gp, std::string& out) {
  auto lo = reinterpret_cast<uintptr_t>(gp->stack.lo);
  auto hi = reinterpret_cast<uintptr_t>(gp->stack.hi);
  auto sp = reinterpret_cast<uintptr_t>(gp->ctx.sp);
  const char* copy = nullptr;  // the saved image, or nullptr: read the stack itself
  if (gp->copystack && !(gp->saved && gp->save_buf) && sched.shared_owner == gp) {
    // On the shared stack: read it in place.
  } else if (gp->copystack) {
    if (!gp->saved || !gp->save_buf || gp->save_size == 0) {
      out += "    (copied stack, not saved now: no backtrace)\n";
      return;
    }
    copy = gp->save_buf;
    lo = sp;
    hi = sp + gp->save_size;
  }
  auto in = [&](uintptr_t a) { return a >= lo && a + 16 <= hi && (a & 7) == 0; };
  auto load = [&](uintptr_t a) {
    return copy ? *reinterpret_cast<const uintptr_t*>(copy + (a - sp))
                : *reinterpret_cast<const uintptr_t*>(a);
  };
  if (!in(sp)) return;
#if defined(__x86_64__)
  uintptr_t fp = load(sp + MNP_X64_OFF_RBP);
  uintptr_t pc = load(sp + MNP_X64_OFF_RIP);
#elif defined(__aarch64__)
  uintptr_t fp = load(sp + MNP_A64_OFF_X29);
  uintptr_t pc = load(sp + MNP_A64_OFF_X30);
#else
  return;
#endif
  for (int depth = 0; depth < 24 && pc; depth++) {
    // A return address points after its call: name the call's own byte.
    appendf(out, "    #%-2d 0x%012" PRIxPTR " %s\n", depth, pc,
            symbol(depth ? pc - 1 : pc).c_str());
    if (!in(fp)) break;
    uintptr_t next = load(fp);
    pc = load(fp + 8);
    if (next <= fp) break;
    fp = next;
  }
}

std::string fmt_ms(int64_t ns) {
  std::string s;
  if (ns < 0) ns = 0;
  if (ns < 10'000'000)
    appendf(s, "%.1f ms", static_cast<double>(ns) / 1e6);
  else if (ns < 120'000'000'000)
    appendf(s, "%" PRId64 " ms", ns / 1'000'000);
  else
    appendf(s, "%" PRId64 " minutes", ns / 60'000'000'000);
  return s;
}

}  // namespace

// One line for a G: "goroutine 7 [IO wait (read) fd=9, 1.2 ms] main::{lambda()#2}".
MNP_NO_SANITIZE std::string g_header(const G* gp, int64_t now) {
  std::string s;
  GStatus st = gp->status.load(std::memory_order_acquire);
  appendf(s, "goroutine %" PRIu64 " [", gp->id);
  if (st == GStatus::waiting || st == GStatus::syscall) {
    s += wait_reason_text(gp->wait_reason);
    if (gp->wait_fd >= 0) appendf(s, " fd=%d", gp->wait_fd);
    s += ", ";
    s += fmt_ms(now - gp->wait_since);
  } else {
    s += status_text(st);
  }
  s += "]";
  if (gp->is_main) s += " (main)";
  if (gp->fn) {
    s += " ";
    std::string n = demangle(gp->fn->type->name());
    if (n.size() > 80) n = n.substr(0, 77) + "...";
    s += n;
  }
  return s;
}

MNP_NO_SANITIZE std::string dump_goroutines() {
  std::string out;
  int64_t now = nanotime_coarse();
  std::vector<G*> gs;
  {
    LockGuard<SpinLock> l(sched.allgs_lock);
    gs = sched.allgs;
  }
  size_t live = 0;
  for (G* gp : gs) {
    GStatus st = gp->status.load(std::memory_order_acquire);
    if (st == GStatus::dead || st == GStatus::idle) continue;
    live++;
    out += g_header(gp, now);
    out += ":\n";
    if (gp->held_mutexes)
      appendf(out, "    holds %" PRIu64 " mutex(es), last %p\n", gp->held_mutexes, gp->held_mutex);
    if (gp->copystack) {
      // Copied stack: what its parked frames cost (no fill pattern needed).
      if (gp->saved)
        appendf(out, "    stack: %zu bytes saved (copied stack; largest %zu)\n", gp->save_size,
                gp->save_max);
      else if (sched.shared_owner == gp)
        appendf(out, "    stack: %zu bytes on the shared stack (copied stack, not saved yet)\n",
                static_cast<size_t>(gp->stack.hi - static_cast<char*>(gp->ctx.sp)));
    } else if (size_t hw = stack_high_water(gp->stack)) {
      appendf(out, "    stack: %zu of %zu bytes used (high-water mark)\n", hw, gp->stack.size());
    }
    if (st == GStatus::waiting || st == GStatus::runnable) backtrace_g(gp, out);
    out += "\n";
  }
  std::string head;
  appendf(head, "mnp: %zu goroutines (%d Ps, backend %s)\n\n", live, sched.nprocs,
          sched.poller ? sched.poller->name() : "-");
  return head + out;
}

namespace {

struct TableCtx {
  std::string* out;
  int64_t now;
  int rows;
};

std::string slot_text(uintptr_t v, int64_t now) {
  if (v == pdNil) return "nil";
  if (v == pdReady) return "ready";
  if (v == pdWait) return "wait";
  const G* gp = reinterpret_cast<const G*>(v);
  std::string s;
  appendf(s, "G%" PRIu64 " %s", gp->id, fmt_ms(now - gp->wait_since).c_str());
  return s;
}

std::string deadline_text(int64_t d, int64_t now) {
  if (d == 0) return "-";
  if (d < 0) return "expired";
  std::string s;
  appendf(s, "in %s", fmt_ms(d - now).c_str());
  return s;
}

std::string addr_text(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = "?";
  std::string s;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    appendf(s, "%s:%u", ip, ntohs(a->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    appendf(s, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else if (ss.ss_family == AF_UNIX) {
    s = "unix";
  } else {
    s = "-";
  }
  return s;
}

MNP_NO_SANITIZE void table_row(PollDesc* pd, void* arg) {
  auto* c = static_cast<TableCtx*>(arg);
  if (pd->fd < 0 || (pd->fdmu.load(std::memory_order_relaxed) & 1) ||
      (pd->info.load(std::memory_order_relaxed) & pollClosing))
    return;
  // The fd's addresses, asked now (the fd could be closed and reused in
  // between: this is a snapshot).
  sockaddr_storage la{}, ra{};
  socklen_t ll = sizeof la, rl = sizeof ra;
  if (getsockname(pd->fd, reinterpret_cast<sockaddr*>(&la), &ll) != 0) la.ss_family = AF_UNSPEC;
  if (getpeername(pd->fd, reinterpret_cast<sockaddr*>(&ra), &rl) != 0) ra.ss_family = AF_UNSPEC;
  const char* kind = pd->kind == 1 ? "listen" : pd->kind == 0 ? "conn" : "other";
  std::string addrs = addr_text(la);
  if (pd->kind != 1) addrs += " -> " + addr_text(ra);
  appendf(*c->out,
          "%5d  %-6s  %-47s  %-16s  %-16s  %-11s  %-11s  %6u  %10" PRIu64 "  %10" PRIu64 "\n",
          pd->fd, kind, addrs.c_str(), slot_text(pd->rg.load(), c->now).c_str(),
          slot_text(pd->wg.load(), c->now).c_str(), deadline_text(pd->rd, c->now).c_str(),
          deadline_text(pd->wd, c->now).c_str(), pd->fdseq.load(), pd->bytes_read.load(),
          pd->bytes_written.load());
  c->rows++;
}

}  // namespace

std::string dump_netpoll_table() {
  std::string out;
  TableCtx c{&out, nanotime(), 0};
  appendf(out, "%5s  %-6s  %-47s  %-16s  %-16s  %-11s  %-11s  %6s  %10s  %10s\n", "fd", "kind",
          "local -> remote", "rg (read)", "wg (write)", "read dl", "write dl", "seq", "bytes in",
          "bytes out");
  pd_foreach(table_row, &c);
  appendf(out, "mnp: %d open pollDescs, backend %s\n", c.rows,
          sched.poller ? sched.poller->name() : "-");
  return out;
}

MNP_NO_SANITIZE std::string schedtrace(int64_t since_start_ns) {
  std::string s;
  int nm;
  {
    std::lock_guard<std::mutex> l(sched.lock);
    nm = static_cast<int>(sched.allm.size());
  }
  appendf(s,
          "SCHED %" PRId64
          "ms: gomaxprocs=%d idleprocs=%d threads=%d spinningthreads=%d "
          "idlethreads=%d runqueue=%d gs=%" PRId64 " [",
          since_start_ns / 1'000'000, sched.nprocs, sched.npidle.load(), nm,
          sched.nmspinning.load(), sched.nmidle, sched.runqsize.load(), sched.ngoroutines.load());
  for (size_t i = 0; i < sched.allp.size(); i++) {
    P* pp = sched.allp[i];
    uint32_t n = pp->runq.tail.load(std::memory_order_relaxed) -
                 pp->runq.head.load(std::memory_order_relaxed);
    if (pp->runnext.load(std::memory_order_relaxed)) n++;
    appendf(s, i ? " %u" : "%u", n);
  }
  appendf(s,
          "] syscalls=%" PRIu64 " polls=%" PRIu64 " events=%" PRIu64 " parks=%" PRIu64
          " switches=%" PRIu64 " steals=%" PRIu64,
          stat_syscalls(), stat(Stat::polls), stat(Stat::poll_events), stat(Stat::parks),
          stat(Stat::ctx_switches), stat(Stat::steals));
  return s;
}

}  // namespace mnp::rt

std::string mnp::debug::goroutines() {
  return rt::dump_goroutines();
}
std::string mnp::debug::netpoll_table() {
  return rt::dump_netpoll_table();
}
std::string mnp::debug::schedtrace_line() {
  return rt::schedtrace(0);
}
