-- Signatures: every forged, stale or misdirected request is refused with
-- its SQLSTATE and writes nothing.
\set VERBOSITY terse
\set inst '''550e8400-e29b-41d4-a716-446655440000_a3b4c5d6e7f8'''
\set secret '''core-secret-0123456789abcdef'''
\set now '''2025-11-03 12:00:00+00'''
\set ON_ERROR_STOP 0

SELECT t.batch(:inst, jsonb_build_array(t.event('evt_s1', '2025-11-03 11:40:00+00'))) AS body \gset
SELECT t.sig(:'body', :secret, :now) AS sig \gset
SELECT * FROM t.counts \gset before_

-- one byte of the body changed
SELECT t.outcome(replace(:'body', '"prompt_tokens": 100', '"prompt_tokens": 101'), :'sig', :now);
-- wrong secret
SELECT t.outcome(:'body', t.sig(:'body', 'not-the-secret-0123456789', :now), :now);
-- timestamp 301 s off, either way; 300 s is still fine (checked below)
SELECT t.outcome(:'body', t.sig(:'body', :secret, :now::timestamptz - interval '301 s'), :now);
SELECT t.outcome(:'body', t.sig(:'body', :secret, :now::timestamptz + interval '301 s'), :now);
-- the timestamp of the header changed without re-signing
SELECT t.outcome(:'body', split_part(:'sig', ':', 1) || ':' || (split_part(:'sig', ':', 2)::bigint + 1), :now);
-- unknown installation: the same error as a wrong secret
SELECT t.outcome(replace(:'body', 'a3b4c5d6e7f8', 'ffffffffffff'),
                             t.sig(replace(:'body', 'a3b4c5d6e7f8', 'ffffffffffff'), :secret, :now), :now);
-- missing and malformed signature headers
SELECT t.outcome(:'body', NULL, :now);
SELECT t.outcome(:'body', '', :now);
SELECT t.outcome(:'body', 'abc:123', :now);
SELECT t.outcome(:'body', split_part(:'sig', ':', 1), :now);
SELECT t.outcome(:'body', split_part(:'sig', ':', 1) || ':12x', :now);
SELECT t.outcome(:'body', 'zz' || substr(:'sig', 3), :now);

SELECT (SELECT row(c.*) FROM t.counts c) = row(:before_events::bigint, :before_daily::bigint, :before_seen::bigint) AS nothing_written;

-- 300 s off is inside the window
SELECT t.post(:'body', :secret, :now::timestamptz) IS NOT NULL AS fresh_ok;
SELECT t.outcome(:'body', t.sig(:'body', :secret, :now::timestamptz - interval '300 s'), :now) AS at_300s;

-- Rotation: the old secret verifies during the grace period only.
SELECT usage_tracking.rotate_installation_secret(:inst, 'rotated-secret-abcdef0123456789', :now) AS new_secret;
SELECT t.outcome(:'body', t.sig(:'body', :secret, :now::timestamptz + interval '1 hour'),
                             :now::timestamptz + interval '1 hour') AS old_secret_in_grace;
SELECT t.outcome(:'body', t.sig(:'body', 'rotated-secret-abcdef0123456789', :now::timestamptz + interval '1 hour'),
                             :now::timestamptz + interval '1 hour') AS new_secret_ok;
SELECT t.outcome(:'body', t.sig(:'body', :secret, :now::timestamptz + interval '25 hours'),
                             :now::timestamptz + interval '25 hours');
-- registering again never returns the secret in force: refused, with or
-- without a secret, and nothing changes (an admin cannot read a secret)
SELECT usage_tracking.register_installation(:inst, 'acc_core') AS refused;
SELECT usage_tracking.register_installation(:inst, 'acc_core', 'rotated-secret-abcdef0123456789', :now) AS refused;
SELECT usage_tracking.register_installation(:inst, 'acc_core', 'yet-another-secret-0123456789', :now) AS refused;
SELECT secret = 'rotated-secret-abcdef0123456789' AS still_rotated
  FROM usage_tracking.installation_secrets WHERE install_id = :inst;
-- rotating an unknown installation, or to a secret too short
SELECT usage_tracking.rotate_installation_secret('00000000-0000-4000-8000-000000000000_000000000000');
SELECT usage_tracking.rotate_installation_secret(:inst, 'short');
-- a generated secret is returned once: 64 hex, and it verifies
SELECT length(usage_tracking.rotate_installation_secret('6fa459ea-ee8a-4ca4-894e-db77e160355e_0123456789ab')) AS generated_length;
-- an installation cannot move to another account
SELECT usage_tracking.create_account('acc_other');
SELECT usage_tracking.register_installation(:inst, 'acc_other');
-- put the original secret back for later tests
SELECT usage_tracking.rotate_installation_secret(:inst, :secret, :now) IS NOT NULL AS restored;

-- Suspended installation: 403, nothing written
SELECT usage_tracking.set_installation_status(:inst, 'suspended');
SELECT t.outcome(b, t.sig(b, :secret, :now), :now) FROM t.batch(:inst, jsonb_build_array(t.event('evt_s2', '2025-11-03 11:40:00+00'))) b;
SELECT usage_tracking.set_installation_status(:inst, 'active');
-- A batch naming another account, or a caller from another account: 403
SELECT t.outcome(b, t.sig(b, :secret, :now), :now)
  FROM (SELECT jsonb_set(t.batch(:inst, jsonb_build_array(t.event('evt_s3', '2025-11-03 11:40:00+00')))::jsonb,
                         '{account_id}', '"acc_other"')::text AS b) s;
SELECT t.outcome(:'body', :'sig', :now, 'acc_other');
SELECT t.outcome(:'body', :'sig', :now, 'acc_core') AS own_account_ok;
SELECT count(*) AS evt_s2_s3 FROM usage_tracking.events WHERE event_id IN ('evt_s2', 'evt_s3');

