#!/usr/bin/env bash
# bench/http.sh — ingest over HTTP through usage-gateway against direct SQL
# ingest, in the same run on the same throwaway cluster: 50-event signed
# batches on loopback, the same load client (bench/http_load.c) in both
# modes, the two modes taking turns.  Prints both rates and their ratio,
# and fails when HTTP is under BENCH_HTTP_MIN_RATIO (0.8) of SQL.
#
# Knobs (environment):
#   BENCH_CLIENTS=4        concurrent clients in both modes (gateway pool: the same)
#   BENCH_BATCHES=3000     batches per measurement
#   BENCH_ROUNDS=3         measurements per mode, taking turns
#   BENCH_EVENTS=50        events per batch
#   BENCH_INSTALLS=200     installations the batches are spread over
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh
. tools/jwt.sh

CLIENTS=${BENCH_CLIENTS:-4}
BATCHES=${BENCH_BATCHES:-3000}
ROUNDS=${BENCH_ROUNDS:-3}
EVENTS=${BENCH_EVENTS:-50}
INSTALLS=${BENCH_INSTALLS:-200}
MIN_RATIO=${BENCH_HTTP_MIN_RATIO:-0.8}
SECRET=bench-site-secret-0123456789abcdef

GW_PID=
ut_extra_cleanup() {
  if [ -n "$GW_PID" ]; then kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null; fi
  return 0
}
ut_throwaway_cluster usage_tracking_bench_http bench

cc -O2 -Wall -Wextra -I"$(pg_config --includedir)" bench/http_load.c -o "$WORK/http_load" \
  -lcurl -L"$(pg_config --libdir)" -lpq -lcrypto -lpthread

psql -qX -d postgres -c "CREATE DATABASE bench"
psql -qX -v ON_ERROR_STOP=1 -d bench >/dev/null <<SQL
CREATE EXTENSION usage_tracking;
SELECT usage_tracking.ensure_partitions(now() - interval '1 day', now() + interval '1 day');
-- No rate limit or quota gets in the way of the measurement.
INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m,
                                  abuse_requests_1h, abuse_tokens_1h)
VALUES ('bench_http', NULL, 1000000000, 1000000000000, 1000000000, 1000000000000);
SELECT usage_tracking.create_account('acc_bench_' || a, 'bench_http') FROM generate_series(0, 9) a;
SELECT usage_tracking.register_installation(
         format('b3c40000-0000-4000-8000-%s_%s', lpad(i::text, 12, '0'), lpad(i::text, 12, '0')),
         'acc_bench_' || (i % 10), '$SECRET')
  FROM generate_series(0, $INSTALLS - 1) i;
SQL

PORT=$(ut_free_port)
JWT_SECRET=$(openssl rand -hex 24)
# The batches span ten accounts: a provider (admin) token may post for any.
TOKEN=$(ut_jwt usage_tracking_admin "" 3600 "$JWT_SECRET")
USAGE_DATABASE_URL="host=$PGHOST port=$PGPORT dbname=bench user=postgres" USAGE_JWT_SECRET=$JWT_SECRET \
USAGE_LISTEN=127.0.0.1:$PORT USAGE_POOL=$CLIENTS \
  gateway/usage-gateway >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

URL=http://127.0.0.1:$PORT/api/usage/event
CONNINFO="host=$PGHOST port=$PGPORT dbname=bench user=postgres"
run() {  # run http|sql PREFIX BATCHES — prints batches per second
  "$WORK/http_load" "$1" "$([ "$1" = http ] && echo "$URL" || echo "$CONNINFO")" \
    "$CLIENTS" "$3" "$EVENTS" "$2" "$INSTALLS" "$SECRET" "$TOKEN" | awk '{print $5}'
}

ut_log "warming up"
run http w_h 300 >/dev/null
run sql w_s 300 >/dev/null
http_rates=() sql_rates=()
for r in $(seq 1 "$ROUNDS"); do
  sql_rates+=("$(run sql "s$r" "$BATCHES")")
  http_rates+=("$(run http "h$r" "$BATCHES")")
  ut_log "round $r: sql ${sql_rates[-1]} batches/s, http ${http_rates[-1]} batches/s"
done
stored=$(psql -qAtX -d bench -c "SELECT count(*) FROM usage_tracking.events")
expected=$(( (600 + 2 * ROUNDS * BATCHES) * EVENTS ))
[ "$stored" -eq "$expected" ] || { echo "stored $stored events, expected $expected" >&2; exit 1; }

mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.1f", s / NR}'; }
sql_mean=$(mean "${sql_rates[@]}")
http_mean=$(mean "${http_rates[@]}")
ratio=$(awk -v h="$http_mean" -v s="$sql_mean" 'BEGIN {printf "%.2f", h / s}')
echo
echo "Ingest over HTTP vs direct SQL ($(nproc) CPUs, $CLIENTS clients, $EVENTS-event batches, $ROUNDS x $BATCHES batches each, loopback)"
printf '  %-36s %10s batches/s  (%s events/s)\n' "direct SQL: usage_tracking.ingest()" "$sql_mean" \
  "$(awk -v r="$sql_mean" -v e="$EVENTS" 'BEGIN {printf "%.0f", r * e}')"
printf '  %-36s %10s batches/s  (%s events/s)\n' "HTTP: POST /api/usage/event" "$http_mean" \
  "$(awk -v r="$http_mean" -v e="$EVENTS" 'BEGIN {printf "%.0f", r * e}')"
echo "  HTTP / SQL ratio: $ratio (must be >= $MIN_RATIO)"
# judged unrounded: a ratio shown as 0.80 may be under 0.8
awk -v h="$http_mean" -v s="$sql_mean" -v m="$MIN_RATIO" 'BEGIN {exit !(s > 0 && h / s >= m)}'
