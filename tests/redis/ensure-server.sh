# Sourced by the scripts that need a real redis-server (tests/redis/run.sh,
# tests/stress-suite.sh): installs Debian's redis-server if it is missing (apt-get,
# as root or with sudo), and makes `redis_pids` a directory where the tests write
# each redis-server's pid; the trap set here stops whatever a killed test left.
if ! command -v redis-server >/dev/null; then
    echo "== installing redis-server (Debian)"
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo)
    else
        echo "redis-server is missing and installing it needs root" >&2
        exit 1
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

redis_pids=$(mktemp -d)
stop_redis_servers() {
    local f
    for f in "$redis_pids"/*; do
        [[ -e $f ]] && kill "$(basename "$f")" 2>/dev/null || true
    done
    rm -rf "$redis_pids"
}
export WSREACTOR_REDIS_PIDS=$redis_pids
