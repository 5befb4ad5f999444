#!/usr/bin/env python3
"""tests/trace/trace_schema_test.py — the trace of the echo demo is valid
trace-event JSON (issue 8).

  trace_schema_test.py ECHO_SERVER SCHEMA

For each backend the machine has: echo-server runs with MNP_TRACE=FILE,
20 clients do 10 round trips each (bytes checked), SIGTERM; the server
must exit 0 and leave FILE. Then FILE must

  1. parse as JSON and validate against SCHEMA (trace_event.schema.json:
     the trace-event format's object form, the event kinds we write);
  2. make sense as a timeline: on each M's track the spans (G runs, poller
     calls) never overlap; every track is named by a thread_name event; a
     G was seen parked in "IO wait (read)" on a real fd; a poller call
     returned ready fds; every "ready G<n>" names a G that ran.

The validator is a small one of our own (no package needed) for the schema
keywords the schema uses; before trusting it, the test shows it rejects
broken traces (a missing ts, a wrong ph, overlapping spans).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

# --- a JSON-Schema subset: type, enum, required, properties, items, minItems,
# minLength, minimum, oneOf --------------------------------------------------

TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
KNOWN = {"$comment", "type", "enum", "required", "properties", "items", "minItems",
         "minLength", "minimum", "oneOf"}


def errors(schema, v, path="$"):
    """Every way v fails schema, as 'path: reason' strings."""
    unknown = set(schema) - KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) this validator lacks: {sorted(unknown)}")
    out = []
    t = schema.get("type")
    if t and not TYPES[t](v):
        return [f"{path}: expected {t}, got {type(v).__name__}"]
    if "enum" in schema and v not in schema["enum"]:
        out.append(f"{path}: {v!r} not one of {schema['enum']}")
    if isinstance(v, dict):
        for k in schema.get("required", []):
            if k not in v:
                out.append(f"{path}: missing {k!r}")
        for k, sub in schema.get("properties", {}).items():
            if k in v:
                out += errors(sub, v[k], f"{path}.{k}")
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(v):
                out += errors(schema["items"], item, f"{path}[{i}]")
    if isinstance(v, str) and len(v) < schema.get("minLength", 0):
        out.append(f"{path}: shorter than {schema['minLength']}")
    if "minimum" in schema and TYPES["number"](v) and v < schema["minimum"]:
        out.append(f"{path}: {v} < {schema['minimum']}")
    if "oneOf" in schema:
        ok = sum(1 for sub in schema["oneOf"] if not errors(sub, v, path))
        if ok != 1:
            out.append(f"{path}: matches {ok} of the oneOf alternatives, not exactly 1")
    return out


def timeline_errors(trace):
    """What a timeline viewer would show wrong, beyond the schema."""
    out = []
    evs = trace["traceEvents"]
    named = {e["tid"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    tracks = {}
    for e in evs:
        if e["ph"] != "M" and e["tid"] not in named:
            out.append(f"tid {e['tid']} has events but no thread_name")
            named.add(e["tid"])
        if e["ph"] == "X":
            tracks.setdefault(e["tid"], []).append(e)
    for tid, spans in tracks.items():
        spans.sort(key=lambda e: e["ts"])
        for a, b in zip(spans, spans[1:]):
            if a["ts"] + a["dur"] > b["ts"] + 0.002:  # ts/dur are written to 1 ns
                out.append(f"M{tid}: {a['name']} [{a['ts']}+{a['dur']}] overlaps "
                           f"{b['name']} at {b['ts']}")
                break
    gspans = [e for e in evs if e["ph"] == "X" and e.get("cat") == "g"]
    if not any(e["args"].get("wait") == "IO wait (read)" and e["args"].get("fd", -1) >= 0
               for e in gspans):
        out.append('no G span ends parked in "IO wait (read)" on an fd')
    if not any(e.get("cat") == "netpoll" and e["args"].get("ready", 0) > 0 for e in evs
               if e["ph"] == "X"):
        out.append("no poller call returned a ready fd")
    if trace.get("otherData", {}).get("dropped", 0) == 0:
        ran = {e["args"]["goid"] for e in gspans}
        for e in evs:
            if e["ph"] == "i" and e["name"].startswith("ready G") and e["args"]["goid"] not in ran:
                out.append(f"{e['name']} at {e['ts']}: that G never ran")
                break
    return out


def check_validator(schema, good):
    """The validator must reject what is broken, or this test proves nothing."""
    assert not errors(schema, good) and not timeline_errors(good), "a good trace rejected"
    x = next(e for e in good["traceEvents"] if e["ph"] == "X")
    cases = []
    bad = json.loads(json.dumps(good))
    next(e for e in bad["traceEvents"] if e["ph"] == "X").pop("ts")
    cases.append(("an X event without ts", bad, True))
    bad = json.loads(json.dumps(good))
    bad["traceEvents"][0]["ph"] = "Q"
    cases.append(("an unknown ph", bad, True))
    bad = json.loads(json.dumps(good))
    bad["traceEvents"].append(dict(x, ts=x["ts"] + x["dur"] / 2 if x["dur"] > 0.01 else x["ts"],
                                   dur=max(x["dur"], 1.0)))
    cases.append(("overlapping spans on one M", bad, False))
    for what, t, by_schema in cases:
        errs = errors(schema, t) if by_schema else timeline_errors(t)
        assert errs, f"the validator accepted {what}"
    print(f"trace_schema_test: the validator rejects {len(cases)} kinds of broken trace")


# --- running the echo demo with MNP_TRACE ------------------------------------------


def run_echo(server, backend, path):
    env = dict(os.environ, MNP_BACKEND=backend, MNP_TRACE=path)
    p = subprocess.Popen([server, "--addr", "127.0.0.1:0", "--quiet"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if "listening on" not in line:
            p.wait(10)
            err = p.stderr.read()
            if p.returncode == 2 and "unavailable" in err:
                return f"skip: {err.strip()}"
            raise AssertionError(f"echo-server did not start: {line!r} {err!r}")
        port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        for round_ in range(10):
            for i, s in enumerate(socks):
                msg = f"conn {i} round {round_}\n".encode()
                s.sendall(msg)
                got = b""
                while len(got) < len(msg):
                    chunk = s.recv(len(msg) - len(got))
                    assert chunk, f"conn {i}: EOF before the echo"
                    got += chunk
                assert got == msg, f"conn {i}: echoed {got!r}, sent {msg!r}"
        for s in socks:
            s.close()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(15)
        err = p.stderr.read()
        assert rc == 0, f"echo-server exited {rc}: {err}"
        assert "trace written to" in err, f"no 'trace written' line: {err}"
        return None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    server, schema_path = sys.argv[1], sys.argv[2]
    with open(schema_path) as f:
        schema = json.load(f)
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ["epoll", "uring-poll", "uring"]:
            path = os.path.join(tmp, f"trace-{backend}.json")
            t0 = time.monotonic()
            skip = run_echo(server, backend, path)
            if skip:
                print(f"trace_schema_test: {backend}: {skip}")
                continue
            with open(path) as f:
                trace = json.load(f)  # raises on invalid JSON
            if checked == 0:
                check_validator(schema, trace)
            errs = errors(schema, trace) + timeline_errors(trace)
            for e in errs[:20]:
                print(f"trace_schema_test: {backend}: {e}")
            assert not errs, f"{backend}: {len(errs)} problem(s) in the trace"
            n = len(trace["traceEvents"])
            print(f"trace_schema_test: {backend}: {n} events, valid against the schema, "
                  f"a consistent timeline ({time.monotonic() - t0:.1f} s)")
            checked += 1
    assert checked > 0, "no backend could run"


if __name__ == "__main__":
    main()
