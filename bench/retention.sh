#!/usr/bin/env bash
# bench/retention.sh — what expiring raw events costs, on a throwaway
# cluster, in one run:
#   1. expire one day of RET_EVENTS (default 1 000 000) events by
#      run_maintenance() (drops the day's partition) against a DELETE of an
#      identical day: seconds, dead tuples left (pgstattuple), size on disk;
#   2. daily against monthly partitions of the same raw table (no trigger,
#      same primary key): insert speed of 50-event batches with ~98 against
#      ~5 partitions, and the cost of a lookup that cannot prune
#      (install_id, event_id — what void_event does).
# Fails when the drop takes 1 s or more or leaves a dead tuple.
#
# Knobs (environment):
#   RET_EVENTS=1000000   events per expired day
#   RET_SECONDS=15       length of each insert measurement
#   RET_ROUNDS=2         insert measurements of each kind, alternated, averaged
#   RET_CLIENTS=2        pgbench clients
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

EVENTS=${RET_EVENTS:-1000000}
SECS=${RET_SECONDS:-15}
CLIENTS=${RET_CLIENTS:-2}
ROUNDS=${RET_ROUNDS:-2}

ut_throwaway_cluster usage_tracking_retbench postgres
psql -qX -d postgres -c "CREATE DATABASE retbench" >/dev/null
PSQL=(psql -qXAt -v ON_ERROR_STOP=1 -d retbench)
"${PSQL[@]}" -c "CREATE EXTENSION pgcrypto; CREATE EXTENSION usage_tracking; CREATE EXTENSION pgstattuple"

# ---------------------------------------------------------------------------
# 1. Expiry: drop a partition against DELETE.
# now0 keeps raw events from 2025-08-05; one day later 2025-08-05 expires.
ut_log "loading 2 x $EVENTS events (two identical days)"
"${PSQL[@]}" <<SQL
SELECT FROM usage_tracking.create_account('acc_bench', 'credits');
SELECT FROM usage_tracking.register_installation('be0c0000-0000-4000-8000-000000000001_000000000001', 'acc_bench');
SELECT FROM usage_tracking.run_maintenance('2025-11-03 12:00:00+00');
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, cached_prompt_tokens, created_at)
SELECT 'be0c0000-0000-4000-8000-000000000001_000000000001', 'evt_' || d || '_' || i,
       encode(sha256(('u' || i % 500)::bytea), 'hex'), 'bulk', 'gpt-4o-mini',
       100 + i % 100, 20 + i % 10, 0,
       timestamptz '2025-08-05 00:00:00+00' + (d - 5) * interval '1 day' + (i % 86400) * interval '1 second'
  FROM generate_series(5, 6) d, generate_series(1, $EVENTS) i;
VACUUM ANALYZE usage_tracking.events;
SQL

size() { "${PSQL[@]}" -c "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('usage_tracking.events')"; }
dead() { "${PSQL[@]}" -c "SELECT coalesce(sum((pgstattuple(relid)).dead_tuple_count), 0)
                            FROM pg_partition_tree('usage_tracking.events') WHERE isleaf"; }
"${PSQL[@]}" <<'SQL'
CREATE FUNCTION bench_seconds(sql text) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE sql;
    RETURN round(extract(epoch FROM clock_timestamp() - t0)::numeric, 3);
END $$;
SQL
size_before=$(size)
ut_log "expiring 2025-08-05 with run_maintenance (drops its partition)"
drop_s=$("${PSQL[@]}" -c "SELECT bench_seconds('SELECT usage_tracking.run_maintenance(''2025-11-04 12:00:00+00'')')")
size_after_drop=$(size)
dead_after_drop=$(dead)
ut_log "expiring 2025-08-06 with DELETE"
delete_s=$("${PSQL[@]}" -c "SELECT bench_seconds('DELETE FROM usage_tracking.events
   WHERE created_at >= ''2025-08-06 00:00:00+00'' AND created_at < ''2025-08-07 00:00:00+00''')")
size_after_delete=$(size)
dead_after_delete=$(dead)

# ---------------------------------------------------------------------------
# 2. Daily against monthly partitions: the same table twice, the wall clock
#    inside the newest partition, 50-event batches with ON CONFLICT DO NOTHING.
ut_log "daily against monthly partitions: inserts for ${SECS}s each"
"${PSQL[@]}" <<'SQL'
CREATE SEQUENCE ev_seq;
DO $$
DECLARE
    kind text;
    d    date;
BEGIN
    FOREACH kind IN ARRAY ARRAY['daily', 'monthly'] LOOP
        EXECUTE format('CREATE TABLE ev_%s (LIKE usage_tracking.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS,'
                       ' PRIMARY KEY (install_id, event_id, created_at)) PARTITION BY RANGE (created_at)', kind);
        EXECUTE format('CREATE TABLE ev_%s_default PARTITION OF ev_%s DEFAULT', kind, kind);
    END LOOP;
    FOR d IN SELECT g::date FROM generate_series(current_date - 90, current_date + 7, interval '1 day') g LOOP
        EXECUTE format('CREATE TABLE ev_daily_%s PARTITION OF ev_daily FOR VALUES FROM (%L) TO (%L)',
                       to_char(d, 'YYYYMMDD'), d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    FOR d IN SELECT g::date FROM generate_series(date_trunc('month', current_date - 90),
                                                 date_trunc('month', current_date + 7), interval '1 month') g LOOP
        EXECUTE format('CREATE TABLE ev_monthly_%s PARTITION OF ev_monthly FOR VALUES FROM (%L) TO (%L)',
                       to_char(d, 'YYYYMM'), d::timestamp AT TIME ZONE 'UTC',
                       (d + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END $$;
SQL
partitions() { "${PSQL[@]}" -c "SELECT count(*) FROM pg_partition_tree('ev_$1') WHERE isleaf"; }
daily_parts=$(partitions daily)
monthly_parts=$(partitions monthly)
declare -A tps lookup
for kind in daily monthly; do
  tps[$kind]=0
  cat >"$WORK/insert_$kind.sql" <<SQL
INSERT INTO ev_$kind (install_id, event_id, wp_user_id_hash, source, model, prompt_tokens,
                      completion_tokens, created_at)
SELECT 'be0c0000-0000-4000-8000-00000000000' || (:client_id % 8) || '_000000000001', 'e' || nextval('ev_seq'),
       'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bulk', 'gpt-4o-mini', 100, 20,
       now() - random() * interval '10 minutes'
  FROM generate_series(1, 50)
    ON CONFLICT DO NOTHING;
SQL
done
# Alternate the two, ROUNDS times each, and average: the machine's own drift
# (checkpoints, autovacuum of the load above) hits both alike.
for round in $(seq 1 "$ROUNDS"); do
  for kind in daily monthly; do
    pgbench -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$WORK/insert_$kind.sql" retbench \
      >"$WORK/pgbench_$kind.out" 2>&1
    t=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/pgbench_$kind.out" | head -1)
    tps[$kind]=$(echo "${tps[$kind]} + $t / $ROUNDS" | bc -l)
  done
done
for kind in daily monthly; do
  tps[$kind]=$(printf '%.0f' "${tps[$kind]}")
  # 2000 lookups by (install_id, event_id) alone, which cannot prune (what
  # void_event does); the second of two runs, warm.
  q="SELECT round(bench_seconds('
      SELECT count(*) FROM generate_series(1, 2000) g,
             LATERAL (SELECT 1 FROM ev_$kind e
                       WHERE e.install_id = ''be0c0000-0000-4000-8000-000000000001_000000000001''
                         AND e.event_id = ''e'' || (g * 37)) x') * 1000 / 2000, 3)"
  "${PSQL[@]}" -c "$q" >/dev/null
  lookup[$kind]=$("${PSQL[@]}" -c "$q")
done

# ---------------------------------------------------------------------------
mb() { echo $(( $1 / 1048576 )); }
per_s() { printf '%.0f' "$(echo "$1 * 50" | bc)"; }
cat <<EOF

Expiring one day of $EVENTS raw events (bench/retention.sh, $(nproc) cores)

| Method                      | Seconds | Dead tuples left | Raw events on disk after |
|-----------------------------|--------:|-----------------:|-------------------------:|
| (two days loaded)           |         |                  | $(mb "$size_before") MB |
| run_maintenance (drop)      | $drop_s | $dead_after_drop | $(mb "$size_after_drop") MB |
| DELETE of the same day      | $delete_s | $dead_after_delete | $(mb "$size_after_delete") MB |

Daily against monthly partitions of the raw table (same columns and key, no
trigger; 50-event batches into the newest day, $CLIENTS clients, $ROUNDS x ${SECS}s each)

| Partitions      | Count | Batches/s | Events/s | Lookup without created_at (ms) | Kept past retention |
|-----------------|------:|----------:|---------:|-------------------------------:|---------------------|
| daily (chosen)  | $daily_parts | ${tps[daily]} | $(per_s "${tps[daily]}") | ${lookup[daily]} | under 1 day |
| monthly         | $monthly_parts | ${tps[monthly]} | $(per_s "${tps[monthly]}") | ${lookup[monthly]} | up to 31 days, or a DELETE |
EOF

if [ "$(echo "$drop_s < 1" | bc)" -ne 1 ] || [ "$dead_after_drop" -ne 0 ]; then
  echo "FAIL: expiry by dropping took ${drop_s}s or left $dead_after_drop dead tuples" >&2
  exit 1
fi
