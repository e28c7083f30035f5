-- Cross-tenant probing through unique keys.  The idempotency key is
-- (install_id, event_id), so one tenant reusing another's event_ids learns
-- nothing (its events are new, not duplicates) and changes nothing of the
-- other's; and a batch naming another tenant's installation fails exactly
-- like one naming an installation that does not exist.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_rel65_a', 'pro');
SELECT usage_tracking.create_account('acc_rel65_b', 'pro');
SELECT usage_tracking.register_installation('65656565-6565-4565-8565-65656565656a_65656565656a',
                                            'acc_rel65_a', 'rel65-secret-a-0123456789abcdef') IS NOT NULL AS registered_a;
SELECT usage_tracking.register_installation('65656565-6565-4565-8565-65656565656b_65656565656b',
                                            'acc_rel65_b', 'rel65-secret-b-0123456789abcdef') IS NOT NULL AS registered_b;

-- A stores two events.
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates
  FROM t.post(t.batch('65656565-6565-4565-8565-65656565656a_65656565656a',
                      jsonb_build_array(t.event('shared_1', '2025-11-03 10:00+00', usr => 65),
                                        t.event('shared_2', '2025-11-03 10:01+00', usr => 65))),
              'rel65-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00') r;
-- B sends the same event_ids, same times, same user hash: all new to B.
SELECT r->>'received' AS received, r->>'duplicates' AS duplicates
  FROM t.post(t.batch('65656565-6565-4565-8565-65656565656b_65656565656b',
                      jsonb_build_array(t.event('shared_1', '2025-11-03 10:00+00', usr => 65),
                                        t.event('shared_2', '2025-11-03 10:01+00', usr => 65))),
              'rel65-secret-b-0123456789abcdef', '2025-11-03 12:00:00+00') r;
SELECT install_id, count(*) AS events FROM usage_tracking.events
 WHERE install_id LIKE '65656565-%' GROUP BY 1 ORDER BY 1;
SELECT install_id, sum(total_requests) AS requests FROM usage_tracking.daily
 WHERE install_id LIKE '65656565-%' GROUP BY 1 ORDER BY 1;

-- B probing for A's installation: A's install_id and one nobody has fail
-- with the same SQLSTATE and message, whatever B signs with.
SELECT label, t.outcome(body, t.sig(body, 'rel65-secret-b-0123456789abcdef', '2025-11-03 12:00:00+00'),
                        '2025-11-03 12:00:00+00', 'acc_rel65_b') AS outcome
  FROM (VALUES
    ('A''s installation', t.batch('65656565-6565-4565-8565-65656565656a_65656565656a',
                                  jsonb_build_array(t.event('probe_1', '2025-11-03 10:00+00')))),
    ('an unknown installation', t.batch('65656565-6565-4565-8565-65656565656c_65656565656c',
                                        jsonb_build_array(t.event('probe_1', '2025-11-03 10:00+00'))))
  ) AS v(label, body)
 ORDER BY label;
SELECT count(*) AS probe_events_stored FROM usage_tracking.events WHERE event_id = 'probe_1';
