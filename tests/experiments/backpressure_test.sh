#!/usr/bin/env bash
# Experiment 6 (demos/backpressure): the writer G for a client that does not
# read must stall (its bytes-written counter stops, it reports being parked in
# write) while the server socket's Send-Q (sock_diag) holds the unsent bytes,
# and the other client must keep getting data meanwhile.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init backpressure/backpressure

run backpressure 30 "$DEMOS/backpressure/backpressure" --seconds 3
out=$WORK/backpressure.log
result=$(grep 'result:' "$out") || fail "no result line"
stall=$(sed -n 's/.*stall_s=\([0-9]*\)\.\([0-9]*\).*/\1\2/p' <<<"$result")  # centiseconds
sendq=$(sed -n 's/.*send_q_max=\([0-9]*\).*/\1/p' <<<"$result")
fast=$(sed -n 's/.*fast_during_stall=\([0-9]*\).*/\1/p' <<<"$result")
grep -q 'parked in write' "$out" || fail "the writer never reported being parked in write"
expect "$((10#$stall))" -ge 100 "the slow writer parked (no progress) for at least 1 s"
expect "$sendq" -gt 65536 "Send-Q of the server's socket to the slow client"
expect "$fast" -gt 1048576 "bytes the fast client got while the slow writer was parked"
pass "slow writer parked $((10#$stall / 100)).$((10#$stall % 100)) s, Send-Q up to $sendq bytes, fast client got $fast bytes meanwhile"
