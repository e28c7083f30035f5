#!/usr/bin/env bash
# test/e2e/http_auth.sh — attacks on the gateway's two credentials over real
# HTTP: the JWT (alg none, other algorithms, a wrong key, expired, no exp,
# not yet valid, roles not allowed, tampered claims, another account) and
# the installation signature (other secrets, replays, shifted timestamps,
# changed bodies).  Tokens are made with openssl, not the gateway's code.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_auth
trap e2e_cleanup EXIT
IA=1b2c3d4e-5f6a-4b7c-9d8e-1f2a3b4c5d6e_a17a17a17a01
IB=1b2c3d4e-5f6a-4b7c-9d8e-1f2a3b4c5d6e_a17a17a17b01
SA=auth-secret-a-0123456789abcdef
SB=auth-secret-b-0123456789abcdef
sql "SELECT usage_tracking.create_account('acc_auth_a', 'pro'), usage_tracking.create_account('acc_auth_b', 'pro');
     SELECT usage_tracking.register_installation('$IA', 'acc_auth_a', '$SA'),
            usage_tracking.register_installation('$IB', 'acc_auth_b', '$SB');" >/dev/null
gw_start

now=$(date +%s)
H='{"alg":"HS256","typ":"JWT"}'
claims() {  # claims ROLE EXP [EXTRA-JSON-MEMBERS]
  printf '{"role":"%s","account_id":"acc_auth_a","exp":%s%s}' "$1" "$2" "${3:+,$3}"
}
n=0
# try TOKEN — post a fresh signed batch of installation A with TOKEN; STATUS and error set.
try() {
  n=$((n + 1))
  local b
  b=$(batch "$IA" "evt_auth$n" 1)
  post_batch "$b" "$(sign "$b" "$SA")" "$1"
}
stored() { sql "SELECT count(*) FROM usage_tracking.events"; }

try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 300)))" "$JWT_SECRET")"
is "$STATUS" 200 "a valid HS256 token is accepted"
before=$(stored)

# --- the algorithm is pinned ---------------------------------------------------------
P=$(printf '%s' "$(claims usage_tracking_ingest $((now + 300)))" | ut_b64url)
for alg in none None NONE nOnE; do
  try "$(printf '%s' "{\"alg\":\"$alg\",\"typ\":\"JWT\"}" | ut_b64url).$P."
  is "$(error_of)" "401 invalid_token" "alg $alg with no signature: 401"
done
try "$(printf '%s' '{"alg":"none"}' | ut_b64url).$P.$(printf 'x' | ut_b64url)"
is "$(error_of)" "401 invalid_token" "alg none with a signature: 401"
hs512() {
  local h p s
  h=$(printf '%s' '{"alg":"HS512","typ":"JWT"}' | ut_b64url)
  p=$(printf '%s' "$1" | ut_b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha512 -hmac "$JWT_SECRET" -binary | ut_b64url)
  printf '%s.%s.%s' "$h" "$p" "$s"
}
try "$(hs512 "$(claims usage_tracking_ingest $((now + 300)))")"
is "$(error_of)" "401 invalid_token" "HS512 with the right key: 401 (only HS256)"
try "$(ut_jwt_sign '{"alg":"RS256","typ":"JWT"}' "$(claims usage_tracking_ingest $((now + 300)))" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "RS256 in the header over an HMAC: 401"
try "$(ut_jwt_sign '{"typ":"JWT"}' "$(claims usage_tracking_ingest $((now + 300)))" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "no alg: 401"
try "$(ut_jwt_sign '{"alg":"HS256","alg":"none"}' "$(claims usage_tracking_ingest $((now + 300)))" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "alg given twice: 401"
try "$(ut_jwt_sign '{"alg":"HS256","crit":["exp"]}' "$(claims usage_tracking_ingest $((now + 300)))" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "a crit header it does not understand: 401"

# --- the key -------------------------------------------------------------------------
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 300)))" "another-secret-0123456789abcdefghij")"
is "$(error_of)" "401 invalid_token" "signed with a wrong key: 401"
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 300)))" "")"
is "$(error_of)" "401 invalid_token" "signed with an empty key: 401"
good=$(ut_jwt_sign "$H" "$(claims usage_tracking_reader $((now + 300)))" "$JWT_SECRET")
forged="${good%%.*}.$(printf '%s' "$(claims usage_tracking_admin $((now + 300)))" | ut_b64url).${good##*.}"
req GET /api/usage/installations -H "Authorization: Bearer $forged"
is "$(error_of)" "401 invalid_token" "claims changed after signing (reader made admin): 401"
try "${good%.*}.${good##*.}x"
is "$(error_of)" "401 invalid_token" "a signature with a byte added: 401"
try "$good.extra"
is "$(error_of)" "401 invalid_token" "four segments: 401"
try "$(printf 'A%.0s' $(seq 1 9000))"
is "$(error_of)" "401 invalid_token" "a 9 kB token: 401"
req POST /api/usage/event -H "Authorization: Basic dXNlcjpwYXNz" --data-binary '{}'
is "$(error_of)" "401 invalid_token" "Basic credentials: 401"

# --- time ----------------------------------------------------------------------------
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now - 120)))" "$JWT_SECRET")"
is "$(error_of)" "401 token_expired" "expired two minutes ago: 401 token_expired"
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $(($(date +%s) - 5)))" "$JWT_SECRET")"
is "$STATUS" 200 "expired 5 s ago, within the 30 s leeway: accepted"
try "$(ut_jwt_sign "$H" '{"role":"usage_tracking_ingest","account_id":"acc_auth_a"}' "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "no exp: 401"
try "$(ut_jwt_sign "$H" "{\"role\":\"usage_tracking_ingest\",\"exp\":\"$((now + 300))\"}" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "exp as a string: 401"
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 600)) "\"nbf\":$((now + 120))")" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "nbf two minutes ahead: 401"
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 600)) "\"nbf\":$((now + 10))")" "$JWT_SECRET")"
is "$STATUS" 200 "nbf 10 s ahead, within the leeway: accepted"
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 600)) "\"iat\":$((now + 120))")" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "issued two minutes in the future: 401"
# exp, nbf and iat are whole seconds: 1e999 would read as infinity and never expire.
for bad in 1e999 "$((now + 300)).5" "$((now + 300))e0" 1E10 -1 99999999999999 253402300800; do
  try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest "$bad")" "$JWT_SECRET")"
  is "$(error_of)" "401 invalid_token" "exp $bad: 401"
done
for claim in nbf iat; do
  for bad in -1e999 1.5 1e3 '"0"'; do
    try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest $((now + 300)) "\"$claim\":$bad")" "$JWT_SECRET")"
    is "$(error_of)" "401 invalid_token" "$claim $bad: 401"
  done
done
try "$(ut_jwt_sign "$H" "$(claims usage_tracking_ingest 253402300799 "\"nbf\":0,\"iat\":$now")" "$JWT_SECRET")"
is "$STATUS" 200 "exp at 9999-12-31T23:59:59Z, nbf 0, iat now: accepted"

# --- roles ---------------------------------------------------------------------------
for role in postgres pg_read_all_data usage_tracking_ingest_x "usage_tracking_admin " USAGE_TRACKING_ADMIN ""; do
  try "$(ut_jwt_sign "$H" "$(claims "$role" $((now + 300)))" "$JWT_SECRET")"
  is "$(error_of)" "403 role_not_allowed" "role '$role': 403 role_not_allowed"
done
try "$(ut_jwt_sign "$H" "{\"account_id\":\"acc_auth_a\",\"exp\":$((now + 300))}" "$JWT_SECRET")"
is "$(error_of)" "403 role_not_allowed" "no role claim: 403"
try "$(ut_jwt_sign "$H" "{\"role\":\"usage_tracking_reader\",\"role\":\"usage_tracking_ingest\",\"account_id\":\"acc_auth_a\",\"exp\":$((now + 300))}" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "role given twice: 401"
try "$(token usage_tracking_reader acc_auth_a)"
is "$(error_of)" "403 forbidden" "an allowed role without the grant (reader ingesting): 403"
req GET /api/usage/summary -H "Authorization: Bearer $(token usage_tracking_ingest acc_auth_a)"
is "$(error_of)" "403 forbidden" "the ingest role may not read: 403"
req GET /api/usage/installations -H "Authorization: Bearer $(token usage_tracking_reader acc_auth_a)"
is "$(error_of)" "403 forbidden" "the reader may not use an admin route: 403"
req GET /api/usage/installations -H "Authorization: Bearer $(token usage_tracking_analyst)"
is "$(error_of)" "403 forbidden" "nor may the analyst"

# --- account ---------------------------------------------------------------------------
try "$(token usage_tracking_ingest acc_auth_b)"
is "$(error_of)" "403 account_mismatch" "a token of account B posting installation A's batch: 403 account_mismatch"
try "$(ut_jwt_sign "$H" "{\"role\":\"usage_tracking_ingest\",\"account_id\":42,\"exp\":$((now + 300))}" "$JWT_SECRET")"
is "$(error_of)" "401 invalid_token" "account_id that is not a string: 401"
req GET "/api/usage/summary?install_id=$IA" -H "Authorization: Bearer $(token usage_tracking_reader acc_auth_b)"
is "$STATUS $BODY" "200 []" "a reader of account B sees nothing of account A"
is "$(stored)" $((before + 3)) "only the three accepted tokens wrote events"

# --- the installation signature --------------------------------------------------------
ING=$(token usage_tracking_ingest acc_auth_a)
before=$(stored)
b=$(batch "$IA" evt_sig 2)
post_batch "$b" "$(sign "$b" "$SB")" "$ING"
is "$(error_of)" "401 invalid_signature" "signed with another installation's secret: 401"
ts=$(date +%s)
mac=$(printf '%s.%s' "$ts" "$b" | openssl dgst -sha256 -hmac "$SA" -r | cut -d' ' -f1)
post_batch "$b" "$mac:$((ts - 1))" "$ING"
is "$(error_of)" "401 invalid_signature" "the timestamp in the header is not the one signed: 401"
post_batch "$b" "${mac:0:63}:$ts" "$ING"
is "$(error_of)" "401 missing_signature" "a truncated MAC: 401 missing_signature"
post_batch "$b " "$mac:$ts" "$ING"
is "$(error_of)" "401 invalid_signature" "a space appended to the signed body: 401"
post_batch "$b" "$(printf '%s' "$b" | openssl dgst -sha256 -hmac "$SA" -r | cut -d' ' -f1):$ts" "$ING"
is "$(error_of)" "401 invalid_signature" "a MAC over the body without the timestamp: 401"
is "$(stored)" "$before" "no forged request wrote anything"
post_batch "$b" "$mac:$ts" "$ING"
is "$STATUS $(jget "$BODY" '{received}') $(jget "$BODY" '{duplicates}')" "200 2 0" "the genuine request is accepted"
post_batch "$b" "$mac:$ts" "$ING"
is "$STATUS $(jget "$BODY" '{received}') $(jget "$BODY" '{duplicates}')" "200 2 2" "a replay within the window changes nothing: all duplicates"
is "$(stored)" $((before + 2)) "the replay stored nothing more"

finish
