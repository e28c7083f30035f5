-- sql/parts/00_schema.sql — tables of the usage_tracking extension.
\echo Use "CREATE EXTENSION usage_tracking" to load this file. \quit

-- Shape checks of the wire contract, in C (src/checks.c): e event_id,
-- u wp_user_id_hash, s source, m model, i install_id.
CREATE FUNCTION @extschema@.valid_shape(kind "char", value text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'usage_tracking_valid_shape'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.valid_shape("char", text) IS
    'Does value have the shape the wire contract requires of kind e (event_id), u (wp_user_id_hash), s (source), m (model) or i (install_id)?';

-- Plans: quotas, thresholds, rate limits and abuse thresholds.
CREATE TABLE @extschema@.plans (
    plan                text PRIMARY KEY
                        CHECK (plan ~ '^[a-z0-9_-]{1,40}$'),
    monthly_requests    bigint CHECK (monthly_requests IS NULL OR monthly_requests >= 0),
    warning_pct         integer NOT NULL DEFAULT 75,
    critical_pct        integer NOT NULL DEFAULT 90,
    block_pct           integer NOT NULL DEFAULT 100,
    rate_requests_5m    integer NOT NULL DEFAULT 100 CHECK (rate_requests_5m > 0),
    rate_tokens_5m      bigint  NOT NULL DEFAULT 50000 CHECK (rate_tokens_5m > 0),
    abuse_requests_1h   integer NOT NULL DEFAULT 200 CHECK (abuse_requests_1h > 0),
    abuse_tokens_1h     bigint  NOT NULL DEFAULT 100000 CHECK (abuse_tokens_1h > 0),
    CHECK (0 < warning_pct AND warning_pct <= critical_pct
           AND critical_pct <= block_pct AND block_pct <= 1000)
);
COMMENT ON TABLE @extschema@.plans IS
    'Plans: monthly request quota (NULL = unlimited), alert thresholds in percent, rate limits per 5 minutes and abuse thresholds per hour.';

INSERT INTO @extschema@.plans (plan, monthly_requests) VALUES
    ('free', 50), ('pro', 10000), ('agency', 100000), ('credits', NULL);

-- Accounts (tenants).
CREATE TABLE @extschema@.accounts (
    account_id  text PRIMARY KEY CHECK (account_id ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    plan        text NOT NULL REFERENCES @extschema@.plans ON UPDATE CASCADE,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE @extschema@.accounts IS 'Accounts (tenants), each on one plan.';

-- Installations: one WordPress site running the plugin.
CREATE TABLE @extschema@.installations (
    install_id      text COLLATE "C" PRIMARY KEY CHECK (@extschema@.valid_shape('i', install_id)),
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    first_seen_at   timestamptz,
    last_seen_at    timestamptz,
    plugin_version  text CHECK (length(plugin_version) <= 50),
    site_url_hash   text CHECK (site_url_hash ~ '^[0-9a-f]{64}$'),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX installations_account_idx ON @extschema@.installations (account_id);
COMMENT ON TABLE @extschema@.installations IS
    'Installations of the plugin (one per WordPress site); secrets live in installation_secrets.';

-- Secrets: readable by the extension owner only (no grants at all).
CREATE TABLE @extschema@.installation_secrets (
    install_id          text COLLATE "C" PRIMARY KEY REFERENCES @extschema@.installations ON DELETE CASCADE,
    secret              text NOT NULL CHECK (length(secret) BETWEEN 16 AND 200),
    previous_secret     text CHECK (length(previous_secret) BETWEEN 16 AND 200),
    previous_expires_at timestamptz,
    rotated_at          timestamptz
);
REVOKE ALL ON @extschema@.installation_secrets FROM PUBLIC;
COMMENT ON TABLE @extschema@.installation_secrets IS
    'HMAC secrets of installations, the previous one valid until previous_expires_at during a rotation. No role but the extension owner may read it.';

-- Model prices, USD per 1 M tokens; '*' is the fallback row.
CREATE TABLE @extschema@.model_prices (
    model                       text NOT NULL
                                CHECK (model = '*' OR model ~ '^[A-Za-z0-9._:/@-]{1,100}$'),
    effective_from              timestamptz NOT NULL DEFAULT '-infinity',
    prompt_usd_per_mtok         numeric NOT NULL CHECK (prompt_usd_per_mtok >= 0),
    completion_usd_per_mtok     numeric NOT NULL CHECK (completion_usd_per_mtok >= 0),
    cached_prompt_usd_per_mtok  numeric CHECK (cached_prompt_usd_per_mtok >= 0),
    PRIMARY KEY (model, effective_from)
);
COMMENT ON TABLE @extschema@.model_prices IS
    'Prices per model in USD per 1 M tokens; an event is priced at the row in force at its created_at; model ''*'' is the fallback. NULL cached price: cached prompt tokens cost the prompt price.';

-- Published list prices (USD per 1 M tokens) of models the plugin uses.
INSERT INTO @extschema@.model_prices
    (model, prompt_usd_per_mtok, completion_usd_per_mtok, cached_prompt_usd_per_mtok) VALUES
    ('gpt-4o-mini',  0.15,  0.60, 0.075),
    ('gpt-4o',       2.50, 10.00, 1.25),
    ('gpt-4.1-mini', 0.40,  1.60, 0.10),
    ('gpt-4.1-nano', 0.10,  0.40, 0.025);

-- Identifiers are ASCII and compared byte-wise: their columns use the "C"
-- collation, which makes every index comparison a memcmp.

-- Raw events, partitioned by day of created_at so that expiry drops partitions.
-- Uniqueness includes the partition key: an event's created_at is part of the
-- record the site stores and resends unchanged.
CREATE TABLE @extschema@.events (
    install_id            text COLLATE "C" NOT NULL,
    event_id              text COLLATE "C" NOT NULL CHECK (@extschema@.valid_shape('e', event_id)),
    wp_user_id_hash       text COLLATE "C" NOT NULL CHECK (@extschema@.valid_shape('u', wp_user_id_hash)),
    source                text COLLATE "C" NOT NULL CHECK (@extschema@.valid_shape('s', source)),
    model                 text COLLATE "C" NOT NULL CHECK (@extschema@.valid_shape('m', model)),
    prompt_tokens         integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens     integer NOT NULL CHECK (completion_tokens >= 0),
    cached_prompt_tokens  integer NOT NULL DEFAULT 0
                          CHECK (cached_prompt_tokens >= 0 AND cached_prompt_tokens <= prompt_tokens),
    request_id            text CHECK (length(request_id) <= 50),
    context               jsonb CHECK (jsonb_typeof(context) = 'object'),
    created_at            timestamptz NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    voided_at             timestamptz,
    batch_digest          bytea,
    PRIMARY KEY (install_id, event_id, created_at)
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE @extschema@.events IS
    'Raw usage events, one partition per UTC day of created_at; idempotent on (install_id, event_id).';

COMMENT ON COLUMN @extschema@.events.voided_at IS
    'When void_event() voided the event: it no longer counts in daily, usage_events, list_events or export_csv, and a resend stays a duplicate.';

COMMENT ON COLUMN @extschema@.events.batch_digest IS
    'On the first event of each batch ingest stored: the SHA-256 of the batch''s valid event keys in order (each event_id, a NUL byte, created_at as microseconds since 2000-01-01 UTC in 8 bytes big-endian). A retry with the same keys is then known to be all duplicates from that one row. NULL on every other event.';

CREATE TABLE @extschema@.events_default PARTITION OF @extschema@.events DEFAULT;

-- Daily summaries, partitioned by month of usage_date.
CREATE TABLE @extschema@.daily (
    install_id            text COLLATE "C" NOT NULL,
    usage_date            date NOT NULL,
    wp_user_id_hash       text COLLATE "C" NOT NULL,
    source                text COLLATE "C" NOT NULL,
    model                 text COLLATE "C" NOT NULL,
    total_requests        bigint NOT NULL DEFAULT 0,
    prompt_tokens         bigint NOT NULL DEFAULT 0,
    completion_tokens     bigint NOT NULL DEFAULT 0,
    cached_prompt_tokens  bigint NOT NULL DEFAULT 0,
    estimated_cost_usd    numeric,
    unpriced_requests     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (install_id, usage_date, wp_user_id_hash, source, model)
) PARTITION BY RANGE (usage_date);
COMMENT ON TABLE @extschema@.daily IS
    'Daily summaries per (installation, UTC day, user hash, source, model), kept current by the events trigger; one partition per month.';

CREATE TABLE @extschema@.daily_default PARTITION OF @extschema@.daily DEFAULT;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.plans', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.model_prices', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.installations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.installation_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.events_default', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.daily_default', '');
-- sql/parts/05_roles.sql — the roles the extension's privileges are granted to.
-- Roles are cluster-wide: create each one only when absent, NOLOGIN; log-in
-- roles (the gateway's, PostgREST's authenticator) are granted membership.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['usage_tracking_ingest', 'usage_tracking_reader',
                             'usage_tracking_analyst', 'usage_tracking_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA @extschema@ TO usage_tracking_ingest, usage_tracking_reader,
                                     usage_tracking_analyst, usage_tracking_admin;
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
-- sql/parts/15_partitions.sql — partitions of the raw events and daily summaries.

CREATE FUNCTION @extschema@.ensure_partitions(from_ts timestamptz, to_ts timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       date;
    m       date;
    created integer := 0;
    part    text;
BEGIN
    -- One events partition per UTC day.
    FOR d IN SELECT generate_series((from_ts AT TIME ZONE 'UTC')::date,
                                    (to_ts AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        part := 'events_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(format('@extschema@.%I', part)) IS NOT NULL;
        PERFORM @extschema@._attach_partition('events', part,
            format('%L', (d::timestamp AT TIME ZONE 'UTC')),
            format('%L', ((d + 1)::timestamp AT TIME ZONE 'UTC')), 'created_at');
        created := created + 1;
    END LOOP;
    -- One daily partition per month.
    FOR m IN SELECT generate_series(date_trunc('month', from_ts AT TIME ZONE 'UTC'),
                                    date_trunc('month', to_ts AT TIME ZONE 'UTC'), interval '1 month')::date LOOP
        part := 'daily_p' || to_char(m, 'YYYYMM');
        CONTINUE WHEN to_regclass(format('@extschema@.%I', part)) IS NOT NULL;
        PERFORM @extschema@._attach_partition('daily', part,
            format('%L', m), format('%L', (m + interval '1 month')::date), 'usage_date');
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION @extschema@.ensure_partitions(timestamptz, timestamptz) IS
    'Create the events partitions (one per UTC day) and daily partitions (one per month) covering from_ts to to_ts; returns how many it created.';

-- Create parent_part for [lo, hi), moving any rows the default partition
-- holds for that range into it.
CREATE FUNCTION @extschema@._attach_partition(parent text, part text, lo text, hi text, keycol text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE TABLE @extschema@.%I (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part, parent);
    EXECUTE format('WITH moved AS (DELETE FROM @extschema@.%I WHERE %I >= %s AND %I < %s RETURNING *) '
                   'INSERT INTO @extschema@.%I SELECT * FROM moved',
                   parent || '_default', keycol, lo, keycol, hi, part);
    EXECUTE format('ALTER TABLE @extschema@.%I ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%s) TO (%s)',
                   parent, part, lo, hi);
END
$$;
COMMENT ON FUNCTION @extschema@._attach_partition(text, text, text, text, text) IS
    'Internal: create and attach one partition, moving its rows out of the default partition.';

-- The partitions of parent with their bounds as ISO text (NULL for the
-- default partition), read from the catalog rather than from partition
-- names, in order.
CREATE FUNCTION @extschema@._partitions(parent regclass)
RETURNS TABLE (part regclass, lo text, hi text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
AS $$
    SELECT c.oid::regclass,
           (regexp_match(b.bound, 'FROM \(''([^'']*)''\)'))[1],
           (regexp_match(b.bound, 'TO \(''([^'']*)''\)'))[1]
      FROM pg_catalog.pg_inherits i
      JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
     CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound) b
     WHERE i.inhparent = parent
     ORDER BY 3 NULLS FIRST;
$$;
COMMENT ON FUNCTION @extschema@._partitions(regclass) IS
    'Internal: the partitions of a range-partitioned table with their lower and upper bounds as text; NULL bounds for the default partition.';
-- sql/parts/20_read.sql — the read side: summaries, raw event pages, the
-- installations listing, CSV export and the views BI tools read.
--
-- Every function here is SECURITY INVOKER: it reads as its caller, so the
-- row-level security of sql/parts/25_rls.sql decides which rows a reader sees.

-- Summaries ------------------------------------------------------------------

-- The keys of a group_by list, validated.
CREATE FUNCTION @extschema@._summary_keys(group_by text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    keys text[];
    k    text;
BEGIN
    IF group_by IS NULL THEN
        RETURN ARRAY['day'];
    END IF;
    keys := pg_catalog.string_to_array(pg_catalog.lower(group_by), ',');
    IF keys IS NULL OR pg_catalog.cardinality(keys) = 0 THEN
        keys := ARRAY[''];
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(keys) LOOP
        k := pg_catalog.btrim(keys[i]);
        IF k NOT IN ('day', 'install', 'user', 'source', 'model') THEN
            RAISE EXCEPTION 'invalid group_by key "%"', k
                USING ERRCODE = '22023',
                      HINT = 'group_by is a comma list of day, install, user, source and model.';
        END IF;
        keys[i] := k;
    END LOOP;
    RETURN keys;
END
$$;
COMMENT ON FUNCTION @extschema@._summary_keys(text) IS
    'Internal: the validated keys of a usage_summary group_by list (22023 on an unknown key).';

-- True, or 22023 when the range is inverted.
CREATE FUNCTION @extschema@._check_range(date_from anyelement, date_to anyelement)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF date_from > date_to THEN
        RAISE EXCEPTION 'date_from % is after date_to %', date_from, date_to
            USING ERRCODE = '22023';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@._check_range(anyelement, anyelement) IS
    'Internal: true, or SQLSTATE 22023 when date_from is after date_to.';

-- A plain SQL function the planner inlines: the caller's plan is the plan of
-- the query below, on the daily table only (never raw events), with the
-- partitions outside the range pruned.
CREATE FUNCTION @extschema@.usage_summary(install_id text DEFAULT NULL,
                                          date_from date DEFAULT NULL,
                                          date_to date DEFAULT NULL,
                                          group_by text DEFAULT 'day')
RETURNS TABLE (usage_date date, install_id text, wp_user_id_hash text, source text, model text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               cached_prompt_tokens bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH g AS MATERIALIZED (
    SELECT 'day' = ANY (k) AS by_day, 'install' = ANY (k) AS by_install, 'user' = ANY (k) AS by_user,
           'source' = ANY (k) AS by_source, 'model' = ANY (k) AS by_model
      FROM (SELECT @extschema@._summary_keys(usage_summary.group_by) AS k) s
     WHERE @extschema@._check_range(usage_summary.date_from, usage_summary.date_to)
)
SELECT CASE WHEN g.by_day THEN d.usage_date END,
       CASE WHEN g.by_install THEN d.install_id END,
       CASE WHEN g.by_user THEN d.wp_user_id_hash END,
       CASE WHEN g.by_source THEN d.source END,
       CASE WHEN g.by_model THEN d.model END,
       pg_catalog.sum(d.total_requests)::bigint,
       pg_catalog.sum(d.prompt_tokens)::bigint,
       pg_catalog.sum(d.completion_tokens)::bigint,
       pg_catalog.sum(d.cached_prompt_tokens)::bigint,
       pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint,
       pg_catalog.sum(d.estimated_cost_usd)
  FROM g,
       (SELECT x.* FROM @extschema@.daily x
         WHERE x.install_id = usage_summary.install_id
           AND x.usage_date >= coalesce(usage_summary.date_from, '-infinity'::date)
           AND x.usage_date <= coalesce(usage_summary.date_to, 'infinity'::date)
        UNION ALL
        SELECT x.* FROM @extschema@.daily x
         WHERE usage_summary.install_id IS NULL
           AND x.install_id IN (SELECT i.install_id FROM @extschema@.installations i)
           AND x.usage_date >= coalesce(usage_summary.date_from, '-infinity'::date)
           AND x.usage_date <= coalesce(usage_summary.date_to, 'infinity'::date)) d
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 1, 2, 3, 4, 5
$$;
COMMENT ON FUNCTION @extschema@.usage_summary(text, date, date, text) IS
    'Usage totals of one installation (or of every installation the caller may see when install_id is NULL) for the UTC days date_from to date_to (both included; NULL: unbounded), grouped by the comma list group_by of day, install, user, source and model; columns not grouped are NULL. Reads the daily summaries only. A bad group_by or date_from after date_to raises 22023.';

-- Raw events, a page at a time --------------------------------------------

-- Pages walk this index backwards: newest received first.
CREATE INDEX events_received_idx ON @extschema@.events (install_id, received_at, event_id, created_at);

-- Opaque cursor: the received-order key of the last row of a page.
CREATE FUNCTION @extschema@._event_cursor(received_at timestamptz, install_id text,
                                          event_id text, created_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(
           pg_catalog.concat_ws('|', 'v1',
               (extract(epoch FROM received_at) * 1000000)::bigint,
               (extract(epoch FROM created_at) * 1000000)::bigint,
               install_id, event_id), 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
$$;
COMMENT ON FUNCTION @extschema@._event_cursor(timestamptz, text, text, timestamptz) IS
    'Internal: the opaque list_events cursor of a row.';

-- The key an after cursor names; the top of the order when it is NULL.
CREATE FUNCTION @extschema@._cursor_key(after text, OUT received_at timestamptz, OUT install_id text,
                                        OUT event_id text, OUT created_at timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    parts text[];
    raw   text;
BEGIN
    IF after IS NULL THEN
        received_at := 'infinity';
        install_id := '';
        event_id := '';
        created_at := 'infinity';
        RETURN;
    END IF;
    BEGIN
        raw := pg_catalog.translate(after, '-_', '+/');
        raw := raw || pg_catalog.repeat('=', (4 - pg_catalog.length(raw) % 4) % 4);
        parts := pg_catalog.string_to_array(
                     pg_catalog.convert_from(pg_catalog.decode(raw, 'base64'), 'UTF8'), '|');
        IF pg_catalog.cardinality(parts) <> 5 OR parts[1] <> 'v1' THEN
            RAISE EXCEPTION USING ERRCODE = '22P02';
        END IF;
        received_at := pg_catalog.to_timestamp(0) + parts[2]::bigint * interval '1 microsecond';
        created_at := pg_catalog.to_timestamp(0) + parts[3]::bigint * interval '1 microsecond';
        install_id := parts[4];
        event_id := parts[5];
    EXCEPTION WHEN data_exception OR invalid_parameter_value OR character_not_in_repertoire THEN
        RAISE EXCEPTION 'invalid cursor' USING ERRCODE = '22023',
            HINT = 'Pass the cursor of the last row of the previous page, unchanged.';
    END;
END
$$;
COMMENT ON FUNCTION @extschema@._cursor_key(text) IS
    'Internal: the received-order key a list_events cursor names (22023 when it is not one).';

-- lim, or 22023 when it is not 1 to 1000.
CREATE FUNCTION @extschema@._check_lim(lim integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'lim must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN lim;
END
$$;
COMMENT ON FUNCTION @extschema@._check_lim(integer) IS
    'Internal: a list_events page size, 1 to 1000 (22023 otherwise).';

-- Newest received first.  With an installation, each events partition is
-- read backwards along events_received_idx from the cursor on, and the
-- pages merged: a page costs about lim rows however many events there are.
CREATE FUNCTION @extschema@.list_events(install_id text,
                                        date_from timestamptz DEFAULT NULL,
                                        date_to timestamptz DEFAULT NULL,
                                        after text DEFAULT NULL,
                                        lim integer DEFAULT 100)
RETURNS TABLE (install_id text, event_id text, wp_user_id_hash text, source text, model text,
               prompt_tokens integer, completion_tokens integer, cached_prompt_tokens integer,
               total_tokens bigint, request_id text, context jsonb,
               created_at timestamptz, received_at timestamptz, cursor text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH k AS MATERIALIZED (
    SELECT c.* FROM @extschema@._cursor_key(list_events.after) c
     WHERE @extschema@._check_range(list_events.date_from, list_events.date_to)
)
SELECT p.install_id, p.event_id, p.wp_user_id_hash, p.source, p.model,
       p.prompt_tokens, p.completion_tokens, p.cached_prompt_tokens,
       p.prompt_tokens::bigint + p.completion_tokens, p.request_id, p.context,
       p.created_at, p.received_at,
       @extschema@._event_cursor(p.received_at, p.install_id, p.event_id, p.created_at)
  FROM ((SELECT e.* FROM @extschema@.events e
          WHERE e.install_id = list_events.install_id
            AND (e.received_at, e.event_id, e.created_at)
                < ((SELECT k.received_at FROM k), (SELECT k.event_id FROM k), (SELECT k.created_at FROM k))
            AND e.created_at >= coalesce(list_events.date_from, '-infinity')
            AND e.created_at < coalesce(list_events.date_to, 'infinity')
            AND e.voided_at IS NULL
          ORDER BY e.received_at DESC, e.event_id DESC, e.created_at DESC
          LIMIT @extschema@._check_lim(list_events.lim))
        UNION ALL
        (SELECT e.* FROM @extschema@.events e
          WHERE list_events.install_id IS NULL
            AND e.install_id IN (SELECT i.install_id FROM @extschema@.installations i)
            AND (e.received_at, e.install_id, e.event_id, e.created_at)
                < ((SELECT k.received_at FROM k), (SELECT k.install_id FROM k),
                   (SELECT k.event_id FROM k), (SELECT k.created_at FROM k))
            AND e.created_at >= coalesce(list_events.date_from, '-infinity')
            AND e.created_at < coalesce(list_events.date_to, 'infinity')
            AND e.voided_at IS NULL
          ORDER BY e.received_at DESC, e.install_id DESC, e.event_id DESC, e.created_at DESC
          LIMIT @extschema@._check_lim(list_events.lim))) p
 ORDER BY p.received_at DESC, p.install_id DESC, p.event_id DESC, p.created_at DESC
$$;
COMMENT ON FUNCTION @extschema@.list_events(text, timestamptz, timestamptz, text, integer) IS
    'Raw events of one installation (NULL: every installation the caller may see) created in [date_from, date_to), newest received first, at most lim (1 to 1000) rows. Each row carries an opaque cursor: pass the last row''s as after for the next page; a page shorter than lim is the last. Every event stored before the first page appears exactly once; a batch stored later appears at most once.';

-- Installations (admin) ------------------------------------------------------

CREATE FUNCTION @extschema@.installations(date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS TABLE (install_id text, account_id text, status text,
               first_seen timestamptz, last_seen timestamptz,
               total_requests bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT i.install_id, i.account_id, i.status, i.first_seen_at, i.last_seen_at,
       coalesce(t.total_requests, 0), coalesce(t.total_tokens, 0),
       t.estimated_cost_usd
  FROM @extschema@.installations i
  LEFT JOIN (SELECT d.install_id,
                    pg_catalog.sum(d.total_requests)::bigint AS total_requests,
                    pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
                    pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd
               FROM @extschema@.daily d
              WHERE d.usage_date >= coalesce(installations.date_from, '-infinity'::date)
                AND d.usage_date <= coalesce(installations.date_to, 'infinity'::date)
                AND @extschema@._check_range(installations.date_from, installations.date_to)
              GROUP BY d.install_id) t ON t.install_id = i.install_id
 WHERE @extschema@._check_range(installations.date_from, installations.date_to)
 ORDER BY i.account_id, i.install_id
$$;
COMMENT ON FUNCTION @extschema@.installations(date, date) IS
    'Admin: every installation with its account, status, first and last seen, and its requests, tokens and estimated cost in USD for the UTC days date_from to date_to (both included; NULL: unbounded).';

-- CSV export -----------------------------------------------------------------

-- One RFC 4180 field: quoted when it holds a quote, comma or line break, or
-- is the empty string (so that it differs from NULL, written as nothing).
CREATE FUNCTION @extschema@._csv(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN v IS NULL THEN ''
            WHEN v = '' OR v ~ '[",\r\n]' THEN '"' || pg_catalog.replace(v, '"', '""') || '"'
            ELSE v END
$$;
COMMENT ON FUNCTION @extschema@._csv(text) IS
    'Internal: a value as one RFC 4180 CSV field (NULL as an empty field).';

CREATE FUNCTION @extschema@._export_kind(kind text, date_from date, date_to date)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF kind IS NULL OR kind NOT IN ('daily', 'events') THEN
        RAISE EXCEPTION 'invalid export kind "%"', kind
            USING ERRCODE = '22023', HINT = 'kind is daily or events.';
    END IF;
    PERFORM @extschema@._check_range(date_from, date_to);
    RETURN kind;
END
$$;
COMMENT ON FUNCTION @extschema@._export_kind(text, date, date) IS
    'Internal: the validated export_csv kind (22023 on an unknown kind or an inverted range).';

-- A plain SQL function the planner inlines into the caller's query, so rows
-- flow from the scan to the client one at a time: nothing is collected or
-- sorted first, and rows come in storage order (events: partitions by day).
-- PARALLEL UNSAFE keeps the plan serial, so the header comes first.
CREATE FUNCTION @extschema@.export_csv(kind text, install_id text DEFAULT NULL,
                                       date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL UNSAFE
AS $$
SELECT CASE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to)
       WHEN 'daily' THEN 'account_id,install_id,usage_date,wp_user_id_hash,source,model,total_requests,'
                         'prompt_tokens,completion_tokens,cached_prompt_tokens,total_tokens,'
                         'estimated_cost_usd,unpriced_requests'
       ELSE 'install_id,event_id,wp_user_id_hash,source,model,prompt_tokens,completion_tokens,'
            'cached_prompt_tokens,total_tokens,request_id,context,created_at,received_at' END
UNION ALL
(SELECT pg_catalog.concat_ws(',', @extschema@._csv(u.account_id), @extschema@._csv(u.install_id),
            pg_catalog.to_char(u.usage_date, 'YYYY-MM-DD'), u.wp_user_id_hash, u.source,
            @extschema@._csv(u.model), u.total_requests, u.prompt_tokens, u.completion_tokens,
            u.cached_prompt_tokens, u.total_tokens, coalesce(u.estimated_cost_usd::text, ''),
            u.unpriced_requests)
   FROM @extschema@.daily_usage u
  WHERE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to) = 'daily'
    AND (u.install_id = export_csv.install_id OR export_csv.install_id IS NULL)
    AND u.usage_date >= coalesce(export_csv.date_from, '-infinity'::date)
    AND u.usage_date <= coalesce(export_csv.date_to, 'infinity'::date))
UNION ALL
(SELECT pg_catalog.concat_ws(',', @extschema@._csv(e.install_id), @extschema@._csv(e.event_id),
            e.wp_user_id_hash, e.source, @extschema@._csv(e.model), e.prompt_tokens,
            e.completion_tokens, e.cached_prompt_tokens, e.prompt_tokens::bigint + e.completion_tokens,
            @extschema@._csv(e.request_id), @extschema@._csv(e.context::text),
            pg_catalog.to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            pg_catalog.to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
   FROM @extschema@.events e
  WHERE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to) = 'events'
    AND (e.install_id = export_csv.install_id OR export_csv.install_id IS NULL)
    AND e.created_at >= coalesce(export_csv.date_from, '-infinity'::date)::timestamp AT TIME ZONE 'UTC'
    AND e.created_at < (coalesce(export_csv.date_to, 'infinity'::date) + 1)::timestamp AT TIME ZONE 'UTC'
    AND e.voided_at IS NULL)
$$;
COMMENT ON FUNCTION @extschema@.export_csv(text, text, date, date) IS
    'CSV export, one RFC 4180 record per row, the header first: kind ''daily'' (the daily_usage columns) or ''events'' (the usage_events columns, times in UTC), of one installation or every one the caller may see, for the UTC days date_from to date_to (both included). Streams: use it as COPY (SELECT * FROM usage_tracking.export_csv(...)) TO STDOUT.';

-- Views for BI tools ---------------------------------------------------------

COMMENT ON COLUMN @extschema@.daily_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.daily_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.daily_usage.usage_date IS 'UTC calendar day of the events'' created_at.';
COMMENT ON COLUMN @extschema@.daily_usage.wp_user_id_hash IS 'SHA-256 hex of the WordPress user; never the raw user id.';
COMMENT ON COLUMN @extschema@.daily_usage.source IS 'Where the request came from: manual, bulk, queue or inline.';
COMMENT ON COLUMN @extschema@.daily_usage.model IS 'Model name as the site sent it.';
COMMENT ON COLUMN @extschema@.daily_usage.total_requests IS 'Number of model calls (events).';
COMMENT ON COLUMN @extschema@.daily_usage.prompt_tokens IS 'Prompt (input) tokens, cached ones included.';
COMMENT ON COLUMN @extschema@.daily_usage.completion_tokens IS 'Completion (output) tokens.';
COMMENT ON COLUMN @extschema@.daily_usage.cached_prompt_tokens IS 'Prompt tokens served from the provider''s cache (priced at the cached rate).';
COMMENT ON COLUMN @extschema@.daily_usage.total_tokens IS 'prompt_tokens + completion_tokens.';
COMMENT ON COLUMN @extschema@.daily_usage.estimated_cost_usd IS 'Estimated cost in USD at the model prices in force at each event''s created_at; NULL when no request was priced.';
COMMENT ON COLUMN @extschema@.daily_usage.unpriced_requests IS 'Requests no price applied to; they add nothing to estimated_cost_usd.';

CREATE VIEW @extschema@.monthly_usage WITH (security_invoker = true) AS
SELECT i.account_id, d.install_id,
       pg_catalog.date_trunc('month', d.usage_date)::date AS month,
       pg_catalog.sum(d.total_requests)::bigint AS total_requests,
       pg_catalog.sum(d.prompt_tokens)::bigint AS prompt_tokens,
       pg_catalog.sum(d.completion_tokens)::bigint AS completion_tokens,
       pg_catalog.sum(d.cached_prompt_tokens)::bigint AS cached_prompt_tokens,
       pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
       pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd,
       pg_catalog.sum(d.unpriced_requests)::bigint AS unpriced_requests
  FROM @extschema@.daily d
  JOIN @extschema@.installations i USING (install_id)
 GROUP BY i.account_id, d.install_id, pg_catalog.date_trunc('month', d.usage_date)::date;
COMMENT ON VIEW @extschema@.monthly_usage IS
    'Usage per account, installation and UTC calendar month, with estimated cost in USD.';
COMMENT ON COLUMN @extschema@.monthly_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.monthly_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.monthly_usage.month IS 'First day of the UTC calendar month.';
COMMENT ON COLUMN @extschema@.monthly_usage.total_requests IS 'Number of model calls (events) in the month.';
COMMENT ON COLUMN @extschema@.monthly_usage.prompt_tokens IS 'Prompt (input) tokens, cached ones included.';
COMMENT ON COLUMN @extschema@.monthly_usage.completion_tokens IS 'Completion (output) tokens.';
COMMENT ON COLUMN @extschema@.monthly_usage.cached_prompt_tokens IS 'Prompt tokens served from the provider''s cache.';
COMMENT ON COLUMN @extschema@.monthly_usage.total_tokens IS 'prompt_tokens + completion_tokens.';
COMMENT ON COLUMN @extschema@.monthly_usage.estimated_cost_usd IS 'Estimated cost in USD; NULL when no request was priced.';
COMMENT ON COLUMN @extschema@.monthly_usage.unpriced_requests IS 'Requests no price applied to; they add nothing to estimated_cost_usd.';

CREATE VIEW @extschema@.installation_usage WITH (security_invoker = true) AS
SELECT i.install_id, i.account_id, i.status, i.first_seen_at, i.last_seen_at,
       w.since,
       coalesce(t.total_requests, 0) AS total_requests,
       coalesce(t.prompt_tokens, 0) AS prompt_tokens,
       coalesce(t.completion_tokens, 0) AS completion_tokens,
       coalesce(t.total_tokens, 0) AS total_tokens,
       t.estimated_cost_usd
  FROM (SELECT ((pg_catalog.now() AT TIME ZONE 'UTC')::date - 29) AS since) w
 CROSS JOIN @extschema@.installations i
  LEFT JOIN LATERAL (
       SELECT pg_catalog.sum(d.total_requests)::bigint AS total_requests,
              pg_catalog.sum(d.prompt_tokens)::bigint AS prompt_tokens,
              pg_catalog.sum(d.completion_tokens)::bigint AS completion_tokens,
              pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
              pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd
         FROM @extschema@.daily d
        WHERE d.install_id = i.install_id AND d.usage_date >= w.since) t ON true;
COMMENT ON VIEW @extschema@.installation_usage IS
    'Per installation: status, first and last seen, and totals for the last 30 UTC days (today included).';
COMMENT ON COLUMN @extschema@.installation_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.installation_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.installation_usage.status IS 'active or suspended.';
COMMENT ON COLUMN @extschema@.installation_usage.first_seen_at IS 'When its first accepted batch arrived; NULL if none yet.';
COMMENT ON COLUMN @extschema@.installation_usage.last_seen_at IS 'When its latest accepted batch arrived; NULL if none yet.';
COMMENT ON COLUMN @extschema@.installation_usage.since IS 'First UTC day counted: today minus 29 days.';
COMMENT ON COLUMN @extschema@.installation_usage.total_requests IS 'Model calls (events) since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.prompt_tokens IS 'Prompt (input) tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.completion_tokens IS 'Completion (output) tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.total_tokens IS 'prompt_tokens + completion_tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.estimated_cost_usd IS 'Estimated cost in USD since the day in since; NULL when nothing was priced.';
-- sql/parts/25_rls.sql — row-level security: which rows each role sees.
--
-- The reader sees the rows of the account in its JWT claims, the analyst
-- reads every account's summaries, the admin everything but secrets.  The
-- extension owner (ingest, the summaries trigger, maintenance, all SECURITY
-- DEFINER) is not subject to these policies: row security is enabled, not
-- forced, so the write paths are unaffected.

CREATE FUNCTION @extschema@.current_account()
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT nullif(
           (nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb)
               OPERATOR(pg_catalog.->>) 'account_id',
           '')
$$;
COMMENT ON FUNCTION @extschema@.current_account() IS
    'The account_id claim of the caller''s JWT, from the request.jwt.claims setting both HTTP fronts set; NULL when unset or empty.';

ALTER TABLE @extschema@.accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.installations ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.installation_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.daily ENABLE ROW LEVEL SECURITY;

-- Reader: its own account only.  (SELECT current_account()) is evaluated
-- once per query, not per row.
CREATE POLICY reader_own_account ON @extschema@.accounts
    FOR SELECT TO usage_tracking_reader
    USING (account_id = (SELECT @extschema@.current_account()));
CREATE POLICY reader_own_installations ON @extschema@.installations
    FOR SELECT TO usage_tracking_reader
    USING (account_id = (SELECT @extschema@.current_account()));
CREATE POLICY reader_own_events ON @extschema@.events
    FOR SELECT TO usage_tracking_reader
    USING (install_id IN (SELECT i.install_id FROM @extschema@.installations i
                           WHERE i.account_id = (SELECT @extschema@.current_account())));
CREATE POLICY reader_own_daily ON @extschema@.daily
    FOR SELECT TO usage_tracking_reader
    USING (install_id IN (SELECT i.install_id FROM @extschema@.installations i
                           WHERE i.account_id = (SELECT @extschema@.current_account())));

-- Analyst: every account's summaries (privileges keep it to the BI views'
-- columns).
CREATE POLICY analyst_all_installations ON @extschema@.installations
    FOR SELECT TO usage_tracking_analyst USING (true);
CREATE POLICY analyst_all_daily ON @extschema@.daily
    FOR SELECT TO usage_tracking_analyst USING (true);

-- Admin: every account (privileges decide what it may do).
CREATE POLICY admin_all_accounts ON @extschema@.accounts
    FOR ALL TO usage_tracking_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all_installations ON @extschema@.installations
    FOR ALL TO usage_tracking_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all_events ON @extschema@.events
    FOR ALL TO usage_tracking_admin USING (true) WITH CHECK (true);
CREATE POLICY admin_all_daily ON @extschema@.daily
    FOR ALL TO usage_tracking_admin USING (true) WITH CHECK (true);

-- installation_secrets has no policy: no role but the owner reads a row.
-- sql/parts/30_maintenance.sql — retention, reconcile, re-pricing, pg_cron
-- jobs, erasure and corrections.
--
-- Every step is a plain function a DBA can run by hand; schedule_maintenance()
-- registers them with pg_cron when it is there.  Expiry drops whole
-- partitions: its cost depends on the number of partitions, not of rows, and
-- it leaves no dead tuples behind.

-- State and logs -------------------------------------------------------------

CREATE TABLE @extschema@.maintenance_state (
    singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    events_expired_before   timestamptz,
    daily_expired_before    date
);
COMMENT ON TABLE @extschema@.maintenance_state IS
    'How far retention has expired data: raw events before events_expired_before and daily rows before daily_expired_before are gone. reconcile() refuses days whose raw events have expired.';

CREATE TABLE @extschema@.maintenance_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text NOT NULL CHECK (job IN ('run_maintenance', 'reconcile', 'reprice')),
    as_of       timestamptz NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    result      jsonb NOT NULL
);
CREATE INDEX maintenance_log_job_idx ON @extschema@.maintenance_log (job, started_at);
COMMENT ON TABLE @extschema@.maintenance_log IS
    'One row per run of run_maintenance, reconcile and reprice with what it did; run_maintenance keeps 400 days of it.';

-- Voided events: events.voided_at marks them, this table is the audit trail.
CREATE TABLE @extschema@.event_voids (
    install_id            text COLLATE "C" NOT NULL,
    event_id              text NOT NULL,
    created_at            timestamptz NOT NULL,
    wp_user_id_hash       text NOT NULL,
    source                text NOT NULL,
    model                 text NOT NULL,
    prompt_tokens         integer NOT NULL,
    completion_tokens     integer NOT NULL,
    cached_prompt_tokens  integer NOT NULL,
    cost_usd              numeric,
    reason                text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    voided_at             timestamptz NOT NULL,
    voided_by             text NOT NULL,
    PRIMARY KEY (install_id, event_id, created_at)
);
COMMENT ON TABLE @extschema@.event_voids IS
    'Audit trail of void_event(): what was subtracted from the summaries, why, when and by whom.';

CREATE TABLE @extschema@.erasure_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('user', 'installation')),
    install_id  text COLLATE "C",
    account_id  text,
    erased_at   timestamptz NOT NULL,
    erased_by   text NOT NULL,
    counts      jsonb NOT NULL
);
COMMENT ON TABLE @extschema@.erasure_log IS
    'Audit of forget_user() and forget_installation(): when, by whom and how many rows. It holds none of the erased data: no user hash, and for an erased installation only its account.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.maintenance_state', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.maintenance_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.event_voids', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.erasure_log', '');

-- Pricing in SQL -------------------------------------------------------------

-- The cost of events as the summary trigger computes it: the price row in
-- force at created_at, the model's own row else '*', cached prompt tokens at
-- the cached price (the prompt price when NULL); NULL when no price applies.
CREATE FUNCTION @extschema@.event_cost(model text, created_at timestamptz,
                                       prompt_tokens bigint, completion_tokens bigint,
                                       cached_prompt_tokens bigint)
RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ((event_cost.prompt_tokens - event_cost.cached_prompt_tokens) * p.prompt_usd_per_mtok
            + event_cost.cached_prompt_tokens * coalesce(p.cached_prompt_usd_per_mtok, p.prompt_usd_per_mtok)
            + event_cost.completion_tokens * p.completion_usd_per_mtok) * 0.000001
      FROM @extschema@.model_prices p
     WHERE p.model IN (event_cost.model, '*') AND p.effective_from <= event_cost.created_at
     ORDER BY p.model = '*', p.effective_from DESC
     LIMIT 1;
$$;
COMMENT ON FUNCTION @extschema@.event_cost(text, timestamptz, bigint, bigint, bigint) IS
    'Estimated cost in USD of one event at the price in force at created_at (the model''s row, else ''*''); NULL when no price applies.';

-- Retention ------------------------------------------------------------------

CREATE FUNCTION @extschema@.prune_cron_history(keep interval DEFAULT '7 days',
                                               now timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF pg_catalog.to_regclass('cron.job_run_details') IS NULL
       OR pg_catalog.to_regclass('cron.job') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'WITH gone AS (DELETE FROM cron.job_run_details r'
            '  WHERE r.end_time < $1'
            '    AND r.jobid IN (SELECT j.jobid FROM cron.job j'
            '                     WHERE j.jobname::text LIKE ''usage\_tracking\_%'')'
            '  RETURNING 1) SELECT count(*) FROM gone'
       INTO n USING now - keep;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.prune_cron_history(interval, timestamptz) IS
    'Delete the cron.job_run_details rows of the usage_tracking_* jobs that ended more than keep ago; NULL when pg_cron is not installed in this database. Other jobs'' history is left alone.';

CREATE FUNCTION @extschema@.run_maintenance(now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10s'
AS $$
DECLARE
    started     timestamptz := pg_catalog.clock_timestamp();
    ev_cut      timestamptz;
    daily_cut   date;
    created     integer;
    p           record;
    name        text;
    ev_dropped  text[] := '{}';
    dl_dropped  text[] := '{}';
    busy        text[] := '{}';
    freed       bigint := 0;
    ev_deleted  bigint := 0;
    dl_deleted  bigint := 0;
    n           bigint;
    pruned      bigint;
    result      jsonb;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('usage_tracking.run_maintenance')) THEN
        RAISE NOTICE 'another run_maintenance is in progress; nothing done';
        RETURN jsonb_build_object('skipped', 'another run_maintenance is in progress');
    END IF;

    -- Raw events are kept from the start of the UTC day that holds
    -- now - event_retention; daily rows from the day of now - daily_retention.
    ev_cut := pg_catalog.date_trunc('day', (now - @extschema@.retention('events')) AT TIME ZONE 'UTC')
              AT TIME ZONE 'UTC';
    daily_cut := ((now - @extschema@.retention('daily')) AT TIME ZONE 'UTC')::date;

    -- Partitions for every day still kept, and a week ahead.
    created := @extschema@.ensure_partitions(ev_cut, now + interval '7 days');

    -- Raw events: drop whole days.
    FOR p IN SELECT * FROM @extschema@._partitions('@extschema@.events'::regclass)
              WHERE hi IS NOT NULL AND hi::timestamptz <= ev_cut ORDER BY hi::timestamptz LOOP
        BEGIN
            n := pg_catalog.pg_total_relation_size(p.part);
            name := p.part::text;
            EXECUTE pg_catalog.format('DROP TABLE %s', name);
            freed := freed + n;
            ev_dropped := ev_dropped || name;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy || p.part::text;
        END;
    END LOOP;
    -- Stragglers in the default partition (days no partition was made for).
    DELETE FROM @extschema@.events_default d WHERE d.created_at < ev_cut;
    GET DIAGNOSTICS ev_deleted = ROW_COUNT;

    -- Daily summaries: drop whole months, delete the older days of the month
    -- that straddles the cut (summary rows are few; that partition goes
    -- whole at the end of its month).
    FOR p IN SELECT * FROM @extschema@._partitions('@extschema@.daily'::regclass)
              WHERE hi IS NOT NULL AND hi::date <= daily_cut ORDER BY hi::date LOOP
        BEGIN
            name := p.part::text;
            EXECUTE pg_catalog.format('DROP TABLE %s', name);
            dl_dropped := dl_dropped || name;
        EXCEPTION WHEN lock_not_available THEN
            busy := busy || p.part::text;
        END;
    END LOOP;
    DELETE FROM @extschema@.daily d WHERE d.usage_date < daily_cut;
    GET DIAGNOSTICS dl_deleted = ROW_COUNT;

    pruned := @extschema@.prune_cron_history(interval '7 days', now);
    DELETE FROM @extschema@.maintenance_log l WHERE l.as_of < run_maintenance.now - interval '400 days';

    INSERT INTO @extschema@.maintenance_state AS s (singleton, events_expired_before, daily_expired_before)
    VALUES (true, ev_cut, daily_cut)
    ON CONFLICT (singleton) DO UPDATE SET
        events_expired_before = greatest(s.events_expired_before, EXCLUDED.events_expired_before),
        daily_expired_before = greatest(s.daily_expired_before, EXCLUDED.daily_expired_before);

    result := jsonb_build_object(
        'now', now,
        'partitions_created', created,
        'events', jsonb_build_object('kept_from', ev_cut,
                                     'partitions_dropped', to_jsonb(ev_dropped),
                                     'bytes_freed', freed,
                                     'default_rows_deleted', ev_deleted),
        'daily', jsonb_build_object('kept_from', daily_cut,
                                    'partitions_dropped', to_jsonb(dl_dropped),
                                    'rows_deleted', dl_deleted),
        'cron_history_pruned', pruned,
        'busy', to_jsonb(busy));
    INSERT INTO @extschema@.maintenance_log (job, as_of, started_at, finished_at, result)
    VALUES ('run_maintenance', now, started, pg_catalog.clock_timestamp(), result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.run_maintenance(timestamptz) IS
    'Create partitions a week ahead, drop raw-event partitions past usage_tracking.event_retention and daily partitions past usage_tracking.daily_retention, prune the pg_cron history of the usage_tracking jobs, and return what it did. Idempotent; a second run at the same time does nothing. A partition it cannot lock within 10 s is listed under "busy" and dropped next time.';

-- Reconcile and re-price -----------------------------------------------------

CREATE FUNCTION @extschema@.reconcile(day date, repair boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started   timestamptz := pg_catalog.clock_timestamp();
    day_lo    timestamptz;
    day_hi    timestamptz;
    expired   timestamptz;
    holder    regclass;
    checked   bigint;
    drifted   bigint;
    deleted   bigint;
    upserted  bigint;
    listed    jsonb;
    result    jsonb;
BEGIN
    IF day IS NULL THEN
        RAISE EXCEPTION 'day must not be NULL' USING ERRCODE = '22004';
    END IF;
    SELECT s.events_expired_before INTO expired FROM @extschema@.maintenance_state s;
    day_lo := day::timestamp AT TIME ZONE 'UTC';
    day_hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
    IF day_lo < expired THEN
        RAISE EXCEPTION 'raw events of % have expired', day
            USING ERRCODE = '22023',
                  DETAIL = pg_catalog.format('Raw events are kept from %s on.', expired),
                  HINT = 'Summaries of expired days can no longer be re-derived.';
    END IF;

    -- One reconcile per day at a time; and no insert into that day's
    -- partition while it runs, so the comparison sees a still picture.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('usage_tracking.reconcile'),
                                             day - date '2000-01-01');
    SELECT p.part INTO holder
      FROM @extschema@._partitions('@extschema@.events'::regclass) p
     WHERE p.lo::timestamptz <= day_lo AND day_hi <= p.hi::timestamptz;
    EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE',
                              coalesce(holder, '@extschema@.events_default'::regclass));

    WITH prices AS (
        SELECT mp.model, mp.effective_from AS p_lo,
               lead(mp.effective_from) OVER (PARTITION BY mp.model ORDER BY mp.effective_from) AS p_hi,
               mp.prompt_usd_per_mtok AS prompt, mp.completion_usd_per_mtok AS completion,
               coalesce(mp.cached_prompt_usd_per_mtok, mp.prompt_usd_per_mtok) AS cached
          FROM @extschema@.model_prices mp
    ), priced AS (
        SELECT e.install_id, e.wp_user_id_hash, e.source, e.model,
               e.prompt_tokens, e.completion_tokens, e.cached_prompt_tokens,
               coalesce(own.prompt, fb.prompt) AS p_prompt,
               coalesce(own.completion, fb.completion) AS p_completion,
               coalesce(own.cached, fb.cached) AS p_cached
          FROM @extschema@.events e
          LEFT JOIN prices own ON own.model = e.model AND own.p_lo <= e.created_at
                              AND (own.p_hi IS NULL OR e.created_at < own.p_hi)
          LEFT JOIN prices fb ON own.model IS NULL AND fb.model = '*' AND fb.p_lo <= e.created_at
                             AND (fb.p_hi IS NULL OR e.created_at < fb.p_hi)
         WHERE e.created_at >= day_lo AND e.created_at < day_hi AND e.voided_at IS NULL
    ), expected AS (
        SELECT install_id, wp_user_id_hash, source, model,
               count(*)::bigint AS total_requests,
               sum(prompt_tokens)::bigint AS prompt_tokens,
               sum(completion_tokens)::bigint AS completion_tokens,
               sum(cached_prompt_tokens)::bigint AS cached_prompt_tokens,
               sum(((prompt_tokens - cached_prompt_tokens) * p_prompt
                    + cached_prompt_tokens * p_cached
                    + completion_tokens * p_completion) * 0.000001) AS estimated_cost_usd,
               count(*) FILTER (WHERE p_prompt IS NULL)::bigint AS unpriced_requests
          FROM priced
         GROUP BY install_id, wp_user_id_hash, source, model
    ), stored AS (
        SELECT d.install_id, d.wp_user_id_hash, d.source, d.model, d.total_requests,
               d.prompt_tokens, d.completion_tokens, d.cached_prompt_tokens,
               d.estimated_cost_usd, d.unpriced_requests
          FROM @extschema@.daily d
         WHERE d.usage_date = day
    ), drift AS (
        SELECT coalesce(x.install_id, s.install_id) AS install_id,
               coalesce(x.wp_user_id_hash, s.wp_user_id_hash) AS wp_user_id_hash,
               coalesce(x.source, s.source) AS source,
               coalesce(x.model, s.model) AS model,
               x.install_id IS NULL AS gone,
               x.total_requests, x.prompt_tokens, x.completion_tokens,
               x.cached_prompt_tokens, x.estimated_cost_usd, x.unpriced_requests,
               CASE WHEN s.install_id IS NOT NULL THEN jsonb_build_object(
                   'total_requests', s.total_requests, 'prompt_tokens', s.prompt_tokens,
                   'completion_tokens', s.completion_tokens, 'cached_prompt_tokens', s.cached_prompt_tokens,
                   'estimated_cost_usd', s.estimated_cost_usd, 'unpriced_requests', s.unpriced_requests)
               END AS was,
               CASE WHEN x.install_id IS NOT NULL THEN jsonb_build_object(
                   'total_requests', x.total_requests, 'prompt_tokens', x.prompt_tokens,
                   'completion_tokens', x.completion_tokens, 'cached_prompt_tokens', x.cached_prompt_tokens,
                   'estimated_cost_usd', x.estimated_cost_usd, 'unpriced_requests', x.unpriced_requests)
               END AS should_be
          FROM expected x
          FULL JOIN stored s
            ON s.install_id = x.install_id AND s.wp_user_id_hash = x.wp_user_id_hash
           AND s.source = x.source AND s.model = x.model
         WHERE (x.total_requests, x.prompt_tokens, x.completion_tokens, x.cached_prompt_tokens,
                x.estimated_cost_usd, x.unpriced_requests)
               IS DISTINCT FROM
               (s.total_requests, s.prompt_tokens, s.completion_tokens, s.cached_prompt_tokens,
                s.estimated_cost_usd, s.unpriced_requests)
    ), del AS (
        DELETE FROM @extschema@.daily d
         USING drift f
         WHERE repair AND f.gone AND d.usage_date = day AND d.install_id = f.install_id
           AND d.wp_user_id_hash = f.wp_user_id_hash AND d.source = f.source AND d.model = f.model
        RETURNING 1
    ), ups AS (
        INSERT INTO @extschema@.daily AS d (install_id, usage_date, wp_user_id_hash, source, model,
                                            total_requests, prompt_tokens, completion_tokens,
                                            cached_prompt_tokens, estimated_cost_usd, unpriced_requests)
        SELECT f.install_id, day, f.wp_user_id_hash, f.source, f.model, f.total_requests,
               f.prompt_tokens, f.completion_tokens, f.cached_prompt_tokens,
               f.estimated_cost_usd, f.unpriced_requests
          FROM drift f
         WHERE repair AND NOT f.gone
         ORDER BY f.install_id, f.wp_user_id_hash, f.source, f.model
        ON CONFLICT (install_id, usage_date, wp_user_id_hash, source, model) DO UPDATE SET
            total_requests = EXCLUDED.total_requests,
            prompt_tokens = EXCLUDED.prompt_tokens,
            completion_tokens = EXCLUDED.completion_tokens,
            cached_prompt_tokens = EXCLUDED.cached_prompt_tokens,
            estimated_cost_usd = EXCLUDED.estimated_cost_usd,
            unpriced_requests = EXCLUDED.unpriced_requests
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM expected) + (SELECT count(*) FROM drift WHERE gone),
           (SELECT count(*) FROM drift),
           (SELECT count(*) FROM del),
           (SELECT count(*) FROM ups),
           (SELECT coalesce(jsonb_agg(r ORDER BY r->>'install_id', r->>'wp_user_id_hash',
                                      r->>'source', r->>'model'), '[]')
              FROM (SELECT jsonb_build_object('install_id', f.install_id,
                                              'wp_user_id_hash', f.wp_user_id_hash,
                                              'source', f.source, 'model', f.model,
                                              'stored', f.was, 'expected', f.should_be) AS r
                      FROM drift f
                     ORDER BY f.install_id, f.wp_user_id_hash, f.source, f.model
                     LIMIT 100) l)
      INTO checked, drifted, deleted, upserted, listed;

    result := jsonb_build_object('day', day, 'rows_checked', checked, 'drifted', drifted,
                                 'repaired', deleted + upserted, 'drift', listed);
    INSERT INTO @extschema@.maintenance_log (job, as_of, started_at, finished_at, result)
    VALUES ('reconcile', pg_catalog.now(), started, pg_catalog.clock_timestamp(),
            result - 'drift' || jsonb_build_object('drift_listed', jsonb_array_length(listed)));
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.reconcile(date, boolean) IS
    'Re-derive the daily summaries of one UTC day from its raw events (voided events excluded, priced at the rows in force), report every row that drifted (the first 100 in "drift", stored against expected) and, unless repair is false, repair them. Refuses days whose raw events have expired.';

CREATE FUNCTION @extschema@.reprice(date_from date, date_to date)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    started  timestamptz := pg_catalog.clock_timestamp();
    expired  timestamptz;
    d        date;
    r        jsonb;
    days     integer := 0;
    skipped  integer := 0;
    drifted  bigint := 0;
    repaired bigint := 0;
    result   jsonb;
BEGIN
    IF date_from IS NULL OR date_to IS NULL OR date_from > date_to THEN
        RAISE EXCEPTION 'date_from and date_to must be dates with date_from <= date_to'
            USING ERRCODE = '22023';
    END IF;
    SELECT s.events_expired_before INTO expired FROM @extschema@.maintenance_state s;
    FOR d IN SELECT g::date FROM pg_catalog.generate_series(date_from, date_to, interval '1 day') g LOOP
        IF d::timestamp AT TIME ZONE 'UTC' < expired THEN
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        r := @extschema@.reconcile(d, true);
        days := days + 1;
        drifted := drifted + (r->>'drifted')::bigint;
        repaired := repaired + (r->>'repaired')::bigint;
    END LOOP;
    result := jsonb_build_object('date_from', date_from, 'date_to', date_to, 'days', days,
                                 'days_expired', skipped, 'drifted', drifted, 'repaired', repaired);
    INSERT INTO @extschema@.maintenance_log (job, as_of, started_at, finished_at, result)
    VALUES ('reprice', pg_catalog.now(), started, pg_catalog.clock_timestamp(), result);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @extschema@.reprice(date, date) IS
    'Rebuild the summaries (costs included) of every day from date_from to date_to from raw events at the prices now in model_prices; run it after correcting a price. Days whose raw events have expired are skipped and counted.';

-- Corrections ----------------------------------------------------------------

CREATE FUNCTION @extschema@.void_event(install_id text, event_id text, reason text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ev      record;
    cost    numeric;
    at      timestamptz := pg_catalog.now();
    left_n  bigint;
BEGIN
    IF reason IS NULL OR length(btrim(reason)) = 0 OR length(reason) > 500 THEN
        RAISE EXCEPTION 'a reason of 1 to 500 characters is required' USING ERRCODE = '22023';
    END IF;
    -- Batches of this installation wait until the correction commits.
    PERFORM 1 FROM @extschema@.installations i
      WHERE i.install_id = void_event.install_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;

    SELECT e.* INTO ev FROM @extschema@.events e
     WHERE e.install_id = void_event.install_id AND e.event_id = void_event.event_id
     FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event % of this installation is not stored', event_id
            USING ERRCODE = '22023',
                  HINT = 'Events older than usage_tracking.event_retention have expired.';
    END IF;
    IF ev.voided_at IS NOT NULL THEN
        RETURN jsonb_build_object('install_id', ev.install_id, 'event_id', ev.event_id,
                                  'voided', true, 'already_voided', true,
                                  'voided_at', ev.voided_at);
    END IF;

    cost := @extschema@.event_cost(ev.model, ev.created_at, ev.prompt_tokens,
                                   ev.completion_tokens, ev.cached_prompt_tokens);
    UPDATE @extschema@.events e SET voided_at = at
     WHERE e.install_id = ev.install_id AND e.event_id = ev.event_id AND e.created_at = ev.created_at;

    -- The governance counters, in ingest's lock order: account month, then
    -- installation hour, then the daily row.
    UPDATE @extschema@.quota_usage q SET
        recorded = greatest(q.recorded - 1, 0),
        recorded_tokens = greatest(q.recorded_tokens - ev.prompt_tokens - ev.completion_tokens, 0)
     WHERE q.account_id = (SELECT i.account_id FROM @extschema@.installations i
                            WHERE i.install_id = ev.install_id)
       AND q.month = date_trunc('month', ev.created_at AT TIME ZONE 'UTC')::date;
    UPDATE @extschema@.hourly_usage h SET
        requests = greatest(h.requests - 1, 0),
        tokens = greatest(h.tokens - ev.prompt_tokens - ev.completion_tokens, 0)
     WHERE h.install_id = ev.install_id
       AND h.hour = date_trunc('hour', ev.created_at, 'UTC');

    UPDATE @extschema@.daily d SET
        total_requests = d.total_requests - 1,
        prompt_tokens = d.prompt_tokens - ev.prompt_tokens,
        completion_tokens = d.completion_tokens - ev.completion_tokens,
        cached_prompt_tokens = d.cached_prompt_tokens - ev.cached_prompt_tokens,
        estimated_cost_usd = CASE
            WHEN cost IS NULL THEN d.estimated_cost_usd
            WHEN d.total_requests - 1 - d.unpriced_requests = 0 THEN NULL
            ELSE d.estimated_cost_usd - cost END,
        unpriced_requests = d.unpriced_requests - (cost IS NULL)::int
     WHERE d.install_id = ev.install_id
       AND d.usage_date = (ev.created_at AT TIME ZONE 'UTC')::date
       AND d.wp_user_id_hash = ev.wp_user_id_hash
       AND d.source = ev.source AND d.model = ev.model
    RETURNING d.total_requests INTO left_n;
    IF left_n = 0 THEN
        DELETE FROM @extschema@.daily d
         WHERE d.install_id = ev.install_id
           AND d.usage_date = (ev.created_at AT TIME ZONE 'UTC')::date
           AND d.wp_user_id_hash = ev.wp_user_id_hash
           AND d.source = ev.source AND d.model = ev.model;
    END IF;

    INSERT INTO @extschema@.event_voids (install_id, event_id, created_at, wp_user_id_hash,
                                         source, model, prompt_tokens, completion_tokens,
                                         cached_prompt_tokens, cost_usd, reason, voided_at, voided_by)
    VALUES (ev.install_id, ev.event_id, ev.created_at, ev.wp_user_id_hash, ev.source, ev.model,
            ev.prompt_tokens, ev.completion_tokens, ev.cached_prompt_tokens, cost,
            reason, at, session_user);

    RETURN jsonb_build_object('install_id', ev.install_id, 'event_id', ev.event_id,
                              'voided', true, 'already_voided', false, 'voided_at', at,
                              'usage_date', (ev.created_at AT TIME ZONE 'UTC')::date,
                              'subtracted', jsonb_build_object(
                                  'total_requests', 1,
                                  'prompt_tokens', ev.prompt_tokens,
                                  'completion_tokens', ev.completion_tokens,
                                  'cached_prompt_tokens', ev.cached_prompt_tokens,
                                  'estimated_cost_usd', cost),
                              'summary_found', left_n IS NOT NULL);
END
$$;
COMMENT ON FUNCTION @extschema@.void_event(text, text, text) IS
    'Void one stored event: mark it, subtract it from its daily summary in the same transaction and record why in event_voids. A voided event that is resent stays a duplicate and is never counted again; voiding it again changes nothing.';

-- Erasure --------------------------------------------------------------------

CREATE FUNCTION @extschema@.forget_user(install_id text, wp_user_id_hash text)
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
    -- event again (not answered from its first event's batch_digest), so
    -- erased events sent again are stored again, as any new event would be.
    UPDATE @extschema@.events e SET batch_digest = NULL
     WHERE e.install_id = forget_user.install_id AND e.batch_digest IS NOT NULL;
    DELETE FROM @extschema@.daily d
     WHERE d.install_id = forget_user.install_id AND d.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_daily = ROW_COUNT;
    DELETE FROM @extschema@.event_voids v
     WHERE v.install_id = forget_user.install_id AND v.wp_user_id_hash = forget_user.wp_user_id_hash;
    GET DIAGNOSTICS n_voids = ROW_COUNT;

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('user', install_id, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_user(text, text) IS
    'Erase every raw event, daily summary row and void record of one user hash of one installation; returns the counts and records them in erasure_log (without the user hash).';

CREATE FUNCTION @extschema@.forget_installation(install_id text)
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

    counts := jsonb_build_object('events', n_events, 'daily', n_daily, 'event_voids', n_voids,
                                 'installations', n_inst);
    INSERT INTO @extschema@.erasure_log (kind, install_id, account_id, erased_at, erased_by, counts)
    VALUES ('installation', NULL, acct, pg_catalog.now(), session_user, counts);
    RETURN counts;
END
$$;
COMMENT ON FUNCTION @extschema@.forget_installation(text) IS
    'Erase an installation everywhere: its raw events, daily summaries, void records, registration and secrets; returns the counts and records them in erasure_log with the account only.';

-- pg_cron --------------------------------------------------------------------

-- The jobs: name, schedule, command; the alerts job only once
-- usage_tracking.evaluate_alerts(timestamptz) exists.
CREATE FUNCTION @extschema@._maintenance_jobs(retention_schedule text, reconcile_schedule text,
                                              alerts_schedule text)
RETURNS TABLE (jobname text, schedule text, command text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'usage_tracking_retention', retention_schedule,
           'SELECT usage_tracking.run_maintenance()'
    UNION ALL
    SELECT 'usage_tracking_reconcile', reconcile_schedule,
           'SELECT usage_tracking.reconcile((now() AT TIME ZONE ''UTC'')::date - 1)'
    UNION ALL
    SELECT 'usage_tracking_alerts', alerts_schedule,
           'SELECT usage_tracking.evaluate_alerts(now())'
     WHERE pg_catalog.to_regprocedure('@extschema@.evaluate_alerts(timestamptz)') IS NOT NULL;
$$;
COMMENT ON FUNCTION @extschema@._maintenance_jobs(text, text, text) IS
    'Internal: the pg_cron jobs schedule_maintenance() registers.';

-- Where pg_cron is: 'here' (installed in this database), 'elsewhere'
-- (preloaded, its database is another one), 'not_created' (preloaded for
-- this database but CREATE EXTENSION pg_cron not run) or 'absent'.
CREATE FUNCTION @extschema@._cron_location()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN 'here'
        WHEN nullif(pg_catalog.current_setting('cron.database_name', true), '') IS NULL THEN 'absent'
        WHEN pg_catalog.current_setting('cron.database_name') <> pg_catalog.current_database() THEN 'elsewhere'
        ELSE 'not_created' END;
$$;
COMMENT ON FUNCTION @extschema@._cron_location() IS
    'Internal: here, elsewhere, not_created or absent — where pg_cron is relative to this database.';

CREATE FUNCTION @extschema@.schedule_maintenance(retention_schedule text DEFAULT '0 3 * * *',
                                                 reconcile_schedule text DEFAULT '0 2 * * *',
                                                 alerts_schedule text DEFAULT '*/5 * * * *')
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc      text := @extschema@._cron_location();
    cron_db  text := nullif(pg_catalog.current_setting('cron.database_name', true), '');
    j        record;
    jobid    bigint;
BEGIN
    IF loc = 'absent' THEN
        RAISE NOTICE 'pg_cron is not available; no job scheduled'
            USING HINT = 'Add pg_cron to shared_preload_libraries, set cron.database_name, restart, run CREATE EXTENSION pg_cron in that database, then call usage_tracking.schedule_maintenance() again. Until then run usage_tracking.run_maintenance() and usage_tracking.reconcile() by hand.';
        RETURN;
    END IF;
    IF loc = 'not_created' THEN
        RAISE NOTICE 'pg_cron is preloaded for this database but not created here; no job scheduled'
            USING HINT = 'Run CREATE EXTENSION pg_cron, then call usage_tracking.schedule_maintenance() again.';
        RETURN;
    END IF;
    IF loc = 'elsewhere' THEN
        RAISE NOTICE 'pg_cron runs in database "%"; run the returned statements there', cron_db;
        RETURN NEXT pg_catalog.format('-- run in database %I as the role the jobs should run as:', cron_db);
        FOR j IN SELECT * FROM @extschema@._maintenance_jobs(retention_schedule, reconcile_schedule,
                                                             alerts_schedule) LOOP
            RETURN NEXT pg_catalog.format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                          j.jobname, j.schedule, j.command, pg_catalog.current_database());
        END LOOP;
        RETURN NEXT pg_catalog.format('SELECT cron.schedule(%L, %L, %L);',
            'usage_tracking_cron_history', '30 3 * * *',
            'DELETE FROM cron.job_run_details WHERE end_time < now() - interval ''7 days'''
            ' AND jobid IN (SELECT jobid FROM cron.job WHERE jobname LIKE ''usage\_tracking\_%'')');
        RETURN;
    END IF;

    FOR j IN SELECT * FROM @extschema@._maintenance_jobs(retention_schedule, reconcile_schedule,
                                                         alerts_schedule) LOOP
        IF cron_db IS NULL OR cron_db = pg_catalog.current_database() THEN
            EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid
              USING j.jobname, j.schedule, j.command;
        ELSE
            EXECUTE 'SELECT cron.schedule_in_database($1, $2, $3, $4)' INTO jobid
              USING j.jobname, j.schedule, j.command, pg_catalog.current_database();
        END IF;
        RETURN NEXT pg_catalog.format('%s: job %s, %s, %s', j.jobname, jobid, j.schedule, j.command);
    END LOOP;
    IF pg_catalog.to_regprocedure('@extschema@.evaluate_alerts(timestamptz)') IS NULL THEN
        EXECUTE 'SELECT count(*) FROM cron.job WHERE jobname = $1 AND username = current_user'
           INTO jobid USING 'usage_tracking_alerts';
        IF jobid > 0 THEN
            EXECUTE 'SELECT cron.unschedule($1)' USING 'usage_tracking_alerts';
        END IF;
        RETURN NEXT 'usage_tracking_alerts: not scheduled, usage_tracking.evaluate_alerts(timestamptz) does not exist';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.schedule_maintenance(text, text, text) IS
    'Register (or update) the pg_cron jobs usage_tracking_retention (daily 03:00 UTC, run_maintenance), usage_tracking_reconcile (daily 02:00, the previous day) and usage_tracking_alerts (every 5 minutes, once evaluate_alerts exists); returns one line per job. When pg_cron runs in another database it returns the statements to run there; when pg_cron is absent it says so in a NOTICE. Idempotent. The jobs run as the calling role.';

CREATE FUNCTION @extschema@.unschedule_maintenance()
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    loc     text := @extschema@._cron_location();
    cron_db text := nullif(pg_catalog.current_setting('cron.database_name', true), '');
    name    text;
    n       bigint;
BEGIN
    IF loc = 'elsewhere' THEN
        RAISE NOTICE 'pg_cron runs in database "%"; run the returned statements there', cron_db;
        RETURN NEXT pg_catalog.format('-- run in database %I as the role the jobs run as:', cron_db);
        FOREACH name IN ARRAY ARRAY['usage_tracking_retention', 'usage_tracking_reconcile',
                                    'usage_tracking_alerts', 'usage_tracking_cron_history'] LOOP
            RETURN NEXT pg_catalog.format(
                'SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %L AND username = current_user;', name);
        END LOOP;
        RETURN;
    END IF;
    IF loc <> 'here' THEN
        RAISE NOTICE 'pg_cron is not installed in this database; nothing to unschedule';
        RETURN;
    END IF;
    FOREACH name IN ARRAY ARRAY['usage_tracking_retention', 'usage_tracking_reconcile',
                                'usage_tracking_alerts'] LOOP
        EXECUTE 'SELECT count(*) FROM cron.job WHERE jobname = $1 AND username = current_user'
           INTO n USING name;
        IF n > 0 THEN
            EXECUTE 'SELECT cron.unschedule($1)' USING name;
            RETURN NEXT name || ': unscheduled';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@.unschedule_maintenance() IS
    'Remove the usage_tracking_* pg_cron jobs of the calling role; when pg_cron runs in another database, return the statements to run there.';

-- Monitoring -----------------------------------------------------------------

CREATE VIEW @extschema@.maintenance_status AS
SELECT (SELECT max(l.started_at) FROM @extschema@.maintenance_log l WHERE l.job = 'run_maintenance')
           AS last_maintenance_at,
       (SELECT l.result FROM @extschema@.maintenance_log l WHERE l.job = 'run_maintenance'
         ORDER BY l.started_at DESC LIMIT 1) AS last_maintenance_result,
       (SELECT max(l.started_at) FROM @extschema@.maintenance_log l WHERE l.job = 'reconcile')
           AS last_reconcile_at,
       (SELECT sum((l.result->>'drifted')::bigint) FROM @extschema@.maintenance_log l
         WHERE l.job = 'reconcile' AND l.started_at > pg_catalog.now() - interval '7 days')
           AS drifted_rows_7d,
       (SELECT count(*) FROM @extschema@._partitions('@extschema@.events'::regclass) p
         WHERE p.hi IS NOT NULL) AS events_partitions,
       (SELECT min(p.lo::timestamptz) FROM @extschema@._partitions('@extschema@.events'::regclass) p)
           AS events_from,
       (SELECT max(p.hi::timestamptz) FROM @extschema@._partitions('@extschema@.events'::regclass) p)
           AS events_partitioned_until,
       (SELECT count(*) FROM @extschema@.events_default) AS events_default_rows,
       (SELECT count(*) FROM @extschema@.daily_default) AS daily_default_rows,
       (SELECT s.events_expired_before FROM @extschema@.maintenance_state s) AS events_expired_before,
       (SELECT s.daily_expired_before FROM @extschema@.maintenance_state s) AS daily_expired_before;
COMMENT ON VIEW @extschema@.maintenance_status IS
    'One row for monitoring: last maintenance and reconcile runs, drift found in the last 7 days, the partitioned window of raw events (events_partitioned_until should stay ahead of now), and rows in the default partitions (should stay near 0).';

-- Privileges -----------------------------------------------------------------

REVOKE ALL ON @extschema@.maintenance_state, @extschema@.maintenance_log,
              @extschema@.event_voids, @extschema@.erasure_log,
              @extschema@.maintenance_status FROM PUBLIC;
GRANT SELECT ON @extschema@.maintenance_state, @extschema@.maintenance_log,
                @extschema@.event_voids, @extschema@.erasure_log,
                @extschema@.maintenance_status TO usage_tracking_admin;

REVOKE ALL ON FUNCTION @extschema@._partitions(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.event_cost(text, timestamptz, bigint, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.prune_cron_history(interval, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.run_maintenance(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.reconcile(date, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.reprice(date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.void_event(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.forget_user(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.forget_installation(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._maintenance_jobs(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._cron_location() FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.schedule_maintenance(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.unschedule_maintenance() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@._partitions(regclass),
    @extschema@.event_cost(text, timestamptz, bigint, bigint, bigint),
    @extschema@.prune_cron_history(interval, timestamptz),
    @extschema@.run_maintenance(timestamptz),
    @extschema@.reconcile(date, boolean),
    @extschema@.reprice(date, date),
    @extschema@.void_event(text, text, text),
    @extschema@.forget_user(text, text),
    @extschema@.forget_installation(text),
    @extschema@._maintenance_jobs(text, text, text),
    @extschema@._cron_location(),
    @extschema@.schedule_maintenance(text, text, text),
    @extschema@.unschedule_maintenance()
  TO usage_tracking_admin;
-- sql/parts/35_ingest_quota.sql — governance counters kept by every insert
-- of events, and the quota verdict each ingest response carries.
--
-- Ingested events record model calls that already happened: ingest never
-- refuses them for quota or for their volume, it only counts them.  What
-- ingest does rate-limit is the posting itself: an installation may post no
-- more batches that store new events in a sliding 5 minutes than its plan's
-- rate_requests_5m (a site that posted one batch per admitted call would stay
-- inside it); the next post is refused with UTR01 (HTTP 429) and nothing of
-- it is written.  A retry whose events are all stored already writes nothing.
-- Generation calls are rate-limited before they happen, by authorize().
--
-- Lock order, the same on every path, so that no two transactions deadlock:
--   rate_state (installation)  — authorize only
--   quota_usage (account, month ascending)
--   hourly_usage (installation, hour ascending)
--   ingest_windows (installation) — ingest only

-- Monthly usage per account ----------------------------------------------------

CREATE TABLE @extschema@.quota_usage (
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    recorded        bigint NOT NULL DEFAULT 0 CHECK (recorded >= 0),
    recorded_tokens bigint NOT NULL DEFAULT 0 CHECK (recorded_tokens >= 0),
    admitted        bigint NOT NULL DEFAULT 0 CHECK (admitted >= 0),
    pending         bigint NOT NULL DEFAULT 0 CHECK (pending >= 0),
    PRIMARY KEY (account_id, month)
);
COMMENT ON TABLE @extschema@.quota_usage IS
    'Requests per account per calendar month (UTC): recorded = events stored with created_at in the month, admitted = calls authorize() let through, pending = admitted calls whose events have not arrived yet. The quota counts recorded + pending.';

-- Hourly usage per installation, from the stored events (abuse detection).
CREATE TABLE @extschema@.hourly_usage (
    install_id      text COLLATE "C" NOT NULL REFERENCES @extschema@.installations ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    requests        bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    tokens          bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    PRIMARY KEY (install_id, hour)
);
CREATE INDEX hourly_usage_hour_idx ON @extschema@.hourly_usage (hour);
COMMENT ON TABLE @extschema@.hourly_usage IS
    'Requests and tokens of the stored events per installation per UTC hour of created_at; evaluate_alerts() reads it for abuse and prunes it after 7 days.';

-- Posts per installation, one slot per minute (slot 1 = the minute in
-- "minute", slot i = i - 1 minutes before): a sliding 5-minute window.
CREATE TABLE @extschema@.ingest_windows (
    install_id      text COLLATE "C" PRIMARY KEY REFERENCES @extschema@.installations ON DELETE CASCADE,
    minute          timestamptz NOT NULL,
    posts           bigint[] NOT NULL CHECK (cardinality(posts) = 5)
);
COMMENT ON TABLE @extschema@.ingest_windows IS
    'Batches each installation posted in its last five minutes, one slot per minute (slot 1 = minute, slot i = i - 1 minutes earlier).';

-- Sliding windows -------------------------------------------------------------

CREATE FUNCTION @extschema@.window_shift(slots bigint[], slot_minute timestamptz,
                                         at_minute timestamptz)
RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN slots IS NULL OR at_minute >= slot_minute + interval '5 minutes'
            THEN '{0,0,0,0,0}'::bigint[]
        WHEN at_minute <= slot_minute THEN slots
        ELSE pg_catalog.array_fill(0::bigint,
                 ARRAY[(extract(epoch FROM at_minute - slot_minute) / 60)::integer])
             || slots[1 : 5 - (extract(epoch FROM at_minute - slot_minute) / 60)::integer]
    END
$$;
COMMENT ON FUNCTION @extschema@.window_shift(bigint[], timestamptz, timestamptz) IS
    'A 5-slot per-minute window whose slot 1 is slot_minute, moved on to at_minute: older slots fall out, new ones are 0. A window from the future stays as it is.';

CREATE FUNCTION @extschema@.window_retry_after(slots bigint[], at_minute timestamptz,
                                               now timestamptz, excess bigint)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ceil(extract(epoch FROM at_minute + (6 - f.i) * interval '1 minute' - now))::integer
      FROM (SELECT g.i, sum(slots[g.i]) OVER (ORDER BY g.i DESC) AS freed
              FROM pg_catalog.generate_series(5, 1, -1) AS g(i)) f
     WHERE f.freed >= excess
     ORDER BY f.i DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION @extschema@.window_retry_after(bigint[], timestamptz, timestamptz, bigint) IS
    'Seconds from now until the oldest slots of a window (slot 1 = at_minute) that add up to excess have left it; NULL when even an empty window is not enough.';

-- Quota levels ----------------------------------------------------------------

CREATE FUNCTION @extschema@.quota_level(used bigint, monthly_requests bigint,
                                        warning_pct integer, critical_pct integer,
                                        block_pct integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN monthly_requests IS NULL THEN 'ok'
                WHEN used * 100 >= monthly_requests * block_pct THEN 'blocked'
                WHEN used * 100 >= monthly_requests * critical_pct THEN 'critical'
                WHEN used * 100 >= monthly_requests * warning_pct THEN 'warning'
                ELSE 'ok' END
$$;
COMMENT ON FUNCTION @extschema@.quota_level(bigint, bigint, integer, integer, integer) IS
    'ok, warning, critical or blocked for used requests against a monthly limit (NULL: unlimited, always ok) and its thresholds in percent.';

-- Counting stored events ------------------------------------------------------
-- quota_usage and hourly_usage are kept by the C code that accounts for new
-- events (src/summary.c): ingest calls it directly, and the events_summarize
-- statement trigger calls it for any other INSERT into usage_tracking.events.
-- It takes accounts (month ascending), then installations' hours, then the
-- daily keys, each in key order.

-- The verdict -----------------------------------------------------------------

CREATE FUNCTION @extschema@.ingest_quota(install_id text, account_id text,
                                         new_requests bigint, new_tokens bigint,
                                         now timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_tracking_ingest_quota'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz) IS
    'Called by ingest after storing the events: count the post in the installation''s 5-minute window (over rate_requests_5m: SQLSTATE UTR01, DETAIL {"retry_after_s": n}, which rolls the request back) and return the quota verdict {level, used, limit} for the account''s calendar month (UTC).';

REVOKE ALL ON FUNCTION @extschema@.window_shift(bigint[], timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.window_retry_after(bigint[], timestamptz, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.quota_level(bigint, bigint, integer, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz) FROM PUBLIC;
-- sql/parts/40_governance.sql — plans, the real-time authorize() gate,
-- quota status, alerts and their delivery records.
--
-- Quota: per account per calendar month (UTC), in requests; used = events
-- recorded in the month + calls authorize() admitted whose events have not
-- arrived yet (quota_usage.pending, consumed as the events are stored).
-- Rate limits: per installation over a sliding 5-minute window of one-minute
-- slots, enforced by authorize() on calls before they are made (and, on
-- posts, by ingest_quota()).  Abuse: per installation per UTC clock hour,
-- the larger of the calls admitted and the calls recorded.

-- Plans -----------------------------------------------------------------------

CREATE FUNCTION @extschema@.set_plan(plan text, monthly_requests bigint,
                                     warning_pct integer DEFAULT 75,
                                     critical_pct integer DEFAULT 90,
                                     block_pct integer DEFAULT 100,
                                     rate_requests_5m integer DEFAULT NULL,
                                     rate_tokens_5m bigint DEFAULT NULL,
                                     abuse_requests_1h integer DEFAULT NULL,
                                     abuse_tokens_1h bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF plan IS NULL OR plan !~ '^[a-z0-9_-]{1,40}$' THEN
        RAISE EXCEPTION 'invalid plan name'
            USING ERRCODE = '22023', HINT = 'Use 1 to 40 characters of [a-z0-9_-].';
    END IF;
    IF monthly_requests < 0 THEN
        RAISE EXCEPTION 'monthly_requests must not be negative'
            USING ERRCODE = '22023', HINT = 'NULL means unlimited.';
    END IF;
    IF warning_pct IS NULL OR critical_pct IS NULL OR block_pct IS NULL
       OR NOT (0 < warning_pct AND warning_pct <= critical_pct
               AND critical_pct <= block_pct AND block_pct <= 1000) THEN
        RAISE EXCEPTION 'thresholds must satisfy 0 < warning_pct <= critical_pct <= block_pct <= 1000'
            USING ERRCODE = '22023';
    END IF;
    IF rate_requests_5m <= 0 OR rate_tokens_5m <= 0 OR abuse_requests_1h <= 0 OR abuse_tokens_1h <= 0 THEN
        RAISE EXCEPTION 'rate limits and abuse thresholds must be positive'
            USING ERRCODE = '22023', HINT = 'NULL keeps the current value (the default for a new plan).';
    END IF;
    INSERT INTO @extschema@.plans AS p (plan, monthly_requests, warning_pct, critical_pct, block_pct,
                                        rate_requests_5m, rate_tokens_5m,
                                        abuse_requests_1h, abuse_tokens_1h)
    VALUES (set_plan.plan, set_plan.monthly_requests, set_plan.warning_pct,
            set_plan.critical_pct, set_plan.block_pct,
            coalesce(set_plan.rate_requests_5m, 100), coalesce(set_plan.rate_tokens_5m, 50000),
            coalesce(set_plan.abuse_requests_1h, 200), coalesce(set_plan.abuse_tokens_1h, 100000))
    ON CONFLICT ON CONSTRAINT plans_pkey DO UPDATE
       SET monthly_requests = EXCLUDED.monthly_requests,
           warning_pct = EXCLUDED.warning_pct,
           critical_pct = EXCLUDED.critical_pct,
           block_pct = EXCLUDED.block_pct,
           rate_requests_5m = coalesce(set_plan.rate_requests_5m, p.rate_requests_5m),
           rate_tokens_5m = coalesce(set_plan.rate_tokens_5m, p.rate_tokens_5m),
           abuse_requests_1h = coalesce(set_plan.abuse_requests_1h, p.abuse_requests_1h),
           abuse_tokens_1h = coalesce(set_plan.abuse_tokens_1h, p.abuse_tokens_1h);
END
$$;
COMMENT ON FUNCTION @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint) IS
    'Create or change a plan: monthly request quota (NULL = unlimited), warning/critical/block thresholds in percent of it, and per installation the rate limits per 5 minutes and abuse thresholds per hour (NULL keeps the current value; defaults 100 requests, 50 000 tokens, 200 requests, 100 000 tokens).';

-- Admissions per installation -------------------------------------------------

CREATE TABLE @extschema@.rate_state (
    install_id          text COLLATE "C" PRIMARY KEY REFERENCES @extschema@.installations ON DELETE CASCADE,
    minute              timestamptz NOT NULL,
    requests            bigint[] NOT NULL CHECK (cardinality(requests) = 5),
    tokens              bigint[] NOT NULL CHECK (cardinality(tokens) = 5),
    hour                timestamptz NOT NULL,
    hour_requests       bigint NOT NULL DEFAULT 0,
    hour_tokens         bigint NOT NULL DEFAULT 0,
    prev_hour_requests  bigint NOT NULL DEFAULT 0,
    prev_hour_tokens    bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.rate_state IS
    'Calls authorize() admitted per installation: the last five minutes, one slot per minute (slot 1 = minute), and the current and previous UTC hour. Its row is the lock that serializes one installation''s authorize() calls.';

-- authorize ------------------------------------------------------------------

CREATE FUNCTION @extschema@.authorize(install_id text, requests integer DEFAULT 1,
                                      tokens bigint DEFAULT 0,
                                      now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acc     text;
    active  boolean;
    lim     bigint;
    warn    integer;
    crit    integer;
    blk     integer;
    rreq    integer;
    rtok    bigint;
    m       timestamptz := date_trunc('minute', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
    st      @extschema@.rate_state;
    reqs    bigint[];
    toks    bigint[];
    wreq    bigint;
    wtok    bigint;
    used    bigint;
    retry   integer;
BEGIN
    IF requests IS NULL OR requests < 1 OR tokens IS NULL OR tokens < 0 OR now IS NULL THEN
        RAISE EXCEPTION 'requests must be at least 1 and tokens at least 0' USING ERRCODE = '22023';
    END IF;

    SELECT i.account_id, i.status = 'active' AND a.status = 'active',
           p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct,
           p.rate_requests_5m, p.rate_tokens_5m, coalesce(q.recorded + q.pending, 0)
      INTO acc, active, lim, warn, crit, blk, rreq, rtok, used
      FROM @extschema@.installations i
      JOIN @extschema@.accounts a USING (account_id)
      JOIN @extschema@.plans p USING (plan)
      LEFT JOIN @extschema@.quota_usage q ON q.account_id = i.account_id AND q.month = mon
     WHERE i.install_id = authorize.install_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('allowed', false, 'level', NULL,
                                  'reason', 'unknown_installation', 'retry_after_s', NULL);
    END IF;
    IF NOT active THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'suspended', 'retry_after_s', NULL);
    END IF;
    IF requests > rreq OR tokens > rtok OR requests::bigint * 100 > lim * blk THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'too_large', 'retry_after_s', NULL);
    END IF;

    -- Reservations are soft state (the events re-count every call): commit
    -- them without waiting for the WAL flush, as a rate limiter may.  A
    -- crash can forget the last few hundred milliseconds of admissions.
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);

    -- Rate: the installation's row serializes its callers.
    SELECT r.* INTO st FROM @extschema@.rate_state r
     WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO @extschema@.rate_state (install_id, minute, requests, tokens, hour)
        VALUES (authorize.install_id, m, '{0,0,0,0,0}', '{0,0,0,0,0}', h)
        ON CONFLICT DO NOTHING;
        SELECT r.* INTO st FROM @extschema@.rate_state r
         WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    END IF;
    m := greatest(st.minute, m);
    reqs := @extschema@.window_shift(st.requests, st.minute, m);
    toks := @extschema@.window_shift(st.tokens, st.minute, m);
    wreq := reqs[1] + reqs[2] + reqs[3] + reqs[4] + reqs[5];
    wtok := toks[1] + toks[2] + toks[3] + toks[4] + toks[5];
    IF wreq + requests > rreq OR wtok + tokens > rtok THEN
        retry := greatest(
            CASE WHEN wreq + requests > rreq
                 THEN @extschema@.window_retry_after(reqs, m, now, wreq + requests - rreq) END,
            CASE WHEN wtok + tokens > rtok
                 THEN @extschema@.window_retry_after(toks, m, now, wtok + tokens - rtok) END);
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'rate_limited', 'retry_after_s', retry);
    END IF;

    -- Quota: reserve on the account's row, or refuse.  A plain UPDATE first:
    -- waiters queue on the row in arrival order.
    UPDATE @extschema@.quota_usage q
       SET admitted = q.admitted + authorize.requests,
           pending = q.pending + authorize.requests
     WHERE q.account_id = acc AND q.month = mon
       AND (lim IS NULL OR (q.recorded + q.pending + authorize.requests) * 100 <= lim * blk)
    RETURNING q.recorded + q.pending INTO used;
    IF NOT FOUND THEN
        -- Refused, or the account's first call of the month.
        INSERT INTO @extschema@.quota_usage AS q (account_id, month, admitted, pending)
        VALUES (acc, mon, requests, requests)
        ON CONFLICT ON CONSTRAINT quota_usage_pkey DO UPDATE
           SET admitted = q.admitted + EXCLUDED.admitted,
               pending = q.pending + EXCLUDED.pending
         WHERE lim IS NULL OR (q.recorded + q.pending + EXCLUDED.pending) * 100 <= lim * blk
        RETURNING q.recorded + q.pending INTO used;
    END IF;
    IF NOT FOUND THEN
        SELECT q.recorded + q.pending INTO used
          FROM @extschema@.quota_usage q WHERE q.account_id = acc AND q.month = mon;
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'quota_exceeded',
                                  'retry_after_s', ceil(extract(epoch FROM
                                      ((mon + interval '1 month')::timestamp AT TIME ZONE 'UTC') - now))::integer);
    END IF;

    -- Admitted: count it in the window and the hour.
    reqs[1] := reqs[1] + requests;
    toks[1] := toks[1] + tokens;
    IF h > st.hour THEN
        IF h = st.hour + interval '1 hour' THEN
            st.prev_hour_requests := st.hour_requests;
            st.prev_hour_tokens := st.hour_tokens;
        ELSE
            st.prev_hour_requests := 0;
            st.prev_hour_tokens := 0;
        END IF;
        st.hour := h;
        st.hour_requests := 0;
        st.hour_tokens := 0;
    END IF;
    UPDATE @extschema@.rate_state r
       SET minute = m, requests = reqs, tokens = toks, hour = st.hour,
           hour_requests = st.hour_requests + authorize.requests,
           hour_tokens = st.hour_tokens + authorize.tokens,
           prev_hour_requests = st.prev_hour_requests,
           prev_hour_tokens = st.prev_hour_tokens
     WHERE r.install_id = authorize.install_id;
    RETURN jsonb_build_object('allowed', true,
                              'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                              'reason', 'ok', 'retry_after_s', NULL);
END
$$;
COMMENT ON FUNCTION @extschema@.authorize(text, integer, bigint, timestamptz) IS
    'The real-time gate before a generation: {allowed, level, reason, retry_after_s}. Admits requests calls of about tokens tokens when the installation stays within its 5-minute rate limits and the account within its monthly quota (at block_pct), and reserves them; reason is ok, rate_limited, quota_exceeded, too_large, suspended or unknown_installation. Sets synchronous_commit = off for the rest of its transaction: call it in a transaction of its own.';

-- quota_status ---------------------------------------------------------------

CREATE FUNCTION @extschema@.quota_status(install_id text, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i       @extschema@.installations;
    a       @extschema@.accounts;
    p       @extschema@.plans;
    q       @extschema@.quota_usage;
    st      @extschema@.rate_state;
    m       timestamptz := date_trunc('minute', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
    reqs    bigint[];
    toks    bigint[];
    posts   bigint[];
    used    bigint;
    hreq    bigint;
    htok    bigint;
BEGIN
    SELECT * INTO i FROM @extschema@.installations x WHERE x.install_id = quota_status.install_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO a FROM @extschema@.accounts x WHERE x.account_id = i.account_id;
    SELECT * INTO p FROM @extschema@.plans x WHERE x.plan = a.plan;
    SELECT * INTO q FROM @extschema@.quota_usage x WHERE x.account_id = a.account_id AND x.month = mon;
    used := coalesce(q.recorded, 0) + coalesce(q.pending, 0);

    SELECT * INTO st FROM @extschema@.rate_state x WHERE x.install_id = i.install_id;
    reqs := @extschema@.window_shift(st.requests, st.minute, m);
    toks := @extschema@.window_shift(st.tokens, st.minute, m);
    SELECT @extschema@.window_shift(w.posts, w.minute, m) INTO posts
      FROM @extschema@.ingest_windows w WHERE w.install_id = i.install_id;
    posts := coalesce(posts, '{0,0,0,0,0}');

    SELECT greatest(coalesce(hu.requests, 0),
                    CASE WHEN st.hour = h THEN st.hour_requests ELSE 0 END),
           greatest(coalesce(hu.tokens, 0),
                    CASE WHEN st.hour = h THEN st.hour_tokens ELSE 0 END)
      INTO hreq, htok
      FROM (SELECT 1) one
      LEFT JOIN @extschema@.hourly_usage hu ON hu.install_id = i.install_id AND hu.hour = h;

    RETURN jsonb_build_object(
        'install_id', i.install_id,
        'account_id', a.account_id,
        'plan', p.plan,
        'status', CASE WHEN i.status = 'active' AND a.status = 'active' THEN 'active' ELSE 'suspended' END,
        'month', to_char(mon, 'YYYY-MM'),
        'used', used,
        'recorded', coalesce(q.recorded, 0),
        'pending', coalesce(q.pending, 0),
        'limit', p.monthly_requests,
        'percent', CASE WHEN p.monthly_requests > 0
                        THEN round(used * 100.0 / p.monthly_requests, 1) END,
        'level', @extschema@.quota_level(used, p.monthly_requests, p.warning_pct,
                                         p.critical_pct, p.block_pct),
        'window_5m', jsonb_build_object(
            'requests', reqs[1] + reqs[2] + reqs[3] + reqs[4] + reqs[5],
            'tokens', toks[1] + toks[2] + toks[3] + toks[4] + toks[5],
            'posts', posts[1] + posts[2] + posts[3] + posts[4] + posts[5],
            'limit_requests', p.rate_requests_5m,
            'limit_tokens', p.rate_tokens_5m),
        'hour', jsonb_build_object(
            'start', to_char(h AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'requests', hreq,
            'tokens', htok,
            'abuse_requests', p.abuse_requests_1h,
            'abuse_tokens', p.abuse_tokens_1h),
        'abuse', jsonb_build_object(
            'requests', hreq > p.abuse_requests_1h,
            'tokens', htok > p.abuse_tokens_1h));
END
$$;
COMMENT ON FUNCTION @extschema@.quota_status(text, timestamptz) IS
    'Where an installation and its account stand at now: month-to-date requests of the account against its limit (percent, level), the installation''s 5-minute windows (admitted requests and tokens, posts) and its current UTC hour with abuse flags.';

-- Alerts ---------------------------------------------------------------------

CREATE TABLE @extschema@.alerts (
    alert_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    install_id      text COLLATE "C" REFERENCES @extschema@.installations ON DELETE CASCADE,
    level           text NOT NULL
                    CHECK (level IN ('warning', 'critical', 'blocked', 'abuse_requests', 'abuse_tokens')),
    period_start    timestamptz NOT NULL,
    observed        bigint NOT NULL,
    threshold       bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    CHECK ((install_id IS NULL) = (level IN ('warning', 'critical', 'blocked')))
);
CREATE UNIQUE INDEX alerts_account_level_day ON @extschema@.alerts (account_id, level, period_start)
    WHERE install_id IS NULL;
CREATE UNIQUE INDEX alerts_install_kind_hour ON @extschema@.alerts (install_id, level, period_start)
    WHERE install_id IS NOT NULL;
COMMENT ON TABLE @extschema@.alerts IS
    'Alerts: quota levels (warning, critical, blocked) once per account per UTC day (period_start = the day), abuse (abuse_requests, abuse_tokens) once per installation per UTC hour (period_start = the hour). observed is what was counted, threshold what it reached.';

CREATE TABLE @extschema@.alert_channels (
    channel_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'email')),
    target          text NOT NULL CHECK (length(target) <= 2000),
    secret          text CHECK ((kind = 'webhook') = (secret IS NOT NULL)),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (account_id, kind)
);
COMMENT ON TABLE @extschema@.alert_channels IS
    'Where an account''s alerts go, one channel per kind: webhook (generic JSON, Standard Webhooks signature with secret), slack, discord (incoming webhook URLs) or email (an address).';

CREATE TABLE @extschema@.alert_deliveries (
    alert_id        bigint NOT NULL REFERENCES @extschema@.alerts ON DELETE CASCADE,
    channel_id      bigint NOT NULL REFERENCES @extschema@.alert_channels ON DELETE CASCADE,
    attempts        integer NOT NULL DEFAULT 0,
    last_status     text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (alert_id, channel_id)
);
CREATE INDEX alert_deliveries_due ON @extschema@.alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL;
COMMENT ON TABLE @extschema@.alert_deliveries IS
    'One row per alert and channel: attempts so far, the last status, when the next attempt is due (NULL once delivered or given up) and delivered_at.';

CREATE FUNCTION @extschema@.set_alert_channel(account_id text, kind text, target text,
                                              secret text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c   @extschema@.alert_channels;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = set_alert_channel.account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id USING ERRCODE = '22023';
    END IF;
    IF kind IS NULL OR kind NOT IN ('webhook', 'slack', 'discord', 'email') THEN
        RAISE EXCEPTION 'kind must be webhook, slack, discord or email' USING ERRCODE = '22023';
    END IF;
    IF target IS NULL THEN
        DELETE FROM @extschema@.alert_channels x
         WHERE x.account_id = set_alert_channel.account_id AND x.kind = set_alert_channel.kind
        RETURNING * INTO c;
        RETURN CASE WHEN c.channel_id IS NULL THEN NULL
                    ELSE jsonb_build_object('channel_id', c.channel_id, 'kind', c.kind, 'removed', true) END;
    END IF;
    IF kind = 'email' AND (target !~ '^[^@\s<>",;]+@[A-Za-z0-9.-]+$' OR length(target) > 254) THEN
        RAISE EXCEPTION 'invalid email address' USING ERRCODE = '22023';
    END IF;
    IF kind <> 'email' AND target !~ '^https?://[^\s]+$' THEN
        RAISE EXCEPTION 'invalid URL' USING ERRCODE = '22023', HINT = 'Use an http:// or https:// URL.';
    END IF;
    IF secret IS NOT NULL AND (kind <> 'webhook' OR secret !~ '^whsec_[A-Za-z0-9+/]{24,}={0,2}$') THEN
        RAISE EXCEPTION 'a secret is for webhook channels only, as whsec_ and base64 of at least 18 bytes'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.alert_channels AS x (account_id, kind, target, secret)
    VALUES (set_alert_channel.account_id, set_alert_channel.kind, set_alert_channel.target,
            CASE WHEN set_alert_channel.kind = 'webhook'
                 THEN coalesce(set_alert_channel.secret,
                               'whsec_' || encode(decode(@extschema@.generate_secret(), 'hex'), 'base64')) END)
    ON CONFLICT ON CONSTRAINT alert_channels_account_id_kind_key DO UPDATE
       SET target = EXCLUDED.target,
           secret = coalesce(set_alert_channel.secret, x.secret)
    RETURNING * INTO c;
    RETURN jsonb_strip_nulls(jsonb_build_object('channel_id', c.channel_id, 'kind', c.kind,
                                                'target', c.target, 'secret', c.secret));
END
$$;
COMMENT ON FUNCTION @extschema@.set_alert_channel(text, text, text, text) IS
    'Set where an account''s alerts of one channel kind go (webhook, slack, discord: an http(s) URL; email: an address); NULL target removes the channel. A webhook channel gets a Standard Webhooks signing secret (whsec_…, generated unless given, kept on later changes), returned here.';

CREATE FUNCTION @extschema@.alert_message(a @extschema@.alerts)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN a.install_id IS NULL THEN
            format('Account %s is at the %s level: %s of %s requests this month (%s%%).',
                   a.account_id, a.level, a.observed, a.threshold,
                   CASE WHEN a.threshold > 0 THEN round(a.observed * 100.0 / a.threshold) ELSE 100 END)
        ELSE
            format('Installation %s of account %s %s in the hour from %s UTC (abuse threshold %s).',
                   a.install_id, a.account_id,
                   CASE a.level WHEN 'abuse_requests' THEN format('made %s requests', a.observed)
                                ELSE format('used %s tokens', a.observed) END,
                   to_char(a.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), a.threshold)
    END
$$;
COMMENT ON FUNCTION @extschema@.alert_message(@extschema@.alerts) IS
    'One sentence that says what an alert is about, as sent to Slack, Discord and email.';

CREATE FUNCTION @extschema@.alert_json(a @extschema@.alerts)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'alert_id', a.alert_id, 'account_id', a.account_id, 'install_id', a.install_id,
        'level', a.level,
        'period_start', to_char(a.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'observed', a.observed, 'threshold', a.threshold,
        'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'message', @extschema@.alert_message(a))
$$;
COMMENT ON FUNCTION @extschema@.alert_json(@extschema@.alerts) IS
    'An alert as JSON: the NOTIFY payload and the data of a generic webhook.';

CREATE FUNCTION @extschema@.alert_body(a @extschema@.alerts, kind text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE kind
        WHEN 'webhook' THEN jsonb_build_object(
            'type', 'usage_tracking.alert',
            'timestamp', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'data', @extschema@.alert_json(a))::text
        WHEN 'slack' THEN jsonb_build_object('text', @extschema@.alert_message(a))::text
        WHEN 'discord' THEN jsonb_build_object('content', @extschema@.alert_message(a))::text
        WHEN 'email' THEN @extschema@.alert_message(a) || E'\n\n' || jsonb_pretty(@extschema@.alert_json(a)) || E'\n'
    END
$$;
COMMENT ON FUNCTION @extschema@.alert_body(@extschema@.alerts, text) IS
    'What is sent for an alert on a channel kind: webhook, the generic JSON {type, timestamp, data}; slack {text}; discord {content}; email, the plain-text body.';

CREATE FUNCTION @extschema@.evaluate_alerts(now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       @extschema@.alerts;
    n       integer := 0;
    day     timestamptz := date_trunc('day', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
BEGIN
    -- One evaluation at a time (a second one waits, then finds nothing new).
    PERFORM pg_advisory_xact_lock(1970300406, 1);

    FOR r IN
        INSERT INTO @extschema@.alerts AS al
            (account_id, install_id, level, period_start, observed, threshold, created_at)
        SELECT x.account_id, x.install_id, x.level, x.period_start, x.observed, x.threshold,
               evaluate_alerts.now
          FROM (
            -- Quota: the account's level today, if not ok.
            SELECT q.account_id, NULL::text AS install_id,
                   @extschema@.quota_level(q.recorded + q.pending, p.monthly_requests,
                                           p.warning_pct, p.critical_pct, p.block_pct) AS level,
                   day AS period_start, q.recorded + q.pending AS observed,
                   p.monthly_requests AS threshold
              FROM @extschema@.quota_usage q
              JOIN @extschema@.accounts a USING (account_id)
              JOIN @extschema@.plans p USING (plan)
             WHERE q.month = mon AND p.monthly_requests IS NOT NULL
            UNION ALL
            -- Abuse: installation hours of the last day over a threshold.
            SELECT i.account_id, act.install_id, k.level, act.hour, k.observed, k.threshold
              FROM (SELECT u.install_id, u.hour, max(u.requests) AS requests, max(u.tokens) AS tokens
                      FROM (SELECT hu.install_id, hu.hour, hu.requests, hu.tokens
                              FROM @extschema@.hourly_usage hu
                             WHERE hu.hour >= h - interval '24 hours' AND hu.hour <= h
                            UNION ALL
                            SELECT s.install_id, s.hour, s.hour_requests, s.hour_tokens
                              FROM @extschema@.rate_state s
                             WHERE s.hour >= h - interval '24 hours' AND s.hour <= h
                            UNION ALL
                            SELECT s.install_id, s.hour - interval '1 hour', s.prev_hour_requests,
                                   s.prev_hour_tokens
                              FROM @extschema@.rate_state s
                             WHERE s.hour > h - interval '24 hours' AND s.hour <= h) u
                     GROUP BY 1, 2) act
              JOIN @extschema@.installations i USING (install_id)
              JOIN @extschema@.accounts a ON a.account_id = i.account_id
              JOIN @extschema@.plans p ON p.plan = a.plan
             CROSS JOIN LATERAL (VALUES
                    ('abuse_requests', act.requests, p.abuse_requests_1h::bigint),
                    ('abuse_tokens', act.tokens, p.abuse_tokens_1h)) k(level, observed, threshold)
             WHERE k.observed > k.threshold
          ) x
         WHERE x.level <> 'ok'
           AND NOT EXISTS (SELECT 1 FROM @extschema@.alerts o
                            WHERE o.account_id = x.account_id
                              AND o.install_id IS NOT DISTINCT FROM x.install_id
                              AND o.level = x.level AND o.period_start = x.period_start)
         ORDER BY x.account_id, x.install_id NULLS FIRST, x.period_start, x.level
        ON CONFLICT DO NOTHING
        RETURNING al.*
    LOOP
        INSERT INTO @extschema@.alert_deliveries (alert_id, channel_id, next_attempt_at)
        SELECT r.alert_id, c.channel_id, evaluate_alerts.now
          FROM @extschema@.alert_channels c
         WHERE c.account_id = r.account_id;
        PERFORM pg_notify('usage_tracking_alerts', @extschema@.alert_json(r)::text);
        n := n + 1;
    END LOOP;

    DELETE FROM @extschema@.hourly_usage hu WHERE hu.hour < h - interval '7 days';
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.evaluate_alerts(timestamptz) IS
    'Raise the alerts due at now: each account''s quota level (warning, critical, blocked) once per UTC day, and each installation''s abuse (over abuse_requests_1h or abuse_tokens_1h in a UTC hour of the last day) once per hour. Each new alert gets a delivery row per channel of its account and a NOTIFY on usage_tracking_alerts with the alert as JSON. Returns how many alerts it raised. Also prunes hourly counters older than 7 days.';

-- Delivery (used by the notifier) ---------------------------------------------

CREATE FUNCTION @extschema@.claim_deliveries(max_rows integer DEFAULT 10,
                                             lease interval DEFAULT '5 minutes',
                                             now timestamptz DEFAULT now())
RETURNS TABLE (alert_id bigint, channel_id bigint, attempt integer, kind text, target text,
               secret text, message_id text, subject text, body text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT d.alert_id, d.channel_id
          FROM @extschema@.alert_deliveries d
         WHERE d.delivered_at IS NULL AND d.next_attempt_at <= claim_deliveries.now
         ORDER BY d.next_attempt_at, d.alert_id, d.channel_id
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE @extschema@.alert_deliveries d
           SET attempts = d.attempts + 1,
               last_attempt_at = claim_deliveries.now,
               next_attempt_at = claim_deliveries.now + lease
          FROM due
         WHERE d.alert_id = due.alert_id AND d.channel_id = due.channel_id
        RETURNING d.alert_id, d.channel_id, d.attempts)
    SELECT c.alert_id, c.channel_id, c.attempts, ch.kind, ch.target, ch.secret,
           'alert_' || a.alert_id,
           format('[usage_tracking] %s: %s', a.level, coalesce(a.install_id, a.account_id)),
           @extschema@.alert_body(a, ch.kind)
      FROM claimed c
      JOIN @extschema@.alerts a ON a.alert_id = c.alert_id
      JOIN @extschema@.alert_channels ch ON ch.channel_id = c.channel_id
     ORDER BY c.alert_id, c.channel_id
$$;
COMMENT ON FUNCTION @extschema@.claim_deliveries(integer, interval, timestamptz) IS
    'For the notifier: take up to max_rows due deliveries (SKIP LOCKED, so several notifiers share the work), count the attempt and lease them for lease; returns what to send: channel kind, target, webhook secret, a message id stable across retries, a subject and the rendered body. Report each outcome with record_delivery().';

CREATE FUNCTION @extschema@.record_delivery(alert_id bigint, channel_id bigint, ok boolean,
                                            status text,
                                            retry_base interval DEFAULT '30 seconds',
                                            max_attempts integer DEFAULT 10,
                                            now timestamptz DEFAULT now())
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.alert_deliveries d
       SET last_status = left(record_delivery.status, 500),
           delivered_at = CASE WHEN ok THEN record_delivery.now END,
           next_attempt_at = CASE
               WHEN ok OR d.attempts >= max_attempts THEN NULL
               ELSE record_delivery.now
                    + least(retry_base * power(2, d.attempts - 1), interval '6 hours') END
     WHERE d.alert_id = record_delivery.alert_id AND d.channel_id = record_delivery.channel_id
       AND d.delivered_at IS NULL;
$$;
COMMENT ON FUNCTION @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz) IS
    'For the notifier: record the outcome of a delivery attempt. Success sets delivered_at; a failure schedules the next attempt after retry_base * 2^(attempts - 1) (at most 6 hours), or gives up (next_attempt_at NULL) after max_attempts.';

-- Privileges -----------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.authorize(text, integer, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.quota_status(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.set_alert_channel(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_message(@extschema@.alerts) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_json(@extschema@.alerts) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_body(@extschema@.alerts, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.evaluate_alerts(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.claim_deliveries(integer, interval, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint),
    @extschema@.authorize(text, integer, bigint, timestamptz),
    @extschema@.quota_status(text, timestamptz),
    @extschema@.set_alert_channel(text, text, text, text),
    @extschema@.evaluate_alerts(timestamptz),
    @extschema@.claim_deliveries(integer, interval, timestamptz),
    @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz)
    TO usage_tracking_admin;
GRANT SELECT ON @extschema@.alerts, @extschema@.alert_deliveries TO usage_tracking_admin;
GRANT SELECT (channel_id, account_id, kind, target, created_at) ON @extschema@.alert_channels
    TO usage_tracking_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.quota_usage', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_channels', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.alerts', 'alert_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.alert_channels', 'channel_id')::regclass, '');
-- sql/parts/50_api.sql — the HTTP-facing schema usage_api: one function per
-- route, written so that PostgREST (db-schemas = usage_api) and the
-- project's gateway serve them unchanged.  Functions read the request the
-- PostgREST way: headers from request.headers, the tenant from
-- request.jwt.claims, and signal HTTP status with SQLSTATE 'PGRST'.

CREATE SCHEMA IF NOT EXISTS usage_api;
COMMENT ON SCHEMA usage_api IS
    'HTTP routes of usage_tracking, one function per route, PostgREST-compatible (served from /rpc/<name>).';
GRANT USAGE ON SCHEMA usage_api TO usage_tracking_ingest, usage_tracking_reader,
                                   usage_tracking_analyst, usage_tracking_admin;

-- Re-raise an error caught in a route function the way PostgREST turns it
-- into an HTTP answer: the extension's SQLSTATEs (usage_tracking.error_codes)
-- become SQLSTATE 'PGRST' with message {"code","message","details","hint"}
-- and detail {"status","headers"}; UTR01's DETAIL {"retry_after_s": N}
-- becomes a Retry-After header.  Any other SQLSTATE is raised again as is.
CREATE FUNCTION @extschema@.raise_http_error(sqlstate text, message text,
                                             detail text DEFAULT NULL,
                                             hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    code    text;
    status  integer;
    headers jsonb := '{}';
    retry   text;
BEGIN
    SELECT e.error, e.http_status INTO code, status
      FROM @extschema@.error_codes e
     WHERE e.sqlstate = raise_http_error.sqlstate;
    IF NOT FOUND THEN
        IF detail IS NULL AND hint IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
        ELSIF hint IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
        ELSIF detail IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
        END IF;
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail, HINT = hint;
    END IF;
    IF status = 429 THEN
        BEGIN
            retry := (detail::jsonb ->> 'retry_after_s');
        EXCEPTION WHEN invalid_text_representation THEN
            retry := NULL;
        END;
        headers := jsonb_build_object('Retry-After',
                                      greatest(ceil(coalesce(retry, '1')::numeric), 1)::bigint::text);
    END IF;
    RAISE SQLSTATE 'PGRST'
        USING MESSAGE = json_build_object('code', code, 'message', message,
                                          'details', detail, 'hint', hint)::text,
              DETAIL = json_build_object('status', status, 'headers', headers)::text;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.raise_http_error(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.raise_http_error(text, text, text, text)
    TO usage_tracking_ingest, usage_tracking_reader, usage_tracking_analyst, usage_tracking_admin;
COMMENT ON FUNCTION @extschema@.raise_http_error(text, text, text, text) IS
    'For usage_api functions'' exception handlers: raise an extension SQLSTATE (usage_tracking.error_codes) again as SQLSTATE PGRST with the PostgREST JSON message and {"status","headers"} detail (Retry-After for 429); raise any other SQLSTATE again unchanged.';

-- POST /api/usage/event ------------------------------------------------------

CREATE FUNCTION usage_api.ingest(json)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_api_ingest'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION usage_api.ingest(json) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.ingest(json) TO usage_tracking_ingest, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.ingest(json) IS
    'POST /api/usage/event: ingest the raw request body (a single unnamed json parameter, byte for byte) signed by the X-Install-Signature of request.headers, for the account_id of request.jwt.claims (not checked when the claim is absent). Errors: SQLSTATE PGRST with the status of usage_tracking.error_codes.';

-- The same route with the body as text: what the gateway calls.  A json
-- argument is lexed by PostgreSQL once more before ingest parses it; as
-- text it is parsed once, and invalid JSON still answers 400
-- malformed_json (UTB01).  Under PostgREST it is the text/plain variant.
CREATE FUNCTION usage_api.ingest(text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_api_ingest'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION usage_api.ingest(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.ingest(text) TO usage_tracking_ingest, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.ingest(text) IS
    'POST /api/usage/event as usage_api.ingest(json), the body passed as text (parsed once, by ingest itself).';

-- Read routes: SECURITY INVOKER, so the row-level security of the caller's
-- role and JWT account decides what they see (sql/parts/25_rls.sql).

-- GET /api/usage/summary -----------------------------------------------------

CREATE FUNCTION usage_api.summary(install_id text DEFAULT NULL,
                                  date_from date DEFAULT NULL,
                                  date_to date DEFAULT NULL,
                                  group_by text DEFAULT 'day')
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT coalesce(pg_catalog.jsonb_agg(
           CASE WHEN 'day' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('date', s.usage_date) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'install' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('install_id', s.install_id) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'user' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('wp_user_id_hash', s.wp_user_id_hash) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'source' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('source', s.source) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'model' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('model', s.model) ELSE '{}' END
           OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
               'total_requests', s.total_requests, 'prompt_tokens', s.prompt_tokens,
               'completion_tokens', s.completion_tokens, 'cached_prompt_tokens', s.cached_prompt_tokens,
               'total_tokens', s.total_tokens, 'estimated_cost_usd', s.estimated_cost_usd)
           ORDER BY s.n), '[]')
  FROM (SELECT @extschema@._summary_keys(summary.group_by) AS keys) k,
       @extschema@.usage_summary(summary.install_id, summary.date_from, summary.date_to, summary.group_by)
           WITH ORDINALITY AS s(usage_date, install_id, wp_user_id_hash, source, model, total_requests,
                                prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens,
                                estimated_cost_usd, n)
$$;
REVOKE ALL ON FUNCTION usage_api.summary(text, date, date, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.summary(text, date, date, text) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.summary(text, date, date, text) IS
    'GET /api/usage/summary?install_id=&date_from=&date_to=&group_by=: a JSON array, one object per group with the grouping keys (date, install_id, wp_user_id_hash, source, model as grouped), total_requests, prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens and estimated_cost_usd. Without install_id: every installation of the caller''s account. See usage_tracking.usage_summary.';

-- GET /api/usage/events ------------------------------------------------------

CREATE FUNCTION usage_api.events(install_id text DEFAULT NULL,
                                 date_from date DEFAULT NULL,
                                 date_to date DEFAULT NULL,
                                 after text DEFAULT NULL,
                                 lim integer DEFAULT 100)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT pg_catalog.jsonb_build_object(
           'events', coalesce(pg_catalog.jsonb_agg(
                         pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.-) 'cursor' OPERATOR(pg_catalog.-) 'n'
                         ORDER BY e.n), '[]'),
           'next', CASE WHEN pg_catalog.count(*) = events.lim
                        THEN (pg_catalog.array_agg(e.cursor ORDER BY e.n DESC))[1] END)
  FROM @extschema@.list_events(events.install_id,
                               events.date_from::timestamp AT TIME ZONE 'UTC',
                               (events.date_to + 1)::timestamp AT TIME ZONE 'UTC',
                               events.after, events.lim)
           WITH ORDINALITY AS e(install_id, event_id, wp_user_id_hash, source, model, prompt_tokens,
                                completion_tokens, cached_prompt_tokens, total_tokens, request_id,
                                context, created_at, received_at, cursor, n)
$$;
REVOKE ALL ON FUNCTION usage_api.events(text, date, date, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.events(text, date, date, text, integer) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.events(text, date, date, text, integer) IS
    'GET /api/usage/events?install_id=&date_from=&date_to=&after=&limit=: {"events": [...], "next": cursor or null}, raw events created on the UTC days date_from to date_to, newest received first, at most lim (1 to 1000, default 100; the gateway''s limit= is lim). Pass next as after for the following page; next is null on a short page.';

-- GET /api/usage/installations (admin) ----------------------------------------

CREATE FUNCTION usage_api.installations(date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(i) ORDER BY i.account_id, i.install_id), '[]')
  FROM @extschema@.installations(installations.date_from, installations.date_to) i
$$;
REVOKE ALL ON FUNCTION usage_api.installations(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.installations(date, date) TO usage_tracking_admin;
COMMENT ON FUNCTION usage_api.installations(date, date) IS
    'GET /api/usage/installations?date_from=&date_to= (admin): a JSON array of every installation with account_id, status, first_seen, last_seen, total_requests, total_tokens and estimated_cost_usd for the period.';

-- POST /api/usage/export ------------------------------------------------------

-- Plain SQL with no SET clause, so the planner inlines it (and export_csv)
-- into the caller's query: the gateway streams rows as they are produced.
CREATE FUNCTION usage_api.export(kind text DEFAULT 'daily', install_id text DEFAULT NULL,
                                 date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL UNSAFE
AS $$
SELECT l FROM @extschema@.export_csv(export.kind, export.install_id, export.date_from, export.date_to) AS l
$$;
REVOKE ALL ON FUNCTION usage_api.export(text, text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.export(text, text, date, date) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.export(text, text, date, date) IS
    'POST /api/usage/export with a JSON body {"kind": "daily"|"events", "install_id", "date_from", "date_to"}: the CSV lines, header first. The gateway streams them as text/csv; PostgREST answers them as a JSON array of lines.';

-- GET /api/usage/quota ---------------------------------------------------------

-- SECURITY DEFINER to read governance's state; the tenant check is the one
-- row-level security makes for the read routes: the installation must be of
-- the account in the JWT claims, unless the caller's role is the admin's.
-- Anything else is "not found", so nobody learns which installations exist.
CREATE FUNCTION usage_api.quota(install_id text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller  text := pg_catalog.current_setting('role');
    owner   text;
BEGIN
    SELECT i.account_id INTO owner FROM @extschema@.installations i WHERE i.install_id = quota.install_id;
    IF owner IS NULL
       OR (owner IS DISTINCT FROM @extschema@.current_account()
           AND NOT pg_catalog.pg_has_role(CASE WHEN caller = 'none' THEN session_user ELSE caller END,
                                          'usage_tracking_admin', 'USAGE')) THEN
        RAISE SQLSTATE 'PGRST'
            USING MESSAGE = json_build_object('code', 'not_found', 'message', 'unknown installation',
                                              'details', NULL, 'hint', NULL)::text,
                  DETAIL = '{"status": 404, "headers": {}}';
    END IF;
    RETURN @extschema@.quota_status(quota.install_id, pg_catalog.now());
END
$$;
REVOKE ALL ON FUNCTION usage_api.quota(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.quota(text) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.quota(text) IS
    'GET /api/usage/quota?install_id=: the quota verdict of usage_tracking.quota_status (level, used, limit, percent, 5-minute window, hour and abuse flags) for an installation of the caller''s account (any installation for the admin); 404 otherwise.';
-- sql/parts/60_analytics.sql — provider analytics across every account: daily
-- totals, cost projection, anomaly detection, top installations, breakdowns by
-- model and by source, and the overview the dashboard shows.  Everything here
-- reads the daily summaries (usage_tracking.daily), never the raw events.

-- Internal: refuse a missing, inverted or over-long date range.
CREATE FUNCTION @extschema@._analytics_range(date_from date, date_to date)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF date_from IS NULL OR date_to IS NULL THEN
        RAISE EXCEPTION 'date_from and date_to are required'
            USING ERRCODE = '22023', HINT = 'Dates are YYYY-MM-DD, both inclusive.';
    END IF;
    IF date_from > date_to THEN
        RAISE EXCEPTION 'date_from % is after date_to %', date_from, date_to
            USING ERRCODE = '22023';
    END IF;
    IF date_to - date_from > 3660 THEN
        RAISE EXCEPTION 'a date range spans at most 3661 days'
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._analytics_range(date, date) IS
    'Internal: raise 22023 unless date_from <= date_to, both given, at most 3661 days apart.';

-- Daily totals --------------------------------------------------------------

CREATE FUNCTION @extschema@.daily_totals(date_from date, date_to date,
                                         install_id text DEFAULT NULL,
                                         account_id text DEFAULT NULL)
RETURNS TABLE (usage_date date, installations bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM @extschema@._analytics_range(date_from, date_to);
    RETURN QUERY
    SELECT g.day::date,
           count(DISTINCT d.install_id),
           coalesce(sum(d.total_requests), 0)::bigint,
           coalesce(sum(d.prompt_tokens), 0)::bigint,
           coalesce(sum(d.completion_tokens), 0)::bigint,
           coalesce(sum(d.cached_prompt_tokens), 0)::bigint,
           coalesce(sum(d.prompt_tokens + d.completion_tokens), 0)::bigint,
           trim_scale(coalesce(sum(d.estimated_cost_usd), 0)),
           coalesce(sum(d.unpriced_requests), 0)::bigint
      FROM pg_catalog.generate_series(date_from::timestamp, date_to::timestamp, interval '1 day') AS g(day)
      LEFT JOIN (SELECT x.* FROM @extschema@.daily x
                   JOIN @extschema@.installations i ON i.install_id = x.install_id
                  WHERE x.usage_date BETWEEN date_from AND date_to
                    AND (install_id IS NULL OR x.install_id = install_id)
                    AND (account_id IS NULL OR i.account_id = account_id)) d
             ON d.usage_date = g.day::date
     GROUP BY g.day
     ORDER BY g.day;
END
$$;
COMMENT ON FUNCTION @extschema@.daily_totals(date, date, text, text) IS
    'One row per UTC day from date_from to date_to (both inclusive, zeros on days without usage): installations with usage, requests, tokens, estimated cost in USD and unpriced requests, for every installation, one installation or one account.';

-- Cost projection -----------------------------------------------------------

CREATE FUNCTION @extschema@.cost_projection(account_id text, month date DEFAULT NULL,
                                            now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    today     date := (now AT TIME ZONE 'UTC')::date;
    m0        date;
    m1        date;
    dim       integer;
    elapsed   numeric;
    remaining numeric;
    upto      date;     -- month to date: days before this one
    rate_to   date;     -- exclusive
    rate_from date;
    status    text;
    total     jsonb;
    models    jsonb;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now is required' USING ERRCODE = '22023';
    END IF;
    IF account_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id USING ERRCODE = '22023';
    END IF;
    m0 := date_trunc('month', coalesce(month, today))::date;
    m1 := (m0 + interval '1 month')::date;
    dim := m1 - m0;
    -- Days of the month elapsed at "now", fractional, between 0 and its length.
    elapsed := least(greatest(extract(epoch FROM now - (m0::timestamp AT TIME ZONE 'UTC')) / 86400, 0), dim);
    remaining := dim - elapsed;
    upto := m0 + ceil(elapsed)::integer;
    status := CASE WHEN elapsed >= dim THEN 'complete' WHEN elapsed <= 0 THEN 'future' ELSE 'current' END;
    -- The run rate is the mean of the 7 whole UTC days before today (the last
    -- 7 days of the month for a past month).
    rate_to := least(today, m1);
    rate_from := rate_to - 7;

    WITH per_model AS (
        SELECT d.model,
               coalesce(sum(d.total_requests) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS req,
               coalesce(sum(d.prompt_tokens + d.completion_tokens) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS tok,
               coalesce(sum(d.estimated_cost_usd) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS cost,
               coalesce(sum(d.unpriced_requests) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS unpriced,
               coalesce(sum(d.total_requests) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS req_rate,
               coalesce(sum(d.prompt_tokens + d.completion_tokens) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS tok_rate,
               coalesce(sum(d.estimated_cost_usd) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS cost_rate
          FROM @extschema@.daily d
          JOIN @extschema@.installations i ON i.install_id = d.install_id
         WHERE (account_id IS NULL OR i.account_id = account_id)
           AND d.usage_date >= least(m0, rate_from)
           AND d.usage_date < m1
         GROUP BY d.model),
    totals AS (
        SELECT coalesce(sum(p.req), 0) AS req, coalesce(sum(p.tok), 0) AS tok,
               coalesce(sum(p.cost), 0) AS cost, coalesce(sum(p.unpriced), 0) AS unpriced,
               coalesce(sum(p.req_rate), 0) AS req_rate, coalesce(sum(p.tok_rate), 0) AS tok_rate,
               coalesce(sum(p.cost_rate), 0) AS cost_rate
          FROM per_model p)
    SELECT jsonb_build_object(
               'month_to_date', jsonb_build_object(
                   'requests', t.req, 'tokens', t.tok,
                   'cost_usd', trim_scale(round(t.cost, 6)), 'unpriced_requests', t.unpriced),
               'run_rate_7d', jsonb_build_object(
                   'from', rate_from, 'to', rate_to - 1,
                   'requests_per_day', trim_scale(round(t.req_rate, 4)),
                   'tokens_per_day', trim_scale(round(t.tok_rate, 4)),
                   'cost_usd_per_day', trim_scale(round(t.cost_rate, 6))),
               'projected_run_rate', jsonb_build_object(
                   'requests', round(t.req + t.req_rate * remaining),
                   'tokens', round(t.tok + t.tok_rate * remaining),
                   'cost_usd', trim_scale(round(t.cost + t.cost_rate * remaining, 6))),
               'projected_linear', CASE WHEN elapsed > 0 THEN jsonb_build_object(
                   'requests', round(t.req * dim / elapsed),
                   'tokens', round(t.tok * dim / elapsed),
                   'cost_usd', trim_scale(round(t.cost * dim / elapsed, 6))) END),
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'model', p.model, 'requests', p.req, 'tokens', p.tok,
                       'cost_usd', trim_scale(round(p.cost, 6)), 'unpriced_requests', p.unpriced,
                       'cost_usd_per_day_7d', trim_scale(round(p.cost_rate, 6)),
                       'projected_run_rate_cost_usd', trim_scale(round(p.cost + p.cost_rate * remaining, 6)),
                       'projected_linear_cost_usd',
                           CASE WHEN elapsed > 0 THEN trim_scale(round(p.cost * dim / elapsed, 6)) END)
                       ORDER BY p.cost DESC, p.req DESC, p.model), '[]'::jsonb)
              FROM per_model p)
      INTO total, models
      FROM totals t;

    RETURN jsonb_build_object(
               'account_id', account_id,
               'month', m0,
               'as_of', now,
               'status', status,
               'days_in_month', dim,
               'days_elapsed', trim_scale(round(elapsed, 6)))
           || total
           || jsonb_build_object('by_model', models);
END
$$;
COMMENT ON FUNCTION @extschema@.cost_projection(text, date, timestamptz) IS
    'Month-to-date requests, tokens and estimated cost of an account (NULL: every account) for the UTC calendar month holding "month" (NULL: the month of "now"), and the projected month end two ways: month to date plus the mean of the 7 whole days before today times the days left (projected_run_rate), and month to date divided by the days elapsed times the days in the month (projected_linear); with a per-model breakdown.';

-- Anomalies -----------------------------------------------------------------
--
-- Each installation, account and model is compared with its own recent past:
-- its requests, tokens and cost on "day" against the same metric on each of
-- the 28 days before (days without usage count as 0).  The score is the
-- robust z-score 0.6745 * (x - median) / MAD.  When more than half the
-- history is one value the MAD is 0: the score then uses the mean absolute
-- deviation around the median, (x - median) / (1.2533 * MeanAD); when the
-- history is perfectly flat at a level m > 0, its spread is taken as 10 % of
-- m.  A day is an anomaly when |score| >= min_score and the day is outside
-- the range of its history (above its highest day or below its lowest), so a
-- site that is busy every few days is not flagged on each busy day.
-- History starts at the subject's first usage (looked for 56 days back);
-- with fewer than 7 days of it, or none but zeros, the subject is new (or
-- back from 28 silent days) and is not scored: a new site's first bulk run
-- over its media library is expected, not an anomaly.

CREATE FUNCTION @extschema@._anomalies(day date, min_score numeric, only_install text)
RETURNS TABLE (kind text, id text, account_id text, metric text, value numeric,
               median numeric, mad numeric, score numeric, direction text,
               history_days integer, reason text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planned for the arguments of each call: one installation's history is read
-- through the primary key, and the account and model branches drop out.
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    IF day IS NULL THEN
        RAISE EXCEPTION 'day is required' USING ERRCODE = '22023';
    END IF;
    IF min_score IS NULL OR min_score < 0 THEN
        RAISE EXCEPTION 'min_score must be a number >= 0' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH per_install AS (
        SELECT d.install_id AS s_install, d.usage_date AS s_date,
               sum(d.total_requests)::numeric AS s_requests,
               sum(d.prompt_tokens + d.completion_tokens)::numeric AS s_tokens,
               coalesce(sum(d.estimated_cost_usd), 0) AS s_cost
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN _anomalies.day - 56 AND _anomalies.day
           AND (_anomalies.only_install IS NULL OR d.install_id = _anomalies.only_install)
         GROUP BY d.install_id, d.usage_date),
    series AS (
        SELECT 'installation'::text AS s_kind, p.s_install AS s_id, i.account_id AS s_account,
               p.s_date, p.s_requests, p.s_tokens, p.s_cost
          FROM per_install p
          JOIN @extschema@.installations i ON i.install_id = p.s_install
        UNION ALL
        SELECT 'account', i.account_id, i.account_id, p.s_date,
               sum(p.s_requests), sum(p.s_tokens), sum(p.s_cost)
          FROM per_install p
          JOIN @extschema@.installations i ON i.install_id = p.s_install
         WHERE _anomalies.only_install IS NULL
         GROUP BY i.account_id, p.s_date
        UNION ALL
        SELECT 'model', d.model, NULL, d.usage_date,
               sum(d.total_requests)::numeric, sum(d.prompt_tokens + d.completion_tokens)::numeric,
               coalesce(sum(d.estimated_cost_usd), 0)
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN _anomalies.day - 56 AND _anomalies.day
           AND _anomalies.only_install IS NULL
         GROUP BY d.model, d.usage_date),
    subjects AS (
        SELECT s.s_kind, s.s_id, s.s_account,
               greatest(min(s.s_date), _anomalies.day - 28) AS s_since
          FROM series s
         GROUP BY s.s_kind, s.s_id, s.s_account
        HAVING max(s.s_date) >= _anomalies.day - 28),
    -- The days of each history that had usage, and the day itself.
    present AS (
        SELECT sub.s_kind, sub.s_id, sub.s_account, sub.s_since,
               s.s_date = _anomalies.day AS p_today, s.s_requests, s.s_tokens, s.s_cost
          FROM subjects sub
          JOIN series s ON s.s_kind = sub.s_kind AND s.s_id = sub.s_id
         WHERE s.s_date >= sub.s_since),
    -- How many days of each history had no usage: they count as zeros.
    quiet AS (
        SELECT p.s_kind, p.s_id, p.s_account,
               (_anomalies.day - min(p.s_since)) - count(*) FILTER (WHERE NOT p.p_today) AS q_days
          FROM present p
         GROUP BY p.s_kind, p.s_id, p.s_account),
    points AS (
        SELECT p.s_kind, p.s_id, p.s_account, p.p_today, m.m_metric, m.m_value
          FROM present p
         CROSS JOIN LATERAL (VALUES ('requests', p.s_requests),
                                    ('tokens', p.s_tokens),
                                    ('cost_usd', p.s_cost)) m(m_metric, m_value)
        UNION ALL
        SELECT q.s_kind, q.s_id, q.s_account, false, m.m_metric, 0::numeric
          FROM quiet q
         CROSS JOIN LATERAL pg_catalog.generate_series(1, q.q_days) z
         CROSS JOIN (VALUES ('requests'), ('tokens'), ('cost_usd')) m(m_metric)),
    centre AS (
        SELECT p.s_kind, p.s_id, p.s_account, p.m_metric,
               count(*) FILTER (WHERE NOT p.p_today) AS c_n,
               coalesce(max(p.m_value) FILTER (WHERE p.p_today), 0) AS c_x,
               min(p.m_value) FILTER (WHERE NOT p.p_today) AS c_min,
               max(p.m_value) FILTER (WHERE NOT p.p_today) AS c_max,
               (percentile_disc(0.5) WITHIN GROUP (ORDER BY p.m_value)
                    FILTER (WHERE NOT p.p_today)
                + percentile_disc(0.5) WITHIN GROUP (ORDER BY p.m_value DESC)
                    FILTER (WHERE NOT p.p_today)) / 2 AS c_med
          FROM points p
         GROUP BY p.s_kind, p.s_id, p.s_account, p.m_metric),
    spread AS (
        SELECT c.s_kind, c.s_id, c.s_account, c.m_metric, c.c_n, c.c_x, c.c_min, c.c_max, c.c_med,
               (percentile_disc(0.5) WITHIN GROUP (ORDER BY abs(p.m_value - c.c_med))
                + percentile_disc(0.5) WITHIN GROUP (ORDER BY abs(p.m_value - c.c_med) DESC)) / 2 AS c_mad,
               avg(abs(p.m_value - c.c_med)) AS c_meanad
          FROM centre c
          JOIN points p ON p.s_kind = c.s_kind AND p.s_id = c.s_id AND p.m_metric = c.m_metric
         WHERE NOT p.p_today
           AND c.c_n >= 7
           AND c.c_max > 0
         GROUP BY c.s_kind, c.s_id, c.s_account, c.m_metric, c.c_n, c.c_x, c.c_min, c.c_max, c.c_med),
    scored AS (
        SELECT sp.*,
               CASE WHEN sp.c_mad > 0 THEN 0.6745 * (sp.c_x - sp.c_med) / sp.c_mad
                    WHEN sp.c_meanad > 0 THEN (sp.c_x - sp.c_med) / (1.2533 * sp.c_meanad)
                    ELSE (sp.c_x - sp.c_med) / (0.1 * sp.c_med) END AS z,
               CASE WHEN sp.c_mad > 0 THEN 'MAD'
                    WHEN sp.c_meanad > 0 THEN 'mean absolute deviation (MAD is 0)'
                    ELSE 'flat history (spread taken as 10% of the median)' END AS z_method
          FROM spread sp),
    flagged AS (
        SELECT DISTINCT ON (s.s_kind, s.s_id) s.*
          FROM scored s
         WHERE abs(s.z) >= _anomalies.min_score
           AND (s.c_x > s.c_max OR s.c_x < s.c_min)
         ORDER BY s.s_kind, s.s_id, round(abs(s.z), 6) DESC,
                  array_position(ARRAY['requests', 'tokens', 'cost_usd'], s.m_metric))
    SELECT f.s_kind, f.s_id, f.s_account, f.m_metric,
           trim_scale(round(f.c_x, 6)), trim_scale(round(f.c_med, 6)), trim_scale(round(f.c_mad, 6)),
           round(f.z, 2),
           CASE WHEN f.z > 0 THEN 'spike' ELSE 'drop' END,
           f.c_n::integer,
           pg_catalog.format('%s %s on %s against a median of %s over the %s days before: robust z %s (%s)',
                             f.m_metric, trim_scale(round(f.c_x, 6)), _anomalies.day,
                             trim_scale(round(f.c_med, 6)), f.c_n, round(f.z, 2), f.z_method)
      FROM flagged f
     ORDER BY abs(f.z) DESC, f.s_kind DESC, f.s_id;
END
$$;
COMMENT ON FUNCTION @extschema@._anomalies(date, numeric, text) IS
    'Internal: anomalies(day, min_score), or only one installation''s when only_install is given.';

CREATE FUNCTION @extschema@.anomalies(day date, min_score numeric DEFAULT 3.5)
RETURNS TABLE (kind text, id text, account_id text, metric text, value numeric,
               median numeric, mad numeric, score numeric, direction text,
               history_days integer, reason text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._anomalies(day, min_score, NULL) $$;
COMMENT ON FUNCTION @extschema@.anomalies(date, numeric) IS
    'Installations, accounts and models whose usage on "day" (UTC) is far from their own previous 28 days: robust z-score 0.6745 * (x - median) / MAD of requests, tokens or cost (the strongest metric per subject), at least min_score in absolute value and outside the history''s range. Falls back to the mean absolute deviation when the MAD is 0; subjects with fewer than 7 days of history are not scored. See the README for the method.';

-- Top installations ---------------------------------------------------------

CREATE FUNCTION @extschema@.top_installations(date_from date, date_to date,
                                              by text DEFAULT 'cost', lim integer DEFAULT 20)
RETURNS TABLE (rank bigint, install_id text, account_id text, status text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               active_days bigint, share_pct numeric, last_seen_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM @extschema@._analytics_range(top_installations.date_from, top_installations.date_to);
    IF top_installations.by IS NULL OR top_installations.by NOT IN ('cost', 'requests', 'tokens') THEN
        RAISE EXCEPTION 'by must be cost, requests or tokens' USING ERRCODE = '22023';
    END IF;
    IF top_installations.lim IS NULL OR top_installations.lim NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'lim must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH per_install AS (
        SELECT d.install_id AS p_install,
               sum(d.total_requests)::bigint AS p_requests,
               sum(d.prompt_tokens)::bigint AS p_prompt,
               sum(d.completion_tokens)::bigint AS p_completion,
               coalesce(sum(d.estimated_cost_usd), 0) AS p_cost,
               sum(d.unpriced_requests)::bigint AS p_unpriced,
               count(DISTINCT d.usage_date) AS p_days
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN top_installations.date_from AND top_installations.date_to
         GROUP BY d.install_id),
    measured AS (
        SELECT p.*, CASE top_installations.by
                        WHEN 'cost' THEN p.p_cost
                        WHEN 'requests' THEN p.p_requests::numeric
                        ELSE (p.p_prompt + p.p_completion)::numeric END AS p_measure
          FROM per_install p)
    SELECT row_number() OVER (ORDER BY m.p_measure DESC, m.p_install),
           m.p_install, i.account_id, i.status,
           m.p_requests, m.p_prompt, m.p_completion, m.p_prompt + m.p_completion,
           trim_scale(m.p_cost), m.p_unpriced, m.p_days,
           CASE WHEN sum(m.p_measure) OVER () > 0
                THEN round(100 * m.p_measure / sum(m.p_measure) OVER (), 2) ELSE 0 END,
           i.last_seen_at
      FROM measured m
      JOIN @extschema@.installations i ON i.install_id = m.p_install
     ORDER BY m.p_measure DESC, m.p_install
     LIMIT top_installations.lim;
END
$$;
COMMENT ON FUNCTION @extschema@.top_installations(date, date, text, integer) IS
    'The lim installations with the highest cost, requests or tokens ("by") from date_from to date_to (UTC days, inclusive), across every account, with their share of the total in percent.';

-- Breakdowns ----------------------------------------------------------------

CREATE FUNCTION @extschema@._breakdown(dimension text, date_from date, date_to date, install_id text)
RETURNS TABLE (key text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM @extschema@._analytics_range(_breakdown.date_from, _breakdown.date_to);
    RETURN QUERY
    SELECT b.b_key, b.b_installs, b.b_accounts, b.b_requests, b.b_prompt, b.b_completion,
           b.b_cached, b.b_prompt + b.b_completion, trim_scale(b.b_cost), b.b_unpriced,
           CASE WHEN sum(b.b_cost) OVER () > 0
                THEN round(100 * b.b_cost / sum(b.b_cost) OVER (), 2) ELSE 0 END
      FROM (SELECT CASE _breakdown.dimension WHEN 'model' THEN d.model ELSE d.source END AS b_key,
                   count(DISTINCT d.install_id) AS b_installs,
                   count(DISTINCT i.account_id) AS b_accounts,
                   sum(d.total_requests)::bigint AS b_requests,
                   sum(d.prompt_tokens)::bigint AS b_prompt,
                   sum(d.completion_tokens)::bigint AS b_completion,
                   sum(d.cached_prompt_tokens)::bigint AS b_cached,
                   coalesce(sum(d.estimated_cost_usd), 0) AS b_cost,
                   sum(d.unpriced_requests)::bigint AS b_unpriced
              FROM @extschema@.daily d
              JOIN @extschema@.installations i ON i.install_id = d.install_id
             WHERE d.usage_date BETWEEN _breakdown.date_from AND _breakdown.date_to
               AND (_breakdown.install_id IS NULL OR d.install_id = _breakdown.install_id)
             GROUP BY 1) b
     ORDER BY b.b_cost DESC, b.b_requests DESC, b.b_key;
END
$$;
COMMENT ON FUNCTION @extschema@._breakdown(text, date, date, text) IS
    'Internal: usage from date_from to date_to grouped by model or by source.';

CREATE FUNCTION @extschema@.model_breakdown(date_from date, date_to date, install_id text DEFAULT NULL)
RETURNS TABLE (model text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._breakdown('model', date_from, date_to, install_id) $$;
COMMENT ON FUNCTION @extschema@.model_breakdown(date, date, text) IS
    'Usage per model from date_from to date_to (UTC days, inclusive) across every account (or one installation): installations and accounts using it, requests, tokens, estimated cost and its share of the cost in percent.';

CREATE FUNCTION @extschema@.source_breakdown(date_from date, date_to date, install_id text DEFAULT NULL)
RETURNS TABLE (source text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._breakdown('source', date_from, date_to, install_id) $$;
COMMENT ON FUNCTION @extschema@.source_breakdown(date, date, text) IS
    'Usage per source (manual, bulk, queue, inline) from date_from to date_to (UTC days, inclusive) across every account (or one installation): installations and accounts, requests, tokens, estimated cost and its share of the cost in percent.';

-- Overview ------------------------------------------------------------------

CREATE FUNCTION @extschema@.provider_overview(day date DEFAULT NULL, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    as_of timestamptz := now;
    proj  jsonb;
    today jsonb;
    inst  jsonb;
    accts jsonb;
BEGIN
    IF day IS NULL THEN
        day := (now AT TIME ZONE 'UTC')::date;
    ELSE
        as_of := (day + 1)::timestamp AT TIME ZONE 'UTC';    -- the end of that day
    END IF;
    proj := @extschema@.cost_projection(NULL, day, as_of);
    SELECT jsonb_build_object('requests', t.total_requests, 'tokens', t.total_tokens,
                              'cost_usd', trim_scale(round(t.estimated_cost_usd, 6)),
                              'installations', t.installations)
      INTO today
      FROM @extschema@.daily_totals(day, day) t;
    SELECT jsonb_build_object('total', count(*),
                              'active', count(*) FILTER (WHERE i.status = 'active'),
                              'suspended', count(*) FILTER (WHERE i.status = 'suspended'))
      INTO inst
      FROM @extschema@.installations i;
    SELECT jsonb_build_object('total', count(*),
                              'active', count(*) FILTER (WHERE a.status = 'active'))
      INTO accts
      FROM @extschema@.accounts a;
    RETURN jsonb_build_object(
        'day', day,
        'as_of', as_of,
        'installations', inst,
        'accounts', accts,
        'today', today,
        'month_to_date', proj->'month_to_date',
        'projected', jsonb_build_object(
            'run_rate', proj->'projected_run_rate',
            'linear', proj->'projected_linear'),
        'projection', proj);
END
$$;
COMMENT ON FUNCTION @extschema@.provider_overview(date, timestamptz) IS
    'The provider''s overview as of the end of "day" (NULL: as of "now"): installations and accounts, requests, tokens and cost on that day, month to date and projected to the month end (cost_projection over every account).';

-- Privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@._analytics_range(date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._breakdown(text, date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anomalies(date, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.daily_totals(date, date, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.cost_projection(text, date, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.anomalies(date, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.top_installations(date, date, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.model_breakdown(date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.source_breakdown(date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_overview(date, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.daily_totals(date, date, text, text),
    @extschema@.cost_projection(text, date, timestamptz),
    @extschema@.anomalies(date, numeric),
    @extschema@.top_installations(date, date, text, integer),
    @extschema@.model_breakdown(date, date, text),
    @extschema@.source_breakdown(date, date, text),
    @extschema@.provider_overview(date, timestamptz)
    TO usage_tracking_admin, usage_tracking_analyst;
-- sql/parts/61_analytics_api.sql — the HTTP routes of provider analytics, in
-- the PostgREST-style schema usage_api: each function answers GET
-- /rpc/<name>?<arg>=<value>&… with one JSON document.  They are what the
-- dashboard reads; all are STABLE (PostgREST serves only those over GET) and
-- call the usage_tracking analytics functions.
-- The HTTP schema is created by the API part; create it here only when
-- absent, quietly (CREATE SCHEMA IF NOT EXISTS would raise a notice).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'usage_api') THEN
        CREATE SCHEMA usage_api;
    END IF;
END
$$;

CREATE FUNCTION usage_api.analytics_overview(day date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.provider_overview(day) $$;
COMMENT ON FUNCTION usage_api.analytics_overview(date) IS
    'GET /rpc/analytics_overview?day=: installations, accounts, requests, tokens and cost on the day (default today, UTC), month to date and projected to the month end, over every account.';

CREATE FUNCTION usage_api.analytics_daily(date_from date, date_to date,
                                          install_id text DEFAULT NULL,
                                          account_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'date', t.usage_date, 'installations', t.installations,
               'requests', t.total_requests, 'prompt_tokens', t.prompt_tokens,
               'completion_tokens', t.completion_tokens, 'tokens', t.total_tokens,
               'cost_usd', t.estimated_cost_usd, 'unpriced_requests', t.unpriced_requests)
               ORDER BY t.usage_date), '[]'::jsonb)
      FROM @extschema@.daily_totals(date_from, date_to, install_id, account_id) t
$$;
COMMENT ON FUNCTION usage_api.analytics_daily(date, date, text, text) IS
    'GET /rpc/analytics_daily?date_from=&date_to=&install_id=&account_id=: one object per UTC day (zeros included) with requests, tokens and cost.';

CREATE FUNCTION usage_api.analytics_top_installations(date_from date, date_to date,
                                                      by text DEFAULT 'cost',
                                                      lim integer DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.rank), '[]'::jsonb)
      FROM @extschema@.top_installations(date_from, date_to, by, lim) t
$$;
COMMENT ON FUNCTION usage_api.analytics_top_installations(date, date, text, integer) IS
    'GET /rpc/analytics_top_installations?date_from=&date_to=&by=cost|requests|tokens&lim=: the top installations across every account.';

CREATE FUNCTION usage_api.analytics_anomalies(day date, min_score numeric DEFAULT 3.5)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]'::jsonb)
      FROM @extschema@.anomalies(day, min_score) a
$$;
COMMENT ON FUNCTION usage_api.analytics_anomalies(date, numeric) IS
    'GET /rpc/analytics_anomalies?day=&min_score=: installations, accounts and models whose day is far from their previous 28 days, strongest first.';

CREATE FUNCTION usage_api.analytics_breakdown(by text, date_from date, date_to date,
                                              install_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF by = 'model' THEN
        RETURN (SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb)
                  FROM @extschema@.model_breakdown(date_from, date_to, install_id) b);
    ELSIF by = 'source' THEN
        RETURN (SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb)
                  FROM @extschema@.source_breakdown(date_from, date_to, install_id) b);
    END IF;
    RAISE EXCEPTION 'by must be model or source' USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION usage_api.analytics_breakdown(text, date, date, text) IS
    'GET /rpc/analytics_breakdown?by=model|source&date_from=&date_to=&install_id=: usage per model or per source, across every account or for one installation.';

CREATE FUNCTION usage_api.analytics_projection(account_id text DEFAULT NULL, month date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.cost_projection(account_id, month) $$;
COMMENT ON FUNCTION usage_api.analytics_projection(text, date) IS
    'GET /rpc/analytics_projection?account_id=&month=: the cost projection of one account (default every account) for a month (default this one).';

CREATE FUNCTION usage_api.analytics_installation(install_id text, day date DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d    date := coalesce(day, (pg_catalog.now() AT TIME ZONE 'UTC')::date);
    m0   date := date_trunc('month', d)::date;
    info jsonb;
BEGIN
    SELECT jsonb_build_object(
               'install_id', i.install_id, 'account_id', i.account_id, 'status', i.status,
               'plan', a.plan, 'account_status', a.status,
               'first_seen_at', i.first_seen_at, 'last_seen_at', i.last_seen_at,
               'plugin_version', i.plugin_version, 'created_at', i.created_at)
      INTO info
      FROM @extschema@.installations i
      JOIN @extschema@.accounts a ON a.account_id = i.account_id
     WHERE i.install_id = analytics_installation.install_id;
    IF info IS NULL THEN
        RAISE SQLSTATE 'PT404' USING MESSAGE = 'unknown installation';
    END IF;
    RETURN info || jsonb_build_object(
        'day', d,
        'today', (SELECT jsonb_build_object('requests', t.total_requests, 'tokens', t.total_tokens,
                                            'cost_usd', t.estimated_cost_usd)
                    FROM @extschema@.daily_totals(d, d, analytics_installation.install_id) t),
        'month_to_date', (SELECT jsonb_build_object('requests', sum(t.total_requests),
                                                    'tokens', sum(t.total_tokens),
                                                    'cost_usd', sum(t.estimated_cost_usd),
                                                    'unpriced_requests', sum(t.unpriced_requests))
                            FROM @extschema@.daily_totals(m0, d, analytics_installation.install_id) t),
        'last_30_days', (SELECT jsonb_build_object('requests', sum(t.total_requests),
                                                   'tokens', sum(t.total_tokens),
                                                   'cost_usd', sum(t.estimated_cost_usd),
                                                   'active_days', count(*) FILTER (WHERE t.total_requests > 0))
                           FROM @extschema@.daily_totals(d - 29, d, analytics_installation.install_id) t),
        'anomalies', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.on_day DESC), '[]'::jsonb)
                        FROM (SELECT g::date AS on_day, a.metric, a.value, a.median, a.score, a.direction, a.reason
                                FROM pg_catalog.generate_series(d - 29, d, interval '1 day') g,
                                     @extschema@._anomalies(g::date, 3.5, analytics_installation.install_id) a) x));
END
$$;
COMMENT ON FUNCTION usage_api.analytics_installation(text, date) IS
    'GET /rpc/analytics_installation?install_id=&day=: one installation''s account, status, first and last seen, usage on the day, month to date and over the last 30 days, and its anomalies in those 30 days. 404 when unknown.';

GRANT USAGE ON SCHEMA usage_api TO usage_tracking_admin, usage_tracking_analyst;
REVOKE ALL ON FUNCTION usage_api.analytics_overview(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_daily(date, date, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_top_installations(date, date, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_anomalies(date, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_breakdown(text, date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_projection(text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_installation(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    usage_api.analytics_overview(date),
    usage_api.analytics_daily(date, date, text, text),
    usage_api.analytics_top_installations(date, date, text, integer),
    usage_api.analytics_anomalies(date, numeric),
    usage_api.analytics_breakdown(text, date, date, text),
    usage_api.analytics_projection(text, date),
    usage_api.analytics_installation(text, date)
    TO usage_tracking_admin, usage_tracking_analyst;
-- sql/parts/99_privileges.sql — runs last: PUBLIC gets nothing, and each role
-- gets the least it needs (README, "Roles").  Other parts grant the functions
-- they add to the roles that call them; revoking from PUBLIC here leaves
-- those grants alone.

DO $$
DECLARE
    s text;
BEGIN
    FOREACH s IN ARRAY ARRAY['@extschema@', 'usage_api'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = s);
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM PUBLIC', s);
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM PUBLIC', s);
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA %I FROM PUBLIC', s);
        EXECUTE pg_catalog.format('REVOKE ALL ON ALL PROCEDURES IN SCHEMA %I FROM PUBLIC', s);
        EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', s);
    END LOOP;
END
$$;

-- Validators and the tenant of the request: harmless, and needed by whoever
-- calls the read functions (policies and inlined SQL run as the caller).
GRANT EXECUTE ON FUNCTION @extschema@.current_account(),
                          @extschema@._summary_keys(text),
                          @extschema@._check_range(anyelement, anyelement),
                          @extschema@._event_cursor(timestamptz, text, text, timestamptz),
                          @extschema@._cursor_key(text),
                          @extschema@._check_lim(integer),
                          @extschema@._csv(text),
                          @extschema@._export_kind(text, date, date)
    TO usage_tracking_reader, usage_tracking_analyst, usage_tracking_admin;

-- Reader: its account's data, through the read functions and views.
GRANT EXECUTE ON FUNCTION @extschema@.usage_summary(text, date, date, text),
                          @extschema@.list_events(text, timestamptz, timestamptz, text, integer),
                          @extschema@.export_csv(text, text, date, date)
    TO usage_tracking_reader, usage_tracking_admin;
GRANT SELECT ON @extschema@.usage_events, @extschema@.daily_usage,
                @extschema@.monthly_usage, @extschema@.installation_usage
    TO usage_tracking_reader;
GRANT SELECT ON @extschema@.events, @extschema@.daily TO usage_tracking_reader;
GRANT SELECT (install_id, account_id, status, first_seen_at, last_seen_at, plugin_version, created_at)
    ON @extschema@.installations TO usage_tracking_reader;
GRANT SELECT (account_id, plan, status) ON @extschema@.accounts TO usage_tracking_reader;

-- Analyst: the BI views of every account, and the columns they read.
GRANT SELECT ON @extschema@.daily_usage, @extschema@.monthly_usage, @extschema@.installation_usage
    TO usage_tracking_analyst;
GRANT SELECT ON @extschema@.daily TO usage_tracking_analyst;
GRANT SELECT (install_id, account_id, status, first_seen_at, last_seen_at)
    ON @extschema@.installations TO usage_tracking_analyst;

-- Admin: accounts, installations, plans and prices, through the functions
-- that keep them consistent; reads everything but secrets.
GRANT EXECUTE ON FUNCTION @extschema@.create_account(text, text),
                          @extschema@.register_installation(text, text, text, timestamptz),
                          @extschema@.set_installation_status(text, text),
                          @extschema@.set_model_price(text, numeric, numeric, numeric, timestamptz),
                          @extschema@.ensure_partitions(timestamptz, timestamptz),
                          @extschema@.ingest(text, text, timestamptz, text),
                          @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz),
                          @extschema@.hmac_sha256_hex(text, text),
                          @extschema@.generate_secret(),
                          @extschema@.retention(text),
                          @extschema@.installations(date, date)
    TO usage_tracking_admin;
GRANT SELECT ON @extschema@.plans, @extschema@.accounts, @extschema@.installations,
                @extschema@.model_prices, @extschema@.events, @extschema@.daily,
                @extschema@.error_codes, @extschema@.usage_events, @extschema@.daily_usage,
                @extschema@.monthly_usage, @extschema@.installation_usage
    TO usage_tracking_admin;
GRANT INSERT, UPDATE, DELETE ON @extschema@.plans, @extschema@.model_prices TO usage_tracking_admin;
GRANT UPDATE (status) ON @extschema@.accounts TO usage_tracking_admin;

-- Ingest: nothing here.  It calls the HTTP ingest route only, which checks
-- the signature against the server clock and the tenant of the JWT; the
-- core ingest() takes "now" and the tenant as arguments, so it is an admin
-- function.
