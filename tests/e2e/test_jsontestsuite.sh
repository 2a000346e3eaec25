#!/usr/bin/env bash
# Every JSONTestSuite parsing file (../shared/testdata/jsontestsuite/test_parsing) sent to the
# running ingest over HTTP and over ZeroMQ, byte for byte: no crash, every n_ file rejected
# with a clear error, nothing archived from them, and the services keep serving.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }

CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP
SUITE=${EMINE_SHARED:-../shared}/testdata/jsontestsuite/test_parsing
H="http://$EMINE_INGEST_HTTP/v1/events"
[ -d "$SUITE" ] || { em_fail "JSONTestSuite present at $SUITE"; em_done; exit 1; }

n_total=0 n_http_ok=0 n_bad=()
y_total=0 y_answered=0
for f in "$SUITE"/*.json; do
    b=$(basename "$f")
    code=$(curl -s -o "$T/body" -w '%{http_code}' -m 10 -H 'content-type: application/cloudevents+json' \
        --data-binary @"$f" "$H")
    case "$b" in
    n_*)
        n_total=$((n_total + 1))
        # Rejected with a 4xx and a machine-readable error naming the problem.
        if [[ "$code" =~ ^4 ]] && node -e 'const b=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));const e=(b.errors||[])[0]||(b.results&&b.results[0]&&b.results[0].errors||[])[0];if(!e||!e.keyword||!e.message)process.exit(1)' "$T/body" 2>/dev/null; then
            n_http_ok=$((n_http_ok + 1))
        else
            n_bad+=("$b:$code")
        fi
        ;;
    y_* | i_*)
        y_total=$((y_total + 1))
        [[ "$code" =~ ^[24] ]] && y_answered=$((y_answered + 1)) || n_bad+=("$b:$code")
        ;;
    esac
done
em_eq "HTTP: every n_ file rejected with a 4xx and an error (keyword, message)" "$n_http_ok/$n_total" "$n_total/$n_total"
em_eq "HTTP: every y_ and i_ file answered with 2xx or 4xx, never 5xx or silence" "$y_answered/$y_total" "$y_total/$y_total"
[ ${#n_bad[@]} -eq 0 ] || em_log "unexpected: ${n_bad[*]}"

# ZeroMQ: the same files through the producer protocol.
"$CTL" publish --raw --inflight 16 --timeout-ms 5000 --deadline-s 120 --results "$T/zmq.jsonl" "$SUITE"/*.json 2>"$T/zmq.err"
em_eq "ZeroMQ: every file answered" "$(grep -c '"status":"unanswered"' "$T/zmq.jsonl")" 0
bad=$(node -e '
const l=require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").map(JSON.parse);
const out=[];
for (const x of l) {
  const b=require("path").basename(x.file);
  if (!b.startsWith("n_")) continue;
  const r=x.reply||{};
  const e=(r.errors||[])[0]||(r.results&&r.results[0]&&r.results[0].errors||[])[0];
  const st=r.status||(r.results&&r.results[0]&&r.results[0].status);
  if (st!=="rejected"||!e||!e.keyword||!e.message) out.push(b+":"+st);
}
console.log(out.join(" "));' "$T/zmq.jsonl")
em_eq "ZeroMQ: every n_ file rejected with an error" "$bad" ""

em_eq "nothing from the suite was archived" "$(em_psql 'select count(*) from events')" 0
for s in ingest validate archive notify; do
    v="EMINE_$(em__upper $s)_HTTP"
    em_eq "$s still serving after the suite" "$(curl -s -o /dev/null -w '%{http_code}' "http://${!v}/readyz")" 200
    [ -n "$(em_pid $s)" ] && kill -0 "$(em_pid $s)" 2>/dev/null && em_ok "$s process alive" || em_fail "$s process alive"
done
em_done
