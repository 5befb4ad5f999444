#!/usr/bin/env bash
# bench/sync_vs_go.sh — the sync micro-benchmarks next to their Go twins.
#
#   bench/sync_vs_go.sh [BUILD_DIR]      (default: build)
#
# Builds and runs BUILD_DIR/bench/sync-bench (bench/sync_bench.cpp) and
# `go test -bench` on bench/peers/gomicro in the same run, 5 repetitions
# each, and prints the medians side by side: ns per op, and mnp/Go (below 1:
# mnp is faster). The Go build cache and GOPATH live under BUILD_DIR.
# Extra Google Benchmark flags can come from $MNP_BENCH_FLAGS (e.g.
# --benchmark_filter=Chan); $GO_BENCH narrows the Go side (default: .).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
reps=5
go=${GO:-go}

command -v "$go" >/dev/null || { echo "sync_vs_go: '$go' not found (install golang-go)" >&2; exit 77; }
command -v python3 >/dev/null || { echo "sync_vs_go: python3 is needed for the table" >&2; exit 1; }

ninja -C "$build" bench/sync-bench >/dev/null
out="$build/sync-vs-go"
mkdir -p "$out"

echo "mnp: $build/bench/sync-bench (x$reps)" >&2
"$build/bench/sync-bench" --benchmark_repetitions="$reps" \
  --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/mnp.json" --benchmark_out_format=json \
  ${MNP_BENCH_FLAGS:-} >/dev/null

echo "go:  $("$go" version) (x$reps)" >&2
(
  cd "$here/peers/gomicro"
  GOCACHE="$out/go-cache" GOPATH="$out/go-path" GOFLAGS=-mod=mod \
    "$go" test -run '^$' -bench "${GO_BENCH:-.}" -count "$reps" -cpu 1,2,4 >"$out/go.txt"
)

python3 - "$out/mnp.json" "$out/go.txt" <<'EOF'
import json, re, statistics, sys

mnp = {}  # (name, procs) -> median ns/op
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    m = re.match(r"BM_(\w+)/(\d+)", b["run_name"])
    scale = {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[b["time_unit"]]
    mnp[(m.group(1), int(m.group(2)))] = b["real_time"] * scale

runs = {}  # (name, procs) -> [ns/op, ...]
for line in open(sys.argv[2]):
    # BenchmarkChanPingPong-4   5000000   250.3 ns/op  (no -N suffix when GOMAXPROCS=1)
    m = re.match(r"Benchmark(\w+?)(?:-(\d+))?\s+\d+\s+([\d.]+) ns/op", line)
    if m:
        runs.setdefault((m.group(1), int(m.group(2) or 1)), []).append(float(m.group(3)))
gomed = {k: statistics.median(v) for k, v in runs.items()}

print(f"{'benchmark':<14} {'Ps':>3} {'mnp ns/op':>12} {'go ns/op':>12} {'mnp/go':>8}")
for key in sorted(mnp, key=lambda k: (list(dict.fromkeys(n for n, _ in mnp)).index(k[0]), k[1])):
    a, g = mnp[key], gomed.get(key)
    ratio = f"{a / g:8.2f}" if g else f"{'-':>8}"
    gs = f"{g:12.1f}" if g else f"{'-':>12}"
    print(f"{key[0]:<14} {key[1]:>3} {a:12.1f} {gs} {ratio}")
EOF
