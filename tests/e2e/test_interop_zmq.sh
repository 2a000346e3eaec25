#!/usr/bin/env bash
# An independent ZeroMQ client (the npm `zeromq` binding, no libemine code) publishes 5,000
# events with the documented producer protocol, authenticated as a producer with ZeroMQ PLAIN:
# 5,000 accepted and 5,000 rows; re-sending
# gives duplicate with the same seqs; an altered payload under the same id gives conflict.
source "$(dirname "$0")/../lib/harness.sh"
N=${EM_INTEROP_EVENTS:-5000}
if [ ! -d tests/interop/node_modules/zeromq ]; then
    (cd tests/interop && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
        { em_fail "npm ci in tests/interop (the zeromq test peer)"; em_done; exit 1; }
fi
export EMINE_INGEST_AUTH=true EMINE_INGEST_PRODUCERS_REFRESH_MS=200
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
T=$EM_TMP
EMINE_PRODUCER=customs
EMINE_PRODUCER_KEY=$("$EM_BUILD/bin/eminectl" producers add customs --source /pk/psw/ --type 'pk.gov.emining.*' | tail -n 1)
export EMINE_PRODUCER EMINE_PRODUCER_KEY
sleep 0.6 # ingest re-reads the producers table every 200 ms here
tests/fixtures/gen_events.sh "$N" interop /pk/psw/customs >"$T/events.ndjson"

out=$(node tests/interop/zmq_dealer.mjs "$EMINE_INGEST_ZMQ" "$T/events.ndjson" "$T/r1.jsonl" 64)
em_log "first pass: $out"
em_eq "the independent client gets $N accepted" "$(grep -c '"status":"accepted"' "$T/r1.jsonl")" "$N"
em_eq "$N rows in PostgreSQL" "$(em_psql 'select count(*) from events')" "$N"
em_eq "each acked seq is the row's seq" "$(node -e '
const l=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);
console.log(l.map(x=>x.id+":"+x.seq).sort().join(","))' "$T/r1.jsonl" | md5sum)" \
    "$(em_psql "select string_agg(id||':'||seq, ',' order by (id||':'||seq) collate \"C\") from events" | md5sum)"

out=$(node tests/interop/zmq_dealer.mjs "$EMINE_INGEST_ZMQ" "$T/events.ndjson" "$T/r2.jsonl" 64)
em_log "second pass: $out"
em_eq "re-sending gives $N duplicates" "$(grep -c '"status":"duplicate"' "$T/r2.jsonl")" "$N"
em_eq "with the same seqs" "$(node -e '
const f=p=>require("fs").readFileSync(p,"utf8").trim().split("\n").map(JSON.parse).map(x=>x.id+":"+x.seq).join(",");
console.log(f(process.argv[1])===f(process.argv[2]))' "$T/r1.jsonl" "$T/r2.jsonl")" true

head -n 3 "$T/events.ndjson" | sed 's/"revision":0/"revision":1/' >"$T/altered.ndjson"
node tests/interop/zmq_dealer.mjs "$EMINE_INGEST_ZMQ" "$T/altered.ndjson" "$T/r3.jsonl" 3 >/dev/null
em_eq "altered payloads under the same ids give conflict" "$(grep -c '"status":"conflict"' "$T/r3.jsonl")" 3
em_eq "the conflicts are dead letters and the rows are unchanged" \
    "$(em_psql "select count(*) from rejected_events where reason='conflict'") $(em_psql "select count(*) from events where envelope->'data'->>'revision' <> '0'")" "3 0"
em_check "the chain verifies" "$EM_BUILD/bin/eminectl" verify
em_done
