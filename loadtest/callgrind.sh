#!/usr/bin/env bash
# Instructions the server spends per echoed message, counted by callgrind: exact and
# unaffected by other load on the machine, so a change to the hot path can be
# compared before and after on a busy two-core box.
#
#   bash loadtest/callgrind.sh PAYLOAD CONNECTIONS [SECONDS] [ECHO_BINARY]
#
# Runs the echo example (or ECHO_BINARY, e.g. a copy built from an older commit)
# with one reactor under valgrind, counting only inside Reactor::readable (read,
# decode, callbacks, the write at the end of the turn; not epoll_wait or timers),
# drives it with wsload for SECONDS (default 3) and prints the count divided by the
# messages echoed. Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
payload=${1:?payload bytes}
connections=${2:?connections}
seconds=${3:-3}
cargo build --release --locked --quiet -p wsload -p wsreactor --example echo --bin wsload
target=${CARGO_TARGET_DIR:-target}/release
echo_bin=${4:-$target/examples/echo}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*Reactor*readable*' \
    --callgrind-out-file="$work/out" "$echo_bin" --addr "127.0.0.1:$port" --threads 1 \
    >"$work/log" 2>&1 &
server=$!
for _ in $(seq 100); do
    grep -q "^listening on" "$work/log" && break
    sleep 0.1
done
"$target/wsload" echo --url "ws://127.0.0.1:$port/" --connections "$connections" \
    --payload "$payload" --duration "$seconds" --warmup 1 --quiet --json "$work/run.json" >/dev/null
kill -INT "$server"
wait "$server" || true
received=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['received'])" "$work/run.json")
ir=$(sed -n 's/^\(summary\|totals\): *//p' "$work/out" | head -1)
echo "payload $payload B, $connections connections: $((ir / received)) instructions per message ($ir over $received messages)"
