-- A batch built and signed by PHP, as the plugin does, is accepted.
\set VERBOSITY terse
\set php_args '1762171200 core-secret-0123456789abcdef 550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8'
\set body `php test/fixtures/php_batch.php body :php_args`
\set sig `php test/fixtures/php_batch.php signature :php_args`
-- the body carries PHP's escaped slashes and \u escapes, byte for byte
SELECT position('openai\/gpt-4o-mini' IN :'body') > 0 AS has_escaped_slash,
       position('\u00e9' IN :'body') > 0 AS has_unicode_escape;
SELECT jsonb_pretty(usage_tracking.ingest(:'body', :'sig', to_timestamp(1762171200)) - 'quota');
SELECT event_id, model, source, context->>'title' AS title, created_at
  FROM usage_tracking.usage_events WHERE event_id LIKE 'evt_php_%' ORDER BY 1;
-- sent again: all duplicates
SELECT usage_tracking.ingest(:'body', :'sig', to_timestamp(1762171200) + interval '2 minutes')
       ->> 'duplicates' AS duplicates;
SELECT count(*) AS drifting_rows FROM t.drift;
