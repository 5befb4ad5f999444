#!/usr/bin/env bash
# scripts/fuzz.sh — build the libFuzzer targets (fuzz/) with clang and run each
# for a bounded time against its committed seed corpus.
#
#   scripts/fuzz.sh                      every target, 60 s each (what CI runs)
#   scripts/fuzz.sh --seconds 3600       a longer run (an hour each)
#   scripts/fuzz.sh --seconds 0 bufio_reader_fuzz   no limit, one target (Ctrl-C stops)
#   scripts/fuzz.sh --jobs 2 ...         2 fuzzing processes per target (-fork=2)
#   scripts/fuzz.sh --merge ...          afterwards, add the new inputs that
#                                        reach new coverage to fuzz/corpus/
#                                        (minimised with -merge=1: commit them)
#   scripts/fuzz.sh --build-only         build, run nothing
#
# Build: build-fuzz/ (CC=clang CXX=clang++, -Dfuzz=true), the library with
# -fsanitize=fuzzer-no-link plus ASan and UBSan (every UB report aborts), the
# targets with -fsanitize=fuzzer. Inputs found during a run are kept in
# build-fuzz/corpus/<target>/ (reused by the next run, never committed);
# a crash leaves build-fuzz/artifacts/<target>-crash-<sha1>, and the run
# fails: reproduce with `build-fuzz/fuzz/<target> <that file>`.
#
# Longer runs than CI's: before a release or after touching net/bufio.cpp or
# the vote protocol parser, run `scripts/fuzz.sh --seconds 3600 --jobs 2 --merge`
# (an hour per target, both cores), look at any artifact, commit the grown
# corpus.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD=build-fuzz
seconds=60
jobs=1
merge=false
build_only=false
targets=()
while (($# > 0)); do
  case $1 in
    --seconds)
      seconds=$2
      shift
      ;;
    --seconds=*) seconds=${1#--seconds=} ;;
    --jobs)
      jobs=$2
      shift
      ;;
    --jobs=*) jobs=${1#--jobs=} ;;
    --merge) merge=true ;;
    --build-only) build_only=true ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "fuzz.sh: unknown option '$1' (try --help)" >&2
      exit 2
      ;;
    *) targets+=("$1") ;;
  esac
  shift
done

for tool in clang clang++ meson ninja; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "fuzz.sh: $tool is missing (scripts/setup-deps.sh installs it)" >&2
    exit 1
  }
done

# --- build -------------------------------------------------------------------
opts=(-Dfuzz=true -Dtests=false -Ddemos=false -Dbenchmarks=disabled -Dio_uring=disabled
  -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
  "-Dcpp_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined"
  "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined")
if [[ -f $BUILD/meson-private/coredata.dat ]]; then
  CC=clang CXX=clang++ meson setup --reconfigure "$BUILD" "${opts[@]}" >/dev/null ||
    CC=clang CXX=clang++ meson setup --wipe "$BUILD" "${opts[@]}"
else
  CC=clang CXX=clang++ meson setup "$BUILD" "${opts[@]}"
fi
ninja -C "$BUILD" -j "${MNP_JOBS:-$(nproc 2>/dev/null || echo 2)}"
$build_only && exit 0

if ((${#targets[@]} == 0)); then
  while IFS= read -r t; do targets+=("$(basename "$t")"); done < <(
    find "$BUILD/fuzz" -maxdepth 1 -type f -name '*_fuzz' -perm -u+x | sort
  )
fi
((${#targets[@]} > 0)) || {
  echo "fuzz.sh: no fuzz target built in $BUILD/fuzz" >&2
  exit 1
}

# --- run ---------------------------------------------------------------------
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
mkdir -p "$BUILD/artifacts"
failed=()
for t in "${targets[@]}"; do
  bin=$BUILD/fuzz/$t
  [[ -x $bin ]] || {
    echo "fuzz.sh: no target $t in $BUILD/fuzz" >&2
    failed+=("$t")
    continue
  }
  seeds=fuzz/corpus/$t
  work=$BUILD/corpus/$t
  mkdir -p "$work" "$seeds"
  echo "=== fuzz.sh: $t for ${seconds} s ($(find "$seeds" -type f | wc -l) seeds, $(find "$work" -type f | wc -l) found before) ==="
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096
    -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-")
  ((jobs > 1)) && args+=(-fork="$jobs" -ignore_crashes=0)
  # New inputs go to the first directory (the work corpus); the seeds are
  # read, never written.
  if "$bin" "${args[@]}" "$work" "$seeds"; then
    echo "fuzz.sh: $t: no crash in ${seconds} s; corpus now $(find "$work" -type f | wc -l) inputs"
  else
    echo "fuzz.sh: $t FAILED (artifacts in $BUILD/artifacts/)" >&2
    failed+=("$t")
    continue
  fi
  if $merge; then
    before=$(find "$seeds" -type f | wc -l)
    "$bin" -merge=1 -max_len=4096 "$seeds" "$work" >/dev/null 2>&1
    echo "fuzz.sh: $t: fuzz/corpus/$t grew from $before to $(find "$seeds" -type f | wc -l) inputs"
  fi
done
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), no crash"
