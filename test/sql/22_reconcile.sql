-- Reconcile: re-derive a day's summaries from raw events, report the rows
-- that drifted and repair them; reprice after a price correction.  Its
-- pricing is the summary trigger's: row in force at created_at, the model's
-- own else '*', cached tokens at the cached price (prompt price when NULL).
\set VERBOSITY terse
\c ut_maint
SET client_min_messages = warning;
\set now0 '''2025-11-03 12:00:00+00'''
SELECT (usage_tracking.run_maintenance(:now0))->'partitions_created' AS created;

-- Prices that exercise every rule: a model priced from noon on, before that
-- the '*' fallback from 06:00, before that nothing; a NULL cached price.
SELECT usage_tracking.set_model_price('gpt-late', 1.00, 2.00, NULL, '2025-11-02 12:00:00+00');
SELECT usage_tracking.set_model_price('*', 0.50, 1.50, 0.25, '2025-11-02 06:00:00+00');
SELECT m.post(1, jsonb_agg(m.event('evt_r' || i, timestamptz '2025-11-02 00:30:00+00' + i * interval '47 minutes',
                                   100 + i, 10 + i % 5,
                                   (ARRAY['gpt-4o-mini', 'gpt-late', 'gpt-4o'])[1 + i % 3],
                                   usr => 1 + i % 2, cached => i % 40)),
              :now0)->'received' AS received
  FROM generate_series(1, 28) i;
SELECT m.fill(2, '2025-11-02', 3000);
-- The trigger and reconcile agree to the last digit: nothing to repair.
SELECT r->'rows_checked' AS checked, r->'drifted' AS drifted, r->'repaired' AS repaired
  FROM usage_tracking.reconcile('2025-11-02') r;
SELECT model, sum(total_requests) AS requests, sum(unpriced_requests) AS unpriced,
       sum(estimated_cost_usd) AS cost
  FROM usage_tracking.daily WHERE install_id = m.inst(1) GROUP BY model ORDER BY model;
SELECT count(*) AS drift FROM m.drift;

-- Corrupt the summaries on purpose: a count and a cost changed, a row
-- deleted, a row that no event supports.
UPDATE usage_tracking.daily SET total_requests = total_requests + 5, estimated_cost_usd = 0
 WHERE install_id = m.inst(1) AND usage_date = '2025-11-02' AND wp_user_id_hash = m.user_hash(1)
   AND model = 'gpt-4o-mini';
DELETE FROM usage_tracking.daily
 WHERE install_id = m.inst(1) AND usage_date = '2025-11-02' AND wp_user_id_hash = m.user_hash(2)
   AND model = 'gpt-late';
INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash, source, model, total_requests,
                                  prompt_tokens, completion_tokens)
VALUES (m.inst(2), '2025-11-02', m.user_hash(9), 'manual', 'phantom', 7, 700, 70);
SELECT side, model, total_requests, estimated_cost_usd FROM m.drift ORDER BY model, side;

-- Report only: every drifted row, stored against expected; nothing changes.
SELECT r->'drifted' AS drifted, r->'repaired' AS repaired FROM usage_tracking.reconcile('2025-11-02', false) r;
SELECT d->>'model' AS model, d->'stored'->'total_requests' AS stored_requests,
       d->'expected'->'total_requests' AS expected_requests,
       d->'stored'->'estimated_cost_usd' AS stored_cost, d->'expected'->'estimated_cost_usd' AS expected_cost
  FROM usage_tracking.reconcile('2025-11-02', false) r, jsonb_array_elements(r->'drift') d
 ORDER BY 1;
SELECT count(*) AS drift_still FROM m.drift;
-- Repair, then a second run finds nothing.
SELECT r->'drifted' AS drifted, r->'repaired' AS repaired FROM usage_tracking.reconcile('2025-11-02') r;
SELECT count(*) AS drift_after FROM m.drift;
SELECT r->'drifted' AS drifted FROM usage_tracking.reconcile('2025-11-02') r;
-- Days without events have nothing to check.
SELECT usage_tracking.reconcile('2025-11-01') - 'day' AS empty_day;
SELECT m.try($$SELECT usage_tracking.reconcile(NULL)::text$$) AS null_day;

-- A price corrected after the fact: costs are stale until reprice.
SELECT usage_tracking.set_model_price('gpt-4o-mini', 0.20, 0.80, NULL, '2025-11-02 12:00:00+00');
SELECT count(*) > 0 AS stale FROM m.drift;
SELECT usage_tracking.reprice('2025-11-01', '2025-11-03') AS reprice;
SELECT count(*) AS drift_after_reprice FROM m.drift;
SELECT m.try($$SELECT usage_tracking.reprice('2025-11-03', '2025-11-01')::text$$) AS bad_range;
SELECT job, count(*) FROM usage_tracking.maintenance_log GROUP BY 1 ORDER BY 1;
-- Leave no fallback price behind for the next tests, costs rebuilt.
DELETE FROM usage_tracking.model_prices WHERE model = '*';
SELECT (usage_tracking.reprice('2025-11-02', '2025-11-02'))->'repaired' AS repaired;
SELECT count(*) AS drift FROM m.drift;

\c contrib_regression
