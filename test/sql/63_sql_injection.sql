-- SQL injection through text parameters.  Every function of the extension
-- (found in the catalog, so later ones are covered too) is called with
-- injection payloads in each of its text, json and jsonb parameters, one at
-- a time, the other parameters holding plausible values.  No call may end
-- in an error that shows the payload reached a SQL parser (syntax error,
-- undefined table / column / function: class 42 but 42501) or an internal
-- error; the canary table survives and nothing the payloads create exists.
-- Runs as superuser in a database of its own: the calls that succeed keep
-- their effects there.
\set VERBOSITY terse
CREATE DATABASE ut_rel63;
\c ut_rel63
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
RESET client_min_messages;
SELECT usage_tracking.create_account('acc_rel63', 'pro');
SELECT usage_tracking.register_installation('63636363-6363-4363-8363-636363636363_636363636363',
                                            'acc_rel63', 'rel63-secret-0123456789abcdef') IS NOT NULL AS registered;
CREATE TABLE canary (x integer);
INSERT INTO canary VALUES (1);

CREATE TABLE payloads (payload text);
INSERT INTO payloads VALUES
    ($p$'; DROP TABLE canary; --$p$),
    ($p$x' OR '1'='1$p$),
    ($p$"; DROP TABLE canary; --$p$),
    ($p$$$; DROP TABLE canary; $$$p$),
    ($p$'); CREATE TABLE pwned (); --$p$),
    ($p$a'::text); DROP TABLE canary; --$p$),
    ($p$\'; DROP TABLE canary; --$p$),
    ($p$%s %I %L %% $1$p$),
    ($p$day, (SELECT 1); DROP TABLE canary$p$),
    ($p$model) FROM pg_authid; --$p$),
    ($p$acc_rel63' UNION SELECT secret FROM usage_tracking.installation_secrets --$p$),
    ($p$63636363-6363-4363-8363-636363636363_636363636363' OR true --$p$);

-- A plausible value for a parameter that does not carry the payload.
CREATE FUNCTION sample(t regtype) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE t
    WHEN 'date'::regtype THEN '2025-11-03'
    WHEN 'timestamp with time zone'::regtype THEN '2025-11-03 12:00:00+00'
    WHEN 'interval'::regtype THEN '1 day'
    WHEN 'boolean'::regtype THEN 'false'
    WHEN 'json'::regtype THEN '{}'
    WHEN 'jsonb'::regtype THEN '{}'
    WHEN '"char"'::regtype THEN 'e'
    WHEN 'bigint[]'::regtype THEN '{}'
    WHEN 'text'::regtype THEN '63636363-6363-4363-8363-636363636363_636363636363'
    ELSE '1' END
$$;

-- Call fn with payload at parameter pos; its SQLSTATE, or 'ok'.
CREATE FUNCTION probe(fn oid, pos integer, payload text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  p pg_proc;
  args text[] := '{}';
  t regtype;
  v text;
BEGIN
  SELECT * INTO p FROM pg_proc WHERE oid = fn;
  FOR i IN 1 .. p.pronargs LOOP
    t := p.proargtypes[i - 1];
    v := CASE WHEN i <> pos THEN sample(t)
              WHEN t IN ('json'::regtype, 'jsonb'::regtype)
              THEN jsonb_build_object('install_id', payload, 'events', jsonb_build_array(jsonb_build_object('event_id', payload)))::text
              ELSE payload END;
    args := args || format('%L::%s', v, t);
  END LOOP;
  BEGIN
    EXECUTE format('SELECT count(*) FROM (SELECT %I.%I(%s)) x',
                   p.pronamespace::regnamespace, p.proname, array_to_string(args, ', '));
    RETURN 'ok';
  EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
  END;
END
$$;

SET client_min_messages = warning;
CREATE TEMP TABLE outcomes AS
SELECT f.oid::regprocedure AS fn, a.i + 1 AS pos, pl.payload, probe(f.oid, a.i + 1, pl.payload) AS outcome
  FROM pg_proc f
  JOIN pg_namespace n ON n.oid = f.pronamespace
 CROSS JOIN LATERAL generate_subscripts(f.proargtypes::oid[], 1) AS a(i)
 CROSS JOIN payloads pl
 WHERE n.nspname IN ('usage_tracking', 'usage_api')
   AND f.prokind = 'f'
   AND f.prorettype <> 'trigger'::regtype
   -- by design: takes identifiers and SQL literals from its (owner-only)
   -- callers, and re-raises the SQLSTATE it is given (checked below)
   AND f.oid NOT IN ('usage_tracking._attach_partition(text,text,text,text,text)'::regprocedure,
                     'usage_tracking.raise_http_error(text,text,text,text)'::regprocedure)
   AND f.proargtypes[a.i] IN ('text'::regtype, 'json'::regtype, 'jsonb'::regtype)
   -- every parameter of a type a value can be written for
   AND NOT EXISTS (SELECT 1 FROM unnest(f.proargtypes::oid[]) x(t)
                    WHERE x.t IN ('anyelement'::regtype, 'anyarray'::regtype, 'internal'::regtype));

RESET client_min_messages;

-- Forbidden outcomes: the payload reached a parser, or an internal error.
SELECT fn, pos, payload, outcome FROM outcomes
 WHERE (outcome LIKE '42%' AND outcome <> '42501') OR outcome LIKE 'XX%' OR outcome LIKE '58%'
 ORDER BY 1::text, 2, 3;
SELECT count(DISTINCT fn) >= 20 AS many_functions_probed, count(*) >= 300 AS many_calls_made FROM outcomes;
SELECT count(*) AS canary_rows FROM canary;
SELECT to_regclass('public.pwned') AS pwned_table;
-- Only the extension's owner may run the partition helper that splices SQL.
SELECT r AS role_that_may_attach_partitions
  FROM unnest(ARRAY['usage_tracking_ingest', 'usage_tracking_reader', 'usage_tracking_analyst',
                    'usage_tracking_admin', 'public']) r
 WHERE has_function_privilege(r, 'usage_tracking._attach_partition(text,text,text,text,text)', 'EXECUTE');
-- The HTTP error helper carries any message, detail and hint as JSON
-- strings: the payload comes back whole and nothing breaks out of it.
CREATE FUNCTION http_error_of(payload text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE m text; d text;
BEGIN
  PERFORM usage_tracking.raise_http_error('UTB02', payload, payload, payload);
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ' ' || ((m::jsonb ->> 'message') = payload AND (m::jsonb ->> 'details') = payload
                              AND (m::jsonb ->> 'hint') = payload AND d::jsonb = '{"status": 400, "headers": {}}')::text;
END $$;
SELECT http_error_of(payload) AS outcome, count(*) FROM payloads GROUP BY 1;
-- The payloads were stored, where stored at all, as the data they are.
SELECT count(*) AS accounts_from_payloads FROM usage_tracking.accounts WHERE account_id <> 'acc_rel63';

\c contrib_regression
DROP DATABASE ut_rel63;
