#!/usr/bin/env bash
# demo.sh - against a running local stack (deploy/local/stack.sh up): publishes the events of
# tests/fixtures/events/*.json in file-name order with `eminectl publish`, then shows the
# committed stream from the start (`eminectl tail --from 0 --count N`) and checks the hash
# chain (`eminectl verify`).  Publishing twice is safe: the second time answers `duplicate`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
CTL="$BUILD/bin/eminectl"
[ -x "$CTL" ] || { echo "demo: no $CTL: build first (make)" >&2; exit 1; }
if [ -f var/emine.env ]; then
    set -a
    . var/emine.env
    set +a
fi

files=(tests/fixtures/events/*.json)
# One event per "specversion" key: a file may hold a batch (array).
n=$(cat "${files[@]}" | grep -o '"specversion"' | wc -l)

step() { printf '\n== %s\n' "$*"; }

step "publish ${#files[@]} files ($n events): $CTL publish --inflight 1 ..."
"$CTL" publish --inflight 1 "${files[@]}"

step "the committed stream: $CTL tail --from 0 --count $n"
"$CTL" tail --from 0 --count "$n" --timeout-ms 10000

step "the hash chain: $CTL verify"
"$CTL" verify
