#!/usr/bin/env bash
# Experiment 10 (demos/c10k): 10,000 idle connections from another process,
# held by one G each on page stacks (coro), by one G each on copied stacks
# (coro-copy: MNP_STACK=copy), then by one OS thread each; the server's RSS
# per connection is measured and printed for all three, and copied stacks
# must cost at most half of page stacks. Fewer connections in a sanitizer
# build (ASan's per-thread cost is not the subject), and no copy mode there
# (the runtime refuses it under sanitizers).
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init c10k/c10k-server c10k/c10k-client

N=10000
if [[ -n ${MNP_SANITIZE:-} && ${MNP_SANITIZE} != none ]]; then
  N=2000
  say "sanitizer build ($MNP_SANITIZE): $N connections"
fi
# Each process needs N fds and a few more.
if (($(ulimit -n) < N + 100)); then
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if (($(ulimit -n) < N + 100)); then
    N=$(($(ulimit -n) - 100))
    say "ulimit -n is $(ulimit -n): $N connections"
  fi
fi

modes=(coro coro-copy threads)
if [[ -n ${MNP_SANITIZE:-} && ${MNP_SANITIZE} != none ]]; then
  modes=(coro threads)
fi
declare -A rss threads
for mode in "${modes[@]}"; do
  stack=page server_mode=$mode
  if [[ $mode == coro-copy ]]; then
    stack=copy server_mode=coro
  fi
  start "server-$mode" env MNP_STACK="$stack" "$DEMOS/c10k/c10k-server" --mode "$server_mode" \
    --addr 127.0.0.1:0 --conns "$N" --hold 0.5
  addr=$(listen_addr "server-$mode")
  # The client's Gs race for 2 cores with the server: the runtime's hog
  # report would flag them for time spent preempted; it is not the subject.
  MNP_DEBUG=hog=0 run "client-$mode" 60 "$DEMOS/c10k/c10k-client" --addr "$addr" --conns "$N" --hold 30
  pid_var="server_${mode//-/_}_PID"
  wait "${!pid_var}" || true
  show "server-$mode" | tail -n 4
  result=$(grep 'result:' "$WORK/server-$mode.log") || fail "$mode: no result line"
  rss[$mode]=$(sed -n 's/.*rss_per_conn_kib \([0-9.]*\).*/\1/p' <<<"$result")
  threads[$mode]=$(sed -n 's/.* threads \([0-9]*\).*/\1/p' <<<"$result")
  grep -q "conns $N " <<<"$result" || fail "$mode: not all $N connections were open"
done
expect "${threads[coro]}" -lt 64 "OS threads of the coroutine server (a few Ms, not one per connection)"
expect "${threads[threads]}" -gt "$N" "OS threads of the thread-per-connection server"
if [[ -n ${rss[coro-copy]:-} ]]; then
  expect "${threads[coro-copy]}" -lt 64 "OS threads of the copied-stack coroutine server"
  # Copied stacks: at most half the page-stack cost, measured in this run.
  half=$(awk -v c="${rss[coro-copy]}" -v p="${rss[coro]}" 'BEGIN { print (c <= 0.5 * p) ? 1 : 0 }')
  expect "$half" -eq 1 "copied stacks cost at most half of page stacks per connection (${rss[coro-copy]} vs ${rss[coro]} KiB)"
  say "RSS per connection: ${rss[coro]} KiB with a G each (page stacks), ${rss[coro-copy]} KiB (copied stacks), ${rss[threads]} KiB with a thread each (+ its kernel stack)"
  pass "$N connections: RSS/conn ${rss[coro]} KiB (page stacks), ${rss[coro-copy]} KiB (copied stacks), ${threads[coro]} threads each, vs ${rss[threads]} KiB (${threads[threads]} threads)"
else
  say "RSS per connection: ${rss[coro]} KiB with a G each, ${rss[threads]} KiB with a thread each (+ its kernel stack)"
  pass "$N connections: RSS/conn ${rss[coro]} KiB (coroutines, ${threads[coro]} threads) vs ${rss[threads]} KiB (${threads[threads]} threads)"
fi
