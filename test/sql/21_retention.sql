-- Retention: with "now" moved 91 days ahead, run_maintenance drops the
-- expired days whole, the raw table shrinks on disk and no dead tuple is
-- left; resends stay duplicates for the whole retention; late events add.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP DATABASE IF EXISTS ut_retention;
CREATE DATABASE ut_retention TEMPLATE ut_maint;
\c ut_retention
SET client_min_messages = warning;
CREATE EXTENSION pgstattuple;
\set now0 '''2025-11-03 12:00:00+00'''

-- First run: partitions for every kept day and a week ahead; nothing to expire.
SELECT r->'partitions_created' AS created, r->'events'->'kept_from' AS kept_from,
       r->'events'->'partitions_dropped' AS dropped, r->'daily'->'kept_from' AS daily_kept_from
  FROM usage_tracking.run_maintenance(:now0) r;
SELECT count(*) AS events_partitions, min(lo::timestamptz) AS first, max(hi::timestamptz) AS last
  FROM usage_tracking._partitions('usage_tracking.events') WHERE hi IS NOT NULL;
SELECT part, lo, hi FROM usage_tracking._partitions('usage_tracking.daily');
-- A second run at the same time does nothing.
SELECT r - 'now' - 'events' - 'daily' AS again, r->'events'->'partitions_dropped' AS dropped
  FROM usage_tracking.run_maintenance(:now0) r;

-- Data: bulk days that will expire, one that will stay, and signed batches.
SELECT m.fill(1, '2025-10-01', 4000), m.fill(2, '2025-10-01', 1000),
       m.fill(1, '2025-11-03', 4000), m.fill(1, '2025-11-05', 1000);
SELECT m.post(1, jsonb_build_array(m.event('evt_old', '2025-11-03 10:00:00+00'),
                                   m.event('evt_keep', '2025-11-03 11:00:00+00', usr => 2)),
              :now0) AS posted;
-- There is no default partition: ingest made the partitions it needed.
SELECT count(*) AS default_partitions FROM usage_tracking._partitions('usage_tracking.events') WHERE lo IS NULL;
SELECT count(*) AS drift FROM m.drift;

-- 89 days later the event is still stored: a resend is a duplicate, not a new count.
SELECT sum(total_requests) AS nov3_requests FROM usage_tracking.daily WHERE usage_date = '2025-11-03';
SELECT r->'events'->'partitions_dropped'->>0 AS first_dropped,
       jsonb_array_length(r->'events'->'partitions_dropped') AS dropped
  FROM usage_tracking.run_maintenance(:now0::timestamptz + interval '89 days') r;
SELECT m.post(1, jsonb_build_array(m.event('evt_old', '2025-11-03 10:00:00+00')),
              :now0::timestamptz + interval '89 days') AS resend_89_days;
SELECT sum(total_requests) AS nov3_requests FROM usage_tracking.daily WHERE usage_date = '2025-11-03';
SELECT count(*) AS stored FROM usage_tracking.events WHERE event_id = 'evt_old';

-- 91 days later: a resend is refused on its own, as older than retention.
SELECT m.post(1, jsonb_build_array(m.event('evt_old', '2025-11-03 10:00:00+00')),
              :now0::timestamptz + interval '91 days') AS resend_91_days;

-- Expire: every day before 2025-11-04 goes, whole partitions, and the raw
-- table's size on disk falls by what they held (less the new empty
-- partitions made ahead).
SELECT m.size('usage_tracking.events') AS size_before \gset
SELECT count(*) AS events_before FROM usage_tracking.events;
SELECT r->'events'->'kept_from' AS kept_from,
       jsonb_array_length(r->'events'->'partitions_dropped') AS dropped,
       r->'events'->'partitions_dropped' ? 'usage_tracking.events_p20251103' AS dropped_nov3,
       r->'events'->'partitions_dropped' ? 'usage_tracking.events_p20251104' AS dropped_nov4,
       r->'events'->'default_rows_deleted' AS default_deleted, r->'busy' AS busy,
       r->'events'->>'bytes_freed' AS bytes_freed
  FROM usage_tracking.run_maintenance(:now0::timestamptz + interval '91 days') r \gset
SELECT :'kept_from' AS kept_from, :dropped AS dropped, :'dropped_nov3' AS dropped_nov3,
       :'dropped_nov4' AS dropped_nov4, :'default_deleted' AS default_deleted, :'busy' AS busy;
SELECT m.size('usage_tracking.events') AS size_after \gset
SELECT :size_after < :size_before AS size_fell,
       :size_before - :size_after BETWEEN 0.9 * :bytes_freed AND :bytes_freed AS fell_by_what_was_dropped;
SELECT count(*) AS events_after,
       count(*) FILTER (WHERE created_at < '2025-11-04 00:00:00+00') AS expired_left
  FROM usage_tracking.events;
-- No DELETE happened: no dead tuple in any remaining partition.
SELECT sum((pgstattuple(relid)).dead_tuple_count) AS dead_tuples
  FROM pg_partition_tree('usage_tracking.events') WHERE isleaf;
-- Daily summaries of expired raw days remain (two-year retention).
SELECT usage_date, sum(total_requests) AS requests FROM usage_tracking.daily
 WHERE usage_date IN ('2025-10-01', '2025-11-03', '2025-11-05') GROUP BY 1 ORDER BY 1;
SELECT count(*) AS drift FROM m.drift;
-- Idempotent: running again drops and creates nothing.
SELECT r->'partitions_created' AS created, r->'events'->'partitions_dropped' AS dropped
  FROM usage_tracking.run_maintenance(:now0::timestamptz + interval '91 days') r;

-- A late but valid event for a day whose summary exists adds to it.
SELECT sum(total_requests) AS nov5_before FROM usage_tracking.daily WHERE usage_date = '2025-11-05';
SELECT m.post(1, jsonb_build_array(m.event('evt_late', '2025-11-05 09:00:00+00', usr => 2)),
              :now0::timestamptz + interval '91 days') AS late;
SELECT sum(total_requests) AS nov5_after FROM usage_tracking.daily WHERE usage_date = '2025-11-05';
SELECT r->'drifted' AS drifted FROM usage_tracking.reconcile('2025-11-05') r;
-- An expired day can no longer be reconciled.
SELECT m.try($$SELECT usage_tracking.reconcile('2025-11-03')::text$$) AS reconcile_expired;

-- Daily retention: two years later the months past it go whole, the
-- straddling month loses its older days.
SELECT part FROM usage_tracking._partitions('usage_tracking.daily') WHERE hi <= '2025-11-01';
SELECT r->'daily' AS daily
  FROM usage_tracking.run_maintenance('2027-10-15 12:00:00+00') r;
SELECT part FROM usage_tracking._partitions('usage_tracking.daily') WHERE hi <= '2025-11-01';
SELECT min(usage_date) AS oldest_daily FROM usage_tracking.daily;
SELECT * FROM usage_tracking.maintenance_state;
SELECT count(*) AS maintenance_runs_logged FROM usage_tracking.maintenance_log WHERE job = 'run_maintenance';

\c contrib_regression
DROP DATABASE ut_retention;
