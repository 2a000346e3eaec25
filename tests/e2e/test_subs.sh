#!/usr/bin/env bash
# test_subs.sh - subscriptions end to end with the real binaries: archive applies migration
# 002, an operator creates organisations and API keys with `eminectl subs`, organisations
# manage their subscriptions over notify's /v1/subscriptions with their keys, and the
# operator lists them.
set -uo pipefail
source "$(dirname "$0")/../lib/harness.sh"

em_harness_start
em_start archive && em_wait_ready archive || { em_fail "archive ready"; em_done; exit 1; }
em_start notify && em_wait_ready notify || { em_fail "notify ready"; em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
API="http://$EMINE_NOTIFY_HTTP/v1/subscriptions"

em_eq "migration 002 applied" \
    "$(em_psql "select count(*) from schema_migrations where name = '002_subscriptions.sql'")" 1

em_check "eminectl subs org-create (enterprise)" \
    "$CTL" subs org-create mhd --kind enterprise --name "MCC Huaye Duddar" --party 0045121 \
    --source /operators/mhd
em_check "eminectl subs org-create (authority)" \
    "$CTL" subs org-create ba-mmdd --kind authority --province PK-BA --source /pk/ba/mmdd/
"$CTL" subs org-create x --kind authority >/dev/null 2>&1
em_eq "an authority without a province is refused (usage)" "$?" 2
KEY_MHD=$("$CTL" subs key-create mhd --label e2e 2>/dev/null)
KEY_BA=$("$CTL" subs key-create ba-mmdd 2>/dev/null)
em_check "keys are printed once" test -n "$KEY_MHD" -a -n "$KEY_BA"
em_eq "only the key's SHA-256 is stored" \
    "$(em_psql "select count(*) from api_keys where key_hash = encode(sha256(convert_to('$KEY_MHD', 'UTF8')), 'hex')")" 1
em_eq "the key itself is not stored" \
    "$(em_psql "select count(*) from api_keys where key_hash = '$KEY_MHD'")" 0

code=$(curl -s -o /dev/null -w '%{http_code}' "$API")
em_eq "no key: 401" "$code" 401

body='{"sink":"https://hooks.mhd.example/emine","types":["pk.gov.emining.shipment.exported"],"languages":["zh-Hans","en"]}'
resp=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $KEY_MHD" \
    -H 'Content-Type: application/json' -d "$body" "$API")
em_eq "POST: 201" "$(tail -n1 <<<"$resp")" 201
id=$(head -n -1 <<<"$resp" | grep -o '"id": *"sub_[0-9a-f]*"' | grep -o 'sub_[0-9a-f]*')
em_check "the new subscription has an id" test -n "$id"

resp=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $KEY_MHD" \
    -H 'Content-Type: application/json' -d '{"sink":"ftp://x"}' "$API")
em_eq "bad sink: 400" "$(tail -n1 <<<"$resp")" 400
em_eq "bad sink: the error names the member" "$(head -n -1 <<<"$resp")" \
    '{"error":"must be an http or https URL","pointer":"/sink"}'
resp=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $KEY_MHD" \
    -H 'Content-Type: application/json' -d '{"sink":"http://169.254.169.254/latest/meta-data"}' "$API")
em_eq "a sink on a link-local address (cloud metadata) is refused at creation: 400" \
    "$(tail -n1 <<<"$resp")" 400
em_check "... naming /sink and the setting that allows it" \
    grep -q '"pointer":"/sink".*\|webhook_allow_private.*"pointer":"/sink"' <<<"$(head -n -1 <<<"$resp")"

em_eq "GET by another organisation: 404" \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_BA" "$API/$id")" 404
em_eq "GET by its organisation: 200" \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_MHD" "$API/$id")" 200
em_eq "PUT: 200" "$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
    -H "Authorization: Bearer $KEY_MHD" -d '{"sink":"https://hooks.mhd.example/v2"}' "$API/$id")" 200

list=$("$CTL" subs list)
em_check "eminectl subs list shows it with the new sink" grep -q "$id	mhd	active	https://hooks.mhd.example/v2" <<<"$list"
em_check "eminectl subs show names the organisation" \
    bash -c "'$CTL' subs show '$id' | grep -q '\"org_id\": \"mhd\"'"
em_check "eminectl subs show keeps the secret out" \
    bash -c "! '$CTL' subs show '$id' | grep -q whsec_"

# Dead letters as an operator sees them, and a redrive request (no event rows exist here, so
# notify has nothing to re-send and the request stays visible).
em_psql "insert into delivery_dead_letters (subscription_id, seq, attempts, last_status, last_error)
         values ('$id', 7, 6, 503, 'HTTP 503')" >/dev/null
em_check "eminectl subs dead-letters lists it" \
    bash -c "'$CTL' subs dead-letters --sub '$id' | grep -q '^$id	7	6	503	'"
em_eq "eminectl subs redrive" "$("$CTL" subs redrive "$id")" "1 dead letter(s) of $id queued for redrive"
em_eq "the redrive is requested" \
    "$(em_psql "select count(*) from delivery_dead_letters where redriven_at is not null")" 1
em_eq "a second redrive finds nothing new" "$("$CTL" subs redrive "$id" --seq 7)" \
    "0 dead letter(s) of $id queued for redrive"

key_id=$(em_psql "select id from api_keys where org_id = 'mhd'")
em_check "eminectl subs key-revoke" "$CTL" subs key-revoke "$key_id"
em_eq "a revoked key: 401" \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY_MHD" "$API")" 401

em_check "eminectl subs delete" "$CTL" subs delete "$id"
em_eq "deleted with its cursor" \
    "$(em_psql "select count(*) from subscription_cursors where subscription_id = '$id'")" 0
em_check "notify still ready" curl -sf "http://$EMINE_NOTIFY_HTTP/readyz" -o /dev/null
em_done
