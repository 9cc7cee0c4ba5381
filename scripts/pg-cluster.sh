#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, in a directory of its own:
#   scripts/pg-cluster.sh start DIR   # prints the URL of its `postgres` database
#   scripts/pg-cluster.sh stop DIR
#   scripts/pg-cluster.sh down|up DIR   # stop it and start it again, same port (tests of a database restart)
# Debian's server binaries (scripts/install-deps.sh installs them); run as
# root, the cluster belongs to the `postgres` user (initdb refuses root).
# Trust authentication on 127.0.0.1 and a socket in DIR only: a test cluster.
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?DIR}"
BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)"
[[ -x "$BIN/initdb" ]] || { echo "pg-cluster.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
as=()
if [[ "$(id -u)" == 0 ]]; then as=(runuser -u postgres --); fi
case "$cmd" in
start)
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && chown postgres "$dir"
    "${as[@]}" "$BIN/initdb" -D "$dir/data" -U ambos --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    # A free port can be taken by another test between the pick and the
    # bind: a new pick then, a few times.
    for attempt in 1 2 3 4 5; do
        port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
        # fsync off (a cluster that lives for one test run) unless PG_FSYNC=on
        # (bench/enroll.sh: durable like the SQLite store it is compared with).
        opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=300"
        # PG_TLS_CERT/PG_TLS_KEY: TLS on, with this certificate chain and key.
        if [[ -n "${PG_TLS_CERT:-}" ]]; then
            install -m 0644 "$PG_TLS_CERT" "$dir/server.crt"
            install -m 0600 "$PG_TLS_KEY" "$dir/server.key"
            [[ "$(id -u)" == 0 ]] && chown postgres "$dir/server.crt" "$dir/server.key"
            opts="$opts -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
        fi
        echo "$opts" >"$dir/options"
        if "${as[@]}" "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$opts" start >/dev/null; then
            echo "postgres://ambos@127.0.0.1:$port/postgres?sslmode=disable"
            exit 0
        fi
        grep -q "could not bind\|could not create any TCP/IP sockets" "$dir/server.log" && [[ $attempt -lt 5 ]] || break
    done
    cat "$dir/server.log" >&2
    exit 1
    ;;
down)
    "${as[@]}" "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
up)
    # Same port as before (the nodes know it): if something took it while
    # the server was down, wait for it to be free again (up to ~10 s).
    for attempt in $(seq 1 20); do
        "${as[@]}" "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$(cat "$dir/options")" start >/dev/null && exit 0
        grep -q "could not bind\|could not create any TCP/IP sockets" "$dir/server.log" || break
        sleep 0.5
    done
    cat "$dir/server.log" >&2
    exit 1
    ;;
stop)
    [[ -d "$dir/data" ]] && "${as[@]}" "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
*) echo "usage: pg-cluster.sh start|stop|down|up DIR" >&2; exit 2 ;;
esac
