-- Analytics over HTTP: the usage_api routes the dashboard reads, called the
-- way PostgREST and the gateway call them (as the role of the JWT, with the
-- claims in request.jwt.claims).  Own database: they span every account.
\set VERBOSITY terse
CREATE DATABASE analytics_api;
\c analytics_api
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The outcome of a statement: 'ok' or its SQLSTATE and message.
CREATE FUNCTION outcome(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION outcome(text) TO PUBLIC;

SELECT usage_tracking.set_model_price('ana-unit', 1, 0);
SELECT usage_tracking.create_account('ana_api', 'pro');
SELECT usage_tracking.register_installation('cccccccc-0000-4000-8000-000000000001_000000000001', 'ana_api') IS NOT NULL AS registered;
\set i '''cccccccc-0000-4000-8000-000000000001_000000000001'''
-- Direct inserts need their days' partitions first (there is no default partition).
SELECT usage_tracking.ensure_partitions('2025-11-01', '2025-11-30') >= 0 AS partitions_ready;
-- 2 requests a day from Nov 1 (1 000 prompt tokens each, 0.001 USD), 50 on Nov 12.
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at)
SELECT :i, 'e' || to_char(d, 'MMDD') || '-' || n, encode(sha256('\x01'), 'hex'),
       CASE WHEN n % 2 = 0 THEN 'bulk' ELSE 'inline' END, 'ana-unit', 1000, 0, d + time '09:00' + n * interval '1 minute'
  FROM generate_series(date '2025-11-01', '2025-11-12', '1 day') d,
       generate_series(1, 50) n
 WHERE n <= 2 OR d = '2025-11-12';

SET ROLE usage_tracking_admin;
SELECT set_config('request.jwt.claims', '{"role":"usage_tracking_admin","sub":"ops"}', false) IS NOT NULL AS claims_set;
SELECT jsonb_pretty(usage_api.analytics_overview('2025-11-12') - 'projection');
SELECT jsonb_array_length(d) AS days, d->0 AS first_day, d->11 AS last_day
  FROM usage_api.analytics_daily('2025-11-01', '2025-11-12') d;
SELECT usage_api.analytics_daily('2025-11-12', '2025-11-12', install_id => :i)->0->'requests' AS requests;
SELECT jsonb_pretty(usage_api.analytics_top_installations('2025-11-01', '2025-11-30', by => 'requests', lim => 5));
SELECT a->>'kind' AS kind, a->>'id' AS id, a->>'metric' AS metric, a->>'score' AS score, a->>'direction' AS direction
  FROM jsonb_array_elements(usage_api.analytics_anomalies('2025-11-12')) a;
SELECT usage_api.analytics_anomalies('2025-11-11') AS ordinary_day;
SELECT b->>'source' AS source, b->>'total_requests' AS requests, b->>'cost_share_pct' AS share
  FROM jsonb_array_elements(usage_api.analytics_breakdown('source', '2025-11-01', '2025-11-30')) b;
SELECT b->>'model' AS model, b->>'estimated_cost_usd' AS cost
  FROM jsonb_array_elements(usage_api.analytics_breakdown('model', '2025-11-01', '2025-11-30', :i)) b;
SELECT outcome($$SELECT usage_api.analytics_breakdown('day', '2025-11-01', '2025-11-30')$$) AS bad_by;
SELECT outcome($$SELECT usage_api.analytics_daily('2025-11-30', '2025-11-01')$$) AS inverted;
SELECT jsonb_pretty(usage_api.analytics_installation(:i, '2025-11-12') - 'created_at');
-- an unknown installation is a 404 (PostgREST maps SQLSTATE PT404 to it)
SELECT outcome($$SELECT usage_api.analytics_installation('dddddddd-0000-4000-8000-000000000001_000000000001', '2025-11-12')$$) AS unknown;
SELECT usage_api.analytics_projection('ana_api', '2025-11-01')->'status' AS status;
RESET ROLE;

-- The analyst may read them too; a reader or the ingest role may not.
SET ROLE usage_tracking_analyst;
SELECT usage_api.analytics_overview('2025-11-12')->'today'->'requests' AS analyst_today;
RESET ROLE;
SELECT r.rolname, count(*) FILTER (WHERE has_function_privilege(r.rolname, p.oid, 'EXECUTE')) AS may_execute,
       count(*) AS routes
  FROM pg_proc p
 CROSS JOIN (VALUES ('usage_tracking_admin'), ('usage_tracking_analyst'),
                    ('usage_tracking_reader'), ('usage_tracking_ingest'), ('public')) r(rolname)
 WHERE p.pronamespace = 'usage_api'::regnamespace AND p.proname LIKE 'analytics%'
 GROUP BY r.rolname ORDER BY r.rolname;
SET ROLE usage_tracking_reader;
SELECT outcome($$SELECT usage_tracking.anomalies('2025-11-12')$$) AS reader_anomalies;
RESET ROLE;
-- Every analytics route is STABLE, so PostgREST serves it over GET.
SELECT p.proname, p.provolatile
  FROM pg_proc p
 WHERE p.pronamespace = 'usage_api'::regnamespace AND p.proname LIKE 'analytics%'
 ORDER BY 1;

\c contrib_regression
DROP DATABASE analytics_api;
