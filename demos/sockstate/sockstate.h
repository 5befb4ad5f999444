// demos/sockstate/sockstate.h — what `ss` sees, as a library: the kernel's
// table of TCP sockets read through sock_diag netlink, and a process's own
// numbers read from /proc. Every experiment prints these numbers instead of
// telling you what happened.
//
//   sockstate::Query q;
//   q.port = 9000;                                   // local or remote port 9000
//   sockstate::Counts c = sockstate::count(q);
//   std::printf("%u in CLOSE-WAIT\n", c[sockstate::TcpState::close_wait]);
//
// How it asks (sock_diag(7)): a NETLINK_SOCK_DIAG socket, one
// SOCK_DIAG_BY_FAMILY request (struct inet_diag_req_v2, NLM_F_DUMP) per
// address family; the kernel answers with one struct inet_diag_msg per TCP
// socket in the states asked for, TIME_WAIT and orphaned FIN_WAIT_2 sockets
// included (they have no fd, so inode 0). This is what `ss -tan` does.
//
// The two queue numbers mean different things by state (inet_diag_msg):
//   LISTEN:   idiag_rqueue = connections in the accept queue (sk_ack_backlog),
//             idiag_wqueue = its maximum (the listen() backlog, capped by
//             net.core.somaxconn). `ss -ltn` prints them as Recv-Q / Send-Q.
//   others:   idiag_rqueue = bytes received, not yet read by the application;
//             idiag_wqueue = bytes written, not yet acknowledged by the peer.
//
// Not thread-safe per call site: each call opens its own netlink socket, so
// calls from different threads are independent. The calls block briefly
// (the kernel answers a dump at once); Gs may call them directly.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sockstate {

// TCP states, numbered as the kernel numbers them (include/net/tcp_states.h)
// and reports them in inet_diag_msg.idiag_state.
enum class TcpState : uint8_t {
  established = 1,
  syn_sent,
  syn_recv,
  fin_wait1,
  fin_wait2,
  time_wait,
  close,
  close_wait,
  last_ack,
  listen,
  closing,
  new_syn_recv,  // a request socket: SYN received, SYN-ACK sent (the SYN queue)
};
constexpr int kStates = 13;  // index 0 unused

// The name `ss` prints: "ESTAB", "CLOSE-WAIT", "FIN-WAIT-2", "TIME-WAIT", ...
const char* state_name(TcpState s);
// The state named `name` (ss's spelling, or with '_' for '-', any case);
// false if unknown.
bool parse_state(const std::string& name, TcpState* out);

struct Socket {
  TcpState state;
  std::string local, remote;  // "127.0.0.1:9000", "[::1]:9000"
  uint16_t local_port = 0, remote_port = 0;
  uint32_t rqueue = 0, wqueue = 0;  // see the header comment: LISTEN differs
  uint64_t inode = 0;               // 0: no fd (TIME_WAIT, orphaned FIN_WAIT_2)
};

struct Query {
  // Which sockets, by port. 0: any port.
  uint16_t port = 0;
  enum class Side { either, local, remote };
  Side side = Side::either;  // local: the server's sockets; remote: its clients'
  // Only sockets that are open fds of this process (matched by inode, as
  // `ss -p` does). 0: any process. Sockets with no fd never match.
  pid_t pid = 0;
  // Which states, a bitmask of 1 << TcpState. Default: all.
  uint32_t states = 0x1ffe;
};

// Every TCP socket (IPv4 and IPv6) matching q, appended to out. Returns 0,
// or the errno of the netlink call that failed.
int dump(const Query& q, std::vector<Socket>* out);

struct Counts {
  uint32_t n[kStates] = {};
  uint32_t total = 0;
  uint64_t rqueue = 0, wqueue = 0;  // sums over the non-LISTEN sockets
  uint32_t listen_queue = 0;        // LISTEN sockets: accept queue length...
  uint32_t listen_backlog = 0;      // ... and its maximum (summed if several)
  int error = 0;                    // errno if the dump failed
  uint32_t operator[](TcpState s) const { return n[static_cast<int>(s)]; }
};

// Counts the sockets matching q by state.
Counts count(const Query& q);
// "LISTEN 1 [accept queue 0/4096]  ESTAB 12  CLOSE-WAIT 5": the states with a
// non-zero count, in the kernel's order; "no sockets" if there are none.
std::string summary(const Counts& c);

// --- the process side: /proc ------------------------------------------------

// The inodes of the sockets among pid's open fds (/proc/PID/fd/N ->
// "socket:[INODE]"), sorted. Empty if pid is gone or not readable.
std::vector<uint64_t> socket_inodes(pid_t pid);
// The process that has the socket with this inode open (scans /proc/*/fd,
// as `ss -p` and `lsof -i` do), or 0.
pid_t owner_pid(uint64_t inode);

struct ProcStatus {
  long fds = -1;           // entries in /proc/PID/fd
  long fd_limit = -1;      // soft RLIMIT_NOFILE ("Max open files")
  long threads = -1;       // Threads: in /proc/PID/status
  long rss_kib = -1;       // VmRSS: resident memory
  long vm_size_kib = -1;   // VmSize: reserved virtual memory
  long rss_anon_kib = -1;  // RssAnon: resident anonymous memory (stacks, heap)
};
// What /proc says about pid (0: this process). Fields it could not read are -1.
ProcStatus proc_status(pid_t pid = 0);

// A machine-wide number from /proc/meminfo, in KiB ("KernelStack", ...), or -1.
long meminfo_kib(const char* field);

// A TcpExt counter of /proc/net/netstat ("ListenOverflows", "ListenDrops",
// ...), as `nstat -az TcpExtListenOverflows` shows it, or -1. Per network
// namespace, cumulative: take a difference.
long netstat_counter(const char* name);

// A number from /proc/sys ("net/ipv4/tcp_tw_reuse"), or -1.
long sysctl_long(const char* path);

}  // namespace sockstate
