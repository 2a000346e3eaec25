# harness.sh - sourced by the shell tests (bash): a real PostgreSQL and Redis in a temporary
# folder, the emine services started from $EM_BUILD/bin, and TAP-like assertions.
#
#   source tests/lib/harness.sh     # cds to the repository root
#   em_harness_start                # PostgreSQL + Redis + free ports, exported as EMINE_* env
#   em_start_all                    # archive, validate, ingest, notify, each ready
#   em_eq "count" "$(em_psql 'select count(*) from events')" 3
#   em_done                         # "<script>: N passed, M failed"; non-zero if any failed
#
# Everything is stopped and the temporary folder removed on exit (kept when EM_KEEP=1).
# Do not install your own EXIT trap: register extra clean-up with em_at_exit CMD.
#
# Also: em_start NAME [args], em_wait_ready NAME [s], em_stop NAME (EM_EXIT = exit code),
# em_kill9 NAME, em_restart NAME, em_pid NAME, em_log_tail [NAME]; em_pg_stop [mode] /
# em_pg_start, em_redis_stop / em_redis_start (same port); em_psql, em_psql_admin (superuser),
# em_redis; em_free_port VAR; em_operator_key (EMINE_KEY); em_ok, em_fail, em_check DESC CMD...,
# em_eq DESC GOT WANT; em_curve_keypair PUB SEC (CurveZMQ), em_relay VAR TARGET CAPTURE (a
# recording TCP relay).
# Environment: EM_BUILD (build), EM_KEEP, EM_READY_TIMEOUT (60 s), EM_STOP_TIMEOUT (30 s).
# Safe to source from scripts that use set -euo pipefail.

EM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$EM_ROOT" || exit 1
EM_BUILD=${EM_BUILD:-build}
EM_SCRIPT=$(basename "$0")
EM_READY_TIMEOUT=${EM_READY_TIMEOUT:-60}
EM_STOP_TIMEOUT=${EM_STOP_TIMEOUT:-30}

EM_PASS=0
EM_FAILN=0
EM_DONE=0
EM_TMP=""
EM_EXIT=""           # exit code of the last process em_stop / em_kill9 waited for
EM_REDIS_PID=""
EM_AT_EXIT=()
declare -A EM_PIDS=()  # service name -> pid of the running process
declare -A EM_ARGS=()  # service name -> arguments it was started with (for em_restart)
EM_USED_PORTS=" "

# ---------------------------------------------------------------------------------------------
# Small helpers

em_log() { printf '# %s\n' "$*" >&2; }

# The newest PostgreSQL server binary folder.
em__pgbin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$d" ]; then
        d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    fi
    [ -x "$d/initdb" ] || { em_log "PostgreSQL server binaries not found (run make deps)"; return 1; }
    printf '%s\n' "$d"
}

# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
em__aspg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# em_free_port VAR: sets VAR to a TCP port nobody uses (in any state) and that this harness
# has not handed out yet (so call it in this shell, not in a $(...) subshell).  Random start
# in 20000-60000; the kernel's ephemeral range is skipped so that an outgoing connection
# cannot take the port between this check and the bind.
em_free_port() {
    local _fp_lo=20000 _fp_hi=60000 _fp_elo=0 _fp_ehi=0 _fp_n _fp_total _fp_p _fp_used
    read -r _fp_elo _fp_ehi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
    _fp_used=" $(ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }') "
    _fp_total=$((_fp_hi - _fp_lo + 1))
    _fp_p=$((_fp_lo + (RANDOM * 32768 + RANDOM) % _fp_total))
    for ((_fp_n = 0; _fp_n < _fp_total; _fp_n++)); do
        _fp_p=$((_fp_p + 1))
        ((_fp_p > _fp_hi)) && _fp_p=$_fp_lo
        if ((_fp_p >= _fp_elo && _fp_p <= _fp_ehi)); then
            # jump over the ephemeral range; when it reaches the top, to a random point below it
            if ((_fp_ehi < _fp_hi)); then
                _fp_p=$_fp_ehi
            else
                _fp_p=$((_fp_lo - 1 + RANDOM % (_fp_elo - _fp_lo)))
            fi
            continue
        fi
        case "$_fp_used$EM_USED_PORTS" in *" $_fp_p "*) continue ;; esac
        EM_USED_PORTS="$EM_USED_PORTS$_fp_p "
        printf -v "$1" '%s' "$_fp_p"
        return 0
    done
    em_log "no free TCP port"
    return 1
}

# ---------------------------------------------------------------------------------------------
# The servers

em__start_pg() {
    local bin port
    bin=$(em__pgbin) || return 1
    EM_PGBIN=$bin
    em_free_port port || return 1
    EM_PG_PORT=$port
    mkdir -p "$EM_TMP/pg" "$EM_TMP/run"
    touch "$EM_TMP/postgres.log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$EM_TMP/pg" "$EM_TMP/run" "$EM_TMP/postgres.log"; fi
    # -N: initdb itself skips fsync (speed); the server runs with fsync on.
    if ! em__aspg "$bin/initdb" -D "$EM_TMP/pg" -U postgres -A trust -E UTF8 --locale=C -N \
        >"$EM_TMP/initdb.log" 2>&1; then
        em_log "initdb failed:"; sed 's/^/#   /' "$EM_TMP/initdb.log" >&2; return 1
    fi
    if ! em__aspg "$bin/pg_ctl" -D "$EM_TMP/pg" -l "$EM_TMP/postgres.log" -w -t 60 \
        -o "-p $port -k $EM_TMP/run -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
        start >/dev/null; then
        em_log "PostgreSQL did not start:"; tail -n 20 "$EM_TMP/postgres.log" | sed 's/^/#   /' >&2
        return 1
    fi
    EM_PG_ADMIN_DSN="host=127.0.0.1 port=$port dbname=postgres user=postgres connect_timeout=5"
    "$bin/psql" -X -q -At -v ON_ERROR_STOP=1 "$EM_PG_ADMIN_DSN" \
        -c "CREATE ROLE emine LOGIN" -c "CREATE DATABASE emine OWNER emine" >/dev/null || return 1
    export EMINE_PG_DSN="host=127.0.0.1 port=$port dbname=emine user=emine connect_timeout=5"
    export EM_PG_ADMIN_DSN EM_PG_PORT EM_PGBIN
}

em__start_redis() {
    local port i
    em_free_port port || return 1
    EM_REDIS_PORT=$port
    EM_REDIS_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    mkdir -p "$EM_TMP/redis"
    redis-server --port "$port" --bind 127.0.0.1 --requirepass "$EM_REDIS_PASSWORD" \
        --save "" --appendonly no --daemonize no --dir "$EM_TMP/redis" \
        --logfile "$EM_TMP/redis.log" </dev/null >/dev/null 2>&1 &
    EM_REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        if [ "$(em_redis PING 2>/dev/null)" = "PONG" ]; then
            export EMINE_REDIS_URL="redis://:$EM_REDIS_PASSWORD@127.0.0.1:$port/0"
            export EM_REDIS_PORT EM_REDIS_PASSWORD
            return 0
        fi
        kill -0 "$EM_REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    em_log "Redis did not start:"; tail -n 20 "$EM_TMP/redis.log" | sed 's/^/#   /' >&2
    return 1
}

# Starts PostgreSQL and Redis in a new temporary folder and exports the environment the
# services and eminectl read: EMINE_PG_DSN, EMINE_REDIS_URL, a free port for every endpoint,
# EMINE_CONFIG.  Also EM_TMP, EM_PG_ADMIN_DSN (superuser), EM_REDIS_PORT, EM_REDIS_PASSWORD.
em_harness_start() {
    trap em__exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    EM_TMP=$(mktemp -d /tmp/emine-test.XXXXXX) || return 1
    chmod 755 "$EM_TMP" # the postgres user must reach its data folder
    export EM_TMP
    em__start_pg || { em_fail "harness: PostgreSQL starts"; return 1; }
    em__start_redis || { em_fail "harness: Redis starts"; return 1; }
    local v p
    for v in BUS_PIPELINE BUS_VALIDATED BUS_ACKS BUS_EVENTS INGEST_ZMQ NOTIFY_ZMQ; do
        em_free_port p || return 1
        export "EMINE_$v=tcp://127.0.0.1:$p"
    done
    for v in INGEST_HTTP VALIDATE_HTTP ARCHIVE_HTTP NOTIFY_HTTP; do
        em_free_port p || return 1
        export "EMINE_$v=127.0.0.1:$p"
    done
    export EMINE_CONFIG=config/emine.conf
    # Producer authentication is tested on its own (tests/e2e/test_auth.sh); the other tests
    # publish as the anonymous producer unless they set EMINE_INGEST_AUTH=true first.
    export EMINE_INGEST_AUTH=${EMINE_INGEST_AUTH:-false}
    em_log "harness: $EM_TMP  pg :$EM_PG_PORT  redis :$EM_REDIS_PORT"
}

# Stops PostgreSQL (fast: active transactions roll back) / starts it again on the same port.
em_pg_stop() { em__aspg "$EM_PGBIN/pg_ctl" -D "$EM_TMP/pg" -m "${1:-fast}" -w stop >/dev/null; }
em_pg_start() {
    em__aspg "$EM_PGBIN/pg_ctl" -D "$EM_TMP/pg" -l "$EM_TMP/postgres.log" -w -t 60 \
        -o "-p $EM_PG_PORT -k $EM_TMP/run -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
        start >/dev/null
}
# Stops Redis (SIGKILL: its data is gone) / starts it again, empty, on the same port.
em_redis_stop() {
    if [ -n "$EM_REDIS_PID" ]; then
        kill -9 "$EM_REDIS_PID" 2>/dev/null || true
        wait "$EM_REDIS_PID" 2>/dev/null || true
        EM_REDIS_PID=""
    fi
}
em_redis_start() {
    local i
    redis-server --port "$EM_REDIS_PORT" --bind 127.0.0.1 --requirepass "$EM_REDIS_PASSWORD" \
        --save "" --appendonly no --daemonize no --dir "$EM_TMP/redis" \
        --logfile "$EM_TMP/redis.log" </dev/null >/dev/null 2>&1 &
    EM_REDIS_PID=$!
    for ((i = 0; i < 100; i++)); do
        [ "$(em_redis PING 2>/dev/null)" = "PONG" ] && return 0
        sleep 0.1
    done
    return 1
}

# psql -At against the test database as role emine; each argument is one -c command.
em_psql() {
    local a args=()
    for a in "$@"; do args+=(-c "$a"); done
    "$EM_PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$EMINE_PG_DSN" "${args[@]}"
}
# The same as the superuser postgres (for pg_terminate_backend and the like).
em_psql_admin() {
    local a args=()
    for a in "$@"; do args+=(-c "$a"); done
    "$EM_PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "${EM_PG_ADMIN_DSN/dbname=postgres/dbname=emine}" "${args[@]}"
}
# redis-cli with the password.
em_redis() {
    redis-cli -h 127.0.0.1 -p "$EM_REDIS_PORT" -a "$EM_REDIS_PASSWORD" --no-auth-warning "$@"
}

# ---------------------------------------------------------------------------------------------
# The services

em__upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }

# em_start NAME [args]: starts $EM_BUILD/bin/emine-NAME in the background, output appended to
# $EM_TMP/NAME.log.
em_start() {
    local name=$1
    shift
    local bin="$EM_BUILD/bin/emine-$name"
    [ -x "$bin" ] || { em_log "no $bin (build first)"; return 1; }
    EM_ARGS[$name]="$*"
    printf -- '--- start %s %s\n' "$(date +%T.%N)" "$*" >>"$EM_TMP/$name.log"
    "$bin" "$@" >>"$EM_TMP/$name.log" 2>&1 &
    EM_PIDS[$name]=$!
}

# em_pid NAME: pid of the running service (empty if not started by the harness).
em_pid() { printf '%s\n' "${EM_PIDS[$1]:-}"; }

# em_wait_ready NAME [timeout_s]: polls http://$EMINE_<NAME>_HTTP/readyz until 200.
em_wait_ready() {
    local name=$1 timeout=${2:-$EM_READY_TIMEOUT} var addr code deadline pid
    var="EMINE_$(em__upper "$name")_HTTP"
    addr=${!var}
    pid=${EM_PIDS[$name]:-}
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$addr/readyz" 2>/dev/null || true)
        [ "$code" = "200" ] && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            em_log "emine-$name (pid $pid) exited before it was ready:"
            em_log_tail "$name"
            return 1
        fi
        sleep 0.1
    done
    em_log "emine-$name not ready on http://$addr/readyz after ${timeout}s (last code $code):"
    em_log_tail "$name"
    return 1
}

# Waits for pid (a child of this shell) for at most timeout seconds, then SIGKILLs it.
# Sets EM_EXIT to its exit code (128+signal when killed by one).
em__reap() {
    local pid=$1 timeout=$2 watchdog
    # The watchdog keeps no descriptor of ours open, so a caller reading our output is not
    # held up by its sleep.
    (sleep "$timeout" && kill -9 "$pid") </dev/null >/dev/null 2>&1 &
    watchdog=$!
    EM_EXIT=0
    wait "$pid" 2>/dev/null || EM_EXIT=$?
    pkill -P "$watchdog" 2>/dev/null || true
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    return 0
}

# em_stop NAME: SIGTERM, wait (EM_STOP_TIMEOUT, then SIGKILL); EM_EXIT = its exit code.
em_stop() {
    local name=$1 pid=${EM_PIDS[$1]:-}
    [ -n "$pid" ] || { em_log "em_stop: $name is not running"; EM_EXIT=""; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    em__reap "$pid" "$EM_STOP_TIMEOUT"
    if ((EM_EXIT == 137)); then em_log "emine-$name did not stop within ${EM_STOP_TIMEOUT}s of SIGTERM: killed"; fi
    unset 'EM_PIDS[$name]'
    printf -- '--- exit %s code %s\n' "$(date +%T.%N)" "$EM_EXIT" >>"$EM_TMP/$name.log"
    em_log "emine-$name exited with code $EM_EXIT"
}

# em_kill9 NAME: SIGKILL at once; EM_EXIT = 137.
em_kill9() {
    local name=$1 pid=${EM_PIDS[$1]:-}
    [ -n "$pid" ] || { em_log "em_kill9: $name is not running"; EM_EXIT=""; return 0; }
    kill -9 "$pid" 2>/dev/null || true
    em__reap "$pid" 10
    unset 'EM_PIDS[$name]'
    printf -- '--- kill -9 %s\n' "$(date +%T.%N)" >>"$EM_TMP/$name.log"
}

# em_restart NAME: stops it (if running), starts it with the same arguments, waits ready.
em_restart() {
    local name=$1 args
    if [ -n "${EM_PIDS[$name]:-}" ]; then em_stop "$name"; fi
    read -r -a args <<<"${EM_ARGS[$name]:-}" || true
    em_start "$name" "${args[@]}" && em_wait_ready "$name"
}

# Starts archive, validate, ingest and notify, in that order, each waited ready; then
# em_operator_key (EMINE_KEY for `eminectl tail`).
em_start_all() {
    local s
    for s in archive validate ingest notify; do
        em_start "$s" && em_wait_ready "$s" || return 1
    done
    em_operator_key
}

# em_operator_key: exports EMINE_KEY, the API key of the operator organisation `emine-ops`
# (kind operator: sees every tier), created with eminectl once archive has migrated the
# schema.  `eminectl tail` reads EMINE_KEY.  No-op when EMINE_KEY is already set.
em_operator_key() {
    local ctl="$EM_BUILD/bin/eminectl" key
    [ -n "${EMINE_KEY:-}" ] && return 0
    if [ "$(em_psql "SELECT count(*) FROM organisations WHERE id = 'emine-ops'")" = 0 ]; then
        "$ctl" subs org-create emine-ops --kind operator --name "platform operators" >/dev/null ||
            { em_log "em_operator_key: cannot create the operator organisation"; return 1; }
    fi
    key=$("$ctl" subs key-create emine-ops --label tests 2>/dev/null) ||
        { em_log "em_operator_key: cannot create a key"; return 1; }
    export EMINE_KEY=$key
}

# em_curve_keypair PUBVAR SECVAR: a new CurveZMQ keypair (`eminectl keygen`, Z85) into the two
# variables (call it in this shell, not in a $(...) subshell).  Z85 keys hold characters such
# as $ & * ! < >: always quote them.
em_curve_keypair() {
    local _ck_out
    _ck_out=$("$EM_BUILD/bin/eminectl" keygen) || return 1
    printf -v "$1" '%s' "$(printf '%s\n' "$_ck_out" | sed -n 's/^public //p')"
    printf -v "$2" '%s' "$(printf '%s\n' "$_ck_out" | sed -n 's/^secret //p')"
}

# em_relay VAR TARGET CAPTURE: starts tests/lib/tcp_relay.mjs on a free port forwarding to
# TARGET (host:port or tcp://host:port) and recording both directions in CAPTURE; sets VAR to
# the relay's tcp://127.0.0.1:PORT endpoint.  Stopped on exit.
em_relay() {
    local _rl_port _rl_pid _rl_i _rl_target=${2#tcp://}
    em_free_port _rl_port || return 1
    node "$EM_ROOT/tests/lib/tcp_relay.mjs" "$_rl_port" "$_rl_target" "$3" >"$3.out" 2>&1 &
    _rl_pid=$!
    em_at_exit "kill $_rl_pid 2>/dev/null; wait $_rl_pid 2>/dev/null"
    for ((_rl_i = 0; _rl_i < 100; _rl_i++)); do
        grep -q ready "$3.out" 2>/dev/null && { printf -v "$1" 'tcp://127.0.0.1:%s' "$_rl_port"; return 0; }
        sleep 0.1
    done
    em_log "em_relay: the relay did not start"; return 1
}

# The last lines of a service's log (or of every log when no name is given), as comments.
em_log_tail() {
    local f names=("$@")
    [ -n "$EM_TMP" ] || return 0
    if [ ${#names[@]} -eq 0 ]; then
        for f in "$EM_TMP"/*.log; do
            [ -e "$f" ] && [ "$f" != "$EM_TMP/initdb.log" ] && names+=("$(basename "$f" .log)")
        done
    fi
    for f in "${names[@]}"; do
        [ -s "$EM_TMP/$f.log" ] || continue
        printf '# ---- tail of %s.log\n' "$f" >&2
        tail -n "${EM_TAIL_LINES:-25}" "$EM_TMP/$f.log" | sed 's/^/#   /' >&2
    done
}

# ---------------------------------------------------------------------------------------------
# Assertions

em_ok() { EM_PASS=$((EM_PASS + 1)); printf 'ok - %s\n' "$1"; }

# em_fail DESC [DETAIL]
em_fail() {
    EM_FAILN=$((EM_FAILN + 1))
    if [ $# -gt 1 ]; then printf 'not ok - %s (%s)\n' "$1" "$2"; else printf 'not ok - %s\n' "$1"; fi
}

# em_check DESC CMD...: ok when CMD exits 0; its output is shown only on failure.
em_check() {
    local desc=$1 out rc
    shift
    if out=$("$@" 2>&1); then rc=0; else rc=$?; fi
    if [ $rc -eq 0 ]; then
        em_ok "$desc"
    else
        em_fail "$desc" "exit $rc"
        [ -n "$out" ] && printf '%s\n' "$out" | tail -n 20 | sed 's/^/#   /'
    fi
    return 0
}

# em_eq DESC ACTUAL EXPECTED
em_eq() {
    if [ "$2" = "$3" ]; then em_ok "$1"; else em_fail "$1" "got $2, want $3"; fi
}

# Prints "<script>: N passed, M failed"; returns non-zero if any failed or none was asserted.
em_done() {
    EM_DONE=1
    if ((EM_FAILN > 0)); then em_log_tail; fi
    printf '%s: %d passed, %d failed\n' "$EM_SCRIPT" "$EM_PASS" "$EM_FAILN"
    if ((EM_PASS + EM_FAILN == 0)); then
        em_log "nothing was asserted"
        return 1
    fi
    ((EM_FAILN == 0))
}

# em_js EXPR < FILE.jsonl: evaluates the JavaScript expression EXPR with `l` bound to the
# array of JSON lines read from stdin (Node.js); prints a string as it is, anything else as
# JSON.  E.g. em_js 'l.filter(x=>x.status==="accepted").length' <results.jsonl
em_js() {
    node -e 'const l=require("fs").readFileSync(0,"utf8").trim().split("\n").filter(Boolean).map(JSON.parse);const f=new Function("l","return ("+process.argv[1]+")");const r=f(l);console.log(typeof r==="string"?r:JSON.stringify(r))' "$1"
}

# em_at_exit CMD...: run CMD (as one string, eval'd) when the script exits, before the
# services and servers are stopped.
em_at_exit() { EM_AT_EXIT+=("$*"); }

em__exit() {
    local rc=$? name c
    set +e
    trap - EXIT INT TERM
    for c in "${EM_AT_EXIT[@]}"; do eval "$c" || true; done
    if ((EM_DONE == 0)); then
        em_log "$EM_SCRIPT exited with code $rc before em_done"
        em_log_tail
        printf '%s: %d passed, %d failed\n' "$EM_SCRIPT" "$EM_PASS" "$((EM_FAILN + 1))"
        ((rc == 0)) && rc=1
    fi
    for name in "${!EM_PIDS[@]}"; do kill -TERM "${EM_PIDS[$name]}" 2>/dev/null; done
    for name in "${!EM_PIDS[@]}"; do em__reap "${EM_PIDS[$name]}" 10; done
    em_redis_stop
    if [ -n "$EM_TMP" ] && [ -f "$EM_TMP/pg/postmaster.pid" ]; then
        em__aspg "$EM_PGBIN/pg_ctl" -D "$EM_TMP/pg" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "$EM_TMP" ]; then
        if [ "${EM_KEEP:-0}" = 1 ]; then
            em_log "kept $EM_TMP"
        else
            rm -rf "$EM_TMP"
        fi
    fi
    exit "$rc"
}
