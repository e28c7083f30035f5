#!/usr/bin/env bash
# tools/demo.sh — `make demo`: build, install, start a throwaway cluster and
# the gateway on loopback, register 3 demo installations across 2 accounts,
# have simulated WordPress sites post real signed batches over HTTP (curl +
# openssl, as the plugin's PHP would), print per-installation summaries,
# costs and quota verdicts read back over HTTP, then keep the gateway up
# until Ctrl-C.  With CI=true or stdin not a terminal it stops after printing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh
. tools/jwt.sh

ut_require_packages "${UT_PACKAGES[@]}"
ut_log "building and installing"
ut_build_install

WORK=$(mktemp -d /tmp/usage_tracking_demo.XXXXXX)
chmod 755 "$WORK"
GW_PID=
cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  ut_cluster_stop "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; exit 0' INT TERM

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

# The gateway, on 127.0.0.1:8080 when free.
PORT=8080
python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 8080))' 2>/dev/null || PORT=$(ut_free_port)
BASE=http://127.0.0.1:$PORT
JWT_SECRET=$(openssl rand -hex 32)
bash tools/build_dashboard.sh
ut_log "starting the gateway on $BASE"
USAGE_DATABASE_URL="host=$PGHOST port=$PGPORT dbname=usage user=postgres" \
USAGE_JWT_SECRET=$JWT_SECRET USAGE_LISTEN=127.0.0.1:$PORT \
USAGE_DASHBOARD_DIR="$ROOT/dashboard/dist" \
  gateway/usage-gateway >"$WORK/gateway.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/gateway.log" >&2; exit 1; }
  sleep 0.1
done
declare -A TOKEN
TOKEN[acc_bakery]=$(ut_jwt usage_tracking_ingest acc_bakery 3600 "$JWT_SECRET")
TOKEN[acc_gallery]=$(ut_jwt usage_tracking_ingest acc_gallery 3600 "$JWT_SECRET")
ADMIN=$(ut_jwt usage_tracking_admin "" 3600 "$JWT_SECRET")
READER=$(ut_jwt usage_tracking_reader acc_gallery 3600 "$JWT_SECRET")

# post INSTALL BODY [SECRET] — sign and POST as the site does; prints one line.
post() {
  local i=$1 body=$2 secret=${3:-${SECRET[$1]}} ts mac out code
  ts=$(date +%s)
  mac=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
  printf '%s' "$body" >"$WORK/body.json"
  out=$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer ${TOKEN[${ACCOUNT[$i]}]}" \
          -H "X-Install-Signature: $mac:$ts" -H 'Content-Type: application/json' \
          --data-binary @"$WORK/body.json" "$BASE/api/usage/event")
  code=${out##*$'\n'}
  python3 - "$code" "${out%$'\n'*}" "${i:0:8}" <<'PY'
import json, sys
code, body, site = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.loads(body)
if code == "200":
    q = r["quota"]
    print(f"  site {site}…  HTTP {code}  received {r['received']:>2}, duplicates {r['duplicates']:>2}, "
          f"rejected {len(r['rejected'])}  quota {q['level']} ({q['used']}/{q['limit'] if q['limit'] is not None else 'unlimited'})")
else:
    print(f"  site {site}…  HTTP {code}  {r['error']}: {r['message']}")
PY
}

ut_log "sites post signed batches over HTTP"
declare -A EVENTS_PER
EVENTS_PER[${INSTALLS[0]}]=8
EVENTS_PER[${INSTALLS[1]}]=9
EVENTS_PER[${INSTALLS[2]}]=12
for n in 1 2 3; do
  for i in "${INSTALLS[@]}"; do
    body=$(bash tools/site_batch.sh "$i" "$n" "${EVENTS_PER[$i]}")
    post "$i" "$body"
    [ "$n" -eq 3 ] && [ "$i" = "${INSTALLS[2]}" ] && LAST=$body
  done
done
echo "A site retries its last batch (the network dropped the answer):"
post "${INSTALLS[2]}" "$LAST"
echo "Someone posts with a wrong secret:"
post "${INSTALLS[2]}" "$LAST" "not-the-site-secret-0123456789"

echo
echo "Per-installation summary (GET /api/usage/installations, admin):"
curl -fsS -H "Authorization: Bearer $ADMIN" "$BASE/api/usage/installations" >"$WORK/installations.json"
for i in "${INSTALLS[@]}"; do
  curl -fsS -H "Authorization: Bearer $ADMIN" "$BASE/api/usage/quota?install_id=$i" >"$WORK/quota_$i.json"
  curl -fsS -H "Authorization: Bearer $ADMIN" "$BASE/api/usage/summary?install_id=$i&group_by=model" >"$WORK/summary_$i.json"
done
python3 - "$WORK" "${INSTALLS[@]}" <<'PY'
import json, sys
work, installs = sys.argv[1], sys.argv[2:]
rows = {r["install_id"]: r for r in json.load(open(f"{work}/installations.json"))}
print(f"  {'account':<12} {'installation':<14} {'requests':>8} {'tokens':>8} {'cost USD':>10}   models")
for i in installs:
    r = rows[i]
    models = ", ".join(f"{m['model']} {m['total_requests']}" for m in json.load(open(f"{work}/summary_{i}.json")))
    cost = r["estimated_cost_usd"]
    print(f"  {r['account_id']:<12} {i[:13]}… {r['total_requests']:>8} {r['total_tokens']:>8} "
          f"{(cost if cost is not None else 0):>10.6f}   {models}")
print()
print("Quota verdicts (GET /api/usage/quota):")
for i in installs:
    q = json.load(open(f"{work}/quota_{i}.json"))
    limit = q["limit"] if q["limit"] is not None else "unlimited"
    print(f"  {q['account_id']:<12} {i[:13]}…  plan {q['plan']:<6} {q['level']:<9} "
          f"{q['used']}/{limit} requests this month ({q['percent'] if q['percent'] is not None else '-'} %)")
PY

echo
echo "The gateway is listening on $BASE (access log: $WORK/gateway.log)."
echo "Try, for example (tokens valid for an hour):"
echo "  curl -s -H 'Authorization: Bearer $READER' '$BASE/api/usage/summary?group_by=day,model'"
echo "  curl -s -H 'Authorization: Bearer $ADMIN' '$BASE/api/usage/installations'"
echo "  curl -s $BASE/healthz"
echo "The provider dashboard (admin token in the address):"
echo "  $BASE/dashboard/#token=$ADMIN"
if [ "${CI:-}" = true ] || [ ! -t 0 ]; then
  exit 0
fi
echo "Press Ctrl-C to stop it and remove the cluster."
while kill -0 "$GW_PID" 2>/dev/null; do sleep 1; done
echo "the gateway stopped" >&2
exit 1
