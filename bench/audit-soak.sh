#!/usr/bin/env bash
# Audit soak: does the audit log rotate under sustained load without losing
# or splitting a line? `ambos proxy` (audit on, max_size = MAX_SIZE) in front
# of nginx gets keep-alive requests for DURATION from two `ambos bench http`
# runs (HTTP/1.1 and HTTP/2). Meanwhile, every ROTATE_EVERY seconds, the
# audit file is renamed and the proxy signalled (SIGUSR1 and SIGHUP in turn),
# as logrotate does; size rotation runs on its own. At the end every audit
# file must end at a line end, every line must be JSON, and the request lines
# must number exactly the requests the proxy counted and the clients got.
#   bench/audit-soak.sh            # release, 10 minutes; figures into docs/benchmarks.md
#   SMOKE=1 bench/audit-soak.sh    # debug build, 6 s, docs untouched
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    DURATION="${DURATION:-6}"; MAX_SIZE="${MAX_SIZE:-256KB}"; ROTATE_EVERY="${ROTATE_EVERY:-1}"; PROFILE=debug
else
    DURATION="${DURATION:-600}"; MAX_SIZE="${MAX_SIZE:-100MB}"; ROTATE_EVERY="${ROTATE_EVERY:-30}"; PROFILE=release
fi
for tool in python3 nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench/audit-soak.sh: $tool is required (scripts/install-deps.sh)" >&2; exit 2; }
done
BENCH=audit-soak
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

bench_pki
start_ok_upstream

PORT="$(free_port)"; MPORT="$(free_port)"; LOGS="$TMP/logs"; mkdir -p "$LOGS"
cat >"$TMP/proxy.toml" <<EOF
[listen]
address = "127.0.0.1:$PORT"
[tls]
cert = "$C/localhost.crt"
key = "$C/localhost.key"
client_ca = "$C/ca.crt"
[upstream]
url = "http://127.0.0.1:$UPORT"
[[route]]
path = "/**"
allow = ["any"]
[metrics]
address = "127.0.0.1:$MPORT"
[audit]
path = "$LOGS/audit.jsonl"
max_size = "$MAX_SIZE"
keep = 1000
EOF
"$AMBOS" proxy --config "$TMP/proxy.toml" >"$TMP/proxy.log" 2>&1 &
PROXY=$!; PIDS+=("$PROXY"); wait_port "$PORT" proxy "$PROXY"

load() {
    "$AMBOS" bench http --target "127.0.0.1:$PORT" --server-name localhost --cert "$C/bench-client.crt" \
        --key "$C/bench-client.key" --ca "$C/ca.crt" --concurrency 2 --duration "${DURATION}s" --path "/soak/$1" \
        --kx-group x25519 --json "${@:2}" >"$TMP/load-$1.json" 2>"$TMP/load-$1.err"
}
load h1 & L1=$!; PIDS+=("$L1")
load h2 --http2 & L2=$!; PIDS+=("$L2")

# logrotate's create mode: rename, then signal (postrotate).
ROTATIONS=0; START=$SECONDS
while kill -0 "$L1" 2>/dev/null || kill -0 "$L2" 2>/dev/null; do
    sleep 1
    if (( SECONDS - START >= (ROTATIONS + 1) * ROTATE_EVERY && SECONDS - START < DURATION )); then
        mv "$LOGS/audit.jsonl" "$LOGS/audit.jsonl-ext$(printf %04d "$ROTATIONS")"
        if (( ROTATIONS % 2 == 0 )); then kill -USR1 "$PROXY"; else kill -HUP "$PROXY"; fi
        ROTATIONS=$((ROTATIONS + 1))
    fi
done
wait "$L1"; wait "$L2"
sleep 1 # the writer thread's last lines
COUNTED="$(curl -s "http://127.0.0.1:$MPORT/metrics" | awk 'index($0, "ambos_proxy_requests_total{") == 1 { s += $NF } END { print s + 0 }')"
kill -0 "$PROXY" || { echo "bench/audit-soak.sh: the proxy died:" >&2; cat "$TMP/proxy.log" >&2; exit 1; }

REPORT="$(python3 - "$LOGS" "$TMP/load-h1.json" "$TMP/load-h2.json" "$COUNTED" "$DURATION" "$MAX_SIZE" "$ROTATIONS" "$ROTATE_EVERY" <<'EOF'
import json, os, sys
logs, h1, h2, counted, duration, max_size, rotations, every = sys.argv[1:9]
clients = [json.load(open(h1)), json.load(open(h2))]
sent = sum(r["ops"] for r in clients)
errors = sum(r["errors"] for r in clients)
files, requests, lines, size, biggest = 0, 0, 0, 0, 0
for name in sorted(os.listdir(logs)):
    data = open(os.path.join(logs, name), "rb").read()
    files += 1
    size += len(data)
    biggest = max(biggest, len(data))
    if data and not data.endswith(b"\n"):
        sys.exit(f"bench/audit-soak.sh: {name} ends inside a line")
    for n, line in enumerate(data.splitlines(), 1):
        try:
            v = json.loads(line)
        except ValueError as e:
            sys.exit(f"bench/audit-soak.sh: {name} line {n} is not JSON ({e}): {line[:200]!r}")
        lines += 1
        if v.get("event") == "request":
            requests += 1
            if v.get("status") != 200:
                sys.exit(f"bench/audit-soak.sh: {name} line {n}: status {v.get('status')}")
if errors:
    sys.exit(f"bench/audit-soak.sh: the clients saw {errors} errors")
if not (requests == int(float(counted)) == sent):
    sys.exit(f"bench/audit-soak.sh: {requests} request lines, the proxy counted {counted}, the clients got {sent} answers")
print(f"{sent:,} requests in {int(duration) // 60} min {int(duration) % 60} s ({sent / int(duration):,.0f}/s, "
      f"HTTP/1.1 and HTTP/2, 2 connections each) with `max_size = \"{max_size}\"` and, every {every} s, "
      f"a rename + SIGUSR1/SIGHUP ({rotations} times): {lines:,} lines in {files} files, {size / 1e6:,.0f} MB "
      f"(largest file {biggest / 1e6:,.1f} MB); every file ends at a line end, every line is JSON, and the "
      f"{requests:,} request lines are exactly the requests the proxy counted and the clients got.")
EOF
)"
echo "$REPORT"
if [[ "$SMOKE" != 1 ]]; then
    write_doc_block audit-soak "Audit log soak (bench/audit-soak.sh)" "Measured $(date -u +%Y-%m-%d) (release build):"$'\n\n'"$REPORT"
fi
