#!/bin/sh
# emine-entrypoint: secrets from files, then exec the command (a service or eminectl), so that
# tini's child is the service itself and gets SIGTERM directly.
#
#   EMINE_<SECTION>_<KEY>_FILE=path   EMINE_<SECTION>_<KEY> is set to the file's content
#                                     (trailing newline removed), e.g. EMINE_PG_DSN_FILE
#   EMINE_PG_PASSWORD[_FILE]          PGPASSWORD for libpq (the DSN then needs no password)
#   EMINE_REDIS_PASSWORD[_FILE]       put into EMINE_REDIS_URL (redis://:<password>@host:port/db);
#                                     the password must be URL-safe (e.g. hex)
# The helper variables are removed from the environment before the service starts.
set -eu

for var in $(env | sed -n 's/^\(EMINE_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
    eval "file=\${${var}_FILE}"
    [ -r "$file" ] || { echo "emine-entrypoint: ${var}_FILE: cannot read $file" >&2; exit 78; }
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
done

if [ -n "${EMINE_PG_PASSWORD:-}" ]; then
    export PGPASSWORD="$EMINE_PG_PASSWORD"
fi
unset EMINE_PG_PASSWORD

if [ -n "${EMINE_REDIS_PASSWORD:-}" ]; then
    url=${EMINE_REDIS_URL:-redis://127.0.0.1:6379/0}
    rest=${url#redis://}
    case "$rest" in *@*) rest=${rest#*@} ;; esac
    export EMINE_REDIS_URL="redis://:${EMINE_REDIS_PASSWORD}@${rest}"
fi
unset EMINE_REDIS_PASSWORD

[ "$#" -gt 0 ] || set -- emine-ingest
exec "$@"
