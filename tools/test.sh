#!/usr/bin/env bash
# tools/test.sh — `make test`: build, install, start a private cluster and
# run every suite (pg_regress, isolation, pgTAP, end-to-end), then stop it.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

ut_throwaway_cluster usage_tracking_test contrib_regression
export UT_ROOT=$ROOT UT_WORK=$WORK

passed=0
failed=0
failures=()

record() {  # record NAME STATUS
  if [ "$2" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$1")
  fi
}

# pg_regress and isolation: count tests from their own report.
run_regress() {  # run_regress NAME TARGET-VARIABLES...
  local name=$1 log="$WORK/$1.log" rc
  shift
  ut_log "$name"
  make -s installcheck "$@" >"$log" 2>&1
  rc=$?
  cat "$log"
  local ok bad
  ok=$(grep -Ec '^(ok|test|     )? *[a-z0-9_]+ +\.\.\. ok|^ok [0-9]+ ' "$log")
  bad=$(grep -Ec '\.\.\. FAILED|^not ok [0-9]+ ' "$log")
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ $rc -ne 0 ]; then
    [ "$bad" -eq 0 ] && failed=$((failed + 1))
    failures+=("$name")
    for d in test/regression.diffs test/output_iso/regression.diffs; do
      [ -s "$d" ] && { echo "---- $d"; cat "$d"; }
    done
  fi
}

rm -f test/regression.diffs test/output_iso/regression.diffs
run_regress "pg_regress" ISOLATION=
if ls test/specs/*.spec >/dev/null 2>&1; then
  run_regress "isolation" REGRESS=
fi

# pgTAP: one database with the extension and pgtap.
if ls test/pgtap/*.sql >/dev/null 2>&1; then
  ut_log "pgTAP"
  psql -qX -d postgres -c "CREATE DATABASE tap" >/dev/null
  psql -qX -d tap -c "CREATE EXTENSION pgtap; CREATE EXTENSION pgcrypto; CREATE EXTENSION usage_tracking" >/dev/null
  for f in test/pgtap/*.sql; do
    pg_prove -d tap "$f"
    rc=$?
    record "pgtap $(basename "$f")" "$rc"
  done
fi

# End-to-end: each script gets the cluster in PGHOST/PGPORT and a scratch
# directory, and exits non-zero on failure.
for t in test/e2e/*.sh; do
  [ -e "$t" ] || continue
  ut_log "e2e $(basename "$t")"
  bash "$t"
  rc=$?   # before any command substitution resets $?
  record "e2e $(basename "$t")" "$rc"
done

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "Failed: ${failures[*]}"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
