-- search_path hijack of SECURITY DEFINER functions.  Every SECURITY DEFINER
-- function of the extension pins search_path to pg_catalog, pg_temp (checked
-- in the catalog, so functions added later are covered), and a caller who
-- puts a schema full of look-alike objects first in its search_path — and
-- temporary ones too — changes nothing those functions do: no trap fires,
-- no result changes.
\set VERBOSITY terse

-- 1. The catalog: every SECURITY DEFINER function in the extension's
--    schemas or owned by the extension pins the search_path.
SELECT p.oid::regprocedure AS unpinned_security_definer
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef
   AND (n.nspname IN ('usage_tracking', 'usage_api')
        OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension x ON x.oid = d.refobjid
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e' AND x.extname = 'usage_tracking'))
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1::text;
SELECT count(*) > 20 AS many_security_definer_functions_checked
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.prosecdef AND n.nspname IN ('usage_tracking', 'usage_api');

-- 2. Behaviour: a schema of traps.  Each trap logs that it ran.
CREATE SCHEMA hijack;
CREATE TABLE hijack.trap_log (trap text);
GRANT USAGE ON SCHEMA hijack TO PUBLIC;
GRANT INSERT, SELECT ON hijack.trap_log TO PUBLIC;
CREATE FUNCTION hijack.trap(name text) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO hijack.trap_log VALUES (name) $$;
-- Look-alikes of the extension's own functions ...
CREATE FUNCTION hijack.generate_secret() RETURNS text LANGUAGE sql AS
  $$ SELECT hijack.trap('generate_secret'); SELECT 'hijacked-secret-0123456789' $$;
CREATE FUNCTION hijack.retention(text) RETURNS interval LANGUAGE sql AS
  $$ SELECT hijack.trap('retention'); SELECT interval '1000 years' $$;
CREATE FUNCTION hijack.hmac_sha256_hex(text, text) RETURNS text LANGUAGE sql AS
  $$ SELECT hijack.trap('hmac_sha256_hex'); SELECT 'x' $$;
CREATE FUNCTION hijack.current_account() RETURNS text LANGUAGE sql AS
  $$ SELECT hijack.trap('current_account'); SELECT 'acc_rel62' $$;
-- ... of built-in functions and operators ...
CREATE FUNCTION hijack.now() RETURNS timestamptz LANGUAGE sql AS
  $$ SELECT hijack.trap('now'); SELECT timestamptz '2000-01-01' $$;
CREATE FUNCTION hijack.lower(text) RETURNS text LANGUAGE sql AS
  $$ SELECT hijack.trap('lower'); SELECT $1 $$;
CREATE FUNCTION hijack.length(text) RETURNS integer LANGUAGE sql AS
  $$ SELECT hijack.trap('length'); SELECT 20 $$;
CREATE FUNCTION hijack.text_eq(text, text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT hijack.trap('='); SELECT true $$;
CREATE OPERATOR hijack.= (LEFTARG = text, RIGHTARG = text, FUNCTION = hijack.text_eq);
CREATE FUNCTION hijack.text_ne(text, text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT hijack.trap('<>'); SELECT false $$;
CREATE OPERATOR hijack.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = hijack.text_ne);
-- ... and of the extension's tables.
CREATE TABLE hijack.installations (install_id text, account_id text, status text);
CREATE TABLE hijack.installation_secrets (install_id text, secret text);
CREATE TABLE hijack.accounts (account_id text, plan text, status text);
CREATE TABLE hijack.events (install_id text, event_id text);
CREATE TABLE hijack.daily (install_id text);
CREATE TABLE hijack.plans (plan text);
CREATE TABLE hijack.model_prices (model text);
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA hijack TO PUBLIC;

-- The batch to post, signed before the search_path changes.
SELECT t.batch('62626262-6262-4262-8262-626262626262_626262626262',
               jsonb_build_array(t.event('sp_1', '2025-11-03 10:00+00', usr => 62),
                                 t.event('sp_2', '2025-11-03 10:05+00', usr => 62))) AS body \gset
SELECT t.sig(:'body', 'rel62-secret-0123456789abcdef', '2025-11-03 12:00:00+00') AS sig,
       t.sig(:'body', 'hijacked-secret-0123456789', '2025-11-03 12:00:00+00') AS forged_sig \gset

-- The caller's search_path: the traps first, its temporary schema next.
SET search_path = hijack, pg_temp, public, pg_catalog;
CREATE TEMP TABLE installations (install_id text, account_id text, status text);
CREATE TEMP TABLE installation_secrets (install_id text, secret text);
INSERT INTO pg_temp.installation_secrets VALUES ('62626262-6262-4262-8262-626262626262_626262626262', 'hijacked-secret-0123456789');
-- The traps are live for unpinned code: this statement sets one off.
SELECT 'a' = 'b' AS hijacked_equality_in_the_callers_own_sql;
TRUNCATE hijack.trap_log;

SELECT usage_tracking.create_account('acc_rel62', 'pro');
SELECT usage_tracking.create_account('acc_rel62b', 'pro');
SELECT usage_tracking.register_installation('62626262-6262-4262-8262-626262626262_aaaaaaaaaaaa', 'acc_rel62b') AS generated \gset
SELECT usage_tracking.register_installation('62626262-6262-4262-8262-626262626262_626262626262',
                                            'acc_rel62', 'rel62-secret-0123456789abcdef') IS NOT NULL AS registered;
SELECT usage_tracking.set_model_price('rel62-model', 1, 2);
SELECT usage_tracking.set_installation_status('62626262-6262-4262-8262-626262626262_aaaaaaaaaaaa', 'suspended');
-- A signature made with the planted secret does not verify; the real one does.
SELECT t.outcome(:'body', :'forged_sig', '2025-11-03 12:00:00+00');
SELECT r->>'received' AS received, r->'event_ids' AS event_ids
  FROM usage_tracking.ingest(:'body', :'sig', '2025-11-03 12:00:00+00') r;
SELECT t.outcome(:'body', :'sig', '2025-11-03 12:00:00+00', 'acc_rel62b');
SELECT usage_tracking.quota_status('62626262-6262-4262-8262-626262626262_626262626262',
                                   '2025-11-03 12:00:00+00') ->> 'used' AS used;

-- Nothing the traps offered was used.
SELECT count(*) AS traps_fired, string_agg(DISTINCT trap, ', ') AS which FROM hijack.trap_log;
SELECT count(*) AS planted_rows_read_or_written
  FROM (SELECT install_id FROM hijack.installations UNION ALL SELECT install_id FROM hijack.events
        UNION ALL SELECT install_id FROM hijack.daily UNION ALL SELECT account_id FROM hijack.accounts) x;

RESET search_path;
-- The generated secret came from the extension's own generator.
SELECT length(:'generated') AS generated_secret_length, :'generated' ~ '^[0-9a-f]{64}$' AS hex;
SELECT count(*) AS events_stored FROM usage_tracking.events
 WHERE install_id = '62626262-6262-4262-8262-626262626262_626262626262';
SELECT count(*) AS drift_rows FROM t.drift
 WHERE install_id = '62626262-6262-4262-8262-626262626262_626262626262';
DROP SCHEMA hijack CASCADE;
