#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for a fixed time each, one after another.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 30 s, all six targets)
#
# Needs only the Rust toolchain and crates.io: cargo-fuzz is installed into .cache/cargo-fuzz
# on first use. cargo fuzz passes nightly flags (-Zsanitizer, coverage options) to rustc; the
# stable toolchain accepts them under RUSTC_BOOTSTRAP=1, which is set for these builds only.
#
# The committed seeds in fuzz/corpus/ are copied into a temporary working corpus, so what the
# fuzzer finds does not grow the committed one. A crash, a hang (10 s on one input) or a
# panic fails the run: its input is kept in fuzz/artifacts/<target>/ and printed in base64,
# so that a CI log is enough to reproduce it.
#
# Environment: FUZZ_SANITIZER (address, the default, or none), FUZZ_ARGS (more libFuzzer
# options, such as -runs=10000000).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
ALL_TARGETS=(handshake_request handshake_response frame_header conn_server conn_client tls_server)

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${ALL_TARGETS[@]}")
fi
sanitizer=${FUZZ_SANITIZER:-address}

root=.cache/cargo-fuzz
if ! "$root/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $root"
    cargo install --locked --quiet --version "$CARGO_FUZZ_VERSION" --root "$root" cargo-fuzz
fi
export PATH="$PWD/$root/bin:$PATH"
export RUSTC_BOOTSTRAP=1

# The fuzz crate is its own workspace with its own lock file: refuse to update it.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

echo "== seeds replayed through every target's checks (cargo test, stable)"
cargo test --locked --quiet --manifest-path fuzz/Cargo.toml

echo "== building the fuzz targets (release, debug assertions, sanitizer: $sanitizer)"
build_start=$SECONDS
for t in "${targets[@]}"; do
    cargo fuzz build -O -a -s "$sanitizer" "$t"
done
echo "built in $((SECONDS - build_start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    cp fuzz/corpus/"$t"/* "$corpus"/
    dict=()
    case "$t" in
        handshake_*) dict=(-dict=fuzz/dicts/handshake.dict) ;;
        conn_* | frame_header) dict=(-dict=fuzz/dicts/frames.dict) ;;
    esac
    log="$work/$t.log"
    echo "== fuzzing $t for $seconds s"
    status=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of options
    cargo fuzz run -O -a -s "$sanitizer" "$t" "$corpus" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "${dict[@]}" \
        ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second\(s\)' "$log" | tail -n 1 || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" || true)
    execs=$(grep -oE 'exec/s: [0-9]+' <<<"$last" || true)
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "!! $t FAILED (exit $status); the end of its log:"
        tail -n 60 "$log"
        for a in "fuzz/artifacts/$t"/*; do
            [ -f "$a" ] || continue
            echo "!! input $a, in base64:"
            base64 -w0 "$a"
            echo
        done
        summary+=("$t: FAILED ${runs:-} $cov")
    else
        summary+=("$t: ${runs:-no Done line}, $execs, $cov")
    fi
    echo "${summary[-1]}"
done

echo "== fuzzing summary ($seconds s per target, sanitizer: $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzzing found a failure: see above"
    exit 1
fi
echo "fuzzing: ${#targets[@]} passed, 0 failed"
