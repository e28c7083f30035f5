-- Token counts at and past their limits: nothing wraps, nothing overflows.
-- A total_tokens past the 64-bit range used to wrap around during parsing
-- and could then "equal" prompt + completion; it is rejected now.  A site
-- sending the largest counts the contract allows, many times over, gets
-- exact bigint sums in the daily summaries.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_rel60', 'agency');
SELECT usage_tracking.register_installation('60606060-6060-4060-8060-606060606060_606060606060',
                                            'acc_rel60', 'rel60-secret-0123456789abcdef') IS NOT NULL AS registered;

-- total_tokens that wrap 2^64 onto prompt + completion, or exceed int64.
WITH cases(n, total) AS (VALUES
    (1, '18446744073709551620'),   -- 2^64 + 4: wrapped to 4 before the fix
    (2, '18446744073709551619'),
    (3, '9223372036854775807'),
    (4, '99999999999999999999999999'),
    (5, '4'))
SELECT n, total,
       t.post(format('{"install_id":"60606060-6060-4060-8060-606060606060_606060606060","events":[{"event_id":"wrap_%s","wp_user_id_hash":"%s","source":"bulk","model":"gpt-4o-mini","prompt_tokens":4,"completion_tokens":0,"total_tokens":%s,"created_at":"2025-11-03T10:00:00Z"}]}',
                     n, t.user_hash(60), total),
              'rel60-secret-0123456789abcdef', '2025-11-03 12:00:00+00') - 'quota' AS response
  FROM cases ORDER BY n;

-- Token counts one past the int32 limit, or negative.
SELECT t.post(t.batch('60606060-6060-4060-8060-606060606060_606060606060',
                      jsonb_build_array(
                        jsonb_set(t.event('over_p', '2025-11-03 10:00+00'), '{prompt_tokens}', '2147483648'),
                        jsonb_set(t.event('over_c', '2025-11-03 10:00+00'), '{completion_tokens}', '2147483648') - 'total_tokens',
                        jsonb_set(t.event('neg', '2025-11-03 10:00+00'), '{completion_tokens}', '-1') - 'total_tokens')),
              'rel60-secret-0123456789abcdef', '2025-11-03 12:00:00+00') -> 'rejected' AS rejected;

-- 1000 events of 2147483647 prompt + 2147483647 completion tokens each
-- (all cached), in one summary key, sent twice: 2 147 483 647 000 per
-- column, 4 294 967 294 000 in total, exact, and the resend counts nothing.
CREATE TEMP TABLE huge AS
SELECT t.batch('60606060-6060-4060-8060-606060606060_606060606060',
               (SELECT jsonb_agg(t.event('huge_' || g, '2025-11-03 11:00+00', model => 'gpt-4o', usr => 60)
                                 || '{"prompt_tokens": 2147483647, "completion_tokens": 2147483647,
                                      "total_tokens": 4294967294, "cached_prompt_tokens": 2147483647}')
                  FROM generate_series(1, 1000) g)) AS body;
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates, r->'rejected' AS rejected
  FROM huge, t.post(body, 'rel60-secret-0123456789abcdef', '2025-11-03 12:00:00+00') r;
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates
  FROM huge, t.post(body, 'rel60-secret-0123456789abcdef', '2025-11-03 12:01:00+00') r;
SELECT usage_date, total_requests, prompt_tokens, completion_tokens, cached_prompt_tokens,
       total_tokens, estimated_cost_usd
  FROM usage_tracking.daily_usage
 WHERE install_id = '60606060-6060-4060-8060-606060606060_606060606060'
 ORDER BY model, total_requests;
-- The summaries equal the GROUP BY over raw events (both ways).
SELECT count(*) AS drift_rows FROM t.drift
 WHERE install_id = '60606060-6060-4060-8060-606060606060_606060606060';
