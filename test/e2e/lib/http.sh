# test/e2e/lib/http.sh — shared by test/e2e/http_*.sh: a database of its
# own, the real gateway on a free loopback port, JWTs and signatures made
# with openssl (independently of the gateway's and the extension's code),
# curl requests and TAP-like checks.
# Needs PGHOST/PGPORT/PGUSER of a running cluster with the extension
# installed (tools/test.sh provides them), UT_ROOT and UT_WORK.
set -uo pipefail

ROOT=${UT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
WORK=${UT_WORK:-$(mktemp -d)}
. "$ROOT/tools/lib.sh"
. "$ROOT/tools/jwt.sh"

GATEWAY=$ROOT/gateway/usage-gateway
[ -x "$GATEWAY" ] || { echo "gateway not built: $GATEWAY (run make)" >&2; exit 1; }

E2E_PASS=0
E2E_FAIL=0
GW_PID=
GW_LOG=
JWT_SECRET=$(openssl rand -hex 24)

ok() {  # ok STATUS DESCRIPTION — STATUS 0 passes
  if [ "$1" -eq 0 ]; then
    E2E_PASS=$((E2E_PASS + 1)); echo "ok - $2"
  else
    E2E_FAIL=$((E2E_FAIL + 1)); echo "not ok - $2"
  fi
}
is() {  # is GOT WANT DESCRIPTION
  if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi
}
finish() {
  echo "$(basename "$0" .sh): $E2E_PASS passed, $E2E_FAIL failed"
  [ "$E2E_FAIL" -eq 0 ]
}

# e2e_db NAME — a fresh database with the extension, in $DB.
e2e_db() {
  DB=$1
  psql -qX -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
  psql -qX -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<SQL || exit 1
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
SELECT usage_tracking.ensure_partitions(now() - interval '2 days', now() + interval '2 days');
SQL
}
sql() { psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

# gw_start [ENV=VALUE...] — start the gateway on a free port; BASE is its URL.
gw_start() {
  PORT=$(ut_free_port)
  BASE=http://127.0.0.1:$PORT
  GW_LOG=$WORK/gateway_$(basename "$0" .sh)_$PORT.log
  env USAGE_DATABASE_URL="host=$PGHOST port=$PGPORT dbname=$DB user=${PGUSER:-postgres}" \
      USAGE_JWT_SECRET="$JWT_SECRET" USAGE_LISTEN="127.0.0.1:$PORT" "$@" \
      "$GATEWAY" >"$GW_LOG" 2>&1 &
  GW_PID=$!
  local _
  for _ in $(seq 1 100); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$GW_PID" 2>/dev/null || { cat "$GW_LOG" >&2; echo "gateway exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "gateway did not answer /healthz" >&2; cat "$GW_LOG" >&2; exit 1
}
gw_stop() {
  [ -n "$GW_PID" ] || return 0
  kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  GW_PID=
}
e2e_cleanup() {
  gw_stop
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}

token() { ut_jwt "$1" "${2:-}" "${3:-600}" "$JWT_SECRET"; }

# sign BODY SECRET [UNIX_TS] — the X-Install-Signature value.
sign() {
  local ts=${3:-$(date +%s)}
  printf '%s:%s' "$(printf '%s.%s' "$ts" "$1" | openssl dgst -sha256 -hmac "$2" -r | cut -d' ' -f1)" "$ts"
}

# req METHOD PATH [curl args...] — sets STATUS, BODY and HEADERS.
req() {
  local method=$1 path=$2 out
  shift 2
  out=$(mktemp "$WORK/resp.XXXXXX")
  STATUS=$(curl -sS -o "$out" -D "$out.h" -w '%{http_code}' -X "$method" "$@" "$BASE$path" 2>/dev/null) || STATUS=000
  BODY=$(cat "$out")
  HEADERS=$(tr -d '\r' <"$out.h" 2>/dev/null)
  rm -f "$out" "$out.h"
}
# post_batch BODY SIGNATURE TOKEN — POST /api/usage/event.
post_batch() {
  local f
  f=$(mktemp "$WORK/body.XXXXXX")
  printf '%s' "$1" >"$f"
  req POST /api/usage/event -H "Authorization: Bearer $3" -H "X-Install-Signature: $2" \
    -H 'Content-Type: application/json' --data-binary @"$f"
  rm -f "$f"
}
# jget JSON PATH — a value at a jsonb path ({a,b}), read by PostgreSQL.
jget() { psqlv j="$1" <<<"SELECT (:'j'::jsonb) #>> '$2'"; }
# psqlv NAME=VALUE... <<<SQL — SQL from stdin, with psql variables set.
psqlv() {
  local args=() v
  for v in "$@"; do args+=(-v "$v"); done
  psql -qAtX -d "$DB" "${args[@]}" -f -
}
header() { printf '%s\n' "$HEADERS" | sed -n "s/^$1: //Ip" | tail -1; }
# error_of — "STATUS error" of the last answer, or its body when not a JSON error.
error_of() {
  local e
  e=$(python3 -c 'import json, sys
try:
    j = json.loads(sys.argv[1])
    print(j["error"] if j.get("success") is False and "message" in j else "")
except Exception:
    print("")' "$BODY")
  printf '%s %s' "$STATUS" "${e:-$BODY}"
}

# batch INSTALL_ID PREFIX N [CREATED_AT] — N events, ids PREFIX_0 …
batch() {
  local install=$1 prefix=$2 n=$3 at=${4:-$(date -u -d '-2 minutes' +%Y-%m-%dT%H:%M:%SZ)} k sep=
  printf '{"install_id":"%s","events":[' "$install"
  for ((k = 0; k < n; k++)); do
    printf '%s{"event_id":"%s_%d","wp_user_id_hash":"%064x","source":"bulk","model":"gpt-4o-mini","prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"created_at":"%s"}' \
      "$sep" "$prefix" "$k" $((k % 3 + 1)) $((100 + k)) $((10 + k)) $((110 + 2 * k)) "$at"
    sep=,
  done
  printf ']}'
}
