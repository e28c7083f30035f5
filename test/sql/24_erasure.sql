-- Erasure: forget_user removes every raw and summary row of one user of one
-- installation and nothing else; forget_installation removes an
-- installation everywhere.  The audit keeps counts, never the erased data.
\set VERBOSITY terse
\c ut_maint
SET client_min_messages = warning;
-- Two installations of their own, three users each, two days, one void.
SELECT usage_tracking.register_installation(m.inst(n), 'acc_maint', 'maint-secret-' || n || '-0123456789',
                                            '2025-01-01') IS NOT NULL AS registered
  FROM generate_series(3, 4) n;
SELECT m.fill(n, d, 300, 3, 'erase') FROM generate_series(3, 4) n, (VALUES (date '2025-10-20'), ('2025-10-21')) v(d);
SELECT m.post(3, jsonb_build_array(m.event('evt_e1', '2025-10-21 09:00:00+00', usr => 2),
                                   m.event('evt_e2', '2025-10-21 09:01:00+00', usr => 2)),
              '2025-10-21 12:00:00+00')->'received' AS received;
SELECT (usage_tracking.void_event(m.inst(3), 'evt_e1', 'test'))->'voided' AS voided;
SELECT m.user_hash(2) AS gone_user \gset

-- Everything that must survive, row for row.
CREATE TABLE keep_events AS SELECT * FROM usage_tracking.events
 WHERE NOT (install_id = m.inst(3) AND wp_user_id_hash = :'gone_user');
CREATE TABLE keep_daily AS SELECT * FROM usage_tracking.daily
 WHERE NOT (install_id = m.inst(3) AND wp_user_id_hash = :'gone_user');
SELECT (SELECT count(*) FROM usage_tracking.events WHERE install_id = m.inst(3) AND wp_user_id_hash = :'gone_user') AS user_events,
       (SELECT count(*) FROM usage_tracking.daily WHERE install_id = m.inst(3) AND wp_user_id_hash = :'gone_user') AS user_daily,
       (SELECT count(*) FROM usage_tracking.events WHERE install_id = m.inst(4) AND wp_user_id_hash = :'gone_user') AS same_user_other_install;

SELECT usage_tracking.forget_user(m.inst(3), :'gone_user') AS forgotten;
SELECT (SELECT count(*) FROM usage_tracking.events WHERE install_id = m.inst(3) AND wp_user_id_hash = :'gone_user') AS user_events,
       (SELECT count(*) FROM usage_tracking.daily WHERE install_id = m.inst(3) AND wp_user_id_hash = :'gone_user') AS user_daily,
       (SELECT count(*) FROM usage_tracking.event_voids
         WHERE install_id = m.inst(3) AND wp_user_id_hash = :'gone_user') AS user_voids;
-- Nothing else changed: the rest is identical, both ways.
SELECT count(*) AS events_changed FROM
  ((SELECT * FROM usage_tracking.events EXCEPT ALL SELECT * FROM keep_events)
   UNION ALL (SELECT * FROM keep_events EXCEPT ALL SELECT * FROM usage_tracking.events)) x;
SELECT count(*) AS daily_changed FROM
  ((SELECT * FROM usage_tracking.daily EXCEPT ALL SELECT * FROM keep_daily)
   UNION ALL (SELECT * FROM keep_daily EXCEPT ALL SELECT * FROM usage_tracking.daily)) x;
SELECT count(*) AS drift FROM m.drift;
-- The audit row: counts, and not the user hash.
SELECT kind, install_id = m.inst(3) AS install, account_id, counts, erased_by = session_user AS by_me,
       strpos(l::text, :'gone_user') = 0 AS holds_no_hash
  FROM usage_tracking.erasure_log l ORDER BY id;
-- Again: nothing left to erase.
SELECT usage_tracking.forget_user(m.inst(3), :'gone_user') AS again;

-- An installation, everywhere.
DROP TABLE keep_events, keep_daily;
CREATE TABLE keep_events AS SELECT * FROM usage_tracking.events WHERE install_id <> m.inst(4);
CREATE TABLE keep_daily AS SELECT * FROM usage_tracking.daily WHERE install_id <> m.inst(4);
SELECT usage_tracking.forget_installation(m.inst(4)) AS forgotten;
SELECT (SELECT count(*) FROM usage_tracking.events WHERE install_id = m.inst(4)) AS events,
       (SELECT count(*) FROM usage_tracking.daily WHERE install_id = m.inst(4)) AS daily,
       (SELECT count(*) FROM usage_tracking.installations WHERE install_id = m.inst(4)) AS installation,
       (SELECT count(*) FROM usage_tracking.installation_secrets WHERE install_id = m.inst(4)) AS secrets;
SELECT count(*) AS events_changed FROM
  ((SELECT * FROM usage_tracking.events EXCEPT ALL SELECT * FROM keep_events)
   UNION ALL (SELECT * FROM keep_events EXCEPT ALL SELECT * FROM usage_tracking.events)) x;
SELECT count(*) AS daily_changed FROM
  ((SELECT * FROM usage_tracking.daily EXCEPT ALL SELECT * FROM keep_daily)
   UNION ALL (SELECT * FROM keep_daily EXCEPT ALL SELECT * FROM usage_tracking.daily)) x;
SELECT kind, install_id, account_id, counts, strpos(l::text, m.inst(4)) = 0 AS holds_no_install_id
  FROM usage_tracking.erasure_log l WHERE kind = 'installation';
-- Its batches now fail like any unknown installation's.
SELECT m.try($$SELECT m.post(4, jsonb_build_array(m.event('evt_e9', '2025-10-21 09:00:00+00')),
                             '2025-10-21 12:00:00+00')::text$$) AS post_after;
SELECT m.try(format('SELECT usage_tracking.forget_user(%L, NULL)::text', m.inst(3))) AS null_user;
DROP TABLE keep_events, keep_daily;
\c contrib_regression
