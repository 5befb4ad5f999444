# shellcheck shell=bash
# tests/experiments/lib.sh — what every experiment test shares. Sourced, not run.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   exp_init vote/vote-server vote/vote-load   # the demos it needs (else: skip);
#                            # a private network namespace when root; WORK; cleanup trap
#   start server "$DEMOS/vote/vote-server" --mode naive --addr 127.0.0.1:0
#   addr=$(listen_addr server)
#   ...
#   expect "$n" -gt 0 "CLOSE-WAIT on the server"
#   pass "CLOSE-WAIT $n on the server"
#
# Each test runs in a network namespace of its own when it can (root, unshare,
# ip): its sockets, TIME_WAIT included, vanish with it, and no port of the
# machine is used. Otherwise it runs on the machine's loopback with ports the
# kernel picks (port 0). Every process a test starts is a child of the test,
# listed in PIDS, and killed by the EXIT trap; every command has a timeout.
# Exit status: 0 pass, 1 fail, 77 skip (meson's SKIP), with the reason printed.

set -euo pipefail

DEMOS=${DEMOS:?set DEMOS to the demos folder of a build directory}
SOCKSTAT=$DEMOS/sockstate/sockstat
TEST_NAME=$(basename "$0" .sh)
PIDS=()
WORK=""

say() { echo "$TEST_NAME: $*"; }

exp_init() {
  # EXP_NO_NETNS=1: stay on the machine's loopback even as root.
  if [[ -z ${EXP_NETNS:-} && -z ${EXP_NO_NETNS:-} && $(id -u) -eq 0 ]] && command -v unshare >/dev/null &&
    command -v ip >/dev/null && unshare -n true 2>/dev/null; then
    export EXP_NETNS=1
    exec unshare -n -- bash "$0"
  fi
  if [[ -n ${EXP_NETNS:-} ]]; then
    ip link set lo up
    say "in a private network namespace (its sockets, TIME_WAIT included, go with it)"
  else
    say "on the machine's loopback (not root, or no unshare/ip): ports picked by the kernel"
  fi
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/mnp-exp.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  for exe in "$@"; do
    [[ -x $DEMOS/$exe ]] || skip "$DEMOS/$exe is not built"
  done
  [[ -x $SOCKSTAT ]] || skip "$SOCKSTAT is not built"
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.2
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n $WORK ]] && rm -rf "$WORK"
}

# start NAME CMD...: CMD in the background for at most 2 minutes, output in
# $WORK/NAME.log; its pid in PIDS and in the variable NAME_PID.
start() {
  local name=$1
  shift
  : >"$WORK/$name.log"
  timeout -s KILL 120 "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  printf -v "${name//-/_}_PID" '%s' "$!"
}

# The pid of the program itself that `start NAME` started (timeout, env and
# bash -c exec or fork on the way): the innermost descendant.
real_pid() {
  local var="${1//-/_}_PID" pid child
  pid=${!var}
  while child=$(pgrep -P "$pid" | head -n 1) && [[ -n $child ]]; do pid=$child; done
  echo "$pid"
}

# The log of a started (or run) command.
log_of() { cat "$WORK/$1.log"; }

# wait_for NAME REGEX SECONDS: until NAME's log has a line matching REGEX.
wait_for() {
  local name=$1 re=$2 secs=$3 i
  for ((i = 0; i < secs * 20; i++)); do
    grep -qE "$re" "$WORK/$name.log" && return 0
    sleep 0.05
  done
  say "no line matching '$re' in $name's output after $secs s:"
  sed 's/^/    | /' "$WORK/$name.log" | tail -n 30
  return 1
}

# The address from a server's "listening on ADDR" line.
listen_addr() {
  wait_for "$1" 'listening on ' 10 || fail "$1 did not start"
  sed -n 's/.*listening on \([^ ,]*\).*/\1/p' "$WORK/$1.log" | head -n 1
}

# run NAME SECONDS CMD...: runs CMD in the foreground, output in $WORK/NAME.log
# and on this test's output; fails the test if CMD fails.
run() {
  local name=$1 secs=$2
  shift 2
  local rc=0
  timeout -s KILL "$secs" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  sed "s/^/  $name| /" "$WORK/$name.log"
  ((rc == 0)) || fail "$name exited with status $rc"
}

# show NAME: a started command's output so far, indented.
show() { sed "s/^/  $1| /" "$WORK/$1.log"; }

fail() {
  say "FAIL: $*"
  exit 1
}
skip() {
  say "SKIP: $*"
  exit 77
}
pass() { say "PASS: $*"; }

# expect A OP B WHAT: a numeric comparison (as test(1): -gt, -ge, -lt, -le, -eq)
# that fails the test, saying what was expected.
expect() {
  local a=$1 op=$2 b=$3
  shift 3
  [[ $a =~ ^-?[0-9]+$ && $b =~ ^-?[0-9]+$ ]] || fail "$*: not numbers: '$a' '$b'"
  case $op in
    -gt) ((a > b)) ;;
    -ge) ((a >= b)) ;;
    -lt) ((a < b)) ;;
    -le) ((a <= b)) ;;
    -eq) ((a == b)) ;;
    *) fail "expect: unknown operator '$op'" ;;
  esac || fail "$*: expected $a $op $b"
}

# sockstat ARGS...: the observer's one-number answer.
sockstat() { timeout 10 "$SOCKSTAT" "$@"; }
