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
