#!/usr/bin/env bash
# test/e2e/cron_databases.sh — several databases with the extension in one
# cluster, pg_cron in another database (cron.database_name):
#   - each database keeps its own pg_cron jobs, named after it, with the
#     right cron.job.database; scheduling one leaves the others' jobs alone,
#     unscheduling one leaves the others';
#   - a 1.0 install's jobs (named without the database) are replaced after
#     ALTER EXTENSION UPDATE by schedule_maintenance()'s statements;
#   - the usage_tracking.* settings are known in a fresh session (the test
#     cluster preloads the library), also in a database without the
#     extension and in one where the 1.0 SQL is still installed;
#   - every query of docs/operations.md "Monitoring" runs in the database
#     it says, and the cron ones fail in the extension's database.
set -uo pipefail
: "${PGHOST:?}" "${PGPORT:?}"
export PGUSER=${PGUSER:-postgres}
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
SHOP=ut_cron_shop BLOGS=ut_cron_blogs OLD=ut_cron_old
# A test before may have restarted the server: wait until it takes queries.
for _ in $(seq 1 60); do
  psql -XAtq -d postgres -c "SELECT 1" >/dev/null 2>&1 && break
  sleep 1
done
CRON_DB=$(psql -XAtq -d postgres -c "SHOW cron.database_name")
q() { psql -XAtq -v ON_ERROR_STOP=1 "$@" 2>&1; }
pass=0 fail=0
ok() { if [ "$1" -eq 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }
is() { if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi; }
WORK=$(mktemp -d)
cleanup() {
  for db in $SHOP $BLOGS $OLD; do
    q -d "$CRON_DB" -c "SELECT cron.unschedule(jobid) FROM cron.job WHERE database = '$db'" >/dev/null
    q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  done
  q -d "$CRON_DB" -c "DELETE FROM cron.job_run_details WHERE command = 'ut_cron_databases'" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
# schedule DB / unschedule DB — as the docs say: pipe the statements to pg_cron's database.
schedule() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "SELECT * FROM usage_tracking.schedule_maintenance()" 2>/dev/null | q -d "$CRON_DB" >/dev/null \
    || echo "# scheduling $1 failed"
}
unschedule() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "SELECT * FROM usage_tracking.unschedule_maintenance()" 2>/dev/null | q -d "$CRON_DB" >/dev/null \
    || echo "# unscheduling $1 failed"
}
jobs_of() {  # jobs_of DB — "name database" of the jobs that run in DB
  q -d "$CRON_DB" -c "SELECT string_agg(jobname || ' ' || database, ', ' ORDER BY jobname) FROM cron.job WHERE database = '$1'"
}
ids_of() { q -d "$CRON_DB" -c "SELECT string_agg(jobid::text, ' ' ORDER BY jobid) FROM cron.job WHERE database = '$1'"; }

q -d "$CRON_DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_cron" >/dev/null || { echo "no pg_cron in $CRON_DB"; exit 1; }
for db in $SHOP $BLOGS $OLD; do
  q -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null || exit 1
done
q -d $SHOP -c "CREATE EXTENSION usage_tracking" >/dev/null || exit 1
q -d $BLOGS -c "CREATE EXTENSION usage_tracking" >/dev/null || exit 1
q -d $OLD -c "CREATE EXTENSION usage_tracking VERSION '1.0'" >/dev/null || exit 1

# --- settings in a fresh session ---------------------------------------------
case $(q -d postgres -c "SHOW session_preload_libraries") in
  *usage_tracking*) ok 0 "the test cluster loads the library at session start" ;;
  *) ok 1 "the test cluster loads the library at session start (tools/lib.sh)" ;;
esac
is "$(q -d $SHOP -c "SHOW usage_tracking.max_batch_events")" 1000 "SHOW usage_tracking.max_batch_events in a fresh session"
is "$(q -d $SHOP -c "SELECT current_setting('usage_tracking.signature_tolerance')")" 5min "current_setting() in a fresh session"
q -d postgres -c "ALTER DATABASE $SHOP SET usage_tracking.max_batch_events = 7" >/dev/null
is "$(q -d $SHOP -c "SHOW usage_tracking.max_batch_events")/$(q -d $BLOGS -c "SHOW usage_tracking.max_batch_events")" 7/1000 \
   "ALTER DATABASE … SET applies to that database's new sessions only"
is "$(q -d postgres -c "SELECT current_setting('usage_tracking.max_batch_events'), count(*) FROM pg_extension WHERE extname = 'usage_tracking'")" \
   "1000|0" "a database without the extension loads the library and knows the settings"
is "$(q -d $OLD -c "SELECT extversion || ' ' || current_setting('usage_tracking.max_batch_events') || ' ' || usage_tracking.hmac_sha256_hex('k', 'm') FROM pg_extension WHERE extname = 'usage_tracking'")" \
   "1.0 1000 $(printf m | openssl dgst -sha256 -hmac k -r | cut -d' ' -f1)" "with the 1.0 SQL installed, the settings and the C functions work"

# --- each database keeps its own jobs ----------------------------------------
# A 1.0 install scheduled the 1.0 way: names without the database.
schedule $OLD
is "$(jobs_of $OLD)" "usage_tracking_alerts $OLD, usage_tracking_reconcile $OLD, usage_tracking_retention $OLD" "1.0 named its jobs without the database"
old_ids=$(ids_of $OLD)

schedule $SHOP
is "$(jobs_of $SHOP)" "usage_tracking_alerts@$SHOP $SHOP, usage_tracking_reconcile@$SHOP $SHOP, usage_tracking_retention@$SHOP $SHOP" \
   "$SHOP's jobs carry its name and run in it"
shop_ids=$(ids_of $SHOP)
schedule $BLOGS
is "$(jobs_of $BLOGS)" "usage_tracking_alerts@$BLOGS $BLOGS, usage_tracking_reconcile@$BLOGS $BLOGS, usage_tracking_retention@$BLOGS $BLOGS" \
   "$BLOGS's jobs carry its name and run in it"
is "$(ids_of $SHOP)" "$shop_ids" "scheduling $BLOGS left $SHOP's jobs as they were"
is "$(ids_of $OLD)" "$old_ids" "and the 1.0 jobs of $OLD too"
schedule $SHOP
is "$(ids_of $SHOP)" "$shop_ids" "scheduling $SHOP again updates its jobs in place"

# The 1.0 install upgraded, then scheduled again: its jobs renamed, once.
q -d $OLD -c "ALTER EXTENSION usage_tracking UPDATE" >/dev/null
schedule $OLD
is "$(jobs_of $OLD)" "usage_tracking_alerts@$OLD $OLD, usage_tracking_reconcile@$OLD $OLD, usage_tracking_retention@$OLD $OLD" \
   "after the update, schedule_maintenance() replaces the 1.0 jobs"
is "$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE jobname = 'usage_tracking_cron_history'")" 1 "one history pruning job"

# --- monitoring: each documented query where the docs say -------------------
q -d "$CRON_DB" -c "INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, return_message, start_time, end_time)
                    SELECT jobid, nextval('cron.runid_seq'), database, username, 'ut_cron_databases', 'failed', 'boom', now(), now()
                      FROM cron.job WHERE jobname = 'usage_tracking_retention@$SHOP'" >/dev/null
awk -v dir="$WORK" '
  /^## / { on = ($0 == "## Monitoring") }
  on && /^```sql$/ { n++; f = dir "/q" n ".sql"; inblock = 1; next }
  on && inblock && /^```$/ { inblock = 0; close(f); next }
  on && inblock { print > f }
' "$ROOT/docs/operations.md"
nq=$(ls "$WORK"/q*.sql 2>/dev/null | wc -l)
[ "$nq" -ge 4 ] && ok 0 "docs/operations.md Monitoring has $nq queries" || ok 1 "docs/operations.md Monitoring has queries (found $nq)"
for f in "$WORK"/q*.sql; do
  [ -e "$f" ] || continue
  where=$(head -1 "$f")
  what=$(sed -n 2p "$f" | cut -c1-60)
  case $where in
    "-- run in: the extension's database") db=$SHOP; other=$CRON_DB ;;
    "-- run in: pg_cron's database") db=$CRON_DB; other=$SHOP ;;
    *) ok 1 "a Monitoring query says where it runs: $what"; continue ;;
  esac
  out=$(q -d "$db" -f "$f")
  ok $? "runs where the docs say ($where): $what"
  printf '%s\n' "$out" | head -5 | sed 's/^/#   /'
  if [ "$db" = "$CRON_DB" ]; then
    printf '%s' "$out" >"$f.out"
    q -d "$other" -f "$f" >/dev/null 2>&1
    [ $? -ne 0 ] && ok 0 "  and fails in the extension's database" || ok 1 "  and fails in the extension's database"
  fi
done
grep -l "boom" "$WORK"/q*.sql.out >/dev/null 2>&1 && ok 0 "the failed-runs query shows the failed run" || ok 1 "the failed-runs query shows the failed run"
grep -h "boom" "$WORK"/q*.sql.out 2>/dev/null | grep -q "^$SHOP|usage_tracking_retention@$SHOP|failed" \
  && ok 0 "with its database and job" || ok 1 "with its database and job"

# --- unscheduling one database leaves the others' ---------------------------
unschedule $BLOGS
is "$(jobs_of $BLOGS)" "" "unschedule_maintenance() statements removed $BLOGS's jobs"
is "$(ids_of $SHOP)" "$shop_ids" "and left $SHOP's"
is "$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE database = '$OLD'")" 3 "and $OLD's"
is "$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE jobname = 'usage_tracking_cron_history'")" 1 "the history pruning job stays while others need it"

# A dropped database's jobs: the documented query finds them.
q -d postgres -c "DROP DATABASE $OLD WITH (FORCE)" >/dev/null
leftover=$(awk '/^## /{on=($0=="## Monitoring")} on&&/^```sql$/{b="";inb=1;next} on&&inb&&/^```$/{inb=0; if (b ~ /NOT IN \(SELECT datname/) print b; next} on&&inb&&!/^--/{b=b $0 "\n"}' "$ROOT/docs/operations.md" | tr -d ';')
is "$(q -d "$CRON_DB" -c "SELECT string_agg(jobname, ' ' ORDER BY jobname) FROM ($leftover) j" 2>&1)" \
   "usage_tracking_alerts@$OLD usage_tracking_reconcile@$OLD usage_tracking_retention@$OLD" "the left-behind query finds a dropped database's jobs"
q -d "$CRON_DB" -c "SELECT cron.unschedule(jobid) FROM ($leftover) j" >/dev/null

unschedule $SHOP
is "$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE database IN ('$SHOP', '$BLOGS', '$OLD')")" 0 "no job of these databases is left"
others=$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE jobname LIKE 'usage\_tracking\_%' AND jobname <> 'usage_tracking_cron_history'")
is "$(q -d "$CRON_DB" -c "SELECT count(*) FROM cron.job WHERE jobname = 'usage_tracking_cron_history'")" "$([ "$others" -eq 0 ] && echo 0 || echo 1)" \
   "the history pruning job goes with the last database's jobs"

echo "cron_databases: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
