-- Analytics: anomalies, a robust z-score of each installation, account and
-- model against its own previous 28 days.  Own database: the results span
-- every account.  The day under test is 2025-11-20; its history is
-- 2025-10-23 .. 2025-11-19.  Each request costs 0.001 USD.
\set VERBOSITY terse
CREATE DATABASE analytics_anomalies;
\c analytics_anomalies
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

SELECT usage_tracking.set_model_price('ana-unit', 1, 0);
SELECT usage_tracking.create_account('ana_anom', 'agency'), usage_tracking.create_account('ana_flat', 'agency'),
       usage_tracking.create_account('ana_new', 'agency');

-- Direct inserts need their days' partitions first (there is no default partition).
SELECT usage_tracking.ensure_partitions('2025-10-23', '2025-11-27') >= 0 AS partitions_ready;
CREATE FUNCTION seed(inst text, day date, n int, model text DEFAULT 'ana-unit') RETURNS bigint
LANGUAGE sql AS $$
  WITH ins AS (
  INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                     prompt_tokens, completion_tokens, created_at)
  SELECT inst, 'e' || to_char(day, 'YYYYMMDD') || '-' || i,
         encode(sha256(convert_to('user1', 'UTF8')), 'hex'), 'bulk', model,
         1000, 0, day + time '08:00' + i * interval '1 second'
    FROM generate_series(1, n) i
  RETURNING 1)
  SELECT count(*) FROM ins
$$;
-- install_id of installation number k
CREATE FUNCTION inst(k int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT 'bbbbbbbb-0000-4000-8000-' || lpad(k::text, 12, '0') || '_' || lpad(k::text, 12, '0') $$;
SELECT usage_tracking.register_installation(inst(k), acct) IS NOT NULL AS registered, k, acct
  FROM (VALUES (1, 'ana_anom'), (2, 'ana_anom'), (3, 'ana_anom'),
               (4, 'ana_flat'), (5, 'ana_flat'), (6, 'ana_flat'), (7, 'ana_flat'),
               (8, 'ana_new'), (9, 'ana_new')) v(k, acct);

-- 1 steady:  10..14 requests a day (median 12, MAD 1); 13 on the day.
-- 2 spike:   the same history; 80 on the day: 0.6745 x (80 - 12) / 1 = 45.87.
-- 3 drop:    the same history; nothing on the day: 0.6745 x (0 - 12) / 1 = -8.09.
SELECT sum(seed(inst(k), d::date, 10 + (extract(day FROM d)::int % 5))) AS events
  FROM generate_series(date '2025-10-23', '2025-11-19', '1 day') d, generate_series(1, 3) k;
SELECT seed(inst(1), '2025-11-20', 13), seed(inst(2), '2025-11-20', 80);
-- 4 flat:    5 a day every day (MAD 0, mean absolute deviation 0); 5 on the day.
-- 5 flat:    the same history; 20 on the day: spread 10 % of 5, (20 - 5) / 0.5 = 30.
SELECT sum(seed(inst(k), d::date, 5)) AS events
  FROM generate_series(date '2025-10-23', '2025-11-19', '1 day') d, generate_series(4, 5) k;
SELECT seed(inst(4), '2025-11-20', 5), seed(inst(5), '2025-11-20', 20);
-- 6 MAD 0:   10 a day, once 30 (median 10, MAD 0, mean absolute deviation 20/28);
--            40 on the day: (40 - 10) / (1.2533 x 20/28) = 33.51.
SELECT sum(seed(inst(6), d::date, CASE WHEN d = '2025-11-01' THEN 30 ELSE 10 END)) AS events
  FROM generate_series(date '2025-10-23', '2025-11-19', '1 day') d;
SELECT seed(inst(6), '2025-11-20', 40);
-- 7 sparse:  100 every 7th day, else nothing (median 0, MAD 0); 100 on the day:
--            the score is 5.58 but the day is no higher than its busiest: not flagged.
SELECT sum(seed(inst(7), d::date, 100)) AS events
  FROM generate_series(date '2025-10-23', '2025-11-20', '7 days') d;
-- 8 new:     first usage 2 days before the day, 5 and 5, then 500 on the day.
-- 9 new:     first usage ever on the day, 1000 requests, a model nobody else uses.
SELECT seed(inst(8), '2025-11-18', 5, 'ana-new'), seed(inst(8), '2025-11-19', 5, 'ana-new'),
       seed(inst(8), '2025-11-20', 500, 'ana-new');
SELECT seed(inst(9), '2025-11-20', 1000, 'ana-new');

-- Installations flagged on the day: the spike, the drop, the flat history
-- and the MAD-0 history; not the steady, flat-as-usual, sparse or new ones.
SELECT id, metric, value, median, mad, score, direction, history_days
  FROM usage_tracking.anomalies('2025-11-20') WHERE kind = 'installation' ORDER BY id;
SELECT reason FROM usage_tracking.anomalies('2025-11-20') WHERE kind = 'installation' ORDER BY id;
-- The scores are the figures worked out above.
SELECT a.score = round(0.6745 * (80 - 12) / 1, 2) AS spike_by_hand
  FROM usage_tracking.anomalies('2025-11-20') a WHERE a.id = inst(2);
SELECT a.score = round((40 - 10) / (1.2533 * 20 / 28.0), 2) AS mad0_by_hand
  FROM usage_tracking.anomalies('2025-11-20') a WHERE a.id = inst(6);
-- Ordinary days are not flagged: steady, flat as usual, sparse, new.
SELECT count(*) AS ordinary_flagged FROM usage_tracking.anomalies('2025-11-20')
 WHERE id IN (inst(1), inst(4), inst(7), inst(8), inst(9));
-- Accounts and models: ana_anom and ana_flat as a whole, and the model they
-- share; ana_new and its model are new, so not scored.
SELECT kind, id, account_id, metric, value, median, score, direction, history_days
  FROM usage_tracking.anomalies('2025-11-20') WHERE kind <> 'installation' ORDER BY kind, id;
-- The order: strongest first.
SELECT kind, id, score FROM usage_tracking.anomalies('2025-11-20');

-- The day before is ordinary for everyone.
SELECT count(*) AS flagged_day_before FROM usage_tracking.anomalies('2025-11-19');
-- The spike's own ordinary days are never flagged, whatever day is asked.
SELECT count(*) AS spike_flagged_on_ordinary_days
  FROM generate_series(date '2025-11-01', '2025-11-19', '1 day') d,
       usage_tracking.anomalies(d::date) a
 WHERE a.id = inst(2);
-- min_score: a higher bar keeps only the strongest.
SELECT kind, id, score FROM usage_tracking.anomalies('2025-11-20', 40);
-- With a bar of 0, every scored day outside its history's range is listed.
SELECT count(*) > 0 AS zero_bar_lists_more FROM usage_tracking.anomalies('2025-11-20', 0);
-- A new installation is scored from its 8th day of history on: 7 days after
-- its first day, a spike is flagged.
SELECT sum(seed(inst(9), d::date, 10, 'ana-new')) AS events FROM generate_series(date '2025-11-21', '2025-11-26', '1 day') d;
SELECT seed(inst(9), '2025-11-27', 5000, 'ana-new');
SELECT kind, id, metric, value, median, score, history_days
  FROM usage_tracking.anomalies('2025-11-27') WHERE id IN (inst(9), 'ana_new', 'ana-new') ORDER BY kind;
-- while with 2 days of history, 100 times its usual day is not scored at all
SELECT count(*) AS new_listed_at_bar_0 FROM usage_tracking.anomalies('2025-11-20', 0) WHERE id IN (inst(8), inst(9));
-- No usage at all in the window: nothing, and no error.
SELECT count(*) AS flagged_in_2024 FROM usage_tracking.anomalies('2024-01-01');
-- Bad arguments.
SELECT * FROM usage_tracking.anomalies(NULL);
SELECT * FROM usage_tracking.anomalies('2025-11-20', -1);

\c contrib_regression
DROP DATABASE analytics_anomalies;
