-- A compromised site sends the largest token counts the contract allows,
-- many times over: every sum stays exact (bigint), and governance flags the
-- installation for abuse — in quota_status() at once, and as one
-- abuse_tokens alert for the hour.  Alerts are global, so this runs in a
-- database of its own.
\set VERBOSITY terse
CREATE DATABASE ut_rel66;
\c ut_rel66
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SELECT usage_tracking.create_account('acc_rel66', 'credits');
SELECT usage_tracking.register_installation('66666666-6666-4666-8666-666666666666_666666666666',
                                            'acc_rel66', 'rel66-secret-0123456789abcdef') IS NOT NULL AS registered;
-- Post a signed batch of n events of 2147483647 + 2147483647 tokens.
CREATE FUNCTION post_huge(batch integer, n integer, at timestamptz) RETURNS jsonb LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(b, encode(hmac(ts || '.' || b, 'rel66-secret-0123456789abcdef', 'sha256'), 'hex') || ':' || ts, at)
    FROM (SELECT extract(epoch FROM at)::bigint::text AS ts,
                 jsonb_build_object('install_id', '66666666-6666-4666-8666-666666666666_666666666666',
                   'events', (SELECT jsonb_agg(jsonb_build_object(
                                'event_id', format('huge_%s_%s', batch, g),
                                'wp_user_id_hash', encode(sha256('u66'::bytea), 'hex'),
                                'source', 'bulk', 'model', 'gpt-4o',
                                'prompt_tokens', 2147483647, 'completion_tokens', 2147483647,
                                'total_tokens', 4294967294, 'cached_prompt_tokens', 0,
                                'created_at', to_char((at - interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
                                FROM generate_series(1, n) g))::text AS b) s
$$;
-- Five batches of 1000 events within one hour: 5000 requests, 21 474 836 470 000 tokens.
SELECT b, (post_huge(b, 1000, '2025-11-03 10:00:00+00'::timestamptz + b * interval '5 minutes'))->>'received' AS received
  FROM generate_series(1, 5) b;
SELECT sum(total_requests) AS requests, sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion,
       sum(prompt_tokens + completion_tokens) AS tokens, sum(estimated_cost_usd) AS cost_usd
  FROM usage_tracking.daily;
SELECT s->'hour'->>'requests' AS hour_requests, s->'hour'->>'tokens' AS hour_tokens,
       s->'abuse' AS abuse_flags
  FROM usage_tracking.quota_status('66666666-6666-4666-8666-666666666666_666666666666', '2025-11-03 10:40:00+00') s;
SELECT usage_tracking.evaluate_alerts('2025-11-03 10:45:00+00') AS alerts_raised;
SELECT usage_tracking.evaluate_alerts('2025-11-03 10:50:00+00') AS alerts_raised_again;
SELECT level, install_id IS NOT NULL AS per_installation, observed, threshold FROM usage_tracking.alerts ORDER BY level;
\c contrib_regression
DROP DATABASE ut_rel66;
