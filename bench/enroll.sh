#!/usr/bin/env bash
# Enrollment throughput through the CA API with durable storage:
# `ambos serve` alone on core 0, the load generator (`ambos bench enroll`,
# which makes a P-256 key and CSR per enrollment) on core 1.
#   bench/enroll.sh                    # release, 20,000 enrollments
#   COUNT=5000 CONCURRENCY=16 bench/enroll.sh
#   SMOKE=1 bench/enroll.sh            # debug build, 200 enrollments
#   STORE=postgres bench/enroll.sh     # the CA in a throwaway PostgreSQL cluster (on core 1)
#   STORE=postgres NODES=2 bench/enroll.sh   # two ambos serve nodes on it, both on core 0
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    COUNT="${COUNT:-200}"; PROFILE=debug
else
    COUNT="${COUNT:-20000}"; PROFILE=release
fi
CONCURRENCY="${CONCURRENCY:-32}"
BENCH=enroll
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

STORE="${STORE:-sqlite}"; NODES="${NODES:-1}"
if [[ "$STORE" == postgres ]]; then
    # A cluster of its own, on core 1 with the load generator; stopped at
    # exit. Its directory is not under $TMP: the postgres user must reach it.
    PG="$(mktemp -d)"
    # fsync on: durable commits, as the SQLite store's synchronous=FULL.
    AMBOS_STORE="$(PG_FSYNC=on taskset -c 1 "$ROOT/scripts/pg-cluster.sh" start "$PG")"
    trap '"$ROOT/scripts/pg-cluster.sh" stop "$PG"; rm -rf "$PG"; cleanup' EXIT
    export AMBOS_STORE
fi
"$AMBOS" --dir "$TMP/ca" init --no-passphrase >/dev/null 2>&1
"$AMBOS" --dir "$TMP/ca" token create dev --count "$COUNT" --ttl 1h >"$TMP/tokens.txt"
SERVES=(); PORTS=()
for ((i = 0; i < NODES; i++)); do
    taskset -c 0 "$AMBOS" --dir "$TMP/ca" serve --listen "127.0.0.1:0" --token-failure-limit 1000000 >"$TMP/serve$i.log" 2>&1 &
    SERVES+=($!); PIDS+=($!)
    PORTS+=("$(listen_port "serve$i" "$!")")
    wait_port "${PORTS[$i]}" "serve$i" "$!"
done
# The database server's CPU too (all its processes), for PostgreSQL.
db_ticks() {
    [[ "$STORE" == postgres ]] || { echo 0; return; }
    local main; main="$(head -1 "$PG/data/postmaster.pid")"
    for p in "$main" $(pgrep -P "$main" || true); do cpu_ticks "$p" 2>/dev/null || true; done | awk '{s+=$1} END {print s+0}'
}
serve_ticks() { local p s=0; for p in "${SERVES[@]}"; do s=$((s + $(cpu_ticks "$p"))); done; echo "$s"; }
# The tokens split between the nodes; each node's share from its own load generator.
split -n "l/$NODES" -d "$TMP/tokens.txt" "$TMP/tokens."
before="$(serve_ticks)"; db_before="$(db_ticks)"
started="$(date +%s.%N)"
BENCHES=()
for ((i = 0; i < NODES; i++)); do
    share="$TMP/tokens.$(printf %02d "$i")"
    taskset -c 1 "$AMBOS" bench enroll --target "127.0.0.1:${PORTS[$i]}" --ca "$TMP/ca/root.crt" \
        --tokens "$share" --concurrency "$((CONCURRENCY / NODES))" --count "$(wc -l <"$share")" --json >"$TMP/result$i.json" &
    BENCHES+=($!)
done
for b in "${BENCHES[@]}"; do wait "$b"; done
elapsed="$(python3 -c 'import sys,time; print(time.time() - float(sys.argv[1]))' "$started")"
after="$(serve_ticks)"; db_after="$(db_ticks)"
TCK="$(getconf CLK_TCK)"
OPS="$(python3 -c 'import json,sys; print(sum(json.load(open(f))["ops"] for f in sys.argv[1:]))' "$TMP"/result*.json)"
ERRS="$(python3 -c 'import json,sys; print(sum(json.load(open(f))["errors"] for f in sys.argv[1:]))' "$TMP"/result*.json)"
P99="$(python3 -c 'import json,sys; print(max(json.load(open(f))["p99_us"] for f in sys.argv[1:]))' "$TMP"/result*.json)"
RATE="$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.0f}")' "$OPS" "$elapsed")"
CPU_US="$(python3 -c 'import sys; t,h,n=map(float,sys.argv[1:]); print(f"{t/h*1e6/n:.1f}")' "$((after - before))" "$TCK" "$OPS")"
DB_US="$(python3 -c 'import sys; t,h,n=map(float,sys.argv[1:]); print(f"{t/h*1e6/n:.1f}")' "$((db_after - db_before))" "$TCK" "$OPS")"
STORED="$("$AMBOS" --dir "$TMP/ca" list --json | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c["name"]=="dev"))')"
echo "enrollments ($STORE, $NODES node(s)): $OPS ok, $ERRS failed, $RATE/s (p99 $P99 µs at the client), ambos serve CPU $CPU_US µs and database server CPU $DB_US µs per certificate, $STORED stored"
if [[ "$ERRS" != 0 || "$STORED" != "$OPS" ]]; then
    echo "FAILED: every enrollment must succeed and be stored exactly once" >&2
    exit 1
fi
echo "| $(date +%Y-%m-%d) | $PROFILE | $STORE, $NODES node(s) | $CONCURRENCY | $OPS | $RATE | $CPU_US µs (+ $DB_US µs database) | $P99 µs |"
