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

if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server (Debian)"
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo)
    else
        echo "run.sh: redis-server is missing and installing it needs root" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

# The tests write each redis-server's pid here; whatever is left at exit is stopped.
pids=$(mktemp -d)
cleanup() {
    local f
    for f in "$pids"/*; do
        [[ -e $f ]] && kill "$(basename "$f")" 2>/dev/null || true
    done
    rm -rf "$pids"
}
trap cleanup EXIT
export WSREACTOR_REDIS_PIDS=$pids

# The nodes are the pubsub example built with the feature.
cargo build --locked --quiet --features redis --example pubsub
cargo test --locked --features redis --test redis_nodes --test redis_bridge
