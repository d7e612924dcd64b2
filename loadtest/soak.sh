#!/usr/bin/env bash
# The soak: wsload mixes echo, idle and abusive clients against the echo example for
# SECONDS (default 20, the CI form) after a 5 s warm-up round, and fails if any echo
# was wrong, extra or lost, any idle cycle or abuser's answer was not the one
# expected, the server's sockets did not come back to their start, or its RSS ended
# more than 10% above its peak in the first half of the run (see loadtest/README.md).
#
#   bash loadtest/soak.sh [SECONDS]
#
# WSLOAD_SOAK_ARGS adds flags (--json FILE, --plot FILE, ...); SOAK_PIN=1 pins the
# server to CPU 0 and wsload to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
cargo build --release --locked --quiet -p wsload -p wsreactor --example echo --bin wsload
target=${CARGO_TARGET_DIR:-target}/release

server_pin=() client_pin=()
if [[ ${SOAK_PIN:-0} == 1 ]]; then
    server_pin=(taskset -c 0) client_pin=(taskset -c 1)
fi

log=$(mktemp)
"${server_pin[@]}" "$target/examples/echo" --addr 127.0.0.1:0 --threads 2 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT

# Wait for "listening on ADDR".
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")
    [[ -n $addr ]] && break
    sleep 0.05
done
[[ -n ${addr:-} ]] || { echo "soak: the echo example did not start" >&2; cat "$log" >&2; exit 1; }

# Bounded: the rounds, their closes (a few seconds each) and the settling (10 s at
# most) fit well inside the timeout.
# shellcheck disable=SC2086
timeout $((seconds + 120)) "${client_pin[@]}" "$target/wsload" soak --url "ws://$addr/" \
    --duration "$seconds" --server-pid "$server" --strict --quiet ${WSLOAD_SOAK_ARGS:-}

kill -TERM "$server"
wait "$server"
echo "soak: ok"
