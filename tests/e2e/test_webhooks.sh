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
# A copy of the summary templates, so that a SIGHUP reload can be shown below.
cp -r config/templates "$EM_TMP/templates"
export EMINE_NOTIFY_TEMPLATES=$EM_TMP/templates
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
    echo "$key" >"$T/key-$org"
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
# The portal replays over HTTP with its own key (the same lane as eminectl subs replay).
code=$(curl -s -o "$T/replay.json" -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/key-portal")" \
    -d '{"project":"duddar"}' "$API/$(sub_id portal)/replay")
em_eq "POST /v1/subscriptions/{id}/replay by the portal: 202 and the count queued" \
    "$code $(cat "$T/replay.json")" "202 {\"queued\":$(em_psql "select count(*) from events where $duddar")}"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$T/key-rival")" \
    -d '{"project":"duddar"}' "$API/$(sub_id portal)/replay")
em_eq "... another organisation cannot replay the portal's subscription: 404" "$code" 404
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

# Human summaries (config/templates): a zh-Hans subscriber (CST by default) and an Urdu one
# (PKT) of the public portal get the tender in their languages, times in their zones.
pkey=$("$CTL" subs key-create portal 2>/dev/null)
tsub() { # tsub PATH LANGUAGES [EXTRA]: creates a subscription to the tenders, prints the code
    curl -s -o "$T/tsub-$1.json" -w '%{http_code}' -H "Authorization: Bearer $pkey" \
        -d "{\"sink\":\"http://127.0.0.1:$RX_PORT/$1\",\"secret\":\"$SECRET\",\"languages\":$2,
             \"types\":[\"pk.gov.emining.tender.published\"]${3:-}}" "$API"
}
em_eq "zh-Hans subscription created" "$(tsub zh '["zh-Hans","en"]')" 201
em_eq "its time zone defaults to CST" "$(node -p 'require(process.argv[1]).timezone' "$T/tsub-zh.json")" Asia/Shanghai
em_eq "Urdu subscription created" "$(tsub ur '["ur"]')" 201
em_eq "its time zone defaults to PKT" "$(node -p 'require(process.argv[1]).timezone' "$T/tsub-ur.json")" Asia/Karachi
em_eq "an unknown time zone is refused" "$(tsub bad '["en"]' ',"timezone":"Europe/London"')" 400
em_eq "... with a pointer to it" "$(node -p 'require(process.argv[1]).pointer' "$T/tsub-bad.json")" /timezone
sleep 0.5 # the new subscriptions are picked up (subs_reload_ms)
tender() { # tender ID: a public tender whose bids close at 21:30 PKT (00:30 CST the next day)
    node -e '
const e = JSON.parse(require("fs").readFileSync("tests/fixtures/events/11-tender-published-pmdc.json", "utf8"));
e.id = process.argv[1]; e.data.tenderPeriod.end = "2026-04-02T21:30:00+05:00";
console.log(JSON.stringify(e));' "$1" >"$T/$1.json"
    "$CTL" publish "$T/$1.json" >/dev/null
}
rx_line() { # rx_line PATH EVENT_ID: the receiver's line for that delivery (JSON), or nothing
    node -e '
const l = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const r = l.find((r) => r.path === "/" + process.argv[2] && r.eventId === process.argv[3]);
if (r) console.log(JSON.stringify(r));' "$T/rx.jsonl" "$1" "$2"
}
wait_rx() { local d=$((SECONDS + 30)); while [ -z "$(rx_line "$1" "$2")" ] && ((SECONDS < d)); do sleep 0.2; done; }
tender tender-cst-1
wait_rx zh tender-cst-1
wait_rx ur tender-cst-1
zh=$(rx_line zh tender-cst-1)
ur=$(rx_line ur tender-cst-1)
field() { node -e 'const r = JSON.parse(process.argv[1]); console.log(r[process.argv[2]] ?? "")' "$1" "$2"; }
em_eq "zh-Hans delivery verified by the reference library" "$(field "$zh" ok)" true
em_eq "its summarylang" "$(field "$zh" summarylang)" zh-Hans
em_check "its summary is Chinese with the closing time in CST, the next day: $(field "$zh" summary)" \
    grep -q '投标截止时间2026年4月3日 00:30（北京时间）' <<<"$(field "$zh" summary)"
em_check "... and the glossary's terms (公开招标, 合资伙伴遴选)" \
    grep -q '合资伙伴遴选，公开招标' <<<"$(field "$zh" summary)"
em_eq "summaryzhhans is the same text" "$(field "$zh" summaryzhhans)" "$(field "$zh" summary)"
em_check "summaryen (second language) in CST too: $(field "$zh" summaryen)" \
    grep -q 'bids close 2026-04-03 00:30 CST' <<<"$(field "$zh" summaryen)"
em_eq "Urdu delivery verified by the reference library" "$(field "$ur" ok)" true
em_eq "its summarylang" "$(field "$ur" summarylang)" ur
em_eq "its summary isolates the PKT time: $(field "$ur" summary)" "$(node -p '
JSON.parse(process.argv[1]).summary.includes("\u20682026-04-02 21:30 PKT\u2069")' "$ur")" true
em_eq "isolates balanced, every Latin letter and digit inside one" "$(node -e '
const s = JSON.parse(process.argv[1]).summary; let d = 0, ok = s.includes("\u2068");
for (const c of s) { if (c === "\u2068") d++; else if (c === "\u2069") { if (--d < 0) ok = false; }
  else if (/[A-Za-z0-9]/.test(c) && d === 0) ok = false; }
console.log(ok && d === 0)' "$ur")" true
em_eq "the archive keeps the event without summaries" \
    "$(em_psql "select count(*) from events where envelope ? 'summary' or envelope ? 'summaryur'")" 0

# SIGHUP reloads the templates; a broken set is refused and the previous one stays.
sed -i 's/^tender.published = Tender /tender.published = Reloaded: tender /' "$T/templates/en.tmpl"
kill -HUP "$(em_pid notify)"
sleep 1.5
tender tender-cst-2
wait_rx zh tender-cst-2
em_check "after SIGHUP the new English template is used" \
    grep -q '^Reloaded: tender' <<<"$(field "$(rx_line zh tender-cst-2)" summaryen)"
sed -i 's/^tender.awarded = .*/tender.awarded = {{data.awardId|shout}}/' "$T/templates/en.tmpl"
kill -HUP "$(em_pid notify)"
sleep 1.5
em_check "a broken template set is refused on SIGHUP, naming file and line" \
    grep -q "templates not reloaded.*en.tmpl:[0-9]*: 'tender.awarded': unknown filter 'shout'" "$T/notify.log"
tender tender-cst-3
wait_rx zh tender-cst-3
em_check "... and the previous templates stay in force" \
    grep -q '^Reloaded: tender' <<<"$(field "$(rx_line zh tender-cst-3)" summaryen)"
# A broken set at start: notify does not start and says why.
em_free_port p1
em_free_port p2
EMINE_NOTIFY_HTTP=127.0.0.1:$p1 EMINE_NOTIFY_ZMQ=tcp://127.0.0.1:$p2 \
    timeout 20 "$EM_BUILD/bin/emine-notify" >"$T/notify-bad.log" 2>&1
em_eq "notify with a broken template set exits 1" "$?" 1
em_check "... naming the file and line" \
    grep -q "summary templates: .*templates/en.tmpl:[0-9]*: 'tender.awarded': unknown filter 'shout'" "$T/notify-bad.log"
em_done
