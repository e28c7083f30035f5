-- Alert delivery records: channels, what the notifier is handed, retries
-- with exponential backoff.  Continues in the database 33_alerts made.
\c gov_alerts
\set VERBOSITY terse
SET timezone = 'UTC';
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Channels: one per kind per account; checked targets.
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('nobody', 'slack', 'https://hooks.example.com/x')$$);
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'pager', 'https://x')$$);
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'slack', 'ftp://x')$$);
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'email', 'not an address')$$);
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'slack', 'https://x', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')$$);
SELECT pg_temp.try($$SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'webhook', 'https://x', 'plain')$$);
-- A generated webhook secret is whsec_ and 32 random bytes, kept when the
-- URL changes; a NULL target removes the channel.
SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'webhook', 'https://a.example.com/hook')->>'secret' AS s1 \gset
SELECT :'s1' ~ '^whsec_[A-Za-z0-9+/]{43}=$' AS generated,
       usage_tracking.set_alert_channel('gov_alert_pro', 'webhook', 'https://b.example.com/hook')->>'secret' = :'s1' AS kept;
SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'discord', 'https://discord.example.com/api/webhooks/1/x') - 'channel_id' AS discord;
SELECT usage_tracking.set_alert_channel('gov_alert_pro', 'webhook', NULL) - 'channel_id' AS removed;
SELECT account_id, kind, target FROM usage_tracking.alert_channels ORDER BY account_id, kind;

-- What is sent, per kind.
SELECT k AS kind, usage_tracking.alert_body(a, k) AS body
  FROM usage_tracking.alerts a, unnest(ARRAY['webhook', 'slack', 'discord', 'email']) k
 WHERE a.alert_id = 2 ORDER BY 1;
SELECT usage_tracking.alert_body(a, 'slack') AS abuse_for_slack
  FROM usage_tracking.alerts a WHERE a.alert_id = 5;

-- The notifier claims due deliveries: each attempt is counted and leased.
\set t0 '''2025-11-04 00:00:00+00'''
SELECT alert_id, kind, attempt, message_id, subject, body = usage_tracking.alert_body(a, kind) AS rendered
  FROM usage_tracking.claim_deliveries(4, '5 minutes', :t0) c
  JOIN usage_tracking.alerts a USING (alert_id);
SELECT alert_id, kind, attempt, message_id
  FROM usage_tracking.claim_deliveries(100, '5 minutes', :t0);
SELECT count(*) AS nothing_due FROM usage_tracking.claim_deliveries(100, '5 minutes', :t0::timestamptz + interval '4 minutes 59 seconds');

-- Outcomes: success is final; failures back off 30 s, 60 s, 120 s, ...;
-- after max_attempts (10) the delivery gives up.
CREATE FUNCTION pg_temp.outcome(alert bigint, channel text, ok boolean, status text, at timestamptz)
RETURNS text LANGUAGE sql AS $$
  SELECT usage_tracking.record_delivery(d.alert_id, d.channel_id, ok, status, now => at)
    FROM usage_tracking.alert_deliveries d JOIN usage_tracking.alert_channels c USING (channel_id)
   WHERE d.alert_id = alert AND c.kind = channel;
  SELECT format('attempts %s, next in %s, status %s, delivered %s', d.attempts,
                coalesce((d.next_attempt_at - at)::text, 'never'), d.last_status, d.delivered_at IS NOT NULL)
    FROM usage_tracking.alert_deliveries d JOIN usage_tracking.alert_channels c USING (channel_id)
   WHERE d.alert_id = alert AND c.kind = channel
$$;
SELECT pg_temp.outcome(1, 'slack', true, 'HTTP 200', :t0::timestamptz + interval '1 minute') AS delivered;
SELECT pg_temp.outcome(1, 'slack', false, 'late failure', :t0::timestamptz + interval '2 minutes') AS stays_delivered;
SELECT pg_temp.outcome(3, 'webhook', false, 'HTTP 503', :t0::timestamptz + interval '1 minute') AS attempt_1;
SELECT alert_id, kind, attempt
  FROM usage_tracking.claim_deliveries(100, '5 minutes', :t0::timestamptz + interval '1 minute 30 seconds');
SELECT pg_temp.outcome(3, 'webhook', false, 'HTTP 503', :t0::timestamptz + interval '1 minute 30 seconds') AS attempt_2;
SELECT alert_id, kind, attempt
  FROM usage_tracking.claim_deliveries(100, '5 minutes', :t0::timestamptz + interval '2 minutes 30 seconds');
SELECT pg_temp.outcome(3, 'webhook', false, 'connection refused', :t0::timestamptz + interval '2 minutes 30 seconds') AS attempt_3;
UPDATE usage_tracking.alert_deliveries d SET attempts = 10
  FROM usage_tracking.alert_channels c
 WHERE c.channel_id = d.channel_id AND d.alert_id = 4 AND c.kind = 'email';
SELECT pg_temp.outcome(4, 'email', false, 'SMTP 550', :t0::timestamptz + interval '3 minutes') AS attempt_10;
SELECT c.kind, count(*) FILTER (WHERE d.delivered_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE d.delivered_at IS NULL AND d.next_attempt_at IS NOT NULL) AS pending,
       count(*) FILTER (WHERE d.delivered_at IS NULL AND d.next_attempt_at IS NULL) AS given_up
  FROM usage_tracking.alert_deliveries d JOIN usage_tracking.alert_channels c USING (channel_id)
 GROUP BY 1 ORDER BY 1;

\c contrib_regression
DROP DATABASE gov_alerts;
