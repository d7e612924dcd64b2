#!/usr/bin/env bash
# The library against the newest versions its Cargo.toml allows, as a new user's
# fresh lockfile would pick them: `cargo update` into the lockfile for one build of
# the library with every feature and `-D deprecated`, then the committed lockfile is
# put back, however the script ends. A dependency that deprecates something the
# library uses fails here, not in a user's build.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
cp Cargo.lock "$scratch/Cargo.lock"
trap 'cp "$scratch/Cargo.lock" Cargo.lock; rm -rf "$scratch"' EXIT
cargo update --quiet
# Its own target directory: other RUSTFLAGS would rebuild the main one from scratch.
RUSTFLAGS="-D deprecated" CARGO_TARGET_DIR=target/fresh-deps \
    cargo build --quiet --lib --features tls,redis
echo "the library builds without deprecations on the newest compatible dependencies"
