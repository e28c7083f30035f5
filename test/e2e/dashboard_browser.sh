#!/usr/bin/env bash
# test/e2e/dashboard_browser.sh — the provider dashboard in a real browser:
# seed a database with a known anomaly, start the gateway on loopback, open
# /dashboard in headless Chromium (Debian's, driven by playwright-core) with an
# admin token, check the overview figures, the charts, the anomaly and the
# installation page, and save screenshots under $UT_WORK.
# Needs PGHOST/PGPORT/PGUSER of a running cluster with the extension installed
# (tools/test.sh provides them).
set -euo pipefail

ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${UT_WORK:-$(mktemp -d)}
. "$ROOT/tools/lib.sh"

DB=dashboard_e2e
DAY=2025-11-20
SPIKE_ID=33333333-3333-4333-8333-333333333333_0000000000b3
GATEWAY=$ROOT/gateway/usage-gateway

command -v chromium >/dev/null || ut_require_packages chromium
[ -x "$GATEWAY" ] || { echo "gateway not built: $GATEWAY (run make)" >&2; exit 1; }
bash "$ROOT/tools/build_dashboard.sh"

psql -qX -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
psql -qX -v ON_ERROR_STOP=1 -d $DB >/dev/null <<EOF
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
\i $ROOT/test/e2e/dashboard_seed.sql
EOF

# What the page must show, straight from SQL.
EXPECTED=$(psql -qAtX -v ON_ERROR_STOP=1 -d $DB <<EOF
SELECT jsonb_build_object(
  'overview', usage_tracking.provider_overview('$DAY'),
  'daily', (SELECT jsonb_agg(to_jsonb(t) ORDER BY t.date)
              FROM (SELECT usage_date AS date, total_tokens AS tokens, estimated_cost_usd AS cost_usd
                      FROM usage_tracking.daily_totals('$DAY'::date - 29, '$DAY')) t),
  'top_count', (SELECT count(*) FROM usage_tracking.top_installations('$DAY'::date - 29, '$DAY', 'cost', 10)),
  'top_first', (SELECT install_id FROM usage_tracking.top_installations('$DAY'::date - 29, '$DAY', 'cost', 1)),
  'models', (SELECT jsonb_agg(model ORDER BY model)
               FROM usage_tracking.model_breakdown(date_trunc('month', '$DAY'::date)::date, '$DAY')),
  'install', usage_api.analytics_installation('$SPIKE_ID', '$DAY'),
  'install_daily', (SELECT jsonb_agg(jsonb_build_object('tokens', total_tokens) ORDER BY usage_date)
                      FROM usage_tracking.daily_totals('$DAY'::date - 29, '$DAY', '$SPIKE_ID')))
EOF
)
# The seed has the anomaly the page must list (and the SQL agrees).
spikes=$(psql -qAtX -d $DB -c "SELECT string_agg(id, ',') FROM usage_tracking.anomalies('$DAY') WHERE kind = 'installation'")
[ "$spikes" = "$SPIKE_ID" ] || { echo "seeded anomaly not found by SQL: '$spikes'" >&2; exit 1; }

PORT=$(ut_free_port)
SECRET=$(openssl rand -hex 24)
LOG=$WORK/dashboard_gateway.log
USAGE_DATABASE_URL="host=$PGHOST port=$PGPORT dbname=$DB user=${PGUSER:-postgres}" \
USAGE_JWT_SECRET=$SECRET \
USAGE_LISTEN=127.0.0.1:$PORT \
USAGE_DASHBOARD_DIR=$ROOT/dashboard/dist \
  "$GATEWAY" >"$LOG" 2>&1 &
GW_PID=$!
cleanup() {
  kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null || true
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { cat "$LOG" >&2; echo "gateway exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/dashboard/app.js" \
  || { cat "$LOG" >&2; echo "gateway does not serve the dashboard" >&2; exit 1; }

rc=0
BASE_URL=http://127.0.0.1:$PORT JWT_SECRET=$SECRET DAY=$DAY SPIKE_ID=$SPIKE_ID \
EXPECTED=$EXPECTED SHOTS=$WORK \
  node "$ROOT/test/e2e/dashboard_browser.mjs" || rc=$?
if [ $rc -ne 0 ]; then
  echo "---- gateway log"; tail -n 40 "$LOG"
fi
for f in dashboard_overview.png dashboard_installation.png; do
  [ -s "$WORK/$f" ] && echo "screenshot: $WORK/$f"
done
exit $rc
