#!/usr/bin/env bash
# run.sh BUILD - runs the whole test suite against the binaries in BUILD (default: build):
#   1. every BUILD/tests/test_* (cmocka unit tests), 300 s each;
#   2. every tests/integration/*.sh, tests/e2e/*.sh, tests/fault/*.sh with EM_BUILD=BUILD,
#      600 s each (they start their own PostgreSQL, Redis and services: tests/lib/harness.sh).
# Everything runs with the repository root as the current directory.  Each one's output goes
# to BUILD/test-logs/<name>.log; the output of a failing one is also shown.  Prints a table,
# then as the last line "N passed, M failed" (assertions); exits 1 if any assertion failed or
# any binary or script exited non-zero (a crash or timeout counts as one failed assertion).
# EMINE_SANITIZED=1: the binaries were built with ASan+UBSan; leaks and UB make them fail.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${1:-build}
BUILD=${BUILD%/}
UNIT_TIMEOUT=${EM_UNIT_TIMEOUT:-300}
SCRIPT_TIMEOUT=${EM_SCRIPT_TIMEOUT:-600}
LOGS="$BUILD/test-logs"
mkdir -p "$LOGS"

if [ "${EMINE_SANITIZED:-0}" = 1 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if [ -s tests/lib/lsan.supp ]; then
        export LSAN_OPTIONS="suppressions=$ROOT/tests/lib/lsan.supp:print_suppressions=0"
    fi
    export EM_READY_TIMEOUT=${EM_READY_TIMEOUT:-120} # sanitized services start slower
fi

total_pass=0
total_fail=0
bad=0
rows=()

# run_one KIND NAME TIMEOUT CMD...: runs it, parses its counts, adds a row to the table.
run_one() {
    local kind=$1 name=$2 tmo=$3
    shift 3
    local log="$LOGS/$name.log" start rc pass=0 fail=0 n note="" secs
    start=$(date +%s.%N)
    printf '%-12s %s ... ' "$kind" "$name"
    timeout -k 15 "$tmo" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    if [ "$kind" = unit ]; then
        # cmocka: "[  PASSED  ] 3 test(s)." and "[  FAILED  ] 1 test(s), listed below:"
        for n in $(sed -n -E 's/^\[  PASSED  \] ([0-9]+) test.*/\1/p' "$log"); do pass=$((pass + n)); done
        for n in $(sed -n -E 's/^\[  FAILED  \] ([0-9]+) test.*/\1/p' "$log"); do fail=$((fail + n)); done
    else
        # harness: "<script>: N passed, M failed"
        for n in $(sed -n -E 's/^[^ ]+: ([0-9]+) passed, ([0-9]+) failed$/\1/p' "$log"); do pass=$((pass + n)); done
        for n in $(sed -n -E 's/^[^ ]+: ([0-9]+) passed, ([0-9]+) failed$/\2/p' "$log"); do fail=$((fail + n)); done
    fi
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        note="timeout after ${tmo}s"
    elif [ $rc -ge 128 ]; then
        note="killed by signal $((rc - 128))"
    elif [ $rc -ne 0 ]; then
        note="exit $rc"
    fi
    if [ -n "$note" ]; then
        bad=1
        # A crash, a timeout or a sanitizer report after the counts: count it as a failure
        # unless the failures were already counted.
        [ $fail -eq 0 ] && fail=1
    elif [ $((pass + fail)) -eq 0 ]; then
        note="nothing asserted"
        fail=1
        bad=1
    fi
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    if [ $fail -gt 0 ]; then
        echo "FAIL ($pass passed, $fail failed${note:+, $note}, ${secs}s)"
        echo "----- $log (last 80 lines)"
        tail -n 80 "$log"
        echo "-----"
    else
        echo "ok ($pass passed, ${secs}s)"
    fi
    rows+=("$(printf '%-12s %-40s %7d %7d %8s  %s' "$kind" "$name" "$pass" "$fail" "${secs}s" "$note")")
}

echo "== emine tests: $BUILD${EMINE_SANITIZED:+ (sanitized)}"

shopt -s nullglob
units=("$BUILD"/tests/test_*)
if [ ${#units[@]} -eq 0 ]; then
    echo "no unit test binaries in $BUILD/tests (build first: make BUILD=$BUILD)"
    bad=1
fi
for t in "${units[@]}"; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    run_one unit "$(basename "$t")" "$UNIT_TIMEOUT" "$t"
done

for dir in integration e2e fault; do
    for s in tests/"$dir"/*.sh; do
        run_one "$dir" "$(basename "$s" .sh)" "$SCRIPT_TIMEOUT" env EM_BUILD="$BUILD" bash "$s"
    done
done

echo
printf '%-12s %-40s %7s %7s %8s  %s\n' kind name passed failed time note
for r in "${rows[@]}"; do printf '%s\n' "$r"; done
echo "logs: $LOGS/"
if [ $total_fail -gt 0 ]; then bad=1; fi
echo "$total_pass passed, $total_fail failed"
exit $bad
