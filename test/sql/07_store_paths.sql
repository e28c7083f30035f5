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

-- Summary and counter rows are added to without an SQL statement too,
-- unless a table needs one: here, a trigger of its own on each.  Both ways
-- give the same rows (32_rate_limits follows the window the direct way).
CREATE TABLE t.counter_rows_seen (tbl text, op text);
CREATE FUNCTION t.note_counter_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO t.counter_rows_seen VALUES (TG_TABLE_NAME, TG_OP);
  RETURN NULL;
END $$;
CREATE TRIGGER note_row AFTER INSERT OR UPDATE ON usage_tracking.daily
  FOR EACH ROW EXECUTE FUNCTION t.note_counter_row();
CREATE TRIGGER note_row AFTER INSERT OR UPDATE ON usage_tracking.quota_usage
  FOR EACH ROW EXECUTE FUNCTION t.note_counter_row();
CREATE TRIGGER note_row AFTER INSERT OR UPDATE ON usage_tracking.hourly_usage
  FOR EACH ROW EXECUTE FUNCTION t.note_counter_row();
CREATE TRIGGER note_row AFTER INSERT OR UPDATE ON usage_tracking.ingest_windows
  FOR EACH ROW EXECUTE FUNCTION t.note_counter_row();
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_10', '2025-11-03 09:06:00+00', source => 'inline'),
         t.event('sp_11', '2025-11-03 09:07:00+00', source => 'queue'))), :secret, :now)->'received' AS received;
SELECT tbl, op, count(*) FROM t.counter_rows_seen GROUP BY 1, 2 ORDER BY 1, 2;
DROP TRIGGER note_row ON usage_tracking.daily;
DROP TRIGGER note_row ON usage_tracking.quota_usage;
DROP TRIGGER note_row ON usage_tracking.hourly_usage;
DROP TRIGGER note_row ON usage_tracking.ingest_windows;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source IN ('inline', 'queue');

-- The quota counters of the account and the hourly ones of the
-- installation equal the raw events, whichever way each batch was counted.
SELECT (SELECT sum(recorded) FROM usage_tracking.quota_usage q
          JOIN usage_tracking.installations i USING (account_id) WHERE i.install_id = :inst)
       = (SELECT count(*) FROM usage_tracking.events e JOIN usage_tracking.installations i USING (install_id)
           WHERE i.account_id = (SELECT account_id FROM usage_tracking.installations WHERE install_id = :inst))
         AS quota_exact,
       NOT EXISTS (SELECT date_trunc('hour', created_at), count(*), sum(prompt_tokens + completion_tokens)
                     FROM usage_tracking.events WHERE install_id = :inst GROUP BY 1
                   EXCEPT ALL
                   SELECT hour, requests, tokens FROM usage_tracking.hourly_usage WHERE install_id = :inst)
       AND NOT EXISTS (SELECT hour, requests, tokens FROM usage_tracking.hourly_usage WHERE install_id = :inst
                       EXCEPT ALL
                       SELECT date_trunc('hour', created_at), count(*), sum(prompt_tokens + completion_tokens)
                         FROM usage_tracking.events WHERE install_id = :inst GROUP BY 1) AS hourly_exact;

-- A summary partition whose columns are in another order than the parent's
-- (and one dropped): rows are converted on the way in and out.  Attached by
-- hand, a partition needs the primary key of the others (the parents carry
-- none): without it, ingest refuses to write there.
CREATE TABLE t.daily_odd (gone int, unpriced_requests bigint NOT NULL DEFAULT 0,
  estimated_cost_usd numeric, cached_prompt_tokens bigint NOT NULL DEFAULT 0,
  completion_tokens bigint NOT NULL DEFAULT 0, prompt_tokens bigint NOT NULL DEFAULT 0,
  total_requests bigint NOT NULL DEFAULT 0, model text COLLATE "C" NOT NULL,
  source text COLLATE "C" NOT NULL, wp_user_id_hash text COLLATE "C" NOT NULL,
  usage_date date NOT NULL, install_id text COLLATE "C" NOT NULL);
ALTER TABLE t.daily_odd DROP COLUMN gone;
ALTER TABLE usage_tracking.daily ATTACH PARTITION t.daily_odd FOR VALUES FROM ('2025-09-01') TO ('2025-10-01');
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_odd_1', '2025-09-15 08:59:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT count(*) AS stored FROM usage_tracking.events WHERE event_id = 'sp_odd_1';
ALTER TABLE t.daily_odd ADD PRIMARY KEY (install_id, usage_date, wp_user_id_hash, source, model);
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_12', '2025-09-15 09:00:00+00', source => 'inline'),
         t.event('sp_13', '2025-09-15 09:01:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_14', '2025-09-15 09:02:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT usage_date, source, total_requests, prompt_tokens FROM t.daily_odd;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source IN ('inline', 'queue');
DELETE FROM usage_tracking.events WHERE event_id IN ('sp_12', 'sp_13', 'sp_14');
DELETE FROM usage_tracking.quota_usage WHERE month = '2025-09-01';
DELETE FROM usage_tracking.hourly_usage WHERE hour = '2025-09-15 09:00:00+00';
ALTER TABLE usage_tracking.daily DETACH PARTITION t.daily_odd;
DROP TABLE t.daily_odd;

-- A counter table with a second unique index: the executor probes every
-- unique index (no open-scan probe), and the row still adds up.
CREATE UNIQUE INDEX t_hourly_alt ON usage_tracking.hourly_usage (hour, install_id);
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_30', '2025-11-03 10:00:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_31', '2025-11-03 10:01:00+00', source => 'inline'),
         t.event('sp_32', '2025-11-03 10:02:00+00', source => 'inline'))), :secret, :now)->'received' AS received;
SELECT requests FROM usage_tracking.hourly_usage WHERE install_id = :inst AND hour = '2025-11-03 10:00:00+00';
DROP INDEX usage_tracking.t_hourly_alt;

-- CHECK constraints of the counter tables hold on the direct path too, and
-- one added later applies at once (the compiled constraints are rebuilt).
SELECT recorded AS rec FROM usage_tracking.quota_usage WHERE account_id = 'acc_core' AND month = '2025-11-01' \gset
ALTER TABLE usage_tracking.quota_usage ADD CONSTRAINT t_cap CHECK (recorded <= :rec + 1);
SELECT count(*) AS events_before FROM usage_tracking.events \gset
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_15', '2025-11-03 09:08:00+00', source => 'inline'),
         t.event('sp_16', '2025-11-03 09:09:00+00', source => 'inline'))), :secret, :now)->'received' AS over_cap;
SELECT count(*) - :events_before AS written FROM usage_tracking.events;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_15', '2025-11-03 09:08:00+00', source => 'inline'))), :secret, :now)->'received' AS at_cap;
ALTER TABLE usage_tracking.quota_usage DROP CONSTRAINT t_cap;
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('sp_16', '2025-11-03 09:09:00+00', source => 'inline'))), :secret, :now)->'received' AS cap_dropped;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source IN ('inline', 'queue');

-- A retry with the same keys is known to be all duplicates from its first
-- event, which carries the SHA-256 of the batch's keys (batch_digest).
SELECT t.batch(:inst, jsonb_build_array(
         t.event('dg_1', '2025-11-03 10:00:00+00', source => 'inline'),
         t.event('dg_2', '2025-11-03 10:01:00+00', source => 'inline', usr => 2),
         t.event('dg_3', '2025-11-03 10:02:00+00', source => 'inline'))) AS dg_body \gset
SELECT t.post(:'dg_body', :secret, :now) - 'quota' - 'event_ids' AS first_send;
SELECT event_id, batch_digest = (
         SELECT sha256(string_agg(convert_to(e->>'event_id', 'UTF8') || '\x00'::bytea
                                  || int8send((extract(epoch FROM (e->>'created_at')::timestamptz) * 1000000)::int8
                                              - 946684800000000), ''::bytea ORDER BY n))
           FROM jsonb_array_elements((:'dg_body')::jsonb->'events') WITH ORDINALITY a(e, n)) AS digest_of_keys,
       batch_digest IS NULL AS no_digest
  FROM usage_tracking.events WHERE event_id LIKE 'dg\_%' ORDER BY 1;
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS scans FROM pg_stat_user_indexes
 WHERE indexrelid = 'usage_tracking.events_p20251103_pkey'::regclass \gset
SELECT t.post(:'dg_body', :secret, '2025-11-03 12:02:00+00') - 'quota' - 'event_ids' AS retry;
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :scans AS key_probes FROM pg_stat_user_indexes
 WHERE indexrelid = 'usage_tracking.events_p20251103_pkey'::regclass;
-- The same first event in a longer body: the new event is stored.
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('dg_1', '2025-11-03 10:00:00+00', source => 'inline'),
         t.event('dg_2', '2025-11-03 10:01:00+00', source => 'inline', usr => 2),
         t.event('dg_3', '2025-11-03 10:02:00+00', source => 'inline'),
         t.event('dg_4', '2025-11-03 10:03:00+00', source => 'inline'))), :secret, :now)
       - 'quota' - 'event_ids' AS longer_body;
-- A batch with a rejected event (too far in the future): its digest covers
-- the valid keys only, so sent again once that event is valid, it is stored.
SELECT t.batch(:inst, jsonb_build_array(
         t.event('dg_5', '2025-11-03 10:04:00+00', source => 'inline'),
         t.event('dg_6', '2025-11-03 12:10:00+00', source => 'inline'))) AS dg_body2 \gset
SELECT t.post(:'dg_body2', :secret, :now) - 'quota' - 'event_ids' AS with_rejection;
SELECT t.post(:'dg_body2', :secret, '2025-11-03 12:06:00+00') - 'quota' - 'event_ids' AS later;
-- After an erasure the retry is checked event by event again: the erased
-- user's event it carries is refused (erasure_tombstones), the others are
-- duplicates.
SELECT usage_tracking.forget_user(:inst, t.user_hash(2), '2025-11-03 12:06:30+00') ->> 'events' AS erased;
SELECT count(*) AS digests_left FROM usage_tracking.events
 WHERE install_id = :inst AND batch_digest IS NOT NULL;
SELECT t.post(:'dg_body', :secret, '2025-11-03 12:07:00+00') - 'quota' - 'event_ids' AS retry_after_erasure;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst AND source IN ('inline', 'queue');

-- Counter rows are written directly only for a user who holds every
-- privilege the statement would need: a role that may insert events but
-- only read the counter tables goes through the statement, which refuses.
CREATE ROLE t_events_writer BYPASSRLS;
GRANT USAGE ON SCHEMA usage_tracking TO t_events_writer;
GRANT INSERT ON usage_tracking.events TO t_events_writer;
GRANT EXECUTE ON FUNCTION usage_tracking.valid_shape("char", text) TO t_events_writer;
GRANT SELECT ON usage_tracking.installations, usage_tracking.quota_usage,
                usage_tracking.hourly_usage, usage_tracking.daily TO t_events_writer;
SELECT t.user_hash(1) AS uh \gset
SET ROLE t_events_writer;
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at)
VALUES (:inst, 'priv_1', :'uh', 'inline', 'gpt-4o-mini', 10, 5, '2025-11-03 09:30:00+00');
RESET ROLE;
SELECT count(*) AS written FROM usage_tracking.events WHERE event_id = 'priv_1';
REVOKE ALL ON usage_tracking.events, usage_tracking.installations, usage_tracking.quota_usage,
              usage_tracking.hourly_usage, usage_tracking.daily FROM t_events_writer;
REVOKE EXECUTE ON FUNCTION usage_tracking.valid_shape("char", text) FROM t_events_writer;
REVOKE USAGE ON SCHEMA usage_tracking FROM t_events_writer;
DROP ROLE t_events_writer;
