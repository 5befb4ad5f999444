#!/usr/bin/env bash
# Experiments 8 and 9 (demos/vote): a paced load, then one attacker that votes
# and stops reading. The naive server (mutex held across the broadcast) must
# fall below 10% of its unattacked votes/s; the fixed one (short lock, channel,
# bounded outboxes) must keep at least 90% and log that it dropped the attacker.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init vote/vote-server vote/vote-load vote/vote-attacker

RATE=1000
# The mean of vote-load's "tallied/s" over the lines with FROM <= t <= TO.
tallied() {
  awk -v from="$2" -v to="$3" '$1 == "vote-load" && $2 + 0 >= from && $2 + 0 <= to {
      s += $7; n++ } END { printf "%d\n", n ? s / n : -1 }' "$WORK/$1.log"
}

declare -A before after
for mode in naive fixed; do
  start "server-$mode" "$DEMOS/vote/vote-server" --mode "$mode" --addr 127.0.0.1:0
  addr=$(listen_addr "server-$mode")
  start "load-$mode" "$DEMOS/vote/vote-load" --addr "$addr" --voters 8 --rate "$RATE" --duration 6.5
  wait_for "load-$mode" 'vote-load +([2-9]|[1-9][0-9])\.[0-9] s' 10 || fail "$mode: no load"
  start "attacker-$mode" "$DEMOS/vote/vote-attacker" --addr "$addr" --duration 6
  pid_var="load_${mode}_PID"
  wait "${!pid_var}" || fail "$mode: vote-load failed"
  show "load-$mode"
  show "attacker-$mode"
  show "server-$mode"
  before[$mode]=$(tallied "load-$mode" 1.0 2.0)
  after[$mode]=$(tallied "load-$mode" 4.0 6.5)
  say "$mode: tallied ${before[$mode]} votes/s before the attack, ${after[$mode]} votes/s from 2 s after it"
  expect "${before[$mode]}" -ge $((RATE * 8 / 10)) "$mode: unattacked votes/s near the rate asked for"
  if [[ $mode == naive ]]; then
    expect $((after[naive] * 10)) -lt "${before[naive]}" "naive: votes/s under attack < 10% of unattacked"
    grep -q 'votes/s *0 ' "$WORK/server-naive.log" || fail "naive: the server never reported 0 votes/s"
  else
    expect $((after[fixed] * 10)) -ge $((before[fixed] * 9)) "fixed: votes/s under attack >= 90% of unattacked"
    grep -q 'dropping ATTACKER' "$WORK/server-fixed.log" || fail "fixed: the attacker's drop was not logged"
  fi
  kill -TERM "$(real_pid "server-$mode")" 2>/dev/null || true
done
pass "naive ${before[naive]} -> ${after[naive]} votes/s under attack; fixed ${before[fixed]} -> ${after[fixed]} votes/s, attacker dropped"
