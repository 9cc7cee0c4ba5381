#!/usr/bin/env bash
# The web console at scale: a CA with COUNT certificates (a tenth expired, a
# twentieth revoked, a twentieth renewals, lifetimes spread over a year), `ambos serve`, and curl
# with an admin certificate timing each console page, a new connection per
# request as a browser's first visit: median and max of RUNS each. The goal
# (issue 18) is at most 200 ms per list page and the overview at 100,000.
#   bench/console.sh                   # release, 100,000 certificates
#   COUNT=20000 RUNS=50 bench/console.sh
#   SMOKE=1 bench/console.sh           # debug build, 200 certificates, 3 runs
#   STORE=postgres bench/console.sh    # the same CA copied into PostgreSQL
#                                      # (`ambos store copy`), served from there
#   WRITE_DOC=1 bench/console.sh       # and put the table in docs/benchmarks.md
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
    COUNT="${COUNT:-200}"; RUNS="${RUNS:-3}"; PROFILE=debug
else
    COUNT="${COUNT:-100000}"; RUNS="${RUNS:-20}"; PROFILE=release
fi
BENCH=console
STORE="${STORE:-sqlite}"
[[ "$STORE" == sqlite || "$STORE" == postgres ]] || { echo "bench/console.sh: STORE is sqlite or postgres" >&2; exit 2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
if [[ "$STORE" == postgres ]]; then
    # The cluster runs as the postgres user, which must reach its directory.
    chmod 0711 "$TMP"
    trap '"$ROOT/scripts/pg-cluster.sh" stop "$TMP/pg"; cleanup' EXIT
fi

"$AMBOS" --dir "$TMP/ca" init --name bench --no-passphrase >/dev/null 2>&1
mkdir -p "$TMP/certs"
"$AMBOS" --dir "$TMP/ca" issue client bench-admin --admin --ttl 90d --out "$TMP/certs" >/dev/null
# Lifetimes from 1 to 365 days; a twentieth of the names renewed once.
EXPIRED=$((COUNT / 10)); RENEWED=$((COUNT / 20)); LIVE=$((COUNT - EXPIRED - RENEWED))
lines() { # FIRST COUNT: JSON batch lines dev-FIRST.. with spread lifetimes
    python3 -c 'import json, sys
first, n = map(int, sys.argv[1:])
for i in range(first, first + n):
    print(json.dumps({"name": f"dev-{i}", "sans": [f"dns:dev-{i}.fleet.test"], "ttl": f"{1 + i % 365}d"}))' "$1" "$2"
}
lines 0 "$LIVE" >"$TMP/live.jsonl"
lines 0 "$RENEWED" >"$TMP/renewed.jsonl"
python3 -c 'import sys
for i in range(int(sys.argv[1])): print(f"old-{i},client,dns:old-{i}.fleet.test")' "$EXPIRED" >"$TMP/expired.csv"
started="$(date +%s.%N)"
# Ed25519 keys: the bench is about the store, not key generation.
issue() { "$AMBOS" --dir "$TMP/ca" issue client --key-type ed25519 "$@" >>"$TMP/issue.log" 2>&1 || { cat "$TMP/issue.log" >&2; exit 1; }; }
issue --batch "$TMP/live.jsonl" --out "$TMP/fleet"
issue --batch "$TMP/renewed.jsonl" --out "$TMP/renewed"
not_before="$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%SZ)"
issue --batch "$TMP/expired.csv" --not-before "$not_before" --ttl 1h --out "$TMP/fleet"
# Revocation through ambos re-signs the CRL each time; for the bulk the bench
# marks the store directly (bench data only), and a few through ambos so the
# audit trail has revocations.
REVOKED=$((COUNT / 20))
sqlite3 "$TMP/ca/ambos.db" "UPDATE certificate SET revoked_at = strftime('%s','now') - id, revocation_reason = 1 \
    WHERE id IN (SELECT id FROM certificate WHERE name LIKE 'dev-%' AND id % 18 = 0 LIMIT $((REVOKED - 3)))"
for i in 1 2 3; do "$AMBOS" --dir "$TMP/ca" revoke "old-$i" --reason superseded >/dev/null; done
setup="$(python3 -c 'import sys,time; print(f"{time.time() - float(sys.argv[1]):.0f}")' "$started")"
STORED="$(sqlite3 "$TMP/ca/ambos.db" "SELECT count(*) FROM certificate WHERE issuer = 'intermediate'")"
REVOKED="$(sqlite3 "$TMP/ca/ambos.db" "SELECT count(*) FROM certificate WHERE revoked_at IS NOT NULL")"
echo "setup: $STORED certificates issued and stored in $setup s ($(du -h "$TMP/ca/ambos.db" | cut -f1) database)" >&2
STORE_NAME="the SQLite store"
if [[ "$STORE" == postgres ]]; then
    URL="$("$ROOT/scripts/pg-cluster.sh" start "$TMP/pg")"
    "$AMBOS" --dir "$TMP/ca" store copy --from "sqlite:$TMP/ca" --to "$URL" >&2
    # The certificate page reads the serial from SQLite below; the same rows are in PostgreSQL.
    export AMBOS_STORE="$URL"
    STORE_NAME="PostgreSQL $("$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)/postgres" --version | awk '{print $3}') (copied from SQLite by \`ambos store copy\`, fsync off)"
fi

"$AMBOS" --dir "$TMP/ca" serve --listen "127.0.0.1:0" >"$TMP/serve.log" 2>&1 &
PIDS+=($!); PORT="$(listen_port serve "$!")"; wait_port "$PORT" serve "$!"
SERIAL="$(sqlite3 "$TMP/ca/ambos.db" "SELECT serial FROM certificate WHERE name = 'dev-7' LIMIT 1")"
# Page 1000 at 100,000 (offset 49,950); a page within the smoke run's 4.
DEEP=$((COUNT / 100 > 1 ? COUNT / 100 : 2))
PAGES=(
    "overview|/ui/"
    "list, page 1|/ui/certs"
    "list, page $DEEP|/ui/certs?page=$DEEP"
    "list, name=dev-7|/ui/certs?name=dev-7"
    "list, serial starts ${SERIAL:0:2}|/ui/certs?serial=${SERIAL:0:2}"
    "list, SAN contains dev-7.fleet|/ui/certs?san=dev-7.fleet"
    "list, issuer=intermediate, page $DEEP|/ui/certs?issuer=intermediate&page=$DEEP"
    "list, state=revoked|/ui/certs?state=revoked"
    "list, state=valid (soonest expiry first)|/ui/certs?state=valid"
    "list, state=expired|/ui/certs?state=expired"
    "list, profile=client, page $DEEP|/ui/certs?profile=client&page=$DEEP"
    "certificate page|/ui/certs/$SERIAL"
    "audit (newest 500)|/ui/audit"
)
get() {
    curl -sS -o "$TMP/body.html" -w '%{http_code} %{time_total}\n' --cacert "$TMP/ca/root.crt" \
        --cert "$TMP/certs/bench-admin.crt" --key "$TMP/certs/bench-admin.key" "https://localhost:$PORT$1"
}
ROWS=""; FAILED=0
for p in "${PAGES[@]}"; do
    label="${p%%|*}"; path="${p#*|}"
    : >"$TMP/times"
    for ((r = 0; r < RUNS; r++)); do
        read -r code t < <(get "$path")
        if [[ "$code" != 200 ]]; then echo "FAILED: $path answered $code" >&2; FAILED=1; break; fi
        echo "$t" >>"$TMP/times"
    done
    # A whole page, and a list that is not empty.
    grep -q '</html>' "$TMP/body.html" && ! grep -q 'No certificates match' "$TMP/body.html" ||
        { echo "FAILED: $path is not a full page of results" >&2; FAILED=1; }
    row="$(python3 -c 'import statistics, sys
t = [float(l) * 1000 for l in open(sys.argv[1]) if l.strip()] or [0]
print(f"{statistics.median(t):.1f} ms | {max(t):.1f} ms")' "$TMP/times")"
    ROWS+="| $label | \`$path\` | $row |"$'\n'
done
[[ "$FAILED" == 0 ]] || exit 1
HEAD="Measured $(date +%Y-%m-%d) at commit $(git -C "$ROOT" rev-parse --short HEAD), $PROFILE build, $STORED certificates in $STORE_NAME ($REVOKED revoked, $EXPIRED expired), $RUNS requests per page, each a new TLS connection with curl:"
TABLE="| page | request | median | max |"$'\n'"|---|---|---|---|"$'\n'"${ROWS%$'\n'}"
echo "$HEAD"; echo; echo "$TABLE"
BLOCK=console; [[ "$STORE" == postgres ]] && BLOCK=console-postgres
if [[ "${WRITE_DOC:-0}" == 1 ]]; then write_doc_block "$BLOCK" "Web console (issue 18)" "$HEAD"$'\n\n'"$TABLE"; fi
