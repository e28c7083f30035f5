-- Maintenance tests expire data, drop partitions and move "now" far ahead,
-- so they run in databases of their own: ut_maint, made here (both
-- extensions, two installations of one account, helpers in schema m),
-- shared by the tests that only touch their own days, and clones of it for
-- the tests that drop partitions.  29_maintenance_cleanup drops it.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP DATABASE IF EXISTS ut_maint;
CREATE DATABASE ut_maint;
\c ut_maint
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
CREATE SCHEMA m;

CREATE FUNCTION m.sig(body text, secret text, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(hmac(extract(epoch FROM at)::bigint::text || '.' || body, secret, 'sha256'), 'hex')
         || ':' || extract(epoch FROM at)::bigint
$$;
CREATE FUNCTION m.user_hash(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT encode(sha256(('maint-user' || n)::bytea), 'hex') $$;
CREATE FUNCTION m.event(id text, created timestamptz, prompt int DEFAULT 100,
                        completion int DEFAULT 20, model text DEFAULT 'gpt-4o-mini',
                        usr int DEFAULT 1, cached int DEFAULT 0)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'event_id', id, 'wp_user_id_hash', m.user_hash(usr), 'source', 'bulk',
    'model', model, 'prompt_tokens', prompt, 'completion_tokens', completion,
    'total_tokens', prompt + completion, 'cached_prompt_tokens', cached,
    'created_at', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
$$;
CREATE FUNCTION m.inst(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'dec0de00-0000-4000-8000-00000000000' || n || '_0000000000a' || n $$;
-- Post events (a jsonb array) for installation 1 or 2, server clock at "at".
CREATE FUNCTION m.post(inst int, events jsonb, at timestamptz) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(b, m.sig(b, 'maint-secret-' || inst || '-0123456789', at), at) - 'quota'
    FROM (SELECT jsonb_build_object('install_id', m.inst(inst), 'events', events)::text AS b) x
$$;
-- Bulk rows straight into the raw table (the trigger keeps daily current):
-- n events of installation inst on the UTC day of "day", users 1..users.
CREATE FUNCTION m.fill(inst int, day date, n int, users int DEFAULT 3, prefix text DEFAULT 'bulk')
RETURNS void LANGUAGE sql AS $$
  INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                     prompt_tokens, completion_tokens, cached_prompt_tokens, created_at)
  SELECT m.inst(inst), prefix || '_' || to_char(day, 'YYYYMMDD') || '_' || i, m.user_hash(1 + i % users),
         (ARRAY['manual', 'bulk', 'queue', 'inline'])[1 + i % 4],
         (ARRAY['gpt-4o-mini', 'gpt-4o', 'mystery-model'])[1 + i % 3],
         100 + i % 50, 10 + i % 7, i % 30,
         (day::timestamp AT TIME ZONE 'UTC') + (i % 86400) * interval '1 second'
    FROM generate_series(1, n) i
$$;
-- Summaries re-derived from the raw events that count (not voided).
CREATE VIEW m.oracle AS
SELECT e.install_id, (e.created_at AT TIME ZONE 'UTC')::date AS usage_date,
       e.wp_user_id_hash, e.source, e.model,
       count(*)::bigint AS total_requests, sum(e.prompt_tokens)::bigint AS prompt_tokens,
       sum(e.completion_tokens)::bigint AS completion_tokens,
       sum(e.cached_prompt_tokens)::bigint AS cached_prompt_tokens,
       sum(usage_tracking.event_cost(e.model, e.created_at, e.prompt_tokens, e.completion_tokens,
                                     e.cached_prompt_tokens)) AS estimated_cost_usd,
       count(*) FILTER (WHERE usage_tracking.event_cost(e.model, e.created_at, 0, 0, 0) IS NULL)::bigint
           AS unpriced_requests
  FROM usage_tracking.events e
 WHERE e.voided_at IS NULL
 GROUP BY 1, 2, 3, 4, 5;
-- Rows where daily and the oracle disagree (empty when right), for days
-- whose raw events are still kept.
CREATE VIEW m.drift AS
WITH kept AS (SELECT * FROM usage_tracking.daily d
               WHERE d.usage_date >= coalesce((SELECT (s.events_expired_before AT TIME ZONE 'UTC')::date
                                                 FROM usage_tracking.maintenance_state s), '-infinity'))
(SELECT 'daily' AS side, install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd, unpriced_requests
   FROM kept
 EXCEPT ALL
 SELECT 'daily', * FROM m.oracle)
UNION ALL
(SELECT 'oracle', * FROM m.oracle
 EXCEPT ALL
 SELECT 'oracle', install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd, unpriced_requests
   FROM kept);
-- Size on disk of a partitioned table, all partitions and indexes.
CREATE FUNCTION m.size(parent regclass) RETURNS bigint LANGUAGE sql AS $$
  SELECT sum(pg_total_relation_size(relid))::bigint FROM pg_partition_tree(parent)
$$;
-- Outcome of a statement as one line, or its SQLSTATE and message.
CREATE FUNCTION m.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE sql INTO r;
  RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT usage_tracking.create_account('acc_maint', 'agency');
SELECT usage_tracking.register_installation(m.inst(n), 'acc_maint', 'maint-secret-' || n || '-0123456789',
                                            '2025-01-01') IS NOT NULL AS registered
  FROM generate_series(1, 2) n;
SELECT count(*) AS installations FROM usage_tracking.installations;
\c contrib_regression
