#!/bin/sh
# Entrypoint of lumbar-postgres: the official PostgreSQL image's contract, on Debian's PostgreSQL.
#
# On first start (no $PGDATA/PG_VERSION) the cluster is initialised with POSTGRES_USER as its superuser
# and POSTGRES_PASSWORD as that user's password (read from a private temporary file, never a command
# line), connections over TCP need the password (scram-sha-256), the local socket (inside the pod only)
# is trusted for probes, and POSTGRES_DB is created. Then the server runs in the foreground: every later
# start only runs it. Arguments are passed to `postgres`.
set -eu

fail() { echo "postgres-entrypoint: $*" >&2; exit 2; }
[ -n "${POSTGRES_USER:-}" ] || fail "POSTGRES_USER is not set (it comes from the Secret lumbar-postgres)"
[ -n "${POSTGRES_PASSWORD:-}" ] || fail "POSTGRES_PASSWORD is not set (it comes from the Secret lumbar-postgres)"
: "${PGDATA:?PGDATA is not set}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    umask 077
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        # a server on the socket only, for creating the database; the name is quoted by psql (:"db")
        pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
        echo 'CREATE DATABASE :"db";' | psql --quiet --set ON_ERROR_STOP=1 --set db="$POSTGRES_DB" \
            --username="$POSTGRES_USER" --dbname=postgres
        pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
    fi
    echo "postgres-entrypoint: initialised $PGDATA with database $POSTGRES_DB"
fi
exec postgres -D "$PGDATA" "$@"
