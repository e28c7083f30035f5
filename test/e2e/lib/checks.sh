# test/e2e/lib/checks.sh — TAP-like checks for end-to-end scripts that keep
# their own counts: ok, not_ok, check; passed/failed for the summary line.
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: expected [$2], got [$3]"; fi
}
