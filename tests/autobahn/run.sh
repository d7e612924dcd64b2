#!/usr/bin/env bash
# The Autobahn TestSuite (wstest 0.8.2) against wsreactor, in both roles:
#   server: `wstest -m fuzzingclient` drives examples/echo.rs, once with
#           `--deflate shared`, once with `--deflate dedicated`, and once over wss://
#           (built with --features tls, `--deflate off`, cases 1.* to 10.*), all at once;
#   client: examples/autobahn_client.rs is driven by `wstest -m fuzzingserver`.
# Then tests/autobahn/check.py reads the reports and fails on any shortfall
# (wstest itself exits 0 even when every case fails).
#
# usage: bash tests/autobahn/run.sh [--write-docs] [--only server|wss|client] [--install-only]
#   --write-docs     also regenerate docs/CONFORMANCE.md from the reports
#   --only ROLE      run one role (for iterating; the docs need all): server (the three
#                    server runs), wss (the wss server run alone) or client
#   --install-only   install (or check) wstest in the cache and stop
#
# wstest runs only on Python 2.7, which Debian bookworm lacks, so it is installed
# into .cache/autobahn/ (gitignored) from bullseye's packages and PyPI, with nothing
# installed system-wide, and reused while its marker matches the pinned versions.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

WRITE_DOCS=0
INSTALL_ONLY=0
ONLY=""
while (($#)); do
    case $1 in
        --write-docs) WRITE_DOCS=1 ;;
        --install-only) INSTALL_ONLY=1 ;;
        --only)
            ONLY=${2:?--only needs server, wss or client}
            shift
            ;;
        -h | --help)
            sed -n '2,14p' "$0"
            exit 0
            ;;
        *)
            echo "run.sh: unknown argument $1" >&2
            exit 2
            ;;
    esac
    shift
done
case $ONLY in "" | server | wss | client) ;; *)
    echo "run.sh: --only takes server, wss or client" >&2
    exit 2
    ;;
esac
if ((WRITE_DOCS)) && [[ -n $ONLY ]]; then
    echo "run.sh: --write-docs needs every run" >&2
    exit 2
fi

CACHE=$ROOT/.cache/autobahn
OUT=$ROOT/target/autobahn
EXAMPLES=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples
AGENT=wsreactor
# Exactly the largest message of 9.1.6/9.2.6 (and the engine's default), so an
# off-by-one in the engine's limit check fails those cases.
MAX_MESSAGE=$((16 << 20))

# Everything that decides what gets installed; a change re-installs.
DEBS=(python2.7 python2.7-minimal libpython2.7-stdlib libpython2.7-minimal libpython2.7
    libpython2.7-dev python2.7-dev libssl1.1 libffi7)
BOOTSTRAP=(pip==20.3.4 setuptools==44.1.1 wheel==0.37.1)
WSTEST_PKGS=(txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2
    Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1
    klein==17.10.0 service_identity==18.1.0 unittest2==1.1.0 six==1.16.0
    'autobahn[twisted,accelerate]==0.10.9' autobahntestsuite==0.8.2)
WSTEST_VERSION=0.8.2
STAMP="v1 bullseye ${DEBS[*]} ${BOOTSTRAP[*]} ${WSTEST_PKGS[*]}"

MULTIARCH=$(gcc -print-multiarch 2>/dev/null || true)
MULTIARCH=${MULTIARCH:-x86_64-linux-gnu}
PYROOT=$CACHE/root
PY2=$PYROOT/usr/bin/python2.7
SITE=$CACHE/site
WSTEST=$CACHE/bin/wstest
# The unpacked interpreter finds its standard library from its own path, and its
# shared libraries (libssl1.1, libffi7) here.
PY2_ENV=(env LD_LIBRARY_PATH="$PYROOT/usr/lib/$MULTIARCH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    PYTHONNOUSERSITE=1 "$PY2")

log() { printf '== %s\n' "$*"; }
die() {
    printf 'run.sh: %s\n' "$*" >&2
    exit 1
}

# --- processes we start: stopped on any exit -------------------------------------------
# Each runs in the background under `timeout`, which forwards our SIGTERM to it and exits
# with its status. In the background, because bash runs a trap only once a foreground
# command has finished, while `wait` is cut short by the signal.
PIDS=()

# Forgets pid $1 once it has been waited for, so that the exit trap never signals a later
# process that reused it.
forget() {
    local rest=() p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || rest+=("$p"); done
    PIDS=("${rest[@]}")
}

# Runs a command under `timeout $1` and waits for it; returns its status (124: timed out).
bounded() {
    local seconds=$1 pid status=0
    shift
    timeout "$seconds" "$@" &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || status=$?
    forget "$pid"
    return "$status"
}

# Sends SIGTERM to our process $1 and waits up to $2 s for it to exit; returns its exit
# status, or 124 if it had to be killed.
stop() {
    local pid=$1 deadline=$((SECONDS + $2)) status=0
    forget "$pid"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 124
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}

# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        stop "$pid" 3 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port free now. wstest binds it a moment later: a race we accept, since wstest cannot
# bind port 0 and tell us which port it got.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until a line matching $2 appears in file $1, or process $3 dies, or $4 s pass.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 deadline=$((SECONDS + $4))
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (process $2, $3 s).
wait_for_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    until (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- wstest, installed privately -------------------------------------------------------

# apt with every state and source file inside the cache, so the host's package lists,
# status and sources are neither read nor touched; the host's apt.conf.d still applies.
# The files live in the cache, not under /var, so apt downloads as root rather
# than as _apt.
APT=(apt-get -q
    -o Dir::Etc::SourceList="$CACHE/apt/sources.list"
    -o Dir::Etc::SourceParts="$CACHE/apt/sources.list.d"
    -o Dir::State::Lists="$CACHE/apt/lists"
    -o Dir::Cache="$CACHE/apt/cache"
    -o Dir::State::status="$CACHE/apt/status"
    -o APT::Sandbox::User=root)

# A field of the first stanza of the host's deb822 sources: the bullseye line uses the
# mirror (and keyring) this machine already reaches Debian through.
debian_sources_field() {
    local f=/etc/apt/sources.list.d/debian.sources value
    [[ -r $f ]] || die "$f not found: cannot tell which Debian mirror to use"
    value=$(awk -v field="$1" 'tolower($1) == tolower(field) ":" { print $2; exit }' "$f")
    [[ -n $value ]] || die "no $1: line in $f"
    printf '%s\n' "$value"
}

install_wstest() {
    local a=$CACHE/apt mirror keyring deb
    log "installing wstest $WSTEST_VERSION into $CACHE (Python 2.7 from bullseye)"
    # Anything half-built by an interrupted install goes; the apt lists and the
    # download caches stay, since they are only caches.
    rm -rf "${CACHE:?}"/{root,site,bin,debs,wheels,installed}
    mkdir -p "$a/sources.list.d" "$a/lists/partial" "$a/cache/archives/partial" \
        "$CACHE/debs" "$CACHE/wheels" "$PYROOT" "$SITE" "$CACHE/bin"
    touch "$a/status"
    mirror=$(debian_sources_field URIs)
    keyring=$(debian_sources_field Signed-By)
    # An inline key block is no file name: Debian's own keyring has bullseye's keys.
    [[ $keyring == /* ]] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    printf 'deb [signed-by=%s] %s bullseye main\n' "$keyring" "$mirror" >"$a/sources.list"

    timeout 600 "${APT[@]}" update >"$CACHE/apt-update.log" 2>&1 ||
        die "private apt-get update failed: see $CACHE/apt-update.log"
    # `apt-get download` writes into the current directory.
    (cd "$CACHE/debs" && timeout 600 "${APT[@]}" download "${DEBS[@]}") \
        >"$CACHE/apt-download.log" 2>&1 ||
        die "apt-get download failed: see $CACHE/apt-download.log"
    for deb in "$CACHE"/debs/*.deb; do
        dpkg -x "$deb" "$PYROOT"
    done
    [[ -x $PY2 ]] || die "python2.7 missing after unpacking"

    # pip for Python 2 comes from the host's pip (py2-compatible wheels), then
    # installs itself into the target folder with the unpacked interpreter.
    timeout 600 python3 -m pip download -q --no-deps --only-binary=:all: --python-version 27 \
        --dest "$CACHE/wheels" "${BOOTSTRAP[@]}"
    local pipwhl
    pipwhl=$(echo "$CACHE"/wheels/pip-*.whl)
    [[ -f $pipwhl ]] || die "pip wheel not downloaded"
    timeout 600 "${PY2_ENV[@]}" "$pipwhl/pip" install -q --no-python-version-warning \
        --no-index --find-links "$CACHE/wheels" --target "$SITE" "${BOOTSTRAP[@]}" \
        >"$CACHE/pip-bootstrap.log" 2>&1 || die "pip bootstrap failed: see $CACHE/pip-bootstrap.log"

    # The C extensions (Twisted, ujson, wsaccel, ...) build against the unpacked headers.
    # The host's find-links hold Python 3 wheels only: leave them out for reproducibility.
    CFLAGS="-I$PYROOT/usr/include/python2.7 -I$PYROOT/usr/include" \
        PYTHONPATH="$SITE" PIP_CACHE_DIR="$CACHE/pip-cache" \
        timeout 1200 env -u PIP_FIND_LINKS "${PY2_ENV[@]}" -m pip install -q --target "$SITE" \
        --no-python-version-warning --no-warn-script-location "${WSTEST_PKGS[@]}" >"$CACHE/pip-install.log" 2>&1 ||
        die "pip install of wstest failed: see $CACHE/pip-install.log"
    # What the unpinned dependencies resolved to, for whoever debugs the install.
    PYTHONPATH="$SITE" env -u PIP_FIND_LINKS "${PY2_ENV[@]}" -m pip freeze --path "$SITE" \
        >"$CACHE/freeze.txt" 2>/dev/null || true

    write_wstest
    timeout 60 "$WSTEST" --autobahnversion >/dev/null 2>&1 ||
        die "wstest does not start after install"
    printf '%s\n' "$STAMP" >"$CACHE/installed"
}

# The wrapper names this cache's interpreter and packages by their absolute paths: it is
# written anew on every run, so a cache copied from another checkout runs its own copy,
# not the other checkout's (which may be gone or reinstalling).
write_wstest() {
    # site.addsitedir, unlike PYTHONPATH, runs the .pth files that make zope a namespace.
    cat >"$WSTEST" <<EOF
#!/bin/sh
# Generated by tests/autobahn/run.sh: wstest on the private Python 2.7.
LD_LIBRARY_PATH="$PYROOT/usr/lib/$MULTIARCH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
PYTHONNOUSERSITE=1
export LD_LIBRARY_PATH PYTHONNOUSERSITE
unset PYTHONPATH PYTHONHOME
exec "$PY2" -c 'import site, sys; site.addsitedir(sys.argv.pop(1)); sys.argv[0] = "wstest"; from autobahntestsuite.wstest import run; sys.exit(run())' "$SITE" "\$@"
EOF
    chmod +x "$WSTEST"
}

ensure_wstest() {
    mkdir -p "$CACHE"
    # One install at a time, even from two checkouts' runs sharing nothing but this.
    exec 9>"$CACHE/.lock"
    flock -w 1800 9 || die "timed out waiting for another install of wstest"
    if [[ -f $CACHE/installed && $(<"$CACHE/installed") == "$STAMP" && -x $PY2 ]] &&
        write_wstest && timeout 60 "$WSTEST" --autobahnversion >/dev/null 2>&1; then
        log "wstest $WSTEST_VERSION: cached in $CACHE"
    else
        install_wstest
    fi
    exec 9>&-
}

# Writes spec $1 to $2 with the url (and, for the client spec, the server's) set to
# port $3, the report folder to $4, and the scheme to $5 (ws, the default, or wss).
write_spec() {
    python3 - "$@" <<'EOF'
import json, sys
src, dst, port, outdir = sys.argv[1:5]
scheme = sys.argv[5] if len(sys.argv) > 5 else "ws"
with open(src) as f:
    spec = json.load(f)
url = "%s://127.0.0.1:%s" % (scheme, port)
if "servers" in spec:
    for server in spec["servers"]:
        server["url"] = url
else:
    spec["url"] = url
spec["outdir"] = outdir
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
EOF
}

# A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, and its key, as
# PEM in $OUT/wss/, made at run time (no key is committed) by `cryptography` in wstest's
# own Python 2.7: CI has no openssl CLI. wstest's client (Twisted's ClientContextFactory)
# verifies no certificate, so self-signed is enough.
make_cert() {
    mkdir -p "$OUT/wss"
    PYTHONWARNINGS=ignore "${PY2_ENV[@]}" - "$SITE" "$OUT/wss" <<'EOF' ||
import site, sys
site.addsitedir(sys.argv[1])
import datetime, ipaddress, os
from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

backend = default_backend()
key = ec.generate_private_key(ec.SECP256R1(), backend)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"localhost")])
now = datetime.datetime.utcnow()
san = x509.SubjectAlternativeName([x509.DNSName(u"localhost"),
                                   x509.IPAddress(ipaddress.ip_address(u"127.0.0.1"))])
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256(), backend))
with open(os.path.join(sys.argv[2], "key.pem"), "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
with open(os.path.join(sys.argv[2], "cert.pem"), "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
EOF
        die "could not make the wss certificate with wstest's Python"
}

# --- the two roles ---------------------------------------------------------------------

# Starts the echo example for run $1 and wstest -m fuzzingclient against it, in the
# background; `finish_server_suite $1` waits for them. The runs go at once: wstest
# (Python 2, one core) is what takes the time, not the server.
#   shared, dedicated: ws:// with `--deflate $1`, every case;
#   wss: wss:// (the echo built with --features tls), `--deflate off`, the cases of
#        tests/autobahn/fuzzingclient-wss.json: 1.* to 10.*, for CI's time; 12.* and
#        13.* (permessage-deflate) run over ws:// in the two runs above.
declare -A ECHO_PID WSTEST_PID SUITE_START SERVER_SECONDS
start_server_suite() {
    local mode=$1 log=$OUT/echo-$1.log port pid
    local echo=$EXAMPLES/echo args=(--deflate "$mode") spec=fuzzingclient scheme=ws
    if [[ $mode == wss ]]; then
        echo=$OUT/echo-tls
        args=(--deflate off --tls-cert "$OUT/wss/cert.pem" --tls-key "$OUT/wss/key.pem")
        spec=fuzzingclient-wss
        scheme=wss
    fi
    rm -rf "$OUT/server-$mode"
    # Emptied here, not by the background job's redirection, which may come after
    # wait_for_line has read the last run's "listening on".
    : >"$log"
    log "server: echo example ${args[*]:0:2} over $scheme:// on 127.0.0.1 (2 reactors), wstest -m fuzzingclient"
    timeout 2400 "$echo" --addr 127.0.0.1:0 --threads 2 "${args[@]}" \
        --max-message-size "$MAX_MESSAGE" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    ECHO_PID[$mode]=$pid
    wait_for_line "$log" "listening on" "$pid" 30 || {
        cat "$log" >&2
        die "the echo server did not start"
    }
    port=$(sed -n 's/^listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n1)
    [[ -n $port ]] || die "no port in the echo server's first line: $(head -n1 "$log")"
    write_spec "tests/autobahn/$spec.json" "$OUT/fuzzingclient-$mode.json" "$port" \
        "$OUT/server-$mode" "$scheme"
    SUITE_START[$mode]=$EPOCHSECONDS
    timeout 2400 "$WSTEST" -m fuzzingclient -s "$OUT/fuzzingclient-$mode.json" \
        >"$OUT/fuzzingclient-$mode.log" 2>&1 &
    WSTEST_PID[$mode]=$!
    PIDS+=("${WSTEST_PID[$mode]}")
}

finish_server_suite() {
    local mode=$1 pid status=0
    pid=${WSTEST_PID[$mode]}
    wait "$pid" || status=$?
    forget "$pid"
    ((status == 0)) ||
        die "wstest -m fuzzingclient ($mode) failed or timed out: see $OUT/fuzzingclient-$mode.log"
    local index=$OUT/server-$mode/index.json
    [[ -f $index ]] || die "wstest -m fuzzingclient ($mode) wrote no report: see $OUT/fuzzingclient-$mode.log"
    # The runs end at different times but are waited for in turn (the wss one long
    # before the others): the report's last write is when this one ended.
    SERVER_SECONDS[$mode]=$(($(stat -c %Y "$index") - SUITE_START[$mode]))
    # A clean stop is part of the result: graceful shutdown must not hang or crash
    # after the cases' abuse.
    status=0
    stop "${ECHO_PID[$mode]}" 15 || status=$?
    if ((status != 0)); then
        cat "$OUT/echo-$mode.log" >&2
        die "the echo server ($mode) did not stop cleanly on SIGTERM (status $status)"
    fi
    log "server $mode: $(grep -m1 '^stopped' "$OUT/echo-$mode.log" || echo 'no stop line') (${SERVER_SECONDS[$mode]}s)"
}

run_client_suite() {
    local log=$OUT/fuzzingserver.log port pid status
    rm -rf "$OUT/client"
    port=$(free_port)
    write_spec tests/autobahn/fuzzingserver.json "$OUT/fuzzingserver.json" "$port" "$OUT/client"
    log "client: wstest -m fuzzingserver on 127.0.0.1:$port, driven by autobahn_client"
    # --webport 0: no report browser on port 8080, which may be taken.
    timeout 2400 "$WSTEST" -m fuzzingserver -s "$OUT/fuzzingserver.json" --webport 0 \
        >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_for_port "$port" "$pid" 60 || {
        cat "$log" >&2
        die "wstest -m fuzzingserver did not start"
    }

    local start=$SECONDS
    status=0
    bounded 1800 "$EXAMPLES/autobahn_client" --addr "127.0.0.1:$port" --agent "$AGENT" \
        >"$OUT/autobahn_client.log" 2>&1 || status=$?
    CLIENT_SECONDS=$((SECONDS - start))
    stop "$pid" 15 || true
    if ((status != 0)); then
        tail -n 20 "$OUT/autobahn_client.log" >&2
        die "autobahn_client exited with status $status: see $OUT/autobahn_client.log"
    fi
    log "client: $(tail -n1 "$OUT/autobahn_client.log") (${CLIENT_SECONDS}s)"
}

# --- main --------------------------------------------------------------------------------

T0=$SECONDS
ensure_wstest
if ((INSTALL_ONLY)); then
    exit 0
fi
mkdir -p "$OUT"
MODES=()
case $ONLY in
    "" | server) MODES=(shared dedicated wss) ;;
    wss) MODES=(wss) ;;
esac
log "building the echo and autobahn_client examples (release)"
bounded 1200 cargo build --release --locked --example echo --example autobahn_client

# wstest's progress lines reach its log as they happen, not at exit.
export PYTHONUNBUFFERED=1
CLIENT_SECONDS=0
for mode in "${MODES[@]}"; do
    if [[ $mode == wss ]]; then
        # Built while the ws runs go, which keep the cores busy for minutes: the build
        # only adds its CPU time. Cargo links its echo where the plain one was (a new
        # file: the running servers keep theirs); copied aside, since the next plain
        # build puts the plain one back.
        log "building the echo example with --features tls (release), and its certificate"
        bounded 1200 cargo build --release --locked --features tls --example echo
        cp -f "$EXAMPLES/echo" "$OUT/echo-tls"
        make_cert
    fi
    start_server_suite "$mode"
done
[[ $ONLY == server || $ONLY == wss ]] || run_client_suite
if [[ $ONLY != client ]]; then
    for mode in "${MODES[@]}"; do
        finish_server_suite "$mode"
    done
fi

log "suites done: $((SECONDS - T0))s in all"
runtime="$(timeout 60 "$WSTEST" --autobahnversion 2>/dev/null | paste -sd, - | sed 's/,/, /g')"
runtime+=", $("${PY2_ENV[@]}" -V 2>&1)"
check=(python3 tests/autobahn/check.py --agent "$AGENT" --wstest-version "$WSTEST_VERSION"
    --wstest-runtime "$runtime")
if [[ $ONLY == "" || $ONLY == server ]]; then
    check+=(--server "$OUT/server-shared" --server-seconds "${SERVER_SECONDS[shared]}")
    check+=(--server-dedicated "$OUT/server-dedicated"
        --server-dedicated-seconds "${SERVER_SECONDS[dedicated]}")
fi
if [[ $ONLY != client ]]; then
    check+=(--server-wss "$OUT/server-wss" --server-wss-seconds "${SERVER_SECONDS[wss]}")
fi
[[ $ONLY == server || $ONLY == wss ]] ||
    check+=(--client "$OUT/client" --client-seconds "$CLIENT_SECONDS")
if ((WRITE_DOCS)); then
    check+=(--write-docs docs/CONFORMANCE.md)
fi
exec "${check[@]}"
