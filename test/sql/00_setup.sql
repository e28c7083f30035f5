-- Helpers shared by the regression tests.  Signatures are made with
-- pgcrypto, independently of the extension's own HMAC code.  Every test
-- passes its own "now" so nothing depends on the wall clock.
\set VERBOSITY terse
CREATE SCHEMA t;

CREATE FUNCTION t.sig(body text, secret text, at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(hmac(extract(epoch FROM at)::bigint::text || '.' || body, secret, 'sha256'), 'hex')
         || ':' || extract(epoch FROM at)::bigint
$$;

CREATE FUNCTION t.user_hash(n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT encode(sha256(('user' || n)::bytea), 'hex') $$;

CREATE FUNCTION t.event(id text, created timestamptz, prompt int DEFAULT 100,
                        completion int DEFAULT 20, model text DEFAULT 'gpt-4o-mini',
                        source text DEFAULT 'bulk', usr int DEFAULT 1, cached int DEFAULT 0)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object(
    'event_id', id, 'wp_user_id_hash', t.user_hash(usr), 'source', source,
    'model', model, 'prompt_tokens', prompt, 'completion_tokens', completion,
    'total_tokens', prompt + completion, 'cached_prompt_tokens', cached,
    'request_id', 'req_' || id,
    'created_at', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
$$;

CREATE FUNCTION t.batch(install text, events jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('install_id', install, 'events', events)::text
$$;

-- Post body signed with secret at time "at", the server clock also at "at".
CREATE FUNCTION t.post(body text, secret text, at timestamptz) RETURNS jsonb
LANGUAGE sql AS $$ SELECT usage_tracking.ingest(body, t.sig(body, secret, at), at) $$;

-- Summaries re-derived from raw events, priced at the row in force.
CREATE VIEW t.oracle AS
SELECT e.install_id, (e.created_at AT TIME ZONE 'UTC')::date AS usage_date,
       e.wp_user_id_hash, e.source, e.model,
       count(*)::bigint AS total_requests,
       sum(e.prompt_tokens)::bigint AS prompt_tokens,
       sum(e.completion_tokens)::bigint AS completion_tokens,
       sum(e.cached_prompt_tokens)::bigint AS cached_prompt_tokens,
       sum(((e.prompt_tokens - e.cached_prompt_tokens) * p.prompt_usd_per_mtok
            + e.cached_prompt_tokens * coalesce(p.cached_prompt_usd_per_mtok, p.prompt_usd_per_mtok)
            + e.completion_tokens * p.completion_usd_per_mtok) / 1000000) AS estimated_cost_usd,
       count(*) FILTER (WHERE p.model IS NULL)::bigint AS unpriced_requests
  FROM usage_tracking.events e
  LEFT JOIN LATERAL (
    SELECT * FROM usage_tracking.model_prices mp
     WHERE mp.model IN (e.model, '*') AND mp.effective_from <= e.created_at
     ORDER BY mp.model = '*', mp.effective_from DESC LIMIT 1) p ON true
 GROUP BY 1, 2, 3, 4, 5;

-- Rows where daily and the oracle disagree, both ways (empty when right).
CREATE VIEW t.drift AS
(SELECT 'daily' AS side, install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM usage_tracking.daily
 EXCEPT ALL
 SELECT 'daily', install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM t.oracle)
UNION ALL
(SELECT 'oracle', install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM t.oracle
 EXCEPT ALL
 SELECT 'oracle', install_id, usage_date, wp_user_id_hash, source, model, total_requests,
        prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM usage_tracking.daily);

-- Row counts that a refused request must leave unchanged.
CREATE VIEW t.counts AS
SELECT (SELECT count(*) FROM usage_tracking.events) AS events,
       (SELECT count(*) FROM usage_tracking.daily) AS daily,
       (SELECT count(*) FROM usage_tracking.installations WHERE last_seen_at IS NOT NULL) AS seen;

SELECT usage_tracking.create_account('acc_core', 'pro');
SELECT usage_tracking.register_installation('550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8',
                                            'acc_core', 'core-secret-0123456789abcdef');
SELECT length(usage_tracking.register_installation('6fa459ea-ee8a-4ca4-894e-db77e160355e_0123456789ab',
                                                   'acc_core')) AS generated_secret_length;

-- The outcome of an ingest call as one line: its counts, or its error.
CREATE FUNCTION t.outcome(body text, sig text, at timestamptz, caller text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  r := usage_tracking.ingest(body, sig, at, caller);
  RETURN format('ok: received %s, duplicates %s, rejected %s',
                r->>'received', r->>'duplicates', jsonb_array_length(r->'rejected'));
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
