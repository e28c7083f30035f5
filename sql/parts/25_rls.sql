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
