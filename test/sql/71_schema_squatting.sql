-- Schema squatting: a role that creates the schema usage_tracking before
-- CREATE EXTENSION would own the schema the extension installs into.  The
-- install refuses a schema owned by anyone but the installing role or a
-- superuser (42501), and leaves nothing behind; once the schema is gone,
-- the install succeeds.
\set VERBOSITY terse
CREATE DATABASE ut_rel71;
CREATE ROLE ut_rel71_squatter;
\c ut_rel71
CREATE SCHEMA usage_tracking AUTHORIZATION ut_rel71_squatter;
CREATE EXTENSION usage_tracking;
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'usage_tracking';
SELECT count(*) AS objects_in_schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'usage_tracking';
DROP SCHEMA usage_tracking;
-- (A squatted usage_api is refused too: by PostgreSQL itself since 15.20,
-- whose message this file does not pin, else by the same check.)
-- A schema a superuser made beforehand is the DBA's choice.
CREATE SCHEMA usage_tracking;
CREATE EXTENSION usage_tracking;
SELECT extversion FROM pg_extension WHERE extname = 'usage_tracking';
\c contrib_regression
DROP DATABASE ut_rel71;
DROP ROLE ut_rel71_squatter;
