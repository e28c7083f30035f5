-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit

-- == The direct write path's gate ==

CREATE FUNCTION @extschema@.write_path(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_write_path'
LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION @extschema@.write_path(regclass) IS
    'How ingest writes tbl (usage_tracking.events, a counter table, or a partition of one) for the current user: ''direct'', or why it goes through the executor instead (a trigger, a rule, row-level security, a publication, an executor hook, ...). Both ways give the same rows; see "What ingest guarantees" in docs/reference.md.';
REVOKE ALL ON FUNCTION @extschema@.write_path(regclass) FROM PUBLIC;
