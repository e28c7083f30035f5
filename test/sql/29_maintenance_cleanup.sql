-- Drop the database the maintenance tests shared.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP DATABASE IF EXISTS ut_maint;
SELECT count(*) AS maintenance_databases_left FROM pg_database WHERE datname IN ('ut_maint', 'ut_retention');
