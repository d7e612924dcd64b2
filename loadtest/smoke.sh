#!/usr/bin/env bash
# A short load run in CI: wsload drives the echo example with 200 connections for a
# few seconds and fails on any error, including a message sent that never came back.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet -p wsload -p wsreactor --example echo --bin wsload
target=${CARGO_TARGET_DIR:-target}/release

log=$(mktemp)
"$target/examples/echo" --addr 127.0.0.1:0 --threads 2 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT

# Wait for "listening on ADDR".
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")
    [[ -n $addr ]] && break
    sleep 0.05
done
[[ -n ${addr:-} ]] || { echo "smoke: the echo example did not start" >&2; cat "$log" >&2; exit 1; }

timeout 60 "$target/wsload" echo --url "ws://$addr/" --connections 200 --pipeline 2 \
    --duration 4 --warmup 1 --server-pid "$server" --quiet --strict

kill -TERM "$server"
wait "$server"
echo "smoke: ok"
