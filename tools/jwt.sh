#!/usr/bin/env bash
# tools/jwt.sh — mint an HS256 JWT for the gateway with openssl.
#
#   tools/jwt.sh ROLE [ACCOUNT_ID] [TTL_SECONDS]     (secret in USAGE_JWT_SECRET)
#
# Sourced, it defines ut_b64url, ut_jwt_sign HEADER_JSON PAYLOAD_JSON SECRET
# and ut_jwt ROLE ACCOUNT_ID TTL SECRET for scripts and tests.

ut_b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

ut_jwt_sign() {  # ut_jwt_sign HEADER_JSON PAYLOAD_JSON SECRET
  local h p s
  h=$(printf '%s' "$1" | ut_b64url)
  p=$(printf '%s' "$2" | ut_b64url)
  s=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$3" -binary | ut_b64url)
  printf '%s.%s.%s\n' "$h" "$p" "$s"
}

ut_jwt() {  # ut_jwt ROLE ACCOUNT_ID TTL SECRET — ACCOUNT_ID may be empty
  local now payload
  now=$(date +%s)
  payload=$(printf '{"role":"%s","iat":%d,"exp":%d' "$1" "$now" $((now + $3)))
  [ -n "$2" ] && payload+=$(printf ',"account_id":"%s","sub":"%s"' "$2" "$2")
  payload+='}'
  ut_jwt_sign '{"alg":"HS256","typ":"JWT"}' "$payload" "$4"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  [ $# -ge 1 ] || { echo "usage: USAGE_JWT_SECRET=… $0 ROLE [ACCOUNT_ID] [TTL_SECONDS]" >&2; exit 2; }
  : "${USAGE_JWT_SECRET:?set USAGE_JWT_SECRET}"
  ut_jwt "$1" "${2:-}" "${3:-3600}" "$USAGE_JWT_SECRET"
fi
