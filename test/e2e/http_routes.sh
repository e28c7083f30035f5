#!/usr/bin/env bash
# test/e2e/http_routes.sh — every route of the gateway over real HTTP, and
# every status of SPEC 2.2 with its JSON error body: a site posts signed
# batches, the reads answer what SQL answers, refused requests write nothing.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_routes
trap e2e_cleanup EXIT
IA=0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000a01
IB=0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000a02
IC=0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000c01
IS=0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000d01
SA=e2e-secret-a1-0123456789abcdef
SB=e2e-secret-a2-0123456789abcdef
SC=e2e-secret-c1-0123456789abcdef
SS=e2e-secret-d1-0123456789abcdef
sql "SELECT usage_tracking.create_account('acc_e2e_a', 'pro'), usage_tracking.create_account('acc_e2e_c', 'pro');
     SELECT usage_tracking.register_installation('$IA', 'acc_e2e_a', '$SA'),
            usage_tracking.register_installation('$IB', 'acc_e2e_a', '$SB'),
            usage_tracking.register_installation('$IC', 'acc_e2e_c', '$SC'),
            usage_tracking.register_installation('$IS', 'acc_e2e_a', '$SS');
     SELECT usage_tracking.set_installation_status('$IS', 'suspended');" >/dev/null
# A usage_api function added after the gateway started is reachable at
# /rpc/<name> without any change to the gateway; this one stands for
# governance refusing a post with UTR01.
DASH=$WORK/http_routes_dashboard
mkdir -p "$DASH/assets"
printf '<!doctype html><title>usage</title>\n' >"$DASH/index.html"
printf 'console.log(1)\n' >"$DASH/assets/app.js"
gw_start USAGE_DASHBOARD_DIR="$DASH"

ING_A=$(token usage_tracking_ingest acc_e2e_a)
ING_C=$(token usage_tracking_ingest acc_e2e_c)
READER_A=$(token usage_tracking_reader acc_e2e_a)
ADMIN=$(token usage_tracking_admin)
events_now() { sql "SELECT count(*) FROM usage_tracking.events"; }

# --- healthz -------------------------------------------------------------------
req GET /healthz
is "$STATUS $BODY" '200 {"status": "ok"}' "GET /healthz answers 200 when the database answers"

# --- POST /api/usage/event ----------------------------------------------------------
B1=$(batch "$IA" evt_a1 5)
post_batch "$B1" "$(sign "$B1" "$SA")" "$ING_A"
is "$STATUS" 200 "a signed batch is accepted"
is "$(jget "$BODY" '{success}') $(jget "$BODY" '{received}') $(jget "$BODY" '{duplicates}') $(jget "$BODY" '{rejected}')" \
   "true 5 0 []" "the answer has success, received, duplicates and rejected"
is "$(jget "$BODY" '{event_ids}')" '["evt_a1_0", "evt_a1_1", "evt_a1_2", "evt_a1_3", "evt_a1_4"]' "event_ids lists every stored event"
is "$(jget "$BODY" '{quota,level}') $(jget "$BODY" '{quota,limit}')" "ok 10000" "the answer carries the quota verdict"
is "$(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id = '$IA'")" 5 "the events are stored"
post_batch "$B1" "$(sign "$B1" "$SA")" "$ING_A"
is "$STATUS $(jget "$BODY" '{received}') $(jget "$BODY" '{duplicates}')" "200 5 5" "a retry is all duplicates, with the same event_ids"
is "$(sql "SELECT sum(total_requests) FROM usage_tracking.daily WHERE install_id = '$IA'")" 5 "a retry counts nothing twice"
B2=$(batch "$IB" evt_b1 3 | sed 's/"total_tokens":112/"total_tokens":999/')
post_batch "$B2" "$(sign "$B2" "$SB")" "$ING_A"
is "$STATUS $(jget "$BODY" '{received}') $(jget "$BODY" '{rejected,0,index}') $(jget "$BODY" '{rejected,0,event_id}')" \
   "200 2 1 evt_b1_1" "an invalid event is rejected with its index, the others stored"
B3=$(batch "$IC" evt_c1 4)
post_batch "$B3" "$(sign "$B3" "$SC")" "$ING_C"
is "$STATUS" 200 "another account's site posts with its own token"

# --- every error status of SPEC 2.2, each with a JSON body, none writing -------------
before=$(events_now)
NEW=$(batch "$IA" evt_refused 2)
post_batch '{"install_id": "x", "events": [' "$(sign '{"install_id": "x", "events": [' "$SA")" "$ING_A"
is "$(error_of)" "400 malformed_json" "malformed JSON: 400 malformed_json"
BAD='{"install_id": "'$IA'", "events": "none"}'
post_batch "$BAD" "$(sign "$BAD" "$SA")" "$ING_A"
is "$(error_of)" "400 invalid_batch" "a body that is not a batch: 400 invalid_batch"
req POST /api/usage/event -H "X-Install-Signature: $(sign "$NEW" "$SA")" --data-binary "$NEW"
is "$(error_of)" "401 missing_token" "no JWT: 401 missing_token"
is "$(header WWW-Authenticate)" "Bearer" "401 carries WWW-Authenticate: Bearer"
post_batch "$NEW" "$(sign "$NEW" "$SA")" "not.a.jwt"
is "$(error_of)" "401 invalid_token" "a garbage JWT: 401 invalid_token"
post_batch "$NEW" "$(sign "$NEW" "$SA")" "$(ut_jwt usage_tracking_ingest acc_e2e_a -120 "$JWT_SECRET")"
is "$(error_of)" "401 token_expired" "an expired JWT: 401 token_expired"
req POST /api/usage/event -H "Authorization: Bearer $ING_A" --data-binary "$NEW"
is "$(error_of)" "401 missing_signature" "no X-Install-Signature: 401 missing_signature"
post_batch "$NEW" "$(sign "$NEW" "wrong-secret-0123456789abcdef")" "$ING_A"
is "$(error_of)" "401 invalid_signature" "a wrong secret: 401 invalid_signature"
post_batch "$NEW" "$(sign "$NEW" "$SA" $(( $(date +%s) - 3600 )))" "$ING_A"
is "$(error_of)" "401 stale_signature" "a signature an hour old: 401 stale_signature"
post_batch "$NEW" "$(sign "$NEW" "$SA" $(( $(date +%s) + 3600 )))" "$ING_A"
is "$(error_of)" "401 stale_signature" "a signature an hour ahead: 401 stale_signature"
TAMPERED=${NEW/\"prompt_tokens\":100/\"prompt_tokens\":900}
post_batch "$TAMPERED" "$(sign "$NEW" "$SA")" "$ING_A"
is "$(error_of)" "401 invalid_signature" "a body changed after signing: 401 invalid_signature"
UNKNOWN=$(batch "0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e0000000ff" evt_u 1)
post_batch "$UNKNOWN" "$(sign "$UNKNOWN" "$SA")" "$ING_A"
is "$(error_of)" "401 invalid_signature" "an unknown installation: 401, not told apart from a bad signature"
SUSP=$(batch "$IS" evt_s 1)
post_batch "$SUSP" "$(sign "$SUSP" "$SS")" "$ING_A"
is "$(error_of)" "403 installation_suspended" "a suspended installation: 403 installation_suspended"
post_batch "$NEW" "$(sign "$NEW" "$SA")" "$ING_C"
is "$(error_of)" "403 account_mismatch" "a JWT of another account: 403 account_mismatch"
OTHER=${NEW/\{\"install_id\"/\{\"account_id\":\"acc_e2e_c\",\"install_id\"}
post_batch "$OTHER" "$(sign "$OTHER" "$SA")" "$ING_A"
is "$(error_of)" "403 account_mismatch" "a batch naming another account: 403 account_mismatch"
MANY=$(batch "$IA" evt_many 1001)
post_batch "$MANY" "$(sign "$MANY" "$SA")" "$ING_A"
is "$(error_of)" "413 too_many_events" "1001 events: 413 too_many_events"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$WORK/http_routes_big.json"
printf '%s' "$NEW" >>"$WORK/http_routes_big.json"
req POST /api/usage/event -H "Authorization: Bearer $ING_A" -H "X-Install-Signature: 0:0" --data-binary @"$WORK/http_routes_big.json"
is "$(error_of)" "413 body_too_large" "a body over 1 MiB: 413 body_too_large"
req POST /api/usage/event -H "Authorization: Bearer $(token usage_tracking_reader acc_e2e_a)" \
    -H "X-Install-Signature: $(sign "$NEW" "$SA")" --data-binary "$NEW"
is "$(error_of)" "403 forbidden" "the reader role may not ingest: 403"
is "$(events_now)" "$before" "no refused request wrote anything"

# 429: governance refuses a post with UTR01 and DETAIL {"retry_after_s": n}.
sql "CREATE FUNCTION usage_api.e2e_throttled() RETURNS jsonb LANGUAGE plpgsql AS \$\$
     BEGIN PERFORM usage_tracking.raise_http_error('UTR01', 'installation posts too fast', '{\"retry_after_s\": 41.5}'); RETURN NULL; END \$\$;
     GRANT EXECUTE ON FUNCTION usage_api.e2e_throttled() TO usage_tracking_ingest;" >/dev/null
req POST /rpc/e2e_throttled -H "Authorization: Bearer $ING_A"
is "$(error_of) $(header Retry-After)" "429 rate_limited 42" "UTR01: 429 rate_limited with Retry-After, via a function added at run time"
# The plan's posts per 5 minutes, for real (ingest raises UTR01).
sql "INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m) VALUES ('e2e_slow', NULL, 2);
     SELECT usage_tracking.create_account('acc_e2e_slow', 'e2e_slow');
     SELECT usage_tracking.register_installation('0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000e01', 'acc_e2e_slow', '$SA');" >/dev/null
ING_SLOW=$(token usage_tracking_ingest acc_e2e_slow)
codes=
for n in 1 2 3 4; do
  R=$(batch 0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d_e2e000000e01 "evt_slow$n" 1)
  post_batch "$R" "$(sign "$R" "$SA")" "$ING_SLOW"
  codes+="$STATUS "
done
is "$codes" "200 200 429 429 " "posting faster than the plan allows: 429"
is "$(error_of)" "429 rate_limited" "the 429 body says rate_limited"
ra=$(header Retry-After)
[ -n "$ra" ] && [ "$ra" -ge 1 ] && [ "$ra" -le 300 ]; ok $? "429 carries Retry-After in seconds ($ra)"

is "$(sql "SELECT string_agg(install_id || '=' || total_requests, ' ' ORDER BY install_id) FROM usage_tracking.installations() WHERE account_id <> 'acc_e2e_slow'")" \
   "$IA=5 $IB=2 $IC=4 $IS=0" "the totals are what was accepted"

# --- reads match SQL ------------------------------------------------------------
req GET "/api/usage/summary?install_id=$IA&group_by=day,model" -H "Authorization: Bearer $READER_A"
is "$STATUS" 200 "GET /api/usage/summary answers 200"
want=$(sql "SELECT jsonb_agg(jsonb_build_object('date', usage_date, 'model', model, 'total_requests', total_requests,
              'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens, 'cached_prompt_tokens',
              cached_prompt_tokens, 'total_tokens', total_tokens, 'estimated_cost_usd', estimated_cost_usd))
            FROM usage_tracking.usage_summary('$IA', NULL, NULL, 'day,model')")
is "$(psqlv a="$BODY" b="$want" <<<"SELECT (:'a')::jsonb = (:'b')::jsonb")" t "the summary over HTTP equals usage_summary in SQL"
is "$(psqlv a="$BODY" <<<"SELECT sum((r->>'total_requests')::int) FROM jsonb_array_elements(:'a'::jsonb) r")" \
   "$(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id = '$IA'")" "its requests are the raw events posted"
req GET "/api/usage/summary?group_by=source" -H "Authorization: Bearer $READER_A"
is "$STATUS $(psqlv a="$BODY" <<<"SELECT sum((r->>'total_requests')::int) FROM jsonb_array_elements(:'a'::jsonb) r")" \
   "200 $(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id IN ('$IA', '$IB')")" \
   "without install_id: every installation of the reader's account, and only those"
req GET "/api/usage/summary?install_id=$IC" -H "Authorization: Bearer $READER_A"
is "$STATUS $BODY" "200 []" "another account's installation shows nothing"
req GET "/api/usage/summary?group_by=week" -H "Authorization: Bearer $READER_A"
is "$(error_of)" "400 invalid_input" "a bad group_by: 400"
req GET "/api/usage/summary?nonsense=1" -H "Authorization: Bearer $READER_A"
is "$(error_of)" "400 invalid_input" "an unknown argument: 400"
req GET "/api/usage/events?install_id=$IA&limit=3" -H "Authorization: Bearer $READER_A"
is "$STATUS $(jget "$BODY" '{events}' | grep -o event_id | wc -l)" "200 3" "GET /api/usage/events pages by limit"
next=$(jget "$BODY" '{next}')
req GET "/api/usage/events?install_id=$IA&limit=3&after=$next" -H "Authorization: Bearer $READER_A"
is "$STATUS $(jget "$BODY" '{events}' | grep -o event_id | wc -l) $(jget "$BODY" '{next}')" "200 2 " "the next page has the rest and no cursor"
req GET "/api/usage/installations" -H "Authorization: Bearer $ADMIN"
is "$STATUS $(psqlv a="$BODY" <<<"SELECT string_agg(r->>'install_id' || '=' || (r->>'total_requests'), ' ' ORDER BY r->>'install_id') FROM jsonb_array_elements(:'a'::jsonb) r")" \
   "200 $(sql "SELECT string_agg(install_id || '=' || total_requests, ' ' ORDER BY install_id) FROM usage_tracking.installations()")" \
   "GET /api/usage/installations lists every installation with its totals (admin)"
req GET "/api/usage/installations" -H "Authorization: Bearer $READER_A"
is "$(error_of)" "403 forbidden" "the reader may not list installations"
req POST /api/usage/export -H "Authorization: Bearer $READER_A" -d '{"kind": "daily"}'
is "$STATUS $(header Content-Type)" "200 text/csv; charset=utf-8" "POST /api/usage/export answers text/csv"
is "$(header Transfer-Encoding)" "chunked" "the export is streamed"
is "$(printf '%s\n' "$BODY" | head -1 | cut -d, -f1-3)" "account_id,install_id,usage_date" "the CSV starts with its header row"
is "$(printf '%s\n' "$BODY" | tail -n +2 | wc -l)" "$(sql "SELECT count(*) FROM usage_tracking.daily_usage WHERE account_id = 'acc_e2e_a'")" \
   "one CSV line per daily row of the reader's account"
is "$(printf '%s\n' "$BODY" | sort)" "$(sql "SELECT l FROM usage_tracking.export_csv('daily') l WHERE l LIKE 'acc_e2e_a,%' OR l LIKE 'account_id,%'" | sort)" \
   "the CSV lines are export_csv's, byte for byte"
req POST /api/usage/export -H "Authorization: Bearer $READER_A" -d '{"kind": "weekly"}'
is "$(error_of)" "400 invalid_input" "a bad export kind: 400 before any CSV"
req GET "/api/usage/quota?install_id=$IA" -H "Authorization: Bearer $READER_A"
is "$STATUS $(jget "$BODY" '{level}') $(jget "$BODY" '{limit}')" "200 ok 10000" "GET /api/usage/quota answers the verdict"
is "$(jget "$BODY" '{used}')" "$(sql "SELECT (usage_tracking.quota_status('$IA'))->>'used'")" "the same as quota_status in SQL"
req GET "/api/usage/quota?install_id=$IC" -H "Authorization: Bearer $READER_A"
is "$(error_of)" "404 not_found" "the quota of another account's installation: 404"

# --- the generic /rpc/<name> ------------------------------------------------------
req GET "/rpc/summary?install_id=$IA&group_by=day,model" -H "Authorization: Bearer $READER_A"
is "$STATUS $(psqlv a="$BODY" b="$want" <<<"SELECT (:'a')::jsonb = (:'b')::jsonb")" "200 t" "GET /rpc/summary takes named arguments from the query string"
req POST /rpc/summary -H "Authorization: Bearer $READER_A" -d "{\"install_id\": \"$IA\", \"group_by\": \"day,model\"}"
is "$STATUS $(psqlv a="$BODY" b="$want" <<<"SELECT (:'a')::jsonb = (:'b')::jsonb")" "200 t" "POST /rpc/summary takes them from the JSON body"
req POST /rpc/ingest -H "Authorization: Bearer $ING_A" -H "X-Install-Signature: $(sign "$B1" "$SA")" --data-binary "$B1"
is "$STATUS $(jget "$BODY" '{duplicates}')" "200 5" "POST /rpc/ingest passes the raw body to the single json parameter"
req GET /rpc/analytics_overview -H "Authorization: Bearer $ADMIN"
is "$STATUS" 200 "functions other parts add to usage_api are served at /rpc/<name>"
req GET /rpc/no_such_function -H "Authorization: Bearer $ADMIN"
is "$(error_of)" "404 not_found" "an unknown function: 404"
req GET /rpc/Bad-Name -H "Authorization: Bearer $ADMIN"
is "$(error_of)" "404 not_found" "a function name that is not an identifier: 404"
req GET /api/usage/nothing -H "Authorization: Bearer $ADMIN"
is "$(error_of)" "404 not_found" "an unknown route: 404"
req DELETE /api/usage/event -H "Authorization: Bearer $ADMIN"
is "$(error_of)" "405 method_not_allowed" "a known route with the wrong method: 405"

# --- the dashboard -------------------------------------------------------------------
req GET /dashboard
is "$STATUS $(header Content-Type)" "200 text/html; charset=utf-8" "GET /dashboard serves index.html"
req GET /dashboard/assets/app.js
is "$STATUS $(header Content-Type)" "200 text/javascript; charset=utf-8" "GET /dashboard/<file> serves the file"
req GET /dashboard/missing.js
is "$(error_of)" "404 not_found" "a missing dashboard file: 404"
req GET /dashboard/../../../etc/passwd --path-as-is
is "$STATUS" 404 "no way out of the dashboard directory"

# --- the access log -------------------------------------------------------------------
grep -q "POST /api/usage/event 200 .*install=$IA" "$GW_LOG"; ok $? "the access log has method, path, status, duration and install id"
! grep -qF "$ING_A" "$GW_LOG" && ! grep -qF "$JWT_SECRET" "$GW_LOG" && ! grep -qF "$SA" "$GW_LOG"
ok $? "the access log holds no token and no secret"
req GET "/api/usage/x%0A2026-01-01T00:00:00Z%20POST%20/forged%20200"
! grep -q '^2026-01-01T00:00:00Z POST /forged' "$GW_LOG"; ok $? "a newline in the path cannot forge a log line"
n0=$(wc -l <"$GW_LOG")
for p in /healthz /rpc/summary /api/usage/summary /nowhere /dashboard; do req GET "$p" -H "Authorization: Bearer $READER_A"; done
sleep 0.2
is "$(( $(wc -l <"$GW_LOG") - n0 ))" 5 "one access-log line per request"
finish
