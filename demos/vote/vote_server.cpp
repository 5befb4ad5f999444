// demos/vote/vote_server.cpp — experiments 8 and 9 of EXPERIMENTS.md: a voting
// server that one slow client freezes, and the same server fixed.
//
//   build/demos/vote-server --mode naive     # then: vote-load, and vote-attacker
//   build/demos/vote-server --mode fixed
//
// The protocol (one line each; vote_proto.h has the grammar): a client sends
// its ID ("voter-3\n"), then votes ("VOTE A\n"). After every vote the server
// sends the tally ("TALLY A=120 B=64 total=184\n") to every client that has
// voted. A malformed or overlong line gets "ERR <reason>\n" and is skipped;
// the connection goes on.
//
// naive  holds its one Mutex across the broadcast, writing to every voter in
//        turn. An attacker that votes (so it is a voter) and then stops reading
//        fills its receive buffer, then the server's send buffer for it; the
//        next broadcast's write to it parks the G, WITH THE MUTEX HELD. Every
//        other vote waits in Mutex::lock: the server stops.
// fixed  updates the tally and takes a snapshot under the lock (microseconds),
//        hands the snapshot to a broadcast worker G through a channel, and the
//        worker puts it in each voter's outbox (a bounded channel, --outbox
//        tallies: 1024, about a second of votes) without waiting. One writer G
//        per voter drains its outbox to the socket. A voter whose outbox is
//        full is too slow: it is dropped (closed) and that is logged. Nothing
//        a client does can stall a vote.
//
// The knob that makes the freeze come within seconds: --sndbuf BYTES (default
// 4096) sets SO_SNDBUF on every accepted connection (Conn::set_write_buffer;
// Linux doubles it for its bookkeeping and turns autotuning off). With
// --sndbuf 0 Linux autotunes the send buffer up to net.ipv4.tcp_wmem's max
// (4 MiB), and with ~25-byte tallies a naive server takes minutes, not
// seconds, to freeze: the attacker's Send-Q creeps up by ~25 bytes per vote.
//
// What to watch, once a second: votes/s (0 when frozen); in naive mode who
// holds the mutex and for how long, and how many votes wait for it; the
// largest Send-Q among the server's connections (sock_diag) and whose it is —
// the attacker's, filling up. In fixed mode: the "dropping" line.
//
// Confirm with: ss -tn 'sport = :9100' (the attacker's Send-Q);
//               MNP_DEBUG / SIGQUIT's G dump, where the runtime has one: all
//               voters in sync.Mutex.Lock, one G in IO wait (write).
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "mnp/bufio.h"
#include "mnp/chan.h"
#include "mnp/net.h"
#include "mnp/runtime.h"
#include "mnp/sync.h"
#include "sockstate_g.h"
#include "vote_proto.h"

namespace {

using namespace std::chrono_literals;

struct Flags {
  std::string mode;
  std::string addr = "127.0.0.1:9100";
  int sndbuf = 4096;
  size_t outbox = 1024;
};
Flags g_flags;

// One connected client. The reader G owns the connection's reads; writes are
// the broadcast's (naive: under the mutex; fixed: the client's writer G).
struct Client {
  std::unique_ptr<mnp::net::Conn> conn;
  std::string id = "?";  // written once by the reader G before it votes
  bool voted = false;    // naive: guarded by Naive::mu; fixed: the worker's
  mnp::Chan<std::string> outbox{g_flags.outbox};  // fixed only
};

// --- what every mode shares: counters, and who is who (for the Send-Q line) ---

std::atomic<uint64_t> g_votes{0};
std::atomic<int> g_clients{0}, g_voters{0};

// Remote port -> client ID, for naming the owner of a Send-Q. Its own small
// lock, never held across I/O (so the naive server's freeze does not reach it).
mnp::Mutex g_names_mu;
std::map<uint16_t, std::string> g_names;  // guarded by g_names_mu

void name_client(const Client& c) {
  g_names_mu.lock();
  g_names[c.conn->remote_addr().port()] = c.id;
  g_names_mu.unlock();
}
void forget_client(const Client& c) {
  g_names_mu.lock();
  g_names.erase(c.conn->remote_addr().port());
  g_names_mu.unlock();
}

// One more vote for option; false if it would be a new option beyond
// vote::kMaxOptions (the tally's size is bounded, whatever clients send).
bool count_vote(vote::Tally& tally, std::string_view option) {
  auto it = tally.find(std::string(option));
  if (it == tally.end()) {
    if (tally.size() == vote::kMaxOptions) return false;
    it = tally.emplace(std::string(option), 0).first;
  }
  it->second++;
  return true;
}

// --- naive: the broadcast under the mutex ----------------------------------------

struct Naive {
  mnp::Mutex mu;
  vote::Tally tally;                            // guarded by mu
  uint64_t total = 0;                           // guarded by mu
  std::vector<std::shared_ptr<Client>> voters;  // guarded by mu
  // For the ticker, which must not take mu: when mu was taken, and how many
  // votes are waiting for it.
  std::atomic<int64_t> locked_at{0};
  std::atomic<int> waiting{0};
};
Naive g_naive;

// False (and no vote) when the option would be one more than kMaxOptions.
bool naive_vote(const std::shared_ptr<Client>& c, std::string_view option) {
  g_naive.waiting++;
  g_naive.mu.lock();
  g_naive.waiting--;
  if (!count_vote(g_naive.tally, option)) {
    g_naive.mu.unlock();
    return false;
  }
  g_naive.locked_at = mnp::nanotime();
  g_naive.total++;
  if (!c->voted) {
    c->voted = true;
    g_naive.voters.push_back(c);
    g_voters++;
  }
  std::string line = vote::format_tally(g_naive.tally);
  for (auto& v : g_naive.voters) {
    v->conn->write(line);  // THE BUG: may park for ever, with mu held
  }
  g_votes++;
  g_naive.locked_at = 0;
  g_naive.mu.unlock();
  return true;
}

void naive_leave(const std::shared_ptr<Client>& c) {
  g_naive.mu.lock();
  std::erase(g_naive.voters, c);
  if (c->voted) g_voters--;
  g_naive.mu.unlock();
}

// --- fixed: a short lock, a channel, a broadcast worker, bounded outboxes ---------

struct Update {
  uint64_t seq = 0;  // the total after this vote: snapshots are ordered by it
  std::string line;
  std::shared_ptr<Client> join;   // a first vote: add this client to the voters
  std::shared_ptr<Client> leave;  // a client gone: remove it
};

struct Fixed {
  mnp::Mutex mu;
  vote::Tally tally;                // guarded by mu
  uint64_t total = 0;               // guarded by mu
  mnp::Chan<Update> updates{1024};  // votes -> the broadcast worker
};
Fixed g_fixed;

bool fixed_vote(const std::shared_ptr<Client>& c, std::string_view option) {
  Update u;
  g_fixed.mu.lock();  // held for a map update and a string: microseconds
  if (!count_vote(g_fixed.tally, option)) {
    g_fixed.mu.unlock();
    return false;
  }
  u.seq = ++g_fixed.total;
  u.line = vote::format_tally(g_fixed.tally);
  g_fixed.mu.unlock();
  if (!c->voted) {
    c->voted = true;  // only this client's reader G reads or writes it here
    u.join = c;
  }
  g_votes++;
  g_fixed.updates.send(std::move(u));  // waits only if the worker is 1024 behind
  return true;
}

// Drops a voter that cannot keep up: closing the connection wakes its writer
// G (parked in write) and its reader G with Errc::closed.
void drop(Client& v) {
  sockstate::Query q;
  q.port = v.conn->local_addr().port();
  q.side = sockstate::Query::Side::local;
  std::vector<sockstate::Socket> socks;
  sockstate::g::dump(q, &socks);
  uint32_t sendq = 0;
  for (const auto& s : socks) {
    if (s.remote_port == v.conn->remote_addr().port()) sendq = s.wqueue;
  }
  std::printf(
      "vote-server[fixed]: dropping %s (%s): its outbox of %zu tallies is full, Send-Q "
      "%u bytes; votes go on\n",
      v.id.c_str(), v.conn->remote_addr().to_string().c_str(), v.outbox.cap(), sendq);
  v.outbox.close();
  v.conn->close();
}

// The broadcast worker: the only G that touches the voter list. It never
// waits on a client: try_send into each outbox, drop whoever is full.
void broadcast_worker() {
  std::vector<std::shared_ptr<Client>> voters;
  uint64_t last_seq = 0;
  for (Update u : g_fixed.updates) {
    if (u.join) {
      voters.push_back(u.join);
      g_voters++;
    }
    if (u.leave) {
      if (std::erase(voters, u.leave) > 0) g_voters--;
      continue;
    }
    // Votes reach the channel in nearly, not exactly, the order of their
    // totals; a tally older than one already sent would only confuse clients.
    if (u.seq <= last_seq) continue;
    last_seq = u.seq;
    for (size_t i = 0; i < voters.size();) {
      if (voters[i]->outbox.try_send(u.line) == mnp::ChanStatus::would_block) {
        drop(*voters[i]);
        voters.erase(voters.begin() + static_cast<long>(i));
        g_voters--;
        continue;
      }
      i++;
    }
  }
}

// One per voter: the outbox to the socket. Parks in write if the client is
// slow; only this client's tallies wait. Tallies already queued go out in the
// same write (one syscall), so a writer that fell behind catches up fast.
void writer(std::shared_ptr<Client> c) {
  std::string batch;
  for (std::string& line : c->outbox) {
    batch = std::move(line);
    for (int i = 0; i < 64; i++) {
      auto more = c->outbox.try_recv();
      if (more.status != mnp::ChanStatus::ok) break;
      batch += *more.value;
    }
    if (c->conn->write(batch).err) break;
  }
}

// "ERR <reason>\n" to a client that sent a bad line. Naive: written at once
// (the write lock keeps it whole among the broadcast's tallies); fixed:
// through the outbox like every other line, so only the writer G writes. A
// client that cannot take it is being dropped anyway: false ends the reader.
bool reply_error(Client& c, const char* why, bool naive) {
  std::string line = std::string("ERR ") + why + "\n";
  if (naive) return !c.conn->write(line).err;
  return c.outbox.try_send(std::move(line)) == mnp::ChanStatus::ok;
}

// --- both: one reader G per client ------------------------------------------------

void serve(std::shared_ptr<Client> c, bool naive) {
  if (g_flags.sndbuf > 0) c->conn->set_write_buffer(g_flags.sndbuf);
  g_clients++;
  if (!naive) mnp::go([c] { writer(c); });
  // Lines are short (an ID, a vote): 256 bytes is generous, and bounds what
  // one client can make the server buffer.
  mnp::bufio::Reader in(*c->conn, 4096, 256);
  bool have_id = false;
  for (;;) {
    auto [line, err] = in.read_line();
    const char* bad = nullptr;
    if (err == mnp::Errc::line_too_long) {
      bad = "line longer than 256 bytes (skipped)";
    } else if (err) {
      break;
    } else if (vote::Request r = vote::parse_request(line, have_id); r.kind == vote::ReqKind::bad) {
      bad = r.error;
    } else if (r.kind == vote::ReqKind::id) {
      c->id = std::string(r.arg);
      name_client(*c);
      have_id = true;
    } else if (!(naive ? naive_vote(c, r.arg) : fixed_vote(c, r.arg))) {
      bad = "too many options (at most 64)";
    }
    if (bad && !reply_error(*c, bad, naive)) break;
  }
  g_clients--;
  forget_client(*c);
  if (naive) {
    naive_leave(c);
  } else {
    c->outbox.close();  // ends the writer G (a second close is harmless)
    Update u;
    u.leave = c;
    g_fixed.updates.send(std::move(u));
  }
  c->conn->close();
}

// --- once a second: what is going on, from counters and the kernel -----------------

void ticker(uint16_t port, bool naive) {
  uint64_t last = 0;
  int64_t t0 = mnp::nanotime();
  for (;;) {
    mnp::sleep(1s);
    uint64_t v = g_votes.load();
    std::string lock;
    if (naive) {
      int64_t at = g_naive.locked_at.load();
      char buf[128];
      std::snprintf(buf, sizeof buf, " | mutex %s, %d votes waiting for it",
                    at == 0 ? "free"
                            : ("held " + std::to_string((mnp::nanotime() - at) / 1'000'000) +
                               " ms by G " + std::to_string(g_naive.mu.owner()))
                                  .c_str(),
                    g_naive.waiting.load());
      lock = buf;
    }
    // The largest Send-Q among the server's connections, and whose it is.
    sockstate::Query q;
    q.port = port;
    q.side = sockstate::Query::Side::local;
    std::vector<sockstate::Socket> socks;
    sockstate::g::dump(q, &socks);
    const sockstate::Socket* top = nullptr;
    for (const auto& s : socks) {
      if (s.state != sockstate::TcpState::listen && (top == nullptr || s.wqueue > top->wqueue)) {
        top = &s;
      }
    }
    std::string who = "-";
    if (top != nullptr) {
      g_names_mu.lock();
      auto it = g_names.find(top->remote_port);
      who = it == g_names.end() ? top->remote : it->second;
      g_names_mu.unlock();
    }
    std::printf(
        "vote-server[%s] %4.0f s: votes/s %6llu (total %llu), clients %d, voters %d%s | "
        "largest Send-Q %u bytes (%s)\n",
        g_flags.mode.c_str(), static_cast<double>(mnp::nanotime() - t0) / 1e9,
        static_cast<unsigned long long>(v - last), static_cast<unsigned long long>(v),
        g_clients.load(), g_voters.load(), lock.c_str(), top ? top->wqueue : 0, who.c_str());
    last = v;
  }
}

int run() {
  bool naive = g_flags.mode == "naive";
  auto [ln, err] = mnp::net::listen("tcp", g_flags.addr);
  if (err) {
    std::fprintf(stderr, "vote-server: %s\n", err.message().c_str());
    return 1;
  }
  std::printf("vote-server: listening on %s (pid %d), mode %s, SO_SNDBUF %s per connection%s\n",
              ln->addr().to_string().c_str(), static_cast<int>(getpid()), g_flags.mode.c_str(),
              g_flags.sndbuf > 0 ? std::to_string(g_flags.sndbuf).c_str() : "autotuned",
              naive ? "" : (", outbox " + std::to_string(g_flags.outbox) + " tallies").c_str());
  if (!naive) mnp::go([] { broadcast_worker(); });
  mnp::go([port = ln->addr().port(), naive] { ticker(port, naive); });
  for (;;) {
    auto [conn, aerr] = ln->accept();
    if (aerr) {
      if (aerr == mnp::Errc::closed) return 0;
      mnp::sleep(10ms);  // out of fds: back off
      continue;
    }
    auto c = std::make_shared<Client>();
    c->conn = std::move(conn);
    mnp::go([c, naive]() mutable { serve(std::move(c), naive); });
  }
}

}  // namespace

int main(int argc, char** argv) {
  // --addr    default 127.0.0.1:9100 (port 0: any free port)
  // --sndbuf  SO_SNDBUF of each connection, 0 for Linux's autotuning (default 4096)
  // --outbox  fixed: tallies a voter may fall behind before it is dropped (default 1024)
  demo::Args args("vote-server",
                  "--mode naive|fixed [--addr HOST:PORT] [--sndbuf BYTES] [--outbox TALLIES]");
  args.choice("--mode", &g_flags.mode, {"naive", "fixed"})
      .str("--addr", &g_flags.addr)
      .num("--sndbuf", &g_flags.sndbuf, 0, 1 << 26)
      .num("--outbox", &g_flags.outbox, 1, 1 << 20);
  if (!args.parse(argc, argv)) return 2;
  if (g_flags.mode.empty()) {
    std::fprintf(stderr, "vote-server: --mode naive|fixed is required\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int status = 0;
  int rc = mnp::run([&] { status = run(); });
  return rc != 0 ? rc : status;
}
