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
    IF install_id IS NULL
       OR install_id !~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}_[0-9a-f]{12}$' THEN
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
