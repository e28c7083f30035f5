-- bench/setup.sql — the benchmark database: installations registered with
-- the extension and with the PL/pgSQL yardstick, the plain-INSERT floor
-- table, and pools of distinct, signed batches the pgbench scripts consume
-- one per transaction.
--
-- psql variables: t0 (the time batches are signed at and passed as "now"),
-- installs (how many installations), accounts (how many accounts).

CREATE SCHEMA bench;

CREATE TABLE bench.config (t0 timestamptz NOT NULL);
INSERT INTO bench.config VALUES (:'t0');

-- A plan without rate or abuse limits, so that governance never throttles
-- the benchmark.  monthly_requests NULL: the verdict is always "ok", but it
-- is still computed on every ingest.
INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m,
                                  abuse_requests_1h, abuse_tokens_1h)
VALUES ('bench', NULL, 2147483647, 9223372036854775807, 2147483647, 9223372036854775807);
INSERT INTO plpgsql_ingest.plans (plan, monthly_requests) VALUES ('bench', NULL);
INSERT INTO plpgsql_ingest.model_prices SELECT * FROM usage_tracking.model_prices;

-- Installations: n = 1..installs, each on one of the accounts, with its one
-- model and two user hashes (as sha256(install_id:wp_user_id:user)).
CREATE TABLE bench.installs (
    n           integer PRIMARY KEY,
    install_id  text NOT NULL,
    account_id  text NOT NULL,
    secret      text NOT NULL,
    model       text NOT NULL,
    user1       text NOT NULL,
    user2       text NOT NULL
);
INSERT INTO bench.installs
SELECT n, id, 'bench_acc_' || (n - 1) % :accounts, 'bench-secret-' || md5('secret' || n),
       (ARRAY['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4o', 'gpt-4.1-nano'])[n % 4 + 1],
       encode(sha256(convert_to(id || ':1:user', 'UTF8')), 'hex'),
       encode(sha256(convert_to(id || ':2:user', 'UTF8')), 'hex')
  FROM (SELECT n, substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
                  || substr(h, 18, 3) || '-' || substr(h, 21, 12) || '_' || substr(md5('site' || n), 1, 12) AS id
          FROM (SELECT n, md5('install' || n) AS h FROM generate_series(1, :installs) n) x) y;

SELECT count(usage_tracking.create_account(a, 'bench'))
  FROM (SELECT DISTINCT account_id AS a FROM bench.installs) x;
SELECT count(usage_tracking.register_installation(install_id, account_id, secret)) FROM bench.installs;
INSERT INTO plpgsql_ingest.accounts (account_id, plan)
SELECT DISTINCT account_id, 'bench' FROM bench.installs;
INSERT INTO plpgsql_ingest.installations (install_id, account_id, secret)
SELECT install_id, account_id, secret FROM bench.installs;

-- The floor: the same rows into a table of the same shape, partitioning and
-- primary key, with no checks, no trigger, no summaries.
CREATE SCHEMA floor_ingest;
CREATE TABLE floor_ingest.events (LIKE usage_tracking.events INCLUDING DEFAULTS)
    PARTITION BY RANGE (created_at);
ALTER TABLE floor_ingest.events ADD PRIMARY KEY (install_id, event_id, created_at);
CREATE TABLE floor_ingest.events_default PARTITION OF floor_ingest.events DEFAULT;

-- The same secondary indexes as the extension's tables (whatever they are
-- when the benchmark runs).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT c.relname AS tab, pg_get_indexdef(i.indexrelid) AS def
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
              WHERE c.relnamespace = 'usage_tracking'::regnamespace
                AND c.relname IN ('events', 'daily') AND NOT i.indisprimary LOOP
        IF r.tab = 'events' THEN
            EXECUTE replace(replace(r.def, ' ON ONLY usage_tracking.', ' ON floor_ingest.'), ' INDEX ', ' INDEX floor_');
        END IF;
        EXECUTE replace(replace(r.def, ' ON ONLY usage_tracking.', ' ON plpgsql_ingest.'), ' INDEX ', ' INDEX plpgsql_');
    END LOOP;
END
$$;

-- Partitions around t0 for the three implementations.
SELECT usage_tracking.ensure_partitions(t0 - interval '3 days', t0 + interval '2 days') FROM bench.config;
SELECT plpgsql_ingest.ensure_partitions((t0 - interval '3 days')::date, (t0 + interval '2 days')::date)
  FROM bench.config;
DO $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT generate_series((t0 - interval '3 days')::date, (t0 + interval '2 days')::date,
                                    interval '1 day')::date FROM bench.config LOOP
        EXECUTE format('CREATE TABLE floor_ingest.%I PARTITION OF floor_ingest.events'
                       ' FOR VALUES FROM (%L) TO (%L)', 'events_p' || to_char(d, 'YYYYMMDD'),
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END
$$;

-- Pools of signed batches: kind, id 1..N; batch id goes to installation
-- (id - 1) % installs + 1, so consecutive batches (the two clients) are for
-- different sites.  Event ids embed the batch id: every batch is new.
CREATE TABLE bench.pool (
    kind    text NOT NULL,
    id      integer NOT NULL,
    nevents integer NOT NULL,
    body    text NOT NULL,
    sig     text NOT NULL,
    PRIMARY KEY (kind, id)
);

-- One event as a site's plugin serializes it.
CREATE FUNCTION bench.event_json(event_id text, user_hash text, source text, model text,
                                 prompt integer, completion integer, cached integer,
                                 attachment bigint, created text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"event_id":"' || event_id || '","wp_user_id_hash":"' || user_hash
        || '","source":"' || source || '","model":"' || model
        || '","prompt_tokens":' || prompt || ',"completion_tokens":' || completion
        || ',"total_tokens":' || (prompt + completion) || ',"cached_prompt_tokens":' || cached
        || ',"request_id":"req_' || event_id || '","context":{"attachment_id":' || attachment
        || ',"width":1024,"height":768},"created_at":"' || created || '"}'
$$;

-- Batches from_id..to_id of a kind (pool), in a style:
--   real — one site's five minutes: its one model, 1 user (every 4th batch)
--          or 2, bulk or queue (by batch) plus every 5th event inline:
--          2 or 4 summary keys, 3.5 on average;
--   adv  — every event its own (user, source, model) key.
CREATE FUNCTION bench.make_pool(p_kind text, from_id integer, to_id integer, nevents integer,
                                style text)
RETURNS bigint LANGUAGE sql AS $$
    WITH k AS MATERIALIZED (
        SELECT k, to_char((c.t0 - interval '290 seconds' + (k * 290 / nevents) * interval '1 second')
                          AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created
          FROM generate_series(0, nevents - 1) k, bench.config c),
    ins AS (
        INSERT INTO bench.pool (kind, id, nevents, body, sig)
        SELECT p_kind, b, nevents, x.body,
               encode(hmac(extract(epoch FROM c.t0)::bigint || '.' || x.body, i.secret, 'sha256'), 'hex')
               || ':' || extract(epoch FROM c.t0)::bigint
          FROM generate_series(from_id, to_id) b
          CROSS JOIN bench.config c
          JOIN bench.installs i ON i.n = (b - 1) % (SELECT count(*) FROM bench.installs) + 1
          CROSS JOIN LATERAL (
            SELECT '{"install_id":"' || i.install_id || '","account_id":"' || i.account_id
                   || '","events":[' || string_agg(
                CASE style
                WHEN 'adv' THEN bench.event_json(
                    'evt_' || p_kind || b || '_' || k.k,
                    md5(b || ':' || k.k || ':a') || md5(b || ':' || k.k || ':b'),
                    (ARRAY['manual', 'bulk', 'queue', 'inline'])[k.k % 4 + 1],
                    (ARRAY['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4o', 'gpt-4.1-nano'])[(k.k / 4) % 4 + 1],
                    120 + (k.k * 37 + b * 11) % 400, 15 + (k.k * 13) % 60,
                    CASE WHEN k.k % 4 = 0 THEN 60 ELSE 0 END, b::bigint * 1000 + k.k, k.created)
                ELSE bench.event_json(
                    'evt_' || p_kind || b || '_' || k.k,
                    CASE WHEN b % 4 <> 0 AND k.k % 2 = 1 THEN i.user2 ELSE i.user1 END,
                    CASE WHEN k.k % 5 = 0 THEN 'inline' WHEN b % 2 = 0 THEN 'bulk' ELSE 'queue' END,
                    i.model,
                    120 + (k.k * 37 + b * 11) % 400, 15 + (k.k * 13) % 60,
                    CASE WHEN k.k % 4 = 0 THEN 60 ELSE 0 END, b::bigint * 1000 + k.k, k.created)
                END, ',' ORDER BY k.k) || ']}' AS body
              FROM k) x
        RETURNING 1)
    SELECT count(*) FROM ins
$$;

-- Backend memory samples of the memory test.
CREATE TABLE bench.memory (
    ingests         bigint PRIMARY KEY,
    vm_rss_kb       bigint,
    vm_hwm_kb       bigint,
    rss_anon_kb     bigint,
    contexts_bytes  bigint
);

-- Record this backend's memory after n ingests: /proc status and the sum of
-- its memory contexts.
CREATE FUNCTION bench.sample_memory(n bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO bench.memory
    SELECT n,
           (substring(s FROM 'VmRSS:\s+(\d+)'))::bigint,
           (substring(s FROM 'VmHWM:\s+(\d+)'))::bigint,
           (substring(s FROM 'RssAnon:\s+(\d+)'))::bigint,
           (SELECT sum(total_bytes) FROM pg_backend_memory_contexts)
      FROM pg_read_file('/proc/' || pg_backend_pid() || '/status') s
    ON CONFLICT (ingests) DO NOTHING
$$;
