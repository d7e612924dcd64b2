#!/usr/bin/env bash
# A short load run in CI: wsload drives the echo example with 200 connections for a
# few seconds and fails on any error, including a message sent that never came back,
# or if no message came back at all; then the same over wss:// for two seconds (both
# built with --features tls), with a CA and certificate made by `wsload cert`.
# shellcheck disable=SC2119 # start_echo's arguments are a prefix command: none here
set -euo pipefail
cd "$(dirname "$0")/.."

source loadtest/echo-server.sh

# check REPORT: at least one message echoed in the measured window (--strict already
# failed the run on any error).
check() {
    python3 - "$1" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
errors = sum(report["errors"].values())
print("smoke: %s: %d messages, %d errors" % (report["target"], report["messages"], errors))
sys.exit(0 if report["messages"] > 0 and errors == 0 else 1)
PY
}

out=$target/smoke
mkdir -p "$out"
# The timeouts are hang guards only: a run takes its few seconds and its ramp and
# drain, and a busy machine may stretch them many times over.
start_echo
timeout 300 "$target/wsload" echo --url "ws://$addr/" --connections 200 --pipeline 2 \
    --duration 4 --warmup 1 --server-pid "$server" --quiet --strict --json "$out/ws.json"
kill -TERM "$server"
wait "$server"
check "$out/ws.json"

# The tls build of the echo example and wsload replaces the plain one in target/ (the
# next plain build copies it back from cargo's cache).
cargo build --release --locked --quiet --features tls -p wsload -p wsreactor --example echo \
    --bin wsload
"$target/wsload" cert --out "$out" >/dev/null
echo_flags=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
start_echo
timeout 300 "$target/wsload" echo --url "wss://$addr/" --ca "$out/ca.pem" --connections 200 \
    --pipeline 2 --duration 2 --warmup 1 --server-pid "$server" --quiet --strict \
    --json "$out/wss.json"
kill -TERM "$server"
wait "$server"
check "$out/wss.json"
echo "smoke: ok"
