#!/usr/bin/env bash
# test/e2e/uninstall.sh — the uninstall of docs/operations.md leaves nothing
# of the extension behind, and the extension installs again afterwards.
#
# A cluster of its own (the roles are cluster-wide, and can only be dropped
# once no database uses them), pg_cron running in the extension's database,
# the library loaded per database (ALTER DATABASE … SET
# session_preload_libraries, as "Configuration" documents) instead of the
# test clusters' cluster-wide line.  It installs, checks the settings are
# known in a fresh session, schedules the jobs, sets database and system
# settings, grants a role to a login role, ingests; then follows the
# documented uninstall and compares the catalogs with a snapshot taken
# before CREATE EXTENSION: pg_namespace, pg_class, pg_proc, pg_type,
# pg_depend, pg_default_acl, pg_init_privs, pg_shdepend, pg_roles,
# pg_auth_members, pg_db_role_setting, cron.job and the settings in use.
# Then CREATE EXTENSION again, and a signed batch is stored.  Last, as
# pg_cron runs in the extension's database here: ALTER EXTENSION UPDATE
# renames the jobs 1.0 scheduled.
set -uo pipefail
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tools/lib.sh"
DIR=$(mktemp -d /tmp/usage_tracking_uninstall.XXXXXX)
trap 'ut_cluster_stop "$DIR"; rm -rf "$DIR"' EXIT
DB=ut_app

pass=0 fail=0
ok() { if [ "$1" -eq 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi; }
is() { if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi; }
finish() { echo "uninstall: $pass passed, $fail failed"; [ "$fail" -eq 0 ] && exit 0; exit 1; }
q() { psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -c "$1" 2>&1; }

ut_cluster_start "$DIR" postgres >/dev/null || exit 1
psql -qX -d postgres -c "CREATE DATABASE $DB" >/dev/null || exit 1
# pg_cron in the extension's database; the library not preloaded cluster-wide.
cat >>"$DIR/data/postgresql.conf" <<CONF
cron.database_name = '$DB'
session_preload_libraries = ''
CONF
ut_as_pg pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w -t 60 restart >/dev/null || { cat "$DIR/server.log"; exit 1; }
q "CREATE EXTENSION pg_cron; CREATE EXTENSION pgcrypto; CREATE ROLE ut_site_gateway LOGIN" >/dev/null || exit 1

# The catalogs before the extension: every row that names an object, a role
# or a setting (OIDs of objects that exist before stay the same).
snapshot() {
  psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" <<'SQL'
SELECT 'namespace', oid, nspname, nspacl FROM pg_namespace ORDER BY oid;
SELECT 'class', oid, relnamespace::regnamespace, relname, relacl FROM pg_class ORDER BY oid;
SELECT 'proc', oid, pronamespace::regnamespace, proname, proacl FROM pg_proc ORDER BY oid;
SELECT 'type', oid, typnamespace::regnamespace, typname, typacl FROM pg_type ORDER BY oid;
SELECT 'depend', classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype FROM pg_depend
 ORDER BY classid, objid, objsubid, refclassid, refobjid, refobjsubid, deptype;
SELECT 'default_acl', oid, defaclrole, defaclnamespace, defaclobjtype, defaclacl FROM pg_default_acl ORDER BY oid;
SELECT 'init_privs', objoid, classoid, objsubid, privtype, initprivs FROM pg_init_privs ORDER BY objoid, classoid, objsubid;
SELECT 'shdepend', dbid, classid, objid, objsubid, refclassid, refobjid, deptype FROM pg_shdepend
 ORDER BY dbid, classid, objid, objsubid, refclassid, refobjid, deptype;
SELECT 'role', rolname FROM pg_roles ORDER BY rolname;
SELECT 'member', roleid::regrole, member::regrole FROM pg_auth_members ORDER BY 2, 3;
SELECT 'db_role_setting', setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 2, 3;
SELECT 'setting', name, setting, source FROM pg_settings WHERE name LIKE 'usage\_tracking.%' OR name = 'session_preload_libraries' ORDER BY name;
SELECT 'file_setting', name, setting FROM pg_file_settings WHERE name LIKE 'usage\_tracking.%' ORDER BY name;
SELECT 'cron_job', jobid, jobname, database, username FROM cron.job ORDER BY jobid;
SQL
}
snapshot >"$DIR/before" || exit 1

# --- install, configure, schedule, use -------------------------------------
is "$(q "CREATE EXTENSION usage_tracking" && echo done)" done "CREATE EXTENSION usage_tracking"
got=$(q "SHOW usage_tracking.max_batch_events")
case $got in *'unrecognized configuration parameter'*) ok 0 "without a preload line, a fresh session does not know the settings" ;;
  *) ok 1 "without a preload line, a fresh session does not know the settings"; echo "#   got: $got" ;; esac
q "ALTER DATABASE $DB SET session_preload_libraries = 'usage_tracking'" >/dev/null
is "$(q "SHOW usage_tracking.max_batch_events")" 1000 "with ALTER DATABASE … SET session_preload_libraries, SHOW works in a fresh session"
is "$(q "SELECT current_setting('usage_tracking.event_retention')")" 90d "current_setting() works in a fresh session"

# Settings a DBA may have made: database, system, role.
q "ALTER DATABASE $DB SET usage_tracking.max_batch_events = 500" >/dev/null
q "ALTER SYSTEM SET usage_tracking.signature_tolerance = 600" >/dev/null
q "ALTER ROLE ut_site_gateway SET usage_tracking.max_body_bytes = '2MB'" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
sleep 1
is "$(q "SELECT current_setting('usage_tracking.max_batch_events') || ' ' || current_setting('usage_tracking.signature_tolerance')")" \
   "500 10min" "database and system settings are in force"

# A login role granted the extension's roles, as the gateway's would be.
q "GRANT usage_tracking_ingest, usage_tracking_reader TO ut_site_gateway" >/dev/null
# Default privileges a DBA may have added in the extension's schema.
q "ALTER DEFAULT PRIVILEGES IN SCHEMA usage_tracking GRANT SELECT ON TABLES TO usage_tracking_analyst" >/dev/null

lines=$(q "SELECT * FROM usage_tracking.schedule_maintenance()")
jobs=$(q "SELECT string_agg(jobname, ' ' ORDER BY jobname) FROM cron.job WHERE database = '$DB'")
is "$jobs" "usage_tracking_alerts@$DB usage_tracking_reconcile@$DB usage_tracking_retention@$DB" "schedule_maintenance() registered this database's jobs"

INSTALL=0a1b2c3d-0000-4000-8000-00000000aa01_00000000aa01
SECRET=uninstall-secret-0123456789abcdef
post_batch() {  # post_batch PREFIX — one signed batch of 3 events through the core ingest
  psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -v inst="$INSTALL" -v secret="$SECRET" -v prefix="$1" <<'SQL' 2>&1
SELECT jsonb_build_object('install_id', :'inst', 'events',
         jsonb_agg(jsonb_build_object('event_id', :'prefix' || '_' || k, 'wp_user_id_hash', repeat('ab', 32),
                                      'source', 'bulk', 'model', 'gpt-4o-mini', 'prompt_tokens', 100 + k,
                                      'completion_tokens', 10, 'created_at', '2026-01-10T11:59:00Z')))::text AS body
  FROM generate_series(1, 3) k \gset
SELECT usage_tracking.ingest(:'body',
         usage_tracking.hmac_sha256_hex(:'secret', '1768046400.' || :'body') || ':1768046400',
         '2026-01-10 12:00:00+00') ->> 'received';
SQL
}
q "SELECT usage_tracking.ensure_partitions('2026-01-09', '2026-01-12');
   SELECT usage_tracking.create_account('acc_uninstall', 'pro');
   SELECT usage_tracking.register_installation('$INSTALL', 'acc_uninstall', '$SECRET')" >/dev/null
is "$(post_batch first)" 3 "a signed batch is stored before the uninstall"
is "$(q "SELECT sum(total_requests) FROM usage_tracking.daily")" 3 "and summarised"

# --- the uninstall, as docs/operations.md "Uninstall" says ------------------
# 1. in pg_cron's database (here: this one), remove this database's jobs.
out=$(q "SELECT * FROM usage_tracking.unschedule_maintenance()")
is "$(echo "$out" | grep -c ': unscheduled')" 3 "unschedule_maintenance() removed the 3 jobs"
# 2. in the extension's database.
is "$(q "DROP EXTENSION usage_tracking" && echo done)" done "DROP EXTENSION usage_tracking"
is "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'usage_tracking'")" 1 \
   "the schema CREATE EXTENSION made is left (PostgreSQL does not make it a member)"
is "$(q "DROP SCHEMA usage_tracking" && echo done)" done "DROP SCHEMA usage_tracking (empty: no CASCADE needed)"
# 3. settings: each database, each role, the system.
resets=$(q "SELECT format('ALTER %s RESET %s;',
                          CASE WHEN s.setrole = 0 THEN 'DATABASE ' || quote_ident(d.datname)
                               WHEN s.setdatabase = 0 THEN 'ROLE ' || quote_ident(r.rolname)
                               ELSE 'ROLE ' || quote_ident(r.rolname) || ' IN DATABASE ' || quote_ident(d.datname) END,
                          split_part(c, '=', 1))
              FROM pg_db_role_setting s CROSS JOIN unnest(s.setconfig) c
              LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
             WHERE c LIKE 'usage\_tracking.%' OR c ~ '^session_preload_libraries=.*usage_tracking'")
echo "$resets" | sed 's/^/#   /'
is "$(echo "$resets" | grep -c .)" 3 "the settings query lists the database, role and preload settings"
is "$(psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" <<<"$resets" >/dev/null 2>&1 && echo done)" done "the listed ALTER … RESET statements run"
system=$(q "SELECT format('ALTER SYSTEM RESET %s;', name) FROM pg_file_settings
             WHERE name LIKE 'usage\_tracking.%' AND sourcefile LIKE '%postgresql.auto.conf'")
is "$system" "ALTER SYSTEM RESET usage_tracking.signature_tolerance;" "the ALTER SYSTEM settings query lists the system setting"
q "$system" >/dev/null
q "SELECT pg_reload_conf()" >/dev/null
# 4. the roles, once no database of the cluster has the extension.
is "$(q "DROP ROLE usage_tracking_ingest, usage_tracking_reader, usage_tracking_analyst, usage_tracking_admin" 2>&1 && echo done)" done \
   "DROP ROLE of the four roles"
sleep 1

snapshot >"$DIR/after" || exit 1
# the login role itself is ours; its membership and setting are the extension's
left=$(diff "$DIR/before" "$DIR/after")
is "$left" "" "nothing of the extension is left in the catalogs, cron.job or the settings"
[ -z "$left" ] || echo "$left" | head -40 | sed 's/^/#   /'
is "$(q "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'usage\_tracking\_%'")" 0 "no usage_tracking_* role is left"

# --- and again ---------------------------------------------------------------
is "$(q "CREATE EXTENSION usage_tracking" && echo done)" done "CREATE EXTENSION usage_tracking again"
q "SELECT usage_tracking.ensure_partitions('2026-01-09', '2026-01-12');
   SELECT usage_tracking.create_account('acc_uninstall', 'pro');
   SELECT usage_tracking.register_installation('$INSTALL', 'acc_uninstall', '$SECRET')" >/dev/null
is "$(post_batch again)" 3 "a signed batch is stored after re-creating the extension"
is "$(q "SELECT (SELECT count(*) FROM usage_tracking.events) || ' ' || (SELECT sum(total_requests) FROM usage_tracking.daily)")" \
   "3 3" "only the new events exist, summarised"
q "SELECT * FROM usage_tracking.schedule_maintenance()" >/dev/null
is "$(q "SELECT count(*) FROM cron.job WHERE database = '$DB' AND jobname LIKE 'usage\_tracking\_%@$DB'")" 3 "the jobs schedule again"
is "$(q "SELECT count(*) FROM usage_tracking.unschedule_maintenance()")" 3 "and unschedule again"

# --- 1.0 jobs, pg_cron in this database: the update renames them in place ----
q "DROP EXTENSION usage_tracking; CREATE EXTENSION usage_tracking VERSION '1.0'" >/dev/null
q "SELECT * FROM usage_tracking.schedule_maintenance()" >/dev/null
jobs() { q "SELECT string_agg(jobid || ' ' || jobname || ' ' || schedule, ', ' ORDER BY jobid) FROM cron.job WHERE database = '$DB'"; }
before=$(jobs)
is "$(echo "$before" | sed 's/[0-9]* usage/N usage/g')" \
   "N usage_tracking_retention 0 3 * * *, N usage_tracking_reconcile 0 2 * * *, N usage_tracking_alerts */5 * * * *" \
   "1.0 named the jobs without the database"
q "ALTER EXTENSION usage_tracking UPDATE" >/dev/null
is "$(jobs)" "$(echo "$before" | sed "s/usage_tracking_\([a-z]*\) /usage_tracking_\1@$DB /g")" \
   "ALTER EXTENSION UPDATE renamed them in place (same ids and schedules)"
is "$(q "SELECT count(*) FROM usage_tracking.unschedule_maintenance()")" 3 "unschedule_maintenance() removes them"
finish
