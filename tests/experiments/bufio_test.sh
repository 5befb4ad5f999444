#!/usr/bin/env bash
# Experiment 7 (demos/bufio): the same 2000 lines read byte by byte cost one
# read syscall per byte; through bufio::Reader, one per 4 KiB. The runtime's
# counters say so, and strace -c agrees where it can trace.
# shellcheck source=tests/experiments/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
exp_init bufio/bufio-count

run bufio 20 "$DEMOS/bufio/bufio-count" --lines 2000
out=$WORK/bufio.log
bytes=$(sed -n 's/.*byte by byte.* \([0-9]*\) bytes: .*/\1/p' "$out")
bytewise=$(sed -n 's/.*byte by byte.*bytes: *\([0-9]*\) read syscalls.*/\1/p' "$out")
buffered=$(sed -n 's/.*bufio::Reader.*bytes: *\([0-9]*\) read syscalls.*/\1/p' "$out")
expect "$bytewise" -ge "$bytes" "byte-by-byte reads: one syscall per byte"
expect "$buffered" -le $((bytes / 4096 + 2)) "bufio reads: one syscall per 4 KiB"

if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
  for mode in bytes bufio; do
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout 30 strace -f -c -e trace=read -o "$WORK/strace-$mode.txt" \
      "$DEMOS/bufio/bufio-count" --lines 2000 --mode "$mode" >/dev/null
    declare "strace_$mode=$(awk '$NF == "read" { print $4 }' "$WORK/strace-$mode.txt")"
  done
  # shellcheck disable=SC2154 # strace_bytes, strace_bufio: declared above
  say "strace -c counts read(2): $strace_bytes byte by byte, $strace_bufio with bufio"
  expect "$strace_bytes" -ge "$bytes" "strace's count, byte by byte"
  expect "$strace_bufio" -le 100 "strace's count with bufio (the runtime's own reads included)"
else
  say "strace cannot trace here: the strace cross-check is skipped"
fi
pass "$bytes bytes: $bytewise read syscalls byte by byte, $buffered through bufio"
