#!/usr/bin/env bash
# End to end, the four services as separate processes on real PostgreSQL, Redis and ZeroMQ:
# publish over ZeroMQ and HTTP; rows, acks, duplicate with the original seq, conflict kept as a
# dead letter, rejections with JSON Pointers, the stream, and the hash chain.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }

CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP

# --- ZeroMQ: a batch of fixtures and generated events ---------------------------------------
tests/fixtures/gen_events.sh 200 e2e >"$T/gen.ndjson"
"$CTL" publish --batch 20 --results "$T/r1.jsonl" "$T/gen.ndjson" 2>"$T/pub1.err"
em_eq "publish 200 events over ZeroMQ exits 0" "$?" 0
em_eq "every event is accepted" "$(em_js 'l.filter(x=>x.status==="accepted").length' <"$T/r1.jsonl")" 200
em_eq "200 rows in the archive" "$(em_psql 'select count(*) from events')" 200
em_eq "seqs are 1..200 with no hole" "$(em_psql 'select min(seq)||'"'"'-'"'"'||max(seq)||'"'"'-'"'"'||count(distinct seq) from events')" "1-200-200"
em_eq "acked seqs are the archived seqs" \
    "$(em_js 'l.map(x=>x.seq).sort((a,b)=>a-b).join(",")' <"$T/r1.jsonl" | md5sum)" \
    "$(em_psql "select string_agg(seq::text, ',' order by seq) from events" | md5sum)"
em_eq "the producer's number text is kept (52.76 stays 52.76, not 52.759999999999998)" \
    "$(em_psql "select envelope->'data'->'items'->0->'quantity'->>'value' from events where id='e2e-1'")" "3001.76"

# --- duplicates: same bytes again -> duplicate with the original seq ------------------------
"$CTL" publish --batch 50 --results "$T/r2.jsonl" "$T/gen.ndjson" 2>/dev/null
em_eq "re-sending gives duplicate for every event" "$(em_js 'l.filter(x=>x.status==="duplicate").length' <"$T/r2.jsonl")" 200
em_eq "duplicates carry the original seqs" \
    "$(em_js 'l.map(x=>x.id+":"+x.seq).join(",")' <"$T/r1.jsonl")" \
    "$(em_js 'l.map(x=>x.id+":"+x.seq).join(",")' <"$T/r2.jsonl")"
em_eq "still 200 rows" "$(em_psql 'select count(*) from events')" 200

# Duplicates are recognised from PostgreSQL when the cache is empty (Redis is only a cache).
em_redis FLUSHALL >/dev/null
head -n 5 "$T/gen.ndjson" >"$T/five.ndjson"
"$CTL" publish --results "$T/r3.jsonl" "$T/five.ndjson" 2>/dev/null
em_eq "after FLUSHALL re-sending still gives duplicate" "$(em_js 'l.filter(x=>x.status==="duplicate").length' <"$T/r3.jsonl")" 5
em_eq "with the original seqs" "$(em_js 'l.map(x=>x.seq).join(",")' <"$T/r3.jsonl")" \
    "$(head -n 5 "$T/r1.jsonl" | em_js 'l.map(x=>x.seq).join(",")')"

# Key order and white space do not make a different event (digest over the JCS form).
node -e 'const e=JSON.parse(require("fs").readFileSync(0,"utf8").split("\n")[0]);const o={};Object.keys(e).reverse().forEach(k=>o[k]=e[k]);console.log(JSON.stringify(o,null,2))' <"$T/gen.ndjson" >"$T/reordered.json"
"$CTL" publish --results "$T/r4.jsonl" "$T/reordered.json" 2>/dev/null
em_eq "the same event re-ordered and re-indented is a duplicate" "$(em_js 'l[0].status' <"$T/r4.jsonl")" duplicate

# --- conflict: same (source,id), different payload ------------------------------------------
sed 's/"value":3001.76/"value":9999.5/' "$T/five.ndjson" | head -n 1 >"$T/altered.ndjson"
"$CTL" publish --results "$T/r5.jsonl" "$T/altered.ndjson" 2>/dev/null
em_eq "an altered payload under the same id is a conflict" "$(em_js 'l[0].status' <"$T/r5.jsonl")" conflict
em_eq "the conflict names the original seq" "$(em_js 'l[0].seq' <"$T/r5.jsonl")" "$(em_js 'l[0].seq' <"$T/r1.jsonl")"
em_eq "the conflict is kept in the dead-letter table" "$(em_psql "select count(*) from rejected_events where reason='conflict' and event_id='e2e-1'")" 1
em_eq "the original row is untouched" \
    "$(em_psql "select envelope->'data'->'items'->0->'quantity'->>'value' from events where id='e2e-1'")" "3001.76"

# --- rejections: precise errors, dead letters, nothing archived -----------------------------
printf '%s\n' '{"specversion":"0.9","id":"bad-1","source":"/x","type":"pk.gov.emining.licence.granted"}' \
    '{"specversion":"1.0","id":"bad-2","source":"/x","type":"pk.gov.emining.licence.granted","time":"yesterday"}' >"$T/bad.ndjson"
"$CTL" publish --results "$T/r6.jsonl" "$T/bad.ndjson" 2>/dev/null
em_eq "publish exits 1 when events are rejected" "$?" 1
em_eq "an unknown specversion is rejected at /specversion" "$(em_js 'l[0].status+" "+l[0].errors[0].pointer' <"$T/r6.jsonl")" "rejected /specversion"
em_eq "a bad time is rejected at /time" "$(em_js 'l[1].status+" "+l[1].errors[0].pointer' <"$T/r6.jsonl")" "rejected /time"
em_eq "both rejections are dead letters" "$(em_psql "select count(*) from rejected_events where reason='invalid' and event_id in ('bad-1','bad-2')")" 2
em_eq "no rejected event is archived" "$(em_psql "select count(*) from events where id like 'bad-%'")" 0

# --- HTTP: structured, duplicate, binary, batch, errors --------------------------------------
H="http://$EMINE_INGEST_HTTP/v1/events"
ev='{"specversion":"1.0","id":"http-1","source":"/pk/ba/mmdd/cadastre","type":"pk.gov.emining.licence.renewed","subject":"PK-BA/ML-SAINDAK","time":"2022-11-01T00:00:00+05:00","datacontenttype":"application/json","data":{"licenceId":"PK-BA/ML-SAINDAK","renewalNo":1,"previousValidTo":"2022-10-31","newValidTo":"2037-10-31"}}'
code=$(curl -s -o "$T/h1" -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data "$ev" "$H")
em_eq "HTTP structured event: 201 once committed" "$code" 201
seq=$(em_js 'l[0].seq' <"$T/h1")
em_eq "HTTP answer carries the committed seq" "$(em_psql "select seq from events where id='http-1'")" "$seq"
code=$(curl -s -o "$T/h2" -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data "$ev" "$H")
em_eq "HTTP duplicate: 200 with the original seq" "$code $(em_js 'l[0].status+" "+l[0].seq' <"$T/h2")" "200 duplicate $seq"
code=$(curl -s -o "$T/h3" -w '%{http_code}' -H 'content-type: application/json' -H 'ce-specversion: 1.0' \
    -H 'ce-id: http-bin-1' -H 'ce-source: /pk/sd/coal/cadastre' -H 'ce-type: pk.gov.emining.project.statuschanged' \
    -H 'ce-province: PK-SD' --data '{"projectId":"thar-block-1","newStatus":"production","effectiveOn":"2022-01-31","share":52.76}' "$H")
em_eq "HTTP binary mode: 201" "$code" 201
em_eq "binary mode is archived as a structured event with its extension" \
    "$(em_psql "select envelope->>'province' || ' ' || (envelope->'data'->>'share') from events where id='http-bin-1'")" "PK-SD 52.76"
batch="[$(sed -n 1p "$T/gen.ndjson" | sed 's/"e2e-1"/"http-b-1"/'),$(sed -n 2p "$T/gen.ndjson" | sed 's/"e2e-2"/"http-b-2"/'),$(sed -n 3p "$T/gen.ndjson")]"
code=$(curl -s -o "$T/h4" -w '%{http_code}' -H 'content-type: application/cloudevents-batch+json' --data "$batch" "$H")
em_eq "HTTP batch: 200 with a result per event" "$code $(em_js 'l[0].results.map(x=>x.status).join(",")' <"$T/h4")" "200 accepted,accepted,duplicate"
code=$(curl -s -o "$T/h5" -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data '{"id":' "$H")
em_eq "HTTP malformed JSON: 400 with a json error" "$code $(em_js 'l[0].errors[0].keyword' <"$T/h5")" "400 json"
head -c 5000000 /dev/zero | tr '\0' ' ' >"$T/big"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data-binary @"$T/big" "$H")
em_eq "HTTP oversized request: 413" "$code" 413
deep=$(printf '{"specversion":"1.0","id":"deep","source":"/x","type":"t","data":%s1%s}' "$(printf '[%.0s' {1..40})" "$(printf ']%.0s' {1..40})")
code=$(curl -s -o "$T/h6" -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data "$deep" "$H")
em_eq "HTTP too deep: 400 maxDepth" "$code $(em_js 'l[0].errors[0].keyword' <"$T/h6")" "400 maxDepth"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: text/plain' --data 'hello' "$H")
em_eq "HTTP without a CloudEvents content type or ce- headers: 415" "$code" 415

# --- the stream: every committed event, in seq order ------------------------------------------
total=$(em_psql 'select count(*) from events')
timeout 30 "$CTL" tail --from 0 --count "$total" >"$T/tail.jsonl"
em_eq "tail from 0 returns every committed event" "$(wc -l <"$T/tail.jsonl")" "$total"
em_eq "in seq order with no gap" "$(em_js 'l.every((x,i)=>x.seq===i+1)' <"$T/tail.jsonl")" true
timeout 30 "$CTL" tail --from 150 --count 5 >"$T/tail2.jsonl"
em_eq "tail resumes after a given seq" "$(em_js 'l.map(x=>x.seq).join(",")' <"$T/tail2.jsonl")" "151,152,153,154,155"

# --- the hash chain ---------------------------------------------------------------------------
em_check "eminectl verify passes on the archive" "$CTL" verify
em_psql "update events set envelope = jsonb_set(envelope, '{data,revision}', '1') where id='e2e-7'" >/dev/null
out=$("$CTL" verify 2>&1)
rc=$?
em_eq "eminectl verify fails after a row is altered by hand" "$rc" 1
altered=$(em_psql "select seq from events where id='e2e-7'")
if printf '%s' "$out" | grep -q "seq $altered"; then em_ok "verify names the altered row (seq $altered)"; else em_fail "verify names the altered row" "$out"; fi

# --- still serving ----------------------------------------------------------------------------
for s in ingest validate archive notify; do
    v="EMINE_$(em__upper $s)_HTTP"
    em_eq "$s still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://${!v}/readyz")" 200
done
em_done
