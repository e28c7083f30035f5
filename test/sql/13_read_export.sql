-- Read side: export_csv — header first, RFC 4180 quoting, both kinds,
-- COPY, the reader's tenancy, errors, and a plan that streams (the
-- function is inlined: no function scan collects the rows first).
\set VERBOSITY terse
\set a1 '''a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1'''
\set b1 '''b1b1b1b1-1010-4010-8010-101010101010_1010b1b1b1b1'''

-- Daily rows of one installation and day (rows come in storage order;
-- sorted here, header first).
SELECT * FROM usage_tracking.export_csv('daily', :a1, '2025-10-01', '2025-10-01') line
 ORDER BY line LIKE 'account_id,%' DESC, line;

-- Events with awkward values: commas, quotes, a line break and an empty
-- request_id, a context object with quotes and backslashes.
SELECT t.post(t.batch(:a1, jsonb_build_array(
         t.event('rx_1', '2025-09-01 08:00:00+00') || '{"request_id": "a,b \"c\""}',
         t.event('rx_2', '2025-09-01 08:00:01+00') || '{"request_id": "line1\nline2", "context": {"alt": "a \"q\" \\\\ b", "w": 1}}',
         t.event('rx_3', '2025-09-01 08:00:02+00') || '{"request_id": ""}',
         t.event('rx_4', '2025-09-01 08:00:03+00') - 'request_id')),
       'read-secret-a1-0123456789', '2025-11-03 12:00:00+00')->'received' AS received;
SELECT line FROM usage_tracking.export_csv('events', :a1, '2025-09-01', '2025-09-01') line
 ORDER BY line LIKE 'install_id,%' DESC, line;

-- Each record parses back to the stored values (a small RFC 4180 reader).
CREATE FUNCTION pg_temp.csv_fields(rec text) RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  out text[] := '{}';
  f text := '';
  i int := 1;
  n int := length(rec);
  quoted bool := false;
  ch text;
BEGIN
  WHILE i <= n LOOP
    ch := substr(rec, i, 1);
    IF quoted THEN
      IF ch = '"' AND substr(rec, i + 1, 1) = '"' THEN f := f || '"'; i := i + 1;
      ELSIF ch = '"' THEN quoted := false;
      ELSE f := f || ch; END IF;
    ELSIF ch = '"' THEN quoted := true;
    ELSIF ch = ',' THEN out := out || f; f := '';
    ELSE f := f || ch; END IF;
    i := i + 1;
  END LOOP;
  RETURN out || f;
END $$;
SELECT count(*) AS records,
       count(*) FILTER (WHERE f[2] = e.event_id AND f[10] = coalesce(e.request_id, '')
                          AND f[11] = coalesce(e.context::text, '')
                          AND f[12]::timestamptz = e.created_at AND f[13]::timestamptz = e.received_at
                          AND f[9]::bigint = e.prompt_tokens + e.completion_tokens) AS round_trip
  FROM usage_tracking.export_csv('events', :a1, '2025-09-01', '2025-09-01') line,
       pg_temp.csv_fields(line) f
  JOIN usage_tracking.events e ON e.install_id = f[1] AND e.event_id = f[2]
 WHERE f[1] <> 'install_id';
-- NULL is an empty field, the empty string a quoted one.
SELECT (pg_temp.csv_fields(line))[10] AS request_id, line LIKE '%,"",%' AS quoted_empty
  FROM usage_tracking.export_csv('events', :a1, '2025-09-01', '2025-09-01') line
 WHERE line LIKE '%rx_3%' OR line LIKE '%rx_4%';

-- Totals: every daily row and every event of the range, once.
SELECT count(*) - 1 AS daily_records,
       (SELECT count(*) FROM usage_tracking.daily WHERE install_id = :a1
         AND usage_date BETWEEN '2025-10-01' AND '2025-10-31') AS daily_rows
  FROM usage_tracking.export_csv('daily', :a1, '2025-10-01', '2025-10-31');
SELECT count(*) - 1 AS event_records,
       (SELECT count(*) FROM usage_tracking.events WHERE install_id = :a1
         AND created_at >= '2025-10-01 00:00:00+00' AND created_at < '2025-11-01 00:00:00+00') AS events
  FROM usage_tracking.export_csv('events', :a1, '2025-10-01', '2025-10-31');

-- COPY writes the same lines; the header comes first.
COPY (SELECT * FROM usage_tracking.export_csv('daily', :a1, '2025-10-02', '2025-10-02') LIMIT 1) TO STDOUT;
COPY (SELECT * FROM usage_tracking.export_csv('daily', :a1, '2025-10-02', '2025-10-02') line
       WHERE line NOT LIKE 'account_id,%' ORDER BY line) TO STDOUT;

-- Errors: 22023.
SELECT q, t.read_try(q) FROM (VALUES
  ($$SELECT * FROM usage_tracking.export_csv('monthly')$$),
  ($$SELECT * FROM usage_tracking.export_csv(NULL)$$),
  ($$SELECT * FROM usage_tracking.export_csv('daily', NULL, '2025-10-02', '2025-10-01')$$)) v(q);

-- Streams: the function is inlined into the caller's query (no Function
-- Scan), and no node of the plan collects the rows (no sort, materialize,
-- aggregate or hash over them).
CREATE FUNCTION pg_temp.read_plan_nodes(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE plan jsonb;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
  RETURN QUERY SELECT DISTINCT r #>> '{}' FROM jsonb_path_query(plan, 'strict $.**."Node Type"') r;
END $$;
SELECT count(*) FILTER (WHERE n IN ('Function Scan', 'Materialize', 'Aggregate', 'Sort', 'Hash')) AS collecting_nodes
  FROM pg_temp.read_plan_nodes($$SELECT * FROM usage_tracking.export_csv('events', NULL, '2025-09-01', '2025-11-30')$$) n;
SELECT count(*) FILTER (WHERE n IN ('Function Scan', 'Materialize', 'Aggregate', 'Sort', 'Hash')) AS collecting_nodes
  FROM pg_temp.read_plan_nodes($$SELECT * FROM usage_tracking.export_csv('daily', 'a1a1a1a1-1010-4010-8010-101010101010_1010a1a1a1a1')$$) n;

-- A reader exports its own account only; without a claim, just the header.
BEGIN;
SET LOCAL ROLE usage_tracking_reader;
SELECT set_config('request.jwt.claims', '{"account_id": "acc_read_a"}', true) IS NOT NULL AS claims_set;
SELECT count(*) AS records, count(*) FILTER (WHERE line LIKE 'acc_read_b,%') AS of_b,
       count(*) FILTER (WHERE line LIKE 'acc_read_a,%') AS of_a
  FROM usage_tracking.export_csv('daily') line;
SELECT count(*) AS records FROM usage_tracking.export_csv('events', :b1) line;
SELECT set_config('request.jwt.claims', '', true) IS NOT NULL AS claims_empty;
SELECT line FROM usage_tracking.export_csv('daily') line;
ROLLBACK;
