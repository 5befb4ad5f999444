#!/usr/bin/env bash
# scripts/cross-aarch64.sh — cross-build for Linux on AArch64 and run the
# tests under qemu-user.
#
#   scripts/cross-aarch64.sh [-- GTEST_ARGS...]   e.g. -- --gtest_filter='Backends/*'
#
# 1. Installs what is missing, from Debian: g++-aarch64-linux-gnu (compiler
#    and the aarch64 libc/libstdc++ sysroot in /usr/aarch64-linux-gnu),
#    qemu-user (qemu-aarch64; qemu-user-static's qemu-aarch64-static does as
#    well) and googletest (the sources in /usr/src/googletest, which meson's
#    gtest dependency compiles with the cross compiler). As root, or with
#    password-less sudo; otherwise it prints the apt-get line and exits 1.
# 2. Configures build-aarch64/ with scripts/cross/aarch64-linux-gnu.ini and
#    builds context-tests, kqueue-emu-tests and mnp-tests.
# 3. Runs them with qemu-aarch64 -L /usr/aarch64-linux-gnu: context-tests
#    whole (the AArch64 switch: x19-x28, x29, d8-d15 and FPCR preserved), then
#    the kqueue emulation's rule tests, then mnp-tests with MNP_PROCS=1 and
#    MNP_PROCS=4 (the scheduler, and the conformance suite on the epoll
#    backend and on the kqueue backend over tests/kqueue_emu: the build has
#    -Dkqueue_emu=true). The io_uring backends are not built here (no aarch64
#    liburing; qemu-user does not emulate io_uring_setup either): the suite
#    skips them by name.
#
# Prints "aarch64 <stage>: ok" per stage, exits 1 if any failed.
# Environment: MNP_JOBS (ninja -j), MNP_AARCH64_BUILD (default build-aarch64).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

readonly BUILD=${MNP_AARCH64_BUILD:-build-aarch64}
case $BUILD in
  /*) readonly BUILD_ABS=$BUILD ;;
  *) readonly BUILD_ABS=$ROOT/$BUILD ;;
esac
readonly SYSROOT=/usr/aarch64-linux-gnu
readonly CROSS_FILE=scripts/cross/aarch64-linux-gnu.ini
JOBS=${MNP_JOBS:-$(nproc 2>/dev/null || echo 2)}

say() { echo "cross-aarch64: $*"; }
die() {
  echo "cross-aarch64: $*" >&2
  exit 1
}

gtest_args=()
if [[ ${1:-} == -- ]]; then
  shift
  gtest_args=("$@")
elif [[ $# -gt 0 ]]; then
  die "unknown argument '$1' (usage: $0 [-- GTEST_ARGS...])"
fi

[[ $(uname -s) == Linux ]] || {
  say "skipped: needs Linux (Debian's cross compiler and qemu-user), this is $(uname -s)"
  exit 77
}

# --- 1. tools ------------------------------------------------------------------
qemu=""
find_qemu() {
  qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true)
}
find_qemu
missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
[[ -n $qemu ]] || missing+=(qemu-user)
[[ -f /usr/src/googletest/googletest/src/gtest-all.cc ]] || missing+=(googletest)
command -v meson >/dev/null 2>&1 || missing+=(meson)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
if [[ ${#missing[@]} -gt 0 ]]; then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "missing ${missing[*]}; run: sudo apt-get install -y --no-install-recommends ${missing[*]}"
    fi
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
    "${sudo[@]}" apt-get update -q >/dev/null
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
  fi
  find_qemu
  [[ -n $qemu ]] || die "qemu-user installed, yet no qemu-aarch64 on PATH"
fi
say "$(aarch64-linux-gnu-g++ --version | head -1); $("$qemu" --version | head -1)"

# --- 2. build --------------------------------------------------------------------
# -Dkqueue_emu=true: the kqueue backend runs here too, on tests/kqueue_emu.
reconf=()
[[ -f $BUILD/build.ninja ]] && reconf=(--reconfigure)
meson setup "${reconf[@]}" "$BUILD" --cross-file "$CROSS_FILE" -Dbenchmarks=disabled \
  -Ddemos=false -Dio_uring=disabled -Dkqueue_emu=true >"$BUILD_ABS.setup.log" 2>&1 || {
  cat "$BUILD_ABS.setup.log" >&2
  die "meson setup $BUILD failed"
}
mv "$BUILD_ABS.setup.log" "$BUILD/meson-setup.log"
ninja -C "$BUILD" -j "$JOBS" tests/context-tests tests/mnp-tests tests/kqueue-emu-tests \
  >"$BUILD/cross-build.log" 2>&1 || {
  tail -50 "$BUILD/cross-build.log" >&2
  die "aarch64 build: FAILED (the whole log: $BUILD/cross-build.log)"
}
file -b "$BUILD/tests/context-tests" | grep -q 'ARM aarch64' ||
  die "aarch64 build: $BUILD/tests/context-tests is not an AArch64 binary"
say "aarch64 build: ok"

# --- 3. run under qemu -----------------------------------------------------------
# Each test program runs through a small wrapper script that starts it under
# qemu with argv[0] set to the wrapper itself (qemu's -0). Why: a gtest
# "threadsafe" death test re-executes argv[0], and qemu-user hands execve to
# the host kernel, which cannot run an AArch64 binary unless binfmt_misc is
# set up (often not, in containers). Re-executing the wrapper starts qemu
# again instead.
wrap() {
  local bin=$BUILD_ABS/tests/$1 w=$BUILD_ABS/qemu/$1
  mkdir -p "$BUILD_ABS/qemu"
  # shellcheck disable=SC2016  # "$0" and "$@" are the wrapper's own
  printf '#!/bin/sh\nexec %q -L %q -0 "$0" %q "$@"\n' "$qemu" "$SYSROOT" "$bin" >"$w"
  chmod +x "$w"
  echo "$w"
}

# run NAME [ENV=VALUE...] -- PROGRAM: one test program under qemu, its output
# kept in $BUILD/NAME.log and its summary shown.
failed=0
run() {
  local name=$1 log
  shift
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  log=$BUILD/$(tr ' =' '__' <<<"$name").log
  say "running $name under qemu"
  local start=$SECONDS rc=0
  env "${envs[@]}" "$(wrap "$1")" "${gtest_args[@]}" >"$log" 2>&1 || rc=$?
  # The totals, then each failing test once (gtest lists them twice).
  grep -E '^\[==========\] [0-9]+ tests|^\[  (PASSED|SKIPPED|FAILED) +\] [0-9]+ tests?' "$log" |
    sed 's/^/  /' || true
  grep -E '^\[  FAILED  \] [A-Za-z].*\([0-9]+ ms\)$' "$log" | sed 's/^/  /' || true
  if [[ $rc -ne 0 ]]; then
    # Died before its summary (a crash, the watchdog): show how.
    grep -q '^\[  FAILED  \]' "$log" || tail -30 "$log" | sed 's/^/  | /' || true
    say "aarch64 $name: FAILED (exit $rc, $((SECONDS - start)) s; log $log)"
    failed=1
  else
    say "aarch64 $name: ok ($((SECONDS - start)) s)"
  fi
}
run context-tests -- context-tests
run kqueue-emu-tests -- kqueue-emu-tests
run "mnp-tests procs=1" MNP_PROCS=1 -- mnp-tests
run "mnp-tests procs=4" MNP_PROCS=4 -- mnp-tests
exit $failed
