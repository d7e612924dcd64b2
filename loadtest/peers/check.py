#!/usr/bin/env python3
"""Checks that the comparison peers echo correctly and stop on a signal.

With no address it starts every peer from --bin-dir (default: target/release beside this
file) on 127.0.0.1:0 in each of its configurations, reads the port from the peer's first
line, runs the checks, stops it with SIGTERM or SIGINT while a client is still connected,
and checks that it exited with status 0, within 5 s, and never panicked.

With --ws or --raw it checks a server that is already running, such as wsreactor's echo
example:  python3 check.py --ws 127.0.0.1:9001

Only 127.0.0.1 is ever connected to. Standard library only. Exits non-zero on any failure,
after a closing line "N passed, N failed".
"""

import argparse
import base64
import hashlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# How long a lenient check waits for the server to close after a protocol violation.
LENIENT_WAIT = 2.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODE_NAMES = {OP_TEXT: "text", OP_BINARY: "binary"}

SIZES = [0, 100, 100 * 1024]


class CheckFailed(Exception):
    """A check's expectation was not met."""


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def text_payload(size, seed):
    """Valid UTF-8 of exactly `size` bytes, with 2-, 3- and 4-byte characters in it."""
    rng = random.Random(seed)
    alphabet = ["a", "b", "Z", " ", "é", "ß", "€", "✓", "𝄞"]
    out = bytearray()
    while len(out) < size:
        char = rng.choice(alphabet).encode()
        if len(out) + len(char) > size:
            char = b"x" * (size - len(out))
        out += char
    return bytes(out)


def binary_payload(size, seed):
    return random.Random(seed).randbytes(size)


def payload(opcode, size, seed):
    return text_payload(size, seed) if opcode == OP_TEXT else binary_payload(size, seed)


def connect(port):
    sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_in_background(sock, data):
    """Sends from a thread, so a large message and its echo can cross without deadlocking.

    A send error (the server closed first, as after a protocol violation) is left for the
    reading side to notice.
    """

    def send():
        try:
            sock.sendall(data)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


class WsClient:
    """A minimal RFC 6455 client: masked frames out, server frames checked on the way in."""

    def __init__(self, port):
        self.sock = connect(port)
        self.buffer = bytearray()
        self.rng = random.Random(port)
        self.handshake()

    def close_socket(self):
        self.sock.close()

    def goodbye(self):
        """Closes as a client should: close 1000, the server's close back, then TCP closes."""
        self.sock.sendall(self.frame(OP_CLOSE, struct.pack("!H", 1000)))
        opcode, data = self.recv_message()
        expect(opcode == OP_CLOSE, f"close answered with opcode {opcode}")
        expect(data[:2] in (b"", struct.pack("!H", 1000)), f"close answered with code bytes {data[:2]!r}")
        self.expect_closed("after the close handshake")
        self.sock.close()

    def recv_exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            expect(chunk, f"connection closed by the server while {n} bytes were expected")
            self.buffer += chunk
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def handshake(self):
        key = base64.b64encode(os.urandom(16))
        request = (
            b"GET /echo HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            expect(chunk, "connection closed during the handshake")
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        lines = head.split(b"\r\n")
        expect(lines[0].startswith(b"HTTP/1.1 101"), f"handshake answered {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        expect(headers.get(b"sec-websocket-accept") == accept, "wrong Sec-WebSocket-Accept")

    def frame(self, opcode, data, fin=True, rsv=0, masked=True):
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        mask_bit = 0x80 if masked else 0
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", first, mask_bit | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, n)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, n)
        if not masked:
            return header + data
        key = self.rng.randbytes(4)
        # XOR as one big integer: fast enough for megabytes in pure Python.
        key_stream = int.from_bytes((key * (n // 4 + 1))[:n], "little")
        masked_data = (int.from_bytes(data, "little") ^ key_stream).to_bytes(n, "little")
        return header + key + masked_data

    def send(self, raw):
        return send_in_background(self.sock, raw)

    def recv_frame(self):
        first, second = self.recv_exact(2)
        expect(second & 0x80 == 0, "the server masked a frame")
        expect(first & 0x70 == 0, "the server set reserved bits")
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.recv_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.recv_exact(8))
        return bool(first & 0x80), first & 0x0F, self.recv_exact(n)

    def recv_message(self):
        """The next data message, reassembled; control frames are returned on their own."""
        fin, opcode, data = self.recv_frame()
        if opcode >= OP_CLOSE:
            expect(fin, "the server fragmented a control frame")
            return opcode, data
        expect(opcode != OP_CONT, "a continuation frame with no message to continue")
        parts = [data]
        while not fin:
            fin, next_opcode, data = self.recv_frame()
            expect(next_opcode == OP_CONT, f"opcode {next_opcode} inside a fragmented message")
            parts.append(data)
        return opcode, b"".join(parts)

    def expect_echo(self, opcode, data, what):
        got_opcode, got = self.recv_message()
        expect(got_opcode == opcode, f"{what}: echoed opcode {got_opcode}, sent {opcode}")
        expect(len(got) == len(data), f"{what}: echoed {len(got)} bytes, sent {len(data)}")
        expect(got == data, f"{what}: echoed bytes differ from those sent")

    def closes_within(self, seconds):
        """Whether the server closes the TCP connection (after any frames it still sends)."""
        deadline = time.monotonic() + seconds
        self.sock.settimeout(seconds)
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)
        return False

    def expect_closed(self, what):
        expect(self.closes_within(TIMEOUT), f"{what}: the server did not close the connection")


def ws_checks(port, strict):
    """(name, function) pairs checking a WebSocket echo server on 127.0.0.1:port.

    A protocol violation by the client must never crash the server or disturb other
    connections. RFC 6455 also says the server must close the offending connection; with
    `strict` not doing so fails the check, otherwise it is printed as a note, since the
    peers inherit their library's leniency (fastwebsockets 0.10 accepts unmasked frames).
    """
    checks = []

    def echo_case(opcode, size):
        def run():
            ws = WsClient(port)
            data = payload(opcode, size, size)
            ws.send(ws.frame(opcode, data)).join(TIMEOUT)
            ws.expect_echo(opcode, data, f"{size} B")
            ws.goodbye()

        return run

    for opcode in (OP_TEXT, OP_BINARY):
        for size in SIZES:
            checks.append((f"{OPCODE_NAMES[opcode]} {size} B echoes", echo_case(opcode, size)))

    def fragmented(opcode):
        def run():
            ws = WsClient(port)
            data = payload(opcode, 100 * 1024, 7)
            # Cut inside a multi-byte character for text (byte 1 of "✓" or "𝄞" is likely
            # somewhere), and interleave a ping between fragments, as RFC 6455 5.4 allows.
            cuts = [0, 1, 33_333, 66_667, len(data)]
            raw = b""
            for i in range(len(cuts) - 1):
                first = i == 0
                last = i == len(cuts) - 2
                raw += ws.frame(opcode if first else OP_CONT, data[cuts[i]:cuts[i + 1]], fin=last)
                if i == 1:
                    raw += ws.frame(OP_PING, b"mid-message")
            ws.send(raw).join(TIMEOUT)
            got_opcode, got = ws.recv_message()
            expect(got_opcode == OP_PONG and got == b"mid-message", "no pong for the ping between fragments")
            ws.expect_echo(opcode, data, "fragmented 100 KiB")
            ws.goodbye()

        return run

    checks.append(("fragmented text 100 KiB (4 frames, a ping between) echoes whole", fragmented(OP_TEXT)))
    checks.append(("fragmented binary 100 KiB (4 frames, a ping between) echoes whole", fragmented(OP_BINARY)))

    def megabyte():
        ws = WsClient(port)
        data = binary_payload(1 << 20, 1)
        sender = ws.send(ws.frame(OP_BINARY, data))
        ws.expect_echo(OP_BINARY, data, "1 MiB")
        sender.join(TIMEOUT)
        ws.goodbye()

    checks.append(("binary 1 MiB echoes", megabyte))

    def trickled():
        ws = WsClient(port)
        data = text_payload(300, 3)
        raw = ws.frame(OP_TEXT, data)
        for i in range(0, len(raw), 7):
            ws.sock.sendall(raw[i:i + 7])
            time.sleep(0.001)
        ws.expect_echo(OP_TEXT, data, "trickled")
        ws.goodbye()

    checks.append(("text 300 B sent 7 bytes at a time echoes", trickled))

    def pipelined():
        ws = WsClient(port)
        messages = [(OP_TEXT if i % 2 else OP_BINARY, payload(OP_TEXT if i % 2 else OP_BINARY, 32 + i, i)) for i in range(200)]
        sender = ws.send(b"".join(ws.frame(op, data) for op, data in messages))
        for i, (op, data) in enumerate(messages):
            ws.expect_echo(op, data, f"pipelined message {i}")
        sender.join(TIMEOUT)
        ws.goodbye()

    checks.append(("200 pipelined messages echo in order", pipelined))

    def ping():
        ws = WsClient(port)
        ws.send(ws.frame(OP_PING, b"are you there")).join(TIMEOUT)
        opcode, data = ws.recv_message()
        expect(opcode == OP_PONG and data == b"are you there", f"ping answered with opcode {opcode} {data!r}")
        ws.goodbye()

    checks.append(("ping gets a pong with its payload", ping))

    def close():
        ws = WsClient(port)
        ws.send(ws.frame(OP_TEXT, b"last")).join(TIMEOUT)
        ws.expect_echo(OP_TEXT, b"last", "before close")
        ws.send(ws.frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")).join(TIMEOUT)
        opcode, data = ws.recv_message()
        expect(opcode == OP_CLOSE, f"close answered with opcode {opcode}")
        expect(data[:2] == struct.pack("!H", 1000), f"close answered with code bytes {data[:2]!r}, not 1000")
        ws.expect_closed("after the close handshake")
        ws.close_socket()

    checks.append(("close 1000 is answered with close 1000, then TCP closes", close))

    def violation(name, raw_of):
        def run():
            ws = WsClient(port)
            ws.send(raw_of(ws)).join(TIMEOUT)
            closed = ws.closes_within(LENIENT_WAIT)
            ws.close_socket()
            if not closed:
                expect(not strict, f"{name}: the server did not close the connection")
                print(f"note  {name}: the server did not close the connection (RFC 6455 says it must)")
            # The server is still there for everyone else.
            echo_case(OP_TEXT, 100)()

        return run

    for name, raw_of in [
        ("unmasked client frame", lambda ws: ws.frame(OP_BINARY, b"abc", masked=False)),
        ("reserved opcode 0x3", lambda ws: ws.frame(0x3, b"abc")),
        ("reserved bits set", lambda ws: ws.frame(OP_TEXT, b"abc", rsv=0b100)),
        ("invalid UTF-8 text", lambda ws: ws.frame(OP_TEXT, b"ok\xff\xfe")),
        ("continuation with nothing to continue", lambda ws: ws.frame(OP_CONT, b"abc")),
        ("fragmented ping", lambda ws: ws.frame(OP_PING, b"abc", fin=False)),
        ("garbage bytes", lambda ws: b"\xff" * 64),
    ]:
        checks.append((f"{name}: connection closed or tolerated, server lives on", violation(name, raw_of)))

    def not_websocket():
        sock = connect(port)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        sock.close()
        expect(not answer.startswith(b"HTTP/1.1 101"), "a plain GET was upgraded")
        echo_case(OP_TEXT, 100)()

    checks.append(("a plain HTTP GET is not upgraded, server lives on", not_websocket))
    return checks


def raw_checks(port):
    """(name, function) pairs checking a raw TCP echo server on 127.0.0.1:port."""
    checks = []

    def exchange(sock, data):
        sender = send_in_background(sock, data)
        got = bytearray()
        while len(got) < len(data):
            chunk = sock.recv(1 << 20)
            expect(chunk, f"closed after {len(got)} of {len(data)} bytes")
            got += chunk
        sender.join(TIMEOUT)
        expect(bytes(got) == data, f"{len(data)} B: echoed bytes differ")

    def echo_case(size):
        def run():
            sock = connect(port)
            exchange(sock, binary_payload(size, size))
            sock.close()

        return run

    for size in SIZES:
        checks.append((f"{size} B echoes", echo_case(size)))

    def many_connections():
        # With --threads 2 the kernel spreads these over both threads' listeners.
        socks = [connect(port) for _ in range(16)]
        for i, sock in enumerate(socks):
            exchange(sock, binary_payload(1000 + i, i))
        for sock in socks:
            sock.close()

    checks.append(("16 connections echo at once", many_connections))

    def stalled_reader():
        # 8 MiB sent before anything is read: the server's queue fills, it stops reading,
        # and resumes once the client reads.
        sock = connect(port)
        data = binary_payload(8 << 20, 8)
        sender = send_in_background(sock, data)
        time.sleep(0.5)
        got = bytearray()
        while len(got) < len(data):
            chunk = sock.recv(1 << 20)
            expect(chunk, f"closed after {len(got)} of {len(data)} bytes")
            got += chunk
        sender.join(TIMEOUT)
        expect(bytes(got) == data, "8 MiB: echoed bytes differ")
        sock.close()

    checks.append(("8 MiB sent before reading echoes whole", stalled_reader))

    def half_close():
        sock = connect(port)
        data = binary_payload(100 * 1024, 5)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        expect(bytes(got) == data, f"half-close: got {len(got)} of {len(data)} bytes before EOF")
        sock.close()

    checks.append(("100 KiB then shutdown(WR) echoes all, then EOF", half_close))
    return checks


class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, label, check):
        try:
            check()
        except (CheckFailed, OSError) as error:
            self.failed += 1
            print(f"FAIL  {label}: {type(error).__name__}: {error}", flush=True)
        else:
            self.passed += 1
            print(f"ok    {label}", flush=True)


def parse_port(address):
    host, _, port = address.rpartition(":")
    if host != HOST:
        sys.exit(f"check.py connects to {HOST} only, not {host!r}")
    return int(port)


def start_peer(path, args):
    process = subprocess.Popen(
        [path, "--addr", f"{HOST}:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr_lines = []
    drain = threading.Thread(target=lambda: stderr_lines.extend(process.stderr), daemon=True)
    drain.start()
    first = process.stdout.readline()
    if not first.startswith("listening on "):
        process.kill()
        raise CheckFailed(f"first line was {first!r}, not 'listening on ADDR'")
    address = first.split()[2]
    return process, parse_port(address), stderr_lines, drain


def check_peer(tally, bin_dir, binary, args, kind, stop_signal, strict):
    label = f"{binary} {' '.join(args)}".strip()
    path = os.path.join(bin_dir, binary)
    try:
        process, port, stderr_lines, drain = start_peer(path, args)
    except (CheckFailed, OSError) as error:
        tally.failed += 1
        print(f"FAIL  {label}: starts and prints its address: {error}", flush=True)
        return
    print(f"--- {label} on {HOST}:{port}", flush=True)
    checks = ws_checks(port, strict) if kind == "ws" else raw_checks(port)
    for name, check in checks:
        tally.run(f"{label}: {name}", check)

    def stops():
        # A connection is left open: the peer must stop anyway.
        held = connect(port)
        held.sendall(b"GET")
        time.sleep(0.1)
        process.send_signal(stop_signal)
        try:
            code = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise CheckFailed(f"still running {STOP_TIMEOUT} s after {stop_signal.name}")
        finally:
            held.close()
        expect(code == 0, f"exited with status {code} after {stop_signal.name}")

    tally.run(f"{label}: stops on {stop_signal.name} with status 0", stops)
    drain.join(STOP_TIMEOUT)

    def no_panic():
        panics = [line for line in stderr_lines if "panicked" in line]
        expect(not panics, f"panicked: {panics[:3]}")

    tally.run(f"{label}: never panicked", no_panic)


PEERS = [
    ("peer-tungstenite", ["--runtime", "current"], "ws", signal.SIGTERM),
    ("peer-tungstenite", ["--runtime", "multi", "--threads", "2"], "ws", signal.SIGINT),
    ("peer-fastwebsockets", ["--runtime", "current"], "ws", signal.SIGTERM),
    ("peer-fastwebsockets", ["--runtime", "multi", "--threads", "2"], "ws", signal.SIGINT),
    ("peer-raw", ["--threads", "1"], "raw", signal.SIGTERM),
    ("peer-raw", ["--threads", "2"], "raw", signal.SIGINT),
]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", default=os.path.join(here, "target", "release"))
    parser.add_argument("--peer", action="append", help="check only this binary (repeatable)")
    parser.add_argument("--ws", metavar="127.0.0.1:PORT", help="check a running WebSocket echo server")
    parser.add_argument("--raw", metavar="127.0.0.1:PORT", help="check a running raw TCP echo server")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail, rather than note, a server that keeps a connection open after a protocol violation",
    )
    options = parser.parse_args()

    tally = Tally()
    if options.ws or options.raw:
        if options.ws:
            for name, check in ws_checks(parse_port(options.ws), options.strict):
                tally.run(name, check)
        if options.raw:
            for name, check in raw_checks(parse_port(options.raw)):
                tally.run(name, check)
    else:
        for binary, args, kind, stop_signal in PEERS:
            if options.peer and binary not in options.peer:
                continue
            check_peer(tally, options.bin_dir, binary, args, kind, stop_signal, options.strict)
    print(f"{tally.passed} passed, {tally.failed} failed", flush=True)
    sys.exit(1 if tally.failed or not tally.passed else 0)


if __name__ == "__main__":
    main()
