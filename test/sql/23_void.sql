-- Corrections: void_event marks an event void and takes it out of its
-- summary in the same transaction, keeps an audit trail, and a resend of a
-- voided event stays a duplicate.
\set VERBOSITY terse
\c ut_maint
SET client_min_messages = warning;
\set now0 '''2025-11-04 18:00:00+00'''
SELECT usage_tracking.run_maintenance(:now0)->'partitions_created' AS created;
-- gpt-noon is priced from noon only: its morning event is unpriced, its
-- afternoon one priced, both in the same summary row.
SELECT usage_tracking.set_model_price('gpt-noon', 3.00, 6.00, 1.00, '2025-11-04 12:00:00+00');
SELECT m.post(1, jsonb_build_array(
         m.event('evt_v1', '2025-11-04 09:00:00+00', 1000, 200, cached => 400),
         m.event('evt_v2', '2025-11-04 09:05:00+00', 500, 100),
         m.event('evt_v3', '2025-11-04 09:10:00+00', 300, 30, 'nobody-prices-me', usr => 2),
         m.event('evt_v4', '2025-11-04 10:00:00+00', 100, 10, 'gpt-noon', usr => 3),
         m.event('evt_v5', '2025-11-04 13:00:00+00', 100, 10, 'gpt-noon', usr => 3)),
       :now0)->'received' AS received;
CREATE VIEW v_daily AS
SELECT model, wp_user_id_hash = m.user_hash(1) AS user1, total_requests, prompt_tokens, completion_tokens,
       cached_prompt_tokens, estimated_cost_usd, unpriced_requests
  FROM usage_tracking.daily WHERE install_id = m.inst(1) AND usage_date = '2025-11-04';
SELECT * FROM v_daily ORDER BY model;

-- Void one of two events in a summary row.
SELECT r - 'voided_at' AS voided FROM usage_tracking.void_event(m.inst(1), 'evt_v1', 'generation failed, billed twice') r;
SELECT * FROM v_daily ORDER BY model;
SELECT count(*) AS drift FROM m.drift;
SELECT event_id FROM usage_tracking.usage_events WHERE install_id = m.inst(1) AND event_id LIKE 'evt_v%' ORDER BY 1;
SELECT event_id, voided_at IS NOT NULL AS voided FROM usage_tracking.events
 WHERE install_id = m.inst(1) AND event_id LIKE 'evt_v%' ORDER BY 1;
SELECT install_id = m.inst(1) AS inst, event_id, source, model, prompt_tokens, completion_tokens,
       cached_prompt_tokens, cost_usd, reason, voided_by = session_user AS by_me
  FROM usage_tracking.event_voids;

-- The site resends it: a duplicate, still void, not counted again.
SELECT m.post(1, jsonb_build_array(m.event('evt_v1', '2025-11-04 09:00:00+00', 1000, 200, cached => 400)),
              :now0::timestamptz + interval '10 minutes') AS resend;
SELECT * FROM v_daily WHERE model = 'gpt-4o-mini';
-- Voiding it again changes nothing.
SELECT r - 'voided_at' AS again FROM usage_tracking.void_event(m.inst(1), 'evt_v1', 'again') r;
SELECT count(*) AS audit_rows FROM usage_tracking.event_voids;

-- The last event of a row: the row goes.
SELECT (usage_tracking.void_event(m.inst(1), 'evt_v3', 'test call'))->'subtracted' AS subtracted;
SELECT count(*) AS rows_left FROM v_daily WHERE model = 'nobody-prices-me';
-- The only priced event of a row: its cost becomes NULL, not 0.
SELECT (usage_tracking.void_event(m.inst(1), 'evt_v5', 'test call'))->'subtracted' AS subtracted;
SELECT * FROM v_daily WHERE model = 'gpt-noon';
SELECT count(*) AS drift FROM m.drift;
SELECT r->'drifted' AS drifted FROM usage_tracking.reconcile('2025-11-04') r;

-- Refusals.
SELECT m.try(format('SELECT usage_tracking.void_event(%L, %L, %L)::text', m.inst(1), 'evt_nope', 'x')) AS unknown_event;
SELECT m.try(format('SELECT usage_tracking.void_event(%L, %L, %L)::text',
                    'dec0de00-0000-4000-8000-000000000009_0000000000a9', 'evt_v2', 'x')) AS unknown_installation;
SELECT m.try(format('SELECT usage_tracking.void_event(%L, %L, %L)::text', m.inst(1), 'evt_v2', ' ')) AS no_reason;
SELECT m.try(format('SELECT usage_tracking.void_event(%L, %L, NULL)::text', m.inst(1), 'evt_v2')) AS null_reason;
-- Installation 2 cannot void installation 1's event by its id.
SELECT m.try(format('SELECT usage_tracking.void_event(%L, %L, %L)::text', m.inst(2), 'evt_v2', 'x')) AS other_installation;
SELECT count(*) AS drift FROM m.drift;
-- Voided events no longer count in the account's quota nor the hour's usage.
SELECT q.recorded = (SELECT count(*) FROM usage_tracking.events e
                       JOIN usage_tracking.installations i USING (install_id)
                      WHERE i.account_id = q.account_id AND e.voided_at IS NULL
                        AND e.created_at >= '2025-11-01 00:00+00' AND e.created_at < '2025-12-01 00:00+00')
       AS quota_counts_unvoided
  FROM usage_tracking.quota_usage q
 WHERE q.account_id = (SELECT account_id FROM usage_tracking.installations WHERE install_id = m.inst(1))
   AND q.month = '2025-11-01';
SELECT h.requests AS requests_0900, h.tokens AS tokens_0900 FROM usage_tracking.hourly_usage h
 WHERE h.install_id = m.inst(1) AND h.hour = '2025-11-04 09:00:00+00';
-- Voided events are in no read of raw events.
SELECT event_id FROM usage_tracking.usage_events WHERE install_id = m.inst(1) AND event_id LIKE 'evt_v%' ORDER BY 1;
SELECT event_id FROM usage_tracking.list_events(m.inst(1), lim => 1000) WHERE event_id LIKE 'evt_v%' ORDER BY 1;
SELECT count(*) FILTER (WHERE line LIKE '%evt_v1%' OR line LIKE '%evt_v3%' OR line LIKE '%evt_v5%') AS voided_lines,
       count(*) FILTER (WHERE line LIKE '%evt_v2%' OR line LIKE '%evt_v4%') AS kept_lines
  FROM usage_tracking.export_csv('events', m.inst(1)) AS line;
DROP VIEW v_daily;
\c contrib_regression
