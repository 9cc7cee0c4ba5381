#!/usr/bin/env bash
# Proxy CPU benchmark: what the ambos mTLS proxy costs in CPU time per full
# mTLS handshake and per keep-alive HTTP/1.1 request.
#
#   bench/proxy.sh                      # release build, 20,000 handshakes, 200,000 requests
#   SMOKE=1 bench/proxy.sh              # debug build, 200 / 2,000: proves the setup works
#   HANDSHAKES=5000 REQUESTS=50000 CONCURRENCY=16 bench/proxy.sh
#
# Layout on the 2-core machine: the proxy alone on core 0 (taskset -c 0),
# the load generator (`ambos bench`) and the upstream (nginx answering
# `200 ok` with keep-alive) on core 1. The proxy's CPU time (utime + stime
# from /proc/PID/stat) is read before and after a fixed number of
# operations, so the figures do not depend on how fast the load generator is.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    HANDSHAKES="${HANDSHAKES:-200}"
    REQUESTS="${REQUESTS:-2000}"
    PROFILE=debug
else
    HANDSHAKES="${HANDSHAKES:-20000}"
    REQUESTS="${REQUESTS:-200000}"
    PROFILE=release
fi
CONCURRENCY="${CONCURRENCY:-8}"
PROXY_CORE="${PROXY_CORE:-0}"
LOAD_CORE="${LOAD_CORE:-1}"

for tool in taskset python3 nginx getconf; do
    command -v "$tool" >/dev/null || { echo "bench/proxy.sh: $tool is required" >&2; exit 2; }
done

BENCH=proxy
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# CPU time (user + system, all threads) of a process, in clock ticks.
cpu_ticks() {
    # Fields 14 and 15 of /proc/PID/stat; cut after the ")" that ends the
    # command name, after which they are fields 12 and 13.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
CLK_TCK="$(getconf CLK_TCK)"

echo "== CA and certificates in $TMP" >&2
bench_pki
CERTS="$C"

echo "== upstream: nginx" >&2
start_ok_upstream taskset -c "$LOAD_CORE"

echo "== proxy on core $PROXY_CORE" >&2
taskset -c "$PROXY_CORE" "$AMBOS" proxy --listen "127.0.0.1:0" --upstream "http://127.0.0.1:$UPORT" \
    --cert "$CERTS/localhost.crt" --key "$CERTS/localhost.key" --client-ca "$CERTS/ca.crt" \
    >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
PPORT="$(listen_port proxy "$PROXY_PID")"
wait_port "$PPORT" proxy "$PROXY_PID"

# Runs `ambos bench MODE --count N` on the load core; prints its JSON line.
bench() {
    local mode="$1" count="$2"
    taskset -c "$LOAD_CORE" "$AMBOS" bench "$mode" --target "127.0.0.1:$PPORT" --server-name localhost \
        --cert "$CERTS/bench-client.crt" --key "$CERTS/bench-client.key" --ca "$CERTS/ca.crt" \
        --concurrency "$CONCURRENCY" --count "$count" --json
}

# Measures proxy CPU over one run; sets RESULT (bench JSON) and CPU_US (proxy µs per op).
measure() {
    local mode="$1" count="$2" before after errors
    before="$(cpu_ticks "$PROXY_PID")"
    RESULT="$(bench "$mode" "$count")"
    after="$(cpu_ticks "$PROXY_PID")"
    errors="$(json "$RESULT" errors)"
    if [[ "$errors" != 0 ]]; then
        echo "bench/proxy.sh: $errors $mode operations failed" >&2
        exit 1
    fi
    CPU_US="$(python3 -c 'import sys; t, hz, n = map(float, sys.argv[1:]); print(f"{t * 1e6 / hz / n:.1f}")' \
        "$((after - before))" "$CLK_TCK" "$(json "$RESULT" ops)")"
}

echo "== warm-up" >&2
bench handshake 100 >/dev/null
bench http 1000 >/dev/null

echo "== $HANDSHAKES handshakes, concurrency $CONCURRENCY" >&2
measure handshake "$HANDSHAKES"
HS_JSON="$RESULT" HS_CPU="$CPU_US"
echo "== $REQUESTS keep-alive requests, concurrency $CONCURRENCY" >&2
measure http "$REQUESTS"
RQ_JSON="$RESULT" RQ_CPU="$CPU_US"

HS_OPS="$(json "$HS_JSON" ops)" HS_RATE="$(json "$HS_JSON" ops_per_sec)" HS_P99="$(json "$HS_JSON" p99_us)"
RQ_OPS="$(json "$RQ_JSON" ops)" RQ_RATE="$(json "$RQ_JSON" ops_per_sec)" RQ_P99="$(json "$RQ_JSON" p99_us)"
printf -v HS_RATE '%.0f' "$HS_RATE"
printf -v RQ_RATE '%.0f' "$RQ_RATE"

cat <<EOF

handshakes: $HS_OPS, proxy CPU $HS_CPU µs per handshake ($HS_RATE handshakes/s, p99 $HS_P99 µs at the client)
requests:   $RQ_OPS, proxy CPU $RQ_CPU µs per request ($RQ_RATE requests/s, p99 $RQ_P99 µs at the client)

| date | build | concurrency | proxy CPU per full mTLS handshake | handshakes/s (p99) | proxy CPU per keep-alive request | requests/s (p99) |
|---|---|---|---|---|---|---|
| $(date +%Y-%m-%d) | $PROFILE | $CONCURRENCY | $HS_CPU µs ($HS_OPS handshakes) | $HS_RATE ($HS_P99 µs) | $RQ_CPU µs ($RQ_OPS requests) | $RQ_RATE ($RQ_P99 µs) |
EOF
