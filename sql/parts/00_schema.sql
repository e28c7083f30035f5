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
