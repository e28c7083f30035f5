-- Duplicated keys in a batch.  Readers of the same signed body may take the
-- first of two equal keys (the gateway's access log, a proxy) or the last
-- (a jsonb cast): a batch giving install_id, account_id or events twice is
-- refused whole (UTB02) and writes nothing; an event giving one of its
-- fields twice is rejected alone.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_rel67', 'pro');
SELECT usage_tracking.register_installation('67676767-6767-4767-8767-67676767676a_67676767676a',
                                            'acc_rel67', 'rel67-secret-a-0123456789abcdef') IS NOT NULL AS registered;
SELECT * FROM t.counts \gset before_

-- Another tenant's install_id first, the signer's last.
SELECT label, t.outcome(body, t.sig(body, 'rel67-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00'),
                        '2025-11-03 12:00:00+00') AS outcome
  FROM (VALUES
    ('install_id twice',
     '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "events": ['
       || t.event('rel67_1', '2025-11-03 11:00:00+00')::text || ']}'),
    ('install_id twice, same value',
     '{"install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "events": ['
       || t.event('rel67_2', '2025-11-03 11:00:00+00')::text || ']}'),
    ('account_id twice',
     '{"install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "account_id": "acc_core", "account_id": "acc_rel67", "events": ['
       || t.event('rel67_3', '2025-11-03 11:00:00+00')::text || ']}'),
    ('events twice',
     '{"install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "events": [], "events": ['
       || t.event('rel67_4', '2025-11-03 11:00:00+00')::text || ']}')
  ) AS c(label, body);
SELECT (SELECT row(c.*) FROM t.counts c) = row(:before_events::bigint, :before_daily::bigint, :before_seen::bigint) AS nothing_written;

-- A field twice inside one event: that event is rejected, the other stored.
SELECT r->>'received' AS received, r->'event_ids' AS stored, r->'rejected' AS rejected
  FROM t.post('{"install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "events": ['
              || t.event('rel67_ok', '2025-11-03 11:00:00+00')::text || ', '
              || rtrim(t.event('rel67_dup', '2025-11-03 11:00:00+00')::text, '}')
              || ', "total_tokens": 999999}, '
              || rtrim(t.event('rel67_dup2', '2025-11-03 11:00:00+00')::text, '}')
              || ', "event_id": "rel67_other"}]}',
              'rel67-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00') r;
-- Unknown keys are not read, so they may repeat; nested context keys too.
SELECT r->>'received' AS received
  FROM t.post('{"install_id": "67676767-6767-4767-8767-67676767676a_67676767676a", "x": 1, "x": 2, "events": ['
              || rtrim(t.event('rel67_ctx', '2025-11-03 11:00:00+00')::text, '}')
              || ', "context": {"a": 1, "a": 2}, "extra": 1, "extra": 2}]}',
              'rel67-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00') r;
SELECT event_id, prompt_tokens, completion_tokens FROM usage_tracking.events
 WHERE install_id = '67676767-6767-4767-8767-67676767676a_67676767676a' ORDER BY 1;
SELECT count(*) AS drifting_rows FROM t.drift WHERE install_id LIKE '67676767-%';
