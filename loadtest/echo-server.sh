# shellcheck shell=bash
# Sourced by smoke.sh and soak.sh: builds the echo example and wsload (release),
# then `start_echo [PREFIX...]` starts the echo example on 127.0.0.1:0 with two
# reactors and the flags in $echo_flags (under PREFIX, e.g. taskset -c 0) and sets
# $target, $server (its pid) and $addr (HOST:PORT); the server is killed when the
# script exits.

cargo build --release --locked --quiet -p wsload -p wsreactor --example echo --bin wsload
target=${CARGO_TARGET_DIR:-target}/release
echo_flags=()
echo_logs=()

start_echo() {
    local log
    log=$(mktemp)
    echo_logs+=("$log")
    "$@" "$target/examples/echo" --addr 127.0.0.1:0 --threads 2 "${echo_flags[@]}" >"$log" 2>&1 &
    server=$!
    # shellcheck disable=SC2064 # expand now: this server's pid, and every log so far
    trap "kill $server 2>/dev/null || true; rm -f ${echo_logs[*]@Q}" EXIT
    # Wait for "listening on ADDR".
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")
        [[ -n $addr ]] && return 0
        sleep 0.05
    done
    echo "the echo example did not start" >&2
    cat "$log" >&2
    exit 1
}
