-- sql/usage_tracking--1.0--1.1.sql — upgrade from 1.0 to 1.1.
-- Unreleased: changes to SQL objects collect here until 1.1 is released,
-- then this file is frozen like every released script.  The 1.1 install
-- script is usage_tracking--1.0.sql followed by this file.
\echo Use "ALTER EXTENSION usage_tracking UPDATE TO '1.1'" to load this file. \quit


-- == Backup and restore ==
-- pg_dump of a database with usage_tracking restores into a fresh cluster
-- with no error and nothing lost (docs/operations.md, "Backup and restore").

-- Counters and log sequences are dumped too: a restore that reset an
-- account's month, an installation's rate windows or the log ids would lose
-- data.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.hourly_usage', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.ingest_windows', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rate_state', '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.maintenance_log', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('@extschema@.erasure_log', 'id')::regclass, '');

-- Seeded rows.  CREATE EXTENSION inserts default plans and prices; a restore
-- runs CREATE EXTENSION and then copies the dumped rows of plans and
-- model_prices, seeded keys included.  A row inserted with the key of a
-- seeded row that still holds its installed values replaces that row: the
-- dumped row wins, changed or not, and nothing collides.  A seeded row the
-- DBA has changed is an ordinary row again: inserting its key fails as usual.
CREATE FUNCTION @extschema@._replace_seed()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'plans' THEN
        UPDATE @extschema@.plans p
           SET monthly_requests = NEW.monthly_requests, warning_pct = NEW.warning_pct,
               critical_pct = NEW.critical_pct, block_pct = NEW.block_pct,
               rate_requests_5m = NEW.rate_requests_5m, rate_tokens_5m = NEW.rate_tokens_5m,
               abuse_requests_1h = NEW.abuse_requests_1h, abuse_tokens_1h = NEW.abuse_tokens_1h
         WHERE p.plan = NEW.plan
           AND EXISTS (SELECT 1 FROM (VALUES ('free', 50::bigint), ('pro', 10000), ('agency', 100000),
                                             ('credits', NULL)) s (plan, monthly_requests)
                        WHERE (p.plan, p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct,
                               p.rate_requests_5m, p.rate_tokens_5m, p.abuse_requests_1h, p.abuse_tokens_1h)
                              IS NOT DISTINCT FROM
                              (s.plan, s.monthly_requests, 75, 90, 100, 100, 50000::bigint, 200, 100000::bigint));
    ELSIF TG_TABLE_NAME = 'model_prices' THEN
        UPDATE @extschema@.model_prices p
           SET prompt_usd_per_mtok = NEW.prompt_usd_per_mtok,
               completion_usd_per_mtok = NEW.completion_usd_per_mtok,
               cached_prompt_usd_per_mtok = NEW.cached_prompt_usd_per_mtok
         WHERE p.model = NEW.model AND p.effective_from = NEW.effective_from
           AND EXISTS (SELECT 1 FROM (VALUES ('gpt-4o-mini', 0.15, 0.60, 0.075),
                                             ('gpt-4o', 2.50, 10.00, 1.25),
                                             ('gpt-4.1-mini', 0.40, 1.60, 0.10),
                                             ('gpt-4.1-nano', 0.10, 0.40, 0.025))
                                    s (model, prompt, completion, cached)
                        WHERE (p.model, p.effective_from, p.prompt_usd_per_mtok,
                               p.completion_usd_per_mtok, p.cached_prompt_usd_per_mtok)
                              IS NOT DISTINCT FROM
                              (s.model, '-infinity'::timestamptz, s.prompt, s.completion, s.cached));
    ELSE
        RAISE EXCEPTION '_replace_seed() is a trigger of plans and model_prices only'
            USING ERRCODE = '39P01';
    END IF;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._replace_seed() IS
    'Internal: trigger of plans and model_prices: a row inserted with the key of a seeded row still at its installed values replaces that row (so a restore brings back changed seeds without a duplicate key).';
REVOKE ALL ON FUNCTION @extschema@._replace_seed() FROM PUBLIC;

CREATE TRIGGER plans_replace_seed
    BEFORE INSERT ON @extschema@.plans
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_seed();
CREATE TRIGGER model_prices_replace_seed
    BEFORE INSERT ON @extschema@.model_prices
    FOR EACH ROW EXECUTE FUNCTION @extschema@._replace_seed();

-- Partitions.  The partitions made at run time are ordinary tables that
-- pg_dump dumps as CREATE TABLE, ATTACH PARTITION and then their own primary
-- key and indexes.  Were the parents (created by CREATE EXTENSION) to carry
-- a primary key or an index, ATTACH would already build the partition's
-- copy of it, and the dump's own ADD CONSTRAINT / CREATE INDEX would fail.
-- So the parents carry none: every partition has its own primary key (the
-- same columns as before, the partition key included, so a key is unique
-- across the table) and index, made by _index_partition().
CREATE FUNCTION @extschema@._index_partition(parent text, part text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF parent = 'events' THEN
        EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ADD CONSTRAINT %I'
                                  ' PRIMARY KEY (install_id, event_id, created_at)', part, part || '_pkey');
        EXECUTE pg_catalog.format('CREATE INDEX %I ON @extschema@.%I'
                                  ' (install_id, received_at, event_id, created_at)', part || '_received_idx', part);
    ELSIF parent = 'daily' THEN
        EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ADD CONSTRAINT %I'
                                  ' PRIMARY KEY (install_id, usage_date, wp_user_id_hash, source, model)',
                                  part, part || '_pkey');
    ELSE
        RAISE EXCEPTION 'unknown partitioned table "%"', parent USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._index_partition(text, text) IS
    'Internal: give a partition of events or daily its primary key (and for events the received-order index); the parents carry none so that pg_dump output restores.';
REVOKE ALL ON FUNCTION @extschema@._index_partition(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@._attach_partition(parent text, part text, lo text, hi text, keycol text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE pg_catalog.format('CREATE TABLE @extschema@.%I (LIKE @extschema@.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                              part, parent);
    EXECUTE pg_catalog.format('WITH moved AS (DELETE FROM @extschema@.%I WHERE %I >= %s AND %I < %s RETURNING *) '
                              'INSERT INTO @extschema@.%I SELECT * FROM moved',
                              parent || '_default', keycol, lo, keycol, hi, part);
    PERFORM @extschema@._index_partition(parent, part);
    EXECUTE pg_catalog.format('ALTER TABLE @extschema@.%I ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%s) TO (%s)',
                              parent, part, lo, hi);
END
$$;
COMMENT ON FUNCTION @extschema@._attach_partition(text, text, text, text, text) IS
    'Internal: create, index and attach one partition, moving its rows out of the default partition.';

-- Move the keys from the parents to every partition, default ones included.
ALTER TABLE @extschema@.events DROP CONSTRAINT events_pkey;
DROP INDEX @extschema@.events_received_idx;
ALTER TABLE @extschema@.daily DROP CONSTRAINT daily_pkey;
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT p.relname AS parent, c.relname AS part
               FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
               JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
              WHERE i.inhparent IN ('@extschema@.events'::regclass, '@extschema@.daily'::regclass)
              ORDER BY 1, 2 LOOP
        PERFORM @extschema@._index_partition(r.parent, r.part);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.reconcile(day date, repair boolean DEFAULT true)
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
    ), upd AS (
        -- The daily parent has no unique index (each partition has its own
        -- primary key): rows that exist are updated, missing ones inserted.
        -- The SHARE lock above keeps ingest out of this day meanwhile.
        UPDATE @extschema@.daily d SET
            total_requests = f.total_requests,
            prompt_tokens = f.prompt_tokens,
            completion_tokens = f.completion_tokens,
            cached_prompt_tokens = f.cached_prompt_tokens,
            estimated_cost_usd = f.estimated_cost_usd,
            unpriced_requests = f.unpriced_requests
          FROM drift f
         WHERE repair AND NOT f.gone AND f.was IS NOT NULL AND d.usage_date = day
           AND d.install_id = f.install_id AND d.wp_user_id_hash = f.wp_user_id_hash
           AND d.source = f.source AND d.model = f.model
        RETURNING 1
    ), ins AS (
        INSERT INTO @extschema@.daily AS d (install_id, usage_date, wp_user_id_hash, source, model,
                                            total_requests, prompt_tokens, completion_tokens,
                                            cached_prompt_tokens, estimated_cost_usd, unpriced_requests)
        SELECT f.install_id, day, f.wp_user_id_hash, f.source, f.model, f.total_requests,
               f.prompt_tokens, f.completion_tokens, f.cached_prompt_tokens,
               f.estimated_cost_usd, f.unpriced_requests
          FROM drift f
         WHERE repair AND NOT f.gone AND f.was IS NULL
         ORDER BY f.install_id, f.wp_user_id_hash, f.source, f.model
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM expected) + (SELECT count(*) FROM drift WHERE gone),
           (SELECT count(*) FROM drift),
           (SELECT count(*) FROM del),
           (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins),
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
