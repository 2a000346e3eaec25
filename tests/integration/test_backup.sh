#!/usr/bin/env bash
# Backup and restore as the operator guide describes: pg_dump of the archive, pg_restore into
# a new database, `eminectl verify` passes on the copy, and an archive started on the copy
# (Redis flushed: it is only a cache) answers re-sent events `duplicate` with their seqs and
# continues the sequence and the chain.
source "$(dirname "$0")/../lib/harness.sh"
em_harness_start || exit 1
em_start_all || { em_done; exit 1; }
CTL="$EM_BUILD/bin/eminectl"
T=$EM_TMP

tests/fixtures/gen_events.sh 300 bk >"$T/e.ndjson"
"$CTL" publish --batch 20 --results "$T/r1.jsonl" "$T/e.ndjson" 2>/dev/null
em_eq "300 events archived" "$(em_psql 'select count(*) from events')" 300

"$EM_PGBIN/pg_dump" -Fc -f "$T/emine.dump" "$EMINE_PG_DSN"
em_eq "pg_dump of the archive" "$?" 0
"$EM_PGBIN/psql" -X -q "$EM_PG_ADMIN_DSN" -c "CREATE DATABASE restored OWNER emine" >/dev/null
"$EM_PGBIN/pg_restore" --no-owner -d "${EMINE_PG_DSN/dbname=emine/dbname=restored}" "$T/emine.dump"
em_eq "pg_restore into a new database" "$?" 0
em_check "eminectl verify passes on the restored copy" env EMINE_PG_DSN="${EMINE_PG_DSN/dbname=emine/dbname=restored}" "$CTL" verify

# Switch the pipeline to the restored database.
for s in notify ingest validate archive; do em_stop "$s"; done
export EMINE_PG_DSN="${EMINE_PG_DSN/dbname=emine/dbname=restored}"
em_redis FLUSHALL >/dev/null
em_start_all || { em_done; exit 1; }
"$CTL" publish --batch 20 --results "$T/r2.jsonl" "$T/e.ndjson" 2>/dev/null
em_eq "re-sent events are duplicates of the restored rows, same seqs" \
    "$(node -e 'const f=p=>require("fs").readFileSync(p,"utf8").trim().split("\n").map(JSON.parse);const a=f(process.argv[1]),b=f(process.argv[2]);console.log(b.every((x,i)=>x.status==="duplicate"&&x.seq===a[i].seq))' "$T/r1.jsonl" "$T/r2.jsonl")" true
tests/fixtures/gen_events.sh 20 bk2 >"$T/more.ndjson"
"$CTL" publish "$T/more.ndjson" 2>/dev/null
em_eq "new events continue the sequence" "$(em_psql 'select min(seq)||'"'"'-'"'"'||max(seq) from events where id like '"'"'bk2-%'"'"'')" "301-320"
em_check "and the chain" "$CTL" verify
em_done
