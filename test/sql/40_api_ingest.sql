-- usage_api.ingest called the way PostgREST calls it: the request.* GUCs
-- set local, SET LOCAL ROLE, the raw body as the single json argument.
-- Its answers equal direct SQL ingest, and errors arrive as SQLSTATE PGRST
-- with the HTTP status of usage_tracking.error_codes.  Signatures are made
-- at the transaction's own now(), so nothing depends on the wall clock's value.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_http_a', 'credits'),
       usage_tracking.create_account('acc_http_b', 'credits');
SELECT usage_tracking.register_installation('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_a0a0a0a0a0a1',
                                            'acc_http_a', 'http-secret-aaaaaaaaaaaaaaaa') IS NOT NULL AS a,
       usage_tracking.register_installation('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_b0b0b0b0b0b1',
                                            'acc_http_b', 'http-secret-bbbbbbbbbbbbbbbb') IS NOT NULL AS b,
       usage_tracking.register_installation('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_c0c0c0c0c0c1',
                                            'acc_http_a', 'http-secret-cccccccccccccccc') IS NOT NULL AS c;

-- The same events for installation a (over the API) and b (direct SQL);
-- event 3 is rejected (total_tokens wrong), event 4 repeats event 0.
CREATE SCHEMA t_api;
CREATE FUNCTION t_api.events() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_array(
           t.event('evt_api_0', now() - interval '10 minutes', 150, 25),
           t.event('evt_api_1', now() - interval '9 minutes', 300, 40, 'gpt-4o', 'queue', 2, 100),
           t.event('evt_api_2', now() - interval '8 minutes', 90, 10, 'gpt-4.1-mini', 'inline', 3),
           t.event('evt_api_3', now() - interval '7 minutes', 150, 25) || '{"total_tokens": 180}',
           t.event('evt_api_0', now() - interval '10 minutes', 150, 25))
$$;
SELECT t.batch('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_a0a0a0a0a0a1', t_api.events()) AS body_a,
       t.batch('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_b0b0b0b0b0b1', t_api.events()) AS body_b,
       t.batch('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_c0c0c0c0c0c1', t_api.events()) AS body_c
\gset

-- As PostgREST does it.
BEGIN;
SELECT set_config('request.headers',
                  json_build_object('x-install-signature', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()),
                                    'content-type', 'application/json')::text, true) IS NOT NULL AS headers_set,
       set_config('request.jwt.claims', '{"role": "usage_tracking_ingest", "account_id": "acc_http_a"}', true) IS NOT NULL AS claims_set,
       set_config('request.method', 'POST', true) AS method,
       set_config('request.path', '/rpc/ingest', true) AS path;
SET LOCAL ROLE usage_tracking_ingest;
SELECT usage_api.ingest(:'body_a'::json) AS api_a \gset
COMMIT;
SELECT current_user = session_user AS role_reset;

-- Direct SQL, same events, another installation of another fresh account.
SELECT usage_tracking.ingest(:'body_b', t.sig(:'body_b', 'http-secret-bbbbbbbbbbbbbbbb', now()), now(), 'acc_http_b') AS sql_b \gset

SELECT (:'api_a'::jsonb) ->> 'received' AS received, (:'api_a'::jsonb) ->> 'duplicates' AS duplicates,
       (:'api_a'::jsonb) -> 'event_ids' AS event_ids, (:'api_a'::jsonb) -> 'rejected' AS rejected;
SELECT :'api_a'::jsonb = :'sql_b'::jsonb AS api_equals_sql;

-- The summaries written both ways are the same rows.
SELECT count(*) AS differing_rows FROM (
  (SELECT usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens, completion_tokens,
          cached_prompt_tokens, estimated_cost_usd, unpriced_requests
     FROM usage_tracking.daily WHERE install_id LIKE '%a0a0a0a0a0a1'
   EXCEPT ALL
   SELECT usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens, completion_tokens,
          cached_prompt_tokens, estimated_cost_usd, unpriced_requests
     FROM usage_tracking.daily WHERE install_id LIKE '%b0b0b0b0b0b1')
  UNION ALL
  (SELECT usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens, completion_tokens,
          cached_prompt_tokens, estimated_cost_usd, unpriced_requests
     FROM usage_tracking.daily WHERE install_id LIKE '%b0b0b0b0b0b1'
   EXCEPT ALL
   SELECT usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens, completion_tokens,
          cached_prompt_tokens, estimated_cost_usd, unpriced_requests
     FROM usage_tracking.daily WHERE install_id LIKE '%a0a0a0a0a0a1')) d;
SELECT count(*) AS summary_rows FROM usage_tracking.daily WHERE install_id LIKE '%a0a0a0a0a0a1';

-- One PostgREST-style call: GUCs and role set local, errors caught and shown
-- as SQLSTATE, status, error code and extra headers (the subtransaction
-- rollback also undoes the role and GUCs).
CREATE FUNCTION t_api.call(body text, sig text, claims text,
                           role text DEFAULT 'usage_tracking_ingest') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  r jsonb;
  st text;
  msg text;
  det text;
BEGIN
  BEGIN
    PERFORM set_config('request.headers',
                       CASE WHEN sig IS NULL THEN '{}' ELSE json_build_object('x-install-signature', sig)::text END, true);
    PERFORM set_config('request.jwt.claims', claims, true);
    PERFORM set_config('role', role, true);
    r := usage_api.ingest(body::json);
    RETURN format('200 received %s, duplicates %s, rejected %s',
                  r->>'received', r->>'duplicates', jsonb_array_length(r->'rejected'));
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    IF st = 'PGRST' THEN
      RETURN format('PGRST %s %s %s: %s', det::jsonb->>'status', msg::jsonb->>'code',
                    det::jsonb->'headers', msg::jsonb->>'message');
    END IF;
    RETURN st || ': ' || msg;
  END;
END $$;

\set claims_a '{"role": "usage_tracking_ingest", "account_id": "acc_http_a"}'
-- A retry of the same request: every event a duplicate, the same event_ids.
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a') AS retry;
-- No account claim: a site's token must name its tenant (403), an admin's need not.
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), '{"role": "usage_tracking_ingest"}') AS no_account_claim;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), '{"role": "usage_tracking_admin"}', 'usage_tracking_admin') AS admin_no_account_claim;
-- Unset GUCs read as '' or NULL: no headers at all is a missing signature.
SELECT t_api.call(:'body_a', NULL, :'claims_a') AS no_headers;
SELECT t_api.call(:'body_a', 'not-a-signature', :'claims_a') AS bad_header;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'wrong-secret-0000000000000000', now()), :'claims_a') AS wrong_secret;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now() - interval '1 hour'), :'claims_a') AS stale;
SELECT t_api.call(replace(:'body_a', 'a0a0a0a0a0a1', 'a0a0a0a0a0ff'),
                  t.sig(replace(:'body_a', 'a0a0a0a0a0a1', 'a0a0a0a0a0ff'), 'http-secret-aaaaaaaaaaaaaaaa', now()),
                  :'claims_a') AS unknown_installation;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()),
                  '{"role": "usage_tracking_ingest", "account_id": "acc_http_b"}') AS other_account;
SELECT usage_tracking.set_installation_status('4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_c0c0c0c0c0c1', 'suspended');
SELECT t_api.call(:'body_c', t.sig(:'body_c', 'http-secret-cccccccccccccccc', now()), :'claims_a') AS suspended;
SELECT t_api.call('{"install_id": "4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_a0a0a0a0a0a1", "events": []}',
                  t.sig('{"install_id": "4a7f5c1e-0d2b-4c3a-9e8f-1a2b3c4d5e6f_a0a0a0a0a0a1", "events": []}',
                        'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a') AS no_events;
-- Not JSON: PostgreSQL refuses the json argument before the call (PostgREST
-- and the gateway answer 400).
SELECT t_api.call('{"install_id": ', 'x', :'claims_a') AS not_json;
-- The text variant the gateway calls (the body parsed once, by ingest):
-- the same answers, and not JSON is ingest's own 400 malformed_json.
BEGIN;
SELECT set_config('request.headers', json_build_object('x-install-signature',
                  t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()))::text, true) IS NOT NULL AS headers_set,
       set_config('request.jwt.claims', :'claims_a', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_ingest;
SELECT usage_api.ingest(:'body_a'::text) - 'quota' = (:'api_a'::jsonb - 'quota') || '{"duplicates": 3}' AS text_retry_as_json_retry;
COMMIT;
BEGIN;
SELECT set_config('request.headers', json_build_object('x-install-signature',
                  t.sig('{"install_id": ', 'http-secret-aaaaaaaaaaaaaaaa', now()))::text, true) IS NOT NULL AS headers_set,
       set_config('request.jwt.claims', :'claims_a', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_ingest;
DO $$
BEGIN
  PERFORM usage_api.ingest('{"install_id": '::text);
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'text, not JSON: % %', (SQLERRM::jsonb)->>'code', (SQLERRM::jsonb)->>'message';
END $$;
COMMIT;
SET usage_tracking.max_batch_events = 2;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a') AS too_many_events;
RESET usage_tracking.max_batch_events;
SELECT jsonb_set(:'body_a'::jsonb, '{pad}', to_jsonb(repeat('x', 2000)))::text AS body_pad \gset
SET usage_tracking.max_body_bytes = '1kB';
SELECT t_api.call(:'body_pad', t.sig(:'body_pad', 'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a') AS body_too_large;
RESET usage_tracking.max_body_bytes;
-- Only the ingest role may call it.
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a',
                  'usage_tracking_reader') AS as_reader;
SELECT t_api.call(:'body_a', t.sig(:'body_a', 'http-secret-aaaaaaaaaaaaaaaa', now()), :'claims_a',
                  'usage_tracking_analyst') AS as_analyst;
SELECT has_function_privilege('usage_tracking_ingest', 'usage_api.ingest(json)', 'EXECUTE') AS ingest_may,
       has_function_privilege('public', 'usage_api.ingest(json)', 'EXECUTE') AS public_may,
       has_function_privilege('usage_tracking_ingest', 'usage_api.ingest(text)', 'EXECUTE') AS ingest_may_text,
       has_function_privilege('public', 'usage_api.ingest(text)', 'EXECUTE') AS public_may_text;
-- Nothing was written by the refused calls.
SELECT count(*) AS events_a FROM usage_tracking.events WHERE install_id LIKE '%a0a0a0a0a0a1';
SELECT count(*) AS events_c FROM usage_tracking.events WHERE install_id LIKE '%c0c0c0c0c0c1';

-- Governance's rate limit: UTR01 with DETAIL {"retry_after_s": N} becomes
-- 429 with Retry-After (rounded up, at least 1).
CREATE FUNCTION t_api.raised(st text, msg text, det text DEFAULT NULL, hnt text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  s text; m text; d text; h text;
BEGIN
  PERFORM usage_tracking.raise_http_error(st, msg, det, hnt);
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
  RETURN format('%s | %s | %s | %s', s, m, d, h);
END $$;
SELECT t_api.raised('UTR01', 'installation posts too fast', '{"retry_after_s": 41.2}');
SELECT t_api.raised('UTR01', 'installation posts too fast', 'not json');
SELECT t_api.raised('UTA02', 'invalid signature', NULL, 'Check the secret.');
-- Any other SQLSTATE is raised again unchanged.
SELECT t_api.raised('22023', 'bad value', 'A detail.', 'A hint.');
SELECT t_api.raised('42501', 'permission denied');

