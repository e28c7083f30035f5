-- Erasure stops replays.  A request captured before forget_user() and
-- posted again inside its signature window used to store the erased user's
-- events again and count them against the quota again.  Now the erasure
-- leaves a tombstone (digests only): events of the erased user created
-- before the erasure are refused, whoever sends them, and events created
-- afterwards are stored as usual.  The same holds for forget_installation()
-- should the install_id be registered again.
\set VERBOSITY terse
\set inst '''70707070-7070-4070-8070-70707070707a_70707070707a'''
\set inst2 '''70707070-7070-4070-8070-70707070707b_70707070707b'''
\set secret '''rel70-secret-a-0123456789abcdef'''
SELECT usage_tracking.create_account('acc_rel70', 'pro');
SELECT usage_tracking.register_installation(:inst, 'acc_rel70', :secret) IS NOT NULL AS registered,
       usage_tracking.register_installation(:inst2, 'acc_rel70', :secret) IS NOT NULL AS registered2;

-- The captured request: two events of user 70, one of user 71, signed at 12:00.
CREATE TEMP TABLE captured AS
SELECT b AS body, t.sig(b, 'rel70-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00') AS sig
  FROM t.batch('70707070-7070-4070-8070-70707070707a_70707070707a', jsonb_build_array(
         t.event('r70_1', '2025-11-03 11:58:00+00', usr => 70),
         t.event('r70_2', '2025-11-03 11:59:00+00', usr => 70),
         t.event('r70_3', '2025-11-03 11:59:30+00', usr => 71))) b;
SELECT r->>'received' AS received, r->'quota'->>'used' AS quota_used
  FROM captured, usage_tracking.ingest(body, sig, '2025-11-03 12:00:00+00') r;

SELECT usage_tracking.forget_user(:inst, t.user_hash(70), '2025-11-03 12:01:00+00') AS forgotten;

-- The replay, two minutes later: inside the 300 s window.
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates, r->'event_ids' AS event_ids,
       r->'rejected' AS rejected, r->'quota'->>'used' AS quota_used
  FROM captured, usage_tracking.ingest(body, sig, '2025-11-03 12:02:00+00') r;
SELECT wp_user_id_hash = t.user_hash(70) AS erased_user, count(*) AS events
  FROM usage_tracking.events WHERE install_id = :inst GROUP BY 1 ORDER BY 1;
SELECT count(*) AS erased_user_daily_rows FROM usage_tracking.daily
 WHERE install_id = :inst AND wp_user_id_hash = t.user_hash(70);
SELECT (SELECT sum(total_requests) FROM usage_tracking.daily WHERE install_id = :inst) AS daily_requests;

-- What the plugin legitimately sends afterwards: a queued event of the
-- erased user created before the erasure is refused; a new one is stored.
SELECT r->'event_ids' AS event_ids, r->'rejected' AS rejected
  FROM t.post(t.batch(:inst, jsonb_build_array(
         t.event('r70_4', '2025-11-03 12:00:30+00', usr => 70),
         t.event('r70_5', '2025-11-03 12:01:30+00', usr => 70),
         t.event('r70_6', '2025-11-03 12:00:30+00', usr => 72))),
       :secret, '2025-11-03 12:03:00+00') r;

-- An erased installation registered again under the same id (and, badly,
-- the same secret): its old batches are refused, new events are stored.
CREATE TEMP TABLE captured2 AS
SELECT b AS body, t.sig(b, 'rel70-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00') AS sig
  FROM t.batch('70707070-7070-4070-8070-70707070707b_70707070707b', jsonb_build_array(
         t.event('r70_i1', '2025-11-03 11:59:00+00', usr => 73))) b;
SELECT r->>'received' AS received FROM captured2, usage_tracking.ingest(body, sig, '2025-11-03 12:00:00+00') r;
SELECT usage_tracking.forget_installation(:inst2, '2025-11-03 12:01:00+00')->>'events' AS erased_events;
SELECT usage_tracking.register_installation(:inst2, 'acc_rel70', :secret) IS NOT NULL AS registered_again;
SELECT r->>'received' AS received, r->'rejected' AS rejected
  FROM captured2, usage_tracking.ingest(body, sig, '2025-11-03 12:02:00+00') r;
SELECT r->'event_ids' AS event_ids
  FROM t.post(t.batch(:inst2, jsonb_build_array(t.event('r70_i2', '2025-11-03 12:01:30+00', usr => 73))),
              :secret, '2025-11-03 12:03:00+00') r;

-- The tombstones identify no one: digests, no install_id, no user hash.
SELECT count(*) AS tombstones,
       bool_and(strpos(x::text, '70707070') = 0 AND strpos(x::text, t.user_hash(70)) = 0
                AND strpos(encode(x.install_key, 'hex'), encode(convert_to(:inst, 'UTF8'), 'hex')) = 0) AS holds_no_id,
       bool_or(x.install_key = sha256(convert_to(:inst, 'UTF8'))
               AND x.user_keys = ARRAY[sha256(convert_to(:inst || ':' || t.user_hash(70), 'UTF8'))]) AS user_digest
  FROM usage_tracking.erasure_tombstones x
 WHERE x.install_key IN (sha256(convert_to(:inst, 'UTF8')), sha256(convert_to(:inst2, 'UTF8')));
-- Erasing the same user again keeps one entry, at the later time; an entry
-- older than usage_tracking.event_retention is dropped.
SELECT usage_tracking.forget_user(:inst, t.user_hash(70), '2025-11-03 13:00:00+00')->>'events' AS erased_again;
SELECT cardinality(user_keys) AS entries, user_erased_at
  FROM usage_tracking.erasure_tombstones WHERE install_key = sha256(convert_to(:inst, 'UTF8'));
SELECT usage_tracking.forget_user(:inst, t.user_hash(74), '2026-03-01 00:00:00+00')->>'events' AS later_erasure;
SELECT cardinality(user_keys) AS entries, user_erased_at
  FROM usage_tracking.erasure_tombstones WHERE install_key = sha256(convert_to(:inst, 'UTF8'));
SELECT count(*) AS inst2_tombstones_left
  FROM usage_tracking.erasure_tombstones WHERE install_key = sha256(convert_to(:inst2, 'UTF8'));
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id LIKE '70707070-%';
