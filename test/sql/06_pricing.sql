-- Prices: the row in force at created_at, the cached rate, the '*'
-- fallback, unpriced events, and a DBA's plain INSERT.
\set VERBOSITY terse
\set inst '''6fa459ea-ee8a-4ca4-894e-db77e160355e_0123456789ab'''
\set now '''2025-11-03 12:00:00+00'''
SELECT usage_tracking.rotate_installation_secret(:inst, 'pricing-secret-0123456789', :now) IS NOT NULL AS registered;

-- price-test-model costs 1/2/0.5 until noon on Nov 2, then 3/4 with no cached rate
SELECT usage_tracking.set_model_price('price-test-model', 1, 2, 0.5);
SELECT usage_tracking.set_model_price('price-test-model', 3, 4, NULL, '2025-11-02 12:00:00+00');

SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('p1', '2025-11-02 11:59:59+00', 1000000, 1000000, 'price-test-model', cached => 400000),
         t.event('p2', '2025-11-02 12:00:00+00', 1000000, 1000000, 'price-test-model', cached => 400000),
         t.event('p3', '2025-11-02 13:00:00+00', 10, 10, 'no-price-yet')
       )), 'pricing-secret-0123456789', :now) - 'quota' AS response;
-- p1: 600000*1 + 400000*0.5 + 1000000*2 = 2.8 USD; p2: 1000000*3 + 1000000*4 = 7 USD
SELECT model, total_requests, estimated_cost_usd, unpriced_requests
  FROM usage_tracking.daily WHERE install_id = :inst ORDER BY model;

-- A fallback price catches models without their own, from its effective time on.
SELECT usage_tracking.set_model_price('*', 10, 10, NULL, '2025-11-02 13:30:00+00');
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('p4', '2025-11-02 13:00:00+00', 10, 10, 'no-price-yet'),
         t.event('p5', '2025-11-02 14:00:00+00', 100000, 100000, 'no-price-yet')
       )), 'pricing-secret-0123456789', :now)->'received' AS received;
SELECT model, total_requests, estimated_cost_usd, unpriced_requests
  FROM usage_tracking.daily WHERE install_id = :inst ORDER BY model;

-- A plain INSERT by a DBA keeps the summaries right too, also across several rows.
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, cached_prompt_tokens, created_at)
SELECT :inst, 'dba' || i, t.user_hash(9), 'manual', 'price-test-model', 1000, 100, 0,
       timestamptz '2025-11-02 20:00:00+00' + i * interval '1 minute'
  FROM generate_series(1, 5) i;
SELECT model, source, total_requests, prompt_tokens, estimated_cost_usd
  FROM usage_tracking.daily WHERE install_id = :inst AND source = 'manual';
-- ON CONFLICT DO NOTHING counts only what it inserted
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at)
SELECT :inst, 'dba' || i, t.user_hash(9), 'manual', 'price-test-model', 1000, 100,
       timestamptz '2025-11-02 20:00:00+00' + i * interval '1 minute'
  FROM generate_series(1, 6) i
ON CONFLICT DO NOTHING;
SELECT total_requests FROM usage_tracking.daily WHERE install_id = :inst AND source = 'manual';
-- a price changed in this transaction applies to the very next insert
BEGIN;
SELECT usage_tracking.set_model_price('price-test-model', 30, 40, NULL, '2025-11-02 12:00:00+00');
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('p6', '2025-11-02 15:00:00+00', 1000000, 0, 'price-test-model', source => 'queue'))),
         'pricing-secret-0123456789', :now)->'received' AS received;
SELECT estimated_cost_usd FROM usage_tracking.daily WHERE install_id = :inst AND source = 'queue';
ROLLBACK;

-- bad prices are refused by CHECK constraints
SELECT usage_tracking.set_model_price('bad model', 1, 1);
SELECT usage_tracking.set_model_price('x', -1, 1);
-- Summaries keep the price in force when they were written: after the '*'
-- fallback arrived, only the older unpriced events elsewhere differ from a
-- re-pricing; this installation's rows all match.
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst;
DELETE FROM usage_tracking.model_prices WHERE model = '*';
