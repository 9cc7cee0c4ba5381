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
log="$(mktemp)"
set +e
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
if [ "$status" -ne 0 ] || [ "$passed" -eq 0 ]; then
    echo "tests: $passed passed, $failed failed"
    exit 1
fi

echo "== x509-limbo"
./scripts/limbo.sh

echo "== benchmark smoke runs (tiny counts, so they cannot rot)"
# Every criterion bench once, in test mode and the test profile (a release
# build only for this took 9 of 16 minutes on a fresh machine); a small CRL
# keeps the verify bench's setup short unoptimised.
CRL_ENTRIES=1000 cargo test --workspace --locked --bench '*'
SMOKE=1 ./bench/proxy.sh
SMOKE=1 ./bench/enroll.sh
SMOKE=1 ./bench/compare.sh
SMOKE=1 ./bench/starvation.sh
SMOKE=1 ./bench/audit-soak.sh

echo "tests: $passed passed, $failed failed"
