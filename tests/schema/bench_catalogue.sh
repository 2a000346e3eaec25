#!/usr/bin/env bash
# bench_catalogue.sh [BUILD] [SECONDS] [ROUNDS] - the catalogue's schemas against ajv (npm ajv +
# ajv-formats, run with node) on the same schema and event, for production.reported (Duddar,
# Jan-Sep 2017) and licence.granted (Reko Diq EL-5): validate-only and parse+validate events/s,
# the ratios emine/ajv, and emine's whole check (schema + domain rules).  A benchmark, not a
# test.  Needs `make BUILD=...` first; ajv is installed with npm into BUILD/ajv on first use.
# On a shared machine the load changes from second to second: emine and ajv are measured
# alternately ROUNDS times (default 3, SECONDS each) and the ratios use each one's best round
# (every round is printed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
SECS=${2:-3}
ROUNDS=${3:-3}
SCHEMAS=config/schemas
PKGS="jansson libpcre2-8 openssl"
cc -O2 -std=c11 -D_GNU_SOURCE -Icommon -o "$BUILD/bench_catalogue" tests/schema/bench_catalogue.c \
    services/validate/catalogue.c services/validate/rules.c \
    "$BUILD/lib/libemine.a" $(pkg-config --cflags --libs $PKGS) -lm
if [ ! -d "$BUILD/ajv/node_modules/ajv-formats" ]; then
    mkdir -p "$BUILD/ajv"
    (cd "$BUILD/ajv" && npm init -y >/dev/null && npm install --silent ajv ajv-formats >/dev/null)
fi
for ev in tests/fixtures/schemas/production.reported/valid-duddar-2017.json \
    tests/fixtures/schemas/licence.granted/valid-reko-diq-el-5.json; do
    echo "== $(basename "$(dirname "$ev")") ($(basename "$ev"))"
    v_em=0 p_em=0 v_aj=0 p_aj=0
    for r in $(seq 1 "$ROUNDS"); do
        em=$("$BUILD/bench_catalogue" "$SCHEMAS" "$ev" "$SECS")
        aj=$(NODE_PATH="$BUILD/ajv/node_modules" node tests/schema/bench_catalogue_ajv.js "$SCHEMAS" "$ev" "$SECS")
        echo "$em" | sed "s/^/round $r: /"
        echo "$aj" | sed "s/^/round $r: /"
        v_em=$(echo "$em" | awk -v m="$v_em" '/validate-only/ {m = $3 > m ? $3 : m} END {print m}')
        p_em=$(echo "$em" | awk -v m="$p_em" '/parse\+validate/ {m = $3 > m ? $3 : m} END {print m}')
        v_aj=$(echo "$aj" | awk -v m="$v_aj" '/validate-only/ {m = $3 > m ? $3 : m} END {print m}')
        p_aj=$(echo "$aj" | awk -v m="$p_aj" '/parse\+validate/ {m = $3 > m ? $3 : m} END {print m}')
    done
    echo "best: emine validate-only $v_em, ajv $v_aj; emine parse+validate $p_em, ajv $p_aj events/s"
    awk -v a="$v_em" -v b="$v_aj" 'BEGIN { printf "ratio validate-only emine/ajv: %.2f\n", a / b }'
    awk -v a="$p_em" -v b="$p_aj" 'BEGIN { printf "ratio parse+validate emine/ajv: %.2f\n", a / b }'
done
