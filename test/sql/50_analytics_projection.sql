-- Analytics: cost projection, daily totals, top installations, breakdowns.
-- Cross-account results would see other suites' data, so this runs in its own
-- database.  Prices make every request a round figure: model ana-unit costs
-- 1 USD per 1 M prompt tokens, ana-half 0.5, and each request here sends
-- 1 000 000 prompt tokens, so it costs 1 USD (ana-unit) or 0.5 USD (ana-half).
\set VERBOSITY terse
CREATE DATABASE analytics_projection;
\c analytics_projection
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

SELECT usage_tracking.set_model_price('ana-unit', 1, 0);
SELECT usage_tracking.set_model_price('ana-half', 0.5, 0);
SELECT usage_tracking.create_account('ana_proj', 'pro'), usage_tracking.create_account('ana_other', 'pro');
SELECT usage_tracking.register_installation('aaaaaaaa-0000-4000-8000-000000000001_00000000000a', 'ana_proj') IS NOT NULL AS a,
       usage_tracking.register_installation('aaaaaaaa-0000-4000-8000-000000000002_00000000000b', 'ana_proj') IS NOT NULL AS b,
       usage_tracking.register_installation('aaaaaaaa-0000-4000-8000-000000000003_00000000000c', 'ana_other') IS NOT NULL AS c;

-- n requests of one model on one UTC day, through the raw events table (its
-- trigger keeps the daily summaries, which is all analytics reads).
-- Direct inserts need their days' partitions first (there is no default partition).
SELECT usage_tracking.ensure_partitions('2025-10-01', '2025-12-01') >= 0 AS partitions_ready;
CREATE FUNCTION seed(inst text, day date, n int, model text, src text DEFAULT 'bulk') RETURNS bigint
LANGUAGE sql AS $$
  WITH ins AS (
  INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                     prompt_tokens, completion_tokens, created_at)
  SELECT inst, model || '-' || src || '-' || to_char(day, 'YYYYMMDD') || '-' || i,
         encode(sha256(convert_to('user' || (i % 3), 'UTF8')), 'hex'), src, model,
         1000000, 0, day + time '10:00' + i * interval '1 minute'
    FROM generate_series(1, n) i
  RETURNING 1)
  SELECT count(*) FROM ins
$$;
\set a '''aaaaaaaa-0000-4000-8000-000000000001_00000000000a'''
\set b '''aaaaaaaa-0000-4000-8000-000000000002_00000000000b'''
\set c '''aaaaaaaa-0000-4000-8000-000000000003_00000000000c'''

-- October 28-31: 5 requests a day (last month: not month to date).
SELECT sum(seed(:a, d::date, 5, 'ana-unit')) AS events FROM generate_series(date '2025-10-28', '2025-10-31', '1 day') d;
-- November 1-3: 1 request a day, 1 USD.
SELECT sum(seed(:a, d::date, 1, 'ana-unit')) AS events FROM generate_series(date '2025-11-01', '2025-11-03', '1 day') d;
-- November 4-10: 3 requests a day, 2 x ana-unit + 1 x ana-half = 2.5 USD.
SELECT sum(seed(:a, d::date, 2, 'ana-unit', 'queue')) AS events FROM generate_series(date '2025-11-04', '2025-11-10', '1 day') d;
SELECT sum(seed(:b, d::date, 1, 'ana-half', 'manual')) AS events FROM generate_series(date '2025-11-04', '2025-11-10', '1 day') d;
-- November 11 so far: 1 request, 1 USD.
SELECT seed(:a, '2025-11-11', 1, 'ana-unit');
-- Another account: 100 requests on November 5.
SELECT seed(:c, '2025-11-05', 100, 'ana-unit');

-- At 2025-11-11 12:00 UTC, 10.5 of November's 30 days have elapsed.
--   month to date: 3 + 7 x 3 + 1 = 25 requests; 3 + 7 x 2.5 + 1 = 21.5 USD
--   trailing 7 whole days (Nov 4-10): 3 requests and 2.5 USD a day
--   run rate:  21.5 + 2.5 x 19.5 = 70.25 USD;  25 + 3 x 19.5 = 83.5 -> 84 requests
--   linear:    21.5 x 30 / 10.5 = 61.428571 USD;  25 x 30 / 10.5 = 71.43 -> 71 requests
--   ana-unit:  18 USD; 2 a day -> 18 + 39 = 57;  18 x 30 / 10.5 = 51.428571
--   ana-half:  3.5 USD; 0.5 a day -> 3.5 + 9.75 = 13.25;  3.5 x 30 / 10.5 = 10
SELECT jsonb_pretty(usage_tracking.cost_projection('ana_proj', NULL, '2025-11-11 12:00:00+00'));
SELECT p->'projected_run_rate'->>'cost_usd' = '70.25' AS run_rate_ok,
       p->'projected_linear'->>'cost_usd' = round(21.5 * 30 / 10.5, 6)::text AS linear_ok,
       (p->'month_to_date'->>'cost_usd')::numeric = 21.5 AS mtd_ok
  FROM usage_tracking.cost_projection('ana_proj', '2025-11-20', '2025-11-11 12:00:00+00') p;
-- the per-model projections add up to the total
SELECT sum((m->>'projected_run_rate_cost_usd')::numeric) AS run_rate_sum,
       sum((m->>'projected_linear_cost_usd')::numeric) AS linear_sum
  FROM jsonb_array_elements(usage_tracking.cost_projection('ana_proj', NULL, '2025-11-11 12:00:00+00')->'by_model') m;

-- A past month is complete: the projections are the actual figures.
SELECT p->>'status' AS status, p->'month_to_date' AS mtd,
       p->'projected_run_rate' AS run_rate, p->'projected_linear' AS linear
  FROM usage_tracking.cost_projection('ana_proj', '2025-10-01', '2025-11-11 12:00:00+00') p;
-- A future month: nothing elapsed, no linear figure, the run rate for 31 days.
SELECT p->>'status' AS status, p->'projected_run_rate'->>'cost_usd' AS run_rate_cost,
       p->'projected_linear' AS linear
  FROM usage_tracking.cost_projection('ana_proj', '2025-12-01', '2025-11-11 12:00:00+00') p;
-- NULL account: every account (ana_other adds 100 requests on Nov 5).
SELECT p->'month_to_date'->>'requests' AS requests, p->'month_to_date'->>'cost_usd' AS cost
  FROM usage_tracking.cost_projection(NULL, NULL, '2025-11-11 12:00:00+00') p;
-- At midnight after Nov 10: exactly 10 days elapsed, the rate window is Nov 4-10.
SELECT p->'days_elapsed' AS elapsed, p->'run_rate_7d' AS rate,
       p->'projected_linear'->>'cost_usd' AS linear_cost
  FROM usage_tracking.cost_projection('ana_proj', NULL, '2025-11-11 00:00:00+00') p;
-- An account without usage, and an unknown account.
SELECT usage_tracking.create_account('ana_empty');
SELECT p->'month_to_date' AS mtd, p->'projected_linear' AS linear, p->'by_model' AS by_model
  FROM usage_tracking.cost_projection('ana_empty', NULL, '2025-11-11 12:00:00+00') p;
SELECT usage_tracking.cost_projection('nobody', NULL, '2025-11-11 12:00:00+00');

-- Daily totals: one row a day, zeros included.
SELECT * FROM usage_tracking.daily_totals('2025-11-09', '2025-11-12');
SELECT usage_date, total_requests, estimated_cost_usd
  FROM usage_tracking.daily_totals('2025-11-04', '2025-11-05', install_id => :b);
SELECT usage_date, total_requests FROM usage_tracking.daily_totals('2025-11-05', '2025-11-05', account_id => 'ana_other');
SELECT * FROM usage_tracking.daily_totals('2025-11-05', '2025-11-01');
SELECT * FROM usage_tracking.daily_totals(NULL, '2025-11-01');

-- Top installations by cost, requests and tokens.
SELECT rank, install_id, account_id, total_requests, total_tokens, estimated_cost_usd, active_days, share_pct
  FROM usage_tracking.top_installations('2025-11-01', '2025-11-30');
SELECT rank, install_id, total_requests, share_pct
  FROM usage_tracking.top_installations('2025-11-01', '2025-11-30', 'requests', 2);
SELECT rank, install_id FROM usage_tracking.top_installations('2025-11-04', '2025-11-04', by => 'tokens');
SELECT * FROM usage_tracking.top_installations('2025-11-01', '2025-11-30', 'profit');
SELECT * FROM usage_tracking.top_installations('2025-11-01', '2025-11-30', 'cost', 0);

-- Breakdowns by model and by source across every account, and for one installation.
SELECT * FROM usage_tracking.model_breakdown('2025-11-01', '2025-11-30');
SELECT * FROM usage_tracking.source_breakdown('2025-11-01', '2025-11-30');
SELECT source, total_requests, estimated_cost_usd
  FROM usage_tracking.source_breakdown('2025-11-01', '2025-11-30', :a);

-- The overview at the end of Nov 10: today is Nov 10, 10 days elapsed.
SELECT jsonb_pretty(usage_tracking.provider_overview('2025-11-10') - 'projection');

-- Who may call these: admin and analyst, nobody else.
SELECT r.rolname, p.proname,
       has_function_privilege(r.rolname, p.oid, 'EXECUTE') AS can_execute
  FROM pg_proc p
 CROSS JOIN (VALUES ('usage_tracking_admin'), ('usage_tracking_analyst'),
                    ('usage_tracking_reader'), ('usage_tracking_ingest')) r(rolname)
 WHERE p.pronamespace = 'usage_tracking'::regnamespace
   AND p.proname IN ('cost_projection', 'anomalies', 'top_installations', 'daily_totals',
                     'model_breakdown', 'source_breakdown', 'provider_overview', '_breakdown')
 ORDER BY p.proname, r.rolname;
SELECT count(*) AS public_can_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'usage_tracking'::regnamespace
   AND p.proname IN ('cost_projection', 'anomalies', 'top_installations', 'daily_totals',
                     'model_breakdown', 'source_breakdown', 'provider_overview', '_breakdown', '_analytics_range')
   AND has_function_privilege('public', p.oid, 'EXECUTE');

-- Analytics reads the summaries only: with the raw events table renamed away
-- (rolled back), every function still answers.
BEGIN;
ALTER TABLE usage_tracking.events RENAME TO events_hidden;
SELECT (SELECT count(*) FROM usage_tracking.daily_totals('2025-11-01', '2025-11-30')) AS days,
       usage_tracking.cost_projection('ana_proj', NULL, '2025-11-11 12:00:00+00')->'projected_run_rate'->>'cost_usd' AS run_rate,
       (SELECT count(*) FROM usage_tracking.anomalies('2025-11-11')) >= 0 AS anomalies_ran,
       (SELECT count(*) FROM usage_tracking.top_installations('2025-11-01', '2025-11-30')) AS top,
       (SELECT count(*) FROM usage_tracking.model_breakdown('2025-11-01', '2025-11-30')) AS models,
       (SELECT count(*) FROM usage_tracking.source_breakdown('2025-11-01', '2025-11-30')) AS sources,
       usage_tracking.provider_overview('2025-11-10')->'today'->>'requests' AS overview_today;
ROLLBACK;

\c contrib_regression
DROP DATABASE analytics_projection;
