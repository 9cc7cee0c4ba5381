# shellcheck shell=bash
# What the bench scripts share, sourced after they set ROOT, PROFILE and
# BENCH (their name): the ambos build, a temporary directory removed at exit
# with every process recorded in PIDS stopped, and helpers for ports and JSON.
# AMBOS_BIN=/path/to/ambos skips the build (scripts/test.sh passes the one it
# built); the debug build is the one scripts/test.sh makes (`--workspace
# --bins`): `-p ambos` alone unifies features differently and would compile
# every crate a second time.
if [[ -n "${AMBOS_BIN:-}" ]]; then
    AMBOS="$AMBOS_BIN"
else
    if [[ "$PROFILE" == release ]]; then (cd "$ROOT" && cargo build --release -p ambos) >&2; else (cd "$ROOT" && cargo build --workspace --bins) >&2; fi
    AMBOS="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/ambos"
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ambos-$BENCH.XXXXXX")"
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A port that was free a moment ago, only for what cannot bind port 0 and
# say which port it got (nginx, HAProxy, the metrics listener, the sink).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# listen_port WHAT PID: the port an ambos server told to listen on
# 127.0.0.1:0 got, read from its "listening on ADDR" line in $TMP/WHAT.log;
# fails (showing the log) if PID exits first.
listen_port() {
    local what="$1" pid="$2" i port
    for ((i = 0; i < 300; i++)); do
        port="$(sed -nE '/listening on/{s/.*listening on (https:\/\/)?[0-9.]+:([0-9]+).*/\2/p;q}' "$TMP/$what.log" 2>/dev/null || true)"
        [[ -n "$port" ]] && { echo "$port"; return 0; }
        kill -0 "$pid" 2>/dev/null || { echo "bench/$BENCH.sh: $what exited:" >&2; cat "$TMP/$what.log" >&2 || true; exit 1; }
        sleep 0.1
    done
    echo "bench/$BENCH.sh: $what logged no 'listening on' line" >&2; exit 1
}
# wait_port PORT WHAT PID: until PORT accepts; fails (showing $TMP/WHAT.log) if PID exits.
wait_port() {
    local port="$1" what="$2" pid="$3" i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || { echo "bench/$BENCH.sh: $what exited:" >&2; cat "$TMP/$what.log" >&2 || true; exit 1; }
        python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$port" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench/$BENCH.sh: $what not listening on $port" >&2; exit 1
}
json() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
# write_doc_block NAME HEADING CONTENT: puts CONTENT between <!-- NAME:begin -->
# and <!-- NAME:end --> in docs/benchmarks.md (a new section HEADING the first time).
write_doc_block() {
    python3 - "$ROOT/docs/benchmarks.md" "$1" "$2" "$3" <<'PY'
import sys
path, name, heading, content = sys.argv[1:5]
text = open(path).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
block = f"{begin}\n{content}\n{end}"
if begin in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text += f"\n## {heading}\n\n{block}\n"
open(path, "w").write(text)
PY
    echo "(written to docs/benchmarks.md)"
}
# bench_pki: a CA in $TMP/ca and, in $TMP/certs (set as C), a server
# certificate for localhost/127.0.0.1 and a client certificate bench-client.
bench_pki() {
    "$AMBOS" --dir "$TMP/ca" init --name bench --no-passphrase >/dev/null 2>&1
    "$AMBOS" --dir "$TMP/ca" issue server localhost --san ip:127.0.0.1 --out "$TMP/certs" >/dev/null
    "$AMBOS" --dir "$TMP/ca" issue client bench-client --out "$TMP/certs" >/dev/null
    C="$TMP/certs"
}
# start_ok_upstream [PREFIX...]: nginx answering 200 "ok" on a port it sets
# as UPORT, run under PREFIX (e.g. taskset -c 1); stopped at exit.
start_ok_upstream() {
    UPORT="$(free_port)"; mkdir -p "$TMP/up"
    cat >"$TMP/up/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $TMP/up/body; proxy_temp_path $TMP/up/proxy; fastcgi_temp_path $TMP/up/fcgi;
  uwsgi_temp_path $TMP/up/uwsgi; scgi_temp_path $TMP/up/scgi; keepalive_requests 100000000; keepalive_timeout 300s;
  server { listen 127.0.0.1:$UPORT; location / { default_type text/plain; return 200 "ok"; } } }
EOF
    "$@" nginx -p "$TMP/up" -e "$TMP/up/startup.log" -c "$TMP/up/nginx.conf" >"$TMP/upstream.log" 2>&1 &
    PIDS+=($!); wait_port "$UPORT" upstream "$!"
}
