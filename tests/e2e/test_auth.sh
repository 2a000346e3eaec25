#!/usr/bin/env bash
# Producer authentication and authorisation (DESIGN security; invariant 9, spoofed sources):
# keys over HTTP (Bearer) and ZeroMQ (PLAIN, checked by ingest's ZAP handler), allowed source
# prefixes and type patterns per producer, key rotation and disabling.  A refusal changes
# nothing in the archive.
source "$(dirname "$0")/../lib/harness.sh"
export EMINE_INGEST_AUTH=true EMINE_INGEST_PRODUCERS_REFRESH_MS=200
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
H="http://$EMINE_INGEST_HTTP/v1/events"

out=$("$CTL" producers add ba-cadastre --source /pk/ba/ --type 'pk.gov.emining.licence.*')
em_eq "eminectl producers add exits 0" "$?" 0
KEY=$(printf '%s\n' "$out" | tail -n 1)
em_eq "the key is 64 hex characters" "$(printf '%s' "$KEY" | grep -cE '^[0-9a-f]{64}$')" 1
em_eq "only the key's SHA-256 is stored" "$(em_psql "select key_sha256 = encode(sha256('$KEY'::bytea), 'hex') from producers")" t
sleep 0.6 # ingest re-reads the table every 200 ms here

ev() { # id source type: an event with complete data for its type (validate checks the catalogue)
    local data
    case "$3" in
    *.licence.granted) data='{"licenceId":"PK-BA/EL-5","licenceType":"EL","holders":[{"party":{"name":"Barrick Gold Corporation","country":"CA","role":"holder"},"sharePct":100}],"minerals":["copper","gold"],"area":{"type":"Polygon","coordinates":[[[62.38,28.92],[62.48,28.92],[62.48,29.02],[62.38,29.02],[62.38,28.92]]]},"areaKm2":99.1,"grantedOn":"2022-12-15","validFrom":"2022-12-15","validTo":"2027-12-14"}' ;;
    *.licence.renewed) data='{"licenceId":"PK-BA/EL-5","renewalNo":1,"previousValidTo":"2027-12-14","newValidTo":"2030-12-14"}' ;;
    *.royalty.paid) data='{"licenceId":"PK-BA/EL-5","period":{"start":"2024-07-01","end":"2025-06-30"},"basisQuantity":{"value":1,"unit":"t"},"rate":{"type":"per_tonne","value":1},"amountDue":{"amount":"1.00","currency":"PKR"},"amountPaid":{"amount":"1.00","currency":"PKR"},"paidOn":"2025-07-15","paymentRef":"BA-ROY-1"}' ;;
    *) data='{"licenceId":"PK-BA/EL-5"}' ;;
    esac
    printf '{"specversion":"1.0","id":"%s","source":"%s","type":"%s","data":%s}' "$1" "$2" "$3" "$data"
}
post() { # body [key] -> prints code; body in $T/out
    if [ -n "${2:-}" ]; then
        curl -s -D "$T/hdr" -o "$T/out" -w '%{http_code}' -H 'content-type: application/cloudevents+json' -H "Authorization: Bearer $2" --data "$1" "$H"
    else
        curl -s -D "$T/hdr" -o "$T/out" -w '%{http_code}' -H 'content-type: application/cloudevents+json' --data "$1" "$H"
    fi
}
field() { node -e 'const b=JSON.parse(require("fs").readFileSync(process.argv[1]));const f=new Function("b","return ("+process.argv[2]+")");console.log(f(b))' "$T/out" "$1"; }

em_eq "HTTP without a key: 401" "$(post "$(ev a1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)")" 401
if grep -qi '^www-authenticate: Bearer' "$T/hdr"; then em_ok "401 says how to authenticate"; else em_fail "401 says how to authenticate"; fi
em_eq "HTTP with a wrong key: 401" "$(post "$(ev a1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)" "$(printf '0%.0s' {1..64})")" 401
em_eq "HTTP with the key, allowed source and type: 201" "$(post "$(ev a1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)" "$KEY")" 201
em_eq "the archive records the producer" "$(em_psql "select producer from events where id='a1'")" ba-cadastre
em_eq "a spoofed source (another province's cadastre): 403" "$(post "$(ev a2 /pk/sd/coal/cadastre pk.gov.emining.licence.granted)" "$KEY")" 403
em_eq "the refusal names /source" "$(field 'b.status+" "+b.errors[0].pointer+" "+b.errors[0].keyword')" "unauthorized /source authorization"
em_eq "a type the producer may not publish: 403 at /type" "$(post "$(ev a3 /pk/ba/mmdd/cadastre pk.gov.emining.royalty.paid)" "$KEY") $(field 'b.errors[0].pointer')" "403 /type"
em_eq "refused events change nothing" "$(em_psql "select count(*) from events where id in ('a2','a3')") $(em_psql "select count(*) from rejected_events")" "0 0"

# ZeroMQ: PLAIN user = producer name, password = key.
ev z1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.renewed >"$T/z1.json"
"$CTL" publish --producer ba-cadastre --key "$KEY" --results "$T/z1.jsonl" "$T/z1.json" 2>/dev/null
em_eq "ZeroMQ with the producer's key: accepted" "$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).status)' "$T/z1.jsonl")" accepted
ev z2 /pk/ba/mmdd/cadastre pk.gov.emining.licence.renewed >"$T/z2.json"
"$CTL" publish --producer ba-cadastre --key wrong --deadline-s 3 --timeout-ms 1000 --results "$T/z2.jsonl" "$T/z2.json" 2>/dev/null
em_eq "ZeroMQ with a wrong key: never admitted (publish exit 3, unanswered)" "$?" 3
EMINE_PRODUCER= EMINE_PRODUCER_KEY= "$CTL" publish --deadline-s 3 --timeout-ms 1000 "$T/z2.json" 2>/dev/null
em_eq "ZeroMQ without credentials: never admitted" "$?" 3
ev z3 /pk/psw/customs pk.gov.emining.licence.renewed >"$T/z3.json"
"$CTL" publish --producer ba-cadastre --key "$KEY" --results "$T/z3.jsonl" "$T/z3.json" 2>/dev/null
em_eq "ZeroMQ spoofed source: unauthorized" "$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(r.status, r.errors[0].pointer)' "$T/z3.jsonl")" "unauthorized /source"
em_eq "z2 and z3 were not archived" "$(em_psql "select count(*) from events where id in ('z2','z3')")" 0

# Rotation and disabling take effect within the refresh interval.
NEW=$("$CTL" producers rotate ba-cadastre | tail -n 1)
sleep 0.6
em_eq "after rotation the old key is refused" "$(post "$(ev r1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)" "$KEY")" 401
em_eq "and the new key works" "$(post "$(ev r1 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)" "$NEW")" 201
"$CTL" producers disable ba-cadastre >/dev/null
sleep 0.6
em_eq "a disabled producer is refused" "$(post "$(ev r2 /pk/ba/mmdd/cadastre pk.gov.emining.licence.granted)" "$NEW")" 401
em_check "eminectl producers list shows it disabled" bash -c "'$CTL' producers list | grep -q 'ba-cadastre.*disabled'"
em_eq "ingest still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://$EMINE_INGEST_HTTP/readyz")" 200
em_done
