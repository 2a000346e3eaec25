#!/usr/bin/env bash
# CurveZMQ on the two external ZeroMQ endpoints ([ingest] / [notify] curve_secret_key): a
# producer registered with its CURVE public key publishes encrypted and is archived under its
# name; an unregistered key and a PLAIN client are refused (nothing archived); `eminectl tail`
# over CURVE receives the events; and recording TCP relays in front of ingest and notify show
# the producer key, the organisation key and the event ids in clear without CURVE and nowhere
# in the bytes with CURVE.
source "$(dirname "$0")/../lib/harness.sh"
export EMINE_INGEST_AUTH=true EMINE_INGEST_PRODUCERS_REFRESH_MS=200
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
unset EMINE_CURVE_SERVER_KEY EMINE_CURVE_SECRET

# --- keys
em_curve_keypair ING_PUB ING_SEC
em_curve_keypair NOT_PUB NOT_SEC
em_curve_keypair P_PUB P_SEC   # the producer's own keypair
em_curve_keypair X_PUB X_SEC   # a keypair nobody registered
em_eq "eminectl keygen: 40-character Z85 public and secret keys" "${#ING_PUB} ${#ING_SEC} ${#P_PUB}" "40 40 40"
em_check "the two keys differ" test "$ING_PUB" != "$ING_SEC"

out=$("$CTL" producers add ba-cadastre --source /pk/ba/ --type 'pk.gov.emining.*' --curve-public "$P_PUB")
em_eq "eminectl producers add --curve-public exits 0" "$?" 0
KEY=$(printf '%s\n' "$out" | tail -n 1)
em_eq "the producer's CURVE public key is stored" "$(em_psql "select curve_public from producers where name = 'ba-cadastre'")" "$P_PUB"
em_check "the table refuses a curve_public that is not 40 Z85 characters" \
    bash -c "! '$EM_PGBIN/psql' -X -q -At -v ON_ERROR_STOP=1 '$EMINE_PG_DSN' -c \"update producers set curve_public = 'short'\" 2>/dev/null"
ALL='.-:+=^!/*?&<>()[]{}@%$#0123456789abcdefg' # every Z85 punctuation character, 40 in all
em_eq "the table takes any 40 Z85 characters" "$(em_psql "update producers set curve_public = '$ALL' where name = 'ba-cadastre' returning length(curve_public)" "update producers set curve_public = '$P_PUB'")" 40
em_check "eminectl producers add refuses a malformed --curve-public" \
    bash -c "! '$CTL' producers add other --source /pk/ --type x --curve-public 'not a key' 2>/dev/null"
em_check "eminectl producers list shows the CURVE key" bash -c "'$CTL' producers list | grep -qF -- 'curve: $P_PUB'"
sleep 0.6 # ingest re-reads the table every 200 ms here

tests/fixtures/gen_events.sh 2 plainrec /pk/ba/cadastre >"$T/plain.ndjson"
tests/fixtures/gen_events.sh 2 curverec /pk/ba/cadastre >"$T/curve.ndjson"
tests/fixtures/gen_events.sh 1 strangerrec /pk/ba/cadastre >"$T/stranger.ndjson"
tests/fixtures/gen_events.sh 1 plainclientrec /pk/ba/cadastre >"$T/plainclient.ndjson"
accepted() { grep -c '"status":"accepted"' "$1" || true; }

# --- without CURVE (PLAIN): the key, the event ids and the organisation key travel in clear
em_relay R_ING1 "$EMINE_INGEST_ZMQ" "$T/ingest-plain.cap" || { em_done; exit 1; }
"$CTL" publish --zmq "$R_ING1" --producer ba-cadastre --key "$KEY" --results "$T/plain.jsonl" "$T/plain.ndjson" 2>/dev/null
em_eq "PLAIN through the relay: 2 accepted" "$(accepted "$T/plain.jsonl")" 2
em_check "the PLAIN capture holds the producer key in clear" grep -qaF -- "$KEY" "$T/ingest-plain.cap"
em_check "the PLAIN capture holds an event id in clear" grep -qaF -- "plainrec-1" "$T/ingest-plain.cap"
em_relay R_NOT1 "$EMINE_NOTIFY_ZMQ" "$T/notify-plain.cap" || { em_done; exit 1; }
"$CTL" tail --endpoint "$R_NOT1" --from 0 --count 2 --timeout-ms 10000 >"$T/plain.tail" 2>/dev/null
em_eq "tail without CURVE through the relay: 2 events" "$(grep -c '"seq"' "$T/plain.tail")" 2
em_check "the stream capture holds the organisation key in clear" grep -qaF -- "$EMINE_KEY" "$T/notify-plain.cap"
em_check "the stream capture holds an event id in clear" grep -qaF -- "plainrec-2" "$T/notify-plain.cap"

# --- a bad server key is a clear startup error
EMINE_INGEST_CURVE_SECRET_KEY=short timeout 20 "$EM_BUILD/bin/emine-ingest" >"$T/bad.log" 2>&1
em_eq "ingest with a malformed curve_secret_key exits 1" "$?" 1
em_check "and says why" grep -q 'curve_secret_key: a CURVE secret key is 40 Z85 characters' "$T/bad.log"
EMINE_NOTIFY_CURVE_SECRET_KEY_FILE=$T/nonexistent timeout 20 "$EM_BUILD/bin/emine-notify" >"$T/bad2.log" 2>&1
em_eq "notify with an unreadable curve_secret_key_file exits 1" "$?" 1
em_check "and says why" grep -q 'curve_secret_key_file: cannot read' "$T/bad2.log"

# --- turn CURVE on: ingest's key from the environment, notify's from a file
printf '%s\n' "$NOT_SEC" >"$T/notify.key"
chmod 600 "$T/notify.key"
export EMINE_INGEST_CURVE_SECRET_KEY=$ING_SEC EMINE_NOTIFY_CURVE_SECRET_KEY_FILE=$T/notify.key
em_restart ingest || { em_done; exit 1; }
em_restart notify || { em_done; exit 1; }
em_check "ingest logs its CURVE public key" grep -qF -- "CURVE on $EMINE_INGEST_ZMQ; server public key $ING_PUB" "$T/ingest.log"
em_check "notify logs its CURVE public key" grep -qF -- "server public key $NOT_PUB" "$T/notify.log"
em_check "--dump-config does not show the secret key" \
    bash -c "'$EM_BUILD/bin/emine-ingest' --dump-config | grep -qF '[ingest] curve_secret_key = (set)' && ! '$EM_BUILD/bin/emine-ingest' --dump-config | grep -qF -- \"\$EMINE_INGEST_CURVE_SECRET_KEY\""

em_relay R_ING2 "$EMINE_INGEST_ZMQ" "$T/ingest-curve.cap" || { em_done; exit 1; }
"$CTL" publish --zmq "$R_ING2" --server-key "$ING_PUB" --curve-secret "$P_SEC" --results "$T/curve.jsonl" "$T/curve.ndjson" 2>/dev/null
em_eq "CURVE with the registered key: 2 accepted" "$(accepted "$T/curve.jsonl")" 2
em_eq "archived under the producer's name" "$(em_psql "select count(*) from events where id like 'curverec-%' and producer = 'ba-cadastre'")" 2
em_check "bytes passed through the CURVE relay" test "$(stat -c %s "$T/ingest-curve.cap")" -gt 500
em_check "the CURVE capture holds no event id" bash -c "! grep -qaF curverec '$T/ingest-curve.cap'"
em_check "nor any event text" bash -c "! grep -qaE 'specversion|pk\\.gov\\.emining|/pk/ba/cadastre' '$T/ingest-curve.cap'"
EMINE_CURVE_SERVER_KEY=$ING_PUB EMINE_CURVE_SECRET=$P_SEC "$CTL" publish --results "$T/curve2.jsonl" "$T/curve.ndjson" 2>/dev/null
em_eq "the environment works as the options do (duplicates now)" "$(grep -c '"status":"duplicate"' "$T/curve2.jsonl")" 2

"$CTL" publish --server-key "$ING_PUB" --curve-secret "$X_SEC" --deadline-s 3 --timeout-ms 1000 "$T/stranger.ndjson" 2>/dev/null
em_eq "an unregistered CURVE key is never admitted (exit 3, unanswered)" "$?" 3
em_check "ingest says why" grep -qF -- "refused a ZeroMQ producer (CURVE public key '$X_PUB'): no enabled producer has this CURVE public key" "$T/ingest.log"
"$CTL" publish --server-key "$ING_PUB" --deadline-s 3 --timeout-ms 1000 "$T/stranger.ndjson" 2>/dev/null
em_eq "an ephemeral client key is not admitted either" "$?" 3
"$CTL" publish --producer ba-cadastre --key "$KEY" --deadline-s 3 --timeout-ms 1000 "$T/plainclient.ndjson" 2>/dev/null
em_eq "a PLAIN client is refused by the CURVE server" "$?" 3
"$CTL" publish --server-key "$NOT_PUB" --curve-secret "$P_SEC" --deadline-s 3 --timeout-ms 1000 "$T/plainclient.ndjson" 2>/dev/null
em_eq "a client with the wrong server key gets no answer" "$?" 3
em_eq "none of them was archived" "$(em_psql "select count(*) from events where id like 'strangerrec-%' or id like 'plainclientrec-%'")" 0
"$CTL" publish --server-key "not-a-key" "$T/curve.ndjson" 2>"$T/badkey.err"
em_eq "publish --server-key with a malformed key exits 1" "$?" 1

"$CTL" producers disable ba-cadastre >/dev/null
sleep 0.6
tests/fixtures/gen_events.sh 1 disabledrec /pk/ba/cadastre >"$T/disabled.ndjson"
"$CTL" publish --server-key "$ING_PUB" --curve-secret "$P_SEC" --deadline-s 3 --timeout-ms 1000 "$T/disabled.ndjson" 2>/dev/null
em_eq "a disabled producer's CURVE key is refused" "$?" 3
"$CTL" producers enable ba-cadastre >/dev/null

# --- the stream over CURVE: encrypted, the organisation key still authenticates
em_relay R_NOT2 "$EMINE_NOTIFY_ZMQ" "$T/notify-curve.cap" || { em_done; exit 1; }
"$CTL" tail --endpoint "$R_NOT2" --server-key "$NOT_PUB" --from 0 --count 4 --timeout-ms 10000 >"$T/curve.tail" 2>"$T/curve.tail.err"
em_eq "tail over CURVE with the operator key: the 4 events" \
    "$(node -e 'console.log(require("fs").readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean).map(l=>JSON.parse(l).event.id).sort().join(","))' "$T/curve.tail")" \
    "curverec-1,curverec-2,plainrec-1,plainrec-2"
em_check "bytes passed through the stream relay" test "$(stat -c %s "$T/notify-curve.cap")" -gt 500
em_check "the CURVE stream capture holds no organisation key" bash -c "! grep -qaF -- \"\$EMINE_KEY\" '$T/notify-curve.cap'"
em_check "nor any event id or text" bash -c "! grep -qaE 'curverec|plainrec|specversion|subscribe' '$T/notify-curve.cap'"
"$CTL" tail --from 0 --count 1 --timeout-ms 2000 >"$T/noc.tail" 2>/dev/null
em_eq "tail without --server-key gets nothing from the CURVE stream" "$(wc -c <"$T/noc.tail")" 0
"$CTL" tail --server-key "$NOT_PUB" --key emk_not_a_key --from 0 --count 1 --timeout-ms 3000 >"$T/badorg.tail" 2>/dev/null
em_eq "over CURVE a wrong organisation key still gets nothing" "$(wc -c <"$T/badorg.tail")" 0

# --- an independent client (the npm zeromq binding, tests/interop) publishing over CURVE
if [ ! -d tests/interop/node_modules/zeromq ]; then
    (cd tests/interop && npm ci --no-audit --no-fund >/dev/null 2>&1) || em_fail "npm ci in tests/interop"
fi
tests/fixtures/gen_events.sh 200 interoprec /pk/ba/cadastre >"$T/interop.ndjson"
out=$(EMINE_CURVE_SERVER_KEY=$ING_PUB EMINE_CURVE_PUBLIC=$P_PUB EMINE_CURVE_SECRET=$P_SEC \
    timeout 120 node tests/interop/zmq_dealer.mjs "$EMINE_INGEST_ZMQ" "$T/interop.ndjson" "$T/interop.jsonl" 32)
em_log "npm zeromq over CURVE: $out"
em_eq "npm zeromq over CURVE with the producer's keypair: 200 accepted" "$(accepted "$T/interop.jsonl")" 200
em_eq "archived under the producer's name" "$(em_psql "select count(*) from events where id like 'interoprec-%' and producer = 'ba-cadastre'")" 200

# --- [ingest] auth = false with CURVE: encryption only, any client key
export EMINE_INGEST_AUTH=false
em_restart ingest || { em_done; exit 1; }
tests/fixtures/gen_events.sh 1 anonrec /pk/ba/cadastre >"$T/anon.ndjson"
"$CTL" publish --server-key "$ING_PUB" --results "$T/anon.jsonl" "$T/anon.ndjson" 2>/dev/null
em_eq "auth = false: an ephemeral CURVE key is admitted" "$(accepted "$T/anon.jsonl")" 1
"$CTL" publish --deadline-s 3 --timeout-ms 1000 "$T/anon.ndjson" 2>/dev/null
em_eq "but a client without CURVE is not" "$?" 3
em_eq "ingest still ready" "$(curl -s -o /dev/null -w '%{http_code}' "http://$EMINE_INGEST_HTTP/readyz")" 200
em_done
