#!/usr/bin/env bash
# The chat example in a real browser: headless Chromium driven by Selenium. Two
# sessions join one room and talk, a third in another room hears nothing, and
# closing one tab shows the leave line in the other; a screenshot is saved.
#
# usage: bash tests/browser/run.sh [SCREENSHOT.png]
#
# Installs what is missing: Debian's chromium and chromium-driver (apt-get, as root),
# and Selenium from PyPI into a virtual environment under .cache/browser/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SELENIUM=4.40.0
shot=${1:-target/browser/chat.png}

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "== installing chromium and chromium-driver (Debian)"
    if [[ $(id -u) -ne 0 ]]; then
        echo "run.sh: chromium is missing and installing it needs root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

venv=.cache/browser/venv
if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c "import selenium, sys; sys.exit(selenium.__version__ != '$SELENIUM')" 2>/dev/null; then
    echo "== installing selenium $SELENIUM into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "selenium==$SELENIUM"
fi

cargo build --locked --quiet --example chat
log=$(mktemp)
target/debug/examples/chat --addr 127.0.0.1:0 --threads 2 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
addr=
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")
    [[ -n $addr ]] && break
    sleep 0.05
done
[[ -n $addr ]] || { echo "the chat example did not start" >&2; cat "$log" >&2; exit 1; }

mkdir -p "$(dirname "$shot")"
timeout 300 "$venv/bin/python" tests/browser/chat.py "$addr" "$shot"
