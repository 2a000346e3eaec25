#!/usr/bin/env bash
# bench.sh [BUILD] [SECONDS] - events/s of em_schema and of ajv (npm ajv + ajv-formats, run with
# node) on the same schema and event (tests/schema/production.*), validate-only and
# parse+validate, and the ratios emine/ajv.  A benchmark, not a test: numbers vary with load.
# Needs `make BUILD=...` first (links BUILD/lib/libemine.a); ajv is installed with npm into
# BUILD/ajv on first use.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${1:-build}
SECS=${2:-3}
SCHEMA=tests/schema/production.schema.json
EVENT=tests/schema/production.event.json
PKGS="jansson libpcre2-8 openssl"
cc -O2 -std=c11 -D_GNU_SOURCE -Icommon -o "$BUILD/bench_schema" tests/schema/bench_schema.c \
    "$BUILD/lib/libemine.a" $(pkg-config --cflags --libs $PKGS) -lm
if [ ! -d "$BUILD/ajv/node_modules/ajv-formats" ]; then
    mkdir -p "$BUILD/ajv"
    (cd "$BUILD/ajv" && npm init -y >/dev/null && npm install --silent ajv ajv-formats >/dev/null)
fi
em=$("$BUILD/bench_schema" "$SCHEMA" "$EVENT" "$SECS")
aj=$(NODE_PATH="$BUILD/ajv/node_modules" node tests/schema/bench_ajv.js "$SCHEMA" "$EVENT" "$SECS")
echo "$em"
echo "$aj"
v_em=$(echo "$em" | awk '/validate-only/ {print $3}')
p_em=$(echo "$em" | awk '/parse\+validate/ {print $3}')
v_aj=$(echo "$aj" | awk '/validate-only/ {print $3}')
p_aj=$(echo "$aj" | awk '/parse\+validate/ {print $3}')
awk -v a="$v_em" -v b="$v_aj" 'BEGIN { printf "ratio validate-only emine/ajv: %.2f\n", a / b }'
awk -v a="$p_em" -v b="$p_aj" 'BEGIN { printf "ratio parse+validate emine/ajv: %.2f\n", a / b }'
