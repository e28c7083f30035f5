-- Ingest: storing a batch once, the response shape, duplicates, rejected
-- events, and summaries that match the raw events.
\set VERBOSITY terse
\set inst '''550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8'''
\set secret '''core-secret-0123456789abcdef'''
\set now '''2025-11-03 12:00:00+00'''

-- A batch of three events, one of them with a wrong total.
SELECT t.batch(:inst, jsonb_build_array(
         t.event('evt_a1', '2025-11-03 10:30:00+00'),
         t.event('evt_a2', '2025-11-03 10:31:00+00', 150, 25, usr => 2),
         t.event('evt_a3', '2025-11-03 10:32:00+00', 200, 50, 'gpt-4o', 'inline', cached => 100)
       )) AS body \gset
SELECT jsonb_pretty(t.post(:'body', :secret, :now));

SELECT event_id, source, model, prompt_tokens, completion_tokens, cached_prompt_tokens,
       total_tokens, request_id, created_at, received_at
  FROM usage_tracking.usage_events ORDER BY event_id;
SELECT account_id, usage_date, source, model, total_requests, prompt_tokens, completion_tokens,
       cached_prompt_tokens, total_tokens, estimated_cost_usd, unpriced_requests
  FROM usage_tracking.daily_usage ORDER BY model, source, total_tokens;

-- The same batch resent: every event is a duplicate, nothing is added.
SELECT * FROM t.counts;
SELECT t.post(:'body', :secret, :now::timestamptz + interval '5 minutes') - 'quota' AS resend;
SELECT * FROM t.counts;

-- A wrong total_tokens rejects that event alone; the rest is stored.
SELECT t.batch(:inst, jsonb_build_array(
         t.event('evt_b1', '2025-11-03 11:00:00+00'),
         t.event('evt_b2', '2025-11-03 11:01:00+00', 150, 25) || '{"total_tokens": 180}',
         t.event('evt_b3', '2025-11-03 11:02:00+00', usr => 3),
         t.event('evt_b1', '2025-11-03 11:00:00+00')
       )) AS body2 \gset
SELECT jsonb_pretty(t.post(:'body2', :secret, :now) - 'quota');
SELECT event_id FROM usage_tracking.usage_events WHERE event_id LIKE 'evt_b%' ORDER BY 1;

-- A partial resend: one old event and one new.
SELECT t.post(t.batch(:inst, jsonb_build_array(
         t.event('evt_b3', '2025-11-03 11:02:00+00', usr => 3),
         t.event('evt_b4', '2025-11-03 11:03:00+00', usr => 3))), :secret, :now)
       - 'quota' AS partial_resend;

-- Unknown fields are ignored; context is kept as an object; PHP-style \/ escapes decode.
SELECT t.post('{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "plugin_version": "2.1.0",'
              ' "events": [{"event_id": "evt_c1", "wp_user_id_hash": "' || t.user_hash(1) || '",'
              ' "source": "queue", "model": "openai\/gpt-4o-mini", "prompt_tokens": 10,'
              ' "completion_tokens": 5, "context": {"attachment_id": 123, "width": 1024, "nested": {"a": [1, 2]}},'
              ' "created_at": "2025-11-03T13:30:00+02:00", "future_field": [1, {"x": null}]}]}',
              :secret, :now) - 'quota' AS extras;
SELECT model, context, created_at, request_id IS NULL AS no_request_id
  FROM usage_tracking.usage_events WHERE event_id = 'evt_c1';

-- Escapes decode wherever they are: in field names, in values (quotes and
-- backslashes, a string ending in an escaped backslash, \u escapes with a
-- surrogate pair) and in context keys and values, as jsonb_in decodes them.
-- A field we do not read may hold any escape PostgreSQL's json type takes.
\set ctxe '{"k\\u00e9y": "v\\u00e9 \\ud83d\\ude00", "q": "say \\"hi\\"", "b": "ends\\\\"}'
\set esc '{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8", "ignored": "\\u0000 \\ud800", "events": [{"event\\u005fid": "evt_\\u0065sc", "wp_user_id_hash": "USER", "source": "qu\\u0065ue", "model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 5, "request_id": "r\\"q\\\\", "context": CTX, "created_at": "2025-11-03T11:31:00Z"}]}'
SELECT t.post(replace(replace(:'esc', 'USER', t.user_hash(1)), 'CTX', :'ctxe'), :secret, :now) - 'quota' AS escapes;
SELECT event_id, source, request_id, context, context = (:'ctxe')::jsonb AS context_as_jsonb_in
  FROM usage_tracking.events WHERE event_id = 'evt_esc';

-- A field whose name ends in a known one after an escaped quote ("a\"model")
-- is another field, ignored: the event keeps its model.
SELECT t.post('{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8",'
              ' "events": [{"event_id": "evt_q1", "wp_user_id_hash": "' || t.user_hash(1) || '",'
              ' "source": "queue", "model": "gpt-4o-mini", "a\"model": "not a model!",'
              ' "\"source": "nope", "prompt_tokens": 10, "completion_tokens": 5,'
              ' "created_at": "2025-11-03T11:30:30Z"}]}',
              :secret, :now) - 'quota' AS quoted_names;
SELECT source, model FROM usage_tracking.events WHERE event_id = 'evt_q1';

-- Numbers in context are stored as jsonb_in would store them (integers,
-- negative and zero ones, the int64 limits, fractions, exponents).
\set ctx '{"i": [0, -0, 7, -7, 1024, 999999999999999999, -999999999999999999, 9223372036854775807, -9223372036854775808, 9223372036854775808, 12345678901234567890], "f": [1.0, -0.50, 1e3, 2E-2, 0.000]}'
SELECT t.post('{"install_id": "550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8",'
              ' "events": [{"event_id": "evt_c2", "wp_user_id_hash": "' || t.user_hash(1) || '",'
              ' "source": "queue", "model": "gpt-4o-mini", "prompt_tokens": 10, "completion_tokens": 5,'
              ' "context": ' || :'ctx' || ', "created_at": "2025-11-03T11:30:00Z"}]}',
              :secret, :now)->'received' AS received;
SELECT context::text AS stored, context::text = (:'ctx')::jsonb::text AS as_jsonb_in
  FROM usage_tracking.events WHERE event_id = 'evt_c2';
SELECT count(*) AS numbers, count(*) FILTER (WHERE a.v::text = b.v::text AND pg_column_size(a.v) = pg_column_size(b.v)) AS identical
  FROM usage_tracking.events e,
       LATERAL jsonb_array_elements((e.context->'i') || (e.context->'f')) WITH ORDINALITY a(v, n)
       JOIN jsonb_array_elements(((:'ctx')::jsonb->'i') || ((:'ctx')::jsonb->'f')) WITH ORDINALITY b(v, n) USING (n)
 WHERE e.event_id = 'evt_c2';

-- Events on several days and models, then the summaries equal the oracle.
SELECT t.post(t.batch(:inst, jsonb_agg(t.event('evt_d' || i, timestamptz '2025-11-01 00:00:00+00' + i * interval '23 minutes',
                                                 i * 7 % 500, i * 3 % 90,
                                                 (ARRAY['gpt-4o-mini', 'gpt-4o', 'mystery-model'])[1 + i % 3],
                                                 (ARRAY['manual', 'bulk', 'queue', 'inline'])[1 + i % 4],
                                                 1 + i % 2, (i * 7 % 500) / 3))),
              :secret, :now)->'received' AS received
  FROM generate_series(1, 120) i;
SELECT count(*) AS drifting_rows FROM t.drift;
SELECT model, sum(total_requests) AS requests, sum(unpriced_requests) AS unpriced,
       sum(estimated_cost_usd) AS cost
  FROM usage_tracking.daily GROUP BY model ORDER BY model;
-- last_seen_at follows the site's posts (a retry too), at one-minute resolution.
SELECT last_seen_at FROM usage_tracking.installations WHERE install_id = :inst;
SELECT t.post(t.batch(:inst, jsonb_build_array(t.event('evt_e1', '2025-11-03 12:05:00+00'))),
              :secret, :now::timestamptz + interval '10 minutes')->'received' AS received;
SELECT install_id, first_seen_at, last_seen_at FROM usage_tracking.installations
 WHERE install_id = :inst;
