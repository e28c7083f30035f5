-- Read side: the admin installations listing and the BI views
-- (daily_usage, monthly_usage, installation_usage): totals, column
-- comments, security_invoker.  Uses the installations of 10_read_summary.
\set VERBOSITY terse
\set a1 '''a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1'''
\set a2 '''a2a2a2a2-1010-4010-8010-101010101010_1010a2a2a2a2'''
\set b1 '''b1b1b1b1-1010-4010-8010-101010101010_1010b1b1b1b1'''
\set mine 'install_id IN (''a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1'', ''a2a2a2a2-1010-4010-8010-101010101010_1010a2a2a2a2'', ''b1b1b1b1-1010-4010-8010-101010101010_1010b1b1b1b1'')'

-- installations(): every installation with account, status, first/last
-- seen and the period's totals, equal to the raw events of the period.
SELECT usage_tracking.set_installation_status(:b1, 'suspended');
SELECT * FROM usage_tracking.installations('2025-10-01', '2025-10-31') WHERE :mine;
SELECT i.install_id, i.total_requests = o.requests AS requests_match, i.total_tokens = o.tokens AS tokens_match,
       i.estimated_cost_usd::numeric(30,12) = o.cost AS cost_match
  FROM usage_tracking.installations('2025-10-06', '2025-10-12') i
  JOIN (SELECT install_id, sum(total_requests) AS requests, sum(prompt_tokens + completion_tokens) AS tokens,
               sum(estimated_cost_usd)::numeric(30,12) AS cost
          FROM t.oracle WHERE usage_date BETWEEN '2025-10-06' AND '2025-10-12' GROUP BY install_id) o USING (install_id)
 WHERE i.:mine ORDER BY 1;
-- A period without usage still lists the installation, with zero totals.
SELECT install_id, total_requests, total_tokens, estimated_cost_usd
  FROM usage_tracking.installations('2024-01-01', '2024-01-31') WHERE :mine;
SELECT t.read_try($$SELECT * FROM usage_tracking.installations('2025-10-31', '2025-10-01')$$);
SELECT usage_tracking.set_installation_status(:b1, 'active');

-- monthly_usage equals the raw events grouped by account, installation and month.
SELECT * FROM usage_tracking.monthly_usage WHERE :mine ORDER BY install_id, month;
SELECT count(*) AS drifting_rows FROM (
  (SELECT account_id, install_id, month, total_requests, total_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
     FROM usage_tracking.monthly_usage WHERE :mine
   EXCEPT ALL
   SELECT i.account_id, o.install_id, date_trunc('month', o.usage_date)::date, sum(o.total_requests),
          sum(o.prompt_tokens + o.completion_tokens), sum(o.estimated_cost_usd)::numeric(30,12), sum(o.unpriced_requests)
     FROM t.oracle o JOIN usage_tracking.installations i USING (install_id)
    WHERE o.:mine GROUP BY 1, 2, 3)
  UNION ALL
  (SELECT i.account_id, o.install_id, date_trunc('month', o.usage_date)::date, sum(o.total_requests),
          sum(o.prompt_tokens + o.completion_tokens), sum(o.estimated_cost_usd)::numeric(30,12), sum(o.unpriced_requests)
     FROM t.oracle o JOIN usage_tracking.installations i USING (install_id)
    WHERE o.:mine GROUP BY 1, 2, 3
   EXCEPT ALL
   SELECT account_id, install_id, month, total_requests, total_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
     FROM usage_tracking.monthly_usage WHERE :mine)) x;

-- installation_usage counts the last 30 UTC days (today included), so this
-- part runs against the real clock: an event 40 days old is outside the
-- window, events of yesterday and 29 days ago are inside.  Only relations
-- between the numbers are shown.
SELECT usage_tracking.create_account('acc_read_window', 'pro');
SELECT usage_tracking.register_installation('d1d1d1d1-1010-4010-8010-101010101010_1010d1d1d1d1',
                                            'acc_read_window', 'read-secret-d1-0123456789') IS NOT NULL AS registered;
SELECT (now() AT TIME ZONE 'UTC')::date AS today \gset
SELECT t.post(t.batch('d1d1d1d1-1010-4010-8010-101010101010_1010d1d1d1d1', jsonb_build_array(
         t.event('rd1_old', (:'today'::date - 40)::timestamp AT TIME ZONE 'UTC' + interval '1 hour', 1000, 1000),
         t.event('rd1_edge', (:'today'::date - 29)::timestamp AT TIME ZONE 'UTC' + interval '1 minute', 30, 7),
         t.event('rd1_new', (:'today'::date - 1)::timestamp AT TIME ZONE 'UTC' + interval '1 hour', 100, 20))),
       'read-secret-d1-0123456789', now())->'received' AS received;
SELECT since = :'today'::date - 29 AS window_is_30_days, total_requests, prompt_tokens, completion_tokens,
       total_tokens, estimated_cost_usd > 0 AS priced, last_seen_at IS NOT NULL AS seen, status
  FROM usage_tracking.installation_usage WHERE install_id = 'd1d1d1d1-1010-4010-8010-101010101010_1010d1d1d1d1';
-- Installations without usage in the window are listed with zeros.
SELECT install_id, total_requests, total_tokens, estimated_cost_usd
  FROM usage_tracking.installation_usage WHERE :mine ORDER BY 1;
DELETE FROM usage_tracking.events WHERE install_id = 'd1d1d1d1-1010-4010-8010-101010101010_1010d1d1d1d1';
DELETE FROM usage_tracking.daily WHERE install_id = 'd1d1d1d1-1010-4010-8010-101010101010_1010d1d1d1d1';
DELETE FROM usage_tracking.accounts WHERE account_id = 'acc_read_window';

-- The BI views are security_invoker and every column has a comment.
SELECT c.relname, c.reloptions, obj_description(c.oid, 'pg_class') IS NOT NULL AS commented,
       count(a.attname) AS columns, count(col_description(c.oid, a.attnum)) AS commented_columns
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'usage_tracking'::regnamespace
   AND c.relname IN ('daily_usage', 'monthly_usage', 'installation_usage')
 GROUP BY c.oid, c.relname, c.reloptions ORDER BY 1;
-- Every read function has a comment.
SELECT p.oid::regprocedure AS function, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented, p.provolatile, p.prosecdef
  FROM pg_proc p
 WHERE p.pronamespace = 'usage_tracking'::regnamespace
   AND p.proname IN ('usage_summary', 'list_events', 'installations', 'export_csv', 'current_account')
 ORDER BY 1;
