-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit


-- == Security hardening ==

-- Registering never hands out an existing secret: an existing install_id
-- is refused (23505), and rotating is its own call that returns the new
-- secret once.
CREATE OR REPLACE FUNCTION @extschema@.register_installation(install_id text, account_id text,
                                                             secret text DEFAULT NULL,
                                                             now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner   text;
    created text;
BEGIN
    -- The install_id shape is src/batch.c's rule, asked through valid_shape().
    IF install_id IS NULL OR NOT @extschema@.valid_shape('i', install_id) THEN
        RAISE EXCEPTION 'invalid install_id'
            USING ERRCODE = '22023',
                  HINT = 'An install_id is {uuid-v4}_{12 lowercase hex}.';
    END IF;
    IF secret IS NOT NULL AND length(secret) NOT BETWEEN 16 AND 200 THEN
        RAISE EXCEPTION 'a secret must be 16 to 200 characters' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = register_installation.account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id
            USING ERRCODE = '22023', HINT = 'Create it with usage_tracking.create_account().';
    END IF;

    SELECT i.account_id INTO owner
      FROM @extschema@.installations i
     WHERE i.install_id = register_installation.install_id
       FOR UPDATE;
    IF FOUND THEN
        IF owner <> account_id THEN
            RAISE EXCEPTION 'installation is registered to another account'
                USING ERRCODE = '42501';
        END IF;
        RAISE EXCEPTION 'installation is already registered'
            USING ERRCODE = '23505',
                  DETAIL = 'Its secret is never returned again.',
                  HINT = 'Give the site a new secret with usage_tracking.rotate_installation_secret().';
    END IF;

    INSERT INTO @extschema@.installations (install_id, account_id)
    VALUES (register_installation.install_id, register_installation.account_id);
    INSERT INTO @extschema@.installation_secrets (install_id, secret)
    VALUES (register_installation.install_id,
            coalesce(register_installation.secret, @extschema@.generate_secret()))
    RETURNING installation_secrets.secret INTO created;
    RETURN created;
EXCEPTION
    WHEN unique_violation THEN
        -- A concurrent registration of the same id won the race.
        RAISE EXCEPTION 'installation is already registered'
            USING ERRCODE = '23505',
                  DETAIL = 'Its secret is never returned again.',
                  HINT = 'Give the site a new secret with usage_tracking.rotate_installation_secret().';
END
$$;
COMMENT ON FUNCTION @extschema@.register_installation(text, text, text, timestamptz) IS
    'Register a new installation of an account and return its secret, this once; a NULL secret generates one. An install_id already registered is refused (23505; 42501 when another account owns it): rotate with rotate_installation_secret().';

CREATE FUNCTION @extschema@.rotate_installation_secret(install_id text,
                                                       secret text DEFAULT NULL,
                                                       now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fresh text := coalesce(rotate_installation_secret.secret, @extschema@.generate_secret());
BEGIN
    IF length(fresh) NOT BETWEEN 16 AND 200 THEN
        RAISE EXCEPTION 'a secret must be 16 to 200 characters' USING ERRCODE = '22023';
    END IF;
    -- The current secret becomes the previous one whatever the new one is,
    -- so the answer never tells whether a given secret was the current one.
    UPDATE @extschema@.installation_secrets s
       SET previous_secret = s.secret,
           previous_expires_at = rotate_installation_secret.now + @extschema@.retention('secret_grace'),
           secret = fresh,
           rotated_at = rotate_installation_secret.now
     WHERE s.install_id = rotate_installation_secret.install_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;
    RETURN fresh;
END
$$;
COMMENT ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz) IS
    'Give an installation a new secret (a NULL secret generates one) and return it, this once; the old secret keeps verifying for usage_tracking.secret_grace.';
REVOKE ALL ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.rotate_installation_secret(text, text, timestamptz)
    TO usage_tracking_admin;

-- CSV formula injection: a field a spreadsheet would read as a formula
-- (leading =, +, -, @, tab or carriage return) is written as text, the way
-- OWASP recommends: a single quote first, and the field quoted.  Every
-- export (export_csv, usage_api.export, the provider's all-tenant export)
-- writes its text fields through this one function.
CREATE OR REPLACE FUNCTION @extschema@._csv(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN v IS NULL THEN ''
            WHEN v ~ '^[=+@\t\r-]' THEN '"''' || pg_catalog.replace(v, '"', '""') || '"'
            WHEN v = '' OR v ~ '[",\r\n]' THEN '"' || pg_catalog.replace(v, '"', '""') || '"'
            ELSE v END
$$;
COMMENT ON FUNCTION @extschema@._csv(text) IS
    'Internal: a value as one RFC 4180 CSV field (NULL as an empty field); a value starting with =, +, -, @, tab or carriage return is prefixed with a single quote and quoted, so no spreadsheet runs it as a formula.';
COMMENT ON FUNCTION @extschema@.export_csv(text, text, date, date) IS
    'CSV export, one RFC 4180 record per row, the header first: kind ''daily'' (the daily_usage columns) or ''events'' (the usage_events columns, times in UTC), of one installation or every one the caller may see, for the UTC days date_from to date_to (both included). A text field starting with =, +, -, @, tab or carriage return is written with a leading single quote, quoted (CSV formula injection). Streams: use it as COPY (SELECT * FROM usage_tracking.export_csv(...)) TO STDOUT.';

-- Erasure stops replays.  forget_user() and forget_installation() leave a
-- tombstone: ingest then refuses every event of the erased user (or
-- installation) created before the erasure, so a captured request posted
-- again inside its signature window, or events the plugin still had queued,
-- store nothing and count nothing.  Events created afterwards are stored as
-- usual.  A tombstone holds SHA-256 digests only, never an install_id or a
-- user hash, and an entry is dropped once it is older than
-- usage_tracking.event_retention (ingest refuses such old events anyway).
CREATE TABLE @extschema@.erasure_tombstones (
    install_key             bytea PRIMARY KEY CHECK (pg_catalog.length(install_key) = 32),
    installation_erased_at  timestamptz,
    user_keys               bytea[] NOT NULL DEFAULT '{}',
    user_erased_at          timestamptz[] NOT NULL DEFAULT '{}',
    CHECK (pg_catalog.cardinality(user_keys) = pg_catalog.cardinality(user_erased_at))
);
COMMENT ON TABLE @extschema@.erasure_tombstones IS
    'Internal: what forget_user() and forget_installation() erased, as digests, so that ingest refuses the erased events when they are posted again: install_key is sha256(install_id), user_keys sha256(install_id || '':'' || wp_user_id_hash), each with the time of its erasure. No role but the extension owner reads it.';
REVOKE ALL ON @extschema@.erasure_tombstones FROM PUBLIC;

CREATE FUNCTION @extschema@._tombstone(install_id text, wp_user_id_hash text, now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ikey    bytea := pg_catalog.sha256(pg_catalog.convert_to(_tombstone.install_id, 'UTF8'));
    ukey    bytea := CASE WHEN _tombstone.wp_user_id_hash IS NOT NULL THEN
                     pg_catalog.sha256(pg_catalog.convert_to(_tombstone.install_id || ':' || _tombstone.wp_user_id_hash, 'UTF8'))
                     END;
    horizon timestamptz := _tombstone.now - @extschema@.retention('events');
BEGIN
    INSERT INTO @extschema@.erasure_tombstones AS t
           (install_key, installation_erased_at, user_keys, user_erased_at)
    VALUES (ikey,
            CASE WHEN ukey IS NULL THEN _tombstone.now END,
            CASE WHEN ukey IS NULL THEN '{}'::bytea[] ELSE ARRAY[ukey] END,
            CASE WHEN ukey IS NULL THEN '{}'::timestamptz[] ELSE ARRAY[_tombstone.now] END)
    ON CONFLICT (install_key) DO UPDATE
       SET installation_erased_at = CASE WHEN ukey IS NULL THEN _tombstone.now
                                         WHEN t.installation_erased_at > horizon THEN t.installation_erased_at END,
           (user_keys, user_erased_at) =
           (SELECT coalesce(pg_catalog.array_agg(u.k ORDER BY u.n), '{}') || coalesce(ARRAY[ukey], '{}'),
                   coalesce(pg_catalog.array_agg(u.e ORDER BY u.n), '{}')
                   || CASE WHEN ukey IS NULL THEN '{}'::timestamptz[] ELSE ARRAY[_tombstone.now] END
              FROM ROWS FROM (pg_catalog.unnest(t.user_keys), pg_catalog.unnest(t.user_erased_at))
                   WITH ORDINALITY AS u(k, e, n)
             WHERE u.k IS DISTINCT FROM ukey AND u.e > horizon);
    -- Tombstones past the horizon protect nothing any more.
    DELETE FROM @extschema@.erasure_tombstones t
     WHERE t.install_key <> ikey
       AND coalesce(t.installation_erased_at, '-infinity') <= horizon
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(t.user_erased_at) e WHERE e > horizon);
END
$$;
COMMENT ON FUNCTION @extschema@._tombstone(text, text, timestamptz) IS
    'Internal: record the erasure of one user of an installation (or, with a NULL user, of the installation) at now in erasure_tombstones, and drop tombstones older than usage_tracking.event_retention.';
REVOKE ALL ON FUNCTION @extschema@._tombstone(text, text, timestamptz) FROM PUBLIC;

DROP FUNCTION @extschema@.forget_user(text, text);
CREATE FUNCTION @extschema@.forget_user(install_id text, wp_user_id_hash text,
                                        now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acct     text;
    n_events bigint;
    n_daily  bigint;
    n_voids  bigint;
    counts   jsonb;
BEGIN
    IF install_id IS NULL OR wp_user_id_hash IS NULL THEN
        RAISE EXCEPTION 'install_id and wp_user_id_hash are required' USING ERRCODE = '22004';
    END IF;
    -- Batches of this installation wait until the erasure commits.
    SELECT i.account_id INTO acct FROM @extschema@.installations i
     WHERE i.install_id = forget_user.install_id FOR NO KEY UPDATE;

    DELETE FROM @extschema@.events e
     WHERE e.install_id = forget_user.install_id AND e.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    -- A retry of one of the installation's batches is then checked event by
    -- event again (not answered from its first event's batch_digest); the
    -- tombstone makes the erased user's events in it refused.
    UPDATE @extschema@.events e SET batch_digest = NULL
     WHERE e.install_id = forget_user.install_id AND e.batch_digest IS NOT NULL;
    DELETE FROM @extschema@.daily d
     WHERE d.install_id = forget_user.install_id AND d.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_daily = ROW_COUNT;
    DELETE FROM @extschema@.event_voids v
     WHERE v.install_id = forget_user.install_id AND v.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_voids = ROW_COUNT;
    PERFORM @extschema@._tombstone(forget_user.install_id, forget_user.wp_user_id_hash, forget_user.now);

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('user', install_id, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_user(text, text, timestamptz) IS
    'Erase every raw event, daily summary row and void record of one user hash of one installation; returns the counts and records them in erasure_log (without the user hash). Events of that user created before now are refused if they are posted again (a tombstone, kept for usage_tracking.event_retention).';
REVOKE ALL ON FUNCTION @extschema@.forget_user(text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.forget_user(text, text, timestamptz) TO usage_tracking_admin;

DROP FUNCTION @extschema@.forget_installation(text);
CREATE FUNCTION @extschema@.forget_installation(install_id text, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acct     text;
    n_events bigint;
    n_daily  bigint;
    n_voids  bigint;
    n_inst   bigint;
    counts   jsonb;
BEGIN
    IF install_id IS NULL THEN
        RAISE EXCEPTION 'install_id is required' USING ERRCODE = '22004';
    END IF;
    SELECT i.account_id INTO acct FROM @extschema@.installations i
     WHERE i.install_id = forget_installation.install_id FOR UPDATE;

    DELETE FROM @extschema@.events e WHERE e.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_events = ROW_COUNT;
    DELETE FROM @extschema@.daily d WHERE d.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_daily = ROW_COUNT;
    DELETE FROM @extschema@.event_voids v WHERE v.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_voids = ROW_COUNT;
    -- The registration and its secrets (and every row that references it
    -- ON DELETE CASCADE).
    DELETE FROM @extschema@.installations i WHERE i.install_id = forget_installation.install_id;
    GET DIAGNOSTICS n_inst = ROW_COUNT;
    PERFORM @extschema@._tombstone(forget_installation.install_id, NULL, forget_installation.now);

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids,
                                 'installations', n_inst);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('installation', NULL, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_installation(text, timestamptz) IS
    'Erase an installation everywhere: its raw events, daily summaries, void records, registration and secrets; returns the counts and records them in erasure_log with the account only. Should the install_id be registered again, its events created before now are refused (a tombstone, kept for usage_tracking.event_retention).';
REVOKE ALL ON FUNCTION @extschema@.forget_installation(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.forget_installation(text, timestamptz) TO usage_tracking_admin;

-- Schema squatting: a role that created the schema usage_tracking (or
-- usage_api) before CREATE EXTENSION would own the schema the extension's
-- objects live in.  The extension refuses a schema owned by anyone but the
-- role that installs it or a superuser; the install or update then fails
-- and leaves nothing behind.
DO $$
DECLARE
    squatted text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%I (owned by %I)', n.nspname, r.rolname), ', ')
      INTO squatted
      FROM pg_catalog.pg_namespace n
      JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
     WHERE n.nspname IN ('usage_tracking', 'usage_api')
       AND NOT r.rolsuper
       AND n.nspowner <> (SELECT e.extowner FROM pg_catalog.pg_extension e
                           WHERE e.extname = 'usage_tracking');
    IF squatted IS NOT NULL THEN
        RAISE EXCEPTION 'schema % belongs to a role that did not install usage_tracking', squatted
            USING ERRCODE = '42501',
                  HINT = 'Drop the schema, or give it to the installing role (ALTER SCHEMA ... OWNER TO), and try again.';
    END IF;
END
$$;
