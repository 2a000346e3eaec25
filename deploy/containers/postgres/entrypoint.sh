#!/bin/sh
set -eu
if [ -n "${EMINE_PG_PASSWORD_FILE:-}" ]; then EMINE_PG_PASSWORD=$(cat "$EMINE_PG_PASSWORD_FILE"); fi
: "${EMINE_PG_PASSWORD:?set EMINE_PG_PASSWORD or EMINE_PG_PASSWORD_FILE}"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C --auth-local=trust \
        --auth-host=scram-sha-256 >/dev/null
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses= -k /var/run/postgresql" start >/dev/null
    pw=$(printf '%s' "$EMINE_PG_PASSWORD" | sed "s/'/''/g")
    psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U postgres -d postgres \
        -c "CREATE ROLE \"$EMINE_PG_USER\" LOGIN PASSWORD '$pw'" \
        -c "CREATE DATABASE \"$EMINE_PG_DB\" OWNER \"$EMINE_PG_USER\""
    pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    echo "pg-entrypoint: initialised $PGDATA (role and database $EMINE_PG_USER/$EMINE_PG_DB)"
fi
unset EMINE_PG_PASSWORD
exec postgres -D "$PGDATA" -p "$EMINE_PG_PORT" -k /var/run/postgresql \
    -c listen_addresses="$EMINE_PG_LISTEN" "$@"
