-- sql/parts/10_core.sql — ingest, summaries, prices, accounts and installations.

-- Whole-request errors: SQLSTATE, error code of the JSON body, HTTP status.
CREATE TABLE @extschema@.error_codes (
    sqlstate    text PRIMARY KEY CHECK (sqlstate ~ '^[0-9A-Z]{5}$'),
    error       text NOT NULL UNIQUE,
    http_status integer NOT NULL CHECK (http_status BETWEEN 400 AND 599),
    description text NOT NULL
);
COMMENT ON TABLE @extschema@.error_codes IS
    'The SQLSTATEs the extension raises for whole-request errors, with the error code and HTTP status the HTTP fronts answer with.';
INSERT INTO @extschema@.error_codes VALUES
    ('UTB01', 'malformed_json',         400, 'The body is not valid JSON, or a field ingest reads holds an escape text cannot hold (\u0000, a lone surrogate).'),
    ('UTB02', 'invalid_batch',          400, 'The body is JSON but not a batch: install_id or events missing or of the wrong type, no events, a malformed install_id.'),
    ('UTA01', 'missing_signature',      401, 'X-Install-Signature is missing or not "<64 hex>:<unix seconds>".'),
    ('UTA02', 'invalid_signature',      401, 'The HMAC does not verify, or the installation is unknown (the two are not told apart).'),
    ('UTA03', 'stale_signature',        401, 'The signature timestamp is further than usage_tracking.signature_tolerance from the server clock.'),
    ('UTF01', 'installation_suspended', 403, 'The installation or its account is suspended.'),
    ('UTF02', 'account_mismatch',       403, 'The batch names another account, or the caller''s JWT is for another account.'),
    ('UTL01', 'body_too_large',         413, 'The body exceeds usage_tracking.max_body_bytes.'),
    ('UTL02', 'too_many_events',        413, 'The batch holds more than usage_tracking.max_batch_events events.'),
    ('UTR01', 'rate_limited',           429, 'The installation posts faster than its plan allows; retry after the given seconds.');

CREATE FUNCTION @extschema@.hmac_sha256_hex(key text, message text)
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_hmac_sha256_hex'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.hmac_sha256_hex(text, text) IS
    'Lowercase hex HMAC-SHA256 of message under key (the UTF-8 bytes of both), as PHP hash_hmac(''sha256'', ...) computes it.';

CREATE FUNCTION @extschema@.generate_secret()
RETURNS text
AS 'MODULE_PATHNAME', 'usage_tracking_generate_secret'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.generate_secret() IS
    '32 bytes from the server''s strong random source, as 64 hex characters.';

CREATE FUNCTION @extschema@.retention(kind text)
RETURNS interval
AS 'MODULE_PATHNAME', 'usage_tracking_retention'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.retention(text) IS
    'usage_tracking.event_retention (kind ''events''), daily_retention (''daily'') or secret_grace (''secret_grace'') as an interval.';

-- Accounts -------------------------------------------------------------------

CREATE FUNCTION @extschema@.create_account(account_id text, plan text DEFAULT 'free')
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF account_id IS NULL OR account_id !~ '^[A-Za-z0-9_.:-]{1,100}$' THEN
        RAISE EXCEPTION 'invalid account_id'
            USING ERRCODE = '22023',
                  HINT = 'Use 1 to 100 characters of [A-Za-z0-9_.:-].';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.plans p WHERE p.plan = create_account.plan) THEN
        RAISE EXCEPTION 'unknown plan "%"', plan USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.accounts AS a (account_id, plan)
    VALUES (create_account.account_id, create_account.plan)
    ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE SET plan = EXCLUDED.plan;
END
$$;
COMMENT ON FUNCTION @extschema@.create_account(text, text) IS
    'Create an account on a plan; called again, change its plan.';

-- Installations --------------------------------------------------------------

CREATE FUNCTION @extschema@.register_installation(install_id text, account_id text,
                                                  secret text DEFAULT NULL,
                                                  now timestamptz DEFAULT now())
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    owner   text;
    current text;
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

    SELECT i.account_id, s.secret INTO owner, current
      FROM @extschema@.installations i
      JOIN @extschema@.installation_secrets s USING (install_id)
     WHERE i.install_id = register_installation.install_id
       FOR UPDATE;

    IF NOT FOUND THEN
        INSERT INTO @extschema@.installations (install_id, account_id)
        VALUES (register_installation.install_id, register_installation.account_id);
        INSERT INTO @extschema@.installation_secrets (install_id, secret)
        VALUES (register_installation.install_id,
                coalesce(register_installation.secret, @extschema@.generate_secret()))
        RETURNING installation_secrets.secret INTO current;
        RETURN current;
    END IF;

    IF owner <> account_id THEN
        RAISE EXCEPTION 'installation is registered to another account'
            USING ERRCODE = '42501';
    END IF;
    IF secret IS NULL OR secret = current THEN
        RETURN current;
    END IF;
    -- Rotation: the old secret keeps verifying for usage_tracking.secret_grace.
    UPDATE @extschema@.installation_secrets s
       SET previous_secret = s.secret,
           previous_expires_at = register_installation.now + @extschema@.retention('secret_grace'),
           secret = register_installation.secret,
           rotated_at = register_installation.now
     WHERE s.install_id = register_installation.install_id;
    RETURN secret;
END
$$;
COMMENT ON FUNCTION @extschema@.register_installation(text, text, text, timestamptz) IS
    'Register an installation of an account and return the secret in force; a NULL secret generates one for a new installation. A different secret rotates: the old one keeps verifying for usage_tracking.secret_grace.';

CREATE FUNCTION @extschema@.set_installation_status(install_id text, status text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF status NOT IN ('active', 'suspended') THEN
        RAISE EXCEPTION 'status must be active or suspended' USING ERRCODE = '22023';
    END IF;
    UPDATE @extschema@.installations i SET status = set_installation_status.status
     WHERE i.install_id = set_installation_status.install_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.set_installation_status(text, text) IS
    'Suspend or reactivate an installation; a suspended installation''s batches are refused (403).';

-- Prices ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.set_model_price(model text,
                                            prompt_usd_per_mtok numeric,
                                            completion_usd_per_mtok numeric,
                                            cached_prompt_usd_per_mtok numeric DEFAULT NULL,
                                            effective_from timestamptz DEFAULT '-infinity')
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO @extschema@.model_prices AS p
        (model, effective_from, prompt_usd_per_mtok, completion_usd_per_mtok, cached_prompt_usd_per_mtok)
    VALUES (model, effective_from, prompt_usd_per_mtok, completion_usd_per_mtok, cached_prompt_usd_per_mtok)
    ON CONFLICT (model, effective_from) DO UPDATE SET
        prompt_usd_per_mtok = EXCLUDED.prompt_usd_per_mtok,
        completion_usd_per_mtok = EXCLUDED.completion_usd_per_mtok,
        cached_prompt_usd_per_mtok = EXCLUDED.cached_prompt_usd_per_mtok;
$$;
COMMENT ON FUNCTION @extschema@.set_model_price(text, numeric, numeric, numeric, timestamptz) IS
    'Set the price of a model (''*'' for the fallback) in USD per 1 M prompt, completion and cached prompt tokens, in force from effective_from. Existing summaries keep their costs; rebuild them with reconcile().';

CREATE FUNCTION @extschema@.prices_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'usage_tracking_prices_changed'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.prices_changed() IS
    'Trigger: drop every backend''s cached copy of model_prices.';

CREATE TRIGGER model_prices_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.model_prices
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.prices_changed();

-- Summaries ------------------------------------------------------------------

CREATE FUNCTION @extschema@.events_summarize()
RETURNS trigger
AS 'MODULE_PATHNAME', 'usage_tracking_events_summarize'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.events_summarize() IS
    'Trigger: add the rows an INSERT put into usage_tracking.events to usage_tracking.daily, priced, keys in a fixed order.';

CREATE TRIGGER events_summarize
    AFTER INSERT ON @extschema@.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.events_summarize();

-- Ingest ---------------------------------------------------------------------

CREATE FUNCTION @extschema@.ingest(body text, signature text,
                                   now timestamptz DEFAULT now(),
                                   caller_account text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_tracking_ingest'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.ingest(text, text, timestamptz, text) IS
    'Verify and store a site''s signed batch exactly once: body is the raw request body, signature the X-Install-Signature value, caller_account the account of the caller''s JWT (NULL: not checked). Returns {success, received, duplicates, event_ids, rejected, quota}; whole-request errors raise the SQLSTATEs of usage_tracking.error_codes.';

-- Views ----------------------------------------------------------------------

CREATE VIEW @extschema@.usage_events WITH (security_invoker = true) AS
SELECT e.install_id, e.event_id, e.wp_user_id_hash, e.source, e.model,
       e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens,
       e.prompt_tokens::bigint + e.completion_tokens AS total_tokens,
       e.request_id, e.context, e.created_at, e.received_at
  FROM @extschema@.events e
 WHERE e.voided_at IS NULL;
COMMENT ON VIEW @extschema@.usage_events IS 'Raw usage events as the sites sent them, without voided events.';

CREATE VIEW @extschema@.daily_usage WITH (security_invoker = true) AS
SELECT i.account_id, d.install_id, d.usage_date, d.wp_user_id_hash, d.source, d.model,
       d.total_requests, d.prompt_tokens, d.completion_tokens, d.cached_prompt_tokens,
       d.prompt_tokens + d.completion_tokens AS total_tokens,
       d.estimated_cost_usd, d.unpriced_requests
  FROM @extschema@.daily d
  JOIN @extschema@.installations i USING (install_id);
COMMENT ON VIEW @extschema@.daily_usage IS
    'Daily usage per account, installation, UTC day, user hash, source and model, with estimated cost in USD; unpriced_requests counts requests no price applied to (not in estimated_cost_usd).';
