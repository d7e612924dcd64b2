#!/usr/bin/env bash
# ws:// beside wss:// on the echo example (one reactor, CPU 0) driven by wsload
# (CPU 1), a fresh server per cell, ws and wss alternating within each round:
# server RSS per idle connection at 1,000 and 10,000 connections, server CPU per
# echoed message (32 B and 16 KiB, 100 connections), server CPU per handshake
# (connect, upgrade, reset at a concurrency of 50): full handshakes with an ECDSA
# P-256 certificate, with an RSA 2048 one, and resumed ones (TLS 1.3 tickets, ECDSA).
# The certificates are leaves signed by a CA made here with openssl. With PEER=1, the same cells
# against peer-tungstenite-tls (tokio-tungstenite over tokio-rustls, a current-thread
# runtime) as a third server. Usage: [PEER=1] bash loadtest/tls.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}

cargo build --release --locked --quiet --features tls -p wsload -p wsreactor --example echo --bin wsload
target=${CARGO_TARGET_DIR:-target}/release
schemes=(ws wss)
if [[ ${PEER:-0} == 1 ]]; then
    (cd loadtest/peers && cargo build --release --locked --quiet --bin peer-tungstenite-tls)
    schemes+=(peer)
fi
dir=$(mktemp -d)
server=
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=wsload test CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/rsa-key.pem" -out "$dir/rsa.csr" 2>/dev/null
openssl x509 -req -in "$dir/rsa.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/rsa-cert.pem" 2>/dev/null

# start SCHEME: the echo example on a free port, serving ws or wss, or the peer
# (wss), with the ECDSA certificate or, with CERT=rsa, the RSA one; sets $server, $url.
start() {
    local tls=() log="$dir/echo.log" scheme=$1 cert=$dir/cert.pem key=$dir/key.pem
    if [[ ${CERT:-} == rsa ]]; then
        cert=$dir/rsa-cert.pem key=$dir/rsa-key.pem
    fi
    [[ $1 == wss ]] && tls=(--tls-cert "$cert" --tls-key "$key")
    if [[ $1 == peer ]]; then
        scheme=wss
        PEER_TLS_CERT="$cert" PEER_TLS_KEY="$key" taskset -c 0 \
            loadtest/peers/target/release/peer-tungstenite-tls --addr 127.0.0.1:0 \
            --runtime current >"$log" 2>&1 &
    else
        taskset -c 0 "$target/examples/echo" --addr 127.0.0.1:0 --threads 1 "${tls[@]}" \
            >"$log" 2>&1 &
    fi
    server=$!
    local addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log")
        [[ -n $addr ]] && break
        sleep 0.05
    done
    [[ -n $addr ]] || { cat "$log" >&2; exit 1; }
    url="$scheme://localhost:${addr##*:}/"
}

stop() {
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
}

# cell SCHEME LABEL WSLOAD-ARGS...: one fresh server, one wsload run, its figures.
cell() {
    local scheme=$1 label=$2
    shift 2
    start "$scheme"
    local out
    # Four source addresses: the cells close tens of thousands of connections a
    # minute, and one address's ephemeral ports would run out in TIME_WAIT.
    out=$(taskset -c 1 "$target/wsload" "$@" --url "$url" --ca "$dir/ca.pem" \
        --sources 4 --server-pid "$server" --quiet)
    stop
    printf '%-4s %-22s %s\n' "$scheme" "$label" \
        "$(grep -E 'server (RSS|CPU)|messages |handshakes |errors |tls ' <<<"$out" | sed 's/^ *//' | paste -sd '|')"
}

echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$rounds"); do
    echo "== round $round"
    for scheme in "${schemes[@]}"; do
        cell "$scheme" "idle 1000" idle --connections 1000 --duration 1
        cell "$scheme" "idle 10000" idle --connections 10000 --duration 1
        cell "$scheme" "echo 32 B x100" echo --connections 100 --payload 32 --duration 5 --warmup 1
        cell "$scheme" "echo 16 KiB x100" echo --connections 100 --payload 16384 --duration 5 --warmup 1
        cell "$scheme" "connect x50" connect --concurrency 50 --duration 5 --warmup 1
        [[ $scheme == ws ]] && continue
        cell "$scheme" "connect resumed x50" connect --concurrency 50 --duration 5 --warmup 1 \
            --tls-resume
        CERT=rsa cell "$scheme" "connect rsa x50" connect --concurrency 50 --duration 5 --warmup 1
    done
done
