-- pg_cron jobs: schedule_maintenance registers named jobs where pg_cron runs
-- (this database: cron.database_name = contrib_regression here), says so
-- when pg_cron is not created yet, prints the statements to run when pg_cron
-- lives in another database, and is idempotent.  test/e2e/cron_maintenance.sh
-- shows the jobs actually run.
\set VERBOSITY terse
SET client_min_messages = notice;
-- pg_regress made this database afresh: pg_cron is not created in it yet.
-- (It is never dropped again: pg_cron 1.4's scheduler does not notice a
-- re-created extension until the server restarts.)
SELECT usage_tracking._cron_location() AS location;
SELECT * FROM usage_tracking.schedule_maintenance();
CREATE EXTENSION pg_cron;
SELECT usage_tracking._cron_location() AS location;

-- The alerts job exists exactly when evaluate_alerts does, so it is shown apart.
CREATE VIEW ut_jobs AS
SELECT jobid, jobname, schedule, command, database = current_database() AS here, username = current_user AS mine
  FROM cron.job WHERE jobname LIKE 'usage\_tracking\_%';
CREATE VIEW ut_alerts_ok AS
SELECT (SELECT count(*) FROM ut_jobs WHERE jobname = 'usage_tracking_alerts@' || current_database() AND schedule = '*/5 * * * *'
           AND command = 'SELECT usage_tracking.evaluate_alerts(now())')
       = (to_regprocedure('usage_tracking.evaluate_alerts(timestamptz)') IS NOT NULL)::int AS alerts_job_iff_governance;
SELECT regexp_replace(line, 'job [0-9]+', 'job N') AS scheduled
  FROM usage_tracking.schedule_maintenance() line WHERE line NOT LIKE 'usage\_tracking\_alerts%';
SELECT jobname, schedule, command, here, mine FROM ut_jobs WHERE jobname NOT LIKE 'usage\_tracking\_alerts%' ORDER BY 1;
SELECT * FROM ut_alerts_ok;
SELECT array_agg(jobid ORDER BY jobname) AS ids FROM ut_jobs \gset
-- Again: the same jobs, updated in place; a custom schedule is taken.
SELECT count(*) AS lines FROM usage_tracking.schedule_maintenance(retention_schedule => '15 4 * * *');
SELECT array_agg(jobid ORDER BY jobname) = :'ids' AS same_jobs FROM ut_jobs;
SELECT jobname, schedule FROM ut_jobs WHERE jobname NOT LIKE 'usage\_tracking\_alerts%' ORDER BY 1;
SELECT * FROM ut_alerts_ok;

-- Run history: only this extension's jobs, only older than the window.
INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, end_time)
SELECT j.jobid, nextval('cron.runid_seq'), 'contrib_regression', current_user, 'x', 'succeeded', t
  FROM ut_jobs j, (VALUES (timestamptz '2025-10-01 03:00:00+00'), ('2025-11-02 03:00:00+00')) v(t)
 WHERE j.jobname = usage_tracking._job_name('retention');
INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, end_time)
VALUES (999999, nextval('cron.runid_seq'), 'contrib_regression', current_user, 'y', 'succeeded', '2025-10-01');
SELECT usage_tracking.prune_cron_history(interval '7 days', '2025-11-03 12:00:00+00') AS pruned;
SELECT command, end_time FROM cron.job_run_details ORDER BY end_time, command;
DELETE FROM cron.job_run_details;

-- A job a 1.0 install named without the database is replaced, not kept beside.
SELECT cron.schedule('usage_tracking_reconcile', '0 2 * * *', 'SELECT 1') AS legacy_id \gset
SELECT regexp_replace(regexp_replace(line, 'job [0-9]+', 'job N'), 'role \S+', 'role R') AS scheduled
  FROM usage_tracking.schedule_maintenance() line WHERE line NOT LIKE 'usage\_tracking\_alerts%';
SELECT jobname, schedule FROM ut_jobs WHERE jobname NOT LIKE 'usage\_tracking\_alerts%' ORDER BY 1;
SELECT usage_tracking._job_name('reconcile', repeat('d', 63)) AS long_name,
       usage_tracking._job_name('reconcile', repeat('d', 63)) <> usage_tracking._job_name('reconcile', repeat('d', 62) || 'e') AS distinct_names;

-- Unschedule removes them all, also a job named the 1.0 way, and is idempotent.
SELECT cron.schedule('usage_tracking_retention', '0 3 * * *', 'SELECT 1') AS legacy_id \gset
SELECT * FROM usage_tracking.unschedule_maintenance() line WHERE line NOT LIKE 'usage\_tracking\_alerts%';
SELECT count(*) AS jobs_left FROM ut_jobs;
SELECT count(*) AS lines FROM usage_tracking.unschedule_maintenance();

-- From another database: the exact statements to run where pg_cron is.
CREATE DATABASE ut_cron_elsewhere;
\c ut_cron_elsewhere
SET client_min_messages = notice;
CREATE EXTENSION usage_tracking;
SELECT usage_tracking._cron_location() AS location;
SELECT line FROM usage_tracking.schedule_maintenance() line WHERE line NOT LIKE '%cron.schedule_in_database(''usage\_tracking\_alerts%';
SELECT * FROM usage_tracking.unschedule_maintenance();
SELECT usage_tracking.prune_cron_history() AS pruned_without_cron;
\c contrib_regression
DROP DATABASE ut_cron_elsewhere;
DROP VIEW ut_alerts_ok, ut_jobs;
