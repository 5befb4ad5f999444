#!/usr/bin/env bash
# scripts/setup-deps.sh — installs the Debian packages mini-netpoll needs, and
# only those that are missing.
#
#   scripts/setup-deps.sh           probe; install what is missing (root, or sudo -n)
#   scripts/setup-deps.sh --check   probe only; exit 1 and say what is missing
#
# What it probes: commands with `command -v` (each mapped to the Debian package
# that provides it) and library packages with `dpkg -s`. A complete machine
# costs no apt call and prints one line, so ./mnp can run this every time.
# Without root and without password-less sudo it prints the exact command to
# run and exits 1.
set -euo pipefail

# command:package — the tools the build, the tests and the tour use.
readonly COMMANDS=(
  meson:meson
  ninja:ninja-build
  g++:g++
  pkg-config:pkg-config
  go:golang-go
  strace:strace
  ss:iproute2
  socat:socat
  clang:clang
  clang-format:clang-format
  lsof:lsof
  gnuplot:gnuplot-nox
)
# Packages probed by name: libraries and headers have no command to look for.
readonly PACKAGES=(
  libgtest-dev
  googletest
  libbenchmark-dev
  liburing-dev
  libclang-rt-14-dev
  libboost-context-dev
  iproute2
  procps
)

check_only=false
case "${1:-}" in
  --check) check_only=true ;;
  "") ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "setup-deps: unknown argument '$1' (try --help)" >&2
    exit 2
    ;;
esac

have_dpkg=false
command -v dpkg >/dev/null 2>&1 && have_dpkg=true

# Fills the global arrays missing_pkgs (Debian package names, no duplicates)
# and missing_cmds (for machines without dpkg, where only commands can be told).
probe() {
  missing_pkgs=()
  missing_cmds=()
  local entry cmd pkg
  for entry in "${COMMANDS[@]}"; do
    cmd=${entry%%:*}
    pkg=${entry#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
      missing_cmds+=("$cmd")
      add_missing "$pkg"
    fi
  done
  if $have_dpkg; then
    for pkg in "${PACKAGES[@]}"; do
      # `dpkg -s` also succeeds for a removed package whose config files
      # remain ("deinstall ok config-files"): ask for the installed state.
      if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
        add_missing "$pkg"
      fi
    done
  fi
}

add_missing() {
  local p
  for p in "${missing_pkgs[@]}"; do
    [[ $p == "$1" ]] && return 0
  done
  missing_pkgs+=("$1")
}

summary="nothing to install (${#COMMANDS[@]} commands and ${#PACKAGES[@]} packages present)"
probe

if ((${#missing_pkgs[@]} == 0)); then
  echo "setup-deps: ${summary}"
  exit 0
fi

install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing_pkgs[*]}"

if ! $have_dpkg; then
  echo "setup-deps: missing commands: ${missing_cmds[*]}" >&2
  echo "setup-deps: this is not a Debian system; install them with your package manager" >&2
  exit 1
fi

echo "setup-deps: missing: ${missing_pkgs[*]}"

if $check_only; then
  echo "setup-deps: install them with: sudo sh -c '${install_cmd}'" >&2
  exit 1
fi

# Who may install: root directly, else sudo when it needs no password.
as_root=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "setup-deps: not root and sudo needs a password (or is absent); run:" >&2
    echo "  sudo sh -c '${install_cmd}'" >&2
    exit 1
  fi
fi

echo "setup-deps: installing ${#missing_pkgs[@]} package(s) with apt-get"
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing_pkgs[@]}"

# The install said it succeeded: make sure it gave us what we probe for.
probe
if ((${#missing_pkgs[@]} > 0)); then
  echo "setup-deps: still missing after apt-get install: ${missing_pkgs[*]}" >&2
  exit 1
fi
echo "setup-deps: ${summary}"
