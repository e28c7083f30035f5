-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit

-- == Documentation moved to docs/ ==
-- The anomaly method is described in docs/dashboard.md, no longer in the README.
COMMENT ON FUNCTION @extschema@.anomalies(date, numeric) IS
    'Installations, accounts and models whose usage on "day" (UTC) is far from their own previous 28 days: robust z-score 0.6745 * (x - median) / MAD of requests, tokens or cost (the strongest metric per subject), at least min_score in absolute value and outside the history''s range. Falls back to the mean absolute deviation when the MAD is 0; subjects with fewer than 7 days of history are not scored. See docs/dashboard.md for the method.';

-- == pg_cron jobs per database ==
-- pg_cron keys a job by (jobname, username), so the 1.0 names
-- (usage_tracking_retention, …) were shared by every database of the
-- cluster: a second database scheduling its jobs took the first one's.  From
-- 1.1 a job's name carries its database, usage_tracking_<job>@<database>;
-- schedule_maintenance() and unschedule_maintenance() also clear this
-- database's jobs still named the 1.0 way, and this upgrade renames them in
-- place when pg_cron runs in this database.

CREATE FUNCTION @extschema@._job_name(job text, db text DEFAULT pg_catalog.current_database())
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    -- pg_cron stores job names as type name (63 bytes): a longer one keeps
    -- as much of the database name as fits, whole characters, and a hash of
    -- the full name, so two long names never meet.
    SELECT CASE WHEN pg_catalog.octet_length(s.p || _job_name.db) <= 63 THEN s.p || _job_name.db
           ELSE s.p || (SELECT pg_catalog.left(_job_name.db, max(k))
                          FROM pg_catalog.generate_series(0, pg_catalog.length(_job_name.db)) k
                         WHERE pg_catalog.octet_length(pg_catalog.left(_job_name.db, k))
                               <= 63 - 9 - pg_catalog.octet_length(s.p))
                    || '~' || pg_catalog.left(pg_catalog.md5(_job_name.db), 8) END
      FROM (SELECT 'usage_tracking_' || _job_name.job || '@' AS p) s;
$$;
COMMENT ON FUNCTION @extschema@._job_name(text, text) IS
    'Internal: the pg_cron job name of job (retention, reconcile, alerts) for database db: usage_tracking_<job>@<db>, shortened with a hash when longer than 63 bytes.';

CREATE FUNCTION @extschema@._legacy_job_names()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['usage_tracking_retention', 'usage_tracking_reconcile', 'usage_tracking_alerts'] $$;
COMMENT ON FUNCTION @extschema@._legacy_job_names() IS
    'Internal: the job names 1.0 used, without the database; the jobs still named so are replaced by schedule_maintenance() and removed by unschedule_maintenance().';

CREATE OR REPLACE FUNCTION @extschema@._maintenance_jobs(retention_schedule text, reconcile_schedule text,
                                                         alerts_schedule text)
RETURNS TABLE (jobname text, schedule text, command text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@._job_name('retention'), retention_schedule,
           'SELECT usage_tracking.run_maintenance()'
    UNION ALL
    SELECT @extschema@._job_name('reconcile'), reconcile_schedule,
           'SELECT usage_tracking.reconcile((now() AT TIME ZONE ''UTC'')::date - 1)'
    UNION ALL
    SELECT @extschema@._job_name('alerts'), alerts_schedule,
           'SELECT usage_tracking.evaluate_alerts(now())'
     WHERE pg_catalog.to_regprocedure('@extschema@.evaluate_alerts(timestamptz)') IS NOT NULL;
$$;
COMMENT ON FUNCTION @extschema@._maintenance_jobs(text, text, text) IS
    'Internal: the pg_cron jobs schedule_maintenance() registers for this database.';

CREATE OR REPLACE FUNCTION @extschema@.schedule_maintenance(retention_schedule text DEFAULT '0 3 * * *',
                                                            reconcile_schedule text DEFAULT '0 2 * * *',
                                                            alerts_schedule text DEFAULT '*/5 * * * *')
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc      text := @extschema@._cron_location();
    cron_db  text := nullif(pg_catalog.current_setting('cron.database_name', true), '');
    db       text := pg_catalog.current_database();
    legacy   text[] := @extschema@._legacy_job_names();
    names    text[] := ARRAY[@extschema@._job_name('retention'), @extschema@._job_name('reconcile'),
                             @extschema@._job_name('alerts')];
    j        record;
    jobid    bigint;
BEGIN
    IF loc = 'absent' THEN
        RAISE NOTICE 'pg_cron is not available; no job scheduled'
            USING HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name, restart, run CREATE EXTENSION pg_cron in that database, then call usage_tracking.schedule_maintenance() again. Until then run usage_tracking.run_maintenance() and usage_tracking.reconcile() by hand.';
        RETURN;
    END IF;
    IF loc = 'not_created' THEN
        RAISE NOTICE 'pg_cron is preloaded for this database but not created here; no job scheduled'
            USING HINT = 'Run CREATE EXTENSION pg_cron, then call usage_tracking.schedule_maintenance() again.';
        RETURN;
    END IF;
    IF loc = 'elsewhere' THEN
        RAISE NOTICE 'pg_cron runs in database "%"; run the returned statements there', cron_db;
        RETURN NEXT pg_catalog.format('-- run in database %I as the role the jobs should run as:', cron_db);
        -- This database's jobs named the 1.0 way, and its jobs of other roles.
        RETURN NEXT pg_catalog.format(
            'SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %L'
            ' AND (jobname IN (%L, %L, %L) OR (jobname IN (%L, %L, %L) AND username <> current_user));',
            db, legacy[1], legacy[2], legacy[3], names[1], names[2], names[3]);
        FOR j IN SELECT * FROM @extschema@._maintenance_jobs(retention_schedule, reconcile_schedule,
                                                             alerts_schedule) LOOP
            RETURN NEXT pg_catalog.format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                          j.jobname, j.schedule, j.command, db);
        END LOOP;
        IF pg_catalog.to_regprocedure('@extschema@.evaluate_alerts(timestamptz)') IS NULL THEN
            RETURN NEXT pg_catalog.format(
                'SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %L AND jobname = %L;', db, names[3]);
        END IF;
        RETURN NEXT pg_catalog.format('SELECT cron.schedule(%L, %L, %L);',
            'usage_tracking_cron_history', '30 3 * * *',
            'DELETE FROM cron.job_run_details WHERE end_time < now() - interval ''7 days'''
            ' AND jobid IN (SELECT jobid FROM cron.job WHERE jobname LIKE ''usage\_tracking\_%'')');
        RETURN;
    END IF;

    -- pg_cron runs here.  cron.job shows a role its own jobs only (a
    -- superuser sees all): replace this database's jobs named the 1.0 way,
    -- and the same jobs owned by other roles, so it keeps one set.
    FOR j IN EXECUTE 'SELECT jobid, jobname::text AS jobname, username::text AS username FROM cron.job'
                     ' WHERE database = $1 AND (jobname = ANY ($2) OR (jobname = ANY ($3) AND username <> current_user))'
                     ' ORDER BY jobid'
               USING db, legacy, names LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobid;
        RETURN NEXT pg_catalog.format('%s: job %s of role %s unscheduled', j.jobname, j.jobid, j.username);
    END LOOP;
    FOR j IN SELECT * FROM @extschema@._maintenance_jobs(retention_schedule, reconcile_schedule,
                                                         alerts_schedule) LOOP
        IF cron_db IS NULL OR cron_db = db THEN
            EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
              USING j.jobname, j.schedule, j.command;
        ELSE
            EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)' INTO jobid
              USING j.jobname, j.schedule, j.command, db;
        END IF;
        RETURN NEXT pg_catalog.format('%s: job %s, %s, %s', j.jobname, jobid, j.schedule, j.command);
    END LOOP;
    IF pg_catalog.to_regprocedure('@extschema@.evaluate_alerts(timestamptz)') IS NULL THEN
        EXECUTE 'SELECT count(*) FROM cron.job WHERE jobname = $1 AND username = current_user'
           INTO jobid USING names[3];
        IF jobid > 0 THEN
            EXECUTE 'SELECT cron.unschedule($1)' USING names[3];
        END IF;
        RETURN NEXT names[3] || ': not scheduled, usage_tracking.evaluate_alerts(timestamptz) does not exist';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.schedule_maintenance(text, text, text) IS
    'Register (or update) this database''s pg_cron jobs usage_tracking_retention@<database> (daily 03:00 UTC, run_maintenance), usage_tracking_reconcile@<database> (daily 02:00, the previous day) and usage_tracking_alerts@<database> (every 5 minutes, once evaluate_alerts exists); returns one line per job. Jobs of this database named the 1.0 way (without the database) or owned by another role are replaced. When pg_cron runs in another database it returns the statements to run there; when pg_cron is absent it says so in a NOTICE. Idempotent. The jobs run as the calling role.';

CREATE OR REPLACE FUNCTION @extschema@.unschedule_maintenance()
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc     text := @extschema@._cron_location();
    cron_db text := nullif(pg_catalog.current_setting('cron.database_name', true), '');
    db      text := pg_catalog.current_database();
    legacy  text[] := @extschema@._legacy_job_names();
    names   text[] := ARRAY[@extschema@._job_name('retention'), @extschema@._job_name('reconcile'),
                            @extschema@._job_name('alerts')];
    j       record;
BEGIN
    IF loc = 'elsewhere' THEN
        RAISE NOTICE 'pg_cron runs in database "%"; run the returned statements there', cron_db;
        RETURN NEXT pg_catalog.format('-- run in database %I as the role the jobs run as (a superuser removes every role''s):', cron_db);
        RETURN NEXT pg_catalog.format(
            'SELECT cron.unschedule(jobid) FROM cron.job WHERE database = %L AND jobname IN (%L, %L, %L, %L, %L, %L);',
            db, names[1], names[2], names[3], legacy[1], legacy[2], legacy[3]);
        -- The history pruning job serves every database: it goes with the last one.
        RETURN NEXT pg_catalog.format(
            'SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %L'
            ' AND NOT EXISTS (SELECT 1 FROM cron.job WHERE jobname LIKE %L AND jobname <> %L);',
            'usage_tracking_cron_history', 'usage\_tracking\_%', 'usage_tracking_cron_history');
        RETURN;
    END IF;
    IF loc <> 'here' THEN
        RAISE NOTICE 'pg_cron is not installed in this database; nothing to unschedule';
        RETURN;
    END IF;
    -- cron.job shows a role its own jobs only; a superuser sees every role's.
    FOR j IN EXECUTE 'SELECT jobid, jobname::text AS jobname FROM cron.job'
                     ' WHERE database = $1 AND jobname = ANY ($2 || $3) ORDER BY jobid'
               USING db, names, legacy LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobid;
        RETURN NEXT j.jobname || ': unscheduled';
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.unschedule_maintenance() IS
    'Remove this database''s usage_tracking pg_cron jobs (those of the calling role; a superuser''s call removes every role''s), also those named the 1.0 way; when pg_cron runs in another database, return the statements to run there. Run it before DROP EXTENSION.';

REVOKE ALL ON FUNCTION @extschema@._job_name(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._legacy_job_names() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._job_name(text, text), @extschema@._legacy_job_names()
    TO usage_tracking_admin;

-- Jobs a 1.0 install scheduled for this database, renamed in place (id,
-- schedule, owner and run history kept) when pg_cron runs here.  Where it
-- runs in another database, schedule_maintenance()'s statements replace them.
DO $$
DECLARE
    j record;
BEGIN
    IF @extschema@._cron_location() <> 'here' THEN
        RETURN;
    END IF;
    FOR j IN EXECUTE 'SELECT jobid, jobname::text AS jobname, username FROM cron.job'
                     ' WHERE database = pg_catalog.current_database() AND jobname = ANY ($1)'
               USING @extschema@._legacy_job_names() LOOP
        EXECUTE 'UPDATE cron.job c SET jobname = $2 WHERE c.jobid = $1'
                ' AND NOT EXISTS (SELECT 1 FROM cron.job o WHERE o.jobname = $2 AND o.username = c.username)'
          USING j.jobid, @extschema@._job_name(pg_catalog.substr(j.jobname, 16));
    END LOOP;
END
$$;

-- == Backup and restore ==
-- pg_dump of a database with usage_tracking restores into a fresh cluster
-- with no error and nothing lost (docs/operations.md, "Backup and restore").

-- Counters and log sequences are dumped too: a restore that reset an
-- account's month, an installation's rate windows or the log ids would lose
-- data.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.hourly_usage', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_windows', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rate_state', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.maintenance_log', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.erasure_log', 'id')::regclass, '');

-- Seeded rows.  CREATE EXTENSION inserts default plans and prices; a restore
-- runs CREATE EXTENSION and then copies the dumped rows of plans and
-- model_prices, seeded keys included.  A row inserted with the key of a
-- seeded row that still holds its installed values replaces that row: the
-- dumped row wins, changed or not, and nothing collides.  A seeded row the
-- DBA has changed is an ordinary row again: inserting its key fails as usual.
CREATE FUNCTION @extschema@._replace_seed()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'plans' THEN
        UPDATE @extschema@.plans p
           SET monthly_requests = NEW.monthly_requests, warning_pct = NEW.warning_pct,
               critical_pct = NEW.critical_pct, block_pct = NEW.block_pct,
               rate_requests_5m = NEW.rate_requests_5m, rate_tokens_5m = NEW.rate_tokens_5m,
               abuse_requests_1h = NEW.abuse_requests_1h, abuse_tokens_1h = NEW.abuse_tokens_1h
         WHERE p.plan = NEW.plan
           AND EXISTS (SELECT 1 FROM (VALUES ('free', 50::bigint), ('pro', 10000), ('agency', 100000),
                                             ('credits', NULL)) s (plan, monthly_requests)
                        WHERE (p.plan, p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct,
                               p.rate_requests_5m, p.rate_tokens_5m, p.abuse_requests_1h, p.abuse_tokens_1h)
                              IS NOT DISTINCT FROM
                              (s.plan, s.monthly_requests, 75, 90, 100, 100, 50000::bigint, 200, 100000::bigint));
    ELSIF TG_TABLE_NAME = 'model_prices' THEN
        UPDATE @extschema@.model_prices p
           SET prompt_usd_per_mtok = NEW.prompt_usd_per_mtok,
               completion_usd_per_mtok = NEW.completion_usd_per_mtok,
               cached_prompt_usd_per_mtok = NEW.cached_prompt_usd_per_mtok
         WHERE p.model = NEW.model AND p.effective_from = NEW.effective_from
           AND EXISTS (SELECT 1 FROM (VALUES ('gpt-4o-mini', 0.15, 0.60, 0.075),
                                             ('gpt-4o', 2.50, 10.00, 1.25),
                                             ('gpt-4.1-mini', 0.40, 1.60, 0.10),
                                             ('gpt-4.1-nano', 0.10, 0.40, 0.025))
                                    s (model, prompt, completion, cached)
                        WHERE (p.model, p.effective_from, p.prompt_usd_per_mtok,
                               p.completion_usd_per_mtok, p.cached_prompt_usd_per_mtok)
                              IS NOT DISTINCT FROM
                              (s.model, '-infinity'::timestamptz, s.prompt, s.completion, s.cached));
    ELSE
        RAISE EXCEPTION '_replace_seed() is a trigger of plans and model_prices only'
            USING ERRCODE = '39P01';
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._replace_seed() IS
    'Internal: trigger of plans and model_prices: a row inserted with the key of a seeded row still at its installed values replaces that row (so a restore brings back changed seeds without a duplicate key).';
REVOKE ALL ON FUNCTION @extschema@._replace_seed() FROM PUBLIC;

CREATE TRIGGER plans_replace_seed
    BEFORE INSERT ON @extschema@.plans
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_seed();
CREATE TRIGGER model_prices_replace_seed
    BEFORE INSERT ON @extschema@.model_prices
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_seed();

-- Partitions.  The partitions made at run time are ordinary tables that
-- pg_dump dumps as CREATE TABLE, ATTACH PARTITION and then their own primary
-- key and indexes.  Were the parents (created by CREATE EXTENSION) to carry
-- a primary key or an index, ATTACH would already build the partition's
-- copy of it, and the dump's own ADD CONSTRAINT / CREATE INDEX would fail.
-- So the parents carry none: every partition has its own primary key (the
-- same columns as before, the partition key included, so a key is unique
-- across the table) and index, made by _index_partition().
CREATE FUNCTION @extschema@._index_partition(parent text, part text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF parent = 'events' THEN
        EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ADD CONSTRAINT %I'
                                  ' PRIMARY KEY (install_id, event_id, created_at)', part, part || '_pkey');
        EXECUTE pg_catalog.format('CREATE INDEX %I ON @extschema@.%I'
                                  ' (install_id, received_at, event_id, created_at)', part || '_received_idx', part);
    ELSIF parent = 'daily' THEN
        EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ADD CONSTRAINT %I'
                                  ' PRIMARY KEY (install_id, usage_date, wp_user_id_hash, source, model)',
                                  part, part || '_pkey');
    ELSE
        RAISE EXCEPTION 'unknown partitioned table "%"', parent USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._index_partition(text, text) IS
    'Internal: give a partition of events or daily its primary key (and for events the received-order index); the parents carry none so that pg_dump output restores.';
REVOKE ALL ON FUNCTION @extschema@._index_partition(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@._attach_partition(parent text, part text, lo text, hi text, keycol text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE pg_catalog.format('CREATE TABLE @extschema@.%I (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                              part, parent);
    EXECUTE pg_catalog.format('WITH moved AS (DELETE FROM @extschema@.%I WHERE %I >= %s AND %I < %s RETURNING *) '
                              'INSERT INTO @extschema@.%I SELECT * FROM moved',
                              parent || '_default', keycol, lo, keycol, hi, part);
    PERFORM @extschema@._index_partition(parent, part);
    EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%s) TO (%s)',
                              parent, part, lo, hi);
END
$$;
COMMENT ON FUNCTION @extschema@._attach_partition(text, text, text, text, text) IS
    'Internal: create, index and attach one partition, moving its rows out of the default partition.';

-- Move the keys from the parents to every partition, default ones included.
ALTER TABLE @extschema@.events DROP CONSTRAINT events_pkey;
DROP INDEX @extschema@.events_received_idx;
ALTER TABLE @extschema@.daily DROP CONSTRAINT daily_pkey;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT p.relname AS parent, c.relname AS part
               FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
              WHERE i.inhparent IN ('@extschema@.events'::regclass, '@extschema@.daily'::regclass)
              ORDER BY 1, 2 LOOP
        PERFORM @extschema@._index_partition(r.parent, r.part);
    END LOOP;
END
$$;

-- reconcile(): its 1.1 definition, which also has this change, is in the
-- section "No default partitions" below.
COMMENT ON FUNCTION @extschema@.reconcile(date, boolean) IS
    'Re-derive the daily summaries of one UTC day from its raw events (voided events excluded, priced at the rows in force), report every row that drifted (the first 100 in "drift", stored against expected) and, unless repair is false, repair them. Refuses days whose raw events have expired.';

-- == The direct write path's gate ==

CREATE FUNCTION @extschema@.write_path(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_write_path'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION @extschema@.write_path(regclass) IS
    'How ingest writes tbl (usage_tracking.events, a counter table, or a partition of one) for the current user: ''direct'', or why it goes through the executor instead (a trigger, a rule, row-level security, a publication, an executor hook, ...). Both ways give the same rows; see "What ingest guarantees" in docs/reference.md.';
REVOKE ALL ON FUNCTION @extschema@.write_path(regclass) FROM PUBLIC;

-- == Each rule in one place ==
-- Each business rule has one home, and the other languages call it:
--   the 5-minute window, its admission, retry-after and the quota level:
--     src/quota.c (window_shift, window_retry_after and quota_level are C
--     from 1.1; authorize() admits with window_admit);
--   pricing: src/pricing.c (event_cost is C; reconcile() prices with it);
--   the install_id shape: src/batch.c (register_installation() asks
--     valid_shape('i', ...));
--   SQLSTATE -> HTTP status: the table error_codes, read by the C behind
--     usage_api.ingest and raise_http_error (C from 1.1).
-- ingest_quota() was called by nothing but a test: ingest counts its posts
-- itself.

CREATE OR REPLACE FUNCTION @extschema@.window_shift(slots bigint[], slot_minute timestamptz,
                                                    at_minute timestamptz)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'usage_tracking_window_shift'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.window_shift(bigint[], timestamptz, timestamptz) IS
    'A 5-slot per-minute window whose slot 1 is slot_minute, moved on to at_minute: older slots fall out, new ones are 0 (a NULL window is an empty one). A window from the future stays as it is. The rule ingest counts its posts by.';

CREATE OR REPLACE FUNCTION @extschema@.window_retry_after(slots bigint[], at_minute timestamptz,
                                                          now timestamptz, excess bigint)
RETURNS integer
AS 'MODULE_PATHNAME', 'usage_tracking_window_retry_after'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.window_retry_after(bigint[], timestamptz, timestamptz, bigint) IS
    'Seconds from now (rounded up; negative once they have left) until the oldest slots of a window (slot 1 = at_minute) that add up to excess have left it; NULL when even an empty window is not enough. The retry_after_s of ingest''s 429 and of authorize().';

CREATE OR REPLACE FUNCTION @extschema@.quota_level(used bigint, monthly_requests bigint,
                                                   warning_pct integer, critical_pct integer,
                                                   block_pct integer)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_quota_level'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.quota_level(bigint, bigint, integer, integer, integer) IS
    'ok, warning, critical or blocked for used requests against a monthly limit (NULL: unlimited, always ok) and its thresholds in percent (a NULL threshold is never reached). The level of ingest''s quota verdict.';

CREATE FUNCTION @extschema@.window_admit(slots bigint[], slot_minute timestamptz, now timestamptz,
                                         n bigint, lim bigint,
                                         OUT admitted boolean, OUT at_minute timestamptz,
                                         OUT new_slots bigint[], OUT retry_after_s integer)
RETURNS record
AS 'MODULE_PATHNAME', 'usage_tracking_window_admit'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.window_admit(bigint[], timestamptz, timestamptz, bigint, bigint) IS
    'The admission rule of a 5-slot per-minute window (slot 1 = slot_minute; NULL: an empty one), the one ingest''s post rate and authorize() use: moved on to the minute of now, does it admit n more within lim? new_slots is the moved window with n counted when admitted, at_minute its slot 1; retry_after_s, when refused, is window_retry_after() of the excess (NULL when never). NULL when now, n or lim is NULL.';
REVOKE ALL ON FUNCTION @extschema@.window_admit(bigint[], timestamptz, timestamptz, bigint, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.authorize(install_id text, requests integer DEFAULT 1,
                                      tokens bigint DEFAULT 0,
                                      now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acc     text;
    active  boolean;
    lim     bigint;
    warn    integer;
    crit    integer;
    blk     integer;
    rreq    integer;
    rtok    bigint;
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
    st      @extschema@.rate_state;
    wreq    record;
    wtok    record;
    used    bigint;
    retry   integer;
BEGIN
    IF requests IS NULL OR requests < 1 OR tokens IS NULL OR tokens < 0 OR now IS NULL THEN
        RAISE EXCEPTION 'requests must be at least 1 and tokens at least 0' USING ERRCODE = '22023';
    END IF;

    SELECT i.account_id, i.status = 'active' AND a.status = 'active',
           p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct,
           p.rate_requests_5m, p.rate_tokens_5m, coalesce(q.recorded + q.pending, 0)
      INTO acc, active, lim, warn, crit, blk, rreq, rtok, used
      FROM @extschema@.installations i
      JOIN @extschema@.accounts a USING (account_id)
      JOIN @extschema@.plans p USING (plan)
      LEFT JOIN @extschema@.quota_usage q ON q.account_id = i.account_id AND q.month = mon
     WHERE i.install_id = authorize.install_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('allowed', false, 'level', NULL,
                                  'reason', 'unknown_installation', 'retry_after_s', NULL);
    END IF;
    IF NOT active THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'suspended', 'retry_after_s', NULL);
    END IF;
    IF requests > rreq OR tokens > rtok OR requests::bigint * 100 > lim * blk THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'too_large', 'retry_after_s', NULL);
    END IF;

    -- Reservations are soft state (the events re-count every call): commit
    -- them without waiting for the WAL flush, as a rate limiter may.  A
    -- crash can forget the last few hundred milliseconds of admissions.
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);

    -- Rate: the installation's row serializes its callers.
    SELECT r.* INTO st FROM @extschema@.rate_state r
     WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO @extschema@.rate_state (install_id, minute, requests, tokens, hour)
        VALUES (authorize.install_id, date_trunc('minute', now, 'UTC'), '{0,0,0,0,0}', '{0,0,0,0,0}', h)
        ON CONFLICT DO NOTHING;
        SELECT r.* INTO st FROM @extschema@.rate_state r
         WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    END IF;
    -- The windows' admission rule is ingest's (window_admit, src/quota.c).
    SELECT * INTO wreq FROM @extschema@.window_admit(st.requests, st.minute, now, requests, rreq);
    SELECT * INTO wtok FROM @extschema@.window_admit(st.tokens, st.minute, now, tokens, rtok);
    IF NOT wreq.admitted OR NOT wtok.admitted THEN
        retry := greatest(wreq.retry_after_s, wtok.retry_after_s);
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'rate_limited', 'retry_after_s', retry);
    END IF;

    -- Quota: reserve on the account's row, or refuse.  A plain UPDATE first:
    -- waiters queue on the row in arrival order.
    UPDATE @extschema@.quota_usage q
       SET admitted = q.admitted + authorize.requests,
           pending = q.pending + authorize.requests
     WHERE q.account_id = acc AND q.month = mon
       AND (lim IS NULL OR (q.recorded + q.pending + authorize.requests) * 100 <= lim * blk)
    RETURNING q.recorded + q.pending INTO used;
    IF NOT FOUND THEN
        -- Refused, or the account's first call of the month.
        INSERT INTO @extschema@.quota_usage AS q (account_id, month, admitted, pending)
        VALUES (acc, mon, requests, requests)
        ON CONFLICT ON CONSTRAINT quota_usage_pkey DO UPDATE
           SET admitted = q.admitted + EXCLUDED.admitted,
               pending = q.pending + EXCLUDED.pending
         WHERE lim IS NULL OR (q.recorded + q.pending + EXCLUDED.pending) * 100 <= lim * blk
        RETURNING q.recorded + q.pending INTO used;
    END IF;
    IF NOT FOUND THEN
        SELECT q.recorded + q.pending INTO used
          FROM @extschema@.quota_usage q WHERE q.account_id = acc AND q.month = mon;
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'quota_exceeded',
                                  'retry_after_s', ceil(extract(epoch FROM
                                      ((mon + interval '1 month')::timestamp AT TIME ZONE 'UTC') - now))::integer);
    END IF;

    -- Admitted: count it in the window (window_admit did) and the hour.
    IF h > st.hour THEN
        IF h = st.hour + interval '1 hour' THEN
            st.prev_hour_requests := st.hour_requests;
            st.prev_hour_tokens := st.hour_tokens;
        ELSE
            st.prev_hour_requests := 0;
            st.prev_hour_tokens := 0;
        END IF;
        st.hour := h;
        st.hour_requests := 0;
        st.hour_tokens := 0;
    END IF;
    UPDATE @extschema@.rate_state r
       SET minute = wreq.at_minute, requests = wreq.new_slots, tokens = wtok.new_slots, hour = st.hour,
           hour_requests = st.hour_requests + authorize.requests,
           hour_tokens = st.hour_tokens + authorize.tokens,
           prev_hour_requests = st.prev_hour_requests,
           prev_hour_tokens = st.prev_hour_tokens
     WHERE r.install_id = authorize.install_id;
    RETURN jsonb_build_object('allowed', true,
                              'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                              'reason', 'ok', 'retry_after_s', NULL);
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.event_cost(model text, created_at timestamptz,
                                                  prompt_tokens bigint, completion_tokens bigint,
                                                  cached_prompt_tokens bigint)
RETURNS numeric
AS 'MODULE_PATHNAME', 'usage_tracking_event_cost'
LANGUAGE C STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.event_cost(text, timestamptz, bigint, bigint, bigint) IS
    'Estimated cost in USD of one event at the price in force at created_at (the model''s row, else ''*''), as ingest''s summaries price it; NULL when no price applies.';

-- reconcile(): its 1.1 definition, which also has this change, is in the
-- section "No default partitions" below.

-- register_installation(): its 1.1 definition, which asks valid_shape() for
-- the install_id shape too, is in the section "Security hardening" below.

CREATE OR REPLACE FUNCTION @extschema@.raise_http_error(sqlstate text, message text,
                                                        detail text DEFAULT NULL,
                                                        hint text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'usage_tracking_raise_http_error'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.raise_http_error(text, text, text, text) IS
    'For usage_api functions'' exception handlers: raise an extension SQLSTATE (usage_tracking.error_codes) again as SQLSTATE PGRST with the PostgREST JSON message and {"status","headers"} detail (Retry-After for 429, from the DETAIL''s retry_after_s); raise any other SQLSTATE again unchanged. The same translation usage_api.ingest applies.';

DROP FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz);

-- == No default partitions ==
-- PostgreSQL 15's pg_dump crashes (SIGSEGV) when a table registered with
-- pg_extension_config_dump() is a partition and the extension itself is not
-- selected (pg_dump -n usage_tracking, -t ...).  The two such tables were
-- the default partitions events_default and daily_default, so 1.1 has no
-- default partitions: ingest creates the partitions of the days it stores
-- (ensure_partitions(), called from C on a per-backend cache miss), and
-- rows of the 1.0 default partitions move into partitions of their own.

CREATE OR REPLACE FUNCTION @extschema@._attach_partition(parent text, part text, lo text, hi text, keycol text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE pg_catalog.format('CREATE TABLE @extschema@.%I (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                              part, parent);
    PERFORM @extschema@._index_partition(parent, part);
    EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%s) TO (%s)',
                              parent, part, lo, hi);
END
$$;
COMMENT ON FUNCTION @extschema@._attach_partition(text, text, text, text, text) IS
    'Internal: create, index and attach one empty partition of events or daily for [lo, hi) of keycol.';

-- Concurrent callers (two ingests of a new day) must not both create a
-- partition: the first one missing takes SHARE UPDATE EXCLUSIVE on both
-- parents (what ATTACH PARTITION takes anyway; ingest's ROW EXCLUSIVE does
-- not conflict), which also makes the re-check see partitions committed
-- meanwhile, until the end of the transaction.
CREATE OR REPLACE FUNCTION @extschema@.ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       date;
    m       date;
    created integer := 0;
    locked  boolean := false;
    part    text;
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL THEN
        RAISE EXCEPTION 'from_ts and to_ts must not be NULL' USING ERRCODE = '22004';
    END IF;
    -- One events partition per UTC day.
    FOR d IN SELECT pg_catalog.generate_series((from_ts AT TIME ZONE 'UTC')::date,
                                               (to_ts AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        part := 'events_p' || pg_catalog.to_char(d, 'YYYYMMDD');
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('@extschema@.%I', part)) IS NOT NULL;
        IF NOT locked THEN
            LOCK TABLE @extschema@.events, @extschema@.daily IN SHARE UPDATE EXCLUSIVE MODE;
            locked := true;
            CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('@extschema@.%I', part)) IS NOT NULL;
        END IF;
        -- A partition attached by hand under another name may cover the day.
        CONTINUE WHEN EXISTS (SELECT 1 FROM @extschema@._partitions('@extschema@.events'::regclass) p
                               WHERE p.lo::timestamptz <= (d::timestamp AT TIME ZONE 'UTC')
                                 AND ((d + 1)::timestamp AT TIME ZONE 'UTC') <= p.hi::timestamptz);
        PERFORM @extschema@._attach_partition('events', part,
            pg_catalog.format('%L', (d::timestamp AT TIME ZONE 'UTC')),
            pg_catalog.format('%L', ((d + 1)::timestamp AT TIME ZONE 'UTC')), 'created_at');
        created := created + 1;
    END LOOP;
    -- One daily partition per month.
    FOR m IN SELECT pg_catalog.generate_series(pg_catalog.date_trunc('month', from_ts AT TIME ZONE 'UTC'),
                                               pg_catalog.date_trunc('month', to_ts AT TIME ZONE 'UTC'),
                                               interval '1 month')::date LOOP
        part := 'daily_p' || pg_catalog.to_char(m, 'YYYYMM');
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('@extschema@.%I', part)) IS NOT NULL;
        IF NOT locked THEN
            LOCK TABLE @extschema@.events, @extschema@.daily IN SHARE UPDATE EXCLUSIVE MODE;
            locked := true;
            CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('@extschema@.%I', part)) IS NOT NULL;
        END IF;
        CONTINUE WHEN EXISTS (SELECT 1 FROM @extschema@._partitions('@extschema@.daily'::regclass) p
                               WHERE p.lo::date <= m AND (m + interval '1 month')::date <= p.hi::date);
        PERFORM @extschema@._attach_partition('daily', part,
            pg_catalog.format('%L', m), pg_catalog.format('%L', (m + interval '1 month')::date), 'usage_date');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) IS
    'Create the events partitions (one per UTC day) and daily partitions (one per month) covering from_ts to to_ts; returns how many it created. Ingest creates the partitions of the days it stores itself; a direct INSERT into events or daily needs its day''s partitions made first (there is no default partition). Safe to call concurrently.';

-- The monitoring view keeps its columns: the default-partition counts are
-- 0 since there are no default partitions.
CREATE OR REPLACE VIEW @extschema@.maintenance_status AS
SELECT (SELECT max(l.started_at) FROM @extschema@.maintenance_log l WHERE l.job = 'run_maintenance')
           AS last_maintenance_at,
       (SELECT l.result FROM @extschema@.maintenance_log l WHERE l.job = 'run_maintenance'
         ORDER BY l.started_at DESC LIMIT 1) AS last_maintenance_result,
       (SELECT max(l.started_at) FROM @extschema@.maintenance_log l WHERE l.job = 'reconcile')
           AS last_reconcile_at,
       (SELECT sum((l.result->>'drifted')::bigint) FROM @extschema@.maintenance_log l
         WHERE l.job = 'reconcile' AND l.started_at > pg_catalog.now() - interval '7 days')
           AS drifted_rows_7d,
       (SELECT count(*) FROM @extschema@._partitions('@extschema@.events'::regclass) p
         WHERE p.hi IS NOT NULL) AS events_partitions,
       (SELECT min(p.lo::timestamptz) FROM @extschema@._partitions('@extschema@.events'::regclass) p)
           AS events_from,
       (SELECT max(p.hi::timestamptz) FROM @extschema@._partitions('@extschema@.events'::regclass) p)
           AS events_partitioned_until,
       0::bigint AS events_default_rows,
       0::bigint AS daily_default_rows,
       (SELECT s.events_expired_before FROM @extschema@.maintenance_state s) AS events_expired_before,
       (SELECT s.daily_expired_before FROM @extschema@.maintenance_state s) AS daily_expired_before;
COMMENT ON VIEW @extschema@.maintenance_status IS
    'One row for monitoring: last maintenance and reconcile runs, drift found in the last 7 days and the partitioned window of raw events (events_partitioned_until should stay ahead of now). events_default_rows and daily_default_rows are always 0 since 1.1 (no default partitions).';

-- The 1.0 default partitions: detached, taken out of the extension (which
-- also ends their pg_extension_config_dump registration), their rows moved
-- into partitions of their own days and months, dropped.  The events rows
-- go straight into their partition, so the statement trigger on events
-- does not count them a second time.
ALTER TABLE @extschema@.events DETACH PARTITION @extschema@.events_default;
ALTER TABLE @extschema@.daily DETACH PARTITION @extschema@.daily_default;
ALTER EXTENSION usage_tracking DROP TABLE @extschema@.events_default;
ALTER EXTENSION usage_tracking DROP TABLE @extschema@.daily_default;
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT DISTINCT (e.created_at AT TIME ZONE 'UTC')::date FROM @extschema@.events_default e ORDER BY 1 LOOP
        PERFORM @extschema@.ensure_partitions(d::timestamp AT TIME ZONE 'UTC', d::timestamp AT TIME ZONE 'UTC');
        EXECUTE pg_catalog.format('INSERT INTO @extschema@.%I SELECT * FROM @extschema@.events_default e'
                                  ' WHERE e.created_at >= $1 AND e.created_at < $2',
                                  'events_p' || pg_catalog.to_char(d, 'YYYYMMDD'))
          USING d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC';
    END LOOP;
    -- The months of daily rows: the daily partition only (the month's days
    -- get events partitions when they have events).
    FOR d IN SELECT DISTINCT pg_catalog.date_trunc('month', x.usage_date)::date FROM @extschema@.daily_default x ORDER BY 1 LOOP
        CONTINUE WHEN pg_catalog.to_regclass(pg_catalog.format('@extschema@.%I',
                                             'daily_p' || pg_catalog.to_char(d, 'YYYYMM'))) IS NOT NULL;
        PERFORM @extschema@._attach_partition('daily', 'daily_p' || pg_catalog.to_char(d, 'YYYYMM'),
            pg_catalog.format('%L', d), pg_catalog.format('%L', (d + interval '1 month')::date), 'usage_date');
    END LOOP;
    INSERT INTO @extschema@.daily SELECT * FROM @extschema@.daily_default;
END
$$;
DROP TABLE @extschema@.events_default;
DROP TABLE @extschema@.daily_default;
-- Partitions created by this script would be members of the extension, and
-- so left out of every dump with their rows; like those made at run time
-- they are ordinary tables.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS part
               FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                                          AND d.refclassid = 'pg_catalog.pg_extension'::regclass
                                          AND d.deptype = 'e'
              WHERE i.inhparent IN ('@extschema@.events'::regclass, '@extschema@.daily'::regclass)
              ORDER BY 1 LOOP
        EXECUTE pg_catalog.format('ALTER EXTENSION usage_tracking DROP TABLE %s', r.part);
    END LOOP;
END
$$;

-- Retention without the default partitions.
CREATE OR REPLACE FUNCTION @extschema@.run_maintenance(now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
    started     timestamptz := pg_catalog.clock_timestamp();
    ev_cut      timestamptz;
    daily_cut   date;
    created     integer;
    p           record;
    name        text;
    ev_dropped  text[] := '{}';
    dl_dropped  text[] := '{}';
    busy        text[] := '{}';
    freed       bigint := 0;
    ev_deleted  bigint := 0;
    dl_deleted  bigint := 0;
    n           bigint;
    pruned      bigint;
    result      jsonb;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('usage_tracking.run_maintenance')) THEN
        RAISE NOTICE 'another run_maintenance is in progress; nothing done';
        RETURN jsonb_build_object('skipped', 'another run_maintenance is in progress');
    END IF;

    -- Raw events are kept from the start of the UTC day that holds
    -- now - event_retention; daily rows from the day of now - daily_retention.
    ev_cut := pg_catalog.date_trunc('day', (now - @extschema@.retention('events')) AT TIME ZONE 'UTC')
              AT TIME ZONE 'UTC';
    daily_cut := ((now - @extschema@.retention('daily')) AT TIME ZONE 'UTC')::date;

    -- Partitions for every day still kept, and a week ahead.
    created := @extschema@.ensure_partitions(ev_cut, now + interval '7 days');

    -- Raw events: drop whole days.
    FOR p IN SELECT * FROM @extschema@._partitions('@extschema@.events'::regclass)
              WHERE hi IS NOT NULL AND hi::timestamptz <= ev_cut ORDER BY hi::timestamptz LOOP
        BEGIN
            n := pg_catalog.pg_total_relation_size(p.part);
            name := p.part::text;
            EXECUTE pg_catalog.format('DROP TABLE %s', name);
            freed := freed + n;
            ev_dropped := ev_dropped || name;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy || p.part::text;
        END;
    END LOOP;
    -- Since 1.1 there is no default partition: every stored event is in the
    -- partition of its day, and default_rows_deleted stays 0.

    -- Daily summaries: drop whole months, delete the older days of the month
    -- that straddles the cut (summary rows are few; that partition goes
    -- whole at the end of its month).
    FOR p IN SELECT * FROM @extschema@._partitions('@extschema@.daily'::regclass)
              WHERE hi IS NOT NULL AND hi::date <= daily_cut ORDER BY hi::date LOOP
        BEGIN
            name := p.part::text;
            EXECUTE pg_catalog.format('DROP TABLE %s', name);
            dl_dropped := dl_dropped || name;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy || p.part::text;
        END;
    END LOOP;
    DELETE FROM @extschema@.daily d WHERE d.usage_date < daily_cut;
    GET DIAGNOSTICS dl_deleted = ROW_COUNT;

    pruned := @extschema@.prune_cron_history(interval '7 days', now);
    DELETE FROM @extschema@.maintenance_log l WHERE l.as_of < run_maintenance.now - interval '400 days';

    INSERT INTO @extschema@.maintenance_state AS s (singleton, events_expired_before, daily_expired_before)
    VALUES (true, ev_cut, daily_cut)
    ON CONFLICT (singleton) DO UPDATE SET
        events_expired_before = greatest(s.events_expired_before, EXCLUDED.events_expired_before),
        daily_expired_before = greatest(s.daily_expired_before, EXCLUDED.daily_expired_before);

    result := jsonb_build_object(
        'now', now,
        'partitions_created', created,
        'events', jsonb_build_object('kept_from', ev_cut,
                                     'partitions_dropped', to_jsonb(ev_dropped),
                                     'bytes_freed', freed,
                                     'default_rows_deleted', ev_deleted),
        'daily', jsonb_build_object('kept_from', daily_cut,
                                    'partitions_dropped', to_jsonb(dl_dropped),
                                    'rows_deleted', dl_deleted),
        'cron_history_pruned', pruned,
        'busy', to_jsonb(busy));
    INSERT INTO @extschema@.maintenance_log (job, as_of, started_at, finished_at, result)
    VALUES ('run_maintenance', now, started, pg_catalog.clock_timestamp(), result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.run_maintenance(timestamptz) IS
    'Create partitions a week ahead, drop raw-event partitions past usage_tracking.event_retention and daily partitions past usage_tracking.daily_retention, prune the pg_cron history of the usage_tracking jobs, and return what it did. Idempotent; a second run at the same time does nothing. A partition it cannot lock within 10 s is listed under "busy" and dropped next time.';

-- Reconcile: a day without a partition gets its partitions before it is locked.
CREATE OR REPLACE FUNCTION @extschema@.reconcile(day date, repair boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started   timestamptz := pg_catalog.clock_timestamp();
    day_lo    timestamptz;
    day_hi    timestamptz;
    expired   timestamptz;
    holder    regclass;
    checked   bigint;
    drifted   bigint;
    deleted   bigint;
    upserted  bigint;
    listed    jsonb;
    result    jsonb;
BEGIN
    IF day IS NULL THEN
        RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT s.events_expired_before INTO expired FROM @extschema@.maintenance_state s;
    day_lo := day::timestamp AT TIME ZONE 'UTC';
    day_hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
    IF day_lo < expired THEN
        RAISE EXCEPTION 'raw events of % have expired', day
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('Raw events are kept from %s on.', expired),
                  HINT = 'Summaries of expired days can no longer be re-derived.';
    END IF;

    -- One reconcile per day at a time; and no insert into that day's
    -- partition while it runs, so the comparison sees a still picture.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('usage_tracking.reconcile'),
                                             day - date '2000-01-01');
    -- A day without a partition gets its partitions (events, and daily for
    -- its month) first: there is no default partition to lock or write to.
    SELECT p.part INTO holder
      FROM @extschema@._partitions('@extschema@.events'::regclass) p
     WHERE p.lo::timestamptz <= day_lo AND day_hi <= p.hi::timestamptz;
    IF holder IS NULL THEN
        PERFORM @extschema@.ensure_partitions(day_lo, day_lo);
        SELECT p.part INTO holder
          FROM @extschema@._partitions('@extschema@.events'::regclass) p
         WHERE p.lo::timestamptz <= day_lo AND day_hi <= p.hi::timestamptz;
    END IF;
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE',
                              coalesce(holder, '@extschema@.events'::regclass));

    WITH priced AS (
        SELECT e.install_id, e.wp_user_id_hash, e.source, e.model,
               e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens,
               @extschema@.event_cost(e.model, e.created_at, e.prompt_tokens,
                                      e.completion_tokens, e.cached_prompt_tokens) AS cost
          FROM @extschema@.events e
         WHERE e.created_at >= day_lo AND e.created_at < day_hi AND e.voided_at IS NULL
    ), expected AS (
        SELECT install_id, wp_user_id_hash, source, model,
               count(*)::bigint AS total_requests,
               sum(prompt_tokens)::bigint AS prompt_tokens,
               sum(completion_tokens)::bigint AS completion_tokens,
               sum(cached_prompt_tokens)::bigint AS cached_prompt_tokens,
               sum(cost) AS estimated_cost_usd,
               count(*) FILTER (WHERE cost IS NULL)::bigint AS unpriced_requests
          FROM priced
         GROUP BY install_id, wp_user_id_hash, source, model
    ), stored AS (
        SELECT d.install_id, d.wp_user_id_hash, d.source, d.model, d.total_requests,
               d.prompt_tokens, d.completion_tokens, d.cached_prompt_tokens,
               d.estimated_cost_usd, d.unpriced_requests
          FROM @extschema@.daily d
         WHERE d.usage_date = day
    ), drift AS (
        SELECT coalesce(x.install_id, s.install_id) AS install_id,
               coalesce(x.wp_user_id_hash, s.wp_user_id_hash) AS wp_user_id_hash,
               coalesce(x.source, s.source) AS source,
               coalesce(x.model, s.model) AS model,
               x.install_id IS NULL AS gone,
               x.total_requests, x.prompt_tokens, x.completion_tokens,
               x.cached_prompt_tokens, x.estimated_cost_usd, x.unpriced_requests,
               CASE WHEN s.install_id IS NOT NULL THEN jsonb_build_object(
                   'total_requests', s.total_requests, 'prompt_tokens', s.prompt_tokens,
                   'completion_tokens', s.completion_tokens, 'cached_prompt_tokens', s.cached_prompt_tokens,
                   'estimated_cost_usd', s.estimated_cost_usd, 'unpriced_requests', s.unpriced_requests)
               END AS was,
               CASE WHEN x.install_id IS NOT NULL THEN jsonb_build_object(
                   'total_requests', x.total_requests, 'prompt_tokens', x.prompt_tokens,
                   'completion_tokens', x.completion_tokens, 'cached_prompt_tokens', x.cached_prompt_tokens,
                   'estimated_cost_usd', x.estimated_cost_usd, 'unpriced_requests', x.unpriced_requests)
               END AS should_be
          FROM expected x
          FULL JOIN stored s
            ON s.install_id = x.install_id AND s.wp_user_id_hash = x.wp_user_id_hash
           AND s.source = x.source AND s.model = x.model
         WHERE (x.total_requests, x.prompt_tokens, x.completion_tokens, x.cached_prompt_tokens,
                x.estimated_cost_usd, x.unpriced_requests)
               IS DISTINCT FROM
               (s.total_requests, s.prompt_tokens, s.completion_tokens, s.cached_prompt_tokens,
                s.estimated_cost_usd, s.unpriced_requests)
    ), del AS (
        DELETE FROM @extschema@.daily d
         USING drift f
         WHERE repair AND f.gone AND d.usage_date = day AND d.install_id = f.install_id
           AND d.wp_user_id_hash = f.wp_user_id_hash AND d.source = f.source AND d.model = f.model
        RETURNING 1
    ), upd AS (
        -- The daily parent has no unique index (each partition has its own
        -- primary key): rows that exist are updated, missing ones inserted.
        -- The SHARE lock above keeps ingest out of this day meanwhile.
        UPDATE @extschema@.daily d SET
            total_requests = f.total_requests,
            prompt_tokens = f.prompt_tokens,
            completion_tokens = f.completion_tokens,
            cached_prompt_tokens = f.cached_prompt_tokens,
            estimated_cost_usd = f.estimated_cost_usd,
            unpriced_requests = f.unpriced_requests
          FROM drift f
         WHERE repair AND NOT f.gone AND f.was IS NOT NULL AND d.usage_date = day
           AND d.install_id = f.install_id AND d.wp_user_id_hash = f.wp_user_id_hash
           AND d.source = f.source AND d.model = f.model
        RETURNING 1
    ), ins AS (
        INSERT INTO @extschema@.daily AS d (install_id, usage_date, wp_user_id_hash, source, model,
                                            total_requests, prompt_tokens, completion_tokens,
                                            cached_prompt_tokens, estimated_cost_usd, unpriced_requests)
        SELECT f.install_id, day, f.wp_user_id_hash, f.source, f.model, f.total_requests,
               f.prompt_tokens, f.completion_tokens, f.cached_prompt_tokens,
               f.estimated_cost_usd, f.unpriced_requests
          FROM drift f
         WHERE repair AND NOT f.gone AND f.was IS NULL
         ORDER BY f.install_id, f.wp_user_id_hash, f.source, f.model
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM expected) + (SELECT count(*) FROM drift WHERE gone),
           (SELECT count(*) FROM drift),
           (SELECT count(*) FROM del),
           (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins),
           (SELECT coalesce(jsonb_agg(r ORDER BY r->>'install_id', r->>'wp_user_id_hash',
                                      r->>'source', r->>'model'), '[]')
              FROM (SELECT jsonb_build_object('install_id', f.install_id,
                                              'wp_user_id_hash', f.wp_user_id_hash,
                                              'source', f.source, 'model', f.model,
                                              'stored', f.was, 'expected', f.should_be) AS r
                      FROM drift f
                     ORDER BY f.install_id, f.wp_user_id_hash, f.source, f.model
                     LIMIT 100) l)
      INTO checked, drifted, deleted, upserted, listed;

    result := jsonb_build_object('day', day, 'rows_checked', checked, 'drifted', drifted,
                                 'repaired', deleted + upserted, 'drift', listed);
    INSERT INTO @extschema@.maintenance_log (job, as_of, started_at, finished_at, result)
    VALUES ('reconcile', pg_catalog.now(), started, pg_catalog.clock_timestamp(),
            result - 'drift' || jsonb_build_object('drift_listed', jsonb_array_length(listed)));
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.reconcile(date, boolean) IS
    'Re-derive the daily summaries of one UTC day from its raw events (voided events excluded, priced at the rows in force), report every row that drifted (the first 100 in "drift", stored against expected) and, unless repair is false, repair them. Refuses days whose raw events have expired.';

-- == Security hardening ==

-- Registering never hands out an existing secret: an existing install_id
-- is refused (23505), and rotating is its own call that returns the new
-- secret once.
CREATE OR REPLACE FUNCTION @extschema@.register_installation(install_id text, account_id text,
                                                             secret text DEFAULT NULL,
                                                             now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner   text;
    created text;
BEGIN
    -- The install_id shape is src/batch.c's rule, asked through valid_shape().
    IF install_id IS NULL OR NOT @extschema@.valid_shape('i', install_id) THEN
        RAISE EXCEPTION 'invalid install_id'
            USING ERRCODE = '22023',
                  HINT = 'An install_id is {uuid-v4}_{12 lowercase hex}.';
    END IF;
    IF secret IS NOT NULL AND length(secret) NOT BETWEEN 16 AND 200 THEN
        RAISE EXCEPTION 'a secret must be 16 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = register_installation.account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id
            USING ERRCODE = '22023', HINT = 'Create it with usage_tracking.create_account().';
    END IF;

    SELECT i.account_id INTO owner
      FROM @extschema@.installations i
     WHERE i.install_id = register_installation.install_id
       FOR UPDATE;
    IF FOUND THEN
        IF owner <> account_id THEN
            RAISE EXCEPTION 'installation is registered to another account'
                USING ERRCODE = '42501';
        END IF;
        RAISE EXCEPTION 'installation is already registered'
            USING ERRCODE = '23505',
                  DETAIL = 'Its secret is never returned again.',
                  HINT = 'Give the site a new secret with usage_tracking.rotate_installation_secret().';
    END IF;

    INSERT INTO @extschema@.installations (install_id, account_id)
    VALUES (register_installation.install_id, register_installation.account_id);
    INSERT INTO @extschema@.installation_secrets (install_id, secret)
    VALUES (register_installation.install_id,
            coalesce(register_installation.secret, @extschema@.generate_secret()))
    RETURNING installation_secrets.secret INTO created;
    RETURN created;
EXCEPTION
    WHEN unique_violation THEN
        -- A concurrent registration of the same id won the race.
        RAISE EXCEPTION 'installation is already registered'
            USING ERRCODE = '23505',
                  DETAIL = 'Its secret is never returned again.',
                  HINT = 'Give the site a new secret with usage_tracking.rotate_installation_secret().';
END
$$;
COMMENT ON FUNCTION @extschema@.register_installation(text, text, text, timestamptz) IS
    'Register a new installation of an account and return its secret, this once; a NULL secret generates one. An install_id already registered is refused (23505; 42501 when another account owns it): rotate with rotate_installation_secret().';

CREATE FUNCTION @extschema@.rotate_installation_secret(install_id text,
                                                       secret text DEFAULT NULL,
                                                       now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fresh text := coalesce(rotate_installation_secret.secret, @extschema@.generate_secret());
BEGIN
    IF length(fresh) NOT BETWEEN 16 AND 200 THEN
        RAISE EXCEPTION 'a secret must be 16 to 200 characters' USING ERRCODE = '22023';
    END IF;
    -- The current secret becomes the previous one whatever the new one is,
    -- so the answer never tells whether a given secret was the current one.
    UPDATE @extschema@.installation_secrets s
       SET previous_secret = s.secret,
           previous_expires_at = rotate_installation_secret.now + @extschema@.retention('secret_grace'),
           secret = fresh,
           rotated_at = rotate_installation_secret.now
     WHERE s.install_id = rotate_installation_secret.install_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;
    RETURN fresh;
END
$$;
COMMENT ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz) IS
    'Give an installation a new secret (a NULL secret generates one) and return it, this once; the old secret keeps verifying for usage_tracking.secret_grace.';
REVOKE ALL ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz)
    TO usage_tracking_admin;

-- CSV formula injection: a field a spreadsheet would read as a formula
-- (leading =, +, -, @, tab or carriage return) is written as text, the way
-- OWASP recommends: a single quote first, and the field quoted.  Every
-- export (export_csv, usage_api.export, the provider's all-tenant export)
-- writes its text fields through this one function.
CREATE OR REPLACE FUNCTION @extschema@._csv(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN v IS NULL THEN ''
            WHEN v ~ '^[=+@\t\r-]' THEN '"''' || pg_catalog.replace(v, '"', '""') || '"'
            WHEN v = '' OR v ~ '[",\r\n]' THEN '"' || pg_catalog.replace(v, '"', '""') || '"'
            ELSE v END
$$;
COMMENT ON FUNCTION @extschema@._csv(text) IS
    'Internal: a value as one RFC 4180 CSV field (NULL as an empty field); a value starting with =, +, -, @, tab or carriage return is prefixed with a single quote and quoted, so no spreadsheet runs it as a formula.';
COMMENT ON FUNCTION @extschema@.export_csv(text, text, date, date) IS
    'CSV export, one RFC 4180 record per row, the header first: kind ''daily'' (the daily_usage columns) or ''events'' (the usage_events columns, times in UTC), of one installation or every one the caller may see, for the UTC days date_from to date_to (both included). A text field starting with =, +, -, @, tab or carriage return is written with a leading single quote, quoted (CSV formula injection). Streams: use it as COPY (SELECT * FROM usage_tracking.export_csv(...)) TO STDOUT.';

-- Erasure stops replays.  forget_user() and forget_installation() leave a
-- tombstone: ingest then refuses every event of the erased user (or
-- installation) created before the erasure, so a captured request posted
-- again inside its signature window, or events the plugin still had queued,
-- store nothing and count nothing.  Events created afterwards are stored as
-- usual.  A tombstone holds SHA-256 digests only, never an install_id or a
-- user hash, and an entry is dropped once it is older than
-- usage_tracking.event_retention (ingest refuses such old events anyway).
CREATE TABLE @extschema@.erasure_tombstones (
    install_key             bytea PRIMARY KEY CHECK (pg_catalog.length(install_key) = 32),
    installation_erased_at  timestamptz,
    user_keys               bytea[] NOT NULL DEFAULT '{}',
    user_erased_at          timestamptz[] NOT NULL DEFAULT '{}',
    CHECK (pg_catalog.cardinality(user_keys) = pg_catalog.cardinality(user_erased_at))
);
COMMENT ON TABLE @extschema@.erasure_tombstones IS
    'Internal: what forget_user() and forget_installation() erased, as digests, so that ingest refuses the erased events when they are posted again: install_key is sha256(install_id), user_keys sha256(install_id || '':'' || wp_user_id_hash), each with the time of its erasure. No role but the extension owner reads it.';
REVOKE ALL ON @extschema@.erasure_tombstones FROM PUBLIC;
-- Dumped like every table of the extension: a restore keeps refusing the
-- replay of erased events.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.erasure_tombstones', '');

CREATE FUNCTION @extschema@._tombstone(install_id text, wp_user_id_hash text, now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ikey    bytea := pg_catalog.sha256(pg_catalog.convert_to(_tombstone.install_id, 'UTF8'));
    ukey    bytea := CASE WHEN _tombstone.wp_user_id_hash IS NOT NULL THEN
                     pg_catalog.sha256(pg_catalog.convert_to(_tombstone.install_id || ':' || _tombstone.wp_user_id_hash, 'UTF8'))
                     END;
    horizon timestamptz := _tombstone.now - @extschema@.retention('events');
BEGIN
    INSERT INTO @extschema@.erasure_tombstones AS t
           (install_key, installation_erased_at, user_keys, user_erased_at)
    VALUES (ikey,
            CASE WHEN ukey IS NULL THEN _tombstone.now END,
            CASE WHEN ukey IS NULL THEN '{}'::bytea[] ELSE ARRAY[ukey] END,
            CASE WHEN ukey IS NULL THEN '{}'::timestamptz[] ELSE ARRAY[_tombstone.now] END)
    ON CONFLICT (install_key) DO UPDATE
       SET installation_erased_at = CASE WHEN ukey IS NULL THEN _tombstone.now
                                         WHEN t.installation_erased_at > horizon THEN t.installation_erased_at END,
           (user_keys, user_erased_at) =
           (SELECT coalesce(pg_catalog.array_agg(u.k ORDER BY u.n), '{}') || coalesce(ARRAY[ukey], '{}'),
                   coalesce(pg_catalog.array_agg(u.e ORDER BY u.n), '{}')
                   || CASE WHEN ukey IS NULL THEN '{}'::timestamptz[] ELSE ARRAY[_tombstone.now] END
              FROM ROWS FROM (pg_catalog.unnest(t.user_keys), pg_catalog.unnest(t.user_erased_at))
                   WITH ORDINALITY AS u(k, e, n)
             WHERE u.k IS DISTINCT FROM ukey AND u.e > horizon);
    -- Tombstones past the horizon protect nothing any more.
    DELETE FROM @extschema@.erasure_tombstones t
     WHERE t.install_key <> ikey
       AND coalesce(t.installation_erased_at, '-infinity') <= horizon
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(t.user_erased_at) e WHERE e > horizon);
END
$$;
COMMENT ON FUNCTION @extschema@._tombstone(text, text, timestamptz) IS
    'Internal: record the erasure of one user of an installation (or, with a NULL user, of the installation) at now in erasure_tombstones, and drop tombstones older than usage_tracking.event_retention.';
REVOKE ALL ON FUNCTION @extschema@._tombstone(text, text, timestamptz) FROM PUBLIC;

DROP FUNCTION @extschema@.forget_user(text, text);
CREATE FUNCTION @extschema@.forget_user(install_id text, wp_user_id_hash text,
                                        now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acct     text;
    n_events bigint;
    n_daily  bigint;
    n_voids  bigint;
    counts   jsonb;
BEGIN
    IF install_id IS NULL OR wp_user_id_hash IS NULL THEN
        RAISE EXCEPTION 'install_id and wp_user_id_hash are required' USING ERRCODE = '22004';
    END IF;
    -- Batches of this installation wait until the erasure commits.
    SELECT i.account_id INTO acct FROM @extschema@.installations i
     WHERE i.install_id = forget_user.install_id FOR NO KEY UPDATE;

    DELETE FROM @extschema@.events e
     WHERE e.install_id = forget_user.install_id AND e.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    -- A retry of one of the installation's batches is then checked event by
    -- event again (not answered from its first event's batch_digest); the
    -- tombstone makes the erased user's events in it refused.
    UPDATE @extschema@.events e SET batch_digest = NULL
     WHERE e.install_id = forget_user.install_id AND e.batch_digest IS NOT NULL;
    DELETE FROM @extschema@.daily d
     WHERE d.install_id = forget_user.install_id AND d.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_daily = ROW_COUNT;
    DELETE FROM @extschema@.event_voids v
     WHERE v.install_id = forget_user.install_id AND v.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_voids = ROW_COUNT;
    PERFORM @extschema@._tombstone(forget_user.install_id, forget_user.wp_user_id_hash, forget_user.now);

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('user', install_id, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_user(text, text, timestamptz) IS
    'Erase every raw event, daily summary row and void record of one user hash of one installation; returns the counts and records them in erasure_log (without the user hash). Events of that user created before now are refused if they are posted again (a tombstone, kept for usage_tracking.event_retention).';
REVOKE ALL ON FUNCTION @extschema@.forget_user(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.forget_user(text, text, timestamptz) TO usage_tracking_admin;

DROP FUNCTION @extschema@.forget_installation(text);
CREATE FUNCTION @extschema@.forget_installation(install_id text, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acct     text;
    n_events bigint;
    n_daily  bigint;
    n_voids  bigint;
    n_inst   bigint;
    counts   jsonb;
BEGIN
    IF install_id IS NULL THEN
        RAISE EXCEPTION 'install_id is required' USING ERRCODE = '22004';
    END IF;
    SELECT i.account_id INTO acct FROM @extschema@.installations i
     WHERE i.install_id = forget_installation.install_id FOR UPDATE;

    DELETE FROM @extschema@.events e WHERE e.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    DELETE FROM @extschema@.daily d WHERE d.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_daily = ROW_COUNT;
    DELETE FROM @extschema@.event_voids v WHERE v.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_voids = ROW_COUNT;
    -- The registration and its secrets (and every row that references it
    -- ON DELETE CASCADE).
    DELETE FROM @extschema@.installations i WHERE i.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_inst = ROW_COUNT;
    PERFORM @extschema@._tombstone(forget_installation.install_id, NULL, forget_installation.now);

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids,
                                 'installations', n_inst);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('installation', NULL, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_installation(text, timestamptz) IS
    'Erase an installation everywhere: its raw events, daily summaries, void records, registration and secrets; returns the counts and records them in erasure_log with the account only. Should the install_id be registered again, its events created before now are refused (a tombstone, kept for usage_tracking.event_retention).';
REVOKE ALL ON FUNCTION @extschema@.forget_installation(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.forget_installation(text, timestamptz) TO usage_tracking_admin;

-- Schema squatting: a role that created the schema usage_tracking (or
-- usage_api) before CREATE EXTENSION would own the schema the extension's
-- objects live in.  The extension refuses a schema owned by anyone but the
-- role that installs it or a superuser; the install or update then fails
-- and leaves nothing behind.
DO $$
DECLARE
    squatted text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%I (owned by %I)', n.nspname, r.rolname), ', ')
      INTO squatted
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname IN ('usage_tracking', 'usage_api')
       AND NOT r.rolsuper
       AND n.nspowner <> (SELECT e.extowner FROM pg_catalog.pg_extension e
                           WHERE e.extname = 'usage_tracking');
    IF squatted IS NOT NULL THEN
        RAISE EXCEPTION 'schema % belongs to a role that did not install usage_tracking', squatted
            USING ERRCODE = '42501',
                  HINT = 'Drop the schema, or give it to the installing role (ALTER SCHEMA ... OWNER TO), and try again.';
    END IF;
END
$$;
