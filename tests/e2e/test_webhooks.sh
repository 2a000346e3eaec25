#!/usr/bin/env bash
# test_webhooks.sh - webhooks end to end: subscriptions of four organisations (the public
# portal, a competitor enterprise, an operator, a provincial department) are created over
# /v1/subscriptions; the fixtures and 200 generated events go through the whole pipeline;
# notify is killed with SIGKILL in the middle of delivering and restarted.  An independent
# receiver (node + the reference npm `standardwebhooks` library) verifies every signature.
# Each organisation must receive exactly the events its tier allows (no leak, none missing),
# in seq order once duplicates (same webhook-id) are dropped.
set -uo pipefail
source "$(dirname "$0")/../lib/harness.sh"

if [ ! -d tests/interop/node_modules/standardwebhooks ]; then
    (cd tests/interop && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
        { em_fail "npm ci in tests/interop (the standardwebhooks test peer)"; em_done; exit 1; }
fi

em_harness_start
export EMINE_NOTIFY_WEBHOOK_ALLOW_PRIVATE=true # the receiver is on 127.0.0.1
export EMINE_NOTIFY_SUBS_RELOAD_MS=100
export EMINE_NOTIFY_CURSOR_FLUSH_MS=100
export EMINE_NOTIFY_WEBHOOK_RETRY_MS=100,200,400,800
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
API="http://$EMINE_NOTIFY_HTTP/v1/subscriptions"
SECRET="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

em_free_port RX_PORT
node tests/interop/webhook_receiver.mjs "$RX_PORT" "$SECRET" "$T/rx.jsonl" 3 >"$T/rx.out" 2>&1 &
RX_PID=$!
em_at_exit "kill $RX_PID 2>/dev/null"
for _ in $(seq 100); do grep -q listening "$T/rx.out" 2>/dev/null && break; sleep 0.1; done
em_check "the reference receiver listens" grep -q listening "$T/rx.out"

"$CTL" subs org-create portal --kind public >/dev/null &&
"$CTL" subs org-create rival --kind enterprise --party 91650000MA77RIVAL1 --source /operators/rival >/dev/null &&
"$CTL" subs org-create mhd --kind enterprise --party 0045121 --source /operators/mhd >/dev/null &&
"$CTL" subs org-create ba --kind authority --province PK-BA --source /pk/ba/mmdd/ >/dev/null
em_eq "four organisations (besides the harness's operator)" "$(em_psql "select count(*) from organisations where id <> 'emine-ops'")" 4
for org in portal rival mhd ba; do
    key=$("$CTL" subs key-create "$org" 2>/dev/null)
    # Filters try to widen (everything whose type starts with pk.): they cannot.
    code=$(curl -s -o "$T/sub-$org.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
        -d "{\"sink\":\"http://127.0.0.1:$RX_PORT/$org\",\"secret\":\"$SECRET\",
             \"filters\":[{\"any\":[{\"prefix\":{\"type\":\"pk.\"}},{\"not\":{\"prefix\":{\"type\":\"pk.\"}}}]}]}" "$API")
    em_eq "subscription of $org created" "$code" 201
done

tests/fixtures/gen_events.sh 200 wh >"$T/gen.ndjson"
"$CTL" publish --batch 20 tests/fixtures/events/*.json "$T/gen.ndjson" >/dev/null 2>"$T/pub.err"
em_eq "fixtures and generated events published" "$?" 0
total=$(em_psql 'select count(*) from events')
em_eq "all archived" "$total" 212

# SIGKILL notify while it is delivering, then restart it.
for _ in $(seq 300); do [ "$(wc -l <"$T/rx.jsonl" 2>/dev/null || echo 0)" -ge 60 ] && break; sleep 0.05; done
before=$(wc -l <"$T/rx.jsonl")
em_kill9 notify
em_check "killed while deliveries were under way (got $before of more)" test "$before" -lt 300
em_restart notify || em_fail "notify restarted"

# What each organisation may see, written out in SQL from domain.md §6.
declare -A WANT=(
    [portal]="visibility = 'public'"
    [rival]="visibility = 'public'"
    [mhd]="visibility = 'public' or source like '/operators/mhd/%'"
    [ba]="visibility = 'public' or (visibility in ('partner', 'restricted') and province = 'PK-BA') or source like '/pk/ba/mmdd/%'"
)
expected() { em_psql "select coalesce(string_agg(seq::text, ',' order by seq), '') from events where ${WANT[$1]}"; }
got() {
    node -e '
const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const seen = new Set(), order = [];
for (const r of l) if (r.ok && r.path === "/" + process.argv[2] && !seen.has(r.seq)) { seen.add(r.seq); order.push(r.seq); }
console.log(order.join(","));' "$T/rx.jsonl" "$1"
}
for org in portal rival mhd ba; do
    want=$(expected "$org")
    deadline=$((SECONDS + 60))
    while [ "$(got "$org")" != "$want" ] && ((SECONDS < deadline)); do sleep 0.2; done
    em_eq "$org received exactly what it may see, in seq order ($(tr ',' '\n' <<<"$want" | grep -c .) events)" "$(got "$org")" "$want"
done
em_eq "every delivery verified by the reference library" \
    "$(grep -c '"ok":false' "$T/rx.jsonl")" 0
em_eq "the competitor got nothing beyond public" \
    "$(grep '"path":"/rival"' "$T/rx.jsonl" | grep -vc '"visibility":"public"')" 0
dups=$(($(wc -l <"$T/rx.jsonl") - $(node -e '
const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
console.log(new Set(l.map((r) => r.path + r.id)).size);' "$T/rx.jsonl")))
em_log "re-sent after the kill (same webhook-id): $dups"
sleep 0.5
em_eq "cursors persisted at the head" \
    "$(em_psql "select count(*) from subscription_cursors where seq = $total")" 4
em_eq "no dead letters" "$(em_psql 'select count(*) from delivery_dead_letters')" 0

# Replay by entity: the Duddar project's events again, to the department and to the portal;
# visibility still applies (the portal gets the public ones only), in seq order.
sub_id() { grep -o '"id": *"sub_[0-9a-f]*"' "$T/sub-$1.json" | grep -o 'sub_[0-9a-f]*'; }
lines_before=$(wc -l <"$T/rx.jsonl")
duddar="projectid = 'duddar' or envelope->'data'->>'projectId' = 'duddar'"
n_ba=$(em_psql "select count(*) from events where ($duddar) and (${WANT[ba]})")
n_portal=$(em_psql "select count(*) from events where ($duddar) and (${WANT[portal]})")
em_eq "eminectl subs replay --project duddar (department)" \
    "$("$CTL" subs replay "$(sub_id ba)" --project duddar)" \
    "$(em_psql "select count(*) from events where $duddar") event(s) queued for replay to $(sub_id ba)"
"$CTL" subs replay "$(sub_id portal)" --project duddar >/dev/null
replayed() { tail -n +"$((lines_before + 1))" "$T/rx.jsonl" | grep -c "\"path\":\"/$1\""; }
deadline=$((SECONDS + 60))
while { [ "$(replayed ba)" -lt "$n_ba" ] || [ "$(replayed portal)" -lt "$n_portal" ]; } &&
    ((SECONDS < deadline)); do sleep 0.2; done
sleep 0.5
em_eq "the department got its $n_ba Duddar events again" "$(replayed ba)" "$n_ba"
em_eq "the portal got the $n_portal public Duddar event(s) again" "$(replayed portal)" "$n_portal"
em_eq "replays in seq order" "$(tail -n +"$((lines_before + 1))" "$T/rx.jsonl" | node -e '
const l = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean).map(JSON.parse).filter((r) => r.path === "/ba");
console.log(l.every((r, i) => i === 0 || r.seq > l[i - 1].seq) && l.every((r) => r.ok))')" true
# A replay request is removed once its delivery is acknowledged: wait for that (bounded).
deadline=$((SECONDS + 30))
while [ "$(em_psql 'select count(*) from delivery_dead_letters')" != 0 ] && ((SECONDS < deadline)); do sleep 0.2; done
em_eq "replay requests all consumed" "$(em_psql 'select count(*) from delivery_dead_letters')" 0

# Per-subscription cursor lag on notify's /metrics, in a format promtool accepts.
curl -s "http://$EMINE_NOTIFY_HTTP/metrics" >"$T/notify.prom"
out=$(promtool check metrics <"$T/notify.prom" 2>&1)
if [ $? -eq 0 ]; then em_ok "promtool accepts notify's /metrics with subscriptions"; else em_fail "promtool accepts notify's /metrics with subscriptions" "$out"; fi
em_eq "the department's subscription lag is on /metrics and is 0 once delivered" \
    "$(awk -v m="emine_notify_subscription_lag_events{subscription=\"$(sub_id ba)\"}" '$1 == m { print $2 }' "$T/notify.prom")" 0
em_done
