#!/usr/bin/env bash
# test/e2e/cron_maintenance.sh — the jobs schedule_maintenance() registers
# really run under pg_cron.  usage_tracking lives in its own database, so
# schedule_maintenance() returns the statements to run where pg_cron is
# (cron.database_name, contrib_regression in the test cluster); they are run
# there with every schedule at '* * * * *' (pg_cron 1.4 has minutes only),
# and each job must succeed within ~90 s and leave its mark in the database.
set -uo pipefail
: "${PGHOST:?}" "${PGPORT:?}"
export PGUSER=${PGUSER:-postgres}
DB=ut_cron_e2e
# A test before may have restarted the server: wait until it takes queries.
for _ in $(seq 1 60); do
  psql -XAtq -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 1
done
CRON_DB=$(psql -XAtq -d postgres -c "SHOW cron.database_name")
q() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
fail() { echo "not ok - $*"; dump; cleanup; exit 1; }
dump() {
  q -d "$CRON_DB" -c "SELECT jobid, jobname, database, schedule FROM cron.job" 2>/dev/null
  q -d "$CRON_DB" -c "SELECT jobid, status, return_message, start_time FROM cron.job_run_details ORDER BY runid" 2>/dev/null
}
cleanup() {
  q -d "$DB" -c "SELECT * FROM usage_tracking.unschedule_maintenance()" 2>/dev/null \
    | q -d "$CRON_DB" >/dev/null 2>&1
  q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
}

q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null || exit 1
q -d "$DB" -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null || fail "create extension"
q -d "$CRON_DB" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" >/dev/null 2>&1 || fail "create pg_cron in $CRON_DB"

stmts=$(q -d "$DB" -c "SELECT * FROM usage_tracking.schedule_maintenance('* * * * *', '* * * * *', '* * * * *')" 2>/dev/null)
echo "$stmts" | grep -q "cron.schedule_in_database('usage_tracking_retention@$DB'" || fail "no statements printed: $stmts"
echo "ok - schedule_maintenance() printed the statements for database $CRON_DB"
echo "$stmts" | q -d "$CRON_DB" >/dev/null || fail "the printed statements do not run"
jobs=$(q -d "$CRON_DB" -c "SELECT string_agg(jobname, ' ' ORDER BY jobname) FROM cron.job WHERE database = '$DB'")
echo "ok - registered in $CRON_DB: $jobs"
expected=$(echo "$jobs" | wc -w)

# Wait for one successful run of each job (the next minute boundary).
for _ in $(seq 1 50); do
  done_n=$(q -d "$CRON_DB" -c "SELECT count(DISTINCT j.jobid) FROM cron.job j JOIN cron.job_run_details r USING (jobid)
                                WHERE j.database = '$DB' AND r.status = 'succeeded'")
  failed=$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job j JOIN cron.job_run_details r USING (jobid)
                                WHERE j.database = '$DB' AND r.status = 'failed'")
  [ "$failed" -gt 0 ] && fail "a job failed"
  [ "$done_n" -ge "$expected" ] && break
  sleep 2
done
[ "$done_n" -ge "$expected" ] || fail "only $done_n of $expected jobs succeeded within 100 s"
echo "ok - every job ran and succeeded: $jobs"

# The jobs did their work in $DB: maintenance made partitions, reconcile logged.
made=$(q -d "$DB" -c "SELECT count(*) FROM usage_tracking.maintenance_log WHERE job = 'run_maintenance'
                       AND (result->>'partitions_created')::int > 0")
[ "$made" -ge 1 ] || fail "run_maintenance left no trace"
rec=$(q -d "$DB" -c "SELECT count(*) FROM usage_tracking.maintenance_log WHERE job = 'reconcile'")
[ "$rec" -ge 1 ] || fail "reconcile left no trace"
echo "ok - run_maintenance created partitions and reconcile ran, in $DB"

cleanup
left=$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE database = '$DB' OR jobname LIKE 'usage\_tracking\_%'")
[ "$left" -eq 0 ] || fail "jobs left after unschedule"
echo "ok - unschedule_maintenance() statements removed the jobs"
