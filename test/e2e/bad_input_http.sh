#!/usr/bin/env bash
# test/e2e/bad_input_http.sh — the bad-input catalogue: malformed requests
# to POST /api/usage/event over real HTTP, against the real gateway, each
# with the status and error code it must get; after every one of them the
# database is exactly as before (no event, no summary, no last_seen_at, no
# rate-window slot).  A last, well-formed request shows the same
# credentials do write.  The gateway's log never holds a token or secret.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_bad_input
trap e2e_cleanup EXIT
IA=3d4e5f6a-7b8c-4d9e-8f0a-3b4c5d6e7f80_bad1bad1bad1
IS=3d4e5f6a-7b8c-4d9e-8f0a-3b4c5d6e7f80_bad2bad2bad2
IU=3d4e5f6a-7b8c-4d9e-8f0a-3b4c5d6e7f80_bad9bad9bad9
SA=bad-input-secret-a-0123456789abcdef
SS=bad-input-secret-s-0123456789abcdef
sql "SELECT usage_tracking.create_account('acc_bad', 'pro'), usage_tracking.create_account('acc_bad_other', 'pro');
     SELECT usage_tracking.register_installation('$IA', 'acc_bad', '$SA'),
            usage_tracking.register_installation('$IS', 'acc_bad', '$SS');
     SELECT usage_tracking.set_installation_status('$IS', 'suspended');" >/dev/null
gw_start

ING=$(token usage_tracking_ingest acc_bad)
ING_OTHER=$(token usage_tracking_ingest acc_bad_other)
READER=$(token usage_tracking_reader acc_bad)
NOW=$(date +%s)
GOOD=$(batch "$IA" bad_ok 3)
GOOD_SIG=$(sign "$GOOD" "$SA")

# Everything a refused request must leave alone.
state() {
  sql "SELECT (SELECT count(*) FROM usage_tracking.events) || '/' ||
              (SELECT count(*) || ':' || coalesce(sum(total_requests), 0) FROM usage_tracking.daily) || '/' ||
              (SELECT count(*) FROM usage_tracking.installations WHERE last_seen_at IS NOT NULL) || '/' ||
              (SELECT count(*) FROM usage_tracking.rate_windows)"
}
if ! sql "SELECT 1 FROM usage_tracking.rate_windows LIMIT 0" >/dev/null 2>&1; then
  state() {
    sql "SELECT (SELECT count(*) FROM usage_tracking.events) || '/' ||
                (SELECT count(*) || ':' || coalesce(sum(total_requests), 0) FROM usage_tracking.daily) || '/' ||
                (SELECT count(*) FROM usage_tracking.installations WHERE last_seen_at IS NOT NULL)"
  }
fi
BEFORE=$(state)

# send BODY SIG TOKEN [curl args...] — POST the body as a site would,
# with the signature and token headers when not empty.
send() {
  local body=$1 sig=$2 tok=$3 args=()
  shift 3
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  [ -n "$sig" ] && args+=(-H "X-Install-Signature: $sig")
  printf '%s' "$body" >"$WORK/bad_input_body"
  req POST /api/usage/event -H 'Content-Type: application/json' "${args[@]}" "$@" --data-binary @"$WORK/bad_input_body"
}
# signed BODY [curl args...] — signed with A's secret, A's ingest token.
signed() { local b=$1; shift; send "$b" "$(sign "$b" "$SA")" "$ING" "$@"; }

N=0
# case WANT LABEL — check the last answer ("STATUS error", or just STATUS
# when the answer is not the gateway's own), and that nothing was written.
case_() {
  N=$((N + 1))
  if [ "${1#* }" = "$1" ]; then
    is "$STATUS" "$1" "$(printf '%02d' "$N") $2: $1"
  else
    is "$(error_of)" "$1" "$(printf '%02d' "$N") $2: $1"
  fi
  local now_state
  now_state=$(state)
  [ "$now_state" = "$BEFORE" ] || { ok 1 "     ... and nothing was written"; echo "#   $BEFORE -> $now_state"; BEFORE=$now_state; }
}

ev() {  # ev FIELDS — one event with FIELDS replacing the defaults
  printf '{"event_id":"e1","wp_user_id_hash":"%064d","source":"bulk","model":"gpt-4o-mini","prompt_tokens":1,"completion_tokens":1,"created_at":"%s"%s}' \
    1 "$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)" "${1:+,$1}"
}
b() {  # b EVENTS-JSON [INSTALL] — a batch body
  printf '{"install_id":"%s","events":%s}' "${2:-$IA}" "$1"
}

# --- the bearer token -------------------------------------------------------
send "$GOOD" "$GOOD_SIG" "";                                    case_ "401 missing_token" "no Authorization header"
send "$GOOD" "$GOOD_SIG" "" -H "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l"
                                                                case_ "401 invalid_token" "Basic credentials"
send "$GOOD" "$GOOD_SIG" "" -H "Authorization: Bearer"
                                                                case_ "401 invalid_token" "Bearer with no token"
send "$GOOD" "$GOOD_SIG" "not.a.jwt";                           case_ "401 invalid_token" "a token that is not a JWT"
send "$GOOD" "$GOOD_SIG" "$(ut_jwt_sign '{"alg":"none","typ":"JWT"}' "{\"role\":\"usage_tracking_ingest\",\"account_id\":\"acc_bad\",\"exp\":$((NOW + 600))}" "$JWT_SECRET")"
                                                                case_ "401 invalid_token" "alg none"
send "$GOOD" "$GOOD_SIG" "$(ut_jwt usage_tracking_ingest acc_bad 600 wrong-jwt-secret)"
                                                                case_ "401 invalid_token" "a token signed with another key"
send "$GOOD" "$GOOD_SIG" "$(ut_jwt usage_tracking_ingest acc_bad -120 "$JWT_SECRET")"
                                                                case_ "401 token_expired" "an expired token"
send "$GOOD" "$GOOD_SIG" "$(ut_jwt postgres acc_bad 600 "$JWT_SECRET")"
                                                                case_ "403 role_not_allowed" "a token for the postgres role"
send "$GOOD" "$GOOD_SIG" "$READER";                             case_ "403 forbidden" "the reader role"
send "$GOOD" "$GOOD_SIG" "$ING_OTHER";                          case_ "403 account_mismatch" "a token of another account"

# --- the signature header ---------------------------------------------------
send "$GOOD" "" "$ING";                                         case_ "401 missing_signature" "no X-Install-Signature"
send "$GOOD" "" "$ING" -H "X-Install-Signature;"               # an empty header
                                                                case_ "401 missing_signature" "an empty X-Install-Signature"
send "$GOOD" "${GOOD_SIG:1}" "$ING";                            case_ "401 missing_signature" "63 hex digits"
send "$GOOD" "zz${GOOD_SIG:2}" "$ING";                          case_ "401 missing_signature" "a MAC that is not hex"
send "$GOOD" "${GOOD_SIG%%:*}:-$NOW" "$ING";                    case_ "401 missing_signature" "a negative timestamp"
send "$GOOD" "${GOOD_SIG%%:*}:1${NOW}000" "$ING";               case_ "401 missing_signature" "a 14-digit timestamp"
send "$GOOD" "${GOOD_SIG%%:*}" "$ING";                          case_ "401 missing_signature" "no timestamp"
send "$GOOD" "$GOOD_SIG,$GOOD_SIG" "$ING";                      case_ "401 missing_signature" "two signatures in one header"
send "$GOOD" "$(sign "$GOOD" wrong-secret-0123456789abcdef)" "$ING"
                                                                case_ "401 invalid_signature" "signed with a wrong secret"
send "$GOOD" "$(sign "$GOOD" "$SA" $((NOW - 3600)))" "$ING";    case_ "401 stale_signature" "signed an hour ago"
send "$GOOD" "$(sign "$GOOD" "$SA" $((NOW + 3600)))" "$ING";    case_ "401 stale_signature" "signed an hour ahead"
send "$GOOD " "$GOOD_SIG" "$ING";                               case_ "401 invalid_signature" "a space added after signing"
send "$GOOD" "${GOOD_SIG%%:*}:$((NOW - 1))" "$ING";             case_ "401 invalid_signature" "the timestamp changed after signing"
U=$(batch "$IU" bad_u 1); send "$U" "$(sign "$U" "$SA")" "$ING"
                                                                case_ "401 invalid_signature" "an unknown installation"
S=$(batch "$IS" bad_s 1); send "$S" "$(sign "$S" "$SS")" "$ING"
                                                                case_ "403 installation_suspended" "a suspended installation"

# --- the body -----------------------------------------------------------------
signed "";                                                      case_ "400 malformed_json" "an empty body"
signed "hello";                                                 case_ "400 malformed_json" "not JSON"
signed "${GOOD:0:60}";                                          case_ "400 malformed_json" "truncated JSON"
signed '{"install_id":"'"$IA"'","events":[{"event_id":"a\u0000"}]}'
                                                                case_ "400 malformed_json" "a \\u0000 escape"
signed '{"install_id":"'"$IA"'","events":[{"event_id":"\ud800"}]}'
                                                                case_ "400 malformed_json" "a lone surrogate escape"
signed "$(printf '{"install_id":"%s","events":[{"event_id":"\xff\xfe"}]}' "$IA")"
                                                                case_ "400 malformed_json" "bytes that are not UTF-8"
signed "$(printf '{"install_id":"%s","events":[%s]}' "$IA" "$(ev)")"$'\x01'
                                                                case_ "400 malformed_json" "a control byte after the JSON"
signed "$(printf '[%s]' "$(ev)")";                              case_ "400 invalid_batch" "an array, not an object"
signed '"a string"';                                            case_ "400 invalid_batch" "a JSON string"
signed "$(printf '{"events":[%s]}' "$(ev)")";                   case_ "400 invalid_batch" "no install_id"
signed "$(printf '{"install_id":42,"events":[%s]}' "$(ev)")";   case_ "400 invalid_batch" "install_id a number"
signed "$(b "[$(ev)]" "$(tr a-f A-F <<<"$IA")")";               case_ "400 invalid_batch" "install_id in upper case"
signed "$(b "[$(ev)]" "$IA'; DROP TABLE usage_tracking.events; --")"
                                                                case_ "400 invalid_batch" "install_id carrying SQL"
signed "$(printf '{"install_id":"%s"}' "$IA")";                 case_ "400 invalid_batch" "no events"
signed "$(b '[]')";                                             case_ "400 invalid_batch" "no events in the array"
signed "$(b "$(ev)")";                                          case_ "400 invalid_batch" "events an object, not an array"
signed "$(printf '{"install_id":"%s","events":[],"events":[%s]}' "$IA" "$(ev)")"
                                                                case_ "400 invalid_batch" "events given twice"
signed "$(printf '{"install_id":"%s","account_id":"acc_bad_other","events":[%s]}' "$IA" "$(ev)")"
                                                                case_ "403 account_mismatch" "a batch naming another account"
signed "$(printf '{"install_id":"%s","account_id":7,"events":[%s]}' "$IA" "$(ev)")"
                                                                case_ "400 invalid_batch" "account_id a number"
MANY=$(batch "$IA" bad_many 1001)
signed "$MANY";                                                 case_ "413 too_many_events" "1001 events"
head -c $((1024 * 1024 + 1)) /dev/zero | tr '\0' ' ' >"$WORK/bad_input_big"
BIG="$(b "[$(ev)]")$(cat "$WORK/bad_input_big")"
signed "$BIG";                                                  case_ "413 body_too_large" "a body of 1 MiB + a few bytes"
DEEP=$(printf '{"install_id":"%s","events":[%s%s]}' "$IA" "$(head -c 200000 /dev/zero | tr '\0' '[')" "$(head -c 200000 /dev/zero | tr '\0' ']')")
# PostgreSQL's JSON parser stops at max_stack_depth (54001), which maps to
# 413 as in PostgREST: a resource limit, not a crash, nothing written.
signed "$DEEP";                                                 case_ "413 too_large" "arrays nested 200 000 deep"

# --- the request line and headers ------------------------------------------------
req GET /api/usage/event -H "Authorization: Bearer $ING";      case_ "405 method_not_allowed" "GET on the ingest route"
req PUT /api/usage/event -H "Authorization: Bearer $ING" --data-binary "$GOOD"
                                                                case_ "405 method_not_allowed" "PUT on the ingest route"
signed "$GOOD" -H "$(printf 'X-Site: \xff\xfe')" ;              case_ "400 invalid_input" "a header value that is not UTF-8"
signed "$GOOD" -H "X-Padding: $(head -c 70000 /dev/zero | tr '\0' a)"
                                                                case_ "431" "70 kB of headers (libmicrohttpd answers before the gateway)"

ok $([ "$N" -ge 40 ]; echo $?) "the catalogue holds $N malformed requests (at least 40)"

# The same credentials with a well-formed batch do write.
send "$GOOD" "$GOOD_SIG" "$ING"
is "$STATUS $(jget "$BODY" '{received}')" "200 3" "control: the well-formed batch is stored"
[ "$(state)" != "$BEFORE" ]; ok $? "control: and the database changed"
is "$(sql "SELECT count(*) FROM usage_tracking.events")" 3 "only the control's events are stored"

# The gateway's log: one line per request, never a token or a secret.
leaks=0
for s in "$ING" "$ING_OTHER" "$READER" "$JWT_SECRET" "$SA" "$SS" "${GOOD_SIG%%:*}"; do
  grep -q -F "$s" "$GW_LOG" && leaks=$((leaks + 1))
done
is "$leaks" 0 "the gateway log holds no token, secret or MAC ($(wc -l <"$GW_LOG") lines)"
finish
