#!/usr/bin/env bash
# bench/instructions.sh — CPU instructions per 50-event batch, counted by
# valgrind (callgrind) in a single-user backend, so that nothing but the
# statements themselves is measured: the project's ingest(), the plain
# INSERT … SELECT FROM jsonb_to_recordset floor into a table with the same
# partitioning and indexes, and a resend of the same batches.  Deterministic
# (no clock, no other process), which makes it the tool for comparing two
# builds; throughput is make bench's.
#
#   bash bench/instructions.sh            # 300 batches (BATCHES=…)
#
# Under valgrind OpenSSL cannot use the CPU's SHA instructions, so the
# HMAC of each batch counts several times what it costs on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

BATCHES=${BATCHES:-300}
ut_require_packages valgrind || exit 1
ut_throwaway_cluster usage_tracking_instructions postgres
PSQL=(psql -qX -v ON_ERROR_STOP=1 -d perf)
psql -qX -d postgres -c "CREATE DATABASE perf" >/dev/null

# 200 installations; batches of one site's minutes (two users, bulk with
# every fifth event inline, one model), signed at a fixed time.
"${PSQL[@]}" -v batches="$BATCHES" >/dev/null <<'SQL'
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
SELECT usage_tracking.ensure_partitions('2025-10-01', '2025-11-10');
SELECT usage_tracking.create_account('acc_bench', 'credits');
SELECT usage_tracking.register_installation(
         lpad(to_hex(i), 8, '0') || '-0000-4000-8000-000000000000_' || lpad(to_hex(i), 12, '0'),
         'acc_bench', 'bench-secret-0123456789abcdef')
  FROM generate_series(1, 200) i;
CREATE TABLE batches (id int PRIMARY KEY, body text, sig text);
INSERT INTO batches
SELECT n, b, encode(hmac('1762171200.' || b, 'bench-secret-0123456789abcdef', 'sha256'), 'hex') || ':1762171200'
  FROM (SELECT n, jsonb_build_object(
                 'install_id', lpad(to_hex(1 + n % 200), 8, '0') || '-0000-4000-8000-000000000000_' || lpad(to_hex(1 + n % 200), 12, '0'),
                 'events', jsonb_agg(jsonb_build_object(
                   'event_id', 'evt_' || n || '_' || k,
                   'wp_user_id_hash', encode(sha256(('u' || (n % 200) || ':' || (k % 2))::bytea), 'hex'),
                   'source', CASE WHEN k % 5 = 0 THEN 'inline' ELSE 'bulk' END,
                   'model', 'gpt-4o-mini',
                   'prompt_tokens', 100 + k, 'completion_tokens', 20 + k, 'total_tokens', 120 + 2 * k,
                   'cached_prompt_tokens', 0, 'request_id', 'req_' || k,
                   'context', jsonb_build_object('attachment_id', k, 'width', 1024, 'height', 768),
                   'created_at', to_char((timestamptz '2025-11-03 11:50:00+00' + k * interval '5 s') AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD"T"HH24:MI:SS"Z"')) ORDER BY k))::text AS b
          FROM generate_series(1, :batches) n, generate_series(1, 50) k GROUP BY n) s;
CREATE TABLE floor_events (LIKE usage_tracking.events INCLUDING DEFAULTS) PARTITION BY RANGE (created_at);
ALTER TABLE floor_events ADD PRIMARY KEY (install_id, event_id, created_at);
CREATE INDEX ON floor_events (install_id, received_at, event_id, created_at);
CREATE TABLE floor_p20251103 PARTITION OF floor_events FOR VALUES FROM ('2025-11-03 00:00+00') TO ('2025-11-04 00:00+00');
CREATE TABLE floor_default PARTITION OF floor_events DEFAULT;
VACUUM ANALYZE;
SQL

# One statement per line per batch: single-user mode runs each line.
for i in $(seq "$BATCHES"); do
  echo "SELECT length(body) FROM batches WHERE id = $i;" >>"$WORK/base.sql"
  echo "SELECT length(usage_tracking.ingest(body, sig, '2025-11-03 12:00:00+00')::text) FROM batches WHERE id = $i;" >>"$WORK/project.sql"
  echo "INSERT INTO floor_events (install_id, event_id, wp_user_id_hash, source, model, prompt_tokens, completion_tokens, cached_prompt_tokens, request_id, context, created_at, received_at) SELECT b.j->>'install_id', e.event_id, e.wp_user_id_hash, e.source, e.model, e.prompt_tokens, e.completion_tokens, coalesce(e.cached_prompt_tokens, 0), e.request_id, e.context, e.created_at, '2025-11-03 12:00:00+00' FROM (SELECT body::jsonb AS j FROM batches WHERE id = $i OFFSET 0) b, jsonb_to_recordset(b.j->'events') AS e(event_id text, wp_user_id_hash text, source text, model text, prompt_tokens int, completion_tokens int, cached_prompt_tokens int, request_id text, context jsonb, created_at timestamptz);" >>"$WORK/floor.sql"
done
chmod 644 "$WORK"/*.sql
ut_cluster_stop

# count NAME SCRIPT — instructions of a single-user backend running SCRIPT
count() {
  ut_as_pg valgrind --tool=callgrind --callgrind-out-file="$WORK/$1.out" \
    "$(pg_config --bindir)/postgres" --single -D "$WORK/data" perf <"$WORK/$2.sql" >"$WORK/$1.log" 2>&1
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$WORK/$1.log"
}
ut_log "counting (valgrind, $BATCHES batches each)"
base=$(count base base)
project=$(count project project)
resend=$(count resend project)   # the same batches again: every event a duplicate
floor=$(count floor floor)
per() { echo $(( ($1 - base) / BATCHES )); }
p=$(per "$project"); r=$(per "$resend"); f=$(per "$floor")
printf 'Instructions per 50-event batch (valgrind callgrind, single-user backend, %d batches)\n' "$BATCHES"
printf '  project ingest()              %9d\n' "$p"
printf '  plain INSERT floor            %9d\n' "$f"
printf '  project resend (duplicates)   %9d\n' "$r"
awk -v p="$p" -v f="$f" -v r="$r" 'BEGIN { printf "  floor / project %.2f, first send / resend %.2f\n", f / p, p / r }'
