#!/usr/bin/env bash
# Experiments 2 and 3 (demos/echo LEAK=true + demos/leak): the leaky server,
# limited to 64 fds, gets 80 clients that each close first. The kernel must
# show CLOSE-WAIT on the server's side and FIN-WAIT-2 on the clients' side;
# the server must reach its fd limit, log "too many open files" and live on.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init echo-server leak/leak-client

start server env LEAK=true bash -c 'ulimit -n 64 && exec "$@"' _ "$DEMOS/echo-server" --addr 127.0.0.1:0
addr=$(listen_addr server)
port=${addr##*:}
run client 30 "$DEMOS/leak/leak-client" --addr "$addr" -n 80 --rate 200 --watch 0.5

close_wait=$(sockstat --port "$port" --local --state CLOSE-WAIT)
fin_wait2=$(sockstat --port "$port" --remote --state FIN-WAIT-2)
srv=$(real_pid server)
fds=$(find "/proc/$srv/fd" -mindepth 1 -maxdepth 1 | wc -l)
say "kernel: CLOSE-WAIT $close_wait (server side), FIN-WAIT-2 $fin_wait2 (client side); server fds $fds"
show server

expect "$close_wait" -gt 0 "CLOSE-WAIT sockets on the leaky server's port"
expect "$fin_wait2" -gt 0 "FIN-WAIT-2 sockets on the clients' side"
expect "$fds" -ge 60 "the server's fds climbing to its limit of 64"
grep -q 'too many open files' "$WORK/server.log" || fail "the server never logged 'too many open files'"
kill -0 "$srv" 2>/dev/null || fail "the server died"
grep -q 'got no echo' "$WORK/client.log" || fail "leak-client printed no summary"
pass "CLOSE-WAIT $close_wait on the server, FIN-WAIT-2 $fin_wait2 on the clients, fds $fds/64, 'too many open files' logged, server alive"
