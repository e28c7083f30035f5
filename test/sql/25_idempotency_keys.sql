-- Idempotency key design: raw events are unique on (install_id, event_id,
-- created_at) in every partition — a site resends an event unchanged, so a
-- resend lands in the partition of the original and conflicts there (21_
-- retention shows it 89 days later).  Every unique index on the usage
-- tables includes install_id, so distributing them by install_id (Citus
-- style) stays possible.
\set VERBOSITY terse
\c ut_maint
SET client_min_messages = warning;
SELECT DISTINCT pg_get_constraintdef(c.oid) AS events_key
  FROM pg_constraint c JOIN pg_inherits i ON i.inhrelid = c.conrelid
 WHERE i.inhparent = 'usage_tracking.events'::regclass AND c.contype = 'p';
-- Every unique index of events, daily and event_voids and of all their
-- partitions (default ones included), with whether install_id is a key.
SELECT CASE WHEN c.relname ~ '_p[0-9]+$' THEN regexp_replace(c.relname, '_p[0-9]+$', '_pN') ELSE c.relname END AS tab,
       count(*) AS unique_indexes,
       bool_and(EXISTS (SELECT 1 FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attname = 'install_id'
                           AND a.attnum = ANY (i.indkey::int2[]))) AS all_include_install_id
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE i.indisunique
   AND c.relnamespace = 'usage_tracking'::regnamespace
   AND (c.relname IN ('events', 'daily', 'event_voids', 'events_default', 'daily_default')
        OR c.relname ~ '^(events|daily)_p[0-9]+$')
 GROUP BY 1 ORDER BY 1;
-- One event_id, two installations: two events; then each resent: duplicates.
SELECT n, m.post(n, jsonb_build_array(m.event('evt_key_1', '2025-11-04 08:00:00+00')),
                 '2025-11-04 12:00:00+00') - 'event_ids' AS first_post
  FROM generate_series(1, 2) n ORDER BY n;
SELECT n, m.post(n, jsonb_build_array(m.event('evt_key_1', '2025-11-04 08:00:00+00')),
                 '2025-11-04 12:05:00+00')->'duplicates' AS resent_duplicates
  FROM generate_series(1, 2) n ORDER BY n;
SELECT count(*) AS stored FROM usage_tracking.events WHERE event_id = 'evt_key_1';
-- A resend with another created_at is another event: the key the sites keep
-- unchanged is part of the identity (see docs/operations.md, Idempotency across partitions).
SELECT m.post(1, jsonb_build_array(m.event('evt_key_1', '2025-11-04 08:00:01+00')),
              '2025-11-04 12:10:00+00')->'duplicates' AS changed_created_at;
SELECT count(*) AS drift FROM m.drift;
\c contrib_regression
-- Every install_id column of the extension's tables compares bytewise
-- (COLLATE "C"), so that joins on it and lookups by it can use each
-- table's index instead of scanning every row.
SELECT c.relname, a.attname, a.attcollation::regcollation AS collation
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'usage_tracking'::regnamespace AND c.relkind IN ('r', 'p')
   AND a.attname = 'install_id' AND NOT a.attisdropped
   AND a.attcollation <> 'pg_catalog."C"'::regcollation
 ORDER BY 1;
