-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit

-- == Documentation moved to docs/ ==
-- The anomaly method is described in docs/dashboard.md, no longer in the README.
COMMENT ON FUNCTION @extschema@.anomalies(date, numeric) IS
    'Installations, accounts and models whose usage on "day" (UTC) is far from their own previous 28 days: robust z-score 0.6745 * (x - median) / MAD of requests, tokens or cost (the strongest metric per subject), at least min_score in absolute value and outside the history''s range. Falls back to the mean absolute deviation when the MAD is 0; subjects with fewer than 7 days of history are not scored. See docs/dashboard.md for the method.';

-- == The direct write path's gate ==

CREATE FUNCTION @extschema@.write_path(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_write_path'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION @extschema@.write_path(regclass) IS
    'How ingest writes tbl (usage_tracking.events, a counter table, or a partition of one) for the current user: ''direct'', or why it goes through the executor instead (a trigger, a rule, row-level security, a publication, an executor hook, ...). Both ways give the same rows; see "What ingest guarantees" in docs/reference.md.';
REVOKE ALL ON FUNCTION @extschema@.write_path(regclass) FROM PUBLIC;
