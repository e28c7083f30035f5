-- Bad input: each malformed request gets its documented SQLSTATE and writes
-- nothing; each malformed event is rejected alone with its reason.
\set VERBOSITY terse
\set inst '''550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8'''
\set secret '''core-secret-0123456789abcdef'''
\set now '''2025-11-03 12:00:00+00'''
\set ON_ERROR_STOP 0
\set VERBOSITY default
\set SHOW_CONTEXT never

CREATE FUNCTION t.try(body text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM t.post(body, 'core-secret-0123456789abcdef', '2025-11-03 12:00:00+00');
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

SELECT * FROM t.counts \gset before_

-- Whole-request errors.
SELECT label, t.try(body) AS outcome FROM (VALUES
  ('not JSON',              'not json'),
  ('truncated',             '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": ['),
  ('empty body',            ''),
  ('NUL escape',            '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": [{"event_id": "a\u0000b"}]}'),
  ('lone surrogate',        '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": [{"event_id": "\ud800"}]}'),
  ('body is an array',      '[1, 2]'),
  ('body is a string',      '"hello"'),
  ('install_id a number',   '{"install_id": 12, "events": [{}]}'),
  ('install_id missing',    '{"events": [{}]}'),
  ('install_id malformed',  '{"install_id": "550E8400-E29B-41D4-A716-446655440000_A3B4C5D6E7F8", "events": [{}]}'),
  ('events missing',        '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8"}'),
  ('events an object',      '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": {}}'),
  ('events a string',       '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": "x"}'),
  ('events twice',          '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": [{}], "events": [{}]}'),
  ('zero events',           '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "events": []}'),
  ('account_id a number',   '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "account_id": 5, "events": [{}]}'),
  ('another account',       '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "account_id": "acc_other", "events": [{}]}')
) AS c(label, body);

-- The text type itself refuses invalid UTF-8 and NUL bytes before ingest runs.
SELECT usage_tracking.ingest(convert_from('\x7b22ff227d'::bytea, 'UTF8'), 'x');
SELECT usage_tracking.ingest('{"a": "' || chr(0) || '"}', 'x');

-- Too many events, too large a body.
SET usage_tracking.max_batch_events = 3;
SELECT t.try(t.batch(:inst, jsonb_agg(t.event('evt_m' || i, '2025-11-03 11:00:00+00')))) AS four_events
  FROM generate_series(1, 4) i;
RESET usage_tracking.max_batch_events;
SET usage_tracking.max_body_bytes = 1024;
SELECT t.try(t.batch(:inst, jsonb_agg(t.event('evt_big' || i, '2025-11-03 11:00:00+00')))) AS body_over_limit
  FROM generate_series(1, 10) i;
RESET usage_tracking.max_body_bytes;
SET usage_tracking.max_batch_events = 0;
SET usage_tracking.signature_tolerance = '2 days';
RESET usage_tracking.signature_tolerance;

SELECT (SELECT row(c.*) FROM t.counts c) = row(:before_events::bigint, :before_daily::bigint, :before_seen::bigint) AS nothing_written;

-- At the limit, the batch goes in.
SET usage_tracking.max_batch_events = 3;
SELECT t.try(t.batch(:inst, jsonb_agg(t.event('evt_m' || i, '2025-11-03 11:00:00+00')))) AS three_events
  FROM generate_series(1, 3) i;
RESET usage_tracking.max_batch_events;

-- Per-event rejections: each bad event alone, the good one stored.
SELECT e->>'index' AS idx, e->>'event_id' AS event_id, e->>'error' AS error
  FROM jsonb_array_elements(t.post(t.batch(:inst, jsonb_build_array(
    t.event('evt_good', '2025-11-03 11:00:00+00'),
    t.event('evt_x1', '2025-11-03 11:00:00+00') - 'event_id',
    t.event('evt_x2', '2025-11-03 11:00:00+00') || '{"event_id": "has space"}',
    t.event('evt_x3', '2025-11-03 11:00:00+00') || jsonb_build_object('event_id', repeat('e', 51)),
    t.event('evt_x4', '2025-11-03 11:00:00+00') || '{"event_id": 12}',
    t.event('evt_x5', '2025-11-03 11:00:00+00') - 'wp_user_id_hash',
    t.event('evt_x6', '2025-11-03 11:00:00+00') || jsonb_build_object('wp_user_id_hash', upper(t.user_hash(1))),
    t.event('evt_x7', '2025-11-03 11:00:00+00', source => 'cron'),
    t.event('evt_x8', '2025-11-03 11:00:00+00') - 'source',
    t.event('evt_x9', '2025-11-03 11:00:00+00', model => 'gpt 4'),
    t.event('evt_x10', '2025-11-03 11:00:00+00') - 'model',
    t.event('evt_x11', '2025-11-03 11:00:00+00') - 'prompt_tokens',
    t.event('evt_x12', '2025-11-03 11:00:00+00') - 'completion_tokens',
    t.event('evt_x13', '2025-11-03 11:00:00+00') || '{"prompt_tokens": "150"}',
    t.event('evt_x14', '2025-11-03 11:00:00+00') || '{"prompt_tokens": 1.5}',
    t.event('evt_x15', '2025-11-03 11:00:00+00') || '{"prompt_tokens": -1, "total_tokens": 19}',
    t.event('evt_x16', '2025-11-03 11:00:00+00') || '{"completion_tokens": 2147483648}',
    t.event('evt_x17', '2025-11-03 11:00:00+00') || '{"prompt_tokens": 100.0}',
    t.event('evt_x18', '2025-11-03 11:00:00+00') || '{"total_tokens": 121}',
    t.event('evt_x19', '2025-11-03 11:00:00+00', cached => 101),
    t.event('evt_x20', '2025-11-03 11:00:00+00') || jsonb_build_object('request_id', repeat('r', 51)),
    t.event('evt_x21', '2025-11-03 11:00:00+00') || '{"context": "a string"}',
    t.event('evt_x22', '2025-11-03 11:00:00+00') || '{"context": [1, 2]}',
    t.event('evt_x23', '2025-11-03 11:00:00+00') || jsonb_build_object('context', jsonb_build_object('blob', repeat('x', 4100))),
    t.event('evt_x24', '2025-11-03 11:00:00+00') - 'created_at',
    t.event('evt_x25', '2025-11-03 11:00:00+00') || '{"created_at": "2025-11-03 10:30:00"}',
    t.event('evt_x26', '2025-11-03 11:00:00+00') || '{"created_at": "2025-02-30T10:30:00Z"}',
    t.event('evt_x27', '2025-11-03 12:05:01+00'),
    t.event('evt_x28', '2025-08-04 11:59:59+00'),
    t.event('evt_x29', '2025-11-03 11:00:00+00') || '{"created_at": 1762167600}',
    '"not an object"'::jsonb,
    t.event('evt_x31', '2025-11-03 11:00:00+00') || '{"prompt_tokens": 99999999999999999999999999}',
    t.event('evt_x32', '2025-11-03 11:00:00+00') || '{"total_tokens": null, "request_id": null, "context": null}',
    t.event('evt_x33', '2025-11-03 12:05:00+00'),
    t.event('evt_x34', '2025-08-05 12:00:00+00'),
    t.event('evt_x35', '2025-11-03 11:00:00+00') || '{"context": {"big": 1e1001}}'
  )), :secret, :now)->'rejected') e;

SELECT event_id FROM usage_tracking.events
 WHERE event_id IN ('evt_good', 'evt_x32', 'evt_x33', 'evt_x34') OR event_id LIKE 'evt_x%' ORDER BY 1;
SELECT count(*) AS drifting_rows FROM t.drift;
