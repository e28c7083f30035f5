-- Read side: list_events pages (newest received first, opaque cursor),
-- their limits and errors, and what a reader sees.  Uses the installations
-- of 10_read_summary.
\set VERBOSITY terse
\set a1 '''a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1'''
\set a2 '''a2a2a2a2-1010-4010-8010-101010101010_1010a2a2a2a2'''
\set b1 '''b1b1b1b1-1010-4010-8010-101010101010_1010b1b1b1b1'''

-- A second batch for a1, received five minutes after the first.
SELECT t.post(t.batch(:a1, jsonb_build_array(
         t.event('ra1_late_1', '2025-11-03 12:01:00+00'),
         t.event('ra1_late_2', '2025-11-03 12:02:00+00', usr => 2))),
       'read-secret-a1-0123456789', '2025-11-03 12:05:00+00')->'received' AS received;

-- Every page of a listing, following the cursor until a short page.
CREATE FUNCTION pg_temp.read_pages(install text, lim int, date_from timestamptz DEFAULT NULL,
                                   date_to timestamptz DEFAULT NULL)
RETURNS TABLE (page int, pos int, install_id text, event_id text, created_at timestamptz,
               received_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
  c text;
  n int;
  r record;
BEGIN
  page := 0;
  LOOP
    page := page + 1;
    n := 0;
    FOR r IN SELECT * FROM usage_tracking.list_events(install, date_from, date_to, c, lim) LOOP
      n := n + 1;
      pos := n;
      install_id := r.install_id;
      event_id := r.event_id;
      created_at := r.created_at;
      received_at := r.received_at;
      RETURN NEXT;
      c := r.cursor;
    END LOOP;
    EXIT WHEN n < lim;
  END LOOP;
END $$;

-- The first rows: newest received first, then event_id descending.
SELECT event_id, prompt_tokens, completion_tokens, total_tokens, request_id, created_at, received_at,
       length(cursor) > 0 AS has_cursor
  FROM usage_tracking.list_events(:a1, lim => 4);

-- Paging through all of a1 in pages of 100: every event exactly once, in
-- strictly descending order.
CREATE TEMP TABLE read_seen AS SELECT * FROM pg_temp.read_pages(:a1, 100);
SELECT count(DISTINCT page) AS pages, max(pos) FILTER (WHERE page = 1) AS first_page,
       count(*) AS rows, count(DISTINCT (install_id, event_id, created_at)) AS distinct_rows,
       (SELECT count(*) FROM usage_tracking.events WHERE install_id = :a1) AS stored
  FROM read_seen;
SELECT count(*) AS out_of_order
  FROM (SELECT (received_at, event_id, created_at) < lag((received_at, event_id, created_at))
                   OVER (ORDER BY page, pos) AS ok
          FROM read_seen) x
 WHERE NOT ok;
-- Pages of one and of 1000.
SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct_rows, max(page) AS pages
  FROM pg_temp.read_pages(:a2, 1) WHERE event_id LIKE 'ra2_1%';
SELECT count(*) AS rows, max(page) AS pages FROM pg_temp.read_pages(:a2, 1000);

-- created_at window [date_from, date_to).
SELECT count(*) AS listed,
       (SELECT count(*) FROM usage_tracking.events
         WHERE install_id = :a1 AND created_at >= '2025-10-10' AND created_at < '2025-10-17') AS stored
  FROM pg_temp.read_pages(:a1, 7, '2025-10-10', '2025-10-17');

-- Events stored after the first page: a batch received later than the
-- listing's top is never listed; one received below the cursor (a
-- transaction that took long to commit) is listed, once, on a later page.
CREATE TEMP TABLE read_p1 AS SELECT * FROM usage_tracking.list_events(:a2, lim => 100);
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, created_at, received_at)
SELECT :a2, tag || i, t.user_hash(1), 'bulk', 'gpt-4o-mini', 10, 1, '2025-11-02 10:00:00+00', at
  FROM (VALUES ('ra2_newer_', timestamptz '2025-11-03 13:00:00+00'),
               ('ra2_older_', timestamptz '2025-11-03 11:00:00+00')) v(tag, at),
       generate_series(1, 3) i;
CREATE TEMP TABLE read_rest AS
WITH RECURSIVE pages(n, cursor, event_id) AS (
  SELECT 1, (SELECT cursor FROM read_p1 ORDER BY received_at, event_id LIMIT 1), NULL::text
  UNION ALL
  SELECT p.n + 1, l.cursor, l.event_id
    FROM pages p, LATERAL usage_tracking.list_events(:a2, NULL, NULL, p.cursor, 1) l
   WHERE p.n < 1000
)
SELECT event_id FROM pages WHERE event_id IS NOT NULL;
SELECT (SELECT count(*) FROM read_p1) + (SELECT count(*) FROM read_rest) AS listed,
       (SELECT count(*) FROM (SELECT event_id FROM read_p1 UNION SELECT event_id FROM read_rest) x) AS distinct_listed,
       (SELECT count(*) FROM usage_tracking.events WHERE install_id = :a2
         AND event_id NOT LIKE 'ra2_newer%' AND event_id NOT LIKE 'ra2_older%') AS stored_before,
       (SELECT string_agg(event_id, ' ' ORDER BY event_id) FROM read_rest WHERE event_id LIKE 'ra2_%er_%') AS late_listed;

-- Limits and malformed arguments: 22023.
SELECT q, t.read_try(q) FROM (VALUES
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', lim => 0)$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', lim => 1001)$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', lim => NULL)$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', lim => 1000)$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', after => 'not a cursor')$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', after => 'djJ8MXwyfGF8Yg')$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', after => 'djF8eHwyfGF8Yg')$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', after => '')$$),
  ($$SELECT * FROM usage_tracking.list_events('a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1', '2025-11-02', '2025-11-01')$$)) v(q);

-- A reader sees its account's events only: every installation of it
-- without install_id, nothing of another account's installation even with
-- a cursor taken from it, nothing without a claim.
SELECT cursor AS b1_cursor FROM usage_tracking.list_events(:b1, lim => 1) \gset
BEGIN;
SET LOCAL ROLE usage_tracking_reader;
SELECT set_config('request.jwt.claims', '{"account_id": "acc_read_a"}', true) IS NOT NULL AS claims_set;
SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct_rows,
       count(*) FILTER (WHERE install_id = :a1) AS a1, count(*) FILTER (WHERE install_id = :a2) AS a2,
       count(*) FILTER (WHERE install_id = :b1) AS b1
  FROM pg_temp.read_pages(NULL, 250);
SELECT count(*) AS b1_rows FROM usage_tracking.list_events(:b1, lim => 1000);
SELECT count(*) AS b1_rows FROM usage_tracking.list_events(:b1, after => :'b1_cursor', lim => 1000);
SELECT count(*) FILTER (WHERE install_id = :b1) AS b1_rows
  FROM usage_tracking.list_events(NULL, after => :'b1_cursor', lim => 1000);
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS claims_empty;
SELECT count(*) AS rows FROM usage_tracking.list_events(NULL, lim => 1000);
SELECT set_config('request.jwt.claims', '{"role": "usage_tracking_reader"}', true) IS NOT NULL AS no_account;
SELECT count(*) AS rows FROM usage_tracking.list_events(:a1, lim => 1000);
ROLLBACK;
