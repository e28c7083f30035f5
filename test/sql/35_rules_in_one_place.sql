-- Each rule has one home (docs/reference.md, "Where each rule lives"); the
-- SQL functions are that home too, so ingest and SQL give the same answers:
-- the 5-minute window and retry-after, the quota level, the price of an
-- event, the install_id shape, and SQLSTATE -> HTTP status with the
-- Retry-After of a 429 carried as a number.  Uses the gov helpers (30_plans).
\set VERBOSITY terse
\set ri '''a6a60000-0000-4000-8000-000000000035_a6a6a6a6a635'''
SELECT usage_tracking.set_plan('rules35', 6, 50, 60, 100, 2);
SELECT usage_tracking.create_account('rules35', 'rules35');
SELECT usage_tracking.register_installation(:ri, 'rules35', 'gov-secret-0123456789abcdef') IS NOT NULL AS registered;

-- The quota level of each ingest response is quota_level() of its usage.
CREATE TABLE gov.levels35 (step int, ingest_level text, used bigint);
INSERT INTO gov.levels35 SELECT 1, r->'quota'->>'level', (r->'quota'->>'used')::bigint
  FROM gov.post(:ri, 'q', 1, 2, '2025-11-03 12:00:00+00') r;
INSERT INTO gov.levels35 SELECT 2, r->'quota'->>'level', (r->'quota'->>'used')::bigint
  FROM gov.post(:ri, 'q', 3, 3, '2025-11-03 12:10:00+00') r;
INSERT INTO gov.levels35 SELECT 3, r->'quota'->>'level', (r->'quota'->>'used')::bigint
  FROM gov.post(:ri, 'q', 4, 4, '2025-11-03 12:20:00+00') r;
INSERT INTO gov.levels35 SELECT 4, r->'quota'->>'level', (r->'quota'->>'used')::bigint
  FROM gov.post(:ri, 'q', 5, 6, '2025-11-03 12:30:00+00') r;
SELECT step, used, ingest_level, usage_tracking.quota_level(used, 6, 50, 60, 100) AS sql_level
  FROM gov.levels35 ORDER BY step;
-- Unlimited and unknown usage are ok; a NULL threshold is never reached.
SELECT usage_tracking.quota_level(10, NULL, 50, 60, 100) AS unlimited,
       usage_tracking.quota_level(NULL, 10, 50, 60, 100) AS unknown_usage,
       usage_tracking.quota_level(9, 10, NULL, 80, NULL) AS only_critical;

-- The window: two posts in the minute of 12:40, the third at 12:41:20 is
-- refused; its retry_after_s is window_retry_after() of the window
-- window_shift() moves on, plus the refused post.
SELECT gov.post(:ri, 'w', 1, 1, '2025-11-03 12:40:00+00')->>'received' AS first,
       gov.post(:ri, 'w', 2, 2, '2025-11-03 12:40:30+00')->>'received' AS second;
SELECT to_char(minute AT TIME ZONE 'UTC', 'HH24:MI') AS minute, posts,
       usage_tracking.window_shift(posts, minute, '2025-11-03 12:41:00+00') AS at_1241
  FROM usage_tracking.ingest_windows WHERE install_id = :ri;
SELECT gov.try(format($$SELECT gov.post(%L, 'w', 3, 3, '2025-11-03 12:41:20+00')$$, :ri)) AS refused,
       usage_tracking.window_retry_after('{1,2,0,0,0}', '2025-11-03 12:41:00+00',
                                         '2025-11-03 12:41:20+00', 1) AS sql_retry_after;
-- Rounded up, also once the slots have left (a clock gone back), and NULL
-- when even an empty window is not enough.
SELECT usage_tracking.window_retry_after('{1,0,0,0,0}', '2025-11-03 12:00:00+00', '2025-11-03 12:00:59.5+00', 1) AS up,
       usage_tracking.window_retry_after('{1,0,0,0,0}', '2025-11-03 12:00:00+00', '2025-11-03 12:06:30+00', 1) AS past,
       usage_tracking.window_retry_after('{1,0,0,0,0}', '2025-11-03 12:00:00+00', '2025-11-03 12:00:00+00', 2) AS never,
       usage_tracking.window_shift(NULL, NULL, '2025-11-03 12:00:00+00') AS empty;

-- The admission rule ingest applies to its post is window_admit(), which
-- authorize() calls for requests and tokens: the window moved on to the
-- minute of now admits n more within the limit (counted in slot 1), or
-- says when the excess will have left.
SELECT to_char(at_minute AT TIME ZONE 'UTC', 'HH24:MI') AS at_minute, admitted, new_slots, retry_after_s
  FROM (VALUES (1), (2)) n(n),
       usage_tracking.window_admit('{3,0,0,0,1}', '2025-11-03 12:00:00+00', '2025-11-03 12:02:10+00', n.n, 4);
SELECT to_char(at_minute AT TIME ZONE 'UTC', 'HH24:MI') AS at_minute, admitted, new_slots, retry_after_s
  FROM usage_tracking.window_admit(NULL, NULL, '2025-11-03 12:02:10+00', 5, 4);
\set rj '''a6a60000-0000-4000-8000-000000000037_a6a6a6a6a637'''
SELECT usage_tracking.create_account('rules35b', 'pro');
SELECT usage_tracking.register_installation(:rj, 'rules35b', 'gov-secret-0123456789abcdef') IS NOT NULL AS registered;
SELECT usage_tracking.authorize(:rj, 3, 0, '2025-11-03 13:00:00+00')->>'allowed' AS first_3,
       usage_tracking.authorize(:rj, 99, 0, '2025-11-03 13:02:10+00') - 'level' AS next_99;
SELECT (usage_tracking.window_admit(r.requests, r.minute, '2025-11-03 13:02:10+00', 99, p.rate_requests_5m)).*
  FROM usage_tracking.rate_state r, usage_tracking.plans p WHERE r.install_id = :rj AND p.plan = 'pro';

-- Over HTTP the same refusal is a 429 whose Retry-After is the number
-- ingest computed (not read back from text), with the same DETAIL.
CREATE FUNCTION gov.http_429() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  install text := 'a6a60000-0000-4000-8000-000000000035_a6a6a6a6a635';
  secret text := 'gov-secret-0123456789abcdef';
  body text;
  m text;
  d text;
  w usage_tracking.ingest_windows;
  at_minute timestamptz := date_trunc('minute', now());
  expected int;
BEGIN
  FOR n IN 1..2 LOOP
    body := t.batch(install, gov.events('h', n, n, now()));
    PERFORM usage_tracking.ingest(body, t.sig(body, secret, now()), now());
  END LOOP;
  SELECT * INTO w FROM usage_tracking.ingest_windows WHERE install_id = install;
  SELECT usage_tracking.window_retry_after(ARRAY[s[1] + 1] || s[2:5], greatest(w.minute, at_minute), now(), 1)
    INTO expected FROM usage_tracking.window_shift(w.posts, w.minute, greatest(w.minute, at_minute)) s;
  body := t.batch(install, gov.events('h', 3, 3, now()));
  PERFORM set_config('request.headers', json_build_object('x-install-signature', t.sig(body, secret, now()))::text, true);
  PERFORM set_config('request.jwt.claims', '{"account_id": "rules35"}', true);
  BEGIN
    PERFORM usage_api.ingest(body::json);
    RETURN 'no error';
  EXCEPTION WHEN SQLSTATE 'PGRST' THEN
    GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  END;
  RETURN format('%s %s, Retry-After as computed: %s, details as computed: %s',
                d::jsonb->>'status', m::jsonb->>'code',
                (d::jsonb->'headers'->>'Retry-After')::int = greatest(expected, 1),
                (m::jsonb->>'details')::jsonb = jsonb_build_object('retry_after_s', expected));
END $$;
BEGIN;
SELECT gov.http_429() AS over_http;
ROLLBACK;

-- Prices: the summaries ingest kept are event_cost() of the stored events,
-- and reconcile() (which prices with it) finds nothing to repair.
SELECT (SELECT sum(d.estimated_cost_usd) FROM usage_tracking.daily d WHERE d.install_id = :ri)
     = (SELECT sum(usage_tracking.event_cost(e.model, e.created_at, e.prompt_tokens,
                                             e.completion_tokens, e.cached_prompt_tokens))
          FROM usage_tracking.events e WHERE e.install_id = :ri) AS summaries_priced_as_event_cost,
       usage_tracking.reconcile('2025-11-03', false)->'drifted' AS drifted;
SELECT usage_tracking.event_cost('gpt-4o', '2025-11-03', 1000000, 1000000, 400000) AS gpt_4o,
       usage_tracking.event_cost('no-such-model', '2025-11-03', 1, 1, 0) AS unpriced,
       usage_tracking.event_cost('gpt-4o', NULL, 1, 1, 0) AS no_time;

-- The install_id shape: register_installation() refuses exactly what
-- valid_shape('i', ...) and ingest refuse.
SELECT v AS install_id, usage_tracking.valid_shape('i', v) AS valid_shape,
       gov.try(format('SELECT usage_tracking.register_installation(%L, %L)', v, 'rules35')) AS registered
  FROM unnest(ARRAY['a6a60000-0000-4000-8000-000000000036_a6a6a6a6a636',
                    'A6A60000-0000-4000-8000-000000000036_a6a6a6a6a636',
                    'a6a60000-0000-5000-8000-000000000036_a6a6a6a6a636',
                    'a6a60000-0000-4000-c000-000000000036_a6a6a6a6a636',
                    'a6a60000-0000-4000-8000-000000000036_a6a6a6a6a63',
                    'a6a60000-0000-4000-8000-000000000036']) v;

-- ingest counts its posts itself: ingest_quota(), which only a test
-- called, is gone.
SELECT to_regprocedure('usage_tracking.ingest_quota(text,text,bigint,bigint,timestamptz)') IS NULL AS ingest_quota_gone;
