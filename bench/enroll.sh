#!/usr/bin/env bash
# Enrollment throughput through the CA API with durable storage:
# `ambos serve` alone on core 0, the load generator (`ambos bench enroll`,
# which makes a P-256 key and CSR per enrollment) on core 1.
#   bench/enroll.sh                    # release, 20,000 enrollments
#   COUNT=5000 CONCURRENCY=16 bench/enroll.sh
#   SMOKE=1 bench/enroll.sh            # debug build, 200 enrollments
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

"$AMBOS" --dir "$TMP/ca" init --no-passphrase >/dev/null 2>&1
"$AMBOS" --dir "$TMP/ca" token create dev --count "$COUNT" --ttl 1h >"$TMP/tokens.txt"
taskset -c 0 "$AMBOS" --dir "$TMP/ca" serve --listen "127.0.0.1:0" >"$TMP/serve.log" 2>&1 &
PID=$!
PIDS+=("$PID")
PORT="$(listen_port serve "$PID")"
wait_port "$PORT" serve "$PID"
before="$(cpu_ticks "$PID")"
RESULT="$(taskset -c 1 "$AMBOS" bench enroll --target "127.0.0.1:$PORT" --ca "$TMP/ca/root.crt" \
    --tokens "$TMP/tokens.txt" --concurrency "$CONCURRENCY" --count "$COUNT" --json)"
after="$(cpu_ticks "$PID")"
TCK="$(getconf CLK_TCK)"
OPS="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops"])' "$RESULT")"
ERRS="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$RESULT")"
RATE="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops_per_sec"])' "$RESULT")"
P99="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["p99_us"])' "$RESULT")"
CPU_US="$(python3 -c 'import sys; t,h,n=map(float,sys.argv[1:]); print(f"{t/h*1e6/n:.1f}")' "$((after - before))" "$TCK" "$OPS")"
STORED="$("$AMBOS" --dir "$TMP/ca" list --json | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c["name"]=="dev"))')"
echo "enrollments: $OPS ok, $ERRS failed, $RATE/s (p99 $P99 µs at the client), server CPU $CPU_US µs per certificate, $STORED stored"
if [[ "$ERRS" != 0 || "$STORED" != "$OPS" ]]; then
    echo "FAILED: every enrollment must succeed and be stored exactly once" >&2
    exit 1
fi
echo "| $(date +%Y-%m-%d) | $PROFILE | $CONCURRENCY | $OPS | $RATE | $CPU_US µs | $P99 µs |"
