#!/bin/sh
set -eu
if [ -n "${EMINE_REDIS_PASSWORD_FILE:-}" ]; then EMINE_REDIS_PASSWORD=$(cat "$EMINE_REDIS_PASSWORD_FILE"); fi
: "${EMINE_REDIS_PASSWORD:?set EMINE_REDIS_PASSWORD or EMINE_REDIS_PASSWORD_FILE}"
# The password goes to redis-server through its configuration on stdin, not its command line;
# exec keeps redis-server as PID 1, so SIGTERM reaches it (it saves and exits 0).
pw=$EMINE_REDIS_PASSWORD
unset EMINE_REDIS_PASSWORD
exec redis-server - <<CONF
port $EMINE_REDIS_PORT
bind $EMINE_REDIS_LISTEN
requirepass "$pw"
dir /data
appendonly yes
daemonize no
logfile ""
CONF
