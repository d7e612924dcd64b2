#!/usr/bin/env bash
# A short load run in CI: wsload drives the echo example with 200 connections for a
# few seconds and fails on any error, including a message sent that never came back.
set -euo pipefail
cd "$(dirname "$0")/.."

source loadtest/echo-server.sh
start_echo

timeout 60 "$target/wsload" echo --url "ws://$addr/" --connections 200 --pipeline 2 \
    --duration 4 --warmup 1 --server-pid "$server" --quiet --strict

kill -TERM "$server"
wait "$server"
echo "smoke: ok"
