#!/usr/bin/env bash
# test_stream.sh - the live stream end to end with the real binaries: notify's ZeroMQ stream
# (`eminectl tail`) and Server-Sent Events (GET /v1/stream, read with curl -N) are
# authenticated by an organisation API key and send each organisation exactly the events it
# may see.  The fixture catalogue is published in every visibility tier (and an unknown one),
# with party registration numbers filled in; an adversarial set of organisations (the public
# portal, a competitor enterprise with look-alike source prefixes, a partner enterprise,
# another province's department, the event's province's department, the Minerals Wing,
# an operator) follows both streams live and again from seq 0 (catch-up from PostgreSQL:
# the ring is tiny).  The expectation is computed here, independently, by a small node script
# from domain.md §6.  Also: unknown / revoked / missing keys are refused with nothing sent,
# Last-Event-ID resumes, types narrow, filters cannot widen, a bad filter gets an error naming
# its path, the SSE connection cap answers 503, and notify keeps serving.
set -uo pipefail
source "$(dirname "$0")/../lib/harness.sh"

em_harness_start
export EMINE_NOTIFY_RING=8              # most of a replay from 0 comes from PostgreSQL
export EMINE_NOTIFY_BATCH=16
export EMINE_NOTIFY_SSE_MAX_CLIENTS=8
export EMINE_NOTIFY_SSE_KEEPALIVE_MS=500
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
SSE="http://$EMINE_NOTIFY_HTTP/v1/stream"
unset EMINE_KEY # every call below names its key

em_eq "migration 005 applied" \
    "$(em_psql "select count(*) from schema_migrations where name = '005_operator_orgs.sql'")" 1

# ---- organisations (name kind [--province P] [--party R]... [--source S]...) -----------------
ORGS=(ops portal rival mhd sd ba mw)
"$CTL" subs org-create ops --kind operator --name "platform operators" >/dev/null &&
"$CTL" subs org-create portal --kind public --source /operators/mhd >/dev/null &&
"$CTL" subs org-create rival --kind enterprise --party 91650000MA77RIVAL1 \
    --source /operators/mh --source /operators/mhd-rival --source /pk/ba/mmd >/dev/null &&
"$CTL" subs org-create mhd --kind enterprise --party 0045121 --source /operators/mhd >/dev/null &&
"$CTL" subs org-create sd --kind authority --province PK-SD --source /pk/sd/coal/ >/dev/null &&
"$CTL" subs org-create ba --kind authority --province PK-BA --source /pk/ba/mmdd/ >/dev/null &&
"$CTL" subs org-create mw --kind authority --province federal --source /pk/fed/minerals-wing/ >/dev/null
em_eq "eminectl subs org-create, including --kind operator" \
    "$(em_psql "select count(*) from organisations where id <> 'emine-ops'")" 7
"$CTL" subs org-create bad --kind overlord >/dev/null 2>&1
em_eq "an unknown kind is a usage error" "$?" 2
em_psql "select id, kind, coalesce(province, ''), to_json(party_ids), to_json(source_prefixes)
         from organisations where id <> 'emine-ops' order by id" >"$T/orgs.txt"
declare -A KEY
for o in "${ORGS[@]}"; do KEY[$o]=$("$CTL" subs key-create "$o" 2>/dev/null); done
REVOKED=$("$CTL" subs key-create ops --label revoked 2>/dev/null)
"$CTL" subs key-revoke "$(em_psql "select id from api_keys where label = 'revoked'")" >/dev/null
em_check "a key for every organisation" test "$(printf '%s\n' "${KEY[@]}" | grep -c '^emk_')" = 7

# ---- events: the catalogue in every tier ----------------------------------------------------
node -e '
const fs = require("fs");
const out = [];
for (const f of fs.readdirSync("tests/fixtures/events").filter((f) => f.endsWith(".json")).sort()) {
  const d = JSON.parse(fs.readFileSync("tests/fixtures/events/" + f, "utf8"));
  for (const ev of Array.isArray(d) ? d : [d]) {
    for (const tier of ["asis", "public", "partner", "restricted", "internal", "unheard-of"]) {
      const e = JSON.parse(JSON.stringify(ev));
      if (tier !== "asis") { e.id = e.id + "-" + tier; e.visibility = tier; }
      const x = e.data || {};
      if (x.exporter) x.exporter.regNo = "0045121";            /* MHD: a party */
      if (x.consignee) x.consignee.regNo = "91110000100001234X";
      if (Array.isArray(x.holders) && x.holders[0] && x.holders[0].party)
        x.holders[0].party.regNo = "0077551";
      if (Array.isArray(x.parties))
        for (const p of x.parties) if (/POWERCHINA/.test(p.name || "")) p.regNo = "91110000717825966F";
      out.push(JSON.stringify(e));
    }
  }
}
fs.writeFileSync(process.argv[1], out.join("\n") + "\n");' "$T/events.ndjson"
NEV=$(wc -l <"$T/events.ndjson")

# Who may see what: domain.md §6, written out again here (not calling notify's code).
cat >"$T/expect.js" <<'JS'
const fs = require("fs");
const [orgsFile, eventsFile, name, typeOnly] = process.argv.slice(2);
const orgs = {};
for (const line of fs.readFileSync(orgsFile, "utf8").split("\n").filter(Boolean)) {
  const [id, kind, province, parties, sources] = line.split("|");
  orgs[id] = { kind, province, parties: JSON.parse(parties), sources: JSON.parse(sources) };
}
const org = orgs[name];
const regNos = (d) => {
  const r = [], add = (p) => p && typeof p.regNo === "string" && r.push(p.regNo);
  if (!d || typeof d !== "object") return r;
  for (const h of d.holders || []) add(h.party);
  for (const k of ["applicant", "parties", "from", "to", "suppliers"])
    if (Array.isArray(d[k])) d[k].forEach(add);
  add(d.exporter); add(d.consignee);
  return r;
};
const sees = (e) => {
  const tier = ["public", "partner", "restricted", "internal"].includes(e.visibility) ? e.visibility : "internal";
  if (tier === "public" || org.kind === "operator") return true;
  if (org.kind === "public") return false;
  const src = e.source || "";
  if (org.sources.some((p) => src === p || src.startsWith(p.endsWith("/") ? p : p + "/"))) return true;
  const scope = org.kind === "authority" && (org.province === "federal" || org.province === e.province);
  if (tier === "restricted") return scope;
  if (tier === "partner") return scope || (org.kind === "enterprise" && regNos(e.data).some((r) => org.parties.includes(r)));
  return false;
};
const seqs = [];
for (const line of fs.readFileSync(eventsFile, "utf8").split("\n").filter(Boolean)) {
  const i = line.indexOf(" ");
  const e = JSON.parse(line.slice(i + 1));
  if (sees(e) && (!typeOnly || e.type === typeOnly)) seqs.push(line.slice(0, i));
}
console.log(seqs.join(","));
JS
expected() { node "$T/expect.js" "$T/orgs.txt" "$T/rows.txt" "$@"; }
# seqs of eminectl tail output / of an SSE transcript, comma-separated
tail_seqs() { node -e 'console.log(require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l).seq).join(","))' "$1"; }
sse_seqs() { grep '^id: ' "$1" | cut -c5- | paste -sd, -; }

# ---- live: every organisation follows both streams, then the events are published --------------
declare -A TPID SPID
for o in "${ORGS[@]}"; do
    "$CTL" tail --key "${KEY[$o]}" --from 0 --timeout-ms 60000 >"$T/live-$o.tail" 2>"$T/live-$o.err" &
    TPID[$o]=$!
    curl -sN --max-time 120 -H "Authorization: Bearer ${KEY[$o]}" "$SSE" >"$T/live-$o.sse" 2>/dev/null &
    SPID[$o]=$!
done
for o in "${ORGS[@]}"; do em_at_exit "kill ${TPID[$o]} ${SPID[$o]} 2>/dev/null"; done
for _ in $(seq 100); do
    [ "$(cat "$T"/live-*.sse 2>/dev/null | grep -c '^: emine stream')" -ge 7 ] && break
    sleep 0.1
done
em_eq "seven SSE clients connected" "$(cat "$T"/live-*.sse | grep -c '^: emine stream')" 7

# The cap: one more (the 8th) is served, the 9th is answered 503.
curl -sN --max-time 120 -H "Authorization: Bearer ${KEY[ops]}" "$SSE" >"$T/eighth.sse" 2>/dev/null &
EIGHTH=$!
em_at_exit "kill $EIGHTH 2>/dev/null"
for _ in $(seq 50); do grep -q '^: emine' "$T/eighth.sse" 2>/dev/null && break; sleep 0.1; done
em_eq "SSE over the cap: 503" \
    "$(curl -s -o "$T/cap.json" -w '%{http_code}' -m 5 -H "Authorization: Bearer ${KEY[ops]}" "$SSE")" 503
kill "$EIGHTH" 2>/dev/null

"$CTL" publish --batch 20 - <"$T/events.ndjson" >/dev/null 2>"$T/pub.err"
em_eq "$NEV events (the catalogue x 6 tiers) published" "$?" 0
em_psql "select seq || ' ' || envelope::text from events order by seq" >"$T/rows.txt"
em_eq "all archived" "$(wc -l <"$T/rows.txt")" "$NEV"
em_eq "tiers archived: every one" \
    "$(em_psql "select string_agg(distinct visibility, ',' order by visibility) from events")" \
    "internal,partner,public,restricted,unheard-of"

for o in "${ORGS[@]}"; do
    want=$(expected "$o")
    n=$(tr ',' '\n' <<<"$want" | grep -c .)
    deadline=$((SECONDS + 30))
    while { [ "$(tail_seqs "$T/live-$o.tail")" != "$want" ] || [ "$(sse_seqs "$T/live-$o.sse")" != "$want" ]; } &&
        ((SECONDS < deadline)); do sleep 0.2; done
    sleep 0.3 # anything extra would show up now
    em_eq "live ZeroMQ stream: $o got exactly what it may see ($n of $NEV)" "$(tail_seqs "$T/live-$o.tail")" "$want"
    em_eq "live SSE: $o got exactly what it may see ($n of $NEV)" "$(sse_seqs "$T/live-$o.sse")" "$want"
done
em_check "the expectation is not trivial (public < department < operator)" test \
    "$(expected portal | tr ',' '\n' | grep -c .)" -lt "$(expected ba | tr ',' '\n' | grep -c .)" -a \
    "$(expected ba | tr ',' '\n' | grep -c .)" -lt "$NEV"
em_check "the partner enterprise sees partner events of others' sources (as a party)" test \
    "$(expected mhd | tr ',' '\n' | grep -c .)" -gt "$(em_psql "select count(*) from events where visibility = 'public' or source like '/operators/mhd/%'")"
for o in "${ORGS[@]}"; do kill "${TPID[$o]}" "${SPID[$o]}" 2>/dev/null; done

# ---- SSE format ------------------------------------------------------------------------------
em_check "SSE: id, event (the type) and data (the compact CloudEvent) per event" node -e '
const t = require("fs").readFileSync(process.argv[1], "utf8");
const blocks = t.split("\n\n").filter((b) => b.startsWith("id: "));
if (blocks.length < 10) process.exit(1);
for (const b of blocks) {
  const [id, ev, data, ...rest] = b.split("\n");
  if (rest.length || !/^id: \d+$/.test(id) || !ev.startsWith("event: ") || !data.startsWith("data: ")) process.exit(2);
  const e = JSON.parse(data.slice(6));
  if (e.type !== ev.slice(7) || data.includes(": \"") ) process.exit(3);
}' "$T/live-ops.sse"
em_check "SSE: keepalive comments while idle" grep -q '^: ping$' "$T/live-portal.sse"

# ---- catch-up from seq 0 (PostgreSQL: the ring holds 8 events) ----------------------------------
for o in "${ORGS[@]}"; do
    want=$(expected "$o")
    "$CTL" tail --key "${KEY[$o]}" --from 0 --timeout-ms 1500 >"$T/cu-$o.tail" 2>"$T/cu-$o.err"
    em_eq "catch-up ZeroMQ stream: $o got exactly what it may see" "$(tail_seqs "$T/cu-$o.tail")" "$want"
    curl -sN --max-time 3 -H "Authorization: Bearer ${KEY[$o]}" "$SSE?after=0" >"$T/cu-$o.sse" 2>/dev/null
    em_eq "catch-up SSE: $o got exactly what it may see" "$(sse_seqs "$T/cu-$o.sse")" "$want"
done

# ---- credit: events an organisation may not see use none ---------------------------------------
want=$(expected portal | cut -d, -f1-3)
"$CTL" tail --key "${KEY[portal]}" --from 0 --count 3 --timeout-ms 5000 >"$T/count.tail" 2>/dev/null
em_eq "--count 3 as the portal: its first three public events (hidden ones cost no credit)" \
    "$(tail_seqs "$T/count.tail")" "$want"

# ---- resume ----------------------------------------------------------------------------------
all=$(expected ops)
mid=$(cut -d, -f40 <<<"$all")
curl -sN --max-time 3 -H "Authorization: Bearer ${KEY[ops]}" -H "Last-Event-ID: $mid" "$SSE" >"$T/resume.sse" 2>/dev/null
em_eq "SSE Last-Event-ID: $mid resumes with the events after it" "$(sse_seqs "$T/resume.sse")" \
    "$(cut -d, -f41- <<<"$all")"
curl -sN --max-time 3 -H "Authorization: Bearer ${KEY[ba]}" "$SSE?after=$mid" >"$T/after.sse" 2>/dev/null
em_eq "SSE ?after=$mid for the department" "$(sse_seqs "$T/after.sse")" \
    "$(tr ',' '\n' <<<"$(expected ba)" | awk -v m="$mid" '$1 > m' | paste -sd, -)"
"$CTL" tail --key "${KEY[ops]}" --from "$mid" --timeout-ms 1500 >"$T/resume.tail" 2>/dev/null
em_eq "ZeroMQ stream --from $mid resumes with the events after it" "$(tail_seqs "$T/resume.tail")" \
    "$(cut -d, -f41- <<<"$all")"

# ---- types and filters narrow, never widen -----------------------------------------------------
T_ROY=pk.gov.emining.royalty.paid
"$CTL" tail --key "${KEY[sd]}" --from 0 --type "$T_ROY" --timeout-ms 1500 >"$T/type.tail" 2>/dev/null
em_eq "ZeroMQ --type: Sindh's department gets the royalty events it may see" \
    "$(tail_seqs "$T/type.tail")" "$(expected sd "$T_ROY")"
curl -sN --max-time 3 -H "Authorization: Bearer ${KEY[ops]}" "$SSE?types=$T_ROY,pk.gov.emining.nothing" >"$T/type.sse" 2>/dev/null
em_eq "SSE ?types=: the operator gets every royalty event" "$(sse_seqs "$T/type.sse")" "$(expected ops "$T_ROY")"
WIDE='[{"any":[{"prefix":{"type":"pk."}},{"not":{"prefix":{"type":"pk."}}}]}]'
"$CTL" tail --key "${KEY[rival]}" --from 0 --filter "$WIDE" --timeout-ms 1500 >"$T/wide.tail" 2>/dev/null
em_eq "ZeroMQ: a match-everything filter does not widen the competitor's view" \
    "$(tail_seqs "$T/wide.tail")" "$(expected rival)"
curl -sN --max-time 3 -G --data-urlencode "filters=$WIDE" -H "Authorization: Bearer ${KEY[rival]}" "$SSE" >"$T/wide.sse" 2>/dev/null
em_eq "SSE: a match-everything filter does not widen the competitor's view" \
    "$(sse_seqs "$T/wide.sse")" "$(expected rival)"
"$CTL" tail --key "${KEY[ops]}" --from 0 --filter '[{"exact":{"source":"/pk/psw/customs"}}]' \
    --timeout-ms 1500 >"$T/exact.tail" 2>/dev/null
em_eq "ZeroMQ --filter exact source: only the customs events" \
    "$(tail_seqs "$T/exact.tail")" "$(em_psql "select string_agg(seq::text, ',' order by seq) from events where source = '/pk/psw/customs'")"

BAD='[{"all":[{"exact":{"type":"x"}},{"sql":"SELECT 1"}]}]'
"$CTL" tail --key "${KEY[ops]}" --from 0 --filter "$BAD" --timeout-ms 3000 >"$T/bad.tail" 2>"$T/bad.err"
em_eq "ZeroMQ bad filter: tail exits 1" "$?" 1
em_check "ZeroMQ bad filter: the error names the path" grep -q "subscribe.filters/0/all/1: unknown dialect 'sql'" "$T/bad.err"
em_eq "ZeroMQ bad filter: nothing sent" "$(wc -l <"$T/bad.tail")" 0
code=$(curl -s -o "$T/bad.json" -w '%{http_code}' -m 5 -G --data-urlencode "filters=$BAD" \
    -H "Authorization: Bearer ${KEY[ops]}" "$SSE")
em_eq "SSE bad filter: 400" "$code" 400
em_check "SSE bad filter: the error names the path" grep -q "filters/0/all/1: unknown dialect 'sql'" "$T/bad.json"

# ---- refused keys --------------------------------------------------------------------------
for k in "emk_not-a-key" "$REVOKED" ""; do
    what=${k:+unknown}; [ "$k" = "$REVOKED" ] && what=revoked; what=${what:-missing}
    if [ -n "$k" ]; then
        "$CTL" tail --key "$k" --from 0 --timeout-ms 3000 >"$T/unauth.tail" 2>"$T/unauth.err"
        rc=$?
        em_eq "ZeroMQ $what key: refused (exit 1, nothing sent)" "$rc/$(wc -l <"$T/unauth.tail")" "1/0"
        em_check "ZeroMQ $what key: told unauthorized" grep -q "refused the key" "$T/unauth.err"
        code=$(curl -s -o "$T/unauth.sse" -w '%{http_code}' -m 5 -H "Authorization: Bearer $k" "$SSE")
    else
        EMINE_KEY= "$CTL" tail --from 0 --timeout-ms 1000 >"$T/unauth.tail" 2>"$T/unauth.err"
        em_eq "eminectl tail without a key: usage error naming --key / EMINE_KEY" \
            "$?/$(grep -c 'EMINE_KEY' "$T/unauth.err")" "2/1"
        code=$(curl -s -o "$T/unauth.sse" -w '%{http_code}' -m 5 "$SSE")
    fi
    em_eq "SSE $what key: 401, no event" "$code/$(grep -c '^id:' "$T/unauth.sse")" "401/0"
done
# A raw subscribe without a key over ZeroMQ, from node (not eminectl).
(cd tests/interop && node --input-type=module -e '
import * as zmq from "zeromq";
const d = new zmq.Dealer(); d.connect(process.argv[1]);
await d.send(JSON.stringify({subscribe: {after: 0}, credit: 100}));
const t = setTimeout(() => { console.log("timeout"); process.exit(0); }, 3000);
const [m] = await d.receive(); clearTimeout(t); console.log(m.toString()); d.close();' \
    "$EMINE_NOTIFY_ZMQ") >"$T/raw.out" 2>&1 || true
em_eq "raw ZeroMQ subscribe without a key: {\"error\":\"unauthorized\"}" \
    "$(head -n 1 "$T/raw.out")" '{"error":"unauthorized"}'

# ---- still serving -----------------------------------------------------------------------------
em_eq "notify still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://$EMINE_NOTIFY_HTTP/readyz")" 200
"$CTL" tail --key "${KEY[ops]}" --from 0 --count 5 --timeout-ms 5000 >"$T/end.tail" 2>/dev/null
em_eq "and streams" "$(wc -l <"$T/end.tail")" 5
curl -s "http://$EMINE_NOTIFY_HTTP/metrics" >"$T/metrics.txt"
em_check "/metrics counts SSE events" grep -q '^emine_notify_sse_sent_total [1-9]' "$T/metrics.txt"
em_done
