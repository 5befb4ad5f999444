// demos/sockstate/sockstate.cpp — sock_diag netlink and /proc, read the way
// ss(8) and lsof(8) read them. See sockstate.h.
#include "sockstate.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sockstate {
namespace {

constexpr const char* kNames[kStates] = {
    "?",      "ESTAB",      "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2",   "TIME-WAIT",
    "UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN",   "CLOSING",    "NEW-SYN-RECV",
};

std::string format_addr(int family, const uint32_t* raw, uint16_t port_be) {
  char ip[INET6_ADDRSTRLEN] = "?";
  inet_ntop(family, raw, ip, sizeof ip);
  std::string port = std::to_string(ntohs(port_be));
  return family == AF_INET6 ? "[" + std::string(ip) + "]:" + port : std::string(ip) + ":" + port;
}

bool wanted(const Query& q, const inet_diag_msg& m, const std::vector<uint64_t>& inodes) {
  if (q.port != 0) {
    uint16_t lp = ntohs(m.id.idiag_sport), rp = ntohs(m.id.idiag_dport);
    bool local = lp == q.port, remote = rp == q.port;
    switch (q.side) {
      case Query::Side::local:
        if (!local) return false;
        break;
      case Query::Side::remote:
        if (!remote) return false;
        break;
      case Query::Side::either:
        if (!local && !remote) return false;
        break;
    }
  }
  if (q.pid != 0 && !std::binary_search(inodes.begin(), inodes.end(), uint64_t{m.idiag_inode})) {
    return false;
  }
  return true;
}

// One SOCK_DIAG_BY_FAMILY dump for one address family over the netlink
// socket nl. Returns 0 or an errno.
int dump_family(int nl, uint8_t family, const Query& q, const std::vector<uint64_t>& inodes,
                std::vector<Socket>* out) {
  struct {
    nlmsghdr nlh;
    inet_diag_req_v2 req;
  } msg{};
  msg.nlh.nlmsg_len = sizeof msg;
  msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  msg.nlh.nlmsg_seq = family;
  msg.req.sdiag_family = family;
  msg.req.sdiag_protocol = IPPROTO_TCP;
  msg.req.idiag_states = q.states;

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;  // nl_pid 0: the kernel
  if (sendto(nl, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return errno;
  }

  // The answer comes as datagrams of several inet_diag_msg each, ended by
  // NLMSG_DONE (or NLMSG_ERROR).
  std::vector<nlmsghdr> storage(64 * 1024 / sizeof(nlmsghdr));  // aligned for nlmsghdr
  char* buf = reinterpret_cast<char*>(storage.data());
  const size_t size = storage.size() * sizeof(nlmsghdr);
  for (;;) {
    ssize_t n = recv(nl, buf, size, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        return e->error == 0 ? 0 : -e->error;
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      auto* m = static_cast<inet_diag_msg*>(NLMSG_DATA(h));
      if (!wanted(q, *m, inodes)) continue;
      Socket s;
      s.state = static_cast<TcpState>(m->idiag_state);
      s.local = format_addr(m->idiag_family, m->id.idiag_src, m->id.idiag_sport);
      s.remote = format_addr(m->idiag_family, m->id.idiag_dst, m->id.idiag_dport);
      s.local_port = ntohs(m->id.idiag_sport);
      s.remote_port = ntohs(m->id.idiag_dport);
      s.rqueue = m->idiag_rqueue;
      s.wqueue = m->idiag_wqueue;
      s.inode = m->idiag_inode;
      out->push_back(std::move(s));
    }
  }
}

bool all_digits(const char* s) {
  if (*s == '\0') return false;
  for (; *s; s++) {
    if (!std::isdigit(static_cast<unsigned char>(*s))) return false;
  }
  return true;
}

// Calls f(inode) for each socket among pid's fds; stops when f returns true.
template <class F>
bool for_each_socket_inode(pid_t pid, F&& f) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd", static_cast<int>(pid));
  DIR* d = opendir(path);
  if (d == nullptr) return false;
  bool found = false;
  while (dirent* e = readdir(d)) {
    if (!all_digits(e->d_name)) continue;
    char link[320], target[64];
    std::snprintf(link, sizeof link, "%s/%s", path, e->d_name);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    unsigned long long ino = 0;
    if (std::sscanf(target, "socket:[%llu]", &ino) == 1 && f(static_cast<uint64_t>(ino))) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

// The number after `key` on the line of `file` that starts with it, or -1.
long field_of(const char* file, std::string_view key) {
  FILE* f = std::fopen(file, "re");
  if (f == nullptr) return -1;
  char line[256];
  long v = -1;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key.data(), key.size()) != 0) continue;
    const char* p = line + key.size();
    while (*p && !std::isdigit(static_cast<unsigned char>(*p))) p++;
    v = std::strtol(p, nullptr, 10);
    break;
  }
  std::fclose(f);
  return v;
}

}  // namespace

const char* state_name(TcpState s) {
  int i = static_cast<int>(s);
  return i > 0 && i < kStates ? kNames[i] : "?";
}

bool parse_state(const std::string& name, TcpState* out) {
  std::string want;
  for (char c : name) {
    want += c == '_' ? '-' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (want == "ESTABLISHED") want = "ESTAB";
  for (int i = 1; i < kStates; i++) {
    if (want == kNames[i]) {
      *out = static_cast<TcpState>(i);
      return true;
    }
  }
  return false;
}

int dump(const Query& q, std::vector<Socket>* out) {
  std::vector<uint64_t> inodes;
  if (q.pid != 0) {
    inodes = socket_inodes(q.pid);
    if (inodes.empty()) return 0;  // no sockets (or no process): nothing matches
  }
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return errno;
  int err = dump_family(nl, AF_INET, q, inodes, out);
  if (err == 0) err = dump_family(nl, AF_INET6, q, inodes, out);
  close(nl);
  return err;
}

Counts count(const Query& q) {
  std::vector<Socket> socks;
  Counts c;
  c.error = dump(q, &socks);
  for (const Socket& s : socks) {
    int i = static_cast<int>(s.state);
    if (i <= 0 || i >= kStates) continue;
    c.n[i]++;
    c.total++;
    if (s.state == TcpState::listen) {
      c.listen_queue += s.rqueue;
      c.listen_backlog += s.wqueue;
    } else {
      c.rqueue += s.rqueue;
      c.wqueue += s.wqueue;
    }
  }
  return c;
}

std::string summary(const Counts& c) {
  if (c.error != 0) return std::string("sock_diag failed: ") + std::strerror(c.error);
  std::string out;
  for (int i = 1; i < kStates; i++) {
    if (c.n[i] == 0) continue;
    if (!out.empty()) out += "  ";
    out += kNames[i];
    out += ' ';
    out += std::to_string(c.n[i]);
    if (i == static_cast<int>(TcpState::listen)) {
      out += " [accept queue " + std::to_string(c.listen_queue) + "/" +
             std::to_string(c.listen_backlog) + "]";
    }
  }
  return out.empty() ? "no sockets" : out;
}

std::vector<uint64_t> socket_inodes(pid_t pid) {
  std::vector<uint64_t> out;
  for_each_socket_inode(pid, [&](uint64_t ino) {
    out.push_back(ino);
    return false;
  });
  std::sort(out.begin(), out.end());
  return out;
}

pid_t owner_pid(uint64_t inode) {
  if (inode == 0) return 0;
  DIR* d = opendir("/proc");
  if (d == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = readdir(d)) {
    if (!all_digits(e->d_name)) continue;
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (for_each_socket_inode(pid, [&](uint64_t ino) { return ino == inode; })) {
      found = pid;
      break;
    }
  }
  closedir(d);
  return found;
}

ProcStatus proc_status(pid_t pid) {
  ProcStatus st;
  std::string base = pid == 0 ? "/proc/self" : "/proc/" + std::to_string(pid);
  std::string status = base + "/status";
  st.threads = field_of(status.c_str(), "Threads:");
  st.rss_kib = field_of(status.c_str(), "VmRSS:");
  st.vm_size_kib = field_of(status.c_str(), "VmSize:");
  st.rss_anon_kib = field_of(status.c_str(), "RssAnon:");
  st.fd_limit = field_of((base + "/limits").c_str(), "Max open files");
  if (DIR* d = opendir((base + "/fd").c_str())) {
    long n = 0;
    while (dirent* e = readdir(d)) {
      if (all_digits(e->d_name)) n++;
    }
    closedir(d);
    // Reading our own /proc/self/fd costs one fd for the directory itself.
    st.fds = pid == 0 ? n - 1 : n;
  }
  return st;
}

long meminfo_kib(const char* field) {
  std::string key = std::string(field) + ":";
  return field_of("/proc/meminfo", key);
}

long netstat_counter(const char* name) {
  // Pairs of lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 12 34 ...".
  FILE* f = std::fopen("/proc/net/netstat", "re");
  if (f == nullptr) return -1;
  std::vector<char> nbuf(8192), vbuf(8192);
  char* names = nbuf.data();
  char* values = vbuf.data();
  long v = -1;
  while (v < 0 && std::fgets(names, 8192, f) && std::fgets(values, 8192, f)) {
    if (std::strncmp(names, "TcpExt:", 7) != 0) continue;
    char *sn = nullptr, *sv = nullptr;
    char* n = strtok_r(names, " \n", &sn);
    char* x = strtok_r(values, " \n", &sv);
    while ((n = strtok_r(nullptr, " \n", &sn)) && (x = strtok_r(nullptr, " \n", &sv))) {
      if (std::strcmp(n, name) == 0) {
        v = std::atol(x);
        break;
      }
    }
  }
  std::fclose(f);
  return v;
}

long sysctl_long(const char* path) {
  std::string p = std::string("/proc/sys/") + path;
  FILE* f = std::fopen(p.c_str(), "re");
  if (f == nullptr) return -1;
  long v = -1;
  if (std::fscanf(f, "%ld", &v) != 1) v = -1;
  std::fclose(f);
  return v;
}

}  // namespace sockstate
