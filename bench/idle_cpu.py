#!/usr/bin/env python3
"""bench/idle_cpu.py — no idle CPU burn (issue 3): the echo server with every
G parked on I/O uses < 1% of a CPU.

  bench/idle_cpu.py build/demos/echo-server [--conns 1000] [--seconds 5]
                    [--backends epoll,uring-poll,uring] [--procs 1,4] [--max-percent 1]

For each backend and processor count: start echo-server, open --conns
connections to it (each one echo round trip, so each has a G parked in read
on the server), let it settle 0.5 s, then read the server's utime+stime from
/proc/PID/stat before and after --seconds of quiet. Prints one line each and
exits 1 if any uses --max-percent or more of one CPU. A backend the machine
lacks is skipped by name.
"""
import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def measure(server, backend, procs, conns, seconds):
    env = dict(os.environ, MNP_BACKEND=backend, MNP_PROCS=str(procs))
    p = subprocess.Popen([server, "--addr", "127.0.0.1:0", "--quiet"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    socks = []
    try:
        line = p.stdout.readline()
        if "listening on" not in line:
            p.wait(10)
            return None, p.stderr.read().strip()
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        for i in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise AssertionError(f"conn {i}: no echo")
            socks.append(s)
        time.sleep(0.5)  # the last Gs park; nothing else is awaited here
        c0, t0 = cpu_seconds(p.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(p.pid), time.monotonic()
        return {"percent": 100 * (c1 - c0) / (t1 - t0), "cpu_ms": 1000 * (c1 - c0),
                "wall": t1 - t0, "threads": threads(p.pid)}, None
    finally:
        for s in socks:
            s.close()
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--backends", default="epoll,uring-poll,uring")
    ap.add_argument("--procs", default="1,4")
    ap.add_argument("--max-percent", type=float, default=1.0)
    a = ap.parse_args()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if a.conns + 64 > soft:
        sys.exit(f"idle_cpu: --conns {a.conns} needs ulimit -n > {a.conns + 64} (have {soft})")
    bad = 0
    for backend in a.backends.split(","):
        for procs in [int(x) for x in a.procs.split(",")]:
            r, why = measure(a.server, backend, procs, a.conns, a.seconds)
            if r is None:
                print(f"idle_cpu: {backend}: skipped: {why}")
                break
            ok = r["percent"] < a.max_percent
            bad += not ok
            print(f"idle_cpu: {backend:10} procs={procs}: {a.conns} conns parked, "
                  f"{r['cpu_ms']:.0f} ms CPU in {r['wall']:.1f} s = {r['percent']:.2f}% of a CPU "
                  f"({r['threads']} threads) {'ok' if ok else 'FAIL: >= %g%%' % a.max_percent}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
