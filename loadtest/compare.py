#!/usr/bin/env python3
"""Side-by-side load comparison of wsreactor and its peers, written into docs/BENCHMARKS.md.

Every server runs pinned to CPU 0 and wsload to CPU 1, with identical parameters. The
servers alternate within each round (A B C ... A B C ...), each run on a fresh server on
a fresh port (so no TIME_WAIT from an earlier run is in the way), and each figure is the
median of the rounds. Only 127.0.0.1 is ever targeted; every run is bounded in time.

usage: loadtest/compare.sh [--rounds N] [--duration S] [--quick] [--no-write]
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PEERS = ROOT / "loadtest" / "peers"
PEERS_BIN = PEERS / "target" / "release"
WSLOAD = TARGET / "release" / "wsload"
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"

# name, command (the server gets --addr 127.0.0.1:0 appended), raw TCP or not
SERVERS = [
    ("wsreactor", [TARGET / "release/examples/echo", "--threads", "1"], False),
    ("tokio-tungstenite (current-thread)", [PEERS_BIN / "peer-tungstenite", "--runtime", "current"], False),
    ("tokio-tungstenite (multi-thread)", [PEERS_BIN / "peer-tungstenite", "--runtime", "multi", "--threads", "1"], False),
    ("fastwebsockets (current-thread)", [PEERS_BIN / "peer-fastwebsockets", "--runtime", "current"], False),
    ("fastwebsockets (multi-thread)", [PEERS_BIN / "peer-fastwebsockets", "--runtime", "multi", "--threads", "1"], False),
    ("raw TCP echo (mio)", [PEERS_BIN / "peer-raw", "--threads", "1"], True),
]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def build():
    log("building wsreactor's echo example, wsload, and the peers (release)...")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "wsload",
                    "-p", "wsreactor", "--bin", "wsload", "--example", "echo"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=PEERS, check=True)


class Server:
    """A server pinned to CPU 0 on a free port, stopped with SIGTERM."""

    def __init__(self, command):
        args = ["taskset", "-c", "0"] + [str(c) for c in command] + ["--addr", "127.0.0.1:0"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        match = re.match(r"listening on (\S+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"{command[0]}: unexpected first line {line!r}")
        self.addr = match.group(1)
        # Drain the rest of its output so it never blocks on a full pipe.
        self.proc.stdout.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wsload(args, pid, timeout):
    """Runs wsload pinned to CPU 1 and returns its JSON report."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["taskset", "-c", "1", str(WSLOAD)] + args + ["--server-pid", str(pid), "--quiet", "--json", out.name]
        subprocess.run(cmd, check=True, timeout=timeout, stdout=subprocess.DEVNULL)
        return json.load(open(out.name))


def run_one(server, scenario_args, raw, timeout):
    name, command, _ = server
    srv = Server(command)
    try:
        scheme = "tcp" if raw else "ws"
        args = scenario_args[:1] + ["--url", f"{scheme}://{srv.addr}/"] + scenario_args[1:]
        if raw:
            args.insert(1, "--raw")
        return wsload(args, srv.proc.pid, timeout)
    finally:
        srv.stop()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def echo_matrix(opts):
    rows = []
    for conns in opts.connections:
        for payload in opts.payloads:
            results = {name: [] for name, _, _ in SERVERS}
            for rnd in range(opts.rounds):
                for server in SERVERS:
                    name, _, raw = server
                    log(f"echo {conns} conns × {payload} B, round {rnd + 1}/{opts.rounds}: {name}")
                    args = ["echo", "--connections", str(conns), "--payload", str(payload),
                            "--duration", str(opts.duration), "--warmup", str(opts.warmup)]
                    try:
                        r = run_one(server, args, raw, timeout=opts.duration + 120)
                    except Exception as e:  # a failed run is a gap in the table, said so
                        log(f"  failed: {e}")
                        r = None
                    results[name].append(r)
            rows.append((conns, payload, results))
    return rows


def idle_matrix(opts):
    rows = []
    for conns in opts.idle:
        results = {}
        for server in SERVERS:
            name, _, raw = server
            if raw:
                continue  # idle memory is a WebSocket server's figure
            log(f"idle {conns} conns: {name}")
            try:
                r = run_one(server, ["idle", "--connections", str(conns), "--duration", "1"], raw,
                            timeout=180)
            except Exception as e:
                log(f"  failed: {e}")
                r = None
            results[name] = r
        rows.append((conns, results))
    return rows


def connect_matrix(opts):
    results = {name: [] for name, _, raw in SERVERS if not raw}
    for rnd in range(opts.rounds):
        for server in SERVERS:
            name, _, raw = server
            if raw:
                continue
            log(f"connect, round {rnd + 1}/{opts.rounds}: {name}")
            try:
                r = run_one(server, ["connect", "--concurrency", "50", "--duration", str(opts.duration),
                                     "--warmup", str(opts.warmup)], raw, timeout=opts.duration + 60)
            except Exception as e:
                log(f"  failed: {e}")
                r = None
            results[name].append(r)
    return results


def stat(runs, path):
    def get(r):
        if r is None:
            return None
        for key in path:
            r = r.get(key) if isinstance(r, dict) else None
            if r is None:
                return None
        return r
    return median([get(r) for r in runs])


def errors(runs):
    return sum(sum(r["errors"].values()) for r in runs if r)


def render(opts, echo_rows, idle_rows, connect):
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    out = [BEGIN, "",
           "## Load: wsreactor beside its peers",
           "",
           f"Generated by `{opts.command}` on {datetime.date.today().isoformat()}: {cpu}, "
           f"{os.cpu_count()} cores, Linux {platform.release()}, {rustc}. Each server runs pinned to "
           "CPU 0 with one thread (`taskset -c 0`; wsreactor with one reactor, the tokio peers in a "
           "current-thread runtime or a multi-thread runtime with one worker), wsload pinned to CPU 1 "
           "with one thread. The servers alternate within each round, each run on a fresh server, "
           f"and every figure is the median of {opts.rounds} rounds of {opts.duration} s measured "
           f"after {opts.warmup} s of warm-up. Closed loop, one binary message in flight per "
           "connection, payloads masked with a fixed key (as uWebSockets' load generator).",
           "",
           "On two cores the load generator is often the bottleneck, so messages per second "
           "partly measure wsload; **server CPU µs per message** (from /proc/PID/task/*/schedstat "
           "over the measured window) is the fair figure between servers. The last column is "
           "wsreactor's CPU per message divided by that server's: below 1, wsreactor does the "
           "same work with less CPU.",
           "",
           "### Echo",
           "",
           "| connections | payload | server | messages/s | p99 µs | server CPU µs/msg | server CPU % | wsreactor ÷ it (CPU/msg) | errors |",
           "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for conns, payload, results in echo_rows:
        ours = stat(results["wsreactor"], ["server", "cpu_us_per_message"])
        ours_rate = stat(results["wsreactor"], ["messages_per_second"])
        for name, _, raw in SERVERS:
            runs = results[name]
            c = stat(runs, ["server", "cpu_us_per_message"])
            ratio = (ours / c) if (ours and c and name != "wsreactor") else None
            out.append(f"| {conns:,} | {payload:,} B | {name} | {fmt(stat(runs, ['messages_per_second']))} | "
                       f"{fmt(stat(runs, ['latency', 'p99_us']), 1)} | {fmt(c, 2)} | "
                       f"{fmt(stat(runs, ['server', 'cpu_percent']))} | {fmt(ratio, 2)} | {errors(runs)} |")
        tt = stat(results["tokio-tungstenite (current-thread)"], ["server", "cpu_us_per_message"])
        fw = stat(results["fastwebsockets (current-thread)"], ["server", "cpu_us_per_message"])
        raw_rate = stat(results["raw TCP echo (mio)"], ["messages_per_second"])
        verdicts.append((conns, payload, ours, tt, fw, ours_rate, raw_rate))
    out += ["", "### Against the targets", "",
            "Targets (issue 5): server CPU per message at most 0.6× tokio-tungstenite's and 0.8× "
            "fastwebsockets' (current-thread runtimes) in every row; messages per second within 10% "
            "of the raw TCP echo at 32 B and 1 KiB.", "",
            "| connections | payload | ÷ tokio-tungstenite (≤ 0.6) | ÷ fastwebsockets (≤ 0.8) | ÷ raw TCP msgs/s (≥ 0.9 at 32 B, 1 KiB) |",
            "|---:|---:|---:|---:|---:|"]
    for conns, payload, ours, tt, fw, ours_rate, raw_rate in verdicts:
        def judged(value, ok):
            if value is None:
                return "—"
            return f"{value:.2f} {'met' if ok(value) else '**missed**'}"
        r_tt = ours / tt if ours and tt else None
        r_fw = ours / fw if ours and fw else None
        r_raw = ours_rate / raw_rate if ours_rate and raw_rate else None
        raw_cell = judged(r_raw, lambda v: v >= 0.9) if payload <= 1024 else fmt(r_raw, 2)
        out.append(f"| {conns:,} | {payload:,} B | {judged(r_tt, lambda v: v <= 0.6)} | "
                   f"{judged(r_fw, lambda v: v <= 0.8)} | {raw_cell} |")

    out += ["", "### Idle memory", "",
            "Resident memory of the server per idle connection: (RSS with N connections open and "
            "upgraded − RSS before them) / N, one fresh server per cell.", "",
            "| server | " + " | ".join(f"{c:,} connections" for c, _ in idle_rows) + " |",
            "|---|" + "---:|" * len(idle_rows)]
    for name, _, raw in SERVERS:
        if raw:
            continue
        cells = []
        for _, results in idle_rows:
            r = results.get(name)
            v = r and r.get("server") and r["server"].get("rss_per_connection_bytes")
            opened = r and r.get("connections_open")
            cells.append(f"{fmt(v)} B" + ("" if not r or opened == r.get("connections") else f" ({opened} open)")
                         if v is not None else "—")
        out.append(f"| {name} | " + " | ".join(cells) + " |")

    out += ["", "### Connect rate", "",
            "Handshakes per second at a concurrency of 50 (connect, upgrade, reset), median of the rounds.", "",
            "| server | handshakes/s | p99 µs | server CPU µs/handshake |", "|---|---:|---:|---:|"]
    for name, runs in connect.items():
        out.append(f"| {name} | {fmt(stat(runs, ['messages_per_second']))} | "
                   f"{fmt(stat(runs, ['latency', 'p99_us']), 1)} | "
                   f"{fmt(stat(runs, ['server', 'cpu_us_per_message']), 2)} |")
    out += ["", END]
    return "\n".join(out)


def write_doc(section):
    text = DOC.read_text() if DOC.exists() else "# wsreactor — benchmarks\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        _, after = rest.split(END, 1)
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--quick", action="store_true", help="a short check of the script itself")
    parser.add_argument("--no-write", action="store_true", help="print instead of writing the doc")
    opts = parser.parse_args()
    opts.command = "bash loadtest/compare.sh" + "".join(f" {a}" for a in sys.argv[1:])
    opts.connections = [100, 1000, 10000]
    opts.payloads = [32, 1024, 16384]
    opts.idle = [1000, 5000, 10000, 19000]
    if opts.quick:
        opts.rounds, opts.duration, opts.warmup = 1, 1, 0.5
        opts.connections, opts.payloads, opts.idle = [100], [32], [1000]
    build()
    started = time.time()
    echo_rows = echo_matrix(opts)
    idle_rows = idle_matrix(opts)
    connect = connect_matrix(opts)
    section = render(opts, echo_rows, idle_rows, connect)
    log(f"done in {time.time() - started:.0f} s")
    if opts.no_write:
        print(section)
    else:
        write_doc(section)
        log(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
