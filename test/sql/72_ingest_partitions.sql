-- There is no default partition: ingest creates the partitions of the days
-- it stores (events per UTC day, daily per month), in both write paths and
-- again after one is dropped; a direct INSERT for a day without a partition
-- fails until ensure_partitions() has prepared it.  A database of its own,
-- so that the partitions made here are the only ones.
\set VERBOSITY terse
CREATE DATABASE ut_rel67;
\c ut_rel67
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SELECT usage_tracking.create_account('acc_rel67', 'credits');
SELECT usage_tracking.register_installation('67676767-6767-4767-8767-676767676767_676767676767',
                                            'acc_rel67', 'rel67-secret-0123456789abcdef') IS NOT NULL AS registered;
-- Post events (id, created_at) signed at "at", the server clock also at "at".
CREATE FUNCTION post(ev jsonb, at timestamptz) RETURNS jsonb LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(b, encode(hmac(ts || '.' || b, 'rel67-secret-0123456789abcdef', 'sha256'), 'hex') || ':' || ts, at)
           - 'quota' - 'event_ids'
    FROM (SELECT extract(epoch FROM at)::bigint::text AS ts,
                 jsonb_build_object('install_id', '67676767-6767-4767-8767-676767676767_676767676767',
                   'events', (SELECT jsonb_agg(jsonb_build_object(
                                'event_id', e.key, 'wp_user_id_hash', encode(sha256('u67'::bytea), 'hex'),
                                'source', 'bulk', 'model', 'gpt-4o-mini',
                                'prompt_tokens', 100, 'completion_tokens', 20, 'total_tokens', 120,
                                'cached_prompt_tokens', 0,
                                'created_at', to_char(e.value::text::timestamptz AT TIME ZONE 'UTC',
                                                      'YYYY-MM-DD"T"HH24:MI:SS"Z"')) ORDER BY e.key)
                                FROM jsonb_each(ev) e))::text AS b) s
$$;
CREATE VIEW parts AS
SELECT p.part, p.lo, p.hi FROM usage_tracking._partitions('usage_tracking.events') p
UNION ALL
SELECT p.part, p.lo, p.hi FROM usage_tracking._partitions('usage_tracking.daily') p;

SELECT count(*) AS partitions FROM parts;
-- Two days of June and the last minute of May in one batch: three events
-- partitions and two daily ones.
SELECT post('{"pt_1": "2025-06-14 10:00:00+00", "pt_2": "2025-06-15 10:00:00+00",
              "pt_3": "2025-05-31 23:59:00+00"}', '2025-06-16 12:00:00+00');
SELECT part, lo, hi FROM parts ORDER BY part::text;
SELECT tableoid::regclass AS part, event_id FROM usage_tracking.events ORDER BY event_id;
SELECT usage_date, total_requests FROM usage_tracking.daily ORDER BY usage_date;
-- A resend: all duplicates, nothing created.
SELECT post('{"pt_1": "2025-06-14 10:00:00+00", "pt_2": "2025-06-15 10:00:00+00",
              "pt_3": "2025-05-31 23:59:00+00"}', '2025-06-16 12:00:00+00');
SELECT count(*) AS partitions FROM parts;

-- The partitions made this way are ordinary tables, not members of the
-- extension (their rows are dumped).
SELECT count(*) AS extension_members
  FROM parts p JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = p.part
                              AND d.refclassid = 'pg_extension'::regclass;

-- A dropped partition (here, by hand) is made again by the next batch of its day.
DROP TABLE usage_tracking.events_p20250614;
SELECT post('{"pt_1": "2025-06-14 10:00:00+00", "pt_4": "2025-06-14 11:00:00+00"}', '2025-06-16 12:00:00+00');
SELECT tableoid::regclass AS part, event_id FROM usage_tracking.events
 WHERE created_at < '2025-06-15' ORDER BY event_id;

-- The INSERT statement path (a row trigger keeps ingest off the direct
-- path) creates them too.
CREATE FUNCTION pass() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER pass BEFORE INSERT ON usage_tracking.events FOR EACH ROW EXECUTE FUNCTION pass();
SELECT usage_tracking.write_path('usage_tracking.events') <> 'direct' AS statement_path;
SELECT post('{"pt_5": "2025-07-02 08:00:00+00"}', '2025-07-02 09:00:00+00');
DROP TRIGGER pass ON usage_tracking.events;
SELECT tableoid::regclass AS part, event_id FROM usage_tracking.events WHERE event_id = 'pt_5';
SELECT usage_date, total_requests FROM usage_tracking.daily WHERE usage_date >= '2025-07-01';

-- A direct INSERT for a day without a partition fails; ensure_partitions()
-- prepares the day (and is a no-op the second time).
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at)
VALUES ('67676767-6767-4767-8767-676767676767_676767676767', 'pt_6', repeat('a', 64), 'bulk',
        'gpt-4o-mini', 1, 1, '2025-08-20 10:00:00+00');
SELECT usage_tracking.ensure_partitions('2025-08-20 10:00:00+00', '2025-08-20 10:00:00+00') AS created;
SELECT usage_tracking.ensure_partitions('2025-08-20 10:00:00+00', '2025-08-20 10:00:00+00') AS created_again;
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at)
VALUES ('67676767-6767-4767-8767-676767676767_676767676767', 'pt_6', repeat('a', 64), 'bulk',
        'gpt-4o-mini', 1, 1, '2025-08-20 10:00:00+00');
SELECT usage_date, total_requests FROM usage_tracking.daily WHERE usage_date >= '2025-08-01';
\c contrib_regression
DROP DATABASE ut_rel67;
