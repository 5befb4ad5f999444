#!/usr/bin/env bash
# tests/echo_external_test.sh — the echo server under load from a real Go peer.
#
#   tests/echo_external_test.sh [SERVER [CLIENT_SRC [WORK_DIR]]]
#     SERVER      build/demos/echo-server
#     CLIENT_SRC  tests/peers/echoclient (the Go client's source)
#     WORK_DIR    where the Go client, Go's caches and the logs go
#                 (default: the build dir's tests/echo-external)
#
# Builds the Go client (stdlib only, no network), starts the echo server on a
# free port (port 0; the server prints "listening on ADDR"), then:
#   1. 1000 concurrent connections x 20 rounds, every byte verified, 50 of them
#      reset mid-stream (SetLinger(0) + Close);
#   2. the server must still be alive and still echo (socat, one round trip;
#      then the C++ echo-client if it was built beside the server);
#   3. SIGTERM must make it print its totals and exit 0.
# Exit 0 pass, 1 fail, 77 skip (meson's code): go missing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
server=${1:-$root/build/demos/echo-server}
client_src=${2:-$here/peers/echoclient}
work=${3:-$(dirname "$(dirname "$server")")/tests/echo-external}

CONNS=${ECHO_TEST_CONNS:-1000}
ROUNDS=${ECHO_TEST_ROUNDS:-20}
KILL=${ECHO_TEST_KILL:-50}

log() { echo "echo-external: $*"; }
fail() {
  echo "echo-external: FAIL: $*" >&2
  exit 1
}

go_bin=${GO:-$(command -v go || true)}
if [[ -z $go_bin ]]; then
  log "SKIP: go is not installed (Debian: golang-go; ./mnp test installs it)"
  exit 77
fi
[[ -x $server ]] || fail "no echo server at $server (build it: ninja -C build)"

mkdir -p "$work"
work=$(cd "$work" && pwd)  # go wants absolute GOPATH/GOCACHE
server_log=$work/server.log
server_pid=""
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
show_server_log() {
  echo "---- server log (last 40 lines of $server_log) ----" >&2
  tail -n 40 "$server_log" >&2 || true
  echo "----" >&2
}

# --- the Go client: built with caches under the build dir (no $HOME needed),
# no module proxy (it imports only the standard library).
log "building the Go client ($("$go_bin" version))"
(
  cd "$client_src"
  GOCACHE=$work/gocache GOPATH=$work/gopath GOENV=off GOPROXY=off GOFLAGS='' \
    timeout 100 "$go_bin" build -o "$work/echoclient" .
) || fail "go build of $client_src failed"

# 1000 connections need 1000 fds in the server: lift the soft limit to the
# hard one for this test (Go does that for its own processes by itself).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < CONNS + 64)); then
  log "note: ulimit -n is $(ulimit -n): the server will hit 'too many open files' and back off"
fi

# --- the server, on a free port it picks and prints. `timeout` bounds it even
# if this script is killed before its trap runs; `exec` makes $! the server.
log "starting $server"
: >"$server_log" # exists before the background job opens it
bash -c 'exec timeout -s KILL 110 "$@"' _ "$server" --addr 127.0.0.1:0 --quiet >"$server_log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$server_log" | head -n 1)
  [[ -n $addr ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $addr ]] && grep -q 'unavailable' "$server_log"; then
  log "SKIP: $(head -n 1 "$server_log")"
  exit 77
fi
if [[ -z $addr ]]; then
  show_server_log
  fail "the server did not print 'listening on ADDR' within 10 s"
fi
log "server pid $server_pid listening on $addr"

# --- 1. the load
log "Go client: $CONNS conns x $ROUNDS rounds, $KILL reset mid-stream"
rc=0
timeout 80 "$work/echoclient" -addr "$addr" -conns "$CONNS" -rounds "$ROUNDS" -size 2048 \
  -kill "$KILL" -timeout 60s || rc=$?
if ((rc != 0)); then
  show_server_log
  fail "the Go client exited $rc"
fi

# --- 2. still alive, still echoing
kill -0 "$server_pid" 2>/dev/null || {
  show_server_log
  fail "the server died under load"
}
probe="still-alive-$$-$RANDOM"
if command -v socat >/dev/null 2>&1; then
  reply=$(printf '%s\n' "$probe" | timeout 10 socat -t 5 - "TCP:$addr" || true)
else
  # No socat: bash's /dev/tcp does one round trip just as well.
  reply=$(
    exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}"
    printf '%s\n' "$probe" >&3
    IFS= read -r -t 10 line <&3 && printf '%s\n' "$line"
  ) || true
fi
if [[ $reply != "$probe" ]]; then
  show_server_log
  fail "after the load the server did not echo: sent '$probe', got '$reply'"
fi
log "one round trip after the load: ok"
cpp_client=$(dirname "$(dirname "$server")")/demos/echo-client
if [[ -x $cpp_client ]]; then
  timeout 30 "$cpp_client" --addr "$addr" -c 10 --count 100 --size 512 ||
    fail "the C++ echo-client against the same server failed"
fi
kill -0 "$server_pid" 2>/dev/null || fail "the server died after the round trip"

# --- 3. SIGTERM: totals, exit 0
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
if ((rc != 0)) || ! grep -q 'SIGTERM: accepted' "$server_log"; then
  show_server_log
  fail "on SIGTERM the server should print its totals and exit 0 (exit status $rc)"
fi
grep 'SIGTERM: accepted' "$server_log"
# The log must stay bounded under load: the per-second error summary, not a
# line per reset connection.
lines=$(wc -l <"$server_log")
((lines < 200)) || fail "the server wrote $lines log lines for one test: errors are not aggregated"
log "PASS"
