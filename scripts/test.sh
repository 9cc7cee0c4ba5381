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
# The tests and the bench scripts run this binary: nothing builds it again
# (`cargo build -p ambos` alone would compile every crate a second time,
# with features unified differently).
AMBOS_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/ambos"
export AMBOS_BIN

echo "== a throwaway PostgreSQL cluster for the store tests (stopped at exit)"
pg="$(mktemp -d)"
trap './scripts/pg-cluster.sh stop "$pg"; rm -rf "$pg"' EXIT
AMBOS_TEST_POSTGRES="$(./scripts/pg-cluster.sh start "$pg")"
export AMBOS_TEST_POSTGRES AMBOS_REQUIRE_POSTGRES=1
# install-deps.sh installed Chromium: a browser test that finds none fails here.
export AMBOS_REQUIRE_BROWSER=1

echo "== benchmark smoke runs, in the background (tiny counts, so they cannot rot)"
# In smoke mode the bench scripts check that their setup and arithmetic
# work, not figures, and mostly wait on sockets, timeouts and fixed
# durations: they run while the tests compile and run. Their output comes
# at the end.
smoke="$(mktemp -d)"
benches="proxy enroll compare starvation audit-soak token console console-postgres"
for b in $benches; do
    case "$b" in
    console-postgres) run=(env STORE=postgres SMOKE=1 ./bench/console.sh) ;;
    *) run=(env SMOKE=1 "./bench/$b.sh") ;;
    esac
    (rc=0; "${run[@]}" >"$smoke/$b.log" 2>&1 || rc=$?; echo "$rc" >"$smoke/$b.rc") &
done

echo "== tests (unit, then end-to-end against openssl, curl, keytool, java, nginx)"
log="$(mktemp)"
status=0
cargo test --workspace --locked --no-fail-fast --exclude ambos-interop-tests 2>&1 | tee "$log" || status=1
# The end-to-end tests mostly wait on children and sockets, and each has its
# own directories and ports: more threads than cores.
cargo test --workspace --locked --no-fail-fast --test interop -- --test-threads "${INTEROP_THREADS:-6}" 2>&1 \
    | tee -a "$log" || status=1
echo "== the CA's end-to-end tests again, each CA in a PostgreSQL database (--store)"
AMBOS_TEST_STORE=postgres cargo test --workspace --locked --no-fail-fast --test interop -- \
    --test-threads "${INTEROP_THREADS:-6}" ca_cli:: lifecycle:: oauth:: audit_rotation:: 2>&1 | tee -a "$log" || status=1
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
if [ "$status" -ne 0 ] || [ "$passed" -eq 0 ]; then
    echo "tests: $passed passed, $failed failed"
    wait
    rm -rf "$smoke"
    exit 1
fi

echo "== x509-limbo and the criterion benches, then the bench scripts' results"
later=""
./scripts/limbo.sh || later="$later limbo"
# Every criterion bench once, in test mode and the test profile (a release
# build only for this took 9 of 16 minutes on a fresh machine); a small CRL
# keeps the verify bench's setup short unoptimised.
CRL_ENTRIES=1000 cargo test --workspace --locked --bench '*' || later="$later criterion"
wait
smoke_failed="$later"
for b in $benches; do
    rc="$(cat "$smoke/$b.rc")"
    label="SMOKE=1 bench/$b.sh"
    [[ "$b" == console-postgres ]] && label="STORE=postgres SMOKE=1 bench/console.sh"
    echo "-- $label (exit $rc)"
    if [ "$rc" -ne 0 ]; then cat "$smoke/$b.log"; smoke_failed="$smoke_failed $b"; else tail -n 3 "$smoke/$b.log"; fi
done
rm -rf "$smoke"
if [ -n "$smoke_failed" ]; then
    echo "failed:$smoke_failed"
    exit 1
fi

echo "tests: $passed passed, $failed failed"
