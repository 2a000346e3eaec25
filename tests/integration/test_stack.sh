#!/usr/bin/env bash
# The test harness itself: its PostgreSQL and Redis are real, private and reachable the way
# the services are told to reach them, and every endpoint gets its own port.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1

# PostgreSQL: role emine can connect to database emine and create tables there.
em_eq "PostgreSQL accepts role emine on database emine" \
    "$(em_psql "select current_user || '/' || current_database()" 2>&1)" "emine/emine"
em_eq "role emine can create a table" \
    "$(em_psql 'create table t(x int)' 'insert into t values (1)' 'select count(*) from t' 2>&1)" "1"
em_eq "fsync is on (durability tests mean something)" "$(em_psql 'show fsync' 2>&1)" "on"
em_eq "PostgreSQL listens on 127.0.0.1 only" "$(em_psql 'show listen_addresses' 2>&1)" "127.0.0.1"
em_check "the DSN in EMINE_PG_DSN is the one psql used" \
    "$EM_PGBIN/psql" -X -At "$EMINE_PG_DSN" -c "select 1"

# Redis: commands need the password.
noauth=$(redis-cli -h 127.0.0.1 -p "$EM_REDIS_PORT" SET k v 2>&1)
case "$noauth" in
    *NOAUTH*) em_ok "Redis refuses a command without the password" ;;
    *) em_fail "Redis refuses a command without the password" "got $noauth" ;;
esac
em_eq "Redis refuses a wrong password" \
    "$(redis-cli -h 127.0.0.1 -p "$EM_REDIS_PORT" -a wrong --no-auth-warning PING 2>&1 | grep -c -i -E 'WRONGPASS|invalid')" "1"
em_eq "Redis accepts a command with the password" "$(em_redis SET k v)" "OK"
em_eq "the value is there" "$(em_redis GET k)" "v"
case "$EMINE_REDIS_URL" in
    "redis://:$EM_REDIS_PASSWORD@127.0.0.1:$EM_REDIS_PORT/0") em_ok "EMINE_REDIS_URL carries port and password" ;;
    *) em_fail "EMINE_REDIS_URL carries port and password" "got $EMINE_REDIS_URL" ;;
esac

# Ports: every endpoint has its own, and none is the default of config/emine.conf.
ports=("$EM_PG_PORT" "$EM_REDIS_PORT")
for v in BUS_PIPELINE BUS_VALIDATED BUS_ACKS BUS_EVENTS INGEST_ZMQ NOTIFY_ZMQ INGEST_HTTP \
    VALIDATE_HTTP ARCHIVE_HTTP NOTIFY_HTTP; do
    var="EMINE_$v"
    val=${!var}
    ports+=("${val##*:}")
done
em_eq "12 ports handed out" "${#ports[@]}" "12"
em_eq "the 12 ports are distinct" "$(printf '%s\n' "${ports[@]}" | sort -u | wc -l)" "12"
defaults=$(grep -o -E '127\.0\.0\.1:[0-9]+' config/emine.conf | cut -d: -f2 | sort -u)
clash=$(printf '%s\n' "${ports[@]}" | grep -x -F -f <(printf '%s\n' $defaults 55432 56379) | tr '\n' ' ')
em_eq "no port is a default of the local stack" "$clash" ""
em_eq "ZeroMQ endpoints are tcp:// URLs" \
    "$(printf '%s\n' "$EMINE_BUS_PIPELINE" "$EMINE_INGEST_ZMQ" "$EMINE_NOTIFY_ZMQ" | grep -c '^tcp://127\.0\.0\.1:[0-9]*$')" "3"
em_eq "HTTP endpoints are host:port" \
    "$(printf '%s\n' "$EMINE_INGEST_HTTP" "$EMINE_NOTIFY_HTTP" | grep -c '^127\.0\.0\.1:[0-9]*$')" "2"
em_eq "EMINE_CONFIG names the repository config" "$EMINE_CONFIG" "config/emine.conf"
em_check "the config file exists from the current directory" test -f "$EMINE_CONFIG"

# Restart helpers keep the data (PostgreSQL) and the port (both).
em_pg_stop && em_pg_start
em_eq "PostgreSQL restarts on the same port with the data" "$(em_psql 'select count(*) from t' 2>&1)" "1"
em_redis_stop && em_redis_start
em_eq "Redis restarts empty on the same port" "$(em_redis EXISTS k)" "0"

em_done
