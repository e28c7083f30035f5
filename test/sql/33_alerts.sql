-- Alerts: quota levels once per account, level and UTC day; abuse once per
-- installation, kind and UTC hour; a delivery row per channel.  Alerts are
-- global, so this runs in its own database (34_alert_delivery continues in
-- it and drops it).
\set VERBOSITY terse
CREATE DATABASE gov_alerts;
\c gov_alerts
\set VERBOSITY terse
SET timezone = 'UTC';
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;

\set a1 '''a6a60000-0000-4000-8000-000000000021_a6a6a6a6a621'''
\set a2 '''a6a60000-0000-4000-8000-000000000022_a6a6a6a6a622'''
\set a3 '''a6a60000-0000-4000-8000-000000000023_a6a6a6a6a623'''
SELECT usage_tracking.create_account('gov_alert_free', 'free');
SELECT usage_tracking.create_account('gov_alert_pro', 'pro');
SELECT usage_tracking.register_installation(:a1, 'gov_alert_free') IS NOT NULL AS registered;
SELECT usage_tracking.register_installation(:a2, 'gov_alert_pro') IS NOT NULL AS registered;
SELECT usage_tracking.register_installation(:a3, 'gov_alert_pro') IS NOT NULL AS registered;
SELECT usage_tracking.set_alert_channel('gov_alert_free', 'webhook', 'http://127.0.0.1:9/hook',
                                       'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw') AS webhook;
SELECT usage_tracking.set_alert_channel('gov_alert_free', 'slack', 'http://127.0.0.1:9/slack') AS slack;
SELECT usage_tracking.set_alert_channel('gov_alert_free', 'email', 'ops@example.com') AS email;

-- Direct inserts need their days' partitions first (there is no default partition).
SELECT usage_tracking.ensure_partitions('2025-11-03', '2025-12-01') >= 0 AS partitions_ready;
-- n events of an installation created at "at" plus i seconds, tokens each.
CREATE FUNCTION pg_temp.store(install text, prefix text, n int, at timestamptz, tokens int DEFAULT 120)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                     prompt_tokens, completion_tokens, created_at)
  SELECT install, prefix || i, repeat('a', 64), 'bulk', 'gpt-4o-mini', tokens - 20, 20,
         at + i * interval '1 second'
    FROM generate_series(1, n) i
$$;

-- Quota levels of the free plan (50 a month), one alert per level per day.
SELECT pg_temp.store(:a1, 'a', 37, '2025-11-03 08:00:00+00');
SELECT usage_tracking.evaluate_alerts('2025-11-03 09:00:00+00') AS at_37;
SELECT pg_temp.store(:a1, 'b', 1, '2025-11-03 09:00:00+00');
SELECT usage_tracking.evaluate_alerts('2025-11-03 09:05:00+00') AS at_38;
SELECT usage_tracking.evaluate_alerts('2025-11-03 09:10:00+00') AS at_38_again;
SELECT pg_temp.store(:a1, 'c', 7, '2025-11-03 09:10:00+00');
SELECT usage_tracking.evaluate_alerts('2025-11-03 09:15:00+00') AS at_45;
SELECT pg_temp.store(:a1, 'd', 5, '2025-11-03 09:15:00+00');
SELECT usage_tracking.evaluate_alerts('2025-11-03 09:20:00+00') AS at_50;
SELECT usage_tracking.evaluate_alerts('2025-11-03 23:59:59+00') AS same_day;
SELECT usage_tracking.evaluate_alerts('2025-11-04 00:00:00+00') AS next_day;
SELECT usage_tracking.evaluate_alerts('2025-11-04 12:00:00+00') AS next_day_again;

-- Abuse: 200 recorded requests in an hour are not abuse, 201 are.
SELECT pg_temp.store(:a2, 'x', 200, '2025-11-03 10:00:00+00');
SELECT usage_tracking.evaluate_alerts('2025-11-03 10:30:00+00') AS at_200;
SELECT (usage_tracking.quota_status(:a2, '2025-11-03 10:30:00+00')->'hour') - 'start' AS hour_at_200;
SELECT pg_temp.store(:a2, 'y', 1, '2025-11-03 10:59:00+00');
SELECT usage_tracking.quota_status(:a2, '2025-11-03 10:59:30+00')->'abuse' AS abuse_flags;
SELECT usage_tracking.evaluate_alerts('2025-11-03 11:05:00+00') AS at_201;
SELECT usage_tracking.evaluate_alerts('2025-11-03 11:10:00+00') AS at_201_again;
-- Tokens: over 100 000 in an hour.
SELECT pg_temp.store(:a2, 'z', 2, '2025-11-03 13:00:00+00', 50001);
SELECT usage_tracking.evaluate_alerts('2025-11-03 13:30:00+00') AS tokens_over;
-- Calls admitted by authorize() count too, before their events arrive:
-- 201 calls between 14:00 and 14:50.
SELECT count(*) FILTER (WHERE (usage_tracking.authorize(:a3, 1, 10,
           '2025-11-03 14:00:00+00'::timestamptz + n * interval '15 seconds'))->>'allowed' = 'true') AS admitted
  FROM generate_series(0, 200) n;
SELECT usage_tracking.evaluate_alerts('2025-11-03 14:55:00+00') AS admitted_201;
-- ... and still in the next hour (the previous hour is kept).
SELECT usage_tracking.evaluate_alerts('2025-11-03 15:05:00+00') AS next_hour;

SELECT alert_id, account_id, install_id IS NOT NULL AS per_installation, level,
       period_start, observed, threshold, created_at
  FROM usage_tracking.alerts ORDER BY alert_id;
SELECT usage_tracking.alert_message(a) FROM usage_tracking.alerts a ORDER BY alert_id;

-- Each alert of an account with channels has one delivery per channel, due
-- at once.
SELECT d.alert_id, c.kind, d.attempts, d.next_attempt_at, d.delivered_at
  FROM usage_tracking.alert_deliveries d JOIN usage_tracking.alert_channels c USING (channel_id)
 ORDER BY 1, 2;

-- A new month starts at ok; hourly counters older than 7 days are pruned.
SELECT count(*) AS hourly_rows FROM usage_tracking.hourly_usage;
SELECT usage_tracking.evaluate_alerts('2025-12-01 00:05:00+00') AS next_month;
SELECT count(*) AS hourly_rows FROM usage_tracking.hourly_usage;
