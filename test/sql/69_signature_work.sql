-- Unknown and known installations cost the same work: every post not
-- signed with the current secret computes two MACs over its whole body (the
-- current and the previous secret, or a dummy key in place of a missing
-- installation or previous secret), so the time of a refusal does not tell
-- whether an installation exists; a post signed with the current secret
-- stops after one.  The
-- work is counted by the DEBUG1 line ingest writes after the check, not
-- timed.  A MAC made with the dummy key is never accepted.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_rel69', 'pro');
SELECT usage_tracking.register_installation('69696969-6969-4969-8969-69696969696a_69696969696a',
                                            'acc_rel69', 'rel69-secret-a-0123456789abcdef') IS NOT NULL AS registered;
CREATE TEMP TABLE b69 AS
SELECT t.batch('69696969-6969-4969-8969-69696969696a_69696969696a',
               jsonb_build_array(t.event('w69_1', '2025-11-03 11:00:00+00'))) AS known,
       t.batch('69696969-6969-4969-8969-69696969696b_69696969696b',
               jsonb_build_array(t.event('w69_1', '2025-11-03 11:00:00+00'))) AS unknown;
SET client_min_messages = debug1;
SELECT t.outcome(unknown, t.sig(unknown, 'rel69-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00'),
                 '2025-11-03 12:00:00+00') AS unknown_installation FROM b69;
SELECT t.outcome(known, t.sig(known, 'rel69-not-the-secret-0123456789', '2025-11-03 12:00:00+00'),
                 '2025-11-03 12:00:00+00') AS known_wrong_secret FROM b69;
SELECT t.outcome(known, t.sig(known, 'usage_tracking-no-such-installation-0123456789abcdef0123456789ab',
                              '2025-11-03 12:00:00+00'),
                 '2025-11-03 12:00:00+00') AS signed_with_the_dummy_key FROM b69;
SELECT t.outcome(known, t.sig(known, 'rel69-secret-a-0123456789abcdef', '2025-11-03 12:00:00+00'),
                 '2025-11-03 12:00:00+00') AS known_right_secret FROM b69;
RESET client_min_messages;
