-- Monthly quota: the verdict in each ingest response, quota_status, and
-- authorize() refusing what the plan does not allow.
\set VERBOSITY terse
\set i1 '''a6a60000-0000-4000-8000-000000000001_a6a6a6a6a601'''
\set i2 '''a6a60000-0000-4000-8000-000000000002_a6a6a6a6a602'''
\set i3 '''a6a60000-0000-4000-8000-000000000003_a6a6a6a6a603'''
\set i4 '''a6a60000-0000-4000-8000-000000000004_a6a6a6a6a604'''
\set i5 '''a6a60000-0000-4000-8000-000000000005_a6a6a6a6a605'''
\set now '''2025-11-03 12:00:00+00'''
SELECT usage_tracking.create_account('gov_free', 'free');
SELECT usage_tracking.register_installation(:i1, 'gov_free', 'gov-secret-0123456789abcdef');
SELECT usage_tracking.register_installation(:i2, 'gov_free', 'gov-secret-0123456789abcdef');

-- Free plan, 50 requests a month, both installations of the account count.
SELECT n, gov.post(CASE WHEN n % 2 = 0 THEN :i1 ELSE :i2 END, 'q', prev + 1, n,
                   :now::timestamptz + n * interval '1 minute', :now)->'quota' AS quota
  FROM (VALUES (0, 37), (37, 38), (38, 44), (44, 45), (45, 49), (49, 50)) v(prev, n);

-- A resent batch counts nothing twice.
SELECT gov.post(:i2, 'q', 1, 37, '2025-11-03 13:00:00+00', :now) - 'event_ids' AS resend;

SELECT jsonb_pretty(usage_tracking.quota_status(:i1, '2025-11-03 13:00:00+00')
                    - 'window_5m' - 'hour' - 'abuse') AS status;

-- authorize refuses the 51st request, until the month is over.
SELECT gov.auth(:i1, '2025-11-03 13:00:00+00') AS the_51st;
SELECT gov.auth(:i2, '2025-11-30 23:59:30+00') AS last_minute_of_month;
SELECT gov.auth(:i2, '2025-12-01 00:00:00+00') AS next_month;

-- Events are calls that already happened: ingest stores and counts them
-- even over the limit, and says so.
SELECT gov.post(:i1, 'q', 51, 52, '2025-11-03 13:01:00+00', :now) - 'event_ids' AS over_limit;
SELECT account_id, month, recorded, admitted, pending
  FROM usage_tracking.quota_usage WHERE account_id = 'gov_free' ORDER BY month;

-- Admissions reserve: 50 admitted calls block the account before any event
-- arrives; their events then replace the reservations, not add to them.
SELECT usage_tracking.create_account('gov_gate', 'free');
SELECT usage_tracking.register_installation(:i3, 'gov_gate', 'gov-secret-0123456789abcdef');
SELECT v, count(*) AS calls, min(n) AS first_call, max(n) AS last_call
  FROM (SELECT n, gov.auth(:i3, :now::timestamptz + n * interval '10 seconds') AS v
          FROM generate_series(1, 51) n) a
 GROUP BY v ORDER BY first_call;
SELECT recorded, admitted, pending FROM usage_tracking.quota_usage WHERE account_id = 'gov_gate';
SELECT gov.post(:i3, 'g', 1, 30, '2025-11-03 13:00:00+00', :now)->'quota' AS after_30_events;
SELECT recorded, admitted, pending FROM usage_tracking.quota_usage WHERE account_id = 'gov_gate';
SELECT gov.post(:i3, 'g', 31, 50, '2025-11-03 13:01:00+00', :now)->'quota' AS after_50_events;
SELECT recorded, admitted, pending FROM usage_tracking.quota_usage WHERE account_id = 'gov_gate';
SELECT gov.auth(:i3, '2025-11-03 13:02:00+00') AS still_refused;

-- Several requests at once are all or nothing.
SELECT usage_tracking.set_plan('gov_overage', 10, 50, 80, 120);
SELECT usage_tracking.create_account('gov_over', 'gov_overage');
SELECT usage_tracking.register_installation(:i4, 'gov_over', 'gov-secret-0123456789abcdef');
SELECT gov.auth(:i4, :now, 8) AS eight, gov.auth(:i4, :now, 5) AS five_more,
       gov.auth(:i4, :now, 4) AS four_more, gov.auth(:i4, :now, 1) AS one_more,
       gov.auth(:i4, :now, 13) AS too_large;

-- Unlimited plan: always ok, still counted.
SELECT usage_tracking.create_account('gov_credits', 'credits');
SELECT usage_tracking.register_installation(:i5, 'gov_credits', 'gov-secret-0123456789abcdef');
SELECT gov.auth(:i5, :now, 90) AS unlimited;
SELECT usage_tracking.quota_status(:i5, :now) #> '{used}' AS used,
       usage_tracking.quota_status(:i5, :now) #> '{limit}' AS "limit",
       usage_tracking.quota_status(:i5, :now) #> '{percent}' AS percent;
SELECT gov.post(:i5, 'u', 1, 3, :now)->'quota' AS quota;

-- Last month's events posted in the first minute of a month count for
-- November; the verdict is December's usage (7 admitted, none recorded).
SELECT gov.auth(:i5, '2025-12-01 00:00:10+00', 7) AS december_admitted;
SELECT gov.post(:i5, 'm', 1, 2, '2025-12-01 00:00:30+00', '2025-11-30 23:59:40+00')->'quota' AS quota;
SELECT month, recorded, pending FROM usage_tracking.quota_usage
 WHERE account_id = 'gov_credits' ORDER BY month;

-- Suspended, unknown, bad arguments.
SELECT usage_tracking.set_installation_status(:i5, 'suspended');
SELECT gov.auth(:i5, :now) AS suspended;
SELECT usage_tracking.set_installation_status(:i5, 'active');
SELECT gov.auth('b0000000-0000-4000-8000-000000000000_000000000000', :now) AS unknown;
SELECT gov.try(format('SELECT usage_tracking.authorize(%L, 0)', :i5));
SELECT gov.try(format('SELECT usage_tracking.authorize(%L, 1, -1)', :i5));
SELECT gov.try($$SELECT usage_tracking.quota_status('nope')$$);
