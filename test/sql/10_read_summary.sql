-- Read side: usage_summary under every group_by equals a GROUP BY over raw
-- events, its errors, and a plan that reads the daily table only.  Creates
-- the accounts and installations the other read tests (11-13) use.
\set VERBOSITY terse
\set a1 '''a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1'''
\set a2 '''a2a2a2a2-1010-4010-8010-101010101010_1010a2a2a2a2'''
\set b1 '''b1b1b1b1-1010-4010-8010-101010101010_1010b1b1b1b1'''
\set now '''2025-11-03 12:00:00+00'''

SELECT usage_tracking.create_account('acc_read_a', 'agency'), usage_tracking.create_account('acc_read_b', 'pro');
SELECT usage_tracking.register_installation(:a1, 'acc_read_a', 'read-secret-a1-0123456789') IS NOT NULL AS a1,
       usage_tracking.register_installation(:a2, 'acc_read_a', 'read-secret-a2-0123456789') IS NOT NULL AS a2,
       usage_tracking.register_installation(:b1, 'acc_read_b', 'read-secret-b1-0123456789') IS NOT NULL AS b1;

-- Events over five weeks, several users, sources and models (one unpriced).
CREATE FUNCTION t.read_events(prefix text, n int, seed int) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_agg(t.event(prefix || i,
                           timestamptz '2025-09-29 00:00:00+00' + (i * 37 + seed) % 840 * interval '1 hour'
                             + i * interval '1 second',
                           (i * 13 + seed) % 700, (i * 7) % 120,
                           (ARRAY['gpt-4o-mini', 'gpt-4o', 'mystery-model'])[1 + (i + seed) % 3],
                           (ARRAY['manual', 'bulk', 'queue', 'inline'])[1 + (i * 3 + seed) % 4],
                           1 + (i + seed) % 3, ((i * 13 + seed) % 700) / 4) ORDER BY i)
    FROM generate_series(1, n) i
$$;
SELECT t.post(t.batch(:a1, t.read_events('ra1_', 400, 1)), 'read-secret-a1-0123456789', :now)->'received' AS a1,
       t.post(t.batch(:a2, t.read_events('ra2_', 300, 2)), 'read-secret-a2-0123456789', :now)->'received' AS a2,
       t.post(t.batch(:b1, t.read_events('rb1_', 200, 3)), 'read-secret-b1-0123456789', :now)->'received' AS b1;

-- Every non-empty combination of the five keys, in canonical order.
CREATE TABLE t.read_combos AS
SELECT b AS bits, string_agg(k, ',' ORDER BY o) AS group_by
  FROM generate_series(1, 31) b,
       unnest(ARRAY['day', 'install', 'user', 'source', 'model']) WITH ORDINALITY u(k, o)
 WHERE b & (1 << (o::int - 1)) <> 0
 GROUP BY b;
SELECT count(*) AS combinations FROM t.read_combos;

-- The oracle: a GROUP BY CUBE over summaries re-derived from raw events
-- (t.oracle prices each event at the row in force), labelled with the keys
-- each grouping set keeps.
CREATE FUNCTION t.read_oracle(installs text[], date_from date, date_to date)
RETURNS TABLE (group_by text, usage_date date, install_id text, wp_user_id_hash text, source text, model text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               cached_prompt_tokens bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql AS $$
  SELECT concat_ws(',', CASE WHEN GROUPING(o.usage_date) = 0 THEN 'day' END,
                        CASE WHEN GROUPING(o.install_id) = 0 THEN 'install' END,
                        CASE WHEN GROUPING(o.wp_user_id_hash) = 0 THEN 'user' END,
                        CASE WHEN GROUPING(o.source) = 0 THEN 'source' END,
                        CASE WHEN GROUPING(o.model) = 0 THEN 'model' END),
         o.usage_date, o.install_id, o.wp_user_id_hash, o.source, o.model,
         sum(o.total_requests)::bigint, sum(o.prompt_tokens)::bigint, sum(o.completion_tokens)::bigint,
         sum(o.cached_prompt_tokens)::bigint, sum(o.prompt_tokens + o.completion_tokens)::bigint,
         sum(o.estimated_cost_usd)::numeric(30,12)
    FROM t.oracle o
   WHERE o.install_id = ANY (installs) AND o.usage_date BETWEEN date_from AND date_to
   GROUP BY CUBE (o.usage_date, o.install_id, o.wp_user_id_hash, o.source, o.model)
  HAVING GROUPING(o.usage_date, o.install_id, o.wp_user_id_hash, o.source, o.model) <> 31
$$;

-- usage_summary for every combination, in one result.
CREATE FUNCTION t.read_summaries(install text, date_from date, date_to date)
RETURNS TABLE (group_by text, usage_date date, install_id text, wp_user_id_hash text, source text, model text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               cached_prompt_tokens bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql AS $$
  SELECT c.group_by, s.usage_date, s.install_id, s.wp_user_id_hash, s.source, s.model,
         s.total_requests, s.prompt_tokens, s.completion_tokens, s.cached_prompt_tokens,
         s.total_tokens, s.estimated_cost_usd::numeric(30,12)
    FROM t.read_combos c,
         LATERAL usage_tracking.usage_summary(install, date_from, date_to, c.group_by) s
$$;

-- Rows on one side only, per combination (all zero when right).
CREATE FUNCTION t.read_compare(install text, installs text[], date_from date, date_to date)
RETURNS TABLE (combinations bigint, summary_rows bigint, oracle_rows bigint, drifting_rows bigint)
LANGUAGE sql AS $$
  WITH s AS (SELECT * FROM t.read_summaries(install, date_from, date_to)),
       o AS (SELECT * FROM t.read_oracle(installs, date_from, date_to)),
       d AS ((SELECT * FROM s EXCEPT ALL SELECT * FROM o) UNION ALL (SELECT * FROM o EXCEPT ALL SELECT * FROM s))
  SELECT (SELECT count(DISTINCT group_by) FROM s), (SELECT count(*) FROM s),
         (SELECT count(*) FROM o), (SELECT count(*) FROM d)
$$;

-- One installation, the whole range and a window inside it.
SELECT * FROM t.read_compare(:a1, ARRAY[:a1], '2025-09-01', '2025-11-30');
SELECT * FROM t.read_compare(:a2, ARRAY[:a2], '2025-10-06', '2025-10-19');
-- Without install_id: every installation the caller may see.  The reader of
-- account A sees A's two installations and nothing of B.
CREATE TABLE t.read_expected AS SELECT * FROM t.read_oracle(ARRAY[:a1, :a2], '2025-09-01', '2025-11-30');
BEGIN;
SET LOCAL ROLE usage_tracking_reader;
SELECT set_config('request.jwt.claims', '{"role": "usage_tracking_reader", "account_id": "acc_read_a"}', true) IS NOT NULL AS claims_set;
CREATE TEMP TABLE read_got ON COMMIT DROP AS
SELECT c.group_by, s.usage_date, s.install_id, s.wp_user_id_hash, s.source, s.model,
       s.total_requests, s.prompt_tokens, s.completion_tokens, s.cached_prompt_tokens,
       s.total_tokens, s.estimated_cost_usd::numeric(30,12) AS estimated_cost_usd
  FROM (VALUES ('day'), ('install'), ('day,install'), ('day,install,user,source,model'), ('model'), ('user,source')) c(group_by),
       LATERAL usage_tracking.usage_summary(NULL, '2025-09-01', '2025-11-30', c.group_by) s;
RESET ROLE;
SELECT count(*) AS reader_rows,
       (SELECT count(*) FROM ((SELECT * FROM read_got EXCEPT ALL
                               SELECT * FROM t.read_expected WHERE group_by IN (SELECT group_by FROM read_got))
                              UNION ALL
                              (SELECT * FROM t.read_expected WHERE group_by IN (SELECT group_by FROM read_got)
                               EXCEPT ALL SELECT * FROM read_got)) x) AS drifting_rows,
       count(*) FILTER (WHERE install_id = :b1) AS rows_of_b
  FROM read_got;
COMMIT;

-- Shapes: columns not grouped are NULL; NULL group_by is 'day'; keys are
-- case- and space-insensitive and may repeat.
SELECT * FROM usage_tracking.usage_summary(:a1, '2025-10-01', '2025-10-03');
SELECT usage_date, install_id IS NULL AS no_install, model, total_requests, total_tokens, estimated_cost_usd
  FROM usage_tracking.usage_summary(:a1, '2025-10-01', '2025-10-02', ' Model , DAY,model');
SELECT count(*) AS days FROM usage_tracking.usage_summary(:a1, '2025-10-01', '2025-10-07', NULL);
SELECT * FROM usage_tracking.usage_summary(:a1, '2025-10-01', '2025-10-01', 'install');
-- An unpriced model: requests counted, cost NULL.
SELECT model, total_requests, estimated_cost_usd
  FROM usage_tracking.usage_summary(:a1, NULL, NULL, 'model');
-- Nothing to see: an unknown installation, an empty range.
SELECT count(*) AS rows FROM usage_tracking.usage_summary('00000000-0000-4000-8000-000000000000_000000000000');
SELECT count(*) AS rows FROM usage_tracking.usage_summary(:a1, '2024-01-01', '2024-01-31');

-- Bad arguments: SQLSTATE 22023 with a clear message.
CREATE FUNCTION t.read_try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE 'SELECT count(*) FROM (' || q || ') x';
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT q, t.read_try(q) FROM (VALUES
  ($$SELECT * FROM usage_tracking.usage_summary(NULL, NULL, NULL, 'day,week')$$),
  ($$SELECT * FROM usage_tracking.usage_summary(NULL, NULL, NULL, '')$$),
  ($$SELECT * FROM usage_tracking.usage_summary(NULL, NULL, NULL, 'day,')$$),
  ($$SELECT * FROM usage_tracking.usage_summary(NULL, NULL, NULL, 'installs')$$),
  ($$SELECT * FROM usage_tracking.usage_summary(NULL, '2025-11-03', '2025-11-01')$$),
  ($$SELECT * FROM usage_tracking.usage_summary(group_by => 'user;model')$$)) v(q);
-- The same with the arguments as parameters (a PL/pgSQL caller).
CREATE FUNCTION pg_temp.read_param(g text, f date, t date) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT count(*) FROM usage_tracking.usage_summary(NULL, f, t, g));
END $$;
SELECT t.read_try($$SELECT pg_temp.read_param('day,bogus', NULL, NULL)$$) AS bad_key,
       t.read_try($$SELECT pg_temp.read_param('day', '2025-11-02', '2025-11-01')$$) AS inverted,
       t.read_try($$SELECT pg_temp.read_param('day', '2025-11-01', '2025-11-01')$$) AS one_day;

-- The plan of a one-installation, 90-day summary reads the daily table and
-- no raw-event relation, with the 90 days of event partitions in place.
CREATE FUNCTION pg_temp.read_plan_relations(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
  RETURN QUERY SELECT DISTINCT r #>> '{}' FROM jsonb_path_query(plan, 'strict $.**."Relation Name"') r;
END $$;
BEGIN;
SELECT usage_tracking.ensure_partitions('2025-08-05', '2025-11-03') > 0 AS partitions_created;
SELECT count(*) FILTER (WHERE r LIKE 'events%') AS event_relations,
       count(*) FILTER (WHERE r LIKE 'daily%') AS daily_relations
  FROM pg_temp.read_plan_relations($$SELECT * FROM usage_tracking.usage_summary(
         'a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', '2025-08-05', '2025-11-02', 'day')$$) r;
SELECT count(*) FILTER (WHERE r LIKE 'events%') AS event_relations,
       count(*) FILTER (WHERE r LIKE 'daily%') AS daily_relations
  FROM pg_temp.read_plan_relations($$SELECT * FROM usage_tracking.usage_summary(
         NULL, '2025-08-05', '2025-11-02', 'day,install,model')$$) r;
-- A generic plan (arguments as parameters) reads no raw events either.
PREPARE read_summary(text, date, date, text) AS SELECT * FROM usage_tracking.usage_summary($1, $2, $3, $4);
SET LOCAL plan_cache_mode = force_generic_plan;
SELECT count(*) FILTER (WHERE r LIKE 'events%') AS event_relations,
       count(*) FILTER (WHERE r LIKE 'daily%') AS daily_relations
  FROM pg_temp.read_plan_relations($$EXECUTE read_summary(
         'a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', '2025-08-05', '2025-11-02', 'day')$$) r;
DEALLOCATE read_summary;
-- As a reader (row-level security adds its own quals).
SET LOCAL ROLE usage_tracking_reader;
SELECT set_config('request.jwt.claims', '{"account_id": "acc_read_a"}', true) IS NOT NULL AS claims_set;
SELECT count(*) FILTER (WHERE r LIKE 'events%') AS event_relations,
       count(*) FILTER (WHERE r LIKE 'daily%') AS daily_relations
  FROM pg_temp.read_plan_relations($$SELECT * FROM usage_tracking.usage_summary(
         'a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', '2025-08-05', '2025-11-02', 'day')$$) r;
ROLLBACK;
