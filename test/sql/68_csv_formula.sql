-- CSV formula injection.  A site controls event_id, model and request_id,
-- an admin the account_id: a field starting with =, +, -, @, tab or
-- carriage return would run as a formula in a spreadsheet that opens the
-- export.  Every such field is written with a single quote first, quoted
-- (OWASP), in the events and the daily export, and in the provider's
-- export of every tenant; other fields are written as before.
\set VERBOSITY terse
SELECT usage_tracking.create_account('-acc_rel68', 'pro');
SELECT usage_tracking.register_installation('68686868-6868-4868-8868-68686868686a_68686868686a',
                                            '-acc_rel68', 'rel68-secret-a-0123456789abcdef') IS NOT NULL AS registered;
SELECT r->>'received' AS received, r->'rejected' AS rejected
  FROM t.post(t.batch('68686868-6868-4868-8868-68686868686a_68686868686a', jsonb_build_array(
         t.event('f68_1', '2025-08-15 08:00:00+00') || '{"request_id": "=cmd|'' /C calc''!A0"}',
         t.event('f68_2', '2025-08-15 08:00:01+00', model => '@SUM') || '{"request_id": "+1+2"}',
         t.event('-2-3', '2025-08-15 08:00:02+00', model => '-gpt') || '{"request_id": "@x"}',
         t.event('f68_4', '2025-08-15 08:00:03+00') || '{"request_id": "\tleading tab"}',
         t.event('f68_5', '2025-08-15 08:00:04+00') || '{"request_id": "\r=1"}',
         t.event('f68_6', '2025-08-15 08:00:05+00') || '{"request_id": "a=1, \"b\""}',
         t.event('f68_7', '2025-08-15 08:00:06+00') || '{"request_id": "plain"}')),
       'rel68-secret-a-0123456789abcdef', '2025-08-15 12:00:00+00') r;

SELECT line FROM usage_tracking.export_csv('events', '68686868-6868-4868-8868-68686868686a_68686868686a',
                                           '2025-08-15', '2025-08-15') line
 ORDER BY line LIKE 'install_id,%' DESC, line;
SELECT line FROM usage_tracking.export_csv('daily', '68686868-6868-4868-8868-68686868686a_68686868686a',
                                           '2025-08-15', '2025-08-15') line
 ORDER BY line LIKE 'account_id,%' DESC, line;
-- The provider's export of every tenant (no install_id) writes the same lines.
SELECT count(*) AS lines, count(*) FILTER (WHERE line ~ '(^|,)"?[=+@\t\r-]') AS unneutralised
  FROM usage_tracking.export_csv('events', NULL, '2025-08-15', '2025-08-15') line;
SELECT count(*) AS lines, count(*) FILTER (WHERE line ~ '(^|,)"?[=+@\t\r-]') AS unneutralised
  FROM usage_tracking.export_csv('daily', NULL, '2025-08-15', '2025-08-15') line;
-- The HTTP route is the same function.
SELECT count(*) AS lines, count(*) FILTER (WHERE l ~ '(^|,)"?[=+@\t\r-]') AS unneutralised
  FROM usage_api.export('events', NULL, '2025-08-15', '2025-08-15') l;
-- One field at a time.
SELECT v, usage_tracking._csv(v) AS field
  FROM unnest(ARRAY['=1+1', '+1', '-1', '@A1', E'\tx', E'\rx', 'a=b', 'x-1', '', NULL, '"=q"', E'=a"b']) v;
