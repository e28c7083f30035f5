-- Secrets never appear in an error: every way a request or an admin call
-- can fail around an installation secret is tried, and none of the error's
-- message, detail, hint or context holds the secret (nor its hex HMAC key
-- material in any form).  Secrets are passed as parameters, so they are
-- not in any statement text either.
\set VERBOSITY terse
SELECT usage_tracking.create_account('acc_rel64', 'pro');
SELECT usage_tracking.create_account('acc_rel64_other', 'pro');
SELECT usage_tracking.register_installation('64646464-6464-4464-8464-646464646464_646464646464',
                                            'acc_rel64', 'rel64-SECRET-current-0123456789') IS NOT NULL AS registered;
SELECT usage_tracking.rotate_installation_secret('64646464-6464-4464-8464-646464646464_646464646464',
                                                 'rel64-SECRET-rotated-0123456789',
                                                 '2025-11-03 11:00:00+00') IS NOT NULL AS rotated;
SELECT usage_tracking.register_installation('64646464-6464-4464-8464-646464646464_aaaaaaaaaaaa',
                                            'acc_rel64', 'rel64-SECRET-suspended-0123456789') IS NOT NULL AS registered;
SELECT usage_tracking.set_installation_status('64646464-6464-4464-8464-646464646464_aaaaaaaaaaaa', 'suspended');

-- Run sql with $1 = secret, $2 = body, $3 = signature; the error's SQLSTATE
-- and whether any of its fields holds any of the installation's secrets.
CREATE FUNCTION pg_temp.leak(sql text, secret text, body text DEFAULT NULL, sig text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; m text; d text; h text; c text;
  secrets text[] := ARRAY['rel64-SECRET-current-0123456789', 'rel64-SECRET-rotated-0123456789',
                          'rel64-SECRET-suspended-0123456789', secret];
BEGIN
  EXECUTE sql USING secret, body, sig;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                          h = PG_EXCEPTION_HINT, c = PG_EXCEPTION_CONTEXT;
  RETURN st || CASE WHEN EXISTS (SELECT 1 FROM unnest(secrets) s
                                  WHERE s IS NOT NULL
                                    AND (strpos(m, s) > 0 OR strpos(coalesce(d, ''), s) > 0
                                         OR strpos(coalesce(h, ''), s) > 0 OR strpos(coalesce(c, ''), s) > 0
                                         OR strpos(lower(m || coalesce(d, '') || coalesce(h, '') || coalesce(c, '')),
                                                   lower(s)) > 0))
                    THEN ' LEAKS A SECRET' ELSE ' no secret in the error' END;
END $$;

CREATE TEMP TABLE b64 AS
SELECT t.batch('64646464-6464-4464-8464-646464646464_646464646464',
               jsonb_build_array(t.event('s64_1', '2025-11-03 11:30+00', usr => 64))) AS body,
       t.batch('64646464-6464-4464-8464-646464646464_aaaaaaaaaaaa',
               jsonb_build_array(t.event('s64_2', '2025-11-03 11:30+00', usr => 64))) AS suspended_body;

SELECT label, pg_temp.leak(q, s, b, g) AS outcome
  FROM b64, LATERAL (VALUES
    ('ingest signed with a wrong secret',
     'SELECT usage_tracking.ingest($2, t.sig($2, $1, ''2025-11-03 12:00+00''), ''2025-11-03 12:00+00'')',
     'rel64-not-the-SECRET-0123456789', body, NULL),
    ('ingest signed with the secret rotated out, after its grace',
     'SELECT usage_tracking.ingest($2, t.sig($2, $1, ''2025-11-05 12:00+00''), ''2025-11-05 12:00+00'')',
     'rel64-SECRET-current-0123456789', body, NULL),
    ('ingest with a stale signature',
     'SELECT usage_tracking.ingest($2, t.sig($2, $1, ''2025-11-03 11:00+00''), ''2025-11-03 12:00+00'')',
     'rel64-SECRET-rotated-0123456789', body, NULL),
    ('ingest with the secret itself as the signature header',
     'SELECT usage_tracking.ingest($2, $1, ''2025-11-03 12:00+00'')',
     'rel64-SECRET-rotated-0123456789', body, NULL),
    ('ingest with the secret as the signature''s hex',
     'SELECT usage_tracking.ingest($2, $1 || '':1762171200'', ''2025-11-03 12:00+00'')',
     'rel64-SECRET-rotated-0123456789', body, NULL),
    ('ingest for a suspended installation',
     'SELECT usage_tracking.ingest($2, t.sig($2, $1, ''2025-11-03 12:00+00''), ''2025-11-03 12:00+00'')',
     'rel64-SECRET-suspended-0123456789', suspended_body, NULL),
    ('ingest for another account''s caller',
     'SELECT usage_tracking.ingest($2, t.sig($2, $1, ''2025-11-03 12:00+00''), ''2025-11-03 12:00+00'', ''acc_rel64_other'')',
     'rel64-SECRET-rotated-0123456789', body, NULL),
    ('register the installation for another account with its secret',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_646464646464'', ''acc_rel64_other'', $1)',
     'rel64-SECRET-rotated-0123456789', NULL, NULL),
    ('register the installation again with its secret',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_646464646464'', ''acc_rel64'', $1)',
     'rel64-SECRET-rotated-0123456789', NULL, NULL),
    ('register the installation again without a secret',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_646464646464'', ''acc_rel64'')',
     NULL, NULL, NULL),
    ('rotate an unknown installation with a secret',
     'SELECT usage_tracking.rotate_installation_secret(''64646464-6464-4464-8464-646464646464_cccccccccccc'', $1)',
     'rel64-SECRET-unknown-0123456789', NULL, NULL),
    ('rotate with a secret too short',
     'SELECT usage_tracking.rotate_installation_secret(''64646464-6464-4464-8464-646464646464_646464646464'', $1)',
     'rel64-SECRET', NULL, NULL),
    ('register with a secret too short',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_646464646464'', ''acc_rel64'', $1)',
     'rel64-SECRET', NULL, NULL),
    ('register with a secret too long',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_646464646464'', ''acc_rel64'', $1)',
     repeat('rel64-SECRET-long', 20), NULL, NULL),
    ('register a malformed install_id with a secret',
     'SELECT usage_tracking.register_installation(''not-an-install-id'', ''acc_rel64'', $1)',
     'rel64-SECRET-malformed-0123456789', NULL, NULL),
    ('register for an unknown account with a secret',
     'SELECT usage_tracking.register_installation(''64646464-6464-4464-8464-646464646464_bbbbbbbbbbbb'', ''acc_nobody'', $1)',
     'rel64-SECRET-unknown-0123456789', NULL, NULL),
    ('the HTTP ingest route with a wrong secret',
     'SELECT set_config(''request.headers'', json_build_object(''x-install-signature'', t.sig($2, $1, now()))::text, true),
             usage_api.ingest($2::json)',
     'rel64-not-the-SECRET-0123456789', body, NULL)
  ) AS v(label, q, s, b, g)
 ORDER BY label;

-- The detector itself: PostgreSQL's own CHECK violation on a plain INSERT
-- (a superuser's SQL, no API) echoes the failing row, secret included.  That
-- is why secrets are written only by register_installation(), which
-- validates them before any constraint can fail.
SELECT pg_temp.leak('INSERT INTO usage_tracking.installation_secrets (install_id, secret)
                     VALUES (''64646464-6464-4464-8464-646464646464_646464646464'', $1)',
                    'rel64-SECRET') AS direct_insert_outcome;

-- None of those calls stored anything, and the secrets are unchanged.
SELECT count(*) AS events FROM usage_tracking.events WHERE install_id LIKE '64646464-%';
SELECT install_id, secret = 'rel64-SECRET-rotated-0123456789' AS current_is_rotated,
       previous_secret = 'rel64-SECRET-current-0123456789' AS previous_kept
  FROM usage_tracking.installation_secrets WHERE install_id = '64646464-6464-4464-8464-646464646464_646464646464';
