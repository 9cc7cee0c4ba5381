#!/usr/bin/env bash
# Side-by-side benchmark of mTLS-terminating proxies with one set of
# ambos-issued P-256 certificates (client chain: leaf + intermediate):
# nginx (ssl_verify_client on), HAProxy (verify required) and ambos proxy.
# Each proxy runs alone on CPU 0 with one worker; the load generator
# (`ambos bench`) and the upstream (a separate nginx answering 200) run on
# CPU 1. Measured per proxy: full handshakes/s and proxy CPU per handshake
# (no resumption: session cache and tickets off), keep-alive requests/s and
# proxy CPU per request over HTTP/1.1 and over HTTP/2, client p99, and
# resident memory per idle mTLS connection with HOLD connections open. CPU
# figures: best of ROUNDS rounds that alternate between the proxies (this
# VM's speed drifts). For nginx, HAProxy and ambos also: proxy CPU per unary
# gRPC call (HTTP/2 to an h2c upstream: nginx itself answering a gRPC OK;
# nginx with grpc_pass, HAProxy with an h2 server), resident memory per idle
# HTTP/2 connection (all kinds) and per open WebSocket (to a Python
# `websockets` server on CPU 1), each with HOLD connections, in a fresh
# proxy process.
#   bench/compare.sh                 # release; writes the table into docs/benchmarks.md
#   SMOKE=1 bench/compare.sh         # debug build, tiny counts, docs untouched
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    HANDSHAKES="${HANDSHAKES:-100}"; REQUESTS="${REQUESTS:-1000}"; HOLD="${HOLD:-200}"; HOLD_FOR="${HOLD_FOR:-2}"; WARM="${WARM:-10}"; ROUNDS="${ROUNDS:-1}"; CRL_ENTRIES="${CRL_ENTRIES:-1000}"; PROFILE=debug
else
    HANDSHAKES="${HANDSHAKES:-4000}"; REQUESTS="${REQUESTS:-100000}"; HOLD="${HOLD:-10000}"; HOLD_FOR="${HOLD_FOR:-6}"; WARM="${WARM:-50}"; ROUNDS="${ROUNDS:-3}"; CRL_ENTRIES="${CRL_ENTRIES:-1000000}"; PROFILE=release
fi
CONCURRENCY="${CONCURRENCY:-8}"
GRPC_CALLS="${GRPC_CALLS:-$REQUESTS}"
# The load generator skips verifying the proxy's chain (it still checks the
# handshake signature), so it costs less than the proxy; CHEAP_CLIENT=0 verifies.
CHEAP_CLIENT="${CHEAP_CLIENT:-1}"
CLIENT_FLAGS=(); [[ "$CHEAP_CLIENT" == 1 ]] && CLIENT_FLAGS=(--cheap-client)
kx_flags() { [[ "$1" == ambos-pq ]] && echo "--kx-group x25519mlkem768 --kx-group x25519" || echo "--kx-group x25519"; }
PROXIES="${PROXIES:-nginx haproxy ambos ambos-crl ambos-pq}"
# AMBOS_BASELINE=/path/to/ambos (another build, e.g. an earlier commit):
# adds the kind ambos-base, the same proxy config run by that binary.
AMBOS_BASELINE="${AMBOS_BASELINE:-}"
[[ -n "$AMBOS_BASELINE" && " $PROXIES " != *" ambos-base "* ]] && PROXIES="$PROXIES ambos-base"
# ambos-crl: ambos proxy with a CRL of CRL_ENTRIES revoked serials loaded.
# ambos-pq: ambos proxy with clients that offer X25519MLKEM768 first (as
# ambos clients and current browsers do); every other kind is measured with
# a client that offers X25519 only, the one group nginx 1.22 and HAProxy 2.6
# on OpenSSL 3.0 would pick anyway, so all do the same public-key work.
for tool in taskset python3 nginx haproxy getconf; do
    command -v "$tool" >/dev/null || { echo "bench/compare.sh: $tool is required (scripts/install-deps.sh)" >&2; exit 2; }
done
python3 -c 'import websockets.asyncio.server' 2>/dev/null \
    || { echo "bench/compare.sh: the Python package websockets (13 or later) is required (scripts/install-deps.sh)" >&2; exit 2; }
# The kinds measured for gRPC and WebSocket too (ambos-crl and ambos-pq
# differ from ambos in the handshake only; ambos-base may predate h2c://).
STREAM_KINDS=""
for kind in nginx haproxy ambos; do [[ " $PROXIES " == *" $kind "* ]] && STREAM_KINDS="$STREAM_KINDS $kind"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
BENCH=compare
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
CLK_TCK="$(getconf CLK_TCK)"

"$AMBOS" --dir "$TMP/ca" init --name bench --no-passphrase >/dev/null 2>&1
"$AMBOS" --dir "$TMP/ca" issue server localhost --san ip:127.0.0.1 --out "$TMP/certs" >/dev/null
"$AMBOS" --dir "$TMP/ca" issue client bench-client --out "$TMP/certs" >/dev/null
C="$TMP/certs"
if [[ " $PROXIES " == *" ambos-crl "* ]]; then
    "$AMBOS" --dir "$TMP/ca" crl --all --synthetic-entries "$CRL_ENTRIES" --out "$C/big-crl.pem" 2>/dev/null
fi
cat "$C/localhost.crt" "$C/localhost.key" >"$C/haproxy.pem"

NOFILE_NGX="$NOFILE"
# HAProxy reserves two descriptors per connection (client and server side):
# under this machine's descriptor limit it can hold fewer idle connections.
HOLD_HAPROXY=$(( (NOFILE - 400) / 2 - 100 ))
(( HOLD_HAPROXY > HOLD )) && HOLD_HAPROXY="$HOLD"
# Every proxy holds two descriptors per WebSocket (client and upstream).
HOLD_WS="$HOLD_HAPROXY"
ngx_common() {
    cat <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $NOFILE_NGX;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 30000; }
EOF
}
ngx_temp() { echo "client_body_temp_path $1/body; proxy_temp_path $1/proxy; fastcgi_temp_path $1/fcgi; uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;"; }

# The upstreams, on the load core: nginx answering 200 over HTTP/1.1 on
# UPORT and, on GPORT, a gRPC OK over h2c (prior knowledge) to any call: an
# empty message (5 NUL bytes, written by printf: the shell cannot hold them)
# and grpc-status 0 in the trailers; a Python websockets echo server on WSPORT.
UPORT="$(free_port)"; GPORT="$(free_port)"; WSPORT="$(free_port)"; mkdir -p "$TMP/up"
{ ngx_common "$TMP/up"; echo "http { access_log off; $(ngx_temp "$TMP/up") keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$UPORT; location / { default_type text/plain; return 200 \"ok\"; } }"
  printf '  server { listen 127.0.0.1:%s http2; location / { default_type application/grpc; add_trailer grpc-status 0 always; return 200 "\000\000\000\000\000"; } } }\n' "$GPORT"; } >"$TMP/up/nginx.conf"
taskset -c 1 nginx -p "$TMP/up" -e "$TMP/up/startup.log" -c "$TMP/up/nginx.conf" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!); wait_port "$UPORT" upstream "$!"
# Pings off: the load generator holds its WebSockets without reading them.
taskset -c 1 python3 - "$WSPORT" >"$TMP/ws-upstream.log" 2>&1 <<'PY' &
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), ping_interval=None, compression=None):
        await asyncio.get_running_loop().create_future()
asyncio.run(main())
PY
PIDS+=($!); wait_port "$WSPORT" ws-upstream "$!"

# start_proxy KIND [FLAVOR]: starts it on CPU 0; sets PROXY_PID and
# PROXY_PORT (nginx and HAProxy on a port picked here, ambos on port 0 and
# the port it reports). FLAVOR: http (default; to the HTTP/1.1 upstream),
# h2 (the same, another process to hold idle HTTP/2 connections), grpc (to
# the h2c upstream) or ws (WebSocket upgrades to the echo server).
start_proxy() {
    local kind="$1" flavor="${2:-http}" name="$1" port=0 up location server url websocket=false
    [[ "$flavor" != http ]] && name="$kind-$flavor"
    local d="$TMP/$name"
    mkdir -p "$d"
    case "$flavor" in
    http | h2) up="server 127.0.0.1:$UPORT; keepalive 64; keepalive_requests 100000000; keepalive_timeout 300s;" url="http://127.0.0.1:$UPORT" server="server up 127.0.0.1:$UPORT"
        location="proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";" ;;
    grpc) up="server 127.0.0.1:$GPORT; keepalive 64; keepalive_requests 100000000; keepalive_timeout 300s;" url="h2c://127.0.0.1:$GPORT" server="server up 127.0.0.1:$GPORT proto h2"
        location="grpc_pass grpc://up;" ;;
    ws) up="server 127.0.0.1:$WSPORT;" url="http://127.0.0.1:$WSPORT" server="server up 127.0.0.1:$WSPORT" websocket=true
        location="proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \"upgrade\"; proxy_read_timeout 300s;" ;;
    esac
    [[ "$kind" == nginx || "$kind" == haproxy ]] && port="$(free_port)"
    case "$kind" in
    nginx)
        { ngx_common "$d"; echo "http { access_log off; $(ngx_temp "$d")
  upstream up { $up }
  server { listen 127.0.0.1:$port ssl http2; ssl_certificate $C/localhost.crt; ssl_certificate_key $C/localhost.key;
    ssl_client_certificate $C/ca.crt; ssl_verify_client on; ssl_verify_depth 2;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    keepalive_requests 100000000; keepalive_timeout 300s;
    location / { $location } } }"; } >"$d/nginx.conf"
        taskset -c 0 nginx -p "$d" -e "$d/startup.log" -c "$d/nginx.conf" >"$TMP/$name.log" 2>&1 & ;;
    haproxy)
        cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    ulimit-n $NOFILE
    maxconn $((HOLD_HAPROXY + 100))
    tune.ssl.cachesize 0
    ssl-default-bind-options no-tls-tickets
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout tunnel 300s
frontend fe
    bind 127.0.0.1:$port ssl crt $C/haproxy.pem ca-file $C/ca.crt verify required alpn h2,http/1.1
    default_backend be
backend be
    http-reuse always
    $server
EOF
        taskset -c 0 haproxy -db -f "$d/haproxy.cfg" >"$TMP/$name.log" 2>&1 & ;;
    ambos | ambos-crl | ambos-pq | ambos-base)
        cat >"$d/proxy.toml" <<EOF
[listen]
address = "127.0.0.1:$port"
[tls]
cert = "$C/localhost.crt"
key = "$C/localhost.key"
client_ca = "$C/ca.crt"
session_resumption = false
$([[ "$kind" == ambos-crl ]] && echo "crl = [\"$C/big-crl.pem\"]")
[upstream]
url = "$url"
[[route]]
path = "/**"
allow = ["any"]
websocket = $websocket
[limits]
max_connections = 30000
# All HOLD connections come from 127.0.0.1.
max_connections_per_source = 30000
idle_timeout = "300s"
EOF
        bin="$AMBOS"; [[ "$kind" == ambos-base ]] && bin="$AMBOS_BASELINE"
        taskset -c 0 "$bin" proxy --config "$d/proxy.toml" >"$TMP/$name.log" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    if [[ "$port" == 0 ]]; then port="$(listen_port "$name" "$PROXY_PID")"; fi
    wait_port "$port" "$name" "$PROXY_PID"
    PROXY_PORT="$port"
}

bench() {
    local port="$1" mode="$2" count="$3"; shift 3
    taskset -c 1 "$AMBOS" bench "$mode" --target "127.0.0.1:$port" --server-name localhost \
        --cert "$C/bench-client.crt" --key "$C/bench-client.key" --ca "$C/ca.crt" --count "$count" --json $(kx_flags "$KIND") "$@"
}

measure() {
    local port="$1" mode="$2" count="$3" before after
    shift 3
    before="$(cpu_ticks "$PROXY_PID")"
    RESULT="$(bench "$port" "$mode" "$count" --concurrency "$CONCURRENCY" "${CLIENT_FLAGS[@]}" "$@")"
    after="$(cpu_ticks "$PROXY_PID")"
    # ALLOW_ERRORS_PERMILLE: failed operations tolerated (and reported) per 1000.
    local errors ops; errors="$(json "$RESULT" errors)"; ops="$(json "$RESULT" ops)"
    (( errors * 1000 <= ${ALLOW_ERRORS_PERMILLE:-0} * (ops + errors) )) || { echo "bench/compare.sh: $mode errors: $RESULT" >&2; exit 1; }
    CPU_US="$(python3 -c 'import sys; t, hz, n = map(float, sys.argv[1:]); print(f"{t * 1e6 / hz / n:.1f}")' "$((after - before))" "$CLK_TCK" "$(json "$RESULT" ops)")"
}

# hold_mem PORT HELD MODE [FLAGS...]: opens HELD connections to the proxy
# PROXY_PID with `ambos bench MODE` and holds them HOLD_FOR; sets MEM_KIB,
# the proxy's peak RSS while it does minus its RSS before, per connection.
hold_mem() {
    local port="$1" held="$2" mode="$3" rss0 peak r holder
    shift 3
    rss0="$(rss_kib "$PROXY_PID")"
    bench "$port" "$mode" "$held" --concurrency 64 --duration "${HOLD_FOR}s" "$@" >"$TMP/hold.json" &
    holder=$!
    sleep 1
    peak="$rss0"
    while kill -0 "$holder" 2>/dev/null; do
        r="$(rss_kib "$PROXY_PID")"; (( r > peak )) && peak="$r"
        sleep 0.5
    done
    wait "$holder" || { echo "bench/compare.sh: $mode hold failed: $(cat "$TMP/hold.json")" >&2; exit 1; }
    [[ "$(json "$(cat "$TMP/hold.json")" errors)" == 0 ]] || { echo "bench/compare.sh: $mode hold errors: $(cat "$TMP/hold.json")" >&2; exit 1; }
    MEM_KIB="$(python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); print(f"{(b - a) / n:.1f}")' "$rss0" "$peak" "$held")"
}
stop_proxy() { kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true; }

GRPC_PATH=/bench.Echo/Call
declare -A HS_CPU HS_RATE HS_P99 RQ_CPU RQ_RATE RQ_P99 H2_CPU H2_RATE H2_P99 MEM HELD PORT PID_OF
declare -A G_CPU G_RATE G_P99 G_ERR G_PORT G_PID MEM_H2 MEM_WS
# This VM's speed drifts by up to 30% within minutes, so the CPU figures are
# taken in ROUNDS rounds that alternate between the proxies, and each
# proxy's best round counts: drift then hits all of them alike.
for kind in $PROXIES; do
    echo "== starting $kind on CPU 0" >&2
    KIND="$kind"
    start_proxy "$kind"
    PORT[$kind]="$PROXY_PORT"
    PID_OF[$kind]="$PROXY_PID"
    bench "${PORT[$kind]}" handshake "$WARM" --concurrency 4 >/dev/null
    bench "${PORT[$kind]}" http "$((WARM * 10))" --concurrency 4 >/dev/null
    bench "${PORT[$kind]}" http "$((WARM * 10))" --concurrency 4 --http2 >/dev/null
    if [[ " $STREAM_KINDS " == *" $kind "* ]]; then
        start_proxy "$kind" grpc
        G_PORT[$kind]="$PROXY_PORT"; G_PID[$kind]="$PROXY_PID"
        bench "$PROXY_PORT" grpc "$((WARM * 10))" --concurrency 4 --path "$GRPC_PATH" >/dev/null
    fi
done
better() { python3 -c 'import sys; print(1 if sys.argv[2] == "" or float(sys.argv[1]) < float(sys.argv[2]) else 0)' "$1" "$2"; }
for ((round = 1; round <= ROUNDS; round++)); do
    for kind in $PROXIES; do
        echo "== round $round/$ROUNDS: $kind" >&2
        PROXY_PID="${PID_OF[$kind]}"; KIND="$kind"
        measure "${PORT[$kind]}" handshake "$HANDSHAKES"
        if [[ "$(better "$CPU_US" "${HS_CPU[$kind]:-}")" == 1 ]]; then
            HS_CPU[$kind]="$CPU_US"; HS_RATE[$kind]="$(json "$RESULT" ops_per_sec)"; HS_P99[$kind]="$(json "$RESULT" p99_us)"
        fi
        measure "${PORT[$kind]}" http "$REQUESTS"
        if [[ "$(better "$CPU_US" "${RQ_CPU[$kind]:-}")" == 1 ]]; then
            RQ_CPU[$kind]="$CPU_US"; RQ_RATE[$kind]="$(json "$RESULT" ops_per_sec)"; RQ_P99[$kind]="$(json "$RESULT" p99_us)"
        fi
        measure "${PORT[$kind]}" http "$REQUESTS" --http2
        if [[ "$(better "$CPU_US" "${H2_CPU[$kind]:-}")" == 1 ]]; then
            H2_CPU[$kind]="$CPU_US"; H2_RATE[$kind]="$(json "$RESULT" ops_per_sec)"; H2_P99[$kind]="$(json "$RESULT" p99_us)"
        fi
        [[ " $STREAM_KINDS " == *" $kind "* ]] || continue
        PROXY_PID="${G_PID[$kind]}"
        # nginx's grpc_pass fails a few calls against an upstream that answers
        # before reading the request ("upstream sent frame for unknown
        # stream"): up to 1% is reported, not fatal.
        ALLOW_ERRORS_PERMILLE=10 measure "${G_PORT[$kind]}" grpc "$GRPC_CALLS" --path "$GRPC_PATH"
        if [[ "$(better "$CPU_US" "${G_CPU[$kind]:-}")" == 1 ]]; then
            G_CPU[$kind]="$CPU_US"; G_RATE[$kind]="$(json "$RESULT" ops_per_sec)"; G_P99[$kind]="$(json "$RESULT" p99_us)"
            G_ERR[$kind]="$(json "$RESULT" errors)"
        fi
    done
done
for kind in $PROXIES; do
    PROXY_PID="${PID_OF[$kind]}"; port="${PORT[$kind]}"; KIND="$kind"
    echo "== $kind: $HOLD idle connections" >&2
    # Idle connections: RSS before, and while HOLD connections are open.
    held="$HOLD"; [[ "$kind" == haproxy ]] && held="$HOLD_HAPROXY"
    HELD[$kind]="$held"
    hold_mem "$port" "$held" hold
    MEM[$kind]="$MEM_KIB"
    stop_proxy
    if [[ " $STREAM_KINDS " == *" $kind "* ]]; then PROXY_PID="${G_PID[$kind]}"; stop_proxy; fi
    # Idle HTTP/2 connections, in a fresh process warmed up like the first
    # (memory the allocator kept from the HTTP/1.1 ones would hide theirs).
    echo "== $kind: $held idle HTTP/2 connections" >&2
    start_proxy "$kind" h2
    bench "$PROXY_PORT" http "$((WARM * 10))" --concurrency 4 --http2 >/dev/null
    hold_mem "$PROXY_PORT" "$held" hold --http2
    MEM_H2[$kind]="$MEM_KIB"
    stop_proxy
    [[ " $STREAM_KINDS " == *" $kind "* ]] || continue
    echo "== $kind: $HOLD_WS open WebSockets" >&2
    start_proxy "$kind" ws
    bench "$PROXY_PORT" websocket "$WARM" --concurrency 4 --duration 1ms >/dev/null
    hold_mem "$PROXY_PORT" "$HOLD_WS" websocket
    MEM_WS[$kind]="$MEM_KIB"
    stop_proxy
done

ratio() { python3 -c 'import sys; a, b = sys.argv[1:]; print(f"{float(a) / float(b):.2f}x" if a and b and float(b) else "-")' "$1" "$2"; }
NGINX_V="$(nginx -v 2>&1 | sed 's/.*nginx\///')"
HAPROXY_V="$(haproxy -v 2>/dev/null | awk 'NR == 1 {print $3}')"  # awk reads to the end: no SIGPIPE under pipefail
OPENSSL_V="$(openssl version | awk '{print $2}')"
AMBOS_V="$("$AMBOS" --version | awk '{print $2}') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
TABLE="$(
    echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $PROFILE build; nginx $NGINX_V, HAProxy $HAPROXY_V (OpenSSL $OPENSSL_V), ambos $AMBOS_V. Clients offer X25519 only, except for ambos-pq (X25519MLKEM768 first, ambos's default); ambos-crl: ambos with a $CRL_ENTRIES-entry CRL loaded; no session resumption anywhere. Best of $ROUNDS alternating rounds of $HANDSHAKES handshakes and $REQUESTS requests each over HTTP/1.1 and HTTP/2, concurrency $CONCURRENCY$([[ "$CHEAP_CLIENT" == 1 ]] && echo ", load generator with --cheap-client (it does not verify the proxy's chain)"); $HOLD idle connections (peak RSS while opening and holding them)."
    echo
    echo "| proxy | CPU/handshake | handshakes/s | p99 (handshake) | CPU/request | requests/s | p99 (request) | KiB per idle connection (connections held) |"
    echo "|---|---|---|---|---|---|---|---|"
    for kind in $PROXIES; do
        printf '| %s | %s µs | %.0f | %s µs | %s µs | %.0f | %s µs | %s (%s) |\n' "$kind" "${HS_CPU[$kind]}" "${HS_RATE[$kind]}" "${HS_P99[$kind]}" \
            "${RQ_CPU[$kind]}" "${RQ_RATE[$kind]}" "${RQ_P99[$kind]}" "${MEM[$kind]}" "${HELD[$kind]}"
    done
    echo
    echo "HTTP/2 (ALPN h2; one connection per worker, one request at a time on it):"
    echo
    echo "| proxy | CPU/request | requests/s | p99 (request) |"
    echo "|---|---|---|---|"
    for kind in $PROXIES; do
        printf '| %s | %s µs | %.0f | %s µs |\n' "$kind" "${H2_CPU[$kind]}" "${H2_RATE[$kind]}" "${H2_P99[$kind]}"
    done
    if [[ -n "$STREAM_KINDS" ]]; then
        echo
        echo "Unary gRPC calls (ALPN h2 from the client; HTTP/2 to an h2c upstream: nginx answering an empty message and grpc-status 0; nginx with grpc_pass, HAProxy with proto h2, ambos with h2c://), best of $ROUNDS rounds of $GRPC_CALLS calls, one connection per worker, one call at a time on it:"
        echo
        echo "| proxy | CPU/call | calls/s | p99 (call) | failed calls |"
        echo "|---|---|---|---|---|"
        for kind in $STREAM_KINDS; do
            printf '| %s | %s µs | %.0f | %s µs | %s |\n' "$kind" "${G_CPU[$kind]}" "${G_RATE[$kind]}" "${G_P99[$kind]}" "${G_ERR[$kind]}"
        done
    fi
    echo
    echo "Memory, each in a fresh proxy process after a warm-up (peak RSS while opening and holding the connections, minus RSS before); WebSockets upgraded through the proxy to a Python websockets echo server, $HOLD_WS of them (every proxy holds two descriptors per WebSocket):"
    echo
    echo "| proxy | KiB per idle HTTP/2 connection (connections held) | KiB per open WebSocket |"
    echo "|---|---|---|"
    for kind in $PROXIES; do
        echo "| $kind | ${MEM_H2[$kind]} (${HELD[$kind]}) | ${MEM_WS[$kind]:--} |"
    done
    if [[ " $PROXIES " == *" nginx "* ]]; then
        echo
        echo "| proxy | CPU/handshake vs nginx | CPU/request vs nginx | CPU/HTTP/2 request vs nginx | CPU/gRPC call vs nginx | memory/connection vs nginx | memory/idle HTTP/2 connection vs nginx | memory/WebSocket vs nginx |"
        echo "|---|---|---|---|---|---|---|---|"
        for kind in $PROXIES; do
            echo "| $kind | $(ratio "${HS_CPU[$kind]}" "${HS_CPU[nginx]}") | $(ratio "${RQ_CPU[$kind]}" "${RQ_CPU[nginx]}") | $(ratio "${H2_CPU[$kind]}" "${H2_CPU[nginx]}") | $(ratio "${G_CPU[$kind]:-}" "${G_CPU[nginx]:-}") | $(ratio "${MEM[$kind]}" "${MEM[nginx]}") | $(ratio "${MEM_H2[$kind]}" "${MEM_H2[nginx]}") | $(ratio "${MEM_WS[$kind]:-}" "${MEM_WS[nginx]:-}") |"
        done
    fi
    if [[ " $PROXIES " == *" ambos "* && " $PROXIES " == *" ambos-crl "* ]]; then
        echo
        echo "A $CRL_ENTRIES-entry CRL changes ambos's CPU per handshake by $(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{(b / a - 1) * 100:+.1f}%")' "${HS_CPU[ambos]}" "${HS_CPU[ambos-crl]}") (${HS_CPU[ambos]} -> ${HS_CPU[ambos-crl]} µs) and per request by $(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{(b / a - 1) * 100:+.1f}%")' "${RQ_CPU[ambos]}" "${RQ_CPU[ambos-crl]}")."
    fi
    if [[ " $PROXIES " == *" ambos "* && " $PROXIES " == *" ambos-base "* ]]; then
        echo
        echo "ambos-base is $("$AMBOS_BASELINE" --version | awk '{print $2}') built from ${AMBOS_BASELINE_REV:-another commit}; this build changes CPU per handshake by $(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{(b / a - 1) * 100:+.1f}%")' "${HS_CPU[ambos-base]}" "${HS_CPU[ambos]}") (${HS_CPU[ambos-base]} -> ${HS_CPU[ambos]} µs) and per request by $(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{(b / a - 1) * 100:+.1f}%")' "${RQ_CPU[ambos-base]}" "${RQ_CPU[ambos]}")."
    fi
    if [[ " $PROXIES " == *" ambos "* && " $PROXIES " == *" ambos-pq "* ]]; then
        echo
        echo "Post-quantum key exchange (X25519MLKEM768 instead of X25519) changes ambos's CPU per handshake by $(python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{(b / a - 1) * 100:+.1f}%")' "${HS_CPU[ambos]}" "${HS_CPU[ambos-pq]}") (${HS_CPU[ambos]} -> ${HS_CPU[ambos-pq]} µs)."
    fi
)"
echo "$TABLE"
if [[ "$SMOKE" != 1 ]]; then
    write_doc_block compare "Side by side: nginx, HAProxy, ambos (bench/compare.sh)" "$TABLE"
fi
