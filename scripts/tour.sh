#!/usr/bin/env bash
# scripts/tour.sh — the guided tour: the experiments of EXPERIMENTS.md run one
# after another, each showing the numbers the kernel reports, not just "done".
#
#   scripts/tour.sh [--build-dir DIR] [--backend NAME] [EXPERIMENT...]
#   scripts/tour.sh --list
#
# ./mnp tour builds first and then runs this. With no EXPERIMENT, all of them
# run in order. --backend sets MNP_BACKEND (epoll, uring-poll, uring, kqueue)
# for every program the tour starts. Every step is bounded in time and the
# tour stops what it started, also when interrupted.
#
# Adding an experiment: write a function exp_<name> (dashes become
# underscores) that runs it with the helpers below, and add one line
# "<name>|<title>" to EXPERIMENTS. Nothing else needs to change.
set -euo pipefail

EXPERIMENTS=(
  "echo|1. Echo server + client: the syscalls of a connection, its fd, bytes echoed"
  "fd-leak|2. FD leak: LEAK=true, fds climb to ulimit -n, accept fails, the server lives on"
  # -- issue 6 (demos/*/):
  "lifecycle|1. Socket lifecycle, one step at a time: syscalls, both ends' states, EADDRINUSE"
  "close-wait|3. CLOSE_WAIT vs FIN_WAIT_2: the leak seen from both ends"
  "time-wait|4. TIME_WAIT bomb: port exhaustion in a narrow range, then the pool"
  "accept-queue|5. Accept queue: a listener that stops accepting"
  "backpressure|6. Backpressure: a client that stops reading parks the writer G"
  "bufio|7. bufio: read syscalls byte by byte vs one per 4 KiB"
  "vote|8-9. The slow client freezes the naive vote server; the fixed one drops it"
  "c10k|10. 10,000 connections: RSS per connection, one G each vs one thread each"
)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build

# --- helpers -------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mnp-tour.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

heading() {
  echo
  echo "################################################################"
  echo "# $*"
  echo "################################################################"
}
# Narration: what to look for in what follows.
say() {
  echo
  printf '%s\n' "$*" | fmt -w 76 | sed 's/^/  /'
}
# Shows a command, then runs it with its output indented. Its exit status is
# reported, not fatal: some steps are meant to fail (the fd leak).
show() {
  printf '\n  $ %s\n' "$*"
  local rc=0
  "$@" 2>&1 | sed 's/^/    /' || rc=$?
  ((rc == 0)) || printf '    (exit status %d)\n' "$rc"
  return 0
}
# show_sh 'a | pipeline': the same for a shell pipeline, shown as typed.
show_sh() {
  printf '\n  $ %s\n' "$1"
  local rc=0
  bash -c "$1" 2>&1 | sed 's/^/    /' || rc=$?
  ((rc == 0)) || printf '    (exit status %d)\n' "$rc"
  return 0
}
have() { command -v "$1" >/dev/null 2>&1; }
# The socket lines of an strace -yy log, at most 60.
show_trace() {
  printf '\n  $ grep TCP %s\n' "$1"
  grep -E 'TCP|socket\(|bind\(|listen\(|connect\(|accept4?\(' "$1" | grep -vE 'eventfd|eventpoll' |
    head -n 60 | sed 's/^/    /' || true
}

# start_server NAME CMD...: runs CMD in the background (at most 5 minutes),
# its output in $WORK/NAME.log; sets SERVER_PID and SERVER_ADDR from the
# server's "listening on ADDR" line.
start_server() {
  local name=$1
  shift
  SERVER_LOG=$WORK/$name.log
  SERVER_SHOWN=0
  : >"$SERVER_LOG" # exists before the background job opens it
  timeout -s KILL 300 "$@" >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_ADDR=""
  local _
  for _ in $(seq 100); do
    SERVER_ADDR=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$SERVER_LOG" | head -n 1)
    [[ -n $SERVER_ADDR ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z $SERVER_ADDR ]]; then
    server_says
    echo "tour: the server did not start (see its output above)" >&2
    return 1
  fi
  # The server's own pid, for /proc, lsof and signals: the innermost of
  # timeout -> [strace ->] echo-server.
  SERVER_REAL_PID=$SERVER_PID
  local child
  while child=$(pgrep -P "$SERVER_REAL_PID" | head -n 1) && [[ -n $child ]]; do
    SERVER_REAL_PID=$child
  done
  server_says
}
# Prints what the server logged since the last call.
server_says() {
  local total
  total=$(wc -l <"$SERVER_LOG")
  if ((total > SERVER_SHOWN)); then
    tail -n +"$((SERVER_SHOWN + 1))" "$SERVER_LOG" | head -n 40 | sed 's/^/    server| /'
    ((total - SERVER_SHOWN <= 40)) || echo "    server| ... ($((total - SERVER_SHOWN - 40)) more lines in the log)"
    SERVER_SHOWN=$total
  fi
}
# Stops the server as a person would, with Ctrl-C (SIGINT): it prints totals.
stop_server() {
  kill -INT "$SERVER_REAL_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  server_says
}

# --- the experiments ---------------------------------------------------------

exp_echo() {
  local server=$BUILD/demos/echo-server client=$BUILD/demos/echo-client
  say "The server listens; each client connection is accepted as a new fd and \
served by its own G (coroutine) that reads and writes back. Reads and writes \
look blocking in the code; underneath, a G that would block parks on the fd \
and the poller (${MNP_BACKEND:-the default backend}) wakes it when the kernel \
says the fd is ready."

  if have strace && strace -f -o /dev/null true 2>/dev/null; then
    say "First, one connection under strace, server and client both traced. \
Watch the server: socket, bind, listen once; then accept4 returns a NEW fd for \
the client, the reads/writes of the three messages happen on that fd, and \
close ends it. The client: socket, connect (EINPROGRESS: the G parks while \
the 3-way handshake runs), then a write and a read per message."
    local trace=(strace -f -qq -yy -e 'trace=%network,read,write,close')
    start_server echo-strace "${trace[@]}" -o "$WORK/server.strace" \
      "$server" --addr 127.0.0.1:0 --verbose
    show timeout 30 "${trace[@]}" -o "$WORK/client.strace" \
      "$client" --addr "$SERVER_ADDR" --count 3 --size 16 --verbose
    sleep 0.3
    server_says
    stop_server
    say "The server's syscalls on sockets, each fd shown with what it is \
(strace -f -yy -e trace=network,read,write,close; the runtime's own eventfd \
and epoll fds, /proc and the terminal left out). The number first is the \
thread: the Gs may run on any of the runtime's threads (Ms)."
    show_trace "$WORK/server.strace"
    say "The client's:"
    show_trace "$WORK/client.strace"
  else
    say "(strace is missing or may not trace here, so the syscall step is skipped; \
install strace, or run: strace -f -e trace=network $server)"
  fi

  say "Now without strace, for numbers: one connection, 2000 round trips of 64 \
bytes, every byte checked. The latency is one full round trip through both \
processes and the kernel's loopback."
  start_server echo "$server" --addr 127.0.0.1:0
  show timeout 60 "$client" --addr "$SERVER_ADDR" -c 1 --count 2000
  say "100 connections at once, one G each, 200 round trips per connection. \
The server still has one thread per processor (MNP_PROCS), not one per \
connection."
  show timeout 60 "$client" --addr "$SERVER_ADDR" -c 100 --count 200
  say "The server's fds while idle: stdin/out/err, the listener, the poller \
and its wake-up fd; the client connections are closed again."
  if have lsof; then
    show lsof -n -P -a -p "$SERVER_REAL_PID" -d '^mem,^txt,^cwd,^rtd'
  else
    show ls -l "/proc/$SERVER_REAL_PID/fd"
  fi
  sleep 1.1
  server_says
  stop_server
}

exp_fd_leak() {
  local server=$BUILD/demos/echo-server client=$BUILD/demos/echo-client
  say "The same server with LEAK=true never closes a connection, and with \
'ulimit -n 64' it may hold at most 64 fds. 80 clients each send one message \
and close. Every closed client leaves the server holding an fd whose socket \
is in CLOSE_WAIT (the peer sent FIN, we never closed). Around the 57th, accept \
fails with 'too many open files': the server logs it once, backs off (5 ms \
doubling to 1 s) and stays alive; the clients it cannot accept wait for an \
echo that never comes and time out after 3 s."
  start_server fd-leak env LEAK=true bash -c 'ulimit -n 64 && exec "$@"' _ \
    "$server" --addr 127.0.0.1:0
  show timeout 60 "$client" --addr "$SERVER_ADDR" -c 80 --count 1 --timeout 3
  sleep 1.1
  server_says
  say "What the kernel says about that process: its fds (the limit counts \
fd numbers, so an fd inherited above it may show as one more), and its limit:"
  show_sh "ls /proc/$SERVER_REAL_PID/fd | wc -l"
  show_sh "grep 'open files' /proc/$SERVER_REAL_PID/limits"
  local port=${SERVER_ADDR##*:}
  say "Connections in CLOSE_WAIT on the server's port: the clients closed, \
the server never did. Both kinds are there: the ones it accepted and leaked, \
and the ones it never accepted, still in the listener's accept queue, which \
the kernel also answered with an ACK of their FIN."
  show_sh "ss -tan state close-wait '( sport = :$port )' | tail -n +2 | wc -l"
  say "The listener: Recv-Q is the accept queue's length now (established, \
not yet accepted), Send-Q its limit (the listen backlog):"
  show ss -ltn "( sport = :$port )"
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    say "The server is still alive and will accept again as soon as an fd frees up."
  else
    say "The server died: that is a bug (it should have backed off)."
  fi
  stop_server
}

# --- the TCP experiments of issue 6 (demos/*/, watched through sockstat) -------
# Each prints what to look at, runs the demo (bounded), and ends with a line
# "observed: ..." holding the number that matters, read from the demo's output
# (which read it from the kernel: sock_diag, /proc).

# need DEMO...: the demos an experiment runs (paths under demos/), or stop.
need() {
  local d
  for d in "$@"; do
    [[ -x $BUILD/demos/$d ]] || {
      echo "tour: $BUILD/demos/$d is not built (./mnp build)" >&2
      return 1
    }
  done
}
# show_to FILE CMD...: as show, keeping the output in FILE for observed().
show_to() {
  local file=$1
  shift
  printf '\n  $ %s\n' "${*#"$BUILD"/}"
  local rc=0
  "$@" 2>&1 | tee "$file" | sed 's/^/    /' || rc=$?
  ((rc == 0)) || printf '    (exit status %d)\n' "$rc"
  return 0
}
observed() { printf '\n  >>> observed: %s\n' "$*"; }
# first FILE SED_EXPR: the first match of a sed -n 's/.../p' expression, or "?".
first() {
  local v
  v=$(sed -n "$2" "$1" | head -n 1)
  echo "${v:-?}"
}

exp_lifecycle() {
  need lifecycle/lifecycle
  say "One connection, one step at a time. After each step: the socket \
syscalls the runtime made, in order, with their fds and results (recorded by \
a hook built into the demo), the runtime's own counters for the step, and \
what the kernel (sock_diag) says about both ends. Look for: connect returning \
EINPROGRESS (the G parks during the handshake); the accept queue holding 1 \
BEFORE accept is called; accept4 returning a new fd; FIN-WAIT-2 and \
CLOSE-WAIT after the client closes; TIME-WAIT on the client, the side that \
closed first; EADDRINUSE at the second bind."
  show_to "$WORK/lifecycle.out" timeout 30 "$BUILD/demos/lifecycle/lifecycle"
  say "strace -f -e trace=network build/demos/lifecycle shows the same calls \
from the kernel's side."
  observed "accept queue before accept: $(first "$WORK/lifecycle.out" 's/.*\(accept queue 1\/[0-9]*\).*/\1/p');" \
    "second bind: $(first "$WORK/lifecycle.out" 's/.*syscall bind .*= -1 \([A-Z]*\).*/\1/p')"
}

exp_close_wait() {
  need leak/leak-client sockstate/sockstat
  local server=$BUILD/demos/echo-server
  say "The leaky server again (LEAK=true, ulimit -n 64), now watched from the \
client side by leak-client: 80 clients, each sends a line, waits up to 1 s \
for the echo and closes first. Twice a second it prints the server's fds \
(/proc), and from sock_diag the server side's CLOSE-WAIT (the peer closed, \
the application never did: the bug is there) and the client side's \
FIN-WAIT-2 (waiting for a FIN that never comes, until tcp_fin_timeout)."
  start_server close-wait env LEAK=true bash -c 'ulimit -n 64 && exec "$@"' _ \
    "$server" --addr 127.0.0.1:0 --quiet
  local port=${SERVER_ADDR##*:}
  show_to "$WORK/leak.out" timeout 60 "$BUILD/demos/leak/leak-client" --addr "$SERVER_ADDR" \
    -n 80 --rate 100 --watch 1
  server_says
  say "The observer's command line says the same, one side at a time:"
  local sockstat=$BUILD/demos/sockstate/sockstat
  show "$sockstat" --port "$port" --local --once
  show "$sockstat" --port "$port" --remote --once
  observed "CLOSE-WAIT $("$sockstat" --port "$port" --local --state CLOSE-WAIT) on the server," \
    "FIN-WAIT-2 $("$sockstat" --port "$port" --remote --state FIN-WAIT-2) on the clients"
  stop_server
}

exp_time_wait() {
  need timewait/timewait
  say "The TIME_WAIT bomb: one connection per request, closed by the client, \
so each leaves a socket in TIME_WAIT for 60 s. Safely: only a 1000-port range \
set per socket (IP_LOCAL_PORT_RANGE) inside the machine's ephemeral range, \
and only towards this demo's own server. Watch TIME-WAIT climb to the size of \
the range, then 'cannot assign requested address', then the explanation of \
tcp_tw_reuse. Then the same requests over a pool of 4 kept-alive connections: \
TIME-WAIT stays at 0."
  show_to "$WORK/timewait.out" timeout 60 "$BUILD/demos/timewait/timewait" --ports 50000-50999 \
    --requests 3000 --duration 2
  observed "bomb: TIME-WAIT peak $(first "$WORK/timewait.out" 's/.*TIME-WAIT peak \([0-9]*\).*/\1/p')" \
    "for 1000 ports, first EADDRNOTAVAIL after $(first "$WORK/timewait.out" 's/.*came after \([0-9]*\) connections.*/\1/p') connections;" \
    "pool: TIME-WAIT while working $(first "$WORK/timewait.out" 's/.*TIME-WAIT while working: \([0-9]*\).*/\1/p')"
}

exp_accept_queue() {
  need acceptq/acceptq
  say "A listener with backlog 8 that does not accept for 1.5 s while 16 \
clients connect. The kernel completes handshakes without the application: \
watch the LISTEN socket's accept queue (Recv-Q/Send-Q in ss) fill to 9/8 \
(backlog + 1), the remaining clients stall in SYN-SENT (their SYNs dropped: \
ListenOverflows), and get in late, at a SYN retransmission, once accept runs."
  show_to "$WORK/acceptq.out" timeout 30 "$BUILD/demos/acceptq/acceptq" --backlog 8 --clients 16 --pause 1.5
  observed "accept queue $(first "$WORK/acceptq.out" 's/.*accept queue *\(9\/8\).*/\1/p') at its fullest;" \
    "$(first "$WORK/acceptq.out" 's/.*; \([0-9]*\) waited in SYN-SENT.*/\1/p') clients waited in SYN-SENT"
}

exp_backpressure() {
  need backpressure/backpressure
  say "Two clients of one server, each served by its own G that writes 4 MiB/s. \
The slow client reads nothing for 3 s. Watch its writer: 'wrote' climbs, \
then stops, and the G reports itself 'parked in write' while the server \
socket's Send-Q (sock_diag) holds megabytes the client's full receive buffer \
cannot take. The fast client keeps getting data all along, and the process's \
thread count does not grow: the G parked, not the thread."
  show_to "$WORK/backpressure.out" timeout 30 "$BUILD/demos/backpressure/backpressure" --seconds 3
  observed "slow writer parked $(first "$WORK/backpressure.out" 's/.*stall_s=\([0-9.]*\).*/\1/p') s," \
    "Send-Q up to $(first "$WORK/backpressure.out" 's/.*send_q_max=\([0-9]*\).*/\1/p') bytes," \
    "fast client got $(first "$WORK/backpressure.out" 's/.*fast_during_stall=\([0-9]*\).*/\1/p') bytes meanwhile"
}

exp_bufio() {
  need bufio/bufio-count
  say "The same 2000 protocol lines read one byte per read(2), then through a \
4 KiB bufio::Reader. The runtime counts its read syscalls; /proc/self/io \
(syscr) is the kernel's count."
  show_to "$WORK/bufio.out" timeout 30 "$BUILD/demos/bufio/bufio-count" --lines 2000
  if have strace && strace -f -o /dev/null true 2>/dev/null; then
    say "strace -c agrees (read calls, byte by byte):"
    show_sh "strace -f -c -e trace=read $BUILD/demos/bufio/bufio-count --mode bytes 2>&1 >/dev/null | grep -E 'calls|read'"
  fi
  if grep -q 'backend uring:' "$WORK/bufio.out"; then # reads are io_uring operations there
    local ops
    ops=$(sed -n 's/.*backend uring: \([0-9]*\) read operations.*/\1/p' "$WORK/bufio.out" | tr '\n' ' ')
    observed "io_uring read operations: ${ops% *} (byte by byte, then through bufio)"
    return
  fi
  observed "$(first "$WORK/bufio.out" 's/.*byte by byte.*bytes: *\([0-9]*\) read syscalls.*/\1/p') read syscalls byte by byte," \
    "$(first "$WORK/bufio.out" 's/.*bufio::Reader.*bytes: *\([0-9]*\) read syscalls.*/\1/p') through bufio"
}

# vote_round MODE: the server, 8 s of load, the attacker after 2 s.
vote_round() {
  local mode=$1
  start_server "vote-$mode" "$BUILD/demos/vote/vote-server" --mode "$mode" --addr 127.0.0.1:0
  (
    sleep 2
    exec timeout 10 "$BUILD/demos/vote/vote-attacker" --addr "$SERVER_ADDR" --duration 5
  ) >"$WORK/attacker-$mode.log" 2>&1 &
  PIDS+=($!)
  show_to "$WORK/load-$mode.out" timeout 30 "$BUILD/demos/vote/vote-load" --addr "$SERVER_ADDR" \
    --voters 8 --rate 1000 --duration 7
  sed 's/^/    attacker| /' "$WORK/attacker-$mode.log"
  server_says
  stop_server
}
# The mean tallied/s of vote-load's lines between two times.
tallied() {
  awk -v from="$2" -v to="$3" '$1 == "vote-load" && $2 + 0 >= from && $2 + 0 <= to {
      s += $7; n++ } END { printf "%d\n", n ? s / n : -1 }' "$1"
}

exp_vote() {
  need vote/vote-server vote/vote-load vote/vote-attacker
  say "Experiment 8. The naive vote server holds its mutex while it writes \
the tally to every voter. 8 voters vote 1000 times a second; after 2 s the \
attacker votes once and stops reading. Watch vote-load's tallied/s (the \
server's real throughput) fall to 0, the server's line showing the mutex \
held for seconds with every vote queued behind it, and the attacker's Send-Q \
on the server filling (SO_SNDBUF 4096 on the server's connections, and the \
attacker's own 4 KiB receive buffer, make it take well under a second)."
  vote_round naive
  say "Experiment 9. The fixed server: the tally and a snapshot under the lock \
(microseconds), the snapshot to a broadcast worker over a channel, per-voter \
bounded outboxes drained by a writer G each. The attacker fills its outbox \
and is dropped, and that is logged; the votes never slow down."
  vote_round fixed
  observed "naive: $(tallied "$WORK/load-naive.out" 1.0 2.0) -> $(tallied "$WORK/load-naive.out" 4.0 7.0) votes/s under attack;" \
    "fixed: $(tallied "$WORK/load-fixed.out" 1.0 2.0) -> $(tallied "$WORK/load-fixed.out" 4.0 7.0) votes/s"
}

exp_c10k() {
  need c10k/c10k-server c10k/c10k-client
  local mode n=10000
  (($(ulimit -n) >= n + 100)) || n=$(($(ulimit -n) - 100))
  say "$n idle connections from another process, each held by the server with \
one G parked in read; then the same with copied stacks (MNP_STACK=copy: the \
Gs share one stack, a parked G keeps only its used bytes, in a heap buffer); \
then one OS thread each (64 KiB stacks). Watch RSS per connection (user-space \
memory: touched stack pages, the Conn), VmSize (reserved address space) and \
KernelStack (each thread also has a 16 KiB kernel stack, which RSS does not show)."
  for mode in coro coro-copy threads; do
    local stack=page
    if [[ $mode == coro-copy ]]; then
      if [[ ${MNP_BACKEND:-} == uring ]]; then
        say "copied stacks: not on the uring backend (the kernel would write into parked frames): skipped"
        continue
      fi
      stack=copy
    fi
    start_server "c10k-$mode" env MNP_STACK="$stack" "$BUILD/demos/c10k/c10k-server" \
      --mode "${mode%-copy}" --addr 127.0.0.1:0 --conns "$n" --hold 0.5
    # The client's Gs share 2 cores with the server: the runtime's "hog"
    # report would flag them for time spent preempted. Not the subject here.
    MNP_DEBUG=hog=0 show timeout 60 "$BUILD/demos/c10k/c10k-client" --addr "$SERVER_ADDR" \
      --conns "$n" --hold 30
    wait "$SERVER_PID" 2>/dev/null || true
    server_says
    cp "$SERVER_LOG" "$WORK/c10k-$mode.out"
  done
  observed "RSS per connection: $(first "$WORK/c10k-coro.out" 's/.*result:.*rss_per_conn_kib \([0-9.]*\).*/\1/p') KiB with a G," \
    "$([[ -f $WORK/c10k-coro-copy.out ]] && first "$WORK/c10k-coro-copy.out" 's/.*result:.*rss_per_conn_kib \([0-9.]*\).*/\1 KiB with copied stacks,/p')" \
    "$(first "$WORK/c10k-threads.out" 's/.*result:.*rss_per_conn_kib \([0-9.]*\).*/\1/p') KiB with a thread" \
    "+ $(first "$WORK/c10k-threads.out" 's/.*result:.*kernel_stack_per_conn_kib \([0-9.]*\).*/\1/p') KiB of kernel stack"
}
# --- end of the TCP experiments of issue 6 -------------------------------------

# --- main ----------------------------------------------------------------------

list() {
  local e
  for e in "${EXPERIMENTS[@]}"; do
    printf '  %-13s %s\n' "${e%%|*}" "${e#*|}"
  done
}

chosen=()
while (($# > 0)); do
  case $1 in
    --build-dir)
      BUILD=$2
      shift
      ;;
    --backend)
      export MNP_BACKEND=$2
      shift
      ;;
    --list | -l)
      list
      exit 0
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      echo "Experiments:"
      list
      exit 0
      ;;
    -*)
      echo "tour: unknown option '$1'" >&2
      exit 2
      ;;
    *) chosen+=("$1") ;;
  esac
  shift
done

if ((${#chosen[@]} == 0)); then
  for e in "${EXPERIMENTS[@]}"; do chosen+=("${e%%|*}"); done
fi
for name in "${chosen[@]}"; do
  if ! declare -F "exp_${name//-/_}" >/dev/null; then
    echo "tour: no experiment '$name'; there are:" >&2
    list >&2
    exit 2
  fi
done
for bin in echo-server echo-client; do
  [[ -x $BUILD/demos/$bin ]] || {
    echo "tour: $BUILD/demos/$bin is not built (./mnp build)" >&2
    exit 1
  }
done

echo "mini-netpoll tour: backend ${MNP_BACKEND:-default}, MNP_PROCS=${MNP_PROCS:-number of CPUs}"
for name in "${chosen[@]}"; do
  for e in "${EXPERIMENTS[@]}"; do
    [[ ${e%%|*} == "$name" ]] && heading "${e#*|}"
  done
  "exp_${name//-/_}"
done
echo
echo "tour: done (${#chosen[@]} experiment(s))"
