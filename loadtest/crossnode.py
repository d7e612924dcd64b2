#!/usr/bin/env python3
"""Fan-out across nodes through Redis, beside the same fan-out on one node.

wsload's topic scenario: N subscribers to one topic, one publisher at a fixed rate
(open loop), latency from each publication's scheduled time to its delivery.

Both setups run node A and node B (the pubsub example with --redis, one reactor
each) and one redis-server, with the subscribers on B:

- one node:   the publisher on B too: B's reactor fans out what its own client
              published (A and Redis are there, idle but for the bridge's polling).
- cross-node: the publisher on A: A's bridge PUBLISHes, Redis relays, B's bridge hands
              each message to B's reactor, which fans it out.

Node B is pinned to CPU 0, everything else (wsload, node A, redis-server) to CPU 1. The configurations alternate within each
round, each on fresh processes and ports; figures are medians of the rounds. The
bridge's own cost is read per thread from /proc (wsr-redis-pub on A, wsr-redis-sub
on B) over the whole run and divided by the messages that crossed. Loopback only;
every run is bounded in time.

usage: python3 loadtest/crossnode.py [--rounds N] [--duration S] [--quick]
Needs redis-server (tests/redis/run.sh installs Debian's).
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
WSLOAD = TARGET / "release" / "wsload"
PUBSUB = TARGET / "release" / "examples" / "pubsub"
TICK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_cpu_ns(pid, name=None):
    """CPU time of a process's threads (those named `name`, or all), in ns."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if name is not None and (task / "comm").read_text().strip() != name:
                continue
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Process:
    """A child pinned to a CPU; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args, cpu, ready=None):
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu)] + [str(a) for a in args],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addr = None
        if ready == "listening":
            line = self.proc.stdout.readline()
            if not line.startswith("listening on "):
                raise SystemExit(f"{args[0]}: {line!r}")
            self.addr = line.split()[2]

    def wait_line(self, want, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == want:
                return
            if not line:
                break
        raise SystemExit(f"no {want!r} from {self.proc.args}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def redis_server(port, cpu):
    server = Process(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--loglevel", "warning"], cpu)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return server
        except OSError:
            time.sleep(0.02)
    server.stop()
    raise SystemExit("redis-server did not start")


def wsload(url, publish_url, subscribers, rate, args, server_pid):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["taskset", "-c", "1", WSLOAD, "topic", "--url", url, "--publish-url", publish_url,
               "--subscribers", subscribers, "--rate", rate, "--payload", args.payload,
               "--duration", args.duration, "--warmup", args.warmup,
               "--server-pid", server_pid, "--json", out.name, "--quiet"]
        subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def one_node(subscribers, rate, args):
    return nodes(subscribers, rate, args, cross=False)


def cross_node(subscribers, rate, args):
    return nodes(subscribers, rate, args, cross=True)


def nodes(subscribers, rate, args, cross):
    """Redis, node A on CPU 1 and node B on CPU 0, subscribers on B; the publisher on
    A (cross) or on B itself, so that only the publication's path differs."""
    port = free_port()
    redis = redis_server(port, 1)
    url = f"redis://127.0.0.1:{port}/"
    a = b = None
    try:
        a = Process([PUBSUB, "--addr", "127.0.0.1:0", "--threads", 1, "--redis", url,
                     "--node-name", "a"], 1, "listening")
        b = Process([PUBSUB, "--addr", "127.0.0.1:0", "--threads", 1, "--redis", url,
                     "--node-name", "b"], 0, "listening")
        a.wait_line("redis: connected")
        b.wait_line("redis: connected")
        started = time.monotonic()
        before = (thread_cpu_ns(a.pid, "wsr-redis-pub"), thread_cpu_ns(b.pid, "wsr-redis-sub"),
                  thread_cpu_ns(redis.pid), thread_cpu_ns(a.pid, "wsr-redis-sub"))
        publisher = a if cross else b
        report = wsload(f"ws://{b.addr}/", f"ws://{publisher.addr}/", subscribers, rate, args, b.pid)
        after = (thread_cpu_ns(a.pid, "wsr-redis-pub"), thread_cpu_ns(b.pid, "wsr-redis-sub"),
                 thread_cpu_ns(redis.pid), thread_cpu_ns(a.pid, "wsr-redis-sub"))
        wall_ns = (time.monotonic() - started) * 1e9
        sent = max(report["sent"], 1)
        pub_ns, sub_ns, redis_ns, idle_ns = (y - x for x, y in zip(before, after))
        # A's subscribing thread has no topic to follow: the bridge's idle cost.
        result = {"report": report, "idle_percent": idle_ns / wall_ns * 100}
        if cross:
            result.update({"pub_us": pub_ns / 1000 / sent, "sub_us": sub_ns / 1000 / sent,
                           "redis_us": redis_ns / 1000 / sent,
                           "pub_percent": pub_ns / wall_ns * 100, "sub_percent": sub_ns / wall_ns * 100,
                           "redis_percent": redis_ns / wall_ns * 100})
        return result
    finally:
        for p in (a, b, redis):
            if p is not None:
                p.stop()


def median(runs, key):
    return statistics.median(key(r) for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="one short round, to check the script")
    parser.add_argument("--shapes", default="1000x40,1000x100,10000x4,10000x10,1x20000,1x50000",
                        help="SUBSCRIBERSxRATE,...")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2, 1
    log("building the pubsub example (--features redis) and wsload (release)...")
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "-p", "wsload",
                    "--bin", "wsload"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--features", "redis",
                    "--example", "pubsub"], cwd=ROOT, check=True)
    # SUBSCRIBERSxRATE: 40,000 and 100,000 deliveries a second (the load generator
    # reads each on its own socket: it nears its core's limit at the latter), and the
    # bridge alone at high message rates with one subscriber.
    shapes = [tuple(int(n) for n in shape.split("x")) for shape in args.shapes.split(",")]
    results = {}
    for r in range(args.rounds):
        for subscribers, rate in shapes:
            for name, run in (("one node", one_node), ("cross-node", cross_node)):
                log(f"round {r + 1}/{args.rounds}: {name}, {subscribers} subscribers, {rate}/s")
                results.setdefault((subscribers, rate, name), []).append(run(subscribers, rate, args))
                time.sleep(0.5)
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.release()}; "
          f"{args.rounds} rounds of {args.duration:g} s, payload {args.payload} B; medians")
    print()
    print("| subscribers | msgs/s | setup | deliveries/s | p50 µs | p99 µs | B's CPU µs/delivery "
          "| lost | A's publishing thread µs/msg (% core) | B's subscribing thread µs/msg (% core) "
          "| redis-server µs/msg (% core) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (subscribers, rate, name), runs in results.items():
        rep = lambda f: median(runs, lambda x: f(x["report"]))  # noqa: E731
        row = [f"{subscribers:,}", f"{rate:,}", name, f"{rep(lambda x: x['messages_per_second']):,.0f}",
               f"{rep(lambda x: x['latency']['p50_us']):,.0f}", f"{rep(lambda x: x['latency']['p99_us']):,.0f}",
               f"{rep(lambda x: x['server']['cpu_us_per_message']):.2f}",
               f"{rep(lambda x: x['errors']['lost'] + x['errors']['mismatch']):,.0f}"]
        if "pub_us" in runs[0]:
            row += [f"{median(runs, lambda x: x[k + '_us']):.2f} ({median(runs, lambda x: x[k + '_percent']):.1f}%)"
                    for k in ("pub", "sub", "redis")]
        else:
            row += ["", "", ""]
        print("| " + " | ".join(row) + " |")
    idle = statistics.median(x["idle_percent"] for runs in results.values() for x in runs)
    print()
    print(f"A subscribing thread with no topic (the bridge's idle cost): {idle:.2f}% of a core")


if __name__ == "__main__":
    main()
