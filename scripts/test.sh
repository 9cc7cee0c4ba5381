#!/usr/bin/env bash
# The project's whole test run: what CI runs and what a developer runs.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

echo "== format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --bins --locked

echo "== tests (unit, then end-to-end against openssl, curl, keytool, java, nginx)"
cargo test --workspace --locked --no-fail-fast

echo "== benchmark smoke run (each benchmark once, so they cannot rot)"
cargo bench -p ambos-ca --bench issuance --locked -- --test
