-- Rate limits: a sliding 5-minute window of one-minute slots per
-- installation.  authorize() limits calls (requests and tokens) before they
-- happen; ingest limits the posting of batches (UTR01, HTTP 429), never the
-- events, which record calls already made.
\set VERBOSITY terse
\set r1 '''a6a60000-0000-4000-8000-000000000011_a6a6a6a6a611'''
\set r2 '''a6a60000-0000-4000-8000-000000000012_a6a6a6a6a612'''
\set now '''2025-11-03 12:00:00+00'''
SELECT usage_tracking.create_account('gov_rate', 'pro');
SELECT usage_tracking.register_installation(:r1, 'gov_rate', 'gov-secret-0123456789abcdef');
SELECT usage_tracking.register_installation(:r2, 'gov_rate', 'gov-secret-0123456789abcdef');

-- 100 calls in 4 min 57 s are admitted; the 101st, at 12:04:59, is not:
-- the 20 calls of the first minute leave the window at 12:05:00.
SELECT v, count(*) AS calls, min(n) AS first_call, max(n) AS last_call
  FROM (SELECT n, gov.auth(:r1, :now::timestamptz + (n - 1) * interval '3 seconds') AS v
          FROM generate_series(1, 100) n) a
 GROUP BY v ORDER BY first_call;
SELECT gov.auth(:r1, '2025-11-03 12:04:59+00') AS the_101st;
SELECT usage_tracking.quota_status(:r1, '2025-11-03 12:04:59+00')->'window_5m' AS window_at_120459;
-- Another installation of the account has its own window.
SELECT gov.auth(:r2, '2025-11-03 12:04:59+00') AS other_installation;
-- At 12:05:00 the first minute has left the window: 20 more fit, not 21.
SELECT v, count(*) AS calls
  FROM (SELECT n, gov.auth(:r1, '2025-11-03 12:05:00+00') AS v FROM generate_series(1, 21) n) a
 GROUP BY v ORDER BY v DESC;
SELECT usage_tracking.quota_status(:r1, '2025-11-03 12:05:30+00')->'window_5m' AS window_at_120530;
-- Ten minutes later the window is empty.
SELECT gov.auth(:r1, '2025-11-03 12:15:00+00', 100) AS full_window;

-- Tokens: 50 000 per 5 minutes.
SELECT gov.auth(:r2, '2025-11-03 14:00:00+00', 1, 30000) AS first,
       gov.auth(:r2, '2025-11-03 14:01:10+00', 1, 25000) AS over_tokens,
       gov.auth(:r2, '2025-11-03 14:01:10+00', 1, 20000) AS fits,
       gov.auth(:r2, '2025-11-03 14:01:10+00', 1, 60000) AS too_large,
       gov.auth(:r2, '2025-11-03 14:01:10+00', 101) AS too_many;
-- A refused call reserves nothing.
SELECT admitted FROM usage_tracking.quota_usage WHERE account_id = 'gov_rate';

-- Ingest: 100 posts of an installation within 5 minutes are accepted, the
-- 101st is refused with UTR01 and a retry_after_s, and writes nothing.
SELECT count(*) FILTER (WHERE (gov.post(:r2, 'p', n, n, :now::timestamptz + (n - 1) * interval '2 seconds', :now))->>'success' = 'true') AS accepted
  FROM generate_series(1, 100) n;
SELECT * FROM t.counts \gset before_
SELECT gov.try(format($$SELECT gov.post(%L, 'p', 101, 101, '2025-11-03 12:03:20+00', %L)$$, :r2, :now)) AS post_101;
SELECT (SELECT events FROM t.counts) - :before_events AS new_events,
       (SELECT count(*) FROM usage_tracking.events WHERE install_id = :r2) AS stored;
-- The error code table maps it to HTTP 429.
SELECT sqlstate, error, http_status FROM usage_tracking.error_codes WHERE sqlstate = 'UTR01';
-- Once the first minute's posts have left the window, the same post goes in.
SELECT gov.post(:r2, 'p', 101, 101, '2025-11-03 12:05:00+00', :now) - 'event_ids' - 'quota' AS retried;
SELECT usage_tracking.quota_status(:r2, '2025-11-03 12:05:00+00')->'window_5m'->'posts' AS posts_in_window;

-- Post by post, an installation's window moves as window_shift() says:
-- slot 1 is the newest minute, older minutes shift along and fall out after
-- five, and a post from an earlier minute (a clock that went back) counts
-- in slot 1.
\set r3 '''a6a60000-0000-4000-8000-000000000013_a6a6a6a6a613'''
SELECT usage_tracking.register_installation(:r3, 'gov_rate', 'gov-secret-0123456789abcdef');
CREATE TABLE gov.window_steps (step int, at timestamptz, expected_minute timestamptz,
                               expected_posts bigint[], minute timestamptz, posts bigint[]);
CREATE FUNCTION gov.window_step(step int, at timestamptz) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  w usage_tracking.ingest_windows;
  m timestamptz := date_trunc('minute', at);
  s bigint[];
BEGIN
  SELECT * INTO w FROM usage_tracking.ingest_windows WHERE install_id = 'a6a60000-0000-4000-8000-000000000013_a6a6a6a6a613';
  s := usage_tracking.window_shift(w.posts, w.minute, m);
  PERFORM gov.post('a6a60000-0000-4000-8000-000000000013_a6a6a6a6a613', 'w' || step || '_', 1, 1, at);
  INSERT INTO gov.window_steps
  SELECT step, at, CASE WHEN w.minute IS NULL THEN m ELSE greatest(w.minute, m) END,
         ARRAY[s[1] + 1] || s[2:5], x.minute, x.posts
    FROM usage_tracking.ingest_windows x WHERE x.install_id = 'a6a60000-0000-4000-8000-000000000013_a6a6a6a6a613';
END $$;
SELECT gov.window_step(n, at) FROM (VALUES
  (1, '2025-11-03 13:00:10+00'::timestamptz), (2, '2025-11-03 13:00:50+00'), (3, '2025-11-03 13:01:05+00'),
  (4, '2025-11-03 13:03:00+00'), (5, '2025-11-03 13:02:30+00'), (6, '2025-11-03 13:04:59+00'),
  (7, '2025-11-03 13:07:00+00'), (8, '2025-11-03 13:11:00+00'), (9, '2025-11-03 13:11:01+00'),
  (10, '2025-11-03 13:16:00+00'), (11, '2025-11-03 13:30:00+00')) v(n, at) ORDER BY n;
SELECT step, to_char(minute AT TIME ZONE 'UTC', 'HH24:MI') AS minute, posts,
       minute = expected_minute AND posts = expected_posts AS as_window_shift_says
  FROM gov.window_steps ORDER BY step;
