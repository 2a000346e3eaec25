#!/usr/bin/env bash
# The archive standby: a second archive waits on the PostgreSQL advisory lock (not ready, bus
# not bound); kill -9 of the active one while a producer publishes, and the standby takes
# over: every acknowledged event archived exactly once, no hole in seq, the chain verifies.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
N=${EM_STANDBY_EVENTS:-2000}

em_free_port SB_PORT
EMINE_ARCHIVE_HTTP=127.0.0.1:$SB_PORT "$EM_BUILD/bin/emine-archive" >"$T/standby.log" 2>&1 &
standby=$!
em_at_exit "kill -TERM $standby 2>/dev/null; wait $standby 2>/dev/null"
sleep 1
em_eq "the standby answers /healthz" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SB_PORT/healthz")" 200
em_eq "the standby is not ready while the writer holds the lock" "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SB_PORT/readyz")" 503

tests/fixtures/gen_events.sh "$N" sb >"$T/events.ndjson"
"$CTL" publish --batch 5 --inflight 4 --timeout-ms 1500 --deadline-s 120 --results "$T/r.jsonl" "$T/events.ndjson" 2>"$T/pub.err" &
pub=$!
deadline=$((SECONDS + 60))
while (($(em_psql 'select count(*) from events') < N / 3)) && ((SECONDS < deadline)); do sleep 0.2; done
em_kill9 archive
killed_at=$SECONDS
ready=0
while ((SECONDS - killed_at < 30)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SB_PORT/readyz")" = 200 ] && { ready=1; break; }
    sleep 0.1
done
em_eq "the standby takes over after kill -9 of the writer" "$ready" 1
em_log "standby ready $((SECONDS - killed_at)) s after the kill"
wait "$pub"
em_eq "the producer got an answer for every event" "$?" 0
em_log "$(cat "$T/pub.err")"
em_eq "every event archived exactly once" "$(em_psql "select count(*), count(distinct id) from events where id like 'sb-%'")" "$N|$N"
em_eq "no hole in seq" "$(em_psql 'select max(seq) - count(*) from events')" 0
em_check "the chain verifies" "$CTL" verify
em_done
