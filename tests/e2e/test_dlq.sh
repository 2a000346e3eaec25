#!/usr/bin/env bash
# Dead letters and their redrive after a schema fix: an event rejected by its schema is kept in
# rejected_events (eminectl dlq list/show); a new schema version that does not compile, loaded by
# SIGHUP, leaves the old set in force; a fixed version 2, loaded by SIGHUP, accepts the event and
# eminectl dlq redrive reports it accepted with its seq and marks the dead letter redriven.  An
# event pinned to version 1 through dataschema stays rejected.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
T=$EM_TMP
cp -r config/schemas "$T/schemas"
export EMINE_VALIDATE_SCHEMAS=$T/schemas
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
M="http://$EMINE_VALIDATE_HTTP/metrics"

ev() { # id reasonCode [dataschema]
    printf '{"specversion":"1.0","id":"%s","source":"/pk/ba/mmdd/cadastre","type":"pk.gov.emining.licence.refused","subject":"application/BA-ML-APP-2011-0215","time":"2011-11-15T12:00:00+05:00","province":"PK-BA",%s"data":{"applicationId":"BA-ML-APP-2011-0215","decidedOn":"2011-11-15","reasonCode":"%s"}}\n' \
        "$1" "${3:+\"dataschema\":\"$3\",}" "$2"
}
{ ev dlq-1 withdrawn; ev dlq-pinned withdrawn https://schemas.emining.example/licence.refused/1.json; } >"$T/a.ndjson"
"$CTL" publish --results "$T/a.jsonl" "$T/a.ndjson" 2>/dev/null
em_eq "reasonCode withdrawn is rejected by version 1" \
    "$(em_js 'l.map(x=>x.status+" "+x.errors[0].pointer+" "+x.errors[0].keyword).join(",")' <"$T/a.jsonl")" \
    "rejected /data/reasonCode enum,rejected /data/reasonCode enum"

"$CTL" dlq list --json >"$T/list.jsonl"
em_eq "dlq list shows both dead letters" "$(em_js 'l.map(x=>x.eventId).sort().join(",")' <"$T/list.jsonl")" "dlq-1,dlq-pinned"
ID=$(em_js 'l.find(x=>x.eventId==="dlq-1").id' <"$T/list.jsonl")
PINNED=$(em_js 'l.find(x=>x.eventId==="dlq-pinned").id' <"$T/list.jsonl")
"$CTL" dlq list >"$T/list.txt"
em_check "dlq list (text) names the pointer and keyword" grep -q "dlq-1 .*/data/reasonCode enum" "$T/list.txt"
"$CTL" dlq show "$ID" >"$T/show.json"
em_eq "dlq show: reason, type, error and the raw event" \
    "$(node -e 'const o=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(o.reason,o.type,o.errors[0].pointer,o.errors[0].keyword,JSON.parse(o.raw).id,!!o.receivedAt)' "$T/show.json")" \
    "invalid pk.gov.emining.licence.refused /data/reasonCode enum dlq-1 true"
"$CTL" dlq show 999999 >/dev/null 2>&1
em_eq "dlq show of an unknown id exits 1" "$?" 1

# A version 2 that does not compile: SIGHUP leaves version 1 in force.
printf '{"$id":"https://schemas.emining.example/licence.refused/2.json","type":"object","properties":{"reasonCode":{"pattern":"("}}}\n' \
    >"$T/schemas/licence.refused/2.json"
kill -HUP "$(em_pid validate)"
for _ in $(seq 100); do curl -s "$M" | grep -q 'schema_reloads_total{result="failed"} 1' && break; sleep 0.1; done
em_check "the failed reload is counted" bash -c "curl -s '$M' | grep -q 'schema_reloads_total{result=\"failed\"} 1'"
em_check "and logged with the file" grep -q 'reload failed.*licence.refused/2.json' "$T/validate.log"
ev dlq-2 withdrawn >"$T/b.ndjson"
ev dlq-3 policy >>"$T/b.ndjson"
"$CTL" publish --results "$T/b.jsonl" "$T/b.ndjson" 2>/dev/null
em_eq "the old set stays in force" "$(em_js 'l.map(x=>x.status).join(",")' <"$T/b.jsonl")" "rejected,accepted"

# The fixed version 2 (reasonCode may be withdrawn) becomes the latest on SIGHUP.
node -e 'const fs=require("fs");const s=JSON.parse(fs.readFileSync(process.argv[1]+"/licence.refused/1.json"));
s.$id=s.$id.replace("/1.json","/2.json");s.properties.reasonCode.enum.push("withdrawn");
fs.writeFileSync(process.argv[1]+"/licence.refused/2.json",JSON.stringify(s,null,2));' "$T/schemas"
kill -HUP "$(em_pid validate)"
for _ in $(seq 100); do curl -s "$M" | grep -q 'schema_reloads_total{result="ok"} 1' && break; sleep 0.1; done
em_check "the reload is counted" bash -c "curl -s '$M' | grep -q 'schema_reloads_total{result=\"ok\"} 1'"

out=$("$CTL" dlq redrive "$ID")
em_eq "dlq redrive exits 0" "$?" 0
seq=$(em_psql "select seq from events where id='dlq-1'")
em_eq "redrive reports accepted with the committed seq" "$out" "$ID accepted $seq"
em_eq "the dead letter is marked redriven" \
    "$(em_psql "select redrive_status || ' ' || redrive_seq || ' ' || (redriven_at is not null) from rejected_events where id=$ID")" "accepted $seq true"
em_eq "dlq list no longer shows it; --all does" \
    "$("$CTL" dlq list --json | grep -c '"eventId":"dlq-1"') $("$CTL" dlq list --all --json | grep -c '"eventId":"dlq-1"')" "0 1"
em_eq "a second redrive changes nothing" "$("$CTL" dlq redrive "$ID")" "$ID already-redriven $seq"

out=$("$CTL" dlq redrive "$PINNED")
em_eq "an event pinned to version 1 stays rejected (exit 1)" "$? $out" "1 $PINNED rejected /data/reasonCode enum value is not one of [\"area_not_free\",\"incomplete_application\",\"capacity_not_demonstrated\",\"feasibility_inadequate\",\"policy\",\"other\"]"
em_eq "and is a new dead letter" "$(em_psql "select count(*) from rejected_events where event_id='dlq-pinned'")" 2
em_eq "the old one records the outcome" "$(em_psql "select redrive_status from rejected_events where id=$PINNED")" rejected
em_eq "nothing else was archived twice" "$(em_psql "select count(*) from events where id like 'dlq-%'")" 2
em_done
