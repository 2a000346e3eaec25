#!/usr/bin/env bash
# /metrics of every service in the Prometheus text format, checked by promtool (Debian's
# prometheus package), with values that follow what happened; /healthz and /readyz answer.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
T=$EM_TMP
command -v promtool >/dev/null || { em_fail "promtool installed (make deps)"; em_done; exit 1; }

tests/fixtures/gen_events.sh 50 m >"$T/e.ndjson"
"$EM_BUILD/bin/eminectl" publish --batch 10 "$T/e.ndjson" 2>/dev/null
"$EM_BUILD/bin/eminectl" publish --batch 10 "$T/e.ndjson" 2>/dev/null
printf '{"specversion":"1.0","id":"bad","source":"/x","type":"t","time":"never"}\n' >"$T/bad.json"
"$EM_BUILD/bin/eminectl" publish "$T/bad.json" 2>/dev/null
timeout 20 "$EM_BUILD/bin/eminectl" tail --from 0 --count 50 >/dev/null

for s in ingest validate archive notify; do
    v="EMINE_$(em__upper $s)_HTTP"
    addr=${!v}
    curl -s "http://$addr/metrics" >"$T/$s.prom"
    out=$(promtool check metrics <"$T/$s.prom" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then em_ok "promtool accepts $s /metrics"; else em_fail "promtool accepts $s /metrics" "$out"; fi
    em_eq "$s /healthz" "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/healthz")" 200
    em_eq "$s /readyz" "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" 200
done
metric() { # file name-with-labels -> value
    awk -v m="$2" '$1 == m { print $2 }' "$T/$1.prom"
}
em_eq "ingest counts 50 accepted" "$(metric ingest 'emine_ingest_events_total{status="accepted"}')" 50
em_eq "ingest counts 50 duplicates" "$(metric ingest 'emine_ingest_events_total{status="duplicate"}')" 50
em_eq "ingest counts 1 rejected" "$(metric ingest 'emine_ingest_events_total{status="rejected"}')" 1
if grep -q '^emine_ingest_ack_latency_seconds_count' "$T/ingest.prom"; then em_ok "ingest exports the ack latency histogram"; else em_fail "ingest exports the ack latency histogram"; fi
em_eq "validate counts the rejection" "$(metric validate 'emine_validate_events_total{verdict="rejected"}')" 1
em_eq "notify's head is the archive's last seq" "$(metric notify emine_notify_head)" "$(em_psql 'select max(seq) from events')"

# The dashboard and the alert rules only name metrics the services export.
em_check "promtool accepts the scrape config and alert rules" promtool check config deploy/prometheus/prometheus.yml
missing=""
for m in $(grep -ohE 'emine_[a-z_]+' deploy/grafana/emine.json deploy/prometheus/emine-alerts.yml | sort -u); do
    case "$m" in emine_ingest | emine_validate | emine_archive | emine_notify) continue ;; esac
    grep -qE "^$m(\{| )" "$T"/*.prom || missing="$missing $m"
done
em_eq "every metric in deploy/grafana and deploy/prometheus exists" "$missing" ""
em_done
