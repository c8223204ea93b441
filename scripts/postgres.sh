#!/usr/bin/env bash
# PostgreSQL for tests and local runs, from Debian's binaries (no Docker).
#   scripts/postgres.sh up     start (or find running) on 127.0.0.1:$PG_PORT, database "suptech"
#   scripts/postgres.sh down   stop it
#   scripts/postgres.sh wipe   stop it and delete its data
# Idempotent. Running as root, the server runs as the "postgres" user on a data dir it owns.
set -euo pipefail
PG_PORT=${PG_PORT:-15432}
PG_DATA=${PG_DATA:-/tmp/suptech-pg-$PG_PORT}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$bindir" ]; then
  echo "postgres.sh: no PostgreSQL binaries in /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_pg "$bindir/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

case "${1:-}" in
  up)
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
      mkdir -p "$PG_DATA"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_DATA"
      chmod 700 "$PG_DATA"
      as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
      cat >>"$PG_DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DATA'
max_connections = 200
CONF
    fi
    if ! running; then
      # Durable as in production (the alert-latency benchmark runs against this server): given on
      # the command line so that a data dir made by an older version of this script obeys too.
      as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
        -o "-c fsync=on -c synchronous_commit=on" start >/dev/null
    fi
    if ! as_pg "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='suptech'" | grep -q 1; then
      as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres suptech
    fi
    echo "postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/suptech"
    ;;
  down)
    if running; then as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null; fi
    ;;
  wipe)
    if running; then as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null; fi
    rm -rf "$PG_DATA"
    ;;
  *)
    echo "usage: $0 up|down|wipe" >&2
    exit 2
    ;;
esac
