#!/usr/bin/env bash
# Certificate-bound access tokens, both ends:
# 1. tokens issued per second by `ambos serve` alone on core 0 (client
#    credentials over keep-alive mTLS, `ambos bench token` on core 1), and its
#    CPU per token;
# 2. `ambos proxy` alone on core 0: CPU per keep-alive request on a route
#    that needs a bound token (the same token each time: cached) against a
#    route that needs none, best of ROUNDS alternating rounds (nginx upstream,
#    ambos serve for the JWKS and the load generator on core 1).
#   bench/token.sh                      # release
#   SMOKE=1 bench/token.sh              # debug build, tiny counts
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    TOKENS="${TOKENS:-200}"; REQUESTS="${REQUESTS:-300}"; ROUNDS="${ROUNDS:-1}"; PROFILE=debug
else
    TOKENS="${TOKENS:-50000}"; REQUESTS="${REQUESTS:-100000}"; ROUNDS="${ROUNDS:-3}"; PROFILE=release
fi
CONCURRENCY="${CONCURRENCY:-8}"
BENCH=token
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
TCK="$(getconf CLK_TCK)"
per_op() { python3 -c 'import sys; t,h,n=map(float,sys.argv[1:]); print(f"{t/h*1e6/n:.1f}")' "$1" "$TCK" "$2"; }

A=("$AMBOS" --dir "$TMP/ca")
C="$TMP/c"
"${A[@]}" init --no-passphrase >/dev/null 2>&1
"${A[@]}" issue server localhost --san ip:127.0.0.1 --out "$C" >/dev/null
"${A[@]}" issue client alice --spiffe spiffe://acme.test/alice --ttl 24h --out "$C" >/dev/null
"${A[@]}" oauth allow spiffe://acme.test/alice --audience payments --scope pay:write >/dev/null

taskset -c 0 "${A[@]}" serve --listen "127.0.0.1:0" >"$TMP/serve.log" 2>&1 &
SERVE=$!
PIDS+=("$SERVE")
SPORT="$(listen_port serve "$SERVE")"
wait_port "$SPORT" serve "$SERVE"
before="$(cpu_ticks "$SERVE")"
RESULT="$(taskset -c 1 "$AMBOS" bench token --target "127.0.0.1:$SPORT" --server-name localhost --cert "$C/alice.crt" \
    --key "$C/alice.key" --ca "$C/ca.crt" --concurrency "$CONCURRENCY" --count "$TOKENS" --json)"
after="$(cpu_ticks "$SERVE")"
T_OPS="$(json "$RESULT" ops)"; T_RATE="$(json "$RESULT" ops_per_sec)"; T_P99="$(json "$RESULT" p99_us)"
T_CPU="$(per_op "$((after - before))" "$T_OPS")"
[[ "$(json "$RESULT" errors)" == 0 ]] || { echo "FAILED: token requests failed: $RESULT" >&2; exit 1; }
echo "tokens: $T_OPS issued, $T_RATE/s (p99 $T_P99 µs at the client), ambos serve CPU $T_CPU µs per token"
# The serve process moves to core 1 for the proxy part: the proxy has core 0 alone.
taskset -cp 1 "$SERVE" >/dev/null
TOKEN="$("$AMBOS" oauth token --ca-url "https://localhost:$SPORT" --root "$C/ca.crt" --cert "$C/alice.crt" --key "$C/alice.key")"

UPORT="$(free_port)"
mkdir -p "$TMP/ng"
cat >"$TMP/ng/nginx.conf" <<NG
worker_processes 1; daemon off; error_log stderr; pid $TMP/ng/nginx.pid;
events {}
http { access_log off; client_body_temp_path $TMP/ng; proxy_temp_path $TMP/ng; fastcgi_temp_path $TMP/ng; uwsgi_temp_path $TMP/ng; scgi_temp_path $TMP/ng;
  server { listen 127.0.0.1:$UPORT; keepalive_requests 100000000; location / { return 200 "ok"; } } }
NG
taskset -c 1 nginx -p "$TMP/ng" -e "$TMP/ng/startup.log" -c "$TMP/ng/nginx.conf" >"$TMP/nginx.log" 2>&1 &
PIDS+=($!)
wait_port "$UPORT" nginx "$!"
cat >"$TMP/proxy.toml" <<T
[listen]
address = "127.0.0.1:0"
[tls]
cert = "$C/localhost.crt"
key = "$C/localhost.key"
client_ca = "$C/ca.crt"
session_resumption = false
[upstream]
url = "http://127.0.0.1:$UPORT"
[[route]]
path = "/pay/**"
allow = ["any"]
token = { issuer = "https://localhost:$SPORT", jwks = "https://localhost:$SPORT/v1/oauth/jwks", audience = "payments", scopes = ["pay:write"] }
[[route]]
path = "/open/**"
allow = ["any"]
T
taskset -c 0 "$AMBOS" proxy --config "$TMP/proxy.toml" >"$TMP/proxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
PPORT="$(listen_port proxy "$PROXY")"
wait_port "$PPORT" proxy "$PROXY"
bench_http() {
    taskset -c 1 "$AMBOS" bench http --target "127.0.0.1:$PPORT" --server-name localhost --cert "$C/alice.crt" \
        --key "$C/alice.key" --ca "$C/ca.crt" --concurrency 4 --count "$1" --path "$2" "${@:3}" --json
}
bench_http 200 /pay/warm --token "$TOKEN" >/dev/null
best_open=""; best_token=""
for ((r = 0; r < ROUNDS; r++)); do
    for route in open pay; do
        args=(); [[ "$route" == pay ]] && args=(--token "$TOKEN")
        before="$(cpu_ticks "$PROXY")"
        R="$(bench_http "$REQUESTS" "/$route/x" "${args[@]}")"
        after="$(cpu_ticks "$PROXY")"
        [[ "$(json "$R" errors)" == 0 ]] || { echo "FAILED: /$route requests failed: $R" >&2; exit 1; }
        us="$(per_op "$((after - before))" "$(json "$R" ops)")"
        if [[ "$route" == open ]]; then
            [[ -z "$best_open" ]] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$us" "$best_open" && best_open="$us"
        else
            [[ -z "$best_token" ]] || python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$us" "$best_token" && best_token="$us"
        fi
    done
done
DELTA="$(python3 -c 'import sys; a,b=map(float,sys.argv[1:]); print(f"{b-a:+.1f}")' "$best_open" "$best_token")"
echo "proxy CPU per request: $best_open µs without a token, $best_token µs with a cached bound token ($DELTA µs)"
echo "| $(date -u +%Y-%m-%dT%H:%MZ) | $PROFILE | $T_RATE tokens/s, $T_CPU µs CPU each, p99 $T_P99 µs | $best_open µs | $best_token µs | $DELTA µs |"
