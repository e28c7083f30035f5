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

-- == The direct write path's gate ==

CREATE FUNCTION @extschema@.write_path(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_write_path'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION @extschema@.write_path(regclass) IS
    'How ingest writes tbl (usage_tracking.events, a counter table, or a partition of one) for the current user: ''direct'', or why it goes through the executor instead (a trigger, a rule, row-level security, a publication, an executor hook, ...). Both ways give the same rows; see "What ingest guarantees" in docs/reference.md.';
REVOKE ALL ON FUNCTION @extschema@.write_path(regclass) FROM PUBLIC;
