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
