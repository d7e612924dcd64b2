#!/usr/bin/env bash
# Builds wsreactor's echo example, wsload and the peers in release, runs them side by
# side (servers pinned to CPU 0, wsload to CPU 1, alternating over rounds) and writes
# the load section of docs/BENCHMARKS.md. See loadtest/compare.py --help.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 loadtest/compare.py "$@"
