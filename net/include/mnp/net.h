// mnp/net.h — Go's net package, C++ manners.
//
//   auto [ln, err] = mnp::net::listen("tcp", "127.0.0.1:0");
//   mnp::go([&] { auto [c, e] = ln->accept(); ... });
//   auto [conn, derr] = mnp::net::dial("tcp", ln->addr().to_string());
//   conn->write("hello", 5);
//
// Every call looks blocking and parks only the calling G. Sockets are
// non-blocking and close-on-exec; writes never raise SIGPIPE (MSG_NOSIGNAL,
// SO_NOSIGPIPE, and SIGPIPE ignored by mnp::run).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <string_view>

#include "mnp/error.h"
#include "mnp/poll.h"
#include "mnp/runtime.h"

namespace mnp::net {

// An IPv4 or IPv6 address and port.
class Addr {
 public:
  Addr() = default;
  static Addr from_sockaddr(const sockaddr* sa, socklen_t len);
  // Parses a literal "1.2.3.4:80", "[::1]:80", ":80" (all interfaces, IPv4).
  // No DNS: see resolve().
  static Result<Addr> parse(std::string_view hostport);

  const sockaddr* sockaddr_ptr() const { return reinterpret_cast<const sockaddr*>(&ss_); }
  socklen_t len() const { return len_; }
  int family() const { return ss_.ss_family; }
  uint16_t port() const;
  bool is_ipv6() const { return family() == AF_INET6; }
  std::string ip() const;         // "127.0.0.1", "::1"
  std::string to_string() const;  // "127.0.0.1:9000", "[::1]:9000"
  bool operator==(const Addr& o) const;

 private:
  sockaddr_storage ss_{};
  socklen_t len_ = 0;
};

// Resolves "host:port": literals and "localhost" at once; other names with
// getaddrinfo inside mnp::blocking, off the scheduler's threads. The first
// address, IPv4 before IPv6 ("localhost" is 127.0.0.1).
Result<Addr> resolve(std::string_view hostport);
// The same for a network: "tcp" (either family, IPv4 first), "tcp4" or "tcp6"
// ("localhost" is ::1 for tcp6).
Result<Addr> resolve(std::string_view network, std::string_view hostport);

class Conn {
 public:
  ~Conn();  // closes if still open

  IOResult read(void* buf, size_t n);         // some bytes, or {0, eof}
  IOResult write(const void* buf, size_t n);  // all n bytes, or an error
  IOResult write(std::string_view s) { return write(s.data(), s.size()); }
  Error close();        // wakes parked readers and writers with Errc::closed
  Error close_write();  // half-close: sends FIN, reading still works
  Error close_read();

  void set_deadline(Deadline d);
  void set_read_deadline(Deadline d);
  void set_write_deadline(Deadline d);

  const Addr& local_addr() const { return local_; }
  const Addr& remote_addr() const { return remote_; }

  Error set_no_delay(bool on);
  Error set_keep_alive(bool on, Duration period = Duration::zero());
  Error set_linger(int seconds);  // <0: default (Go's SetLinger)
  Error set_read_buffer(int bytes);
  Error set_write_buffer(int bytes);  // SO_SNDBUF: the knob the vote demo uses

  int sysfd() const { return fd_.sysfd(); }  // for observation only
  FD& fd() { return fd_; }

 private:
  friend struct ConnAccess;
  FD fd_;
  Addr local_, remote_;
};

class Listener {
 public:
  ~Listener();

  // Waits for and returns the next connection. Errc::too_many_files when the
  // process is out of fds (EMFILE/ENFILE): returned at once, the connection
  // stays queued in the kernel and the listener stays usable; the caller backs
  // off (sleeps, or closes something) before accepting again, as Go's
  // net/http server does — accept itself does not wait or spin.
  Result<std::unique_ptr<Conn>> accept();
  Error close();  // wakes a parked accept with Errc::closed
  void set_deadline(Deadline d);
  const Addr& addr() const { return addr_; }
  int sysfd() const { return fd_.sysfd(); }
  FD& fd() { return fd_; }

 private:
  friend struct ListenerAccess;
  FD fd_;
  Addr addr_;
};

struct ListenConfig {
  int backlog = 4096;       // listen(2) backlog, capped by net.core.somaxconn
  bool reuse_addr = true;   // SO_REUSEADDR (Go sets it on listeners)
  bool reuse_port = false;  // SO_REUSEPORT
};

// network: "tcp", "tcp4" or "tcp6". address: "host:port"; port 0 picks one.
Result<std::unique_ptr<Listener>> listen(std::string_view network, std::string_view address,
                                         const ListenConfig& cfg = {});

struct DialConfig {
  Duration timeout = Duration::zero();  // zero: no timeout (the kernel's own)
  Deadline deadline{};                  // also honoured; the earlier one wins
  Addr local;                           // bind before connect if set
  // A per-socket ephemeral port range (IP_LOCAL_PORT_RANGE, Linux 6.3): lets
  // the TIME_WAIT demo exhaust a few ports without touching the machine's.
  uint16_t local_port_lo = 0, local_port_hi = 0;
};

Result<std::unique_ptr<Conn>> dial(std::string_view network, std::string_view address,
                                   const DialConfig& cfg = {});
inline Result<std::unique_ptr<Conn>> dial_timeout(std::string_view network,
                                                  std::string_view address, Duration timeout) {
  DialConfig cfg;
  cfg.timeout = timeout;
  return dial(network, address, cfg);
}

}  // namespace mnp::net
