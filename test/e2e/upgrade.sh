#!/usr/bin/env bash
# test/e2e/upgrade.sh — an install of the oldest release (1.0), holding data,
# updated step by step to the current version is the same as a fresh install
# of the current version, and its data is intact and usable.
#
# Two databases get the same data: "old" under 1.0 then updated, "new" under
# the current version.  Their schema-only dumps in binary-upgrade form (which
# list every member of the extension, its privileges, initial privileges and
# the tables registered for dumping) must be equal once object ids are masked;
# the rows that were in "old" before the update must still be there after it;
# and afterwards both answer the same to a resend and to a new batch.  The
# current library serves the 1.0 SQL before the update: it ingests there.
set -uo pipefail
: "${PGHOST:?}" "${PGPORT:?}"
export PGUSER=${PGUSER:-postgres}
OLD=ut_upgrade_old
NEW=ut_upgrade_new
TMP=$(mktemp -d "${UT_WORK:-/tmp}/upgrade.XXXXXX")
. "$(dirname "$0")/lib/checks.sh"
q() { psql -XAtq -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
  q -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $OLD WITH (FORCE)" -c "DROP DATABASE IF EXISTS $NEW WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT
for _ in $(seq 1 60); do q -d postgres -c "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done

CURRENT=$(q -d postgres -c "SELECT default_version FROM pg_available_extensions WHERE name = 'usage_tracking'")
OLDEST=1.0
q -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $OLD WITH (FORCE)" -c "DROP DATABASE IF EXISTS $NEW WITH (FORCE)" \
  -c "CREATE DATABASE $OLD" -c "CREATE DATABASE $NEW" >/dev/null || exit 1
q -d "$OLD" -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking VERSION '$OLDEST'" >/dev/null \
  || { not_ok "CREATE EXTENSION usage_tracking VERSION '$OLDEST' with the current library"; exit 1; }
q -d "$NEW" -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null \
  || { not_ok "CREATE EXTENSION usage_tracking"; exit 1; }
check "the old database runs $OLDEST" "$OLDEST" "$(q -d "$OLD" -c "SELECT extversion FROM pg_extension WHERE extname = 'usage_tracking'")"

# Test helpers outside the extension's schemas (schema ut_t).
helpers=$(cat "$(dirname "$0")/lib/batches.sql")
# The data: a custom plan, a changed seeded price, accounts, installations,
# events over three days (so partitions made at run time), maintenance.
data=$(cat <<'SQL'
SELECT usage_tracking.set_plan('team', 500, 60, 80, 100);
SELECT usage_tracking.set_model_price('custom-model', 1.5, 6, NULL, '2026-01-01');
UPDATE usage_tracking.plans SET monthly_requests = 60 WHERE plan = 'free';
SELECT usage_tracking.create_account('acme', 'team');
SELECT usage_tracking.create_account('beta');
SELECT usage_tracking.register_installation('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8', 'acme',
         'upgrade-secret-0123456789abcdef', '2026-11-01');
SELECT usage_tracking.register_installation('660e8400-e29b-41d4-a716-446655440000_b3b4c5d6e7f8', 'beta',
         'upgrade-secret-fedcba9876543210', '2026-11-01');
SELECT ut_t.post(ut_t.batch('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8', 'd' || d, day, 12),
                 'upgrade-secret-0123456789abcdef', day + interval '1 hour') - 'quota'
  FROM generate_series(1, 3) d, LATERAL (SELECT timestamptz '2026-11-01 08:00Z' + (d - 1) * interval '1 day' AS day) x;
SELECT ut_t.post(ut_t.batch('660e8400-e29b-41d4-a716-446655440000_b3b4c5d6e7f8', 'b1', '2026-11-02 09:00Z', 5),
                 'upgrade-secret-fedcba9876543210', '2026-11-02 10:00Z') - 'quota';
SELECT usage_tracking.run_maintenance('2026-11-03 12:00Z') IS NOT NULL;
SQL
)
for db in "$OLD" "$NEW"; do
  q -d "$db" -c "$helpers" >/dev/null || not_ok "helpers in $db"
  q -d "$db" -c "$data" >"$TMP/data_$db.out" 2>&1 || { not_ok "the data goes into $db"; cat "$TMP/data_$db.out"; exit 1; }
done
check "ingest under the $OLDEST SQL with the current library stored every event" 41 \
  "$(q -d "$OLD" -c "SELECT count(*) FROM usage_tracking.events")"

# Rows in the default partitions of 1.0: an event (and so its summary) of a
# day and month with no partition.  1.1 has no default partitions: the fresh
# install needs the day prepared; the update moves the rows into partitions.
far="INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                     prompt_tokens, completion_tokens, created_at, received_at)
     VALUES ('660e8400-e29b-41d4-a716-446655440000_b3b4c5d6e7f8', 'evt_far_1', repeat('f', 64), 'bulk',
             'gpt-4o', 10, 5, '2027-02-10 10:00Z', '2026-11-03 12:30Z')"
q -d "$OLD" -c "$far" >/dev/null || not_ok "a row into the default partitions of $OLDEST"
q -d "$NEW" -c "SELECT usage_tracking.ensure_partitions('2027-02-10 10:00Z', '2027-02-10 10:00Z')" -c "$far" >/dev/null \
  || not_ok "a row into a prepared day of $CURRENT"
if [ "$OLDEST" = 1.0 ]; then
  check "before the update the default partitions hold rows (events, daily)" "1|1" \
    "$(q -d "$OLD" -c "SELECT (SELECT count(*) FROM usage_tracking.events_default), (SELECT count(*) FROM usage_tracking.daily_default)")"
fi

# Rows of every table of the extension's schemas, hashed over the columns
# they have now, in a fixed order.
hash_tables() { # hash_tables DB COLUMNS-FILE
  q -d "$1" -c "SELECT c.oid::regclass::text || ' ' || string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 WHERE n.nspname IN ('usage_tracking', 'usage_api') AND c.relkind IN ('r', 'p')
                 GROUP BY c.oid ORDER BY 1" >"$2"
}
table_digests() { # table_digests DB COLUMNS-FILE
  local rel cols
  while read -r rel cols; do
    printf '%s %s\n' "$rel" "$(q -d "$1" -c "SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, E'\n' ORDER BY r::text), ''))
                                               FROM (SELECT $cols FROM $rel) r")"
  done <"$2"
}
hash_tables "$OLD" "$TMP/columns_before"
# The default partitions go in 1.1; their rows are in the parents' digests.
grep -v '^usage_tracking\.\(events\|daily\)_default ' "$TMP/columns_before" >"$TMP/columns_kept"
table_digests "$OLD" "$TMP/columns_kept" >"$TMP/rows_before"

# Update step by step along the path PostgreSQL finds.
path=$(q -d "$OLD" -c "SELECT path FROM pg_extension_update_paths('usage_tracking')
                        WHERE source = '$OLDEST' AND target = '$CURRENT'")
[ -n "$path" ] || [ "$OLDEST" = "$CURRENT" ] || not_ok "no update path from $OLDEST to $CURRENT"
steps=$(echo "$path" | tr -s ' -' '\n\n' | tail -n +2)
for v in $steps; do
  if q -d "$OLD" -c "ALTER EXTENSION usage_tracking UPDATE TO '$v'" >"$TMP/update.out" 2>&1; then
    ok "ALTER EXTENSION usage_tracking UPDATE TO '$v'"
  else
    not_ok "ALTER EXTENSION usage_tracking UPDATE TO '$v'"; cat "$TMP/update.out"
  fi
done
check "the old database now runs $CURRENT" "$CURRENT" "$(q -d "$OLD" -c "SELECT extversion FROM pg_extension WHERE extname = 'usage_tracking'")"

# The catalog: binary-upgrade dumps list each member with its ACL, initial
# privileges and comments.  Object ids, transaction ids and LSNs differ
# between databases and are masked; the tables registered for dumping are
# compared by name, with their conditions, in registration order.
schema_of() { # schema_of DB
  pg_dump --binary-upgrade --schema-only --no-owner -d "$1" \
    | sed -E -e '/^\\(un)?restrict /d' \
             -e "/binary_upgrade_/s/'\{?[0-9A-F\/,]+\}?'/'N'/g" -e '/binary_upgrade_/s/[0-9]+/N/g' \
             -e "s/^(SET relfrozenxid = )'[0-9]+', relminmxid = '[0-9]+'/\1'N', relminmxid = 'N'/" -e "s/^(WHERE oid = )'[0-9]+'/\1'N'/"
  q -d "$1" -c "SELECT 'config_dump ' || c.oid::regclass || ' ' || quote_literal(cond)
                  FROM pg_extension e, unnest(e.extconfig, e.extcondition) WITH ORDINALITY AS u(rel, cond, i)
                  JOIN pg_class c ON c.oid = u.rel
                 WHERE e.extname = 'usage_tracking' ORDER BY i"
}
schema_of "$OLD" >"$TMP/schema_old.sql"
schema_of "$NEW" >"$TMP/schema_new.sql"
if diff -u "$TMP/schema_new.sql" "$TMP/schema_old.sql" >"$TMP/schema.diff"; then
  ok "the updated catalog equals a fresh install of $CURRENT ($(grep -c '^ALTER EXTENSION usage_tracking ADD' "$TMP/schema_new.sql") members)"
else
  not_ok "the updated catalog differs from a fresh install of $CURRENT (- fresh, + updated):"
  head -n 80 "$TMP/schema.diff"
fi
members=$(grep -c '^ALTER EXTENSION usage_tracking ADD' "$TMP/schema_old.sql")
[ "$members" -gt 100 ] && ok "the dumps list the extension's members ($members)" || not_ok "the dumps list $members members"

# The data that was there before the update is all still there.
table_digests "$OLD" "$TMP/columns_kept" >"$TMP/rows_after"
if diff -u "$TMP/rows_before" "$TMP/rows_after" >"$TMP/rows.diff"; then
  ok "every row of the $(wc -l <"$TMP/rows_before") tables is unchanged by the update"
else
  not_ok "rows changed by the update:"; cat "$TMP/rows.diff"
fi
check "the rows of the default partitions are in partitions of their own, and no default partition is left" \
  "usage_tracking.events_p20270210|usage_tracking.daily_p202702|0" \
  "$(q -d "$OLD" -c "SELECT (SELECT tableoid::regclass FROM usage_tracking.events WHERE event_id = 'evt_far_1'),
                            (SELECT tableoid::regclass FROM usage_tracking.daily WHERE usage_date = '2027-02-10'),
                            (SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                              WHERE i.inhparent IN ('usage_tracking.events'::regclass, 'usage_tracking.daily'::regclass)
                                AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT')")"

# Both databases are now usable and answer alike: a resend is all
# duplicates, a new batch is stored and counted against the same quota.
use=$(cat <<'SQL'
SELECT ut_t.post(ut_t.batch('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8', 'd2', '2026-11-02 08:00Z', 12),
                 'upgrade-secret-0123456789abcdef', '2026-11-03 13:00Z') - 'event_ids';
SELECT ut_t.post(ut_t.batch('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8', 'd4', '2026-11-04 08:00Z', 7),
                 'upgrade-secret-0123456789abcdef', '2026-11-04 09:00Z') - 'event_ids';
SELECT usage_tracking.authorize('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8', 1, 0, '2026-11-04 09:30Z');
SELECT count(*) FROM (
  SELECT install_id, usage_date, sum(total_requests) FROM usage_tracking.daily GROUP BY 1, 2
  EXCEPT
  SELECT install_id, (created_at AT TIME ZONE 'UTC')::date, count(*) FROM usage_tracking.events GROUP BY 1, 2) d;
SQL
)
q -d "$OLD" -c "$use" >"$TMP/use_old.out" 2>&1 || not_ok "the updated database takes batches"
q -d "$NEW" -c "$use" >"$TMP/use_new.out" 2>&1 || not_ok "the fresh database takes batches"
resend=$(sed -n 1p "$TMP/use_old.out")
echo "$resend" | grep -q '"duplicates": 12' && echo "$resend" | grep -q '"used": 36' \
  && ok "a resend after the update is all duplicates and counts nothing" || not_ok "a resend after the update: $resend"
sed -n 2p "$TMP/use_old.out" | grep -q '"received": 7, "rejected": \[\], "duplicates": 0' \
  && ok "a new batch after the update is stored" \
  || not_ok "a new batch after the update: $(sed -n 2p "$TMP/use_old.out")"
check "daily agrees with the raw events after the update" 0 "$(sed -n 4p "$TMP/use_old.out")"
if diff -u "$TMP/use_new.out" "$TMP/use_old.out"; then
  ok "updated and fresh answer alike (resend, new batch, authorize)"
else
  not_ok "updated and fresh answer differently"
fi

echo "upgrade: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
