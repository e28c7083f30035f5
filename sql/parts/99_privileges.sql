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
