#!/usr/bin/env bash
# webhooks.sh [BUILD] - webhook delivery benchmark: SUBS subscriptions (default 100) of one
# organisation to a local receiver (node + the reference standardwebhooks library, verifying
# every signature); EVENTS events (default 1000) published at RATE events/s (default 1000)
# through the whole pipeline.  Prints the latency from the event's arrival at ingest
# (events.received_at, a little before its commit) to its receipt by the webhook receiver,
# p50/p99/max, and deliveries/s over the run (at saturation when the rate is above what one
# notify can deliver).
set -uo pipefail
EM_BUILD=${1:-${EM_BUILD:-build}}
SUBS=${SUBS:-100}
EVENTS=${EVENTS:-1000}
RATE=${RATE:-1000}
source "$(dirname "$0")/../lib/harness.sh"

[ -d tests/interop/node_modules/standardwebhooks ] ||
    (cd tests/interop && npm ci --no-audit --no-fund >/dev/null 2>&1)
em_harness_start
export EMINE_NOTIFY_WEBHOOK_ALLOW_PRIVATE=true
export EMINE_NOTIFY_WEBHOOK_MAX_INFLIGHT=${EMINE_NOTIFY_WEBHOOK_MAX_INFLIGHT:-128}
export EMINE_LOG_LEVEL=warn
em_start_all || exit 1
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
SECRET="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
# RECEIVERS node processes (default 2), each verifying every signature; subscription i goes
# to receiver i % RECEIVERS, so that one single-threaded receiver is not what is measured.
RECEIVERS=${RECEIVERS:-2}
RX_PORTS=()
RX_PIDS=()
for r in $(seq 0 $((RECEIVERS - 1))); do
    em_free_port port
    node tests/interop/webhook_receiver.mjs "$port" "$SECRET" "$T/rx.$r.jsonl" >"$T/rx.$r.out" 2>&1 &
    RX_PIDS+=($!)
    RX_PORTS+=("$port")
    em_at_exit "kill $! 2>/dev/null"
    for _ in $(seq 100); do grep -q listening "$T/rx.$r.out" 2>/dev/null && break; sleep 0.1; done
done
rx_lines() { cat "$T"/rx.*.jsonl 2>/dev/null | wc -l; }
# cpu_ms PID...: user+system CPU time of the processes so far, in ms
cpu_ms() {
    local t=0 pid f
    for pid in "$@"; do
        read -ra f <"/proc/$pid/stat" || continue
        t=$((t + f[13] + f[14]))
    done
    echo $((t * 1000 / $(getconf CLK_TCK)))
}

"$CTL" subs org-create ba --kind authority --province PK-BA >/dev/null
em_psql "insert into subscriptions (id, org_id, sink, secret)
         select 'bench_' || i, 'ba',
                'http://127.0.0.1:' || (array[$(IFS=,; echo "${RX_PORTS[*]}")])[1 + i % $RECEIVERS] || '/s' || i,
                '$SECRET'
         from generate_series(1, $SUBS) i;
         insert into subscription_cursors (subscription_id, seq)
         select id, 0 from subscriptions" >/dev/null
sleep 1.5 # notify reloads the subscriptions

tests/fixtures/gen_events.sh "$EVENTS" bench >"$T/gen.ndjson"
chunk=$((RATE / 10))
[ "$chunk" -ge 1 ] || chunk=1
split -l "$chunk" -d -a 5 "$T/gen.ndjson" "$T/chunk."
NOTIFY_PID=$(em_pid notify)
notify_cpu0=$(cpu_ms "$NOTIFY_PID")
rx_cpu0=$(cpu_ms "${RX_PIDS[@]}")
t0=$(date +%s.%N)
i=0
pubs=()
for f in "$T"/chunk.*; do
    "$CTL" publish --batch 50 "$f" >/dev/null 2>&1 &
    pubs+=($!)
    i=$((i + 1))
    # keep to RATE: chunk i starts at t0 + i/10 s
    now=$(date +%s.%N)
    wait_s=$(awk -v t0="$t0" -v i="$i" -v now="$now" 'BEGIN { d = t0 + i / 10 - now; print (d > 0 ? d : 0) }')
    sleep "$wait_s"
done
wait "${pubs[@]}"
want=$((EVENTS * SUBS))
deadline=$((SECONDS + 600))
while [ "$(rx_lines)" -lt "$want" ] && ((SECONDS < deadline)); do sleep 0.2; done
notify_cpu=$(($(cpu_ms "$NOTIFY_PID") - notify_cpu0))
rx_cpu=$(($(cpu_ms "${RX_PIDS[@]}") - rx_cpu0))
sleep 0.5
cat "$T"/rx.*.jsonl >"$T/rx.jsonl"
em_psql "select seq || ' ' || (extract(epoch from received_at) * 1000)::bigint from events" >"$T/recv.txt"
out=$(node -e '
const fs = require("fs");
const recv = new Map(fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" ").map(Number)));
const rx = fs.readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map(JSON.parse);
const bad = rx.filter((r) => !r.ok).length;
const lat = rx.filter((r) => r.ok).map((r) => r.t - recv.get(r.seq)).sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
const ts = rx.map((r) => r.t), span = (Math.max(...ts) - Math.min(...ts)) / 1000;
console.log(`webhooks: ${process.argv[3]} subscriptions, ${process.argv[4]} events at ${process.argv[5]}/s: ` +
  `${rx.length} deliveries (${bad} bad signatures), ${(rx.length / span).toFixed(0)} deliveries/s, ` +
  `ingest-to-receipt latency p50 ${q(0.5)} ms p99 ${q(0.99)} ms max ${lat[lat.length - 1]} ms`);
' "$T/recv.txt" "$T/rx.jsonl" "$SUBS" "$EVENTS" "$RATE")
echo "$out"
echo "webhooks: CPU per 1000 deliveries: notify $((notify_cpu * 1000 / want)) ms, receivers $((rx_cpu * 1000 / want)) ms ($RECEIVERS node processes)"
em_eq "every delivery arrived" "$(wc -l <"$T/rx.jsonl")" "$want"
em_done
