-- What ingest guarantees: for each thing a plain INSERT ... ON CONFLICT
-- honours, ingest does the same as the plain statement of the same rows
-- (fires it, or refuses with the same SQLSTATE, writing nothing), whether
-- the direct path takes it (constraints) or the gate sends it through the
-- executor (write_path() says which).
\set VERBOSITY terse
\set inst '''7c9e6679-7425-40de-944b-e07fc1f90ae7_00aa11bb22cc'''
\set secret '''guarantee-secret-0123456789ab'''
\set now '''2025-11-03 12:00:00+00'''
SELECT usage_tracking.create_account('acc_wg', 'credits');
SELECT length(usage_tracking.register_installation(:inst, 'acc_wg', :secret, :now)) AS secret_length;
SELECT usage_tracking.ensure_partitions('2025-11-03', '2025-11-03') >= 0 AS partition_ready;

CREATE SCHEMA wg;
-- The SQLSTATE a statement ends with, 'ok' when it succeeds.
CREATE FUNCTION wg.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE stmt;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;
-- The plain statement ingest stands for, for one event of the batch format.
CREATE FUNCTION wg.plain(ev jsonb, now timestamptz) RETURNS text LANGUAGE sql AS $$
  SELECT format('INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,'
                '   prompt_tokens, completion_tokens, cached_prompt_tokens, request_id, created_at, received_at)'
                ' VALUES (%L, %L, %L, %L, %L, %s, %s, %s, %L, %L, %L) ON CONFLICT DO NOTHING',
                '7c9e6679-7425-40de-944b-e07fc1f90ae7_00aa11bb22cc', ev->>'event_id', ev->>'wp_user_id_hash',
                ev->>'source', ev->>'model', ev->>'prompt_tokens', ev->>'completion_tokens',
                ev->>'cached_prompt_tokens', ev->>'request_id', ev->>'created_at', now)
$$;
-- The ingest of a batch of events, as a statement.
CREATE FUNCTION wg.ingest(events jsonb, now timestamptz) RETURNS text LANGUAGE sql AS $$
  SELECT format('SELECT t.post(%L, %L, %L)',
                t.batch('7c9e6679-7425-40de-944b-e07fc1f90ae7_00aa11bb22cc', events),
                'guarantee-secret-0123456789ab', now)
$$;
CREATE VIEW wg.stored AS
  SELECT count(*) AS events FROM usage_tracking.events WHERE event_id LIKE 'wg\_%';

-- The direct path is what runs here, by default.
SELECT usage_tracking.write_path('usage_tracking.events') AS events,
       usage_tracking.write_path('usage_tracking.daily') AS daily;

-- NOT NULL added later: refused on the direct path as by the plain INSERT.
-- (Inside a transaction: earlier tests stored events without request_id.)
BEGIN;
UPDATE usage_tracking.events SET request_id = 'none' WHERE request_id IS NULL;
ALTER TABLE usage_tracking.events ALTER request_id SET NOT NULL;
SELECT usage_tracking.write_path('usage_tracking.events') AS path,
       wg.try(wg.plain(t.event('wg_nn', '2025-11-03 10:00+00') - 'request_id', :now)) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_nn0', '2025-11-03 09:59+00'),
                                          t.event('wg_nn', '2025-11-03 10:00+00') - 'request_id'), :now)) AS ingest;
SELECT * FROM wg.stored;
ROLLBACK;

-- CHECK added later, on new rows and on a resend of stored ones: ExecInsert
-- checks constraints before it looks for a conflict, and so does ingest.
SELECT wg.try(wg.ingest(jsonb_build_array(t.event('wg_c1', '2025-11-03 10:01+00', 5000)), :now)) AS before_check;
ALTER TABLE usage_tracking.events ADD CONSTRAINT wg_prompt_cap CHECK (prompt_tokens <= 1000) NOT VALID;
SELECT wg.try(wg.plain(t.event('wg_c2', '2025-11-03 10:02+00', 5000), :now)) AS plain_new,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_c2', '2025-11-03 10:02+00', 5000)), :now)) AS ingest_new,
       wg.try(wg.plain(t.event('wg_c1', '2025-11-03 10:01+00', 5000), :now)) AS plain_resend,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_c1', '2025-11-03 10:01+00', 5000)), :now)) AS ingest_resend;
SELECT * FROM wg.stored;
ALTER TABLE usage_tracking.events DROP CONSTRAINT wg_prompt_cap;

-- A CHECK shaped like the shipped ones, on another column: ingest's own
-- validation does not imply it, so it is evaluated (models are no sources).
ALTER TABLE usage_tracking.events ADD CONSTRAINT wg_model_as_source
  CHECK (usage_tracking.valid_shape('s', model)) NOT VALID;
SELECT wg.try(wg.plain(t.event('wg_m1', '2025-11-03 10:02+00'), :now)) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_m1', '2025-11-03 10:02+00')), :now)) AS ingest;
ALTER TABLE usage_tracking.events DROP CONSTRAINT wg_model_as_source;

-- A CHECK on a counter table that calls a function, the function replaced
-- later in this same session: the new definition is what both enforce.
CREATE FUNCTION wg.cap() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 1000::bigint';
ALTER TABLE usage_tracking.daily ADD CONSTRAINT wg_requests_cap CHECK (total_requests <= wg.cap()) NOT VALID;
SELECT usage_tracking.write_path('usage_tracking.daily') AS path,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_f1', '2025-11-03 10:03+00')), :now)) AS ingest_under_cap;
CREATE OR REPLACE FUNCTION wg.cap() RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT 0::bigint';
SELECT wg.try($$INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash, source, model,
                   total_requests, prompt_tokens, completion_tokens, cached_prompt_tokens, unpriced_requests)
                 VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7_00aa11bb22cc', '2025-11-03', 'u', 'bulk',
                         'gpt-4o-mini', 1, 1, 1, 0, 0)
                 ON CONFLICT DO NOTHING$$) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_f2', '2025-11-03 10:04+00')), :now)) AS ingest_over_cap;
SELECT * FROM wg.stored;
ALTER TABLE usage_tracking.daily DROP CONSTRAINT wg_requests_cap;

-- A row trigger on one partition: it fires for ingest's rows as for the
-- plain INSERT's (the gate sends the batch through the executor).
CREATE TABLE wg.fired (event_id text);
CREATE FUNCTION wg.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO wg.fired VALUES (NEW.event_id); RETURN NEW; END $$;
SELECT tableoid::regclass AS part FROM usage_tracking.events WHERE event_id = 'wg_f1' \gset
CREATE TRIGGER wg_note AFTER INSERT ON :part FOR EACH ROW EXECUTE FUNCTION wg.note();
SELECT usage_tracking.write_path(:'part') AS partition_path,
       usage_tracking.write_path('usage_tracking.events') AS root_path,
       wg.try(wg.plain(t.event('wg_t1', '2025-11-03 10:05+00'), :now)) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_t2', '2025-11-03 10:06+00'),
                                          t.event('wg_t3', '2025-11-03 10:07+00')), :now)) AS ingest;
SELECT event_id FROM wg.fired ORDER BY 1;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst;
DROP TRIGGER wg_note ON :part;

-- A DO ALSO rule: PostgreSQL refuses INSERT ... ON CONFLICT on a table with
-- INSERT rules, and ingest refuses the same way, writing nothing.
CREATE TABLE wg.ruled (event_id text);
CREATE RULE wg_also AS ON INSERT TO usage_tracking.events DO ALSO INSERT INTO wg.ruled VALUES (NEW.event_id);
SELECT usage_tracking.write_path('usage_tracking.events') AS path,
       wg.try(wg.plain(t.event('wg_r1', '2025-11-03 10:08+00'), :now)) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_r2', '2025-11-03 10:09+00')), :now)) AS ingest;
SELECT count(*) AS ruled FROM wg.ruled;
DROP RULE wg_also ON usage_tracking.events;

-- A publication of a counter table whose replica identity is NOTHING: the
-- plain upsert is refused, and so is ingest, writing nothing.
CREATE PUBLICATION wg_pub FOR TABLE usage_tracking.hourly_usage WITH (publish = 'insert, update');
ALTER TABLE usage_tracking.hourly_usage REPLICA IDENTITY NOTHING;
SELECT usage_tracking.write_path('usage_tracking.hourly_usage') AS path,
       wg.try($$UPDATE usage_tracking.hourly_usage SET requests = requests$$) AS plain_update,
       wg.try($$INSERT INTO usage_tracking.hourly_usage (install_id, hour, requests, tokens)
                VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7_00aa11bb22cc', '2025-11-03 10:00+00', 1, 1)
                ON CONFLICT (install_id, hour) DO UPDATE SET requests = hourly_usage.requests + 1$$) AS plain_upsert,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_p1', '2025-11-03 10:10+00')), :now)) AS ingest;
SELECT * FROM wg.stored;
ALTER TABLE usage_tracking.hourly_usage REPLICA IDENTITY DEFAULT;
DROP PUBLICATION wg_pub;

-- Row-level security forced on events, for a definer that is not a
-- superuser: the policy refuses the plain INSERT and ingest alike.
BEGIN;
CREATE ROLE wg_definer;
GRANT USAGE ON SCHEMA usage_tracking, t, wg TO wg_definer;
GRANT ALL ON ALL TABLES IN SCHEMA usage_tracking TO wg_definer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA usage_tracking TO wg_definer;
ALTER FUNCTION usage_tracking.ingest(text, text, timestamptz, text) OWNER TO wg_definer;
DO $$
DECLARE r regclass;
BEGIN
  -- the definer may write the other tables that have policies
  FOR r IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'usage_tracking'::regnamespace
            AND c.relrowsecurity AND c.relname <> 'events' LOOP
    EXECUTE format('CREATE POLICY wg_all ON %s TO wg_definer USING (true) WITH CHECK (true)', r);
  END LOOP;
END $$;
ALTER TABLE usage_tracking.events ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY wg_no_inline ON usage_tracking.events TO wg_definer
  USING (true) WITH CHECK (source <> 'inline');
SET LOCAL ROLE wg_definer;
SELECT usage_tracking.write_path('usage_tracking.events') AS path,
       wg.try(wg.plain(t.event('wg_s1', '2025-11-03 10:11+00', source => 'inline'), :now)) AS plain,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_s2', '2025-11-03 10:12+00', source => 'inline')), :now)) AS ingest,
       wg.try(wg.ingest(jsonb_build_array(t.event('wg_s3', '2025-11-03 10:13+00', source => 'bulk')), :now)) AS ingest_allowed;
RESET ROLE;
SELECT event_id FROM usage_tracking.events WHERE event_id LIKE 'wg\_s%' ORDER BY 1;
ROLLBACK;

-- usage_tracking.direct_write = off: every write through the executor,
-- with the same rows and summaries.
SET usage_tracking.direct_write = off;
SELECT usage_tracking.write_path('usage_tracking.events') AS path,
       t.post(t.batch(:inst, jsonb_build_array(t.event('wg_o1', '2025-11-03 10:14+00'),
                                               t.event('wg_c1', '2025-11-03 10:01+00', 5000))),
              :secret, :now) - 'quota' AS through_executor;
RESET usage_tracking.direct_write;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst;

-- Cancelling an ingest of a maximum-size batch leaves none of it stored:
-- the body and its signature are made first, so the timeout falls in ingest.
SELECT t.batch(:inst, jsonb_agg(t.event('wg_x' || k, '2025-11-03 11:00+00'::timestamptz + k * interval '1 ms')))
         AS big_body
  FROM generate_series(1, current_setting('usage_tracking.max_batch_events')::int) k \gset
SELECT t.sig(:'big_body', :secret, :now) AS big_sig \gset
SET statement_timeout = '1ms';
SELECT usage_tracking.ingest(:'big_body', :'big_sig', :now) IS NOT NULL AS stored;
RESET statement_timeout;
SELECT count(*) AS cancelled_events_stored FROM usage_tracking.events WHERE event_id LIKE 'wg\_x%';
SELECT (usage_tracking.ingest(:'big_body', :'big_sig', :now)->>'received')::int AS received_uncancelled;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id = :inst;

SELECT * FROM wg.stored;
DROP SCHEMA wg CASCADE;
