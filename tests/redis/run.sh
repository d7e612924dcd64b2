#!/usr/bin/env bash
# Several nodes on a real redis-server (feature `redis`): the pubsub example twice
# with --redis (tests/redis_nodes.rs), and the bridge inside one process
# (tests/redis_bridge.rs). Each test starts its own redis-server on a free
# 127.0.0.1 port and stops it; the trap below stops any a killed test left behind.
#
# usage: bash tests/redis/run.sh
#
# Installs what is missing: Debian's redis-server (apt-get, as root or with sudo).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

source tests/redis/ensure-server.sh
trap stop_redis_servers EXIT

# The nodes are the pubsub example built with the feature.
cargo build --locked --quiet --features redis --example pubsub
cargo test --locked --features redis --test redis_nodes --test redis_bridge
# The bridge's counters on the metrics facade.
cargo test --locked --features redis,metrics --test redis_metrics
