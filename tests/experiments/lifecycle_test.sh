#!/usr/bin/env bash
# Experiment 1, slowed down (demos/lifecycle): one connection's syscalls in
# order as the runtime made them, both ends' TCP states after each step, and
# EADDRINUSE on a second bind; strace confirms the same calls when it can trace.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init lifecycle/lifecycle

run lifecycle 20 "$DEMOS/lifecycle/lifecycle"
out=$WORK/lifecycle.log

# The calls, in the order a connection makes them (grep -n gives line numbers).
line_of() { grep -nE "$1" "$out" | head -n 1 | cut -d: -f1; }
prev=0
for call in 'syscall socket' 'syscall bind ' 'syscall listen ' 'syscall connect .*EINPROGRESS' \
  'syscall getsockopt .*SO_ERROR' 'syscall accept4 .*new fd' 'syscall send ' 'syscall read ' \
  'syscall close ' 'syscall bind .*EADDRINUSE'; do
  n=$(line_of "$call")
  [[ -n $n ]] || fail "no '$call' in the trace"
  expect "$n" -gt "$prev" "'$call' after the previous call"
  prev=$n
done

# The kernel's view after each step.
grep -q 'server side.*LISTEN 1 \[accept queue 0/' "$out" || fail "no LISTEN socket after listen"
grep -q 'LISTEN 1 \[accept queue 1/' "$out" || fail "the handshake did not complete before accept (accept queue 1)"
grep -q 'server side.*CLOSE-WAIT 1' "$out" || fail "no CLOSE-WAIT on the server after the client closed"
grep -q 'client side: *FIN-WAIT-2 1' "$out" || fail "no FIN-WAIT-2 on the client after it closed"
grep -q 'client side: *TIME-WAIT 1' "$out" || fail "no TIME-WAIT on the client after both closed"
grep -q 'address already in use' "$out" || fail "the second listen did not fail with EADDRINUSE"

# strace, where ptrace is allowed, sees the same: listen, then bind's EADDRINUSE.
# (LeakSanitizer cannot run under ptrace: off for this run in a sanitizer build.)
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 20 strace -f -qq -e trace=socket,bind,listen,connect,accept4 -o "$WORK/strace.txt" \
    "$DEMOS/lifecycle/lifecycle" >/dev/null
  grep -q 'listen(' "$WORK/strace.txt" || fail "strace saw no listen"
  grep -q 'accept4(' "$WORK/strace.txt" || fail "strace saw no accept4"
  grep -q 'bind(.*EADDRINUSE' "$WORK/strace.txt" || fail "strace saw no EADDRINUSE"
  say "strace -f -e trace=network agrees: $(grep -cE 'socket\(|bind\(|listen\(|connect\(|accept4\(' "$WORK/strace.txt") socket calls"
else
  say "strace cannot trace here: the strace cross-check is skipped"
fi
pass "socket, bind, listen, connect (EINPROGRESS), accept4 (new fd) in order; accept queue 1 before accept; FIN-WAIT-2/CLOSE-WAIT, then TIME-WAIT; EADDRINUSE"
