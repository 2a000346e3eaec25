#!/usr/bin/env bash
# callgrind_catalogue.sh [BUILD] [N] - instructions per event (valgrind --tool=callgrind, which
# counts the same on a loaded machine) of the catalogue steps that bench_catalogue.sh times:
# em_schema_validate, em_json_parse (depth 32), both, and Jansson's json_loadb, for the
# production.reported and licence.granted fixture events.  (Ir of N runs - Ir of 0 runs) / N.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
N=${2:-200}
PKGS="jansson libpcre2-8 openssl"
cc -O2 -std=c11 -D_GNU_SOURCE -Icommon -o "$BUILD/prof_catalogue" tests/schema/prof_catalogue.c \
    services/validate/catalogue.c services/validate/rules.c \
    "$BUILD/lib/libemine.a" $(pkg-config --cflags --libs $PKGS) -lm
s_ir() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BUILD/prof_catalogue" \
        config/schemas "$1" "$2" "$3" 2>&1 | awk '/Collected :/ {print $4}'
    rm -f "$out"
}
for ev in tests/fixtures/schemas/production.reported/valid-duddar-2017.json \
    tests/fixtures/schemas/licence.granted/valid-reko-diq-el-5.json; do
    for mode in validate parse parse+validate json_loadb; do
        base=$(s_ir "$ev" "$mode" 0)
        full=$(s_ir "$ev" "$mode" "$N")
        printf '%-20s %-15s %8d instructions/event\n' "$(basename "$(dirname "$ev")")" "$mode" \
            $(( (full - base) / N ))
    done
done
