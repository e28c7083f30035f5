-- The ingest response of a large batch is built from memory that outlives
-- the SPI calls: every event_id and every rejection reason comes back
-- intact, first post and resend alike.  (The per-event arrays used to live
-- in SPI's procedure context, which SPI_finish() frees before the response
-- is written; with a few thousand events that crashed the backend.)
\set VERBOSITY terse
SET usage_tracking.max_batch_events = 5000;
SELECT usage_tracking.create_account('acc_rel61', 'agency');
SELECT usage_tracking.register_installation('61616161-6161-4161-8161-616161616161_616161616161',
                                            'acc_rel61', 'rel61-secret-0123456789abcdef') IS NOT NULL AS registered;

-- 3000 events: every 7th has a wrong total_tokens (a formatted reason), and
-- the last one repeats the first event_id.
CREATE TEMP TABLE big AS
SELECT t.batch('61616161-6161-4161-8161-616161616161_616161616161',
               (SELECT jsonb_agg(CASE WHEN g % 7 = 0
                                      THEN jsonb_set(t.event('big_' || g, '2025-11-03 11:00+00', usr => 61),
                                                     '{total_tokens}', to_jsonb(g))
                                      WHEN g = 3000
                                      THEN t.event('big_1', '2025-11-03 11:00+00', usr => 61)
                                      ELSE t.event('big_' || g, '2025-11-03 11:00+00', usr => 61) END
                                 ORDER BY g)
                  FROM generate_series(1, 3000) g)) AS body;
CREATE TEMP TABLE expected AS
SELECT (SELECT jsonb_agg('big_' || g ORDER BY g) FROM generate_series(1, 2999) g WHERE g % 7 <> 0) AS event_ids,
       (SELECT jsonb_agg(jsonb_build_object('index', g - 1, 'event_id', CASE WHEN g = 3000 THEN 'big_1' ELSE 'big_' || g END,
                                            'error', CASE WHEN g = 3000 THEN 'event_id repeats the event at index 0'
                                                          ELSE format('total_tokens %s is not prompt_tokens 100 + completion_tokens 20', g) END)
                         ORDER BY g)
          FROM generate_series(1, 3000) g WHERE g % 7 = 0 OR g = 3000) AS rejected;

SELECT r->>'received' AS received, r->>'duplicates' AS duplicates,
       r->'event_ids' = e.event_ids AS event_ids_exact, r->'rejected' = e.rejected AS rejected_exact
  FROM big, expected e, t.post(body, 'rel61-secret-0123456789abcdef', '2025-11-03 12:00:00+00') r;
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates,
       r->'event_ids' = e.event_ids AS event_ids_exact, r->'rejected' = e.rejected AS rejected_exact
  FROM big, expected e, t.post(body, 'rel61-secret-0123456789abcdef', '2025-11-03 12:01:00+00') r;
SELECT total_requests, prompt_tokens, completion_tokens
  FROM usage_tracking.daily
 WHERE install_id = '61616161-6161-4161-8161-616161616161_616161616161';
RESET usage_tracking.max_batch_events;
