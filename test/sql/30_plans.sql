-- Plans: the seeded plans, set_plan and its checks.  Also the helpers the
-- governance tests (30-39) share, in schema gov.
\set VERBOSITY terse
CREATE SCHEMA gov;

-- n events e<from>..e<to> of a prefix, created at "at" (spread over the
-- seconds after it), each 100 prompt + 20 completion tokens.
CREATE FUNCTION gov.events(prefix text, first int, last int, at timestamptz,
                           prompt int DEFAULT 100) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_agg(t.event(prefix || i, at + (i - first) * interval '1 second', prompt) ORDER BY i)
    FROM generate_series(first, last) i
$$;

-- Post those events for an installation (secret gov-secret-…), the server
-- clock at "at".
CREATE FUNCTION gov.post(install text, prefix text, first int, last int, at timestamptz,
                         created timestamptz DEFAULT NULL, prompt int DEFAULT 100) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT t.post(t.batch(install, gov.events(prefix, first, last, coalesce(created, at), prompt)),
                'gov-secret-0123456789abcdef', at)
$$;

-- The outcome of a statement: 'ok', or SQLSTATE, message and detail.
CREATE FUNCTION gov.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  d text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || nullif(d, ''), '');
END $$;

-- The parts of an authorize() verdict, in a fixed order.
CREATE FUNCTION gov.auth(install text, at timestamptz, requests int DEFAULT 1, tokens bigint DEFAULT 0)
RETURNS text LANGUAGE sql AS $$
  SELECT format('%s %s %s %s', v->>'allowed', coalesce(v->>'level', '-'), v->>'reason',
                coalesce(v->>'retry_after_s', '-'))
    FROM usage_tracking.authorize(install, requests, tokens, at) v
$$;
SELECT plan, monthly_requests, warning_pct, critical_pct, block_pct,
       rate_requests_5m, rate_tokens_5m, abuse_requests_1h, abuse_tokens_1h
  FROM usage_tracking.plans WHERE plan IN ('free', 'pro', 'agency', 'credits')
 ORDER BY monthly_requests NULLS LAST;

-- A new plan takes the default thresholds and limits.
SELECT usage_tracking.set_plan('gov_starter', 500);
-- Changing its quota and thresholds keeps its rate limits unless given.
SELECT usage_tracking.set_plan('gov_starter', 1000, 50, 80, 110, rate_requests_5m => 20);
SELECT usage_tracking.set_plan('gov_starter', 1000, 50, 80, 110, abuse_tokens_1h => 5000);
SELECT usage_tracking.set_plan('gov_unlimited', NULL);
SELECT plan, monthly_requests, warning_pct, critical_pct, block_pct,
       rate_requests_5m, rate_tokens_5m, abuse_requests_1h, abuse_tokens_1h
  FROM usage_tracking.plans WHERE plan LIKE 'gov\_%' ORDER BY plan;

-- Refused.
SELECT gov.try($$SELECT usage_tracking.set_plan('Bad Name', 10)$$);
SELECT gov.try($$SELECT usage_tracking.set_plan('gov_x', -1)$$);
SELECT gov.try($$SELECT usage_tracking.set_plan('gov_x', 10, 90, 75)$$);
SELECT gov.try($$SELECT usage_tracking.set_plan('gov_x', 10, 0)$$);
SELECT gov.try($$SELECT usage_tracking.set_plan('gov_x', 10, 75, 90, 1001)$$);
SELECT gov.try($$SELECT usage_tracking.set_plan('gov_x', 10, rate_tokens_5m => 0)$$);
SELECT count(*) AS gov_x_plans FROM usage_tracking.plans WHERE plan = 'gov_x';

-- Only the admin role may change plans or call the governance functions.
SELECT r, f, has_function_privilege(r, f, 'EXECUTE') AS can
  FROM unnest(ARRAY['usage_tracking_admin', 'usage_tracking_ingest', 'usage_tracking_reader',
                    'usage_tracking_analyst']) r,
       unnest(ARRAY['usage_tracking.set_plan(text,bigint,integer,integer,integer,integer,bigint,integer,bigint)',
                    'usage_tracking.authorize(text,integer,bigint,timestamptz)',
                    'usage_tracking.quota_status(text,timestamptz)',
                    'usage_tracking.evaluate_alerts(timestamptz)',
                    'usage_tracking.set_alert_channel(text,text,text,text)']) f
 WHERE has_function_privilege(r, f, 'EXECUTE')
 ORDER BY 1, 2;
