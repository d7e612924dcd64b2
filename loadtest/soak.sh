#!/usr/bin/env bash
# The soak: wsload mixes echo, idle and abusive clients against the echo example for
# SECONDS (default 20, the CI form) after a 5 s warm-up round, and fails if any echo
# was wrong, extra or lost, any idle cycle or abuser's answer was not the one
# expected, the server's sockets did not come back to their start, or its RSS ended
# above its peak in the first half of the run plus 10% plus what the mix can make it
# hold at once (see loadtest/README.md: the bound does not depend on how busy the
# machine is).
#
#   bash loadtest/soak.sh [SECONDS]
#
# WSLOAD_SOAK_ARGS adds flags (--json FILE, --plot FILE, ...); SOAK_PIN=1 pins the
# server to CPU 0 and wsload to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
source loadtest/echo-server.sh

server_pin=() client_pin=()
if [[ ${SOAK_PIN:-0} == 1 ]]; then
    server_pin=(taskset -c 0) client_pin=(taskset -c 1)
fi

start_echo "${server_pin[@]}"

# A hang guard only: a healthy soak takes its rounds and a few seconds, and the
# timeout outlasts every wait of wsload's own (a minute each: the echoes in flight,
# the abusers' answers, the sockets, in each of the two rounds), so that wsload
# reports what it waited for rather than being killed.
# shellcheck disable=SC2086
timeout $((seconds + 600)) "${client_pin[@]}" "$target/wsload" soak --url "ws://$addr/" \
    --duration "$seconds" --server-pid "$server" --strict --quiet ${WSLOAD_SOAK_ARGS:-}

kill -TERM "$server"
wait "$server"
echo "soak: ok"
