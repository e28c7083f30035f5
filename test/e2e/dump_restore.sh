#!/usr/bin/env bash
# test/e2e/dump_restore.sh — a database using usage_tracking survives
# pg_dump and a restore into a fresh cluster, both ways (custom format with
# pg_restore --exit-on-error, once plain and once --single-transaction;
# plain SQL through psql -v ON_ERROR_STOP=1), with no error and nothing
# lost: every table of the extension's schemas (listed from the catalog)
# has the same rows, sequences carry on, partitions come back attached with
# their indexes.  Then the copy works: a replayed batch is all duplicates,
# a new batch is stored and summarised, maintenance, reconcile and erasure
# run, and an account's quota verdict is the source's.
set -uo pipefail
: "${UT_ROOT:?}" "${UT_WORK:?}" "${PGHOST:?}" "${PGPORT:?}"
export PGUSER=${PGUSER:-postgres} PGTZ=UTC
. "$UT_ROOT/tools/lib.sh"

SRC_HOST=$PGHOST SRC_PORT=$PGPORT
DIR=$UT_WORK/dump_restore
DB=ut_dump_src
NOW="'2026-11-20 12:00:00+00'"
I1=550e8400-e29b-41d4-a716-446655440001_a1a1a1a1a1a1
I2=550e8400-e29b-41d4-a716-446655440002_b2b2b2b2b2b2
I3=550e8400-e29b-41d4-a716-446655440003_c3c3c3c3c3c3
S1=secret-one-0123456789abcdef
S1B=secret-one-rotated-0123456789
S2=secret-two-0123456789abcdef
S3=secret-three-0123456789abcdef
rm -rf "$DIR"
mkdir -p "$DIR"
chmod 755 "$DIR"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
is() {  # is GOT WANT NAME
  if [ "$1" = "$2" ]; then ok "$3"; else not_ok "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi
}
src() { PGHOST=$SRC_HOST PGPORT=$SRC_PORT "$@"; }
dst() { PGHOST=$DST_HOST PGPORT=$DST_PORT "$@"; }
q() { psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

DST_HOST= DST_PORT=
cleanup() {
  src psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  ut_cluster_stop "$DIR/target"
  rm -rf "$DIR"
}
trap cleanup EXIT

# A second cluster, with the same installed extension files.
( ut_cluster_start "$DIR/target" >/dev/null ) || { echo "not ok - start the target cluster"; exit 1; }
DST_HOST=$DIR/target
DST_PORT=$(sed -n 's/^port = //p' "$DIR/target/data/postgresql.conf")

# Signed batches, made in SQL: N events of installation INST on day DAY.
HELPERS=$(cat <<'EOF'
CREATE SCHEMA IF NOT EXISTS ut_test;
CREATE OR REPLACE FUNCTION ut_test.batch(inst text, tag text, n int, day timestamptz) RETURNS text
LANGUAGE sql AS $$
  SELECT jsonb_build_object('install_id', inst, 'events', jsonb_agg(jsonb_build_object(
           'event_id', 'evt_' || tag || '_' || k,
           'wp_user_id_hash', encode(sha256(convert_to('user' || k % 2, 'UTF8')), 'hex'),
           'source', (ARRAY['inline', 'bulk', 'queue'])[k % 3 + 1],
           'model', (ARRAY['gpt-4o-mini', 'gpt-4o', 'custom-model'])[k % 3 + 1],
           'prompt_tokens', 100 + k, 'completion_tokens', 20 + k, 'total_tokens', 120 + 2 * k,
           'cached_prompt_tokens', k % 2 * 10, 'request_id', 'req_' || tag || '_' || k,
           'context', jsonb_build_object('attachment_id', k),
           'created_at', to_char((day + k * interval '1 minute') AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) ORDER BY k))::text
    FROM generate_series(0, n - 1) k
$$;
CREATE OR REPLACE FUNCTION ut_test.post(body text, secret text, at timestamptz) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(body, usage_tracking.hmac_sha256_hex(secret,
           extract(epoch FROM at)::bigint::text || '.' || body) || ':' || extract(epoch FROM at)::bigint, at)
$$;
EOF
)

# --- the source ---------------------------------------------------------
src q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
src q -d "$DB" -c "CREATE EXTENSION usage_tracking" -c "$HELPERS" >/dev/null || { echo "not ok - create extension"; exit 1; }
src q -d "$DB" >"$DIR/source.log" 2>&1 <<EOF || { echo "not ok - source data"; cat "$DIR/source.log"; exit 1; }
SET usage_tracking.event_retention = '10d';
-- configuration: a custom plan and price, a seeded plan and price changed
SELECT usage_tracking.set_plan('gold', 500, 50, 80, 100, 30);
SELECT usage_tracking.set_plan('pro', 20000);
SELECT usage_tracking.set_model_price('custom-model', 1.0, 2.0, 0.5);
SELECT usage_tracking.set_model_price('gpt-4o', 3.0, 12.0, 1.5);
SELECT usage_tracking.set_model_price('gpt-4o-mini', 0.2, 0.8, 0.1, '2026-11-19');
-- accounts, installations and secrets, one rotated
SELECT usage_tracking.create_account('acct-gold', 'gold');
SELECT usage_tracking.create_account('acct-free', 'free');
SELECT usage_tracking.create_account('acct-pro', 'pro');
SELECT usage_tracking.register_installation('$I1', 'acct-gold', '$S1', $NOW::timestamptz - interval '5 days');
SELECT usage_tracking.register_installation('$I2', 'acct-free', '$S2', $NOW::timestamptz - interval '5 days');
SELECT usage_tracking.register_installation('$I3', 'acct-pro', '$S3', $NOW::timestamptz - interval '5 days');
SELECT usage_tracking.rotate_installation_secret('$I1', '$S1B', $NOW::timestamptz - interval '1 day');
SELECT usage_tracking.set_alert_channel('acct-free', 'webhook', 'https://hooks.example.invalid/a', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw');
SELECT usage_tracking.set_alert_channel('acct-free', 'slack', 'https://hooks.example.invalid/s');
-- three days in partitions made before, the last day made by maintenance
SELECT usage_tracking.ensure_partitions($NOW::timestamptz - interval '3 days', $NOW::timestamptz - interval '1 day');
SELECT ut_test.post(ut_test.batch(i.id, i.tag || d, 12, $NOW::timestamptz - d * interval '1 day' - interval '4 hours'),
                    i.secret, $NOW::timestamptz - d * interval '1 day' - interval '2 hours')
  FROM (VALUES ('$I1', 'a', '$S1B'), ('$I2', 'b', '$S2'), ('$I3', 'c', '$S3')) i (id, tag, secret),
       generate_series(3, 0, -1) d
 ORDER BY d DESC, i.id;
SELECT usage_tracking.authorize('$I1', 2, 300, $NOW::timestamptz + interval '1 minute');
SELECT usage_tracking.authorize('$I3', 1, 100, $NOW::timestamptz + interval '2 minutes');
SELECT usage_tracking.evaluate_alerts($NOW::timestamptz + interval '3 minutes');
SELECT usage_tracking.claim_deliveries(10, '5 minutes', $NOW::timestamptz + interval '4 minutes');
SELECT usage_tracking.record_delivery(d.alert_id, d.channel_id, d.channel_id % 2 = 0, '500',
                                      now => $NOW::timestamptz + interval '5 minutes')
  FROM usage_tracking.alert_deliveries d;
SELECT usage_tracking.void_event('$I3', 'evt_c1_4', 'duplicate charge');
SELECT usage_tracking.reconcile(($NOW::timestamptz - interval '1 day')::date);
SELECT usage_tracking.forget_user('$I2', encode(sha256(convert_to('user1', 'UTF8')), 'hex'));
SELECT usage_tracking.run_maintenance($NOW::timestamptz);
-- a row past every partition: a direct INSERT needs its day prepared
-- (there is no default partition)
SELECT usage_tracking.ensure_partitions($NOW::timestamptz + interval '40 days', $NOW::timestamptz + interval '40 days');
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at, received_at)
VALUES ('$I1', 'evt_import_1', encode(sha256(convert_to('user0', 'UTF8')), 'hex'), 'bulk', 'gpt-4o',
        10, 5, $NOW::timestamptz + interval '40 days', $NOW);
EOF
counts=$(src q -d "$DB" -c "SELECT (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                   WHERE i.inhparent IN ('usage_tracking.events'::regclass, 'usage_tracking.daily'::regclass)
                                     AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT') || ' ' ||
  (SELECT count(*) FROM usage_tracking.events WHERE created_at > $NOW::timestamptz + interval '30 days') || ' ' ||
  (SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_tracking.events'::regclass) || ' ' ||
  (SELECT count(*) FROM usage_tracking.alert_deliveries) || ' ' ||
  (SELECT count(*) FROM usage_tracking.event_voids) || ' ' ||
  (SELECT count(*) FROM usage_tracking.erasure_log) || ' ' ||
  (SELECT count(*) FROM usage_tracking.rate_state) || ' ' || (SELECT count(*) FROM usage_tracking.ingest_windows)")
read -r defaults far ev_parts deliveries voids erasures rates windows <<<"$counts"
if [ "$defaults" -eq 0 ] && [ "$far" -eq 1 ] && [ "$ev_parts" -ge 10 ] && [ "$deliveries" -ge 2 ] \
   && [ "$voids" -eq 1 ] && [ "$erasures" -eq 1 ] && [ "$rates" -eq 2 ] && [ "$windows" -eq 3 ]; then
  ok "source holds every kind of row (no default partition, $ev_parts event partitions, deliveries, voids, logs, counters)"
else
  not_ok "source data incomplete: $counts"
fi

# Content of every table and sequence of the extension's schemas, read
# from the catalog; and the partitions with their bounds, indexes and
# constraints.
SNAPSHOT=$(cat <<'EOF'
SELECT CASE c.relkind
         WHEN 'S' THEN pg_catalog.format('SELECT %L, 1, md5(last_value || '' '' || is_called) FROM %s',
                                         c.oid::regclass::text, c.oid::regclass)
         ELSE pg_catalog.format('SELECT %L, count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %s t',
                                c.oid::regclass::text, c.oid::regclass) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('usage_tracking', 'usage_api') AND c.relkind IN ('r', 'S')
 ORDER BY 1 \gexec
SELECT 'partition', c.oid::regclass, p.oid::regclass, pg_get_expr(c.relpartbound, c.oid)
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
 WHERE p.relnamespace = 'usage_tracking'::regnamespace ORDER BY c.oid::regclass::text;
SELECT 'index', i.indexrelid::regclass, pg_get_indexdef(i.indexrelid), i.indisvalid
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'usage_tracking'::regnamespace ORDER BY i.indexrelid::regclass::text;
SELECT 'constraint', conrelid::regclass, conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'usage_tracking'::regnamespace ORDER BY conrelid::regclass::text, 3;
SELECT 'config', c::regclass, e.extcondition[i]
  FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY u (c, i)
 WHERE e.extname = 'usage_tracking' ORDER BY u.c::regclass::text;
EOF
)
snapshot() {  # snapshot src|dst DB FILE
  $1 q -d "$2" -f - >"$3" <<<"$SNAPSHOT" 2>&1
}
snapshot src "$DB" "$DIR/source.snap"
ntables=$(grep -c '^usage_tracking\.\(.*\)|[0-9]*|[0-9a-f]\{32\}$' "$DIR/source.snap")
[ "$ntables" -ge 25 ] && ok "snapshot of the source: $ntables tables and sequences" \
  || { not_ok "snapshot of the source ($ntables tables)"; cat "$DIR/source.snap"; }

src pg_dump -Fc -d "$DB" -f "$DIR/db.dump" 2>"$DIR/dump_fc.err" && [ ! -s "$DIR/dump_fc.err" ] \
  && ok "pg_dump -Fc" || { not_ok "pg_dump -Fc"; cat "$DIR/dump_fc.err"; }
src pg_dump -Fp -d "$DB" -f "$DIR/db.sql" 2>"$DIR/dump_fp.err" && [ ! -s "$DIR/dump_fp.err" ] \
  && ok "pg_dump -Fp" || { not_ok "pg_dump -Fp"; cat "$DIR/dump_fp.err"; }
grep -q "$S1B" "$DIR/db.sql" && ok "the dump holds the installation secrets (to be protected like the database)" \
  || not_ok "the installation secrets are not in the dump"

# restore ROUTE DB: into a new database of the target cluster
restore() {
  dst q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $2" -c "CREATE DATABASE $2" >/dev/null || return 1
  case $1 in
    pg_restore) dst pg_restore --exit-on-error -d "$2" "$DIR/db.dump" ;;
    single)     dst pg_restore --exit-on-error --single-transaction -d "$2" "$DIR/db.dump" ;;
    psql)       dst psql -qX -v ON_ERROR_STOP=1 -d "$2" -f "$DIR/db.sql" >/dev/null ;;
  esac
}
for route in pg_restore single psql; do
  copy=ut_copy_$route
  if restore $route $copy >"$DIR/restore_$route.log" 2>&1 && ! grep -q 'ERROR' "$DIR/restore_$route.log"; then
    ok "restore with $route: no error"
  else
    not_ok "restore with $route"; head -20 "$DIR/restore_$route.log"
  fi
  snapshot dst $copy "$DIR/copy_$route.snap"
  if diff "$DIR/source.snap" "$DIR/copy_$route.snap" >"$DIR/diff_$route" 2>&1; then
    ok "restore with $route: every table, sequence, partition, index and dump registration is identical"
  else
    not_ok "restore with $route differs from the source"; head -30 "$DIR/diff_$route"
  fi
done

# --- the copy works -----------------------------------------------------
C=ut_copy_pg_restore
dst q -d "$C" -c "$HELPERS" >/dev/null 2>&1
replay=$(dst q -d "$C" -c "SELECT (r->>'received') || ' ' || (r->>'duplicates')
  FROM ut_test.post(ut_test.batch('$I3', 'c0', 12, $NOW::timestamptz - interval '4 hours'), '$S3', $NOW::timestamptz + interval '10 minutes') r")
is "$replay" "12 12" "a batch the source stored is all duplicates on the copy"
new=$(dst q -d "$C" -c "SELECT (r->>'received') || ' ' || (r->>'duplicates')
  FROM ut_test.post(ut_test.batch('$I1', 'new', 5, $NOW::timestamptz - interval '30 minutes'), '$S1B', $NOW::timestamptz + interval '11 minutes') r")
is "$new" "5 0" "a new batch is stored on the copy (the rotated secret verifies)"
summ=$(dst q -d "$C" -c "SELECT s.total_requests FROM usage_tracking.usage_summary('$I1', '2026-11-20', '2026-11-20', 'day') s")
want=$(src q -d "$DB" -c "SELECT s.total_requests + 5 FROM usage_tracking.usage_summary('$I1', '2026-11-20', '2026-11-20', 'day') s")
is "$summ" "$want" "the new batch is summarised on the copy"

ids_before=$(dst q -d "$C" -c "SELECT coalesce(max(id), 0) FROM usage_tracking.maintenance_log")
era_before=$(dst q -d "$C" -c "SELECT coalesce(max(id), 0) FROM usage_tracking.erasure_log")
alert_before=$(dst q -d "$C" -c "SELECT coalesce(max(alert_id), 0) FROM usage_tracking.alerts")
if dst q -d "$C" >"$DIR/copy_jobs.log" 2>&1 <<EOF
SET usage_tracking.event_retention = '10d';
SELECT usage_tracking.run_maintenance($NOW::timestamptz + interval '1 day');
SELECT usage_tracking.reconcile('2026-11-19');
SELECT usage_tracking.forget_user('$I3', encode(sha256(convert_to('user0', 'UTF8')), 'hex'));
SELECT usage_tracking.evaluate_alerts($NOW::timestamptz + interval '1 day');
EOF
then ok "run_maintenance(), reconcile(), forget_user() and evaluate_alerts() run on the copy"
else not_ok "maintenance on the copy"; cat "$DIR/copy_jobs.log"; fi
after=$(dst q -d "$C" -c "SELECT (SELECT min(id) FROM usage_tracking.maintenance_log WHERE id > $ids_before) > $ids_before,
  (SELECT count(*) FROM usage_tracking.maintenance_log WHERE id > $ids_before),
  (SELECT min(id) FROM usage_tracking.erasure_log WHERE id > $era_before) > $era_before,
  (SELECT count(*) FROM usage_tracking.alerts WHERE alert_id <= $alert_before)
    = (SELECT count(*) FROM usage_tracking.alerts WHERE alert_id <= $alert_before AND created_at <= $NOW::timestamptz + interval '1 hour')")
is "$after" "t|2|t|t" "sequences carry on: new log ids follow the restored ones"
drift=$(dst q -d "$C" -c "SELECT (usage_tracking.reconcile(d::date, false)->>'drifted') FROM generate_series(date '2026-11-17', date '2026-11-20', '1 day') d" | sort -u)
is "$drift" "0" "the copy's summaries match its raw events on every day"

for acct in "$I1" "$I2" "$I3"; do
  s=$(src q -d "$DB" -c "SELECT usage_tracking.quota_status('$acct', $NOW::timestamptz + interval '3 minutes')")
  d=$(dst q -d ut_copy_psql -c "SELECT usage_tracking.quota_status('$acct', $NOW::timestamptz + interval '3 minutes')")
  is "$d" "$s" "quota_status of $acct is the source's"
done
s=$(src q -d "$DB" -c "SELECT usage_tracking.authorize('$I2', 1, 10, $NOW::timestamptz + interval '6 minutes')")
d=$(dst q -d ut_copy_psql -c "SELECT usage_tracking.authorize('$I2', 1, 10, $NOW::timestamptz + interval '6 minutes')")
is "$d" "$s" "authorize() gives the copy the source's verdict"

# A plain INSERT of an unchanged seeded key replaces it; a changed one is
# an ordinary row and collides.
seed=$(dst q -d ut_copy_psql -c "SELECT plan, monthly_requests FROM usage_tracking.plans WHERE plan IN ('pro', 'free') ORDER BY 1" | tr '\n' ' ')
is "$seed" "free|50 pro|20000 " "the changed seeded plan comes back changed, the unchanged one as seeded"
dst q -d ut_copy_psql -c "INSERT INTO usage_tracking.plans (plan, monthly_requests) VALUES ('pro', 1)" >/dev/null 2>&1 \
  && not_ok "a changed seeded plan was overwritten by an INSERT" || ok "a changed seeded plan is not overwritten"

# --- pg_dump -n: the extension's schemas only ------------------------------
# PostgreSQL 15's pg_dump crashed on these while a configuration table was a
# partition (the 1.0 default partitions).  Such a dump holds the schemas'
# partitions (definitions and rows), the rows of the configuration tables
# and the sequences, but not CREATE EXTENSION, and it creates the schema
# usage_tracking, which CREATE EXTENSION creates too.  A DBA restores it
# into a database where the extension is created first, leaving out the
# dump's CREATE SCHEMA entries (pg_restore -L): that restores everything,
# as a whole-database dump does.
# (the source has changed since its first snapshot: authorize() above)
snapshot src "$DB" "$DIR/source_n.snap"
for mode in data schema; do
  flag=; [ $mode = schema ] && flag=-s
  if src pg_dump $flag -n usage_tracking -n usage_api -Fp -d "$DB" -f "$DIR/n_$mode.sql" 2>"$DIR/n_$mode.err" \
     && [ ! -s "$DIR/n_$mode.err" ] \
     && src pg_dump $flag -n usage_tracking -n usage_api -Fc -d "$DB" -f "$DIR/n_$mode.dump" 2>>"$DIR/n_$mode.err" \
     && [ ! -s "$DIR/n_$mode.err" ]; then
    ok "pg_dump${flag:+ $flag} -n usage_tracking -n usage_api exits 0 (plain and custom format)"
  else
    not_ok "pg_dump${flag:+ $flag} -n usage_tracking -n usage_api (exit status or stderr)"; cat "$DIR/n_$mode.err"
  fi
  copy=ut_copy_n_$mode
  pg_restore -l "$DIR/n_$mode.dump" | grep -v ' SCHEMA - usage_tracking \| SCHEMA - usage_api ' >"$DIR/n_$mode.list"
  if dst q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $copy" -c "CREATE DATABASE $copy" \
       >"$DIR/restore_n_$mode.log" 2>&1 \
     && dst q -d $copy -c "CREATE EXTENSION usage_tracking" >>"$DIR/restore_n_$mode.log" 2>&1 \
     && dst pg_restore --exit-on-error --single-transaction -L "$DIR/n_$mode.list" -d $copy "$DIR/n_$mode.dump" \
       >>"$DIR/restore_n_$mode.log" 2>&1; then
    ok "the $mode dump of -n restores after CREATE EXTENSION (pg_restore -L without CREATE SCHEMA, --exit-on-error)"
  else
    not_ok "restore of the -n $mode dump"; head -20 "$DIR/restore_n_$mode.log"
  fi
  snapshot dst $copy "$DIR/copy_n_$mode.snap"
  if [ $mode = data ]; then
    cmp_src=$DIR/source_n.snap cmp_dst=$DIR/copy_n_$mode.snap
  else
    grep '^\(partition\|index\|constraint\|config\)|' "$DIR/source_n.snap" >"$DIR/source_schema.snap"
    grep '^\(partition\|index\|constraint\|config\)|' "$DIR/copy_n_$mode.snap" >"$DIR/copy_n_schema_only.snap"
    cmp_src=$DIR/source_schema.snap cmp_dst=$DIR/copy_n_schema_only.snap
  fi
  if diff "$cmp_src" "$cmp_dst" >"$DIR/diff_n_$mode" 2>&1; then
    [ $mode = data ] && ok "restore of the -n dump: every table, sequence, partition, index and dump registration is identical" \
      || ok "restore of the -n -s dump: every partition, index, constraint and dump registration is identical"
  else
    not_ok "restore of the -n $mode dump differs from the source"; head -30 "$DIR/diff_n_$mode"
  fi
done

echo "# dump_restore: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
