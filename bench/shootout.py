#!/usr/bin/env python3
"""bench/shootout.py — the echo shoot-out: mini-netpoll against Go and plain C.

One command starts each echo server in turn, drives it with the same load
generator, and reports medians:

  servers   mini-netpoll's demos/echo-server on every backend this build and
            machine can run (MNP_BACKEND=epoll, uring-poll, uring; one that
            says "unavailable" at start is skipped by name, with its reason),
            the Go peer (bench/peers/goecho, goroutine per connection) and the
            C peer (bench/peers/epoll_echo.c: one thread, edge-triggered epoll,
            the syscall floor of a readiness server).
  placement the server on CPU 0, the load generator (bench/loadgen, plain C
            and epoll: shares no code with any server) on CPU 1, with taskset.
            mini-netpoll runs with MNP_PROCS=1; Go picks GOMAXPROCS=1 itself
            from the affinity mask; the C peer has one thread.
  order     interleaved: round 1 runs every workload on A, B, C, ..., round 2
            again, and so on (at least 3 rounds), so a slow minute on this
            shared machine hurts every server alike. Medians over the rounds.
  workloads ping-pong (one message in flight per connection) at 64 B and
            512 B with 1, 50, 1000 and 10000 connections; streaming (8
            connections, 16 KiB chunks, up to 256 KiB in flight each).
  metrics   msgs/s; p50/p99 latency per message; server CPU µs per message
            (utime+stime from /proc/PID/stat across the measured window);
            syscalls per message (mini-netpoll: its own counters, MNP_STATS=1,
            differenced over the window; peers: `strace -f -p` attached for
            the window of a separate short run, after its setup, counting
            calls over the bytes the server wrote back in the same span);
            the server's RSS at the window's end; and the share of a CPU the
            load generator and everything else on the machine used, so that
            a client-bound or disturbed cell can be seen as such.
  memory    RSS slope over 1k -> 10k idle connections (the client in its own
            process: ulimit -n is 20000 here), for every server.

Output: a table on the terminal, bench/results/latest.json (every run, the
medians, the verdicts), bench/results/latest.md (the table for the README),
and bench/results/latest.png (msgs/s against connections, per server).

  bench/shootout.py              the full run (about 5 minutes)
  bench/shootout.py --quick      a smaller run for CI (about 1 minute)
  bench/shootout.py --help       every option (servers, workloads, rounds, ...)

Everything runs on loopback; every load is bounded in time; every process
started here is ended (by its id) when the run ends, however it ends.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU = "0"
CLIENT_CPU = "1"
BACKENDS = ("epoll", "uring-poll", "uring")


def say(msg: str) -> None:
    print(f"shootout: {msg}", flush=True)


# --- workloads ------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    mode: str  # pingpong | stream
    size: int
    conns: int
    window: int = 0  # stream: bytes in flight per connection

    @property
    def name(self) -> str:
        if self.mode == "stream":
            return f"stream {self.size // 1024}K x{self.conns}"
        return f"pp {self.size}B x{self.conns}"

    @property
    def key(self) -> str:
        return f"{self.mode}-{self.size}-{self.conns}"


CONNS = (1, 50, 1000, 10000)
STREAM = Workload("stream", 16384, 8, 256 * 1024)
FULL_WORKLOADS = [Workload("pingpong", s, c) for s in (64, 512) for c in CONNS] + [STREAM]
QUICK_WORKLOADS = [
    Workload("pingpong", 64, 1),
    Workload("pingpong", 64, 1000),
    Workload("pingpong", 512, 50),
    STREAM,
]

# Syscalls a server makes per connection or once per process, not per message:
# left out of the strace count (the window of a short run would be dominated
# by accepting 10,000 connections otherwise).
SETUP_SYSCALLS = {
    "accept", "accept4", "socket", "bind", "listen", "setsockopt", "getsockopt",
    "getsockname", "getpeername", "close", "shutdown", "fcntl", "epoll_ctl",
    "epoll_create", "epoll_create1", "eventfd2", "execve", "brk", "mmap", "munmap",
    "mprotect", "arch_prctl", "set_tid_address", "set_robust_list", "rseq",
    "prlimit64", "getrlimit", "setrlimit", "uname", "openat", "newfstatat", "fstat",
    "pread64", "access", "readlinkat", "rt_sigaction", "rt_sigprocmask", "sigaltstack",
    "clone", "clone3", "gettid", "getpid", "sched_getaffinity", "sched_setaffinity",
    "exit_group", "exit", "io_uring_setup", "io_uring_register", "getrandom", "fadvise64",
    "madvise", "pipe2", "dup", "dup2", "dup3", "lseek", "statfs", "ioctl", "getdents64",
    "futex_waitv", "restart_syscall", "rt_sigreturn", "tgkill", "wait4", "pidfd_open",
}
# rt_sigreturn/tgkill: a signal's delivery (SIGTERM at the end, Go's preemption
# signals); futex stays counted (an idle M sleeping or waking is per-message
# work when it happens per message), as do reads, writes and poll waits.


# --- servers -------------------------------------------------------------------


class Unavailable(Exception):
    pass


@dataclass
class ServerSpec:
    name: str  # mnp-epoll, go, c-epoll
    kind: str  # mnp | go | c
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Server:
    """One running server: started pinned, its output read by a thread."""

    LISTEN_RE = re.compile(r"listening on (\S+?):(\d+)\b.*?\(pid (\d+)")

    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.lines: list[str] = []
        self.stats: list[dict[str, int]] = []
        self.addr = ""
        self.pid = 0
        self._ready = threading.Event()
        argv = ["taskset", "-c", SERVER_CPU] + spec.argv
        env = dict(os.environ)
        env.update(spec.env)
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, text=True, errors="replace", start_new_session=True)
        STARTED.append(self.proc)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not self._ready.wait(0.02):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                text = " ".join(self.lines[-3:]).strip()
                if "unavailable" in text:
                    raise Unavailable(text)
                raise RuntimeError(f"{spec.name} did not start: {text or 'no output'}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("echo-server: stats "):
                parts = line.split()[2:]
                self.stats.append({parts[i]: int(parts[i + 1]) for i in range(0, len(parts) - 1, 2)})
                continue
            self.lines.append(line)
            if not self._ready.is_set():
                m = self.LISTEN_RE.search(line)
                if m:
                    self.addr = f"{m.group(1)}:{m.group(2)}"
                    self.pid = int(m.group(3))
                    self._ready.set()

    def stop(self) -> None:
        """SIGTERM to the server, and wait for it."""
        target = self.pid or self.proc.pid
        try:
            os.kill(target, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            end_process(self.proc)
        self._reader.join(timeout=2)
        forget_finished()

    def stats_between(self, t0: int, t1: int) -> tuple[dict, dict] | None:
        inside = [s for s in self.stats if t0 <= s.get("t_ns", -1) <= t1]
        if len(inside) < 2:
            return None
        return inside[0], inside[-1]


STARTED: list[subprocess.Popen] = []  # every process this run started


def end_process(p: subprocess.Popen) -> None:
    """Ends one process we started, and its process group (it leads one)."""
    if p.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            p.wait(timeout=3)
            return
        except subprocess.TimeoutExpired:
            continue


def end_all() -> None:
    for p in STARTED:
        end_process(p)


def forget_finished() -> None:
    STARTED[:] = [p for p in STARTED if p.poll() is None]


# --- one measurement --------------------------------------------------------------


def run_loadgen(paths, server: Server, args: list[str], timeout: float) -> tuple[dict | None, str]:
    argv = ["taskset", "-c", CLIENT_CPU, paths["loadgen"], "--addr", server.addr,
            "--server-pid", str(server.pid), "--timeout", f"{timeout:.0f}"] + args
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    STARTED.append(p)
    try:
        out, err = p.communicate(timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        end_process(p)
        return None, "loadgen did not finish in time"
    result = None
    for line in out.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if p.returncode != 0:
        return result, f"loadgen exit {p.returncode}: {err.strip()[-400:]}"
    return result, ""


def start_server(spec: ServerSpec, row: dict) -> Server | None:
    """Starts the server, or records why it could not start in row["error"]."""
    try:
        return Server(spec)
    except (RuntimeError, Unavailable) as e:
        row["error"] = str(e)
        return None


def measure(paths, spec: ServerSpec, wl: Workload, duration: float, warmup: float) -> dict:
    row = {"server": spec.name, "workload": wl.key}
    server = start_server(spec, row)
    if not server:
        return row
    try:
        # 10,000 connections take about a second to set up here; a server that
        # cannot accept them in 20 s fails the cell rather than stall the run.
        args = ["--mode", wl.mode, "-c", str(wl.conns), "--size", str(wl.size),
                "--duration", str(duration), "--warmup", str(warmup), "--setup-timeout", "20"]
        if wl.window:
            args += ["--window", str(wl.window)]
        res, err = run_loadgen(paths, server, args, timeout=duration + warmup + 40)
    finally:
        server.stop()
    if res:
        row.update(res)
        row["other_cpu_frac"] = round(
            res["machine_busy_cpus"] - res.get("server_cpu_frac", 0) - res["client_cpu_frac"], 3)
        if spec.kind == "mnp":
            pair = server.stats_between(res["window_start_ns"], res["window_end_ns"])
            if pair and pair[1]["bytes"] > pair[0]["bytes"]:
                a, b = pair
                msgs = (b["bytes"] - a["bytes"]) / wl.size
                row["syscalls_per_msg"] = round((b["syscalls"] - a["syscalls"]) / msgs, 3)
                row["counters_per_msg"] = {
                    k: round((b[k] - a[k]) / msgs, 3)
                    for k in b if k not in ("t_ns", "bytes", "syscalls") and b[k] != a[k]}
    if err:
        row["error"] = err
    return row


def lines_into(stream, sink: list[str], event: threading.Event, marker: str) -> threading.Thread:
    """Reads `stream` line by line into `sink` (a thread); sets `event` on `marker`."""
    def read():
        for line in stream:
            sink.append(line.rstrip("\n"))
            if marker in line:
                event.set()
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def strace_measure(paths, spec: ServerSpec, wl: Workload) -> dict:
    """Syscalls per message as `strace -f` sees them, over a window that opens
    only once strace is attached (loadgen --gate): connection setup and warm-up
    happen untraced, so the count is the message path's alone, and 10,000
    accepts do not crawl under ptrace."""
    row = {"server": spec.name, "workload": wl.key}
    server = start_server(spec, row)
    if not server:
        return row
    with tempfile.NamedTemporaryFile(prefix="shootout-strace-", suffix=".txt", delete=False) as f:
        out = f.name
    res, calls, tracer = None, {}, None
    try:
        argv = ["taskset", "-c", CLIENT_CPU, paths["loadgen"], "--addr", server.addr,
                "--server-pid", str(server.pid), "--timeout", "120", "--setup-timeout", "30",
                "--gate", "--mode", wl.mode, "-c", str(wl.conns), "--size", str(wl.size),
                "--duration", "1", "--warmup", "0.1"]
        if wl.window:
            argv += ["--window", str(wl.window)]
        lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
        STARTED.append(lg)
        lg_err: list[str] = []
        ready = threading.Event()
        lines_into(lg.stderr, lg_err, ready, "loadgen: ready")
        if ready.wait(60):
            # -ttt: each call's start time, so that only the calls inside the
            # load generator's window are counted (the trace also spans the
            # attach and the end of the run; see parse_strace).
            tracer = subprocess.Popen(["strace", "-f", "-qq", "-ttt", "-s", "0", "-e",
                                       "signal=none", "-o", out, "-p", str(server.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)
            STARTED.append(tracer)
            # -qq prints no "attached" line: watch every thread's TracerPid.
            wait_traced(server.pid, tracer.pid, 5)
            os.kill(lg.pid, signal.SIGUSR1)
        try:
            stdout, _ = lg.communicate(timeout=130)
        except subprocess.TimeoutExpired:
            end_process(lg)
            stdout = ""
        for line in stdout.splitlines():
            if line.startswith("{"):
                res = json.loads(line)
        if tracer:
            tracer.send_signal(signal.SIGINT)  # detach
            try:
                tracer.wait(timeout=15)
            except subprocess.TimeoutExpired:
                end_process(tracer)
            # The window's edges are CLOCK_MONOTONIC; strace -ttt prints the
            # wall clock: the offset between the two, read now.
            off = time.time() - time.monotonic()
            win = None
            if res and "window_start_ns" in res:
                win = (res["window_start_ns"] / 1e9 + off, res["window_end_ns"] / 1e9 + off)
            calls = parse_strace(out, win)
        if lg.returncode != 0:
            row["error"] = f"loadgen exit {lg.returncode}: {' '.join(lg_err[-3:])[-400:]}"
    finally:
        if tracer:
            end_process(tracer)
        server.stop()
        os.unlink(out)
    written = calls.pop("", 0)  # bytes the server wrote with write/send* in the window
    if not res or not calls:
        row.setdefault("error", "no strace output")
        return row
    # Messages: the load generator's count for its window, the same span as
    # the calls counted (a completion backend's writes are not syscalls, so
    # the bytes the server wrote cannot serve; until this used the trace's
    # whole span over the window's messages, and -qq had hidden the
    # "attached" line it waited 5 s for: mnp-uring showed 21.9 syscalls per
    # message for 3).
    msgs = res["msgs"]
    io = {k: v for k, v in calls.items() if k not in SETUP_SYSCALLS}
    row.update({
        "msgs": round(msgs), "msgs_from": "loadgen window", "bytes_written": written,
        "syscalls_per_msg": round(sum(io.values()) / msgs, 3) if msgs else None,
        "per_msg": {k: round(v / msgs, 3) for k, v in sorted(io.items(), key=lambda kv: -kv[1])
                    if v / max(msgs, 1) >= 0.001},
        "left_out": {k: v for k, v in calls.items() if k in SETUP_SYSCALLS},
    })
    return row


STRACE_CALL = re.compile(r"^(?:\d+\s+)?(?:(\d+\.\d+)\s+)?(\w+)\(")
STRACE_RESUMED = re.compile(r"^(?:\d+\s+)?(?:(\d+\.\d+)\s+)?<\.\.\. (\w+) resumed>")
STRACE_RESULT = re.compile(r"\)\s+=\s+(-?\d+)")
WRITE_CALLS = {"write", "writev", "sendto", "sendmsg", "pwrite64"}
STDIO_ARG = re.compile(r"\w\((?:1|2),")


def wait_traced(pid: int, tracer: int, limit: float) -> bool:
    """Waits until every thread of pid is traced by tracer (TracerPid in
    /proc/PID/task/*/status), at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            ok = bool(tids)
            for t in tids:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    m = re.search(r"^TracerPid:\s+(\d+)", f.read(), re.M)
                if not m or int(m.group(1)) != tracer:
                    ok = False
                    break
            if ok:
                return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def parse_strace(path: str, window: tuple[float, float] | None = None) -> dict[str, int]:
    """Counts the calls in a full strace log, by name; under the key "" the bytes
    returned by write-like calls (the server's echoed bytes). With `window` (wall
    clock seconds, strace -ttt), only the calls that started inside it."""
    calls: dict[str, int] = {}
    written = 0
    try:
        f = open(path, errors="replace")
    except OSError:
        return calls
    with f:
        for line in f:
            m = STRACE_CALL.match(line)
            name = None
            if m:
                if window and m.group(1) and not window[0] <= float(m.group(1)) <= window[1]:
                    continue
                name = m.group(2)
                if name in WRITE_CALLS and STDIO_ARG.search(line):
                    continue  # the server's own log lines (mnp's MNP_STATS), not echo
                calls[name] = calls.get(name, 0) + 1
                if "<unfinished ...>" in line:
                    continue  # its result comes on the "resumed" line
            else:
                m = STRACE_RESUMED.match(line)
                if not m:
                    continue
                if window and m.group(1) and not window[0] <= float(m.group(1)) <= window[1]:
                    continue
                name = m.group(2)
            if name in WRITE_CALLS:
                r = STRACE_RESULT.search(line)
                if r and int(r.group(1)) > 0:
                    written += int(r.group(1))
    if calls:
        calls[""] = written
    return calls


def memory_measure(paths, spec: ServerSpec, steps: list[int], ping: int) -> dict:
    row = {"server": spec.name, "ping": ping}
    server = start_server(spec, row)
    if not server:
        return row
    try:
        args = ["--mode", "idle", "--steps", ",".join(map(str, steps)), "--ping", str(ping),
                "--size", "64", "--settle", "300"]
        res, err = run_loadgen(paths, server, args, timeout=120)
    finally:
        server.stop()
    if res:
        row.update({k: res[k] for k in ("steps", "slope_bytes_per_conn")})
    if err:
        row["error"] = err
    return row


# --- build and discovery ---------------------------------------------------------


def build(build_dir: str, skip: bool) -> dict[str, str]:
    targets = {
        "echo-server": "demos/echo-server",
        "loadgen": "bench/loadgen/loadgen",
        "epoll-echo": "bench/loadgen/epoll-echo",
        "goecho": "bench/loadgen/goecho",
    }
    if not skip:
        if not os.path.exists(os.path.join(build_dir, "build.ninja")):
            say(f"configuring {build_dir} (release)")
            subprocess.run(["meson", "setup", build_dir, "--buildtype=release", "-Dtests=false"],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        want = [t for n, t in targets.items() if n != "goecho" or shutil.which("go")]
        say(f"building {', '.join(want)} in {build_dir}")
        r = subprocess.run(["ninja", "-C", build_dir] + want, cwd=ROOT, capture_output=True,
                           text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-3000:] + r.stderr[-2000:])
            raise SystemExit("shootout: the build failed (see above)")
    return {n: os.path.join(build_dir, t) for n, t in targets.items()}


def server_specs(paths, wanted: list[str] | None, skipped: dict[str, str]) -> list[ServerSpec]:
    specs = []
    for b in BACKENDS:
        specs.append(ServerSpec(
            f"mnp-{b}", "mnp", [paths["echo-server"], "--addr", "127.0.0.1:0", "--quiet"],
            {"MNP_BACKEND": b, "MNP_PROCS": "1", "MNP_STATS": "1"}))
    # Opt-in (named in --servers only): the uring backend with multishot recv
    # into a provided buffer ring, off by default in the runtime.
    if wanted and "mnp-uring-msrecv" in wanted:
        specs.append(ServerSpec(
            "mnp-uring-msrecv", "mnp", [paths["echo-server"], "--addr", "127.0.0.1:0", "--quiet"],
            {"MNP_BACKEND": "uring", "MNP_URING_RECV": "multishot", "MNP_PROCS": "1",
             "MNP_STATS": "1"}))
    # Opt-in too: the uring backend with operations only (no direct syscalls
    # while streaming), the way it was before MNP_URING_DIRECT.
    if wanted and "mnp-uring-ops" in wanted:
        specs.append(ServerSpec(
            "mnp-uring-ops", "mnp", [paths["echo-server"], "--addr", "127.0.0.1:0", "--quiet"],
            {"MNP_BACKEND": "uring", "MNP_URING_DIRECT": "0", "MNP_PROCS": "1",
             "MNP_STATS": "1"}))
    specs.append(ServerSpec("go", "go", [paths["goecho"], "-addr", "127.0.0.1:0"]))
    specs.append(ServerSpec("c-epoll", "c", [paths["epoll-echo"], "--addr", "127.0.0.1:0"]))
    out = []
    for s in specs:
        if wanted and s.name not in wanted:
            continue
        if not os.access(s.argv[0], os.X_OK):
            skipped[s.name] = f"not built ({s.argv[0]})" + (
                ": install golang-go" if s.kind == "go" else "")
            continue
        try:  # a backend the machine cannot run says so at start
            Server(s).stop()
        except Unavailable as e:
            skipped[s.name] = str(e)
            continue
        out.append(s)
    return out


# --- reporting ----------------------------------------------------------------------


def med(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs, strace_rows, servers, workloads) -> dict:
    table = {}
    for wl in workloads:
        for s in servers:
            rows = [r for r in runs if r["server"] == s.name and r["workload"] == wl.key
                    and "msgs_per_s" in r and "error" not in r]
            cell = {k: med(rows, k) for k in (
                "msgs_per_s", "mbytes_per_s", "p50_us", "p99_us", "server_cpu_us_per_msg",
                "server_rss_kib", "client_cpu_frac", "other_cpu_frac", "syscalls_per_msg")}
            cell["rounds"] = len(rows)
            cell["syscalls_source"] = "counters" if s.kind == "mnp" else None
            st = [r for r in strace_rows if r["server"] == s.name and r["workload"] == wl.key
                  and r.get("syscalls_per_msg") is not None]
            if st:
                cell["strace_syscalls_per_msg"] = st[0]["syscalls_per_msg"]
                if s.kind != "mnp":
                    cell["syscalls_per_msg"] = st[0]["syscalls_per_msg"]
                    cell["syscalls_source"] = "strace"
            table[f"{s.name}|{wl.key}"] = cell
    return table


def fmt(v, spec: str, dash: str = "-") -> str:
    return dash if v is None else format(v, spec)


def render_table(table, servers, workloads) -> str:
    hdr = (f"{'workload':<16} {'server':<14} {'msgs/s':>10} {'xGo':>6} {'p50 us':>8} "
           f"{'p99 us':>8} {'CPU us/msg':>10} {'sys/msg':>8} {'RSS MiB':>8} {'client':>7} "
           f"{'other':>6}")
    lines = [hdr, "-" * len(hdr)]
    for wl in workloads:
        go = table.get(f"go|{wl.key}", {}).get("msgs_per_s")
        for s in servers:
            c = table[f"{s.name}|{wl.key}"]
            ratio = (c["msgs_per_s"] / go) if (go and c["msgs_per_s"]) else None
            sysm = fmt(c["syscalls_per_msg"], ".2f")
            if c.get("syscalls_source") == "strace":
                sysm += "*"
            rss = c["server_rss_kib"] / 1024 if c["server_rss_kib"] else None
            lines.append(
                f"{wl.name:<16} {s.name:<14} {fmt(c['msgs_per_s'], ',.0f'):>10} "
                f"{fmt(ratio, '.2f'):>6} {fmt(c['p50_us'], '.1f'):>8} {fmt(c['p99_us'], '.0f'):>8} "
                f"{fmt(c['server_cpu_us_per_msg'], '.2f'):>10} {sysm:>8} {fmt(rss, '.1f'):>8} "
                f"{fmt(c['client_cpu_frac'], '.0%'):>7} {fmt(c['other_cpu_frac'], '.0%'):>6}")
        lines.append("")
    lines.append("msgs/s, latency, CPU, RSS: medians over the rounds. sys/msg: mini-netpoll's own "
                 "counters; * = strace -f")
    lines.append("attached for the window of a separate run (peers). client/other: CPU share used "
                 "by the load generator / by everything else")
    lines.append("on the machine during the window (a client near 100% means the cell is "
                 "client-bound).")
    checks = [f"{s.name} {wl.name}: {c['syscalls_per_msg']:.2f} vs {c['strace_syscalls_per_msg']:.2f}"
              for wl in workloads for s in servers if s.kind == "mnp"
              for c in [table[f"{s.name}|{wl.key}"]]
              if c.get("strace_syscalls_per_msg") is not None and c.get("syscalls_per_msg")]
    if checks:
        lines.append("mini-netpoll's counters vs strace (sys/msg): " + "; ".join(checks))
    return "\n".join(lines)


def verdicts(table, servers, workloads, memory) -> list[dict]:
    out = []
    mnp = [s for s in servers if s.kind == "mnp"]
    keys = [wl.key for wl in workloads]

    def cell(name, key):
        return table.get(f"{name}|{key}", {})

    for s in mnp:
        ratios, cpu = [], []
        for k in keys:
            a, g = cell(s.name, k), cell("go", k)
            if a.get("msgs_per_s") and g.get("msgs_per_s"):
                ratios.append((k, a["msgs_per_s"] / g["msgs_per_s"]))
            if a.get("server_cpu_us_per_msg") and g.get("server_cpu_us_per_msg"):
                cpu.append((k, a["server_cpu_us_per_msg"] / g["server_cpu_us_per_msg"]))
        if ratios:
            miss = [f"{k} {r:.2f}x" for k, r in ratios if r < 1.15]
            out.append({"target": f"{s.name}: msgs/s >= 1.15x Go", "met": not miss,
                        "detail": "every workload" if not miss else "missed: " + ", ".join(miss),
                        "ratios": {k: round(r, 3) for k, r in ratios}})
        if cpu:
            miss = [f"{k} {r:.2f}x" for k, r in cpu if r >= 1.0]
            out.append({"target": f"{s.name}: server CPU/msg below Go's", "met": not miss,
                        "detail": "every workload" if not miss else "missed (mnp/Go): "
                        + ", ".join(miss), "ratios": {k: round(r, 3) for k, r in cpu}})
        for size in (64, 512):
            a = cell(s.name, f"pingpong-{size}-10000").get("msgs_per_s")
            b = cell(s.name, f"pingpong-{size}-1000").get("msgs_per_s")
            if a and b:
                # The C loop's own ratio says how much of the drop is the kernel's and the
                # load generator's (10,000 sockets, a working set past the caches).
                ca = cell("c-epoll", f"pingpong-{size}-10000").get("msgs_per_s")
                cb = cell("c-epoll", f"pingpong-{size}-1000").get("msgs_per_s")
                ref = f" (c-epoll: {ca / cb:.2f}x)" if ca and cb else ""
                out.append({"target": f"{s.name}: msgs/s at 10k conns >= 0.8x at 1k ({size} B)",
                            "met": a / b >= 0.8, "detail": f"{a / b:.2f}x{ref}"})
    ep = cell("mnp-epoll", "pingpong-64-1000").get("syscalls_per_msg")
    ur = cell("mnp-uring", "pingpong-64-1000").get("syscalls_per_msg")
    if ep and ur:
        out.append({"target": "uring: fewer syscalls/msg than epoll at 1000 conns (64 B)",
                    "met": ur < ep, "detail": f"uring {ur:.2f} vs epoll {ep:.2f}"})
    else:
        out.append({"target": "uring: fewer syscalls/msg than epoll at 1000 conns (64 B)",
                    "met": None, "detail": "not measured: mnp-uring "
                    + ("skipped" if not ur else "ok") + ", mnp-epoll " + ("ok" if ep else "missing")})
    for m in memory:
        if m.get("ping") == 0 and m["server"].startswith("mnp-") and m.get("slope_bytes_per_conn"):
            kib = m["slope_bytes_per_conn"] / 1024
            steps = " -> ".join(f"{s['conns'] / 1000:g}k" for s in m["steps"])
            out.append({"target": f"{m['server']}: <= 4 KiB RSS per idle parked connection",
                        "met": kib <= 4.0, "detail": f"{kib:.2f} KiB/conn (slope over {steps})"})
    return out


def render_memory(memory) -> str:
    lines = [f"{'server':<14} {'exchange':<10} {'KiB/conn':>9}  RSS MiB at each step"]
    for m in memory:
        steps = " ".join(f"{s['conns'] / 1000:g}k:{s['rss_kib'] / 1024:.1f}"
                         for s in m.get("steps", []))
        slope = m.get("slope_bytes_per_conn")
        lines.append(f"{m['server']:<14} {'none' if m['ping'] == 0 else 'one 64 B':<10} "
                     f"{fmt(slope / 1024 if slope else None, '.2f'):>9}  {steps}"
                     + (f"  [{m['error']}]" if m.get("error") else ""))
    return "\n".join(lines)


def plot(table, servers, workloads, png: str, title: str) -> str | None:
    gp = shutil.which("gnuplot")
    if not gp:
        return "gnuplot not installed (Debian: gnuplot-nox): no plot"
    sizes = sorted({wl.size for wl in workloads if wl.mode == "pingpong"})
    tmp = tempfile.mkdtemp(prefix="shootout-plot-")
    try:
        script = [
            f"set terminal pngcairo size {560 * max(len(sizes), 1)},480 font 'sans,10'",
            f"set output '{png}'",
            f"set multiplot layout 1,{max(len(sizes), 1)} title '{title}' font 'sans,11'",
            "set logscale x", "set xrange [0.7:15000]", "set xtics (1, 50, 1000, 10000)",
            "set xlabel 'connections'", "set ylabel 'messages/s (median)'",
            "set format y '%.0s%c'", "set yrange [0:*]", "set grid",
            "set key top left box opaque",
        ]
        for size in sizes:
            plots = []
            for i, s in enumerate(servers):
                data = os.path.join(tmp, f"{s.name}-{size}.dat")
                with open(data, "w") as f:
                    for wl in workloads:
                        if wl.mode == "pingpong" and wl.size == size:
                            v = table[f"{s.name}|{wl.key}"]["msgs_per_s"]
                            if v:
                                f.write(f"{wl.conns} {v}\n")
                plots.append(f"'{data}' using 1:2 with linespoints lw 2 pt {i + 5} ps 1.2 "
                             f"title '{s.name}'")
            script.append(f"set title 'ping-pong, {size} B messages'")
            script.append("plot " + ", ".join(plots))
        script.append("unset multiplot")
        r = subprocess.run([gp], input="\n".join(script), text=True, capture_output=True)
        if r.returncode != 0:
            return "gnuplot failed: " + r.stderr.strip()[-300:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def machine_info() -> dict:
    def cmd(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": model,
            "go": cmd("go", "version"), "cc": cmd("cc", "--version").splitlines()[0:1],
            "ulimit_n": cmd("bash", "-c", "ulimit -n"),
            "io_uring_disabled": cmd("cat", "/proc/sys/kernel/io_uring_disabled")}


# --- main -------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description="The echo shoot-out: mini-netpoll on every backend vs Go vs a C epoll loop.",
        epilog="Default: the full run (about 5 minutes). See the top of this file for the method.")
    ap.add_argument("--quick", action="store_true", help="fewer workloads, shorter runs (~1 min)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3, at least 3 unless "
                    "--allow-fewer-rounds)")
    ap.add_argument("--allow-fewer-rounds", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, help="measured seconds per run (default 1.2; quick 0.4)")
    ap.add_argument("--warmup", type=float, help="seconds of load before measuring (default 0.2)")
    ap.add_argument("--servers", help="comma-separated subset: mnp-epoll,mnp-uring-poll,mnp-uring,"
                    "go,c-epoll; also mnp-uring-msrecv (opt-in: uring with multishot recv) and "
                         "mnp-uring-ops (uring with operations only, MNP_URING_DIRECT=0)")
    ap.add_argument("--workloads", help="comma-separated keys, e.g. pingpong-64-1000,stream-16384-8")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-bench"),
                    help="meson build dir (default build-bench/, set up as release if missing)")
    ap.add_argument("--no-build", action="store_true", help="use the build dir as it is")
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="SEC",
                    help="wait up to SEC for other processes to go idle first (default 60; quick 10)")
    ap.add_argument("--no-strace", action="store_true", help="skip the strace pass")
    ap.add_argument("--strace-all", action="store_true",
                    help="trace the peers on every workload (default: 64 B and streaming)")
    ap.add_argument("--no-memory", action="store_true", help="skip the idle-connection RSS pass")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                    help="where latest.json/.md/.png go (default bench/results/)")
    a = ap.parse_args()

    rounds = a.rounds or 3
    if rounds < 3 and not a.allow_fewer_rounds:
        ap.error("--rounds: at least 3 (medians of fewer are not worth reporting)")
    duration = a.duration or (0.4 if a.quick else 1.2)
    warmup = a.warmup if a.warmup is not None else (0.15 if a.quick else 0.2)
    workloads = QUICK_WORKLOADS if a.quick else FULL_WORKLOADS
    if a.workloads:
        byk = {w.key: w for w in FULL_WORKLOADS + QUICK_WORKLOADS}
        try:
            workloads = [byk[k] for k in a.workloads.split(",")]
        except KeyError as e:
            ap.error(f"unknown workload {e}; known: {', '.join(byk)}")
    if a.wait_quiet is None:
        a.wait_quiet = 10 if a.quick else 60
    mem_steps = [1000, 2000, 3000] if a.quick else [1000, 2500, 5000, 7500, 10000]

    for tool in ("taskset", "meson", "ninja"):
        if not shutil.which(tool):
            raise SystemExit(f"shootout: {tool} is missing")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("shootout: needs 2 CPUs (server on CPU 0, load generator on CPU 1)")

    t_start = time.monotonic()
    command = "bench/shootout.py" + ("".join(" " + x for x in sys.argv[1:]))
    paths = build(os.path.abspath(a.build_dir), a.no_build)
    skipped: dict[str, str] = {}
    servers = server_specs(paths, a.servers.split(",") if a.servers else None, skipped)
    for name, why in skipped.items():
        say(f"skipping {name}: {why}")
    if not servers:
        raise SystemExit("shootout: no server could start")
    say(f"servers: {', '.join(s.name for s in servers)}; {len(workloads)} workloads x "
        f"{rounds} rounds, {duration} s each (+{warmup} s warm-up)")

    wait_quiet(a.wait_quiet)
    t_load = time.monotonic()
    runs: list[dict] = []
    retry_budget = rounds * len(workloads) * len(servers) // 6
    failed_cells: dict[tuple[str, str], int] = {}  # (server, workload) -> round it failed
    for r in range(rounds):
        for wl in workloads:
            for s in servers:
                if (s.name, wl.key) in failed_cells:  # it would fail again: save the time
                    runs.append({"server": s.name, "workload": wl.key, "round": r + 1,
                                 "error": f"not run: failed in round {failed_cells[s.name, wl.key]}"})
                    continue
                row = measure(paths, s, wl, duration, warmup)
                # This machine may be shared: a cell that something else took CPU from
                # is run again (twice at most, and at most one retry per six cells
                # in all, so a machine that stays busy does not double the run), and
                # the least disturbed try is kept.
                for _ in range(2):
                    if row.get("other_cpu_frac", 0) <= DISTURBED or retry_budget <= 0:
                        break
                    retry_budget -= 1
                    again = measure(paths, s, wl, duration, warmup)
                    again["retried"] = row.get("retried", 0) + 1
                    if again.get("other_cpu_frac", 9) < row.get("other_cpu_frac", 9):
                        row = again
                    else:
                        row["retried"] = again["retried"]
                row["round"] = r + 1
                runs.append(row)
                if "error" in row:
                    failed_cells[s.name, wl.key] = r + 1
                    say(f"[{r + 1}/{rounds}] {wl.name:<15} {s.name:<14} ERROR {row['error']}")
                else:
                    say(f"[{r + 1}/{rounds}] {wl.name:<15} {s.name:<14} "
                        f"{row['msgs_per_s']:>10,.0f} msgs/s  p99 {row['p99_us']:>8.0f} us  "
                        f"cpu {row.get('server_cpu_us_per_msg', 0):.2f} us/msg  "
                        f"client {row['client_cpu_frac']:.0%} other {row['other_cpu_frac']:.0%}")

    phases = {"load": round(time.monotonic() - t_load, 1)}
    t_phase = time.monotonic()
    strace_rows: list[dict] = []
    if not a.no_strace:
        if not shutil.which("strace"):
            say("strace not installed: no syscall counts for the peers")
        else:
            # An echo's syscalls per message do not depend on its size (512 B
            # matched 64 B to the second decimal in every run so far): the peers
            # are traced on the 64 B and streaming workloads unless --strace-all.
            say("strace pass: the peers on " + ("every workload" if a.strace_all else
                "the 64 B and streaming workloads") + ", mini-netpoll on two (a check of its "
                "counters)")
            check = {"pingpong-64-1", "pingpong-64-1000"}
            for s in servers:
                for wl in workloads:
                    if s.kind == "mnp" and wl.key not in check:
                        continue
                    if not a.strace_all and wl.mode == "pingpong" and wl.size != 64:
                        continue
                    row = strace_measure(paths, s, wl)
                    strace_rows.append(row)
                    say(f"  strace {s.name:<14} {wl.name:<15} "
                        + (f"{row['syscalls_per_msg']:.2f} syscalls/msg "
                           + " ".join(f"{k} {v}" for k, v in list(row['per_msg'].items())[:5])
                           if row.get("syscalls_per_msg") is not None else row.get("error", "")))

    phases["strace"] = round(time.monotonic() - t_phase, 1)
    t_phase = time.monotonic()
    memory: list[dict] = []
    if not a.no_memory:
        say(f"memory pass: idle connections {mem_steps[0]} -> {mem_steps[-1]}")
        for ping in ((0,) if a.quick else (0, 1)):
            for s in servers:
                m = memory_measure(paths, s, mem_steps, ping)
                memory.append(m)
                slope = m.get("slope_bytes_per_conn")
                say(f"  {s.name:<14} exchange {'none' if ping == 0 else 'one':<5} "
                    + (f"{slope / 1024:.2f} KiB/conn" if slope else m.get("error", "?")))

    phases["memory"] = round(time.monotonic() - t_phase, 1)
    table = summarize(runs, strace_rows, servers, workloads)
    verdict = verdicts(table, servers, workloads, memory)
    text = render_table(table, servers, workloads)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    info = machine_info()
    elapsed = time.monotonic() - t_start

    print()
    print(f"=== echo shoot-out, {when}, {info['cpu_model']}, Linux {info['kernel']} ===")
    print(f"command: {command}   ({elapsed:.0f} s: build + waiting + load {phases['load']:.0f} s, "
          f"strace {phases['strace']:.0f} s, memory {phases['memory']:.0f} s)")
    if skipped:
        print("skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    others = [r["other_cpu_frac"] for r in runs if r.get("other_cpu_frac") is not None]
    busy_note = ""
    if others and statistics.median(others) > DISTURBED:
        busy_note = (f"WARNING: other processes used {statistics.median(others):.1f} CPUs (median) "
                     "during the measured windows: absolute rates are depressed and noisy. Compare "
                     "servers within a workload (runs were interleaved), and CPU us/msg, which is "
                     "per message and suffers least.")
        print(busy_note)
    print()
    print(text)
    mem_text = render_memory(memory) if memory else ""
    if memory:
        print()
        print("RSS per idle connection (slope of server RSS over the steps; exchange: none = "
              "accepted and parked, one = after one echo)")
        print(mem_text)
    print()
    print("targets (shown, not asserted):")
    vlines = []
    for v in verdict:
        mark = {True: "MET   ", False: "MISSED", None: "n/a   "}[v["met"]]
        vlines.append(f"  {mark} {v['target']}: {v['detail']}")
    print("\n".join(vlines))

    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "latest.png")
    perr = plot(table, servers, workloads, png,
                f"echo shoot-out {when} (server CPU 0, load generator CPU 1)")
    if perr:
        say(perr)
    doc = {
        "command": command, "date": when, "elapsed_s": round(elapsed, 1), "phases_s": phases,
        "machine": info, "warning": busy_note or None,
        "config": {"rounds": rounds, "duration_s": duration, "warmup_s": warmup,
                   "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU,
                   "workloads": [w.key for w in workloads],
                   "servers": [{"name": s.name, "argv": s.argv, "env": s.env} for s in servers],
                   "memory_steps": mem_steps},
        "skipped": skipped, "medians": table, "targets": verdict, "memory": memory,
        "strace": strace_rows, "runs": runs,
    }
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(a.out, "latest.md"), "w") as f:
        f.write(f"# Echo shoot-out — {when}\n\n")
        f.write(f"`{command}` on {info['cpu_model']} ({info['cpus']} CPUs, Linux "
                f"{info['kernel']}), {elapsed:.0f} s. Server pinned to CPU 0, load generator "
                f"to CPU 1; {rounds} interleaved rounds of {duration} s; medians.\n\n")
        if skipped:
            f.write("Skipped: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + "\n\n")
        if busy_note:
            f.write(busy_note + "\n\n")
        f.write("```\n" + text + "\n```\n\n")
        if memory:
            f.write("RSS per idle connection:\n\n```\n" + mem_text + "\n```\n\n")
        f.write("Targets (shown, not asserted):\n\n```\n" + "\n".join(vlines) + "\n```\n")
        if not perr:
            f.write("\n![msgs/s vs connections](latest.png)\n")
    say(f"wrote {os.path.relpath(a.out, ROOT)}/latest.json, latest.md"
        + ("" if perr else ", latest.png"))
    failed = [r for r in runs if "error" in r]
    if failed:
        say(f"{len(failed)} run(s) failed (see 'error' in latest.json)")
        return 1
    return 0


DISTURBED = 0.25  # share of a CPU used by other processes above which a cell is retried


def machine_busy_cpus(seconds: float) -> float:
    """How many CPUs' worth the whole machine used over `seconds` (/proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], os.sysconf("SC_CLK_TCK")
    (b0, hz), t0 = sample(), time.monotonic()
    time.sleep(seconds)
    (b1, _), t1 = sample(), time.monotonic()
    return (b1 - b0) / hz / (t1 - t0)


def wait_quiet(limit: float) -> None:
    """Waits (at most `limit` seconds) until the machine is idle before measuring."""
    deadline = time.monotonic() + limit
    next_say = 0.0
    while True:
        busy = machine_busy_cpus(1.0)
        if busy <= DISTURBED:
            return
        if time.monotonic() >= deadline:
            say(f"warning: the machine is busy ({busy:.1f} CPUs used by other processes): "
                "numbers will be noisy")
            return
        if time.monotonic() >= next_say:
            say(f"waiting up to {deadline - time.monotonic():.0f} s for the machine to be idle "
                f"({busy:.1f} CPUs busy)")
            next_say = time.monotonic() + 15


def on_signal(sig, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    try:
        rc = main()
    except KeyboardInterrupt:
        say("interrupted")
        rc = 130
    finally:
        end_all()
    sys.exit(rc)
