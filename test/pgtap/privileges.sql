-- Privileges: what each role (ingest, reader, analyst, admin) and PUBLIC
-- may do.  Catalog-wide invariants cover every function, table and view in
-- usage_tracking and usage_api, including ones added later; an exact matrix
-- pins the tables and views of the core and the read side; and each role
-- is exercised for real: cross-tenant probes, writes, secrets, ingest.
\set VERBOSITY terse
\set QUIET on
BEGIN;
SELECT plan(47);

-- Run q as role r with JWT claims (NULL: unset); the first column of the
-- first row as text, or the SQLSTATE of its error.
CREATE FUNCTION pg_temp.as_role(r text, claims text, q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  v text;
BEGIN
  PERFORM set_config('request.jwt.claims', coalesce(claims, ''), true);
  PERFORM set_config('request.headers', '', true);
  EXECUTE format('SET LOCAL ROLE %I', r);
  BEGIN
    EXECUTE q INTO v;
  EXCEPTION WHEN OTHERS THEN
    v := SQLSTATE;
  END;
  RESET ROLE;
  PERFORM set_config('request.jwt.claims', '', true);
  RETURN v;
END $$;

CREATE TEMP TABLE roles (role text PRIMARY KEY);
INSERT INTO roles VALUES ('usage_tracking_ingest'), ('usage_tracking_reader'),
                         ('usage_tracking_analyst'), ('usage_tracking_admin');

CREATE TEMP VIEW ut_functions AS
SELECT p.oid, n.nspname, p.proname, p.oid::regprocedure::text AS sig, p.prosecdef, p.provolatile,
       p.proconfig, p.prorettype = 'trigger'::regtype AS is_trigger
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname IN ('usage_tracking', 'usage_api');

CREATE TEMP VIEW ut_relations AS
SELECT c.oid, n.nspname, c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('usage_tracking', 'usage_api') AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f');

-- Functions that only re-raise an error for the HTTP fronts: callable by
-- every role, they read and write nothing.
CREATE TEMP TABLE harmless (proname text);
INSERT INTO harmless VALUES ('raise_http_error');

-- Catalog-wide invariants ----------------------------------------------------

SELECT is((SELECT coalesce(array_agg(sig ORDER BY sig), '{}') FROM ut_functions f
            WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = f.oid AND p.proacl IS NOT NULL)
               OR EXISTS (SELECT 1 FROM pg_proc p, aclexplode(p.proacl) a
                           WHERE p.oid = f.oid AND a.grantee = 0)),
          '{}', 'PUBLIC can execute no function');
SELECT is((SELECT coalesce(array_agg(r.nspname || '.' || r.relname ORDER BY 1), '{}') FROM ut_relations r
            WHERE EXISTS (SELECT 1 FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = r.oid AND a.grantee = 0)
               OR EXISTS (SELECT 1 FROM pg_attribute t, aclexplode(t.attacl) a
                           WHERE t.attrelid = r.oid AND a.grantee = 0)),
          '{}', 'PUBLIC has no privilege on any table, view or sequence');
SELECT is((SELECT coalesce(array_agg(sig ORDER BY sig), '{}') FROM ut_functions
            WHERE prosecdef AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (proconfig), false)),
          '{}', 'every SECURITY DEFINER function pins search_path = pg_catalog, pg_temp');
SELECT is((SELECT coalesce(array_agg(r.role || ': ' || f.sig ORDER BY 1), '{}') FROM ut_functions f, roles r
            WHERE f.prosecdef AND f.proname LIKE '\_%' AND has_function_privilege(r.role, f.oid, 'EXECUTE')),
          '{}', 'no role may call an internal SECURITY DEFINER function (name starting with _)');
SELECT is((SELECT coalesce(array_agg(r.role || ': ' || x.nspname || '.' || x.relname || '.' || a.attname ORDER BY 1), '{}')
             FROM ut_relations x JOIN pg_attribute a ON a.attrelid = x.oid AND a.attnum > 0 AND NOT a.attisdropped, roles r
            WHERE a.attname ~ 'secret' AND has_column_privilege(r.role, x.oid, a.attnum, 'SELECT,INSERT,UPDATE,REFERENCES')),
          '{}', 'no role may read or write a column holding a secret');
SELECT is((SELECT coalesce(array_agg(r.role ORDER BY 1), '{}') FROM roles r
            WHERE has_table_privilege(r.role, 'usage_tracking.installation_secrets', 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
               OR has_any_column_privilege(r.role, 'usage_tracking.installation_secrets', 'SELECT,INSERT,UPDATE,REFERENCES')),
          '{}', 'no role has any privilege on installation_secrets');

-- Ingest: the HTTP ingest route, nothing else.
SELECT is((SELECT coalesce(array_agg(nspname || '.' || relname ORDER BY 1), '{}') FROM ut_relations
            WHERE has_table_privilege('usage_tracking_ingest', oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
               OR (relkind <> 'S' AND has_any_column_privilege('usage_tracking_ingest', oid, 'SELECT,INSERT,UPDATE,REFERENCES'))
               OR (relkind = 'S' AND has_sequence_privilege('usage_tracking_ingest', oid, 'USAGE,SELECT,UPDATE'))),
          '{}', 'ingest: no privilege on any table, view or sequence');
SELECT is((SELECT coalesce(array_agg(sig ORDER BY sig), '{}') FROM ut_functions
            WHERE has_function_privilege('usage_tracking_ingest', oid, 'EXECUTE')
              AND NOT (nspname = 'usage_api' AND proname = 'ingest')
              AND proname NOT IN (SELECT proname FROM harmless)),
          '{}', 'ingest: can execute the ingest route only');
SELECT ok(NOT has_function_privilege('usage_tracking_ingest', 'usage_tracking.ingest(text, text, timestamptz, text)', 'EXECUTE'),
          'ingest: cannot call the core ingest(), which takes "now" and the tenant as arguments');

-- Reader and analyst write nothing.
SELECT is((SELECT coalesce(array_agg(r.role || ': ' || x.nspname || '.' || x.relname ORDER BY 1), '{}')
             FROM ut_relations x, roles r
            WHERE r.role IN ('usage_tracking_reader', 'usage_tracking_analyst')
              AND (has_table_privilege(r.role, x.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,TRIGGER,REFERENCES')
                   OR (x.relkind <> 'S' AND has_any_column_privilege(r.role, x.oid, 'INSERT,UPDATE,REFERENCES'))
                   OR (x.relkind = 'S' AND has_sequence_privilege(r.role, x.oid, 'USAGE,UPDATE')))),
          '{}', 'reader and analyst: no write privilege on any table, view or sequence');
SELECT is((SELECT coalesce(array_agg(r.role || ': ' || f.sig ORDER BY 1), '{}') FROM ut_functions f, roles r
            WHERE r.role IN ('usage_tracking_reader', 'usage_tracking_analyst')
              AND f.prosecdef AND f.provolatile = 'v'
              AND f.proname NOT IN (SELECT proname FROM harmless)
              AND f.nspname = 'usage_tracking'
              AND has_function_privilege(r.role, f.oid, 'EXECUTE')),
          '{}', 'reader and analyst: can call no volatile SECURITY DEFINER function of usage_tracking (those write as the owner)');
SELECT is((SELECT coalesce(array_agg(x.relname ORDER BY 1), '{}') FROM ut_relations x
            WHERE x.nspname = 'usage_tracking' AND (x.relname LIKE 'events%' OR x.relname = 'usage_events')
              AND has_any_column_privilege('usage_tracking_analyst', x.oid, 'SELECT')),
          '{}', 'analyst: no raw events');
SELECT is((SELECT coalesce(array_agg(x.relname ORDER BY 1), '{}') FROM ut_relations x
            WHERE x.nspname = 'usage_tracking' AND x.relkind = 'r'
              AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = x.oid)
              AND EXISTS (SELECT 1 FROM roles r WHERE has_any_column_privilege(r.role, x.oid, 'SELECT,INSERT,UPDATE'))),
          '{}', 'no role reaches a partition directly (row-level security is on the parents)');

-- The matrix of the core and read-side tables and views ---------------------

CREATE TEMP TABLE expected (role text, rel text, priv text);
INSERT INTO expected
SELECT 'usage_tracking_reader', rel, 'SELECT'
  FROM unnest(ARRAY['accounts', 'installations', 'events', 'daily', 'usage_events',
                    'daily_usage', 'monthly_usage', 'installation_usage']) rel
UNION ALL
SELECT 'usage_tracking_analyst', rel, 'SELECT'
  FROM unnest(ARRAY['installations', 'daily', 'daily_usage', 'monthly_usage', 'installation_usage']) rel
UNION ALL
SELECT 'usage_tracking_admin', rel, 'SELECT'
  FROM unnest(ARRAY['plans', 'accounts', 'installations', 'model_prices', 'events', 'daily', 'error_codes',
                    'usage_events', 'daily_usage', 'monthly_usage', 'installation_usage']) rel
UNION ALL
SELECT 'usage_tracking_admin', rel, priv
  FROM unnest(ARRAY['plans', 'model_prices']) rel, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) priv
UNION ALL
SELECT 'usage_tracking_admin', 'accounts', 'UPDATE';

CREATE TEMP VIEW actual AS
SELECT r.role, x.rel, p.priv,
       CASE WHEN p.priv = 'DELETE' THEN has_table_privilege(r.role, ('usage_tracking.' || x.rel)::regclass, p.priv)
            ELSE has_any_column_privilege(r.role, ('usage_tracking.' || x.rel)::regclass, p.priv) END AS granted
  FROM roles r,
       unnest(ARRAY['plans', 'accounts', 'installations', 'installation_secrets', 'model_prices', 'events',
                    'daily', 'error_codes', 'usage_events', 'daily_usage',
                    'monthly_usage', 'installation_usage']) x(rel),
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p(priv);

SELECT is((SELECT coalesce(array_agg(a.role || ' ' || a.priv || ' ' || a.rel
                                     || CASE WHEN a.granted THEN ' granted' ELSE ' missing' END ORDER BY 1), '{}')
             FROM actual a
            WHERE a.granted <> EXISTS (SELECT 1 FROM expected e
                                        WHERE (e.role, e.rel, e.priv) = (a.role, a.rel, a.priv))),
          '{}', 'select/insert/update/delete of every role on every core and read-side table and view is as documented');
-- Column grants keep what the analyst reads of installations to the BI columns.
SELECT is((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
            WHERE a.attrelid = 'usage_tracking.installations'::regclass AND a.attnum > 0
              AND has_column_privilege('usage_tracking_analyst', a.attrelid, a.attnum, 'SELECT')),
          ARRAY['install_id', 'account_id', 'status', 'first_seen_at', 'last_seen_at'],
          'analyst: installations columns of the BI views only');

-- Execute matrix of the core and read-side functions.
CREATE TEMP TABLE fexpected (sig text, roles text[]);
INSERT INTO fexpected VALUES
  ('usage_tracking.usage_summary(text,date,date,text)', '{usage_tracking_reader,usage_tracking_admin}'),
  ('usage_tracking.list_events(text,timestamp with time zone,timestamp with time zone,text,integer)', '{usage_tracking_reader,usage_tracking_admin}'),
  ('usage_tracking.export_csv(text,text,date,date)', '{usage_tracking_reader,usage_tracking_admin}'),
  ('usage_tracking.installations(date,date)', '{usage_tracking_admin}'),
  ('usage_tracking.create_account(text,text)', '{usage_tracking_admin}'),
  ('usage_tracking.register_installation(text,text,text,timestamp with time zone)', '{usage_tracking_admin}'),
  ('usage_tracking.rotate_installation_secret(text,text,timestamp with time zone)', '{usage_tracking_admin}'),
  ('usage_tracking.set_installation_status(text,text)', '{usage_tracking_admin}'),
  ('usage_tracking.set_model_price(text,numeric,numeric,numeric,timestamp with time zone)', '{usage_tracking_admin}'),
  ('usage_tracking.ensure_partitions(timestamp with time zone,timestamp with time zone)', '{usage_tracking_admin}'),
  ('usage_tracking.ingest(text,text,timestamp with time zone,text)', '{usage_tracking_admin}'),
  ('usage_tracking.generate_secret()', '{usage_tracking_admin}'),
  ('usage_tracking._attach_partition(text,text,text,text,text)', '{}'),
  ('usage_tracking.events_summarize()', '{}'),
  ('usage_tracking.current_account()', '{usage_tracking_reader,usage_tracking_analyst,usage_tracking_admin}');
SELECT is((SELECT coalesce(array_agg(f.sig || ': ' || coalesce(got.roles::text, '{}') ORDER BY 1), '{}')
             FROM fexpected f
             LEFT JOIN LATERAL (SELECT array_agg(r.role ORDER BY r.role) AS roles FROM roles r
                                 WHERE has_function_privilege(r.role, f.sig::regprocedure, 'EXECUTE')) got ON true
            WHERE coalesce(got.roles, '{}') <> (SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(f.roles) x)),
          '{}', 'execute on the core and read-side functions is as documented');

-- Behaviour: two tenants ----------------------------------------------------

SELECT usage_tracking.create_account('acc_tap_a', 'agency'), usage_tracking.create_account('acc_tap_b', 'agency');
SELECT usage_tracking.register_installation('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', 'acc_tap_a', 'tap-secret-a-0123456789'),
       usage_tracking.register_installation('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', 'acc_tap_b', 'tap-secret-b-0123456789');
CREATE FUNCTION pg_temp.batch(install text, ids text[]) RETURNS text LANGUAGE sql AS $$
  SELECT jsonb_build_object('install_id', install, 'events', jsonb_agg(jsonb_build_object(
           'event_id', id, 'wp_user_id_hash', repeat('ab', 32), 'source', 'bulk', 'model', 'gpt-4o-mini',
           'prompt_tokens', 100, 'completion_tokens', 10, 'created_at', '2025-11-03T10:00:00Z')))::text
    FROM unnest(ids) id
$$;
CREATE FUNCTION pg_temp.sig(body text, secret text) RETURNS text LANGUAGE sql AS $$
  SELECT usage_tracking.hmac_sha256_hex(secret, '1762171200.' || body) || ':1762171200'
$$;
SELECT usage_tracking.ingest(pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_a1', 'evt_a2']),
                             pg_temp.sig(pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_a1', 'evt_a2']), 'tap-secret-a-0123456789'),
                             to_timestamp(1762171200)),
       usage_tracking.ingest(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1', 'evt_b2', 'evt_b3']),
                             pg_temp.sig(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1', 'evt_b2', 'evt_b3']), 'tap-secret-b-0123456789'),
                             to_timestamp(1762171200));

-- Every relation the reader may select that carries install_id or
-- account_id: the rows of the other tenant it sees (A's claim), and every
-- row it sees without a claim.
CREATE FUNCTION pg_temp.reader_probe(claims text, only_b boolean) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
  x record;
  n text;
  out text[] := '{}';
BEGIN
  FOR x IN SELECT r.nspname, r.relname, a.attname
             FROM ut_relations r JOIN pg_attribute a ON a.attrelid = r.oid
            WHERE a.attname IN ('install_id', 'account_id') AND r.relkind <> 'S'
              AND has_column_privilege('usage_tracking_reader', r.oid, a.attnum, 'SELECT')
            ORDER BY 1, 2, 3 LOOP
    n := pg_temp.as_role('usage_tracking_reader', claims,
           format('SELECT count(*) FROM %I.%I WHERE %s', x.nspname, x.relname,
                  CASE WHEN NOT only_b THEN 'true'
                       WHEN x.attname = 'install_id' THEN 'install_id = ''bbbb0000-0000-4000-8000-00000000000b_0000000000bb'''
                       ELSE 'account_id = ''acc_tap_b''' END));
    IF n <> '0' THEN
      out := out || (x.relname || '.' || x.attname || ': ' || n);
    END IF;
  END LOOP;
  RETURN out;
END $$;

SELECT is(pg_temp.reader_probe('{"role": "usage_tracking_reader", "account_id": "acc_tap_a"}', true), '{}',
          'reader of A: zero rows of B through every table and view it may read');
SELECT is(pg_temp.reader_probe(NULL, false), '{}', 'reader without claims: zero rows anywhere');
SELECT is(pg_temp.reader_probe('{"account_id": ""}', false), '{}', 'reader with an empty account_id: zero rows anywhere');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            'SELECT count(*) FROM usage_tracking.usage_events'), '2', 'reader of A sees its own events');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT count(*) FROM usage_tracking.usage_summary('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', NULL, NULL, 'day,install')$$),
          '0', 'reader of A: usage_summary of B''s installation is empty');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT string_agg(install_id || ':' || total_requests, ',') FROM usage_tracking.usage_summary(NULL, NULL, NULL, 'install')$$),
          'aaaa0000-0000-4000-8000-00000000000a_0000000000aa:2', 'reader of A: usage_summary without install_id covers A only');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT count(*) FROM usage_tracking.list_events('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', lim => 1000)$$),
          '0', 'reader of A: list_events of B''s installation is empty');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT string_agg(event_id, ',' ORDER BY event_id) FROM usage_tracking.list_events(NULL, lim => 1000)$$),
          'evt_a1,evt_a2', 'reader of A: list_events without install_id lists A''s events only');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT count(*) FILTER (WHERE line LIKE '%bbbb0000%') FROM usage_tracking.export_csv('events') line$$),
          '0', 'reader of A: export_csv holds no row of B');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            'SELECT count(*) FROM usage_tracking.installations()'), '42501', 'reader: installations() is admin only');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            'SELECT count(*) FROM usage_tracking.installation_secrets'), '42501', 'reader: no secrets');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash, source, model)
              VALUES ('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', '2025-11-03', repeat('ab', 32), 'bulk', 'x') RETURNING 1$$),
          '42501', 'reader: cannot write a summary');
SELECT is(pg_temp.as_role('usage_tracking_reader', '{"account_id": "acc_tap_a"}',
            $$SELECT usage_tracking.register_installation('cccc0000-0000-4000-8000-00000000000c_0000000000cc', 'acc_tap_a')$$),
          '42501', 'reader: cannot register an installation');

-- Analyst: every account's summaries, nothing else.
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL,
            $$SELECT string_agg(account_id || ':' || total_requests, ',' ORDER BY account_id) FROM usage_tracking.monthly_usage WHERE account_id LIKE 'acc_tap_%'$$),
          'acc_tap_a:2,acc_tap_b:3', 'analyst: monthly_usage of every account');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL,
            $$SELECT count(*) FROM usage_tracking.daily_usage WHERE account_id LIKE 'acc_tap_%'$$),
          '2', 'analyst: daily_usage of every account');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, 'SELECT count(*) FROM usage_tracking.installation_usage'),
          (SELECT count(*)::text FROM usage_tracking.installations), 'analyst: installation_usage of every installation');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, 'SELECT count(*) FROM usage_tracking.usage_events'),
          '42501', 'analyst: no raw events');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, 'SELECT count(*) FROM usage_tracking.installation_secrets'),
          '42501', 'analyst: no secrets');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, 'SELECT site_url_hash FROM usage_tracking.installations LIMIT 1'),
          '42501', 'analyst: installations columns outside the BI views are not readable');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, $$UPDATE usage_tracking.daily SET total_requests = 0 RETURNING 1$$),
          '42501', 'analyst: cannot update a summary');
SELECT is(pg_temp.as_role('usage_tracking_analyst', NULL, $$DELETE FROM usage_tracking.daily RETURNING 1$$),
          '42501', 'analyst: cannot delete a summary');

-- Admin: all accounts, no secrets.
SELECT is(pg_temp.as_role('usage_tracking_admin', NULL,
            $$SELECT string_agg(account_id || ':' || total_requests, ',' ORDER BY account_id) FROM usage_tracking.installations() WHERE account_id LIKE 'acc_tap_%'$$),
          'acc_tap_a:2,acc_tap_b:3', 'admin: installations() of every account');
SELECT is(pg_temp.as_role('usage_tracking_admin', NULL, 'SELECT count(*) FROM usage_tracking.installation_secrets'),
          '42501', 'admin: no secrets');
SELECT is(pg_temp.as_role('usage_tracking_admin', NULL,
            $$SELECT usage_tracking.set_installation_status('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', 'active')::text || 'done'$$),
          'done', 'admin: manages installations');

-- Ingest: the route, nothing else.
SELECT is(pg_temp.as_role('usage_tracking_ingest', NULL, 'SELECT count(*) FROM usage_tracking.daily_usage'),
          '42501', 'ingest: reads no summary');
SELECT is(pg_temp.as_role('usage_tracking_ingest', NULL,
            format('SELECT usage_tracking.ingest(%L, %L, %L)', pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_x']),
                   pg_temp.sig(pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_x']), 'tap-secret-a-0123456789'),
                   to_timestamp(1762171200))),
          '42501', 'ingest: cannot call the core ingest() with a "now" of its choosing');
SELECT CASE WHEN to_regprocedure('usage_api.ingest(json)') IS NULL
            THEN skip('usage_api.ingest(json) is not installed', 1)
            ELSE is(pg_temp.as_role('usage_tracking_ingest', '{"account_id": "acc_tap_a"}',
                      format($q$SELECT (usage_api.ingest(%L::json))->>'success'
                                  FROM (SELECT set_config('request.headers', json_build_object('x-install-signature', %L)::text, true)) h$q$,
                             b.body, usage_tracking.hmac_sha256_hex('tap-secret-a-0123456789', b.ts || '.' || b.body) || ':' || b.ts)),
                    'true', 'ingest: calls the ingest route') END
  FROM (SELECT pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_route']) AS body,
               extract(epoch FROM now())::bigint::text AS ts) b;

-- Cross-tenant probes through ingest (the core path the route takes, with
-- A's JWT as caller_account).
CREATE FUNCTION pg_temp.try_ingest(body text, sig text, caller text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r jsonb;
BEGIN
  r := usage_tracking.ingest(body, sig, to_timestamp(1762171200), caller);
  RETURN format('received %s duplicates %s', r->>'received', r->>'duplicates');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT is(pg_temp.try_ingest(pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_b1', 'evt_b2']),
                             pg_temp.sig(pg_temp.batch('aaaa0000-0000-4000-8000-00000000000a_0000000000aa', ARRAY['evt_b1', 'evt_b2']), 'tap-secret-a-0123456789'),
                             'acc_tap_a'),
          'received 2 duplicates 0',
          'guessing B''s event ids in A''s own batch reveals nothing: they are new events of A, not duplicates');
SELECT is(pg_temp.try_ingest(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1']),
                             pg_temp.sig(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1']), 'tap-secret-a-0123456789'),
                             'acc_tap_a'),
          pg_temp.try_ingest(pg_temp.batch('dddd0000-0000-4000-8000-00000000000d_0000000000dd', ARRAY['evt_b1']),
                             pg_temp.sig(pg_temp.batch('dddd0000-0000-4000-8000-00000000000d_0000000000dd', ARRAY['evt_b1']), 'tap-secret-a-0123456789'),
                             'acc_tap_a'),
          'posting to B''s installation with A''s secret fails exactly as for an unknown installation');
SELECT is(left(pg_temp.try_ingest(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1']),
                                  pg_temp.sig(pg_temp.batch('bbbb0000-0000-4000-8000-00000000000b_0000000000bb', ARRAY['evt_b1']), 'tap-secret-b-0123456789'),
                                  'acc_tap_a'), 5),
          'UTF02', 'a batch of B''s installation under A''s JWT is refused, even correctly signed');
SELECT is((SELECT count(*) FROM usage_tracking.events WHERE install_id = 'bbbb0000-0000-4000-8000-00000000000b_0000000000bb'),
          3::bigint, 'B''s events are untouched by the probes');

SELECT * FROM finish();
ROLLBACK;
