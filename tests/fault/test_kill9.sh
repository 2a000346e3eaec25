#!/usr/bin/env bash
# Faults while a producer publishes: kill -9 of archive, then validate, ingest and notify (each
# restarted, as the local stack's supervisor would), and a Redis FLUSHALL mid-stream.
# Invariants 1, 2, 3 and 5: every acknowledged event is in PostgreSQL exactly once, nothing
# is lost or duplicated, and the chain still verifies.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }

CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
N=${EM_FAULT_EVENTS:-3000}

tests/fixtures/gen_events.sh "$N" fault >"$T/events.ndjson"

# A slow, steady producer: small batches, a short re-send timeout.
"$CTL" publish --batch 5 --inflight 4 --timeout-ms 1500 --deadline-s 240 \
    --results "$T/results.jsonl" "$T/events.ndjson" 2>"$T/publish.err" &
pub=$!

# Waits until the archive holds at least $1 events (or 60 s).
wait_rows() {
    local want=$1 deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        (($(em_psql 'select count(*) from events' 2>/dev/null || echo 0) >= want)) && return 0
        sleep 0.2
    done
    return 1
}

for victim in archive validate ingest notify; do
    before=$(em_psql 'select count(*) from events')
    wait_rows $((before + N / 8)) || em_log "rows stalled at $before before killing $victim"
    em_kill9 "$victim"
    em_log "killed -9 $victim at $(em_psql 'select count(*) from events') rows"
    sleep 0.5
    em_start "$victim"
    if em_wait_ready "$victim"; then em_ok "$victim restarts after kill -9"; else em_fail "$victim restarts after kill -9"; fi
done
wait_rows $(($(em_psql 'select count(*) from events') + N / 10)) || true
em_redis FLUSHALL >/dev/null && em_ok "Redis FLUSHALL mid-stream"

wait "$pub"
rc=$?
em_log "$(cat "$T/publish.err")"
em_eq "the producer got an answer for every event (publish exit 0)" "$rc" 0
em_eq "every event acknowledged accepted or duplicate" \
    "$(em_js 'l.filter(x=>x.status==="accepted"||x.status==="duplicate").length' <"$T/results.jsonl")" "$N"
em_eq "every event is archived" "$(em_psql "select count(*) from events where id like 'fault-%'")" "$N"
em_eq "exactly once: no (source,id) twice" "$(em_psql "select count(distinct (source,id)) from events")" "$N"
em_eq "seqs have no hole" "$(em_psql 'select max(seq) - count(*) from events')" 0
em_eq "each acknowledged seq is that event's archived seq" \
    "$(em_js 'l.map(x=>x.id+":"+x.seq).sort().join(",")' <"$T/results.jsonl" | md5sum)" \
    "$(em_psql "select string_agg(id||':'||seq, ',' order by (id||':'||seq) collate \"C\") from events" | md5sum)"
em_eq "no conflict or store error was dead-lettered" "$(em_psql "select count(*) from rejected_events")" 0
em_check "the hash chain verifies" "$CTL" verify

# The stream after all of that: every event once, in order.
timeout 60 "$CTL" tail --from 0 --count "$N" >"$T/tail.jsonl"
em_eq "the stream delivers every committed event in seq order" "$(em_js "l.length===$N && l.every((x,i)=>x.seq===i+1)" <"$T/tail.jsonl")" true

# SIGTERM: each service drains and exits 0; archive's last batch is committed first.
tests/fixtures/gen_events.sh 500 term >"$T/term.ndjson"
"$CTL" publish --batch 10 --inflight 8 --timeout-ms 1000 --deadline-s 20 --results "$T/term.jsonl" "$T/term.ndjson" 2>/dev/null &
pub=$!
sleep 0.3
for s in ingest validate archive notify; do
    em_stop "$s"
    em_eq "$s exits 0 on SIGTERM" "$EM_EXIT" 0
done
wait "$pub"
acked=$(em_js 'l.filter(x=>x.status==="accepted"||x.status==="duplicate").map(x=>"\x27"+x.id+"\x27").join(",")' <"$T/term.jsonl")
if [ -n "$acked" ]; then
    em_eq "every event acknowledged before the stop is archived" \
        "$(em_psql "select count(*) from events where id in ($acked)")" "$(em_js 'l.filter(x=>x.status==="accepted"||x.status==="duplicate").length' <"$T/term.jsonl")"
else
    em_fail "some events were acknowledged before the stop"
fi
em_done
