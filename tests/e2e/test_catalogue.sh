#!/usr/bin/env bash
# The event catalogue through the running pipeline: every fixture of tests/fixtures/schemas
# (valid-*.json and invalid-*.json, with the expected pointer and keyword in the .expect
# sidecar) published over ZeroMQ with eminectl; each gets its verdict, a rejection names its
# JSON Pointer and keyword, rejected events are dead letters and never archived.  Also: an
# unknown type and an unknown dataschema version, and the HTTP 400 body.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
FX=tests/fixtures/schemas

# One NDJSON line per fixture, and the expectations as JSON lines {id, want, expect[]}.
node -e '
const fs=require("fs"),path=require("path");
const top=process.argv[1];const ev=[],exp=[];
for (const t of fs.readdirSync(top).sort()) for (const f of fs.readdirSync(path.join(top,t)).sort()) {
  if (!f.endsWith(".json")) continue;
  const p=path.join(top,t,f), e=JSON.parse(fs.readFileSync(p,"utf8"));
  let x=[]; try { x=fs.readFileSync(p+".expect","utf8").split("\n").filter(l=>l&&l[0]!=="#").map(l=>l.split(" ")); } catch (_) {}
  ev.push(JSON.stringify(e));
  exp.push(JSON.stringify({file:t+"/"+f,id:e.id,source:e.source,want:f.startsWith("valid-")?"accepted":"rejected",
    errors:x.filter(a=>a[0]==="error").map(a=>({pointer:a[1]==="-"?"":a[1],keyword:a[2]}))}));
}
fs.writeFileSync(process.argv[2],ev.join("\n")+"\n");fs.writeFileSync(process.argv[3],exp.join("\n")+"\n");
' "$FX" "$T/fixtures.ndjson" "$T/expect.jsonl"
n_all=$(wc -l <"$T/expect.jsonl")
n_valid=$(grep -c '"want":"accepted"' "$T/expect.jsonl")
n_invalid=$((n_all - n_valid))
em_check "at least 16 valid and 32 invalid fixtures" test "$n_valid" -ge 16 -a "$n_invalid" -ge 32

"$CTL" publish --batch 10 --results "$T/r.jsonl" "$T/fixtures.ndjson" 2>"$T/pub.err"
em_eq "publish exits 1 (some are rejected)" "$?" 1
bad=$(node -e '
const fs=require("fs");
const rd=f=>fs.readFileSync(f,"utf8").trim().split("\n").map(JSON.parse);
const res=new Map(rd(process.argv[1]).map(r=>[r.source+" "+r.id,r]));const out=[];
for (const x of rd(process.argv[2])) {
  const r=res.get(x.source+" "+x.id);
  if (!r) { out.push(x.file+": no result"); continue; }
  if (r.status!==x.want) { out.push(x.file+": "+r.status+" "+JSON.stringify(r.errors||[])); continue; }
  for (const e of x.errors) if (!(r.errors||[]).some(g=>g.pointer===e.pointer&&g.keyword===e.keyword&&g.message))
    out.push(x.file+": no error "+e.pointer+" "+e.keyword+" in "+JSON.stringify(r.errors));
}
console.log(out.join("\n"));' "$T/r.jsonl" "$T/expect.jsonl")
em_eq "every fixture gets its verdict; every rejection names the expected pointer and keyword" "$bad" ""
ids_sql() { # want -> a SQL list of the ids of the fixtures with that verdict
    node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);
console.log(l.filter(x=>x.want===process.argv[2]).map(x=>"'"'"'"+x.id.replace(/'"'"'/g,"")+"'"'"'").join(","))' "$T/expect.jsonl" "$1"
}
em_eq "the valid fixtures are archived" "$(em_psql "select count(*) from events where id in ($(ids_sql accepted))")" "$n_valid"
em_eq "no invalid fixture is archived" "$(em_psql "select count(*) from events where id in ($(ids_sql rejected))")" 0
em_eq "each invalid fixture is a dead letter (reason invalid)" \
    "$(em_psql "select count(distinct event_id) from rejected_events where reason='invalid' and event_id in ($(ids_sql rejected))")" "$n_invalid"
em_eq "a dead letter keeps the errors with pointer and keyword" \
    "$(em_psql "select e->>'pointer' || ' ' || (e->>'keyword') from rejected_events, jsonb_array_elements(errors) e where event_id = 'ba-el-5-grant-invalid-shares-sum-90'")" \
    "/data/holders holdersShareSum"

# An unknown type and an unknown version.
base='{"specversion":"1.0","source":"/pk/ba/mmdd/cadastre","data":{"applicationId":"BA-ML-APP-2011-0215","decidedOn":"2011-11-15","reasonCode":"feasibility_inadequate"}'
printf '%s\n' "${base},\"id\":\"u1\",\"type\":\"pk.gov.emining.licence.lost\"}" \
    "${base},\"id\":\"u2\",\"type\":\"pk.gov.emining.licence.refused\",\"dataschema\":\"https://schemas.emining.example/licence.refused/7.json\"}" \
    "${base},\"id\":\"u3\",\"type\":\"pk.gov.emining.licence.refused\",\"dataschema\":\"https://schemas.emining.example/licence.refused/1.json\"}" >"$T/u.ndjson"
"$CTL" publish --results "$T/u.jsonl" "$T/u.ndjson" 2>/dev/null
em_eq "an unknown type is rejected at /type (unknownType)" "$(em_js 'l[0].status+" "+l[0].errors[0].pointer+" "+l[0].errors[0].keyword' <"$T/u.jsonl")" "rejected /type unknownType"
em_eq "an unknown dataschema version is rejected at /dataschema" "$(em_js 'l[1].status+" "+l[1].errors[0].pointer+" "+l[1].errors[0].keyword' <"$T/u.jsonl")" "rejected /dataschema dataschema"
em_eq "a known dataschema version is used" "$(em_js 'l[2].status' <"$T/u.jsonl")" accepted

# HTTP: the 400 body carries the errors.
f=$FX/licence.renewed/invalid-new-before-previous.json
code=$(curl -s -o "$T/h" -w '%{http_code}' -H 'content-type: application/cloudevents+json' \
    --data-binary "$(sed 's/-invalid-new-before-previous/-http/' "$f")" "http://$EMINE_INGEST_HTTP/v1/events")
em_eq "HTTP: 400 with the pointer and the rule's name" \
    "$code $(em_js 'l[0].errors[0].pointer+" "+l[0].errors[0].keyword' <"$T/h")" "400 /data/newValidTo newValidToAfterPrevious"
em_eq "validate still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://$EMINE_VALIDATE_HTTP/readyz")" 200
em_done
