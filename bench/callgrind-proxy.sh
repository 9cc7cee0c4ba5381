#!/usr/bin/env bash
# Instructions the proxy process executes (callgrind: repeatable, whatever
# this VM's drift) for N keep-alive requests or N full handshakes over one
# client, so that two builds can be compared: run with N1 and N2 and divide
# the difference by N2 - N1.
#   MODE=http|handshake bench/callgrind-proxy.sh PROXY_BINARY N
# Needs a release build of ambos (target/release/ambos: the CA and the load
# generator), nginx (the upstream) and valgrind.
set -euo pipefail
B="$1"; N="$2"; ROOT="$(cd "$(dirname "$0")/.." && pwd)"
A="${CARGO_TARGET_DIR:-$ROOT/target}/release/ambos"
d="$(mktemp -d)"
$A --dir $d/ca init --name cg --no-passphrase >/dev/null 2>&1
$A --dir $d/ca issue server localhost --san ip:127.0.0.1 --out $d/c >/dev/null 2>&1
$A --dir $d/ca issue client c --out $d/c >/dev/null 2>&1
U=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p $d/ng
cat > $d/ng/nginx.conf <<NG
worker_processes 1; daemon off; error_log stderr; pid $d/ng/nginx.pid;
events {}
http { access_log off; client_body_temp_path $d/ng; proxy_temp_path $d/ng; fastcgi_temp_path $d/ng; uwsgi_temp_path $d/ng; scgi_temp_path $d/ng;
  server { listen 127.0.0.1:$U; keepalive_requests 1000000; location / { return 200 "ok"; } } }
NG
nginx -c $d/ng/nginx.conf -p $d/ng 2>/dev/null & NGP=$!
cat > $d/p.toml <<T
[listen]
address = "127.0.0.1:0"
[tls]
cert = "$d/c/localhost.crt"
key = "$d/c/localhost.key"
client_ca = "$d/c/ca.crt"
[upstream]
url = "http://127.0.0.1:$U"
[[route]]
path = "/**"
allow = ["any"]
T
valgrind --tool=callgrind --callgrind-out-file=$d/cg.out "$B" proxy --config $d/p.toml >/dev/null 2>$d/proxy.log & VP=$!
# The port it bound, from its "listening on ADDR" line (valgrind starts slowly).
P=
for _ in $(seq 1 300); do
    P="$(sed -nE '/listening on/{s/.*listening on [0-9.]+:([0-9]+).*/\1/p;q}' $d/proxy.log)"
    [[ -n "$P" ]] && break
    kill -0 $VP 2>/dev/null || { cat $d/proxy.log >&2; exit 1; }
    sleep 0.2
done
[[ -n "$P" ]] || { echo "callgrind-proxy.sh: the proxy did not start: $(cat $d/proxy.log)" >&2; exit 1; }
$A bench ${MODE:-http} --target 127.0.0.1:$P --server-name localhost --cert $d/c/c.crt --key $d/c/c.key --ca $d/c/ca.crt --count $N --concurrency 1 --json >/dev/null
kill -TERM $VP; wait $VP 2>/dev/null || true
kill $NGP 2>/dev/null; wait $NGP 2>/dev/null || true
# grep -m1, not | head -1: under pipefail a closed pipe is exit 141.
grep -m1 -E "^(summary|totals):" $d/cg.out
rm -rf $d
