#!/usr/bin/env bash
# Experiment 4 (demos/timewait): the bomb must fill a small per-socket port
# range with TIME_WAIT sockets and then fail with "cannot assign requested
# address"; the pool must do the same requests with no TIME_WAIT while it works.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init timewait/timewait

read -r mlo mhi </proc/sys/net/ipv4/ip_local_port_range
span=200
if [[ -n ${EXP_NETNS:-} ]]; then
  # Our own namespace: its sysctls are ours. Without reuse the exhaustion stays.
  sysctl -qw net.ipv4.tcp_tw_reuse=0
  lo=$mlo
else
  # The machine's: a random 200-port slice of its ephemeral range, used only
  # towards our own server's address (a TIME_WAIT holds one quadruple).
  lo=$((mlo + RANDOM % (mhi - mlo - span)))
fi
hi=$((lo + span - 1))
say "port range $lo-$hi, tcp_tw_reuse $(cat /proc/sys/net/ipv4/tcp_tw_reuse)"

run timewait 60 "$DEMOS/timewait/timewait" --ports "$lo-$hi" --requests 600 --duration 2 --rate 2000 --pool 4
out=$WORK/timewait.log

peak=$(sed -n 's/.*TIME-WAIT peak \([0-9]*\).*/\1/p' "$out")
errors=$(sed -n 's/^bomb: .* requests done, \([0-9]*\) dial errors.*/\1/p' "$out")
pool_done=$(sed -n 's/^pool: \([0-9]*\) of \([0-9]*\) requests done.*/\1/p' "$out")
pool_tw=$(sed -n 's/.*TIME-WAIT while working: \([0-9]*\).*/\1/p' "$out")
expect "$peak" -ge $((span * 9 / 10)) "TIME-WAIT count reaching the size of the port range"
expect "$errors" -gt 0 "dial errors once the range is exhausted"
grep -q 'cannot assign requested address' "$out" || fail "no 'cannot assign requested address'"
grep -q 'tcp_tw_reuse' "$out" || fail "tcp_tw_reuse is not explained"
expect "$pool_done" -eq 600 "the pool doing all the requests"
expect "$pool_tw" -eq 0 "TIME-WAIT while the pool works"
pass "bomb: TIME-WAIT peak $peak for $span ports, $errors x 'cannot assign requested address'; pool: 600 requests, TIME-WAIT $pool_tw while working"
