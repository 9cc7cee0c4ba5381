#!/usr/bin/env bash
# Starvation: can one client without a certificate lock the others out?
# Against `ambos proxy` with its default [limits] (upstream: nginx answering
# 200), legitimate mTLS handshakes (`ambos bench handshake`, each a new
# connection + full handshake + one request) are measured unloaded, then
# while an attacker holds SILENT silent TCP connections (it reopens any the
# proxy closes, after 1 s):
#   - from one address (127.0.0.2), the issue's case;
#   - from the same address as the legitimate clients (127.0.0.1: a shared NAT);
#   - spread over SOURCES addresses (127.0.1.x), each under the per-source
#     limits, so that max_connections itself is reached.
# Then, against a proxy with body_timeout = BODY_TIMEOUT and upstream_timeout
# = UPSTREAM_TIMEOUT in front of an upstream that reads but never answers:
# SLOW request bodies sent at 1 byte/s are closed (408) at the body timeout
# and free their upstream connections; requests to the hanging upstream get
# 504 at upstream_timeout.
# The proxy runs on CPU 0, the load generator and the attacker on CPU 1,
# the attacker at idle priority (SCHED_IDLE): its own CPU would be on its
# own machine, not the legitimate clients'; on this 2-core VM it otherwise
# takes the clients' core and the figures measure the load generator
# starving, not the proxy. The proxy's CPU use is reported for each run.
#   bench/starvation.sh            # release; writes the figures into docs/benchmarks.md
#   SMOKE=1 bench/starvation.sh    # debug build, tiny counts, docs untouched
# The attacker needs SILENT descriptors: the script raises its soft limit to
# the hard one and lowers SILENT (saying so) if the hard limit is too low.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    SILENT="${SILENT:-300}"; DURATION="${DURATION:-2s}"; SLOW="${SLOW:-10}"; SOURCES="${SOURCES:-3}"
    BODY_TIMEOUT="${BODY_TIMEOUT:-2}"; UPSTREAM_TIMEOUT="${UPSTREAM_TIMEOUT:-2}"; PROFILE=debug
else
    SILENT="${SILENT:-15000}"; DURATION="${DURATION:-20s}"; SLOW="${SLOW:-200}"; SOURCES="${SOURCES:-150}"
    BODY_TIMEOUT="${BODY_TIMEOUT:-10}"; UPSTREAM_TIMEOUT="${UPSTREAM_TIMEOUT:-10}"; PROFILE=release
fi
CONCURRENCY="${CONCURRENCY:-4}"
for tool in taskset chrt python3 nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench/starvation.sh: $tool is required (scripts/install-deps.sh)" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"
if (( NOFILE < SILENT + 256 )); then
    echo "bench/starvation.sh: the hard open-file limit is $NOFILE: SILENT lowered from $SILENT to $((NOFILE - 256)) (raise it with ulimit -Hn as root)" >&2
    SILENT=$((NOFILE - 256))
fi
BENCH=starvation
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }

bench_pki
# The upstream: nginx answering 200, on the load core.
start_ok_upstream taskset -c 1

# An upstream that reads everything and never answers; it keeps the number
# of connections it has open in $TMP/sink.open.
SINK_PORT="$(free_port)"
cat >"$TMP/sink.py" <<'EOF'
import socket, sys, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(1024)
lock, open_ = threading.Lock(), [0]
def count(d):
    with lock:
        open_[0] += d
        with open(sys.argv[2], "w") as f:
            f.write(f"{open_[0]}\n")
def drain(c):
    try:
        while c.recv(65536):
            pass
    except OSError:
        pass
    c.close()
    count(-1)
while True:
    c, _ = srv.accept()
    count(1)
    threading.Thread(target=drain, args=(c,), daemon=True).start()
EOF
echo 0 >"$TMP/sink.open"
taskset -c 1 python3 "$TMP/sink.py" "$SINK_PORT" "$TMP/sink.open" >"$TMP/sink.log" 2>&1 &
PIDS+=($!); wait_port "$SINK_PORT" sink "$!"

# start_proxy NAME METRICS_PORT UPSTREAM_PORT LIMITS: listens on port 0; sets PROXY_PORT.
start_proxy() {
    local name="$1" metrics="$2" upstream="$3" limits="$4"
    cat >"$TMP/$name.toml" <<EOF
[listen]
address = "127.0.0.1:0"
[tls]
cert = "$C/localhost.crt"
key = "$C/localhost.key"
client_ca = "$C/ca.crt"
[upstream]
url = "http://127.0.0.1:$upstream"
[[route]]
path = "/**"
allow = ["any"]
[metrics]
address = "127.0.0.1:$metrics"
[limits]
$limits
EOF
    taskset -c 0 "$AMBOS" proxy --config "$TMP/$name.toml" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    PROXY_PORT="$(listen_port "$name" "$!")"
    wait_port "$PROXY_PORT" "$name" "$!"
}

# The attacker: SILENT connections spread over the given source addresses,
# silent; one the proxy closes is reopened 1 s later. Prints "ready" once
# every connection was attempted, and how many it holds to $2.status.
cat >"$TMP/silent.py" <<'EOF'
import selectors, socket, sys, time
port, n, sources, status = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
sel = selectors.DefaultSelector()
reopen = []
closed = 0
def open_one(src):
    s = socket.socket()
    s.setblocking(False)
    s.bind((src, 0))
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        reopen.append((time.monotonic() + 1, src))
        return
    sel.register(s, selectors.EVENT_READ, src)
for i in range(n):
    open_one(sources[i % len(sources)])
print("ready", flush=True)
last = 0
while True:
    for key, _ in sel.select(timeout=0.2):
        s = key.fileobj
        try:
            if s.recv(4096):
                continue
        except BlockingIOError:
            continue
        except OSError:
            pass
        sel.unregister(s)
        s.close()
        closed += 1
        reopen.append((time.monotonic() + 1, key.data))
    now = time.monotonic()
    while reopen and reopen[0][0] <= now:
        open_one(reopen.pop(0)[1])
    if now - last >= 0.5:
        last = now
        with open(status, "w") as f:
            f.write(f"{len(sel.get_map())} {closed}\n")
EOF

handshakes() {
    local port="$1"
    taskset -c 1 "$AMBOS" bench handshake --target "127.0.0.1:$port" --server-name localhost \
        --cert "$C/bench-client.crt" --key "$C/bench-client.key" --ca "$C/ca.crt" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --kx-group x25519 --json 2>/dev/null || true
}

# Success rate (%) and p99 (µs) of one `ambos bench handshake` result.
rate() { python3 -c 'import json, sys; r = json.loads(sys.argv[1]); t = r["ops"] + r["errors"]; print(f"{100.0 * r["ops"] / t:.2f}" if t else "0")' "$1"; }

MPORT="$(free_port)"
start_proxy defaults "$MPORT" "$UPORT" ""
PORT="$PROXY_PORT"
PROXY_PID="${PIDS[-1]}"
# CPU seconds the proxy used (user + system), from /proc.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$PROXY_PID/stat"; }
handshakes "$PORT" >/dev/null # warm-up
C0="$(cpu)"
BASE="$(handshakes "$PORT")"
BASE_CPU="$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$C0" "$(cpu)")"
echo "unloaded: $BASE" >&2

declare -A RES HELD
attack() {
    local name="$1" sources="$2" before evicted_before rejected_before
    evicted_before="$(metric "$MPORT" ambos_proxy_connections_evicted_total)"
    rejected_before="$(metric "$MPORT" ambos_proxy_connections_rejected_total)"
    : >"$TMP/$name.status"
    taskset -c 1 chrt --idle 0 python3 "$TMP/silent.py" "$PORT" "$SILENT" "$sources" "$TMP/$name.status" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    local i
    for ((i = 0; i < 600; i++)); do grep -q ready "$TMP/$name.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    local c0; c0="$(cpu)"
    RES[$name]="$(handshakes "$PORT")"
    CPU[$name]="$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$c0" "$(cpu)")"
    HELD[$name]="$(cut -d' ' -f1 "$TMP/$name.status" 2>/dev/null || echo 0)"
    EVICTED[$name]=$(( $(metric "$MPORT" ambos_proxy_connections_evicted_total) - evicted_before ))
    REJECTED[$name]=$(( $(metric "$MPORT" ambos_proxy_connections_rejected_total) - rejected_before ))
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$name: ${RES[$name]} (attacker holding ${HELD[$name]})" >&2
    sleep 2
}
declare -A EVICTED REJECTED CPU
attack one-address 127.0.0.2
attack same-address 127.0.0.1
attack spread "$(python3 -c 'import sys; print(",".join(f"127.0.1.{i}" for i in range(1, int(sys.argv[1]) + 1)))' "$SOURCES")"

# Slow bodies and a hanging upstream.
MPORT2="$(free_port)"
start_proxy timeouts "$MPORT2" "$SINK_PORT" "body_timeout = \"${BODY_TIMEOUT}s\"
upstream_timeout = \"${UPSTREAM_TIMEOUT}s\""
PORT2="$PROXY_PORT"
cat >"$TMP/slow.py" <<'EOF'
import asyncio, json, ssl, sys, time
port, sink, ca, cert, key, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
def upstream_conns():
    return int(open(sink).read().strip() or 0)
async def one(sent):
    start = time.monotonic()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    except (ConnectionError, ssl.SSLError, OSError):
        sent.append(1)
        return "connect-error", time.monotonic() - start, time.monotonic() - start
    start = time.monotonic()
    w.write(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nx")
    await w.drain()
    sent.append(1)
    async def trickle():
        while True:
            await asyncio.sleep(1)
            w.write(b"x")
            await w.drain()
    t = asyncio.create_task(trickle())
    try:
        line = await asyncio.wait_for(r.readline(), 300)
        status = line.split()[1].decode() if line else "closed"
        answered = time.monotonic() - start
        while await asyncio.wait_for(r.read(65536), 300):
            pass
    except (ConnectionError, ssl.SSLError, asyncio.TimeoutError):
        status, answered = "error", time.monotonic() - start
    t.cancel()
    return status, answered, time.monotonic() - start
async def main():
    sent = []
    tasks = [asyncio.create_task(one(sent)) for _ in range(n)]
    while len(sent) < n and not all(t.done() for t in tasks):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    during = upstream_conns()
    res = await asyncio.gather(*tasks)
    await asyncio.sleep(0.5)
    after = upstream_conns()
    answered = sorted(a for _, a, _ in res)
    closed = sorted(c for _, _, c in res)
    statuses = {}
    for s, _, _ in res:
        statuses[s] = statuses.get(s, 0) + 1
    print(json.dumps({"statuses": statuses, "answered_min": answered[0], "answered_max": answered[-1],
                      "closed_max": closed[-1], "upstream_during": during, "upstream_after": after}))
asyncio.run(main())
EOF
SLOW_RES="$(taskset -c 1 python3 "$TMP/slow.py" "$PORT2" "$TMP/sink.open" "$C/ca.crt" "$C/bench-client.crt" "$C/bench-client.key" "$SLOW")"
echo "slow bodies: $SLOW_RES" >&2
HANG=()
for i in 1 2 3 4 5; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 120 --cacert "$C/ca.crt" --cert "$C/bench-client.crt" \
        --key "$C/bench-client.key" --resolve "localhost:$PORT2:127.0.0.1" "https://localhost:$PORT2/hang" >"$TMP/hang.$i" &
    HANG+=($!)
done
for p in "${HANG[@]}"; do wait "$p" || true; done
HANG_RES="$(cat "$TMP"/hang.* | sort)"
echo "hanging upstream: $(echo "$HANG_RES" | tr '\n' ';')" >&2

REPORT="$(python3 - "$BASE" "$SILENT" "$SOURCES" "$SLOW" "$BODY_TIMEOUT" "$UPSTREAM_TIMEOUT" "$SLOW_RES" "$HANG_RES" \
    "${RES[one-address]}" "${HELD[one-address]}" "${EVICTED[one-address]}" "${REJECTED[one-address]}" \
    "${RES[same-address]}" "${HELD[same-address]}" "${EVICTED[same-address]}" "${REJECTED[same-address]}" \
    "${RES[spread]}" "${HELD[spread]}" "${EVICTED[spread]}" "${REJECTED[spread]}" "$DURATION" "$CONCURRENCY" \
    "$BASE_CPU" "${CPU[one-address]}" "${CPU[same-address]}" "${CPU[spread]}" <<'EOF'
import json, sys
a = sys.argv[1:]
base, silent, sources, slow, body_t, up_t, slow_res, hang = json.loads(a[0]), int(a[1]), a[2], a[3], a[4], a[5], json.loads(a[6]), a[7]
cpus = a[22:26]
runs = [("unloaded", base, "", "", "", cpus[0])]
names = {"one-address": "from one other address (127.0.0.2)", "same-address": "from the clients' own address (127.0.0.1)",
         "spread": f"spread over {sources} addresses (127.0.1.x)"}
for i, key in enumerate(["one-address", "same-address", "spread"]):
    r, held, ev, rej = json.loads(a[8 + 4 * i]), a[9 + 4 * i], a[10 + 4 * i], a[11 + 4 * i]
    runs.append((f"{silent:,} silent {names[key]}", r, held, ev, rej, cpus[1 + i]))
def rate(r):
    t = r["ops"] + r["errors"]
    return 100.0 * r["ops"] / t if t else 0.0
print(f"Legitimate clients: `ambos bench handshake` (new connection, full mTLS handshake, one request), "
      f"{a[21]} workers for {a[20]} each run, against `ambos proxy` with the default [limits]. "
      f"The attacker reopens each connection the proxy closes 1 s later, at idle CPU priority; "
      f"proxy CPU: seconds of CPU 0 the proxy used during the run.\n")
print("| attacker | handshakes ok / failed | success | p50 | p99 | p99 vs unloaded | proxy CPU | attacker held (end) | evicted | refused |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, r, held, ev, rej, cpu in runs:
    p99 = r["p99_us"] / 1000.0
    ratio = r["p99_us"] / base["p99_us"] if base["p99_us"] else 0
    print(f"| {name} | {r['ops']:,} / {r['errors']:,} | {rate(r):.2f}% | {r['p50_us'] / 1000.0:.1f} ms | {p99:.1f} ms "
          f"| {ratio:.2f}x | {cpu} s | {held} | {ev} | {rej} |")
st = ", ".join(f"{k}: {v}" for k, v in sorted(slow_res["statuses"].items()))
print(f"\n{slow} request bodies at 1 byte/s (body_timeout = {body_t}s, body_min_rate default): answered {st}, "
      f"between {slow_res['answered_min']:.1f} and {slow_res['answered_max']:.1f} s after their head, all closed by "
      f"{slow_res['closed_max']:.1f} s; upstream connections open while they trickled: {slow_res['upstream_during']}, "
      f"after: {slow_res['upstream_after']}.\n")
codes = [l.split() for l in hang.splitlines() if l.strip()]
print(f"An upstream that accepts and never answers (upstream_timeout = {up_t}s): "
      + ", ".join(f"{c} after {float(t):.2f} s" for c, t in codes) + ".")
EOF
)"
echo
echo "$REPORT"
if [[ "$SMOKE" != 1 ]]; then
    write_doc_block starvation "Starvation: silent connections, slow bodies, hanging upstreams (bench/starvation.sh)" \
        "Measured $(date -u +%Y-%m-%d) (release build, proxy on CPU 0, load and attacker on CPU 1):"$'\n\n'"$REPORT"
fi
