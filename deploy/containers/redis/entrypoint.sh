#!/bin/sh
set -eu
if [ -n "${EMINE_REDIS_PASSWORD_FILE:-}" ]; then EMINE_REDIS_PASSWORD=$(cat "$EMINE_REDIS_PASSWORD_FILE"); fi
: "${EMINE_REDIS_PASSWORD:?set EMINE_REDIS_PASSWORD or EMINE_REDIS_PASSWORD_FILE}"
# The password goes to redis-server through a config on stdin, not its command line.
pw=$EMINE_REDIS_PASSWORD
unset EMINE_REDIS_PASSWORD
printf 'port %s\nbind %s\nrequirepass "%s"\ndir /data\nappendonly yes\ndaemonize no\nlogfile ""\n' \
    "$EMINE_REDIS_PORT" "$EMINE_REDIS_LISTEN" "$pw" | exec redis-server -
