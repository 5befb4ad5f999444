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

# --- main ----------------------------------------------------------------------

list() {
  local e
  for e in "${EXPERIMENTS[@]}"; do
    printf '  %-10s %s\n' "${e%%|*}" "${e#*|}"
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
