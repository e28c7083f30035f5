#!/usr/bin/env bash
# tools/demo.sh — `make demo`: build, install, start a throwaway cluster,
# register demo installations, ingest signed batches as sites would, and
# print the summaries, costs and quota verdicts.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

ut_require_packages "${UT_PACKAGES[@]}"
ut_log "building and installing"
ut_build_install

WORK=$(mktemp -d /tmp/usage_tracking_demo.XXXXXX)
cleanup() { ut_cluster_stop "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

ut_log "starting a throwaway cluster in $WORK"
ut_cluster_start "$WORK" usage
psql -qX -d postgres -c "CREATE DATABASE usage" >/dev/null
PSQL=(psql -qX -v ON_ERROR_STOP=1 -d usage)
"${PSQL[@]}" -c "CREATE EXTENSION usage_tracking; CREATE EXTENSION pg_cron" >/dev/null
"${PSQL[@]}" -c "SELECT usage_tracking.ensure_partitions(now() - interval '7 days', now() + interval '7 days')" >/dev/null

ut_log "registering 3 installations across 2 accounts"
declare -A SECRET ACCOUNT
INSTALLS=(
  "3f1c2a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b_0a1b2c3d4e5f"
  "7d2e4f6a-1b3c-4d5e-8f9a-0b1c2d3e4f5a_1a2b3c4d5e6f"
  "c4b3a291-7e6d-4c5b-a9f8-e7d6c5b4a392_2b3c4d5e6f70"
)
ACCOUNT[${INSTALLS[0]}]=acc_bakery
ACCOUNT[${INSTALLS[1]}]=acc_bakery
ACCOUNT[${INSTALLS[2]}]=acc_gallery
"${PSQL[@]}" -c "SELECT usage_tracking.create_account('acc_bakery', 'free'), usage_tracking.create_account('acc_gallery', 'pro')" >/dev/null
for i in "${INSTALLS[@]}"; do
  SECRET[$i]=$("${PSQL[@]}" -At -c "SELECT usage_tracking.register_installation('$i', '${ACCOUNT[$i]}')")
done

ut_log "sites post signed batches"
for n in 1 2 3; do
  for i in "${INSTALLS[@]}"; do
    body=$(bash tools/site_batch.sh "$i" "$n" 12)
    ts=$(date +%s)
    mac=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "${SECRET[$i]}" -r | cut -d' ' -f1)
    "${PSQL[@]}" -At -v body="$body" -v sig="$mac:$ts" <<SQL
SELECT format('%s batch %s: received %s, duplicates %s, quota %s',
              left(:'body'::jsonb->>'install_id', 8), $n, r->>'received', r->>'duplicates', r->'quota')
  FROM usage_tracking.ingest(:'body', :'sig') r
SQL
  done
done

echo
echo "Per-installation summary (today, UTC):"
"${PSQL[@]}" -c "SELECT account_id, left(install_id, 13) AS install, model, sum(total_requests) AS requests,
                        sum(total_tokens) AS tokens, sum(estimated_cost_usd) AS cost_usd
                   FROM usage_tracking.daily_usage GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
echo "Quota verdicts:"
"${PSQL[@]}" -c "SELECT a.account_id, a.plan, usage_tracking.ingest_quota(NULL, a.account_id, 0, 0, now()) AS quota
                   FROM usage_tracking.accounts a ORDER BY 1"
