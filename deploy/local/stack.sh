#!/usr/bin/env bash
# stack.sh {run|up|down|status} - the local emine stack under ./var (no system service needed).
#
#   up      PostgreSQL (var/pg, 127.0.0.1:55432, socket in var/run) and Redis (var/redis,
#           127.0.0.1:56379, password) started if not running, role and database `emine`
#           created if missing, then the four services (BUILD/bin, BUILD defaults to build),
#           each under a small supervisor that restarts it 1 s after it dies; logs in
#           var/log/*.log, pids in var/run/*.pid; writes var/emine.env; waits for every
#           /readyz.  Running `up` again starts nothing twice.
#   down    the services (SIGTERM, then waits), then Redis and PostgreSQL.
#   status  what runs, and each service's /readyz.
#   run     up, the demo (deploy/local/demo.sh), then follows the logs; Ctrl-C runs down.
#
# Environment: BUILD, EMINE_STACK_PG_PORT (55432), EMINE_STACK_REDIS_PORT (56379),
# EMINE_STACK_REDIS_PASSWORD (emine).  Service endpoints are those of config/emine.conf.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
VAR="$ROOT/var"
PG_PORT=${EMINE_STACK_PG_PORT:-55432}
REDIS_PORT=${EMINE_STACK_REDIS_PORT:-56379}
REDIS_PASSWORD=${EMINE_STACK_REDIS_PASSWORD:-emine}
SERVICES=(archive validate ingest notify) # start order; stopped in reverse
READY_TIMEOUT=${EMINE_STACK_READY_TIMEOUT:-60}

# The endpoints of config/emine.conf, exported to the services and written to var/emine.env.
PG_DSN="host=127.0.0.1 port=$PG_PORT dbname=emine user=emine connect_timeout=5"
REDIS_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
declare -A HTTP=([ingest]=127.0.0.1:8001 [validate]=127.0.0.1:8002 [archive]=127.0.0.1:8003
    [notify]=127.0.0.1:8004)
INGEST_ZMQ=tcp://127.0.0.1:7001
NOTIFY_ZMQ=tcp://127.0.0.1:7004

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

pgbin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found (run make deps)"
    printf '%s\n' "$d"
}

# Runs a command as the postgres user when root (PostgreSQL refuses to run as root).
aspg() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# PostgreSQL's data and socket folders: var/pg and var/run, unless (as root) the postgres user
# cannot reach the checkout (e.g. under /root): then a folder under /var/tmp it can reach.
pg_dirs() {
    PGDATA="$VAR/pg"
    PGSOCK="$VAR/run"
    PGLOG="$VAR/log/postgres.log"
    if [ "$(id -u)" -eq 0 ] && ! (cd / && runuser -u postgres -- test -x "$ROOT"); then
        local alt
        alt="/var/tmp/emine-stack-$(printf '%s' "$ROOT" | md5sum | cut -c1-12)"
        PGDATA="$alt/pg"
        PGSOCK="$alt/run"
        PGLOG="$alt/postgres.log"
        PG_NOTE="the postgres user cannot reach $ROOT: PostgreSQL data in $PGDATA"
    fi
}

# Whether a process runs (a zombie does not: an orphan may wait a while to be reaped).
alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "${st#Z}" = "$st" ]
}

# The pid in a pid file if that process is alive, else nothing.
live_pid() {
    local f=$1 pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$pid" ] && alive "$pid" || return 1
    printf '%s\n' "$pid"
}

port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# ---------------------------------------------------------------------------------------------

pg_up() {
    local bin
    bin=$(pgbin)
    PG_NOTE=""
    pg_dirs
    [ -z "$PG_NOTE" ] || say "$PG_NOTE"
    mkdir -p "$PGDATA" "$PGSOCK" "$VAR/log"
    chmod 755 "$(dirname "$PGDATA")"
    touch "$PGLOG"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$PGDATA" "$PGSOCK" "$PGLOG"
        chmod 700 "$PGDATA"
    fi
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        say "initdb $PGDATA"
        aspg "$bin/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C \
            >"$VAR/log/initdb.log" 2>&1 || die "initdb failed: see var/log/initdb.log"
    fi
    if aspg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        say "PostgreSQL already running (127.0.0.1:$PG_PORT)"
    else
        port_in_use "$PG_PORT" && die "port $PG_PORT is in use by another program"
        say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
        aspg "$bin/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 60 \
            -o "-p $PG_PORT -k $PGSOCK -c listen_addresses=127.0.0.1" start >/dev/null ||
            die "PostgreSQL did not start: see $PGLOG"
    fi
    local admin="host=127.0.0.1 port=$PG_PORT dbname=postgres user=postgres connect_timeout=5"
    if [ "$("$bin/psql" -X -At "$admin" -c "select 1 from pg_roles where rolname = 'emine'")" != 1 ]; then
        "$bin/psql" -X -q "$admin" -c "CREATE ROLE emine LOGIN" >/dev/null
    fi
    if [ "$("$bin/psql" -X -At "$admin" -c "select 1 from pg_database where datname = 'emine'")" != 1 ]; then
        "$bin/psql" -X -q "$admin" -c "CREATE DATABASE emine OWNER emine" >/dev/null
        say "created role and database emine"
    fi
}

pg_down() {
    local bin
    bin=$(pgbin)
    pg_dirs
    [ -f "$PGDATA/PG_VERSION" ] || return 0
    if aspg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        say "stopping PostgreSQL"
        aspg "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    fi
}

redis_cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -a "$REDIS_PASSWORD" --no-auth-warning "$@"; }

redis_up() {
    mkdir -p "$VAR/redis" "$VAR/run" "$VAR/log"
    if live_pid "$VAR/run/redis.pid" >/dev/null; then
        say "Redis already running (127.0.0.1:$REDIS_PORT)"
        return 0
    fi
    port_in_use "$REDIS_PORT" && die "port $REDIS_PORT is in use by another program"
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" \
        --dir "$VAR/redis" --daemonize yes --pidfile "$VAR/run/redis.pid" \
        --logfile "$VAR/log/redis.log" --appendonly no >/dev/null
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(redis_cli PING 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    die "Redis did not start: see var/log/redis.log"
}

redis_down() {
    local pid i
    pid=$(live_pid "$VAR/run/redis.pid") || return 0
    say "stopping Redis"
    redis_cli SHUTDOWN >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Services

write_env() {
    cat >"$VAR/emine.env" <<EOF
# emine local stack: source with   set -a; . var/emine.env; set +a
EMINE_PG_DSN='$PG_DSN'
EMINE_REDIS_URL='$REDIS_URL'
EMINE_INGEST_ZMQ='$INGEST_ZMQ'
EMINE_INGEST_HTTP='${HTTP[ingest]}'
EMINE_VALIDATE_HTTP='${HTTP[validate]}'
EMINE_ARCHIVE_HTTP='${HTTP[archive]}'
EMINE_NOTIFY_HTTP='${HTTP[notify]}'
EMINE_NOTIFY_ZMQ='$NOTIFY_ZMQ'
EOF
    if [ -s "$VAR/producer.key" ]; then
        printf "EMINE_PRODUCER='local'\nEMINE_PRODUCER_KEY='%s'\n" "$(cat "$VAR/producer.key")" >>"$VAR/emine.env"
    fi
    if [ -s "$VAR/operator.key" ]; then
        printf "EMINE_KEY='%s'\n" "$(cat "$VAR/operator.key")" >>"$VAR/emine.env"
    fi
    chmod 600 "$VAR/emine.env"
}

# The local stack's operator organisation, `local-ops` (kind operator: sees every visibility
# tier).  Its API key is kept in var/operator.key and written to var/emine.env as EMINE_KEY,
# which `eminectl tail` reads (the stream sends only what the key's organisation may see).
ensure_operator() {
    local ctl="$BUILD/bin/eminectl" out
    export EMINE_PG_DSN="$PG_DSN"
    if ! "$ctl" subs orgs 2>/dev/null | grep -q '^local-ops[[:space:]]'; then
        "$ctl" subs org-create local-ops --kind operator --name "local stack operators" \
            >/dev/null || die "cannot create the operator organisation local-ops"
        rm -f "$VAR/operator.key"
    fi
    [ -s "$VAR/operator.key" ] && return 0
    out=$("$ctl" subs key-create local-ops --label local-stack 2>/dev/null) ||
        die "cannot create a key for local-ops"
    (umask 077 && printf '%s\n' "$out" | tail -n 1 >"$VAR/operator.key")
    say "operator organisation 'local-ops' registered; its key is in var/operator.key"
}

# The local stack's own producer, `local`, allowed every source and every e-mining type (ingest
# authenticates producers: [ingest] auth).  Its key is kept in var/producer.key and written to
# var/emine.env as EMINE_PRODUCER / EMINE_PRODUCER_KEY, which eminectl publish reads.
ensure_producer() {
    local ctl="$BUILD/bin/eminectl" out
    export EMINE_PG_DSN="$PG_DSN"
    if [ -s "$VAR/producer.key" ] && "$ctl" producers list 2>/dev/null | grep -q '^local '; then
        return 0
    fi
    if "$ctl" producers list 2>/dev/null | grep -q '^local '; then
        out=$("$ctl" producers rotate local) || die "cannot rotate the key of producer local"
    else
        out=$("$ctl" producers add local --source '*' --type 'pk.gov.emining.*') ||
            die "cannot add producer local"
    fi
    (umask 077 && printf '%s\n' "$out" | tail -n 1 >"$VAR/producer.key")
    say "producer 'local' registered; its key is in var/producer.key"
    # ingest re-reads the producers table every few seconds; SIGHUP makes it do so now.
    local ipid
    if ipid=$(live_pid "$VAR/run/ingest.service.pid"); then
        kill -HUP "$ipid" 2>/dev/null || true
        sleep 0.3
    fi
}

# The supervisor of one service (runs detached, in its own session): starts the service,
# and when it exits for any reason other than our SIGTERM, starts it again 1 s later.
supervise() {
    local name=$1 bin="$BUILD/bin/emine-$1" child="" stopping=0 rc
    local cpid="$VAR/run/$name.service.pid"
    set +e
    trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
    while ((stopping == 0)); do
        "$bin" &
        child=$!
        echo "$child" >"$cpid"
        printf 'supervisor: started emine-%s pid %s\n' "$name" "$child"
        # wait returns early when our trap runs; wait again until the child is gone
        while :; do
            wait "$child"
            rc=$?
            kill -0 "$child" 2>/dev/null || break
        done
        rm -f "$cpid"
        ((stopping)) && break
        printf 'supervisor: emine-%s exited with code %s; restarting in 1 s\n' "$name" "$rc"
        sleep 1
    done
    printf 'supervisor: emine-%s stopped (code %s)\n' "$name" "$rc"
}

services_up() {
    local s pid
    export EMINE_PG_DSN="$PG_DSN" EMINE_REDIS_URL="$REDIS_URL"
    for s in "${SERVICES[@]}"; do
        if pid=$(live_pid "$VAR/run/$s.pid"); then
            say "emine-$s already supervised (pid $pid)"
        else
            setsid bash "$ROOT/deploy/local/stack.sh" __supervise "$s" \
                </dev/null >>"$VAR/log/$s.log" 2>&1 &
            echo $! >"$VAR/run/$s.pid"
            say "started emine-$s (supervisor pid $!, log var/log/$s.log)"
        fi
        wait_ready "$s" || die "emine-$s is not ready: see var/log/$s.log"
    done
}

wait_ready() {
    local s=$1 code="" deadline=$((SECONDS + READY_TIMEOUT))
    while ((SECONDS < deadline)); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://${HTTP[$s]}/readyz" || true)
        [ "$code" = 200 ] && { say "emine-$s ready (http://${HTTP[$s]})"; return 0; }
        sleep 0.2
    done
    tail -n 20 "$VAR/log/$s.log" >&2 || true
    return 1
}

services_down() {
    local i s pid spid
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        s=${SERVICES[$i]}
        pid=$(live_pid "$VAR/run/$s.pid") || { rm -f "$VAR/run/$s.pid"; continue; }
        say "stopping emine-$s"
        spid=$(live_pid "$VAR/run/$s.service.pid" || true)
        kill -TERM "$pid" 2>/dev/null || true
        local n
        for ((n = 0; n < 300; n++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "emine-$s did not stop in 30 s: SIGKILL"
            [ -n "$spid" ] && kill -9 "$spid" 2>/dev/null
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$VAR/run/$s.pid" "$VAR/run/$s.service.pid"
    done
}

status() {
    local bin s pid spid code
    bin=$(pgbin)
    pg_dirs
    if [ -f "$PGDATA/PG_VERSION" ] && aspg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        printf '%-10s running  127.0.0.1:%s\n' postgresql "$PG_PORT"
    else
        printf '%-10s stopped\n' postgresql
    fi
    if pid=$(live_pid "$VAR/run/redis.pid"); then
        printf '%-10s running  127.0.0.1:%s pid %s, ping %s\n' redis "$REDIS_PORT" "$pid" "$(redis_cli PING 2>&1)"
    else
        printf '%-10s stopped\n' redis
    fi
    for s in "${SERVICES[@]}"; do
        if pid=$(live_pid "$VAR/run/$s.pid"); then
            spid=$(live_pid "$VAR/run/$s.service.pid" || echo -)
            code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://${HTTP[$s]}/readyz" || true)
            printf '%-10s running  supervisor %s, service %s, /readyz %s\n' "$s" "$pid" "$spid" "$code"
        else
            printf '%-10s stopped\n' "$s"
        fi
    done
}

up() {
    local s
    for s in "${SERVICES[@]}"; do
        [ -x "$BUILD/bin/emine-$s" ] || die "no $BUILD/bin/emine-$s: build first (make)"
    done
    mkdir -p "$VAR/run" "$VAR/log"
    pg_up
    redis_up
    write_env
    services_up
    ensure_producer
    ensure_operator
    write_env
    say "up: environment in var/emine.env"
}

down() {
    services_down
    redis_down
    pg_down
    say "down"
}

run() {
    up
    bash "$ROOT/deploy/local/demo.sh" || say "demo failed (the stack keeps running)"
    say "following var/log/*.log; Ctrl-C stops the stack"
    tail -n 0 -F "$VAR"/log/{archive,validate,ingest,notify}.log &
    local tail_pid=$!
    trap 'kill "$tail_pid" 2>/dev/null; echo; down; exit 0' INT TERM
    wait "$tail_pid" || true
    down
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    run) run ;;
    __supervise) supervise "$2" ;;
    *) echo "usage: $0 {run|up|down|status}" >&2; exit 2 ;;
esac
