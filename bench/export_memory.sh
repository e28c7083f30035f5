#!/usr/bin/env bash
# bench/export_memory.sh — backend memory while export_csv streams N rows.
#
# Starts a throwaway cluster, stores N raw events and N daily rows, then
# runs COPY (SELECT * FROM usage_tracking.export_csv(kind)) TO STDOUT for
# N/10 and N rows of each kind, sampling the exporting backend's
# /proc/<pid>/status every 20 ms.  RssAnon is the backend's private memory
# (shared buffers are RssShmem and are left out).  For contrast it also
# runs a query that builds the whole CSV in one value (string_agg), which
# is what "not streaming" costs.
#
#   bash bench/export_memory.sh [N]        # N defaults to 1000000
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

N=${1:-1000000}
ut_require_packages "${UT_PACKAGES[@]}"
ut_build_install

WORK=$(mktemp -d /tmp/usage_tracking_export_memory.XXXXXX)
cleanup() { ut_cluster_stop "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ut_cluster_start "$WORK" postgres
psql -qX -d postgres -c "CREATE DATABASE bench" >/dev/null
PSQL=(psql -qX -v ON_ERROR_STOP=1 -d bench)
"${PSQL[@]}" -c "CREATE EXTENSION usage_tracking" >/dev/null

ut_log "storing $N events and $N daily rows"
"${PSQL[@]}" <<SQL >/dev/null
SELECT usage_tracking.create_account('acc_bench', 'credits');
SELECT usage_tracking.register_installation(
         format('%s-0000-4000-8000-000000000000_%s', lpad(to_hex(i), 8, '0'), lpad(to_hex(i), 12, '0')),
         'acc_bench', 'bench-secret-0123456789')
  FROM generate_series(1, 100) i;
-- the partitions of every day and month written below (no default partition)
SELECT usage_tracking.ensure_partitions('2024-01-01', date '2024-01-01' + 700);
SELECT usage_tracking.ensure_partitions('2025-11-01', timestamptz '2025-11-01 00:00:00+00' + $N * interval '2 seconds');
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, cached_prompt_tokens,
                                   request_id, context, created_at, received_at)
SELECT format('%s-0000-4000-8000-000000000000_%s', lpad(to_hex(1 + i % 100), 8, '0'), lpad(to_hex(1 + i % 100), 12, '0')),
       'evt_' || i, encode(sha256(('u' || i % 50)::bytea), 'hex'),
       (ARRAY['manual', 'bulk', 'queue', 'inline'])[1 + i % 4], 'gpt-4o-mini',
       100 + i % 900, 10 + i % 90, i % 50, 'req_' || i,
       jsonb_build_object('attachment_id', i, 'width', 1024, 'height', 768),
       timestamptz '2025-11-01 00:00:00+00' + i * interval '2 seconds', timestamptz '2025-11-03 12:00:00+00'
  FROM generate_series(1, $N) i;
TRUNCATE usage_tracking.daily;
INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash, source, model, total_requests,
                                  prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd)
SELECT format('%s-0000-4000-8000-000000000000_%s', lpad(to_hex(1 + i % 100), 8, '0'), lpad(to_hex(1 + i % 100), 12, '0')),
       date '2024-01-01' + (i / 100) % 700, encode(sha256(('u' || i)::bytea), 'hex'), 'bulk', 'gpt-4o-mini',
       1 + i % 7, 100 + i % 900, 10 + i % 90, 0, 0.000123
  FROM generate_series(1, $N) i;
VACUUM ANALYZE;
SQL

# measure LABEL SQL — run SQL (a COPY to stdout) in its own backend and
# print the backend's RssAnon at the first sample and at its peak, in kB.
measure() {
  local label=$1 sql=$2 app="export_probe_$RANDOM" pid="" start=0 peak=0 bytes
  PGAPPNAME=$app psql -qX -d bench -c "$sql" | wc -c >"$WORK/bytes" &
  local job=$!
  for _ in $(seq 1 500); do
    pid=$(psql -qXAt -d bench -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$app'")
    [ -n "$pid" ] && break
    sleep 0.01
  done
  while [ -n "$pid" ] && [ -r "/proc/$pid/status" ] && kill -0 "$job" 2>/dev/null; do
    local rss
    rss=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$rss" ]; then
      [ "$start" -eq 0 ] && start=$rss
      [ "$rss" -gt "$peak" ] && peak=$rss
    fi
    sleep 0.02
  done
  wait "$job"
  bytes=$(cat "$WORK/bytes")
  printf '%-44s %12s bytes out   RssAnon first %7s kB   peak %7s kB\n' "$label" "$bytes" "$start" "$peak"
}

ut_log "measuring (work_mem $(psql -qXAt -d bench -c 'SHOW work_mem'))"
for kind in events daily; do
  measure "export_csv('$kind'), $((N / 10)) rows" \
    "COPY (SELECT * FROM usage_tracking.export_csv('$kind') LIMIT $((N / 10 + 1))) TO STDOUT"
  measure "export_csv('$kind'), $N rows" \
    "COPY (SELECT * FROM usage_tracking.export_csv('$kind')) TO STDOUT"
done
measure "contrast: string_agg of the $N event lines" \
  "COPY (SELECT string_agg(line, E'\n') FROM usage_tracking.export_csv('events') line) TO STDOUT"
