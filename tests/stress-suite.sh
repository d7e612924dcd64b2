#!/usr/bin/env bash
# The suite on a saturated machine: CPU hogs keep every core busy (HOGS_PER_CORE
# shell loops pinned to each core with taskset, two by default) while
#
#   1. the `cargo test` stage of .ci/run, with every feature as CI tests them
#      (`cargo test --workspace --locked --features tls,redis`), runs SUITE_RUNS
#      times in a row (default 20), and
#   2. the tests that used to fail under load, the soak (loadtest/tests/soak.rs)
#      and the client's (tests/client_*.rs), run FOCUS_RUNS times (default 50).
#
# Every run must pass: a test whose verdict depends on how busy the machine is
# fails here sooner or later. The logs of failed runs are kept in target/stress/.
#
#   bash tests/stress-suite.sh [SUITE_RUNS [FOCUS_RUNS]]
#
# Environment: HOGS_PER_CORE (2), STRESS_CARGO_ARGS (more arguments for every
# `cargo test`, e.g. a test filter). Installs redis-server if it is missing (the
# redis tests start their own servers on 127.0.0.1). Bounded: each run is killed
# after 30 minutes, and the hogs stop when the script ends, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

suite_runs=${1:-20}
focus_runs=${2:-50}
hogs_per_core=${HOGS_PER_CORE:-2}
# shellcheck disable=SC2206
extra=(${STRESS_CARGO_ARGS:-})
logs=target/stress
mkdir -p "$logs"

source tests/redis/ensure-server.sh

hogs=()
stop_hogs() {
    if ((${#hogs[@]})); then
        kill "${hogs[@]}" 2>/dev/null || true
        wait "${hogs[@]}" 2>/dev/null || true
    fi
    hogs=()
}
trap 'stop_hogs; stop_redis_servers' EXIT
trap 'exit 130' INT TERM

suite=(cargo test --workspace --locked --no-fail-fast --features tls,redis "${extra[@]}")
focus=(cargo test --workspace --locked --no-fail-fast --features tls,redis
    --test soak --test client_messages --test client_close --test client_errors
    --test client_deflate --test client_tls --test client_example "${extra[@]}")

# Everything is built before the hogs start: the runs measure the tests, not the
# compiler.
echo "== building the tests"
"${suite[@]}" --no-run --quiet
"${focus[@]}" --no-run --quiet

cores=$(nproc)
echo "== $hogs_per_core CPU hogs on each of $cores cores"
for ((core = 0; core < cores; core++)); do
    for ((i = 0; i < hogs_per_core; i++)); do
        taskset -c "$core" bash -c 'while :; do :; done' &
        hogs+=($!)
    done
done

# run NAME COUNT COMMAND...: runs COMMAND COUNT times, keeps the logs of failures.
failed_total=0
run() {
    local name=$1 count=$2 passed=0 i started took
    shift 2
    for ((i = 1; i <= count; i++)); do
        started=$SECONDS
        if timeout 1800 "$@" >"$logs/$name-$i.log" 2>&1; then
            passed=$((passed + 1))
            rm -f "$logs/$name-$i.log"
            took=$((SECONDS - started))
            echo "$name run $i/$count: passed ($took s)"
        else
            took=$((SECONDS - started))
            echo "$name run $i/$count: FAILED ($took s), log kept in $logs/$name-$i.log"
            grep -E "^test .* FAILED|panicked at|^failures:" "$logs/$name-$i.log" | head -20 || true
        fi
    done
    echo "== $name: $passed of $count runs passed"
    failed_total=$((failed_total + count - passed))
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "== load average before: $(load)"
run suite "$suite_runs" "${suite[@]}"
run focus "$focus_runs" "${focus[@]}"
echo "== load average after: $(load)"
stop_hogs
if ((failed_total > 0)); then
    echo "stress-suite: $failed_total failed runs"
    exit 1
fi
echo "stress-suite: every run passed"
