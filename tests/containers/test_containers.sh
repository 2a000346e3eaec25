#!/usr/bin/env bash
# test_containers.sh - the container deployment on a real Docker engine (make test-containers).
#
# Prepares the machine if needed: docker.io, docker-compose and debootstrap from Debian (apt),
# a dockerd started with --bridge=none --iptables=false --ip-forward=false when none runs, the
# debian:bookworm(-slim) base images built with debootstrap when missing (nothing is pulled).
# Then: checks deploy/k8s (YAML) and deploy/systemd (systemd-analyze verify, when present),
# builds the images, starts deploy/compose.yaml (project emine-ctr, host networking, ports
# 17001../18001../55532/56479), waits for every health check and runs the smoke: a producer
# added with eminectl in a one-shot container, events published with the image's eminectl ->
# rows in PostgreSQL -> eminectl tail sees them -> eminectl verify passes; kill -9 of the
# active archive and the standby takes over; SIGTERM (docker-compose stop) and every service
# exits 0.  Prints "containers: N passed, M failed"; tears the stack and its volumes down (the
# images stay as the cache).  EM_CTR_KEEP=1 leaves the stack running.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PROJECT=${EM_CTR_PROJECT:-emine-ctr}
N=${EM_CTR_EVENTS:-300}
PASS=0
FAILN=0
T=$(mktemp -d /tmp/emine-ctr.XXXXXX)
chmod 700 "$T"
export EMINE_SECRETS_DIR="$T/secrets"
DC=(docker-compose -f "$ROOT/deploy/compose.yaml" -p "$PROJECT")
START=$SECONDS

log() { printf 'containers: %s\n' "$*"; }
ok() { PASS=$((PASS + 1)); printf 'ok - %s\n' "$1"; }
fail() { FAILN=$((FAILN + 1)); printf 'FAIL - %s\n' "$1"; }
eq() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', want '$3')"; fi; }
check() { local d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }

finish() {
    if [ "${EM_CTR_KEEP:-0}" != 1 ]; then
        "${DC[@]}" down -v --remove-orphans >"$T/down.log" 2>&1 || cat "$T/down.log"
        rm -rf "$T"
    else
        log "kept: EMINE_SECRETS_DIR=$EMINE_SECRETS_DIR ${DC[*]} down -v"
    fi
    printf 'containers: %d passed, %d failed (%d s)\n' "$PASS" "$FAILN" $((SECONDS - START))
    [ "$FAILN" -eq 0 ] && [ "$PASS" -gt 0 ]
}
trap 'finish; exit $?' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the machine: packages, engine, base images ----------------------------------------------
need=""
command -v docker >/dev/null 2>&1 || need="$need docker.io"
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
if [ -n "$need" ]; then
    log "installing:$need"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >"$T/apt.log" 2>&1 ||
        { tail -n 20 "$T/apt.log"; fail "apt-get install$need"; exit 1; }
fi
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (no bridge, no iptables: containers use host networking)"
    nohup dockerd --bridge=none --iptables=false --ip-forward=false >/var/log/emine-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
check "a Docker engine answers" docker info >/dev/null 2>&1 || exit 1
t0=$SECONDS
bash deploy/containers/base-image.sh || { fail "base images debian:bookworm(-slim)"; exit 1; }
ok "base images debian:bookworm and debian:bookworm-slim ($((SECONDS - t0)) s)"

# ---- deploy/k8s and deploy/systemd -----------------------------------------------------------
if python3 -c 'import yaml' 2>/dev/null; then
    check "deploy/k8s: manifests parse; probes, Services, Secret keys and HPAs consistent" \
        python3 tests/containers/check_k8s.py deploy/k8s "$T/k8s.conf"
else
    fail "deploy/k8s: python3 yaml (python3-yaml, a docker-compose dependency) is missing"
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    check "deploy/systemd: systemd-analyze verify" bash tests/containers/check_systemd.sh
else
    log "systemd-analyze is not installed: deploy/systemd only checked for its keys"
    check "deploy/systemd: every unit has ExecStart, Restart=always, EnvironmentFile" \
        bash tests/containers/check_systemd.sh --keys-only
fi

# ---- images ----------------------------------------------------------------------------------
t0=$SECONDS
bash deploy/containers/build-image.sh >"$T/build.log" 2>&1 ||
    { grep -v -e DEPRECATED -e BuildKit -e environment-variable "$T/build.log" | tail -n 30; fail "images build"; exit 1; }
ok "images emine:local, emine-postgres:local, emine-redis:local build ($((SECONDS - t0)) s)"
if [ -f "$T/k8s.conf" ]; then
    check "deploy/k8s: the ConfigMap's emine.conf is accepted by every service" \
        docker run --rm -i emine:local sh -c 'cat >/tmp/k8s.conf && for s in ingest validate archive notify; do emine-$s -c /tmp/k8s.conf --dump-config >/dev/null || exit 1; done' <"$T/k8s.conf"
fi
eq "the image runs as a non-root user" "$(docker run --rm emine:local id -un)" emine
eq "tini is PID 1" "$(docker run --rm emine:local cat /proc/1/comm)" tini
eq "the runtime image has no compiler" "$(docker run --rm emine:local sh -c 'command -v cc gcc || echo none')" none
check "the image's services print their configuration" \
    docker run --rm emine:local sh -c 'for s in ingest validate archive notify; do emine-$s --dump-config >/dev/null || exit 1; done'

# ---- the compose stack -----------------------------------------------------------------------
mkdir -p "$EMINE_SECRETS_DIR"
openssl rand -hex 16 >"$EMINE_SECRETS_DIR/pg_password"
openssl rand -hex 16 >"$EMINE_SECRETS_DIR/redis_password"
chmod 644 "$EMINE_SECRETS_DIR"/* # read by the containers' own users; the folder is 0700
"${DC[@]}" down -v --remove-orphans >/dev/null 2>&1
t0=$SECONDS
check "docker-compose up -d" "${DC[@]}" up -d --no-build >"$T/up.log" 2>&1 || { cat "$T/up.log"; exit 1; }
SVCS=(postgres redis archive archive-standby validate-1 validate-2 ingest notify)
cid() { "${DC[@]}" ps -q "$1"; }
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(cid "$1")" 2>/dev/null; }
all_healthy() { local s; for s in "${SVCS[@]}"; do [ "$(health "$s")" = healthy ] || return 1; done; }
for _ in $(seq 1 120); do all_healthy && break; sleep 0.5; done
if all_healthy; then
    ok "all ${#SVCS[@]} containers healthy $((SECONDS - t0)) s after up"
else
    for s in "${SVCS[@]}"; do log "$s: $(health "$s")"; done
    fail "all containers healthy"
    "${DC[@]}" logs --tail 20
    exit 1
fi
eq "the standby archive waits on the lock (/readyz 503)" \
    "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18013/readyz)" 503
inspect=$(docker inspect "$(cid ingest)" "$(cid postgres)" "$(cid redis)")
eq "no password in the containers' configuration" \
    "$(grep -c -F -e "$(cat "$EMINE_SECRETS_DIR/pg_password")" -e "$(cat "$EMINE_SECRETS_DIR/redis_password")" <<<"$inspect")" 0

# ---- smoke: publish -> archive -> stream ---------------------------------------------------------
# eminectl from the image; files go in on stdin (the container's user cannot read $T).
ctl() { docker run --rm -i --network host --env-file "$T/ctl.env" emine:local "$@"; }
psql_q() { docker exec "$(cid postgres)" psql -X -At -h /var/run/postgresql -p 55532 -U postgres -d emine -c "$1"; }
KEY=$("${DC[@]}" run -T --rm ctl eminectl producers add smoke --source /operators/ --type 'pk.gov.emining.*' 2>"$T/producer.err" | tail -n 1)
eq "eminectl producers add in a one-shot container prints a key" "$(printf '%s' "$KEY" | grep -cE '^[0-9a-f]{64}$')" 1
# The stream sends only what the key's organisation may see: tail as an operator (every tier).
OPKEY=emk_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
psql_q "INSERT INTO organisations (id, kind, name) VALUES ('ctr-ops', 'operator', 'smoke') ON CONFLICT DO NOTHING" >/dev/null
psql_q "INSERT INTO api_keys (org_id, key_hash, label) VALUES ('ctr-ops', encode(sha256('$OPKEY'), 'hex'), 'smoke')" >/dev/null
cat >"$T/ctl.env" <<ENV
EMINE_INGEST_ZMQ=tcp://127.0.0.1:17001
EMINE_NOTIFY_ZMQ=tcp://127.0.0.1:17004
EMINE_PG_DSN=host=127.0.0.1 port=55532 dbname=emine user=emine connect_timeout=5
EMINE_PG_PASSWORD=$(cat "$EMINE_SECRETS_DIR/pg_password")
EMINE_PRODUCER=smoke
EMINE_PRODUCER_KEY=$KEY
EMINE_KEY=$OPKEY
ENV
chmod 600 "$T/ctl.env"
for _ in $(seq 1 40); do
    [ "$(docker logs "$(cid ingest)" 2>&1 | grep -c '1 producers admitted')" -gt 0 ] && break
    sleep 0.25
done
tests/fixtures/gen_events.sh "$N" ctr >"$T/events.ndjson"
t0=$SECONDS
ctl eminectl publish --batch 10 --deadline-s 60 --results /dev/null - <"$T/events.ndjson" 2>"$T/pub.err"
eq "eminectl publish (from the image): every event accepted" "$?" 0
log "$(cat "$T/pub.err")"
eq "the events are rows in PostgreSQL" "$(psql_q "select count(*), count(distinct id) from events where id like 'ctr-%'")" "$N|$N"
ctl eminectl tail --from 0 --count "$N" --timeout-ms 10000 </dev/null >"$T/tail.ndjson" 2>"$T/tail.err"
eq "eminectl tail streams them from notify" \
    "$(grep -c '"id":"ctr-' "$T/tail.ndjson")" "$N"
check "eminectl verify: the hash chain holds" ctl eminectl verify </dev/null >"$T/verify.out" 2>&1
check "GET /metrics answers on every service" bash -c \
    'for p in 18001 18002 18012 18003 18004; do curl -fsS -o /dev/null http://127.0.0.1:$p/metrics || exit 1; done'

# ---- the standby takes over after kill -9 of the active archive ------------------------------
docker kill -s KILL "$(cid archive)" >/dev/null
killed=$SECONDS
ready=0
while ((SECONDS - killed < 30)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18013/readyz)" = 200 ] && { ready=1; break; }
    sleep 0.2
done
eq "the standby archive takes over after kill -9 of the active one" "$ready" 1
log "standby ready $((SECONDS - killed)) s after the kill"
tests/fixtures/gen_events.sh 50 ctr2 >"$T/events2.ndjson"
ctl eminectl publish --batch 5 --deadline-s 60 --results /dev/null - <"$T/events2.ndjson" 2>"$T/pub2.err"
eq "publishing through the standby: every event accepted" "$?" 0
eq "nothing lost, no hole in seq" "$(psql_q "select count(*), max(seq) - count(*) from events")" "$((N + 50))|0"
"${DC[@]}" start archive >/dev/null 2>&1 # back as the new standby

# ---- SIGTERM of ingest under load: no acknowledged event lost ----------------------------------
M=${EM_CTR_LOAD_EVENTS:-5000}
tests/fixtures/gen_events.sh "$M" ctr3 >"$T/events3.ndjson"
ctl eminectl publish --inflight 8 --timeout-ms 1500 --deadline-s 120 --results /dev/stdout - \
    <"$T/events3.ndjson" >"$T/r3.jsonl" 2>"$T/pub3.err" &
pub=$!
for _ in $(seq 1 200); do
    (($(psql_q "select count(*) from events where id like 'ctr3-%'") >= M / 10)) && break
    sleep 0.05
done
"${DC[@]}" stop -t 30 ingest >/dev/null 2>&1
eq "SIGTERM under load: ingest drains and exits 0" "$(docker inspect -f '{{.State.ExitCode}}' "$(cid ingest)")" 0
at_stop=$(psql_q "select count(*) from events where id like 'ctr3-%'")
"${DC[@]}" start ingest >/dev/null 2>&1
wait "$pub"
eq "the producer gets an answer for every event across the restart" "$?" 0
log "ingest stopped after $at_stop of $M events; $(cat "$T/pub3.err")"
eq "every event acknowledged, archived exactly once" \
    "$(grep -cE '"status": ?"(accepted|duplicate)"' "$T/r3.jsonl") $(psql_q "select count(*), count(distinct id) from events where id like 'ctr3-%'")" "$M $M|$M"
check "eminectl verify after the restarts" ctl eminectl verify </dev/null >"$T/verify2.out" 2>&1

# ---- SIGTERM -----------------------------------------------------------------------------------
sleep 1
"${DC[@]}" stop >"$T/stop.log" 2>&1
for s in archive archive-standby validate-1 validate-2 ingest notify; do
    eq "SIGTERM: $s exits 0" "$(docker inspect -f '{{.State.ExitCode}}' "$(cid "$s")")" 0
done
eq "SIGTERM: postgres and redis exit 0" \
    "$(docker inspect -f '{{.State.ExitCode}}' "$(cid postgres)") $(docker inspect -f '{{.State.ExitCode}}' "$(cid redis)")" "0 0"
