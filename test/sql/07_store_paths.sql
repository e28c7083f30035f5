-- Ingest stores events directly (like COPY) while the events table allows
-- it, and through an INSERT statement otherwise; both give the same result.
\set VERBOSITY terse
\set inst '''6fa459ea-ee8a-4ca4-894e-db77e160355e_0123456789ab'''
\set secret '''pricing-secret-0123456789'''
\set now '''2025-11-03 12:00:00+00'''

-- A batch whose first event is new but a later one is already stored: the
-- optimistic insert meets the unique index, is undone, and every event is
-- probed instead.
SELECT t.post(t.batch(:inst, jsonb_build_array(t.event('sp_1', '2025-11-03 09:00:00+00', source => 'inline'))),
              :secret, :now)->'received' AS first;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_2', '2025-11-03 09:01:00+00', source => 'inline'),
         t.event('sp_1', '2025-11-03 09:00:00+00', source => 'inline'),
         t.event('sp_3', '2025-11-03 09:02:00+00', source => 'inline'))), :secret, :now) - 'quota' AS mixed;
SELECT event_id FROM usage_tracking.events WHERE event_id LIKE 'sp_%' ORDER BY 1;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source = 'inline';

-- Another trigger on the events table: ingest uses an INSERT statement, so
-- that trigger fires, and the summaries stay exact.
CREATE TABLE t.seen_by_trigger (n bigint);
CREATE FUNCTION t.count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO t.seen_by_trigger SELECT count(*) FROM new_rows;
  RETURN NULL;
END $$;
CREATE TRIGGER count_rows AFTER INSERT ON usage_tracking.events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION t.count_rows();
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_4', '2025-11-03 09:03:00+00', source => 'inline'),
         t.event('sp_1', '2025-11-03 09:00:00+00', source => 'inline'),
         t.event('sp_5', '2025-11-03 09:04:00+00', source => 'inline'))), :secret, :now) - 'quota' AS through_insert;
SELECT n AS rows_the_trigger_saw FROM t.seen_by_trigger;
DROP TRIGGER count_rows ON usage_tracking.events;

-- A column ingest does not fill that needs a value: the INSERT path fills
-- its default.
ALTER TABLE usage_tracking.events ADD COLUMN t_note text NOT NULL DEFAULT 'filled';
SELECT t.post(t.batch(:inst, jsonb_build_array(t.event('sp_6', '2025-11-03 09:05:00+00', source => 'inline'))),
              :secret, :now)->'received' AS received;
SELECT event_id, t_note FROM usage_tracking.events WHERE event_id = 'sp_6';
ALTER TABLE usage_tracking.events DROP COLUMN t_note;

-- Events of several days go to their own partitions.
SELECT usage_tracking.ensure_partitions('2025-11-01', '2025-11-03') >= 0 AS partitions_ready;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_7', '2025-11-01 23:59:59+00', source => 'inline'),
         t.event('sp_8', '2025-11-02 00:00:00+00', source => 'inline'),
         t.event('sp_9', '2025-11-03 00:00:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT e.event_id, e.tableoid::regclass AS partition
  FROM usage_tracking.events e WHERE e.event_id IN ('sp_7', 'sp_8', 'sp_9') ORDER BY 1;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source = 'inline';
