#!/usr/bin/env bash
# The domain rules that need an earlier event, through the running pipeline (validate reads the
# licence's archived history from PostgreSQL):
#   kpTransferAfter2YearsOfGrant  a KP exploration licence transferred before two years from its
#                                 archived grant is rejected at /data/effectiveOn;
#   licenceInForce                a renewal of a revoked licence is rejected; of a licence the
#                                 archive does not know, accepted with a note;
#   renewedAreaNotLarger          a renewal larger than the granted area is rejected.
# Each event is sent after the ack of the one it depends on (validate sees committed rows only).
# Then validate with its PostgreSQL unreachable: the same renewal of the revoked licence is
# accepted with "not checked" notes, promptly: the rules are skipped, never a reason to reject.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
FX=tests/fixtures/schemas

# mk OUT FIXTURE 'JS that edits e (the event) and d (its data)'
mk() {
    node -e 'const fs=require("fs");const e=JSON.parse(fs.readFileSync(process.argv[1]));const d=e.data;
(new Function("e","d",process.argv[3]))(e,d);fs.writeFileSync(process.argv[2],JSON.stringify(e))' "$2" "$T/$1.json" "$3"
}
# pub NAME: publishes $T/NAME.json over ZeroMQ (whole answer kept) into $T/NAME.jsonl
pub() { "$CTL" publish --raw --results "$T/$1.jsonl" "$T/$1.json" 2>/dev/null; }
# res NAME: "status pointer keyword,..." of the errors, or "status" and the notes' keywords
res() { em_js 'l[0].status+" "+(l[0].errors||[]).map(e=>e.pointer+" "+e.keyword).join(",")+(((l[0].reply.results||[l[0].reply])[0].notes||[]).map(n=>" note:"+n.keyword).join(""))' <"$T/$1.jsonl"; }

KPSRC='e.source="/pk/kp/dgmm/cadastre";e.province="PK-KP";delete e.projectid;'
mk grant-kp "$FX/licence.granted/valid-reko-diq-el-5.json" \
    "$KPSRC"'e.id="kp-el-e2e-grant";e.subject=d.licenceId="PK-KP/EL-E2E-1";d.grantedOn=d.validFrom="2024-01-10";d.validTo="2029-01-09";'
mk xfer-early "$FX/licence.transferred/valid-kp-exploration-after-3-years.json" \
    'e.id="kp-el-e2e-xfer-early";e.subject=d.licenceId="PK-KP/EL-E2E-1";delete d.issuedOn;d.effectiveOn="2025-03-01";'
mk xfer-late "$FX/licence.transferred/valid-kp-exploration-after-3-years.json" \
    'e.id="kp-el-e2e-xfer-late";e.subject=d.licenceId="PK-KP/EL-E2E-1";delete d.issuedOn;d.effectiveOn="2026-02-01";'
mk renew-unknown "$FX/licence.renewed/valid-saindak-2022.json" \
    'e.id="ba-ml-e2e-renew-unknown";e.subject=d.licenceId="PK-BA/ML-E2E-NEVER-GRANTED";'
mk grant-ba "$FX/licence.granted/valid-reko-diq-el-5.json" \
    'e.id="ba-el-e2e-grant";e.subject=d.licenceId="PK-BA/EL-E2E-2";d.areaKm2=95.5;'
mk renew-bigger "$FX/licence.renewed/valid-saindak-2022.json" \
    'e.id="ba-el-e2e-renew-bigger";delete e.projectid;e.subject=d.licenceId="PK-BA/EL-E2E-2";d.areaKm2After=120;'
mk renew-smaller "$FX/licence.renewed/valid-saindak-2022.json" \
    'e.id="ba-el-e2e-renew-smaller";delete e.projectid;e.subject=d.licenceId="PK-BA/EL-E2E-2";d.areaKm2After=90;'
mk revoke-ba "$FX/licence.revoked/valid-exploration-non-commencement.json" \
    'e.id="ba-el-e2e-revoke";e.subject=d.licenceId="PK-BA/EL-E2E-2";'
mk renew-revoked "$FX/licence.renewed/valid-saindak-2022.json" \
    'e.id="ba-el-e2e-renew-revoked";delete e.projectid;e.subject=d.licenceId="PK-BA/EL-E2E-2";d.renewalNo=2;'

pub grant-kp
em_eq "the KP exploration licence is granted (2024-01-10)" "$(res grant-kp)" "accepted "
pub xfer-early
em_eq "its transfer effective 2025-03-01 is rejected at /data/effectiveOn" \
    "$(res xfer-early)" "rejected /data/effectiveOn kpTransferAfter2YearsOfGrant"
em_check "the message names the grant and the first allowed day" \
    grep -q 'issued on 2024-01-10.*not before 2026-01-10' "$T/xfer-early.jsonl"
em_eq "the rejected transfer is a dead letter, not archived" \
    "$(em_psql "select (select count(*) from rejected_events where event_id = 'kp-el-e2e-xfer-early' and errors->0->>'keyword' = 'kpTransferAfter2YearsOfGrant') || ' ' || (select count(*) from events where id = 'kp-el-e2e-xfer-early')")" "1 0"
pub xfer-late
em_eq "its transfer effective 2026-02-01 is accepted, without notes" "$(res xfer-late)" "accepted "

pub renew-unknown
em_eq "a renewal of a licence the archive does not know: accepted with a note" \
    "$(res renew-unknown)" "accepted  note:licenceInForce"
em_eq "the note is kept in events.notes" \
    "$(em_psql "select notes->0->>'keyword' from events where id = 'ba-ml-e2e-renew-unknown'")" licenceInForce

pub grant-ba
em_eq "a Balochistan exploration licence is granted (95.5 km2)" "$(res grant-ba)" "accepted "
pub renew-bigger
em_eq "a renewal to 120 km2 is rejected at /data/areaKm2After" \
    "$(res renew-bigger)" "rejected /data/areaKm2After renewedAreaNotLarger"
pub renew-smaller
em_eq "a renewal to 90 km2 is accepted" "$(res renew-smaller)" "accepted "
pub revoke-ba
em_eq "the licence is revoked" "$(res revoke-ba)" "accepted "
pub renew-revoked
em_eq "a renewal of the revoked licence is rejected at /data/licenceId" \
    "$(res renew-revoked)" "rejected /data/licenceId licenceInForce"

seq_smaller=$(em_js 'l[0].seq' <"$T/renew-smaller.jsonl")
em_redis FLUSHALL >/dev/null
cp "$T/renew-smaller.json" "$T/renew-smaller-again.json"
pub renew-smaller-again
em_eq "the renewal accepted before the revocation, re-sent (cache flushed): duplicate, original seq" \
    "$(em_js 'l[0].status+" "+l[0].seq' <"$T/renew-smaller-again.jsonl")" "duplicate $seq_smaller"

# validate cannot reach PostgreSQL: the rules are skipped with a note, the event passes.
em_free_port deadport
em_stop validate
EMINE_VALIDATE_STATE_DSN="host=127.0.0.1 port=$deadport dbname=emine user=emine" \
    EMINE_VALIDATE_STATE_TIMEOUT_MS=500 em_start validate && em_wait_ready validate
mk renew-revoked-2 "$T/renew-revoked.json" 'e.id="ba-el-e2e-renew-revoked-unchecked";'
t0=$(date +%s%N)
pub renew-revoked-2
ms=$((($(date +%s%N) - t0) / 1000000))
em_eq "PostgreSQL unreachable for validate: accepted with a 'not checked' note per rule" \
    "$(res renew-revoked-2)" "accepted  note:licenceInForce note:renewedAreaNotLarger"
em_check "the note says why" grep -q '"message":"not checked: the archive could not be read (postgres connection failed' "$T/renew-revoked-2.jsonl"
em_check "answered promptly (${ms} ms < 3000)" test "$ms" -lt 3000
em_eq "validate still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://$EMINE_VALIDATE_HTTP/readyz")" 200
em_check "validate /metrics counts the failed read" \
    grep -q '^emine_validate_state_reads_total{result="failed"} 1$' <(curl -s "http://$EMINE_VALIDATE_HTTP/metrics")
em_stop validate
em_start validate && em_wait_ready validate
mk renew-revoked-3 "$T/renew-revoked.json" 'e.id="ba-el-e2e-renew-revoked-again";'
pub renew-revoked-3
em_eq "PostgreSQL reachable again: the revoked licence's renewal is rejected again" \
    "$(res renew-revoked-3)" "rejected /data/licenceId licenceInForce"
em_check "validate /metrics counts the successful read" \
    grep -q '^emine_validate_state_reads_total{result="ok"} 1$' <(curl -s "http://$EMINE_VALIDATE_HTTP/metrics")
em_done
