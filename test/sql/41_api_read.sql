-- The read routes of usage_api called the way PostgREST calls them (JWT
-- claims and role set local, arguments by name): their JSON equals the
-- core read functions', and row-level security scopes them to the account.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_http_r1', 'pro'), usage_tracking.create_account('acc_http_r2', 'pro');
SELECT usage_tracking.register_installation('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1', 'acc_http_r1', 'read-secret-1111111111111111') IS NOT NULL,
       usage_tracking.register_installation('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d2d2d2d2d2d2', 'acc_http_r1', 'read-secret-2222222222222222') IS NOT NULL,
       usage_tracking.register_installation('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_e1e1e1e1e1e1', 'acc_http_r2', 'read-secret-3333333333333333') IS NOT NULL;
SELECT (t.post(t.batch('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1', jsonb_build_array(
          t.event('evt_r_1', '2025-10-01 10:00+00', 100, 10),
          t.event('evt_r_2', '2025-10-01 11:00+00', 200, 20, 'gpt-4o'),
          t.event('evt_r_3', '2025-10-02 09:00+00', 300, 30, 'gpt-4o', 'queue', 2))),
        'read-secret-1111111111111111', '2025-10-02 12:00+00'))->>'received' AS d1,
       (t.post(t.batch('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d2d2d2d2d2d2', jsonb_build_array(
          t.event('evt_r_4', '2025-10-02 10:00+00', 400, 40),
          t.event('evt_r_5', '2025-10-03 10:00+00', 500, 50, 'unpriced-model'))),
        'read-secret-2222222222222222', '2025-10-03 12:00+00'))->>'received' AS d2,
       (t.post(t.batch('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_e1e1e1e1e1e1', jsonb_build_array(
          t.event('evt_r_6', '2025-10-02 10:00+00', 600, 60))),
        'read-secret-3333333333333333', '2025-10-02 12:00+00'))->>'received' AS e1;

\set reader1 '{"role": "usage_tracking_reader", "account_id": "acc_http_r1"}'

-- GET /api/usage/summary?date_from=&date_to=&group_by=day,model as reader of acc_http_r1.
BEGIN;
SELECT set_config('request.jwt.claims', :'reader1', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_reader;
SELECT jsonb_pretty(usage_api.summary(date_from => '2025-10-01', date_to => '2025-10-03', group_by => 'day,model')) AS summary;
-- The same rows as the core function, key for key.
SELECT usage_api.summary(date_from => '2025-10-01', date_to => '2025-10-03', group_by => 'day,model')
       = (SELECT jsonb_agg(jsonb_build_object('date', usage_date, 'model', model, 'total_requests', total_requests,
                                              'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens,
                                              'cached_prompt_tokens', cached_prompt_tokens, 'total_tokens', total_tokens,
                                              'estimated_cost_usd', estimated_cost_usd))
            FROM usage_tracking.usage_summary(NULL, '2025-10-01', '2025-10-03', 'day,model')) AS equals_core;
-- Default group_by is day; one installation; another account's installation is empty.
SELECT usage_api.summary('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d2d2d2d2d2d2') AS one_installation;
SELECT usage_api.summary('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_e1e1e1e1e1e1') AS other_account;
COMMIT;

-- GET /api/usage/events, two pages of two and a last page.
BEGIN;
SELECT set_config('request.jwt.claims', :'reader1', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_reader;
SELECT usage_api.events(date_from => '2025-10-01', date_to => '2025-10-03', lim => 2) AS p1 \gset
SELECT usage_api.events(date_from => '2025-10-01', date_to => '2025-10-03', lim => 2, after => :'p1'::jsonb->>'next') AS p2 \gset
SELECT usage_api.events(date_from => '2025-10-01', date_to => '2025-10-03', lim => 2, after => :'p2'::jsonb->>'next') AS p3 \gset
SELECT n, (SELECT array_agg(e->>'event_id') FROM jsonb_array_elements(p->'events') e) AS event_ids,
       p->'next' IS NOT NULL AND p->'next' <> 'null' AS has_next
  FROM (VALUES (1, :'p1'::jsonb), (2, :'p2'::jsonb), (3, :'p3'::jsonb)) v(n, p);
-- The pages hold exactly what list_events returns, fields for fields.
SELECT (SELECT jsonb_agg(e ORDER BY ord) FROM (VALUES (1, :'p1'::jsonb), (2, :'p2'::jsonb), (3, :'p3'::jsonb)) v(n, p),
               jsonb_array_elements(p->'events') WITH ORDINALITY x(e, ord0), LATERAL (SELECT n * 100 + ord0) o(ord))
       = (SELECT jsonb_agg(to_jsonb(l) - 'cursor')
            FROM usage_tracking.list_events(NULL, '2025-10-01', '2025-10-04', NULL, 1000) l) AS pages_equal_core;
SELECT usage_api.events(lim => 0) AS bad_lim;
COMMIT;

-- POST /api/usage/export: the CSV lines of export_csv.
BEGIN;
SELECT set_config('request.jwt.claims', :'reader1', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_reader;
SELECT l FROM usage_api.export(kind => 'daily', date_from => '2025-10-01', date_to => '2025-10-03') l;
SELECT array(SELECT usage_api.export('events', '5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1'))
       = array(SELECT usage_tracking.export_csv('events', '5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1')) AS export_equals_core;
COMMIT;

-- GET /api/usage/installations is the admin's.
BEGIN;
SELECT set_config('request.jwt.claims', '{"role": "usage_tracking_admin"}', true) IS NOT NULL AS claims_set;
SET LOCAL ROLE usage_tracking_admin;
SELECT i->>'install_id' AS install_id, i->>'account_id' AS account_id, i->>'total_requests' AS requests,
       i->>'total_tokens' AS tokens, i->>'estimated_cost_usd' AS cost
  FROM jsonb_array_elements(usage_api.installations('2025-10-01', '2025-10-03')) i
 WHERE i->>'account_id' LIKE 'acc_http_r%';
COMMIT;

-- GET /api/usage/quota: the installation must be the caller's (or the caller the admin).
CREATE FUNCTION t_api.quota(install text, claims text, role text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  r jsonb;
  msg text;
  det text;
BEGIN
  PERFORM set_config('request.jwt.claims', claims, true);
  PERFORM set_config('role', role, true);
  r := usage_api.quota(install);
  RETURN format('%s %s of %s (%s)', r->>'level', r->>'used', r->>'limit', r->>'plan');
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  RETURN format('%s %s %s', SQLSTATE, det::jsonb->>'status', msg::jsonb->>'code');
END $$;
SELECT t_api.quota('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1', :'reader1', 'usage_tracking_reader') AS own,
       t_api.quota('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_e1e1e1e1e1e1', :'reader1', 'usage_tracking_reader') AS other_account,
       t_api.quota('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_e1e1e1e1e1e1', '{"role": "usage_tracking_admin"}', 'usage_tracking_admin') AS admin,
       t_api.quota('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_ffffffffffff', '{"role": "usage_tracking_admin"}', 'usage_tracking_admin') AS unknown,
       t_api.quota('5b8e6d2f-1e3c-4d4b-8f9a-2b3c4d5e6f7a_d1d1d1d1d1d1', '{"role": "usage_tracking_reader"}', 'usage_tracking_reader') AS no_account_claim;

-- Who may call what.
SELECT f, r, has_function_privilege(r, f, 'EXECUTE') AS may
  FROM unnest(ARRAY['usage_api.summary(text, date, date, text)', 'usage_api.events(text, date, date, text, integer)',
                    'usage_api.installations(date, date)', 'usage_api.export(text, text, date, date)',
                    'usage_api.quota(text)']) f,
       unnest(ARRAY['usage_tracking_ingest', 'usage_tracking_reader', 'usage_tracking_analyst',
                    'usage_tracking_admin']) r
 ORDER BY 1, 2;
