#!/usr/bin/env bash
# run.sh BUILD - `make bench`: durable throughput and ack latency of the whole pipeline (four
# processes, real PostgreSQL with fsync on, Redis, ZeroMQ) on this machine, in one run so that
# the figures can be compared side by side:
#   1. eminectl publish over ZeroMQ, one event per request, 64 requests in flight;
#   2. the same events again: duplicates answered from the Redis cache;
#   3. the same events again after FLUSHALL: duplicates answered by archive from PostgreSQL;
#   4. new events in batches of 100 per request;
#   5. over HTTP, one event per request, one at a time.
# An "ack" is the answer after COMMIT, so events/s here are durable events/s.
export EM_BUILD=${1:-build}
source "$(dirname "$0")/../lib/harness.sh"
N=${EM_BENCH_EVENTS:-20000}
em_harness_start || exit 1
em_start_all || exit 1
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
tests/fixtures/gen_events.sh "$N" single >"$T/single.ndjson"
tests/fixtures/gen_events.sh "$N" batch >"$T/batch.ndjson"
tests/fixtures/gen_events.sh 2000 http >"$T/http.ndjson"

run() { # label, eminectl publish args...
    local label=$1 line
    shift
    line=$("$CTL" publish "$@" 2>&1 >/dev/null | tail -n 1)
    printf '%-44s %s\n' "$label" "$line" | tee -a "$T/bench.txt"
}
printf 'emine pipeline benchmark: %s events per run, %s cores, PostgreSQL fsync on\n' "$N" "$(nproc)"
run "zmq, 1 event/request, 64 in flight" --inflight 64 "$T/single.ndjson"
run "zmq, duplicates (Redis cache)" --inflight 64 "$T/single.ndjson"
em_redis FLUSHALL >/dev/null
run "zmq, duplicates after FLUSHALL (PostgreSQL)" --inflight 64 "$T/single.ndjson"
run "zmq, batches of 100, 8 in flight" --batch 100 --inflight 8 "$T/batch.ndjson"
run "http, 1 event/request, sequential" --http "$EMINE_INGEST_HTTP" "$T/http.ndjson"
rate() { sed -n -E "s/.*\(([0-9]+) events\/s\).*/\1/p" <<<"$(grep -F "$1" "$T/bench.txt")"; }
s=$(rate "64 in flight") b=$(rate "batches of 100")
[ -n "$s" ] && [ -n "$b" ] && awk -v s="$s" -v b="$b" 'BEGIN { printf "ratio: batches of 100 / single events = %.1fx\n", b / s }'
printf 'archive rows: %s\n' "$(em_psql 'select count(*) from events')"
em_ok "benchmark ran"
em_done >/dev/null
