#!/usr/bin/env bash
# Validation notes through the running pipeline: a discovery notified more than 30 days late is
# accepted with the note discoveryNotifiedLate in the producer's answer (ZeroMQ reply and HTTP
# body), in events.notes and in archive's GET /v1/events; one notified in time has none.  A
# duplicate re-send answers the original seq (before and after kill -9 of archive), and the
# hash chain still verifies: it covers the events, not the notes.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
FX=tests/fixtures/schemas/discovery.notified
cp "$FX/valid-reko-diq-late.json" "$T/late.json"
cp "$FX/valid-reko-diq-in-time.json" "$T/ontime.json"

# ZeroMQ: --raw keeps ingest's whole answer.
"$CTL" publish --raw --results "$T/late.jsonl" "$T/late.json" 2>/dev/null
em_eq "ZeroMQ: the late discovery is accepted" "$(em_js 'l[0].status' <"$T/late.jsonl")" accepted
em_eq "ZeroMQ: the answer carries the note, at /data/notifiedOn" \
    "$(em_js 'l[0].reply.results[0].notes.map(n=>n.pointer+" "+n.keyword).join(",")' <"$T/late.jsonl")" \
    "/data/notifiedOn discoveryNotifiedLate"
em_check "ZeroMQ: the note says how late (72 days)" \
    grep -q '"message":"late: notified 72 days after the discovery' "$T/late.jsonl"
seq_late=$(em_js 'l[0].seq' <"$T/late.jsonl")
"$CTL" publish --raw --results "$T/ontime.jsonl" "$T/ontime.json" 2>/dev/null
em_eq "ZeroMQ: the discovery notified in time is accepted without notes" \
    "$(em_js 'l[0].status+" "+("notes" in l[0].reply.results[0])' <"$T/ontime.jsonl")" "accepted false"
seq_ontime=$(em_js 'l[0].seq' <"$T/ontime.jsonl")

# The rows.
em_eq "events.notes of the late one" \
    "$(em_psql "select n->>'pointer' || ' ' || (n->>'keyword') from events, jsonb_array_elements(notes) n where seq = $seq_late")" \
    "/data/notifiedOn discoveryNotifiedLate"
em_eq "events.notes of the one in time is NULL" \
    "$(em_psql "select notes is null from events where seq = $seq_ontime")" t

# archive's GET /v1/events.
curl -s "http://$EMINE_ARCHIVE_HTTP/v1/events?after=0&type=pk.gov.emining.discovery.notified" >"$T/get.json"
em_eq "GET /v1/events: notes beside the late event, none beside the other" \
    "$(em_js 'l[0].events.map(e=>e.event.id+":"+(e.notes?e.notes[0].keyword:"-")).join(",")' <"$T/get.json")" \
    "ba-el-5-discovery-2024-late:discoveryNotifiedLate,ba-el-5-discovery-2024-01:-"

# HTTP: the 201 body is the result object, with the notes.
sed 's/"ba-el-5-discovery-2024-late"/"ba-el-5-discovery-2024-late-http"/' "$T/late.json" >"$T/late-http.json"
code=$(curl -s -o "$T/h.json" -w '%{http_code}' -H 'content-type: application/cloudevents+json' \
    --data-binary @"$T/late-http.json" "http://$EMINE_INGEST_HTTP/v1/events")
em_eq "HTTP: 201 with the note in the body" \
    "$code $(em_js 'l[0].status+" "+l[0].notes[0].keyword' <"$T/h.json")" "201 accepted discoveryNotifiedLate"
# A batch over HTTP: each result carries its own notes.
node -e 'const fs=require("fs");const a=JSON.parse(fs.readFileSync(process.argv[1]));const b=JSON.parse(fs.readFileSync(process.argv[2]));
a.id+="-batch";b.id+="-batch";fs.writeFileSync(process.argv[3],JSON.stringify([a,b]))' "$T/late.json" "$T/ontime.json" "$T/batch.json"
code=$(curl -s -o "$T/hb.json" -w '%{http_code}' -H 'content-type: application/cloudevents-batch+json' \
    --data-binary @"$T/batch.json" "http://$EMINE_INGEST_HTTP/v1/events")
em_eq "HTTP batch: 200, notes on the late one only" \
    "$code $(em_js 'l[0].results.map(r=>r.status+":"+(r.notes?r.notes[0].keyword:"-")).join(",")' <"$T/hb.json")" \
    "200 accepted:discoveryNotifiedLate,accepted:-"

# Duplicates answer the original seq.
"$CTL" publish --raw --results "$T/dup.jsonl" "$T/late.json" 2>/dev/null
em_eq "a re-send is a duplicate with the original seq" "$(em_js 'l[0].status+" "+l[0].seq' <"$T/dup.jsonl")" "duplicate $seq_late"
em_redis FLUSHALL >/dev/null
"$CTL" publish --raw --results "$T/dup2.jsonl" "$T/late.json" 2>/dev/null
em_eq "after FLUSHALL (archive answers it, not the cache): duplicate, original seq" \
    "$(em_js 'l[0].status+" "+l[0].seq' <"$T/dup2.jsonl")" "duplicate $seq_late"

# kill -9 of archive: the notes are committed with the events; a re-send is still a duplicate.
em_kill9 archive
em_start archive && em_wait_ready archive
em_redis FLUSHALL >/dev/null
"$CTL" publish --raw --timeout-ms 2000 --results "$T/dup3.jsonl" "$T/late.json" 2>/dev/null
em_eq "after kill -9 of archive: duplicate with the original seq" \
    "$(em_js 'l[0].status+" "+l[0].seq' <"$T/dup3.jsonl")" "duplicate $seq_late"
em_eq "after kill -9 of archive: the note is still in the row, once" \
    "$(em_psql "select jsonb_array_length(notes) from events where seq = $seq_late")" 1
sed 's/"ba-el-5-discovery-2024-late"/"ba-el-5-discovery-2024-late-after-kill"/' "$T/late.json" >"$T/late-k.json"
"$CTL" publish --raw --timeout-ms 2000 --results "$T/k.jsonl" "$T/late-k.json" 2>/dev/null
em_eq "after kill -9 of archive: a new late discovery is accepted with its note" \
    "$(em_js 'l[0].status+" "+l[0].reply.results[0].notes[0].keyword' <"$T/k.jsonl")" "accepted discoveryNotifiedLate"
em_eq "every event is archived once" \
    "$(em_psql "select count(*), count(distinct (source, id)) from events")" "6|6"
"$CTL" verify >"$T/verify.out" 2>&1
em_eq "eminectl verify: the chain holds (notes are outside it)" "$?" 0
em_done
