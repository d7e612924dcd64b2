#!/usr/bin/env bash
# The whole test suite: the README's test command, and what .ci/run runs after
# formatting and lints. Needs only the Rust toolchain, Python 3 and the package
# registries (the Autobahn TestSuite installs itself into .cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --workspace --locked

echo "== wss:// in the client and the server (feature tls: rustls with ring)"
cargo build --locked --features tls --example echo --example chat
cargo test --locked --features tls --lib --test client_tls --test server_tls --test server_tls_abuse \
    --test server_tls_memory --test server_tls_keys --test server_pause_tls --test server_tls_idle_records \
    --test durations_never --test example_tls
echo "== metrics and tracing (features metrics, tracing): the facades, the ticker's /metrics"
# `cargo test --test X` builds no example: the ticker the test starts is built here
# with the features.
cargo build --locked --features metrics,tracing --example ticker
cargo test --locked --features metrics,tracing --test metrics_facade --test tracing_events \
    --test example_ticker

echo "== the library on the newest compatible dependencies, no deprecated items"
bash tests/fresh-deps.sh

echo "== several nodes on a real redis-server (installs redis-server if missing)"
bash tests/redis/run.sh

echo "== the chat example in headless Chromium (installs chromium and selenium if missing)"
bash tests/browser/run.sh

echo "== Autobahn TestSuite, server and client"
bash tests/autobahn/run.sh

echo "== wsload smoke run against the echo example"
bash loadtest/smoke.sh

echo "== soak: echo, idle and abusive clients against the echo example for 20 s"
bash loadtest/soak.sh 20

echo "== fuzzing: every target for 30 s (installs cargo-fuzz into .cache/ on first run)"
bash fuzz/run.sh 30
