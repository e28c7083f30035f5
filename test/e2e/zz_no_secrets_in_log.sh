#!/usr/bin/env bash
# test/e2e/zz_no_secrets_in_log.sh — runs last in `make test`: no
# installation secret held by any database of the test cluster appears in
# the server log, after every suite has run (thousands of requests, refused
# ones included).  STATEMENT lines are left out: PostgreSQL logs the text of
# a failing statement as the client sent it, and the tests that sign
# batches in SQL pass their secret in that text (see docs/SECURITY.md).
set -uo pipefail
LOG=$PGHOST/server.log
[ -s "$LOG" ] || { echo "no server log at $LOG" >&2; exit 1; }

secrets=$(mktemp)
trap 'rm -f "$secrets"' EXIT
for db in $(psql -qAtX -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1'"); do
  psql -qAtX -d "$db" -c "SELECT secret FROM usage_tracking.installation_secrets
                          UNION SELECT previous_secret FROM usage_tracking.installation_secrets
                           WHERE previous_secret IS NOT NULL" 2>/dev/null >>"$secrets"
done
sort -u -o "$secrets" "$secrets"
n=$(grep -c . "$secrets")
[ "$n" -gt 0 ] || { echo "not ok - no secrets found to look for"; exit 1; }

# Every log entry but STATEMENT ones (an entry runs until the next line
# that starts with the log_line_prefix timestamp).
hits=$(awk '/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9:.]+ [A-Z]+ \[/ { stmt = ($0 ~ /\] [^ ]* *STATEMENT: /) } !stmt' "$LOG" |
       grep -F -f "$secrets" | head -5)
if [ -z "$hits" ]; then
  echo "ok - none of $n installation secrets appears in the server log ($(wc -l <"$LOG") lines)"
else
  echo "not ok - an installation secret appears in the server log:"
  printf '%s\n' "$hits"
  exit 1
fi
