-- bench/plpgsql_ingest.sql — the yardstick: what a competent user would write
-- instead of the extension.  The same batch contract (signature over
-- "<timestamp>.<body>" with pgcrypto's hmac(), the same whole-request and
-- per-event rules, idempotent on (install_id, event_id), daily summaries with
-- costs kept by a plain row trigger, last_seen_at, the quota verdict in the
-- response), in PL/pgSQL, in its own schema with its own tables shaped like
-- the extension's (same partitioning, primary keys and CHECKs).
--
-- Loaded by bench/run.sh into the benchmark database (needs pgcrypto).

CREATE SCHEMA plpgsql_ingest;

CREATE TABLE plpgsql_ingest.plans (
    plan              text PRIMARY KEY,
    monthly_requests  bigint,
    warning_pct       integer NOT NULL DEFAULT 75,
    critical_pct      integer NOT NULL DEFAULT 90,
    block_pct         integer NOT NULL DEFAULT 100
);

CREATE TABLE plpgsql_ingest.accounts (
    account_id  text PRIMARY KEY,
    plan        text NOT NULL REFERENCES plpgsql_ingest.plans,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'))
);

CREATE TABLE plpgsql_ingest.installations (
    install_id          text PRIMARY KEY
                        CHECK (install_id ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}_[0-9a-f]{12}$'),
    account_id          text NOT NULL REFERENCES plpgsql_ingest.accounts,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    secret              text NOT NULL,
    previous_secret     text,
    previous_expires_at timestamptz,
    first_seen_at       timestamptz,
    last_seen_at        timestamptz
);
CREATE INDEX ON plpgsql_ingest.installations (account_id);

CREATE TABLE plpgsql_ingest.model_prices (
    model                       text NOT NULL,
    effective_from              timestamptz NOT NULL DEFAULT '-infinity',
    prompt_usd_per_mtok         numeric NOT NULL,
    completion_usd_per_mtok     numeric NOT NULL,
    cached_prompt_usd_per_mtok  numeric,
    PRIMARY KEY (model, effective_from)
);

CREATE TABLE plpgsql_ingest.events (
    install_id            text NOT NULL,
    event_id              text NOT NULL CHECK (event_id ~ '^[A-Za-z0-9_.:-]{1,50}$'),
    wp_user_id_hash       text NOT NULL CHECK (wp_user_id_hash ~ '^[0-9a-f]{64}$'),
    source                text NOT NULL CHECK (source IN ('manual', 'bulk', 'queue', 'inline')),
    model                 text NOT NULL CHECK (model ~ '^[A-Za-z0-9._:/@-]{1,100}$'),
    prompt_tokens         integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens     integer NOT NULL CHECK (completion_tokens >= 0),
    cached_prompt_tokens  integer NOT NULL DEFAULT 0
                          CHECK (cached_prompt_tokens >= 0 AND cached_prompt_tokens <= prompt_tokens),
    request_id            text CHECK (length(request_id) <= 50),
    context               jsonb CHECK (context IS NULL OR jsonb_typeof(context) = 'object'),
    created_at            timestamptz NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (install_id, event_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE plpgsql_ingest.events_default PARTITION OF plpgsql_ingest.events DEFAULT;

CREATE TABLE plpgsql_ingest.daily (
    install_id            text NOT NULL,
    usage_date            date NOT NULL,
    wp_user_id_hash       text NOT NULL,
    source                text NOT NULL,
    model                 text NOT NULL,
    total_requests        bigint NOT NULL DEFAULT 0,
    prompt_tokens         bigint NOT NULL DEFAULT 0,
    completion_tokens     bigint NOT NULL DEFAULT 0,
    cached_prompt_tokens  bigint NOT NULL DEFAULT 0,
    estimated_cost_usd    numeric,
    unpriced_requests     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (install_id, usage_date, wp_user_id_hash, source, model)
) PARTITION BY RANGE (usage_date);
CREATE TABLE plpgsql_ingest.daily_default PARTITION OF plpgsql_ingest.daily DEFAULT;

-- Daily partitions of events, monthly of daily, covering [from_day, to_day].
CREATE FUNCTION plpgsql_ingest.ensure_partitions(from_day date, to_day date)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    d date;
BEGIN
    FOR d IN SELECT generate_series(from_day, to_day, interval '1 day')::date LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS plpgsql_ingest.%I PARTITION OF plpgsql_ingest.events'
                       ' FOR VALUES FROM (%L) TO (%L)', 'events_p' || to_char(d, 'YYYYMMDD'),
                       d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
    FOR d IN SELECT generate_series(date_trunc('month', from_day), date_trunc('month', to_day),
                                    interval '1 month')::date LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS plpgsql_ingest.%I PARTITION OF plpgsql_ingest.daily'
                       ' FOR VALUES FROM (%L) TO (%L)', 'daily_p' || to_char(d, 'YYYYMM'),
                       d, (d + interval '1 month')::date);
    END LOOP;
END
$$;

-- Row trigger: add each inserted event to its daily row, priced at the row
-- in force at its created_at ('*' is the fallback).
CREATE FUNCTION plpgsql_ingest.events_summarize() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p     record;
    cost  numeric;
BEGIN
    SELECT * INTO p FROM plpgsql_ingest.model_prices mp
     WHERE mp.model IN (NEW.model, '*') AND mp.effective_from <= NEW.created_at
     ORDER BY mp.model = '*', mp.effective_from DESC
     LIMIT 1;
    IF FOUND THEN
        cost := ((NEW.prompt_tokens - NEW.cached_prompt_tokens) * p.prompt_usd_per_mtok
                 + NEW.cached_prompt_tokens * coalesce(p.cached_prompt_usd_per_mtok, p.prompt_usd_per_mtok)
                 + NEW.completion_tokens * p.completion_usd_per_mtok) / 1000000;
    END IF;
    INSERT INTO plpgsql_ingest.daily AS d
        (install_id, usage_date, wp_user_id_hash, source, model, total_requests,
         prompt_tokens, completion_tokens, cached_prompt_tokens, estimated_cost_usd, unpriced_requests)
    VALUES (NEW.install_id, (NEW.created_at AT TIME ZONE 'UTC')::date, NEW.wp_user_id_hash,
            NEW.source, NEW.model, 1, NEW.prompt_tokens, NEW.completion_tokens,
            NEW.cached_prompt_tokens, cost, CASE WHEN p IS NULL THEN 1 ELSE 0 END)
    ON CONFLICT (install_id, usage_date, wp_user_id_hash, source, model) DO UPDATE SET
        total_requests = d.total_requests + 1,
        prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
        cached_prompt_tokens = d.cached_prompt_tokens + EXCLUDED.cached_prompt_tokens,
        estimated_cost_usd = CASE WHEN EXCLUDED.estimated_cost_usd IS NULL THEN d.estimated_cost_usd
                                  ELSE coalesce(d.estimated_cost_usd, 0) + EXCLUDED.estimated_cost_usd END,
        unpriced_requests = d.unpriced_requests + EXCLUDED.unpriced_requests;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_summarize AFTER INSERT ON plpgsql_ingest.events
    FOR EACH ROW EXECUTE FUNCTION plpgsql_ingest.events_summarize();

-- Is a JSON value an integer from lo to hi?
CREATE FUNCTION plpgsql_ingest.is_int(v jsonb, lo bigint, hi bigint)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(v) = 'number' AND v::text ~ '^-?[0-9]{1,18}$'
           AND v::text::bigint BETWEEN lo AND hi
$$;

-- An RFC 3339 timestamp (shape checked by the caller) that is a real date:
-- only days 29 to 31 can be out of range, so only those pay for the
-- subtransaction of the exception block.
CREATE FUNCTION plpgsql_ingest.valid_day(ts text)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF substr(ts, 9, 2)::int <= 28 THEN
        RETURN true;
    END IF;
    PERFORM ts::timestamptz;
    RETURN true;
EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
    RETURN false;
END
$$;

CREATE FUNCTION plpgsql_ingest.ingest(body text, signature text,
                                      now timestamptz DEFAULT now(),
                                      caller_account text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    doc         jsonb;
    install     text;
    ts_text     text;
    given       bytea;
    inst        record;
    rejected    jsonb;
    ids         text[];
    evs         jsonb[];
    inserted    bigint;
    new_tokens  bigint;
    lim         bigint;
    warn        integer;
    crit        integer;
    blk         integer;
    used        bigint;
    month_start date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
BEGIN
    -- Whole-request checks, in the extension's order.
    IF body IS NULL THEN
        RAISE EXCEPTION 'request body is required' USING ERRCODE = 'UTB02';
    END IF;
    IF signature IS NULL OR signature = '' THEN
        RAISE EXCEPTION 'X-Install-Signature is required' USING ERRCODE = 'UTA01';
    END IF;
    IF octet_length(body) > 1048576 THEN
        RAISE EXCEPTION 'request body of % bytes exceeds the limit', octet_length(body) USING ERRCODE = 'UTL01';
    END IF;
    IF signature !~ '^[0-9A-Fa-f]{64}:[0-9]{1,12}$' THEN
        RAISE EXCEPTION 'malformed X-Install-Signature' USING ERRCODE = 'UTA01';
    END IF;
    ts_text := substr(signature, 66);
    IF abs(ts_text::bigint - extract(epoch FROM now)::bigint) > 300 THEN
        RAISE EXCEPTION 'signature timestamp is more than 300 seconds from the server clock' USING ERRCODE = 'UTA03';
    END IF;
    BEGIN
        doc := body::jsonb;
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RAISE EXCEPTION 'request body is not valid JSON' USING ERRCODE = 'UTB01';
    END;
    IF jsonb_typeof(doc) <> 'object' THEN
        RAISE EXCEPTION 'invalid batch: the body must be a JSON object' USING ERRCODE = 'UTB02';
    ELSIF jsonb_typeof(doc->'install_id') IS DISTINCT FROM 'string' THEN
        RAISE EXCEPTION 'invalid batch: install_id is required' USING ERRCODE = 'UTB02';
    ELSIF doc ? 'account_id' AND jsonb_typeof(doc->'account_id') <> 'string' THEN
        RAISE EXCEPTION 'invalid batch: account_id must be a string' USING ERRCODE = 'UTB02';
    ELSIF jsonb_typeof(doc->'events') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'invalid batch: events must be an array' USING ERRCODE = 'UTB02';
    ELSIF jsonb_array_length(doc->'events') = 0 THEN
        RAISE EXCEPTION 'invalid batch: events must hold at least one event' USING ERRCODE = 'UTB02';
    ELSIF jsonb_array_length(doc->'events') > 1000 THEN
        RAISE EXCEPTION 'too many events' USING ERRCODE = 'UTL02';
    END IF;
    install := doc->>'install_id';
    IF install !~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}_[0-9a-f]{12}$' THEN
        RAISE EXCEPTION 'invalid batch: install_id must be {uuid-v4}_{12 lowercase hex}' USING ERRCODE = 'UTB02';
    END IF;

    -- The installation row lock orders concurrent batches of one site.
    SELECT i.account_id, i.status <> 'active' OR a.status <> 'active' AS suspended, i.secret,
           CASE WHEN i.previous_expires_at > now THEN i.previous_secret END AS previous_secret
      INTO inst
      FROM plpgsql_ingest.installations i JOIN plpgsql_ingest.accounts a USING (account_id)
     WHERE i.install_id = install
       FOR NO KEY UPDATE OF i;
    given := decode(lower(left(signature, 64)), 'hex');
    -- Compare digests of the MACs rather than the MACs: no early exit on a
    -- matching prefix of the secret value.
    IF NOT FOUND
       OR NOT (sha256(hmac(ts_text || '.' || body, inst.secret, 'sha256')) = sha256(given)
               OR (inst.previous_secret IS NOT NULL
                   AND sha256(hmac(ts_text || '.' || body, inst.previous_secret, 'sha256')) = sha256(given))) THEN
        RAISE EXCEPTION 'signature verification failed' USING ERRCODE = 'UTA02';
    END IF;
    IF inst.suspended THEN
        RAISE EXCEPTION 'installation or its account is suspended' USING ERRCODE = 'UTF01';
    END IF;
    IF doc->>'account_id' IS DISTINCT FROM inst.account_id AND doc ? 'account_id'
       OR caller_account IS DISTINCT FROM inst.account_id AND caller_account IS NOT NULL THEN
        RAISE EXCEPTION 'account mismatch' USING ERRCODE = 'UTF02';
    END IF;

    -- Per-event rules, for the whole batch in one query; a repeat of an
    -- event_id among the valid events is rejected with the index of the first.
    SELECT coalesce(array_agg(c.v->>'event_id' ORDER BY c.idx) FILTER (WHERE c.err IS NULL), '{}'),
           coalesce(array_agg(c.v ORDER BY c.idx) FILTER (WHERE c.err IS NULL), '{}'),
           coalesce(jsonb_agg(jsonb_build_object('index', c.idx,
                        'event_id', CASE WHEN c.v->>'event_id' ~ '^[A-Za-z0-9_.:-]{1,50}$' THEN c.v->>'event_id' END,
                        'error', c.err) ORDER BY c.idx) FILTER (WHERE c.err IS NOT NULL), '[]')
      INTO ids, evs, rejected
      FROM (SELECT r.idx, r.v,
                   coalesce(r.err, CASE WHEN r.first <> r.idx
                                        THEN format('event_id repeats the event at index %s', r.first) END) AS err
              FROM (SELECT x.idx, x.v, x.err,
                           min(x.idx) OVER (PARTITION BY x.err IS NULL, x.v->>'event_id') AS first
                      FROM (SELECT e.ordinality - 1 AS idx, e.value AS v,
                                   CASE
                                   WHEN jsonb_typeof(e.value) IS DISTINCT FROM 'object' THEN
                                       'event must be a JSON object'
                                   WHEN jsonb_typeof(e.value->'event_id') IS DISTINCT FROM 'string'
                                        OR e.value->>'event_id' !~ '^[A-Za-z0-9_.:-]{1,50}$' THEN
                                       'event_id must be 1 to 50 characters of [A-Za-z0-9_.:-]'
                                   WHEN jsonb_typeof(e.value->'wp_user_id_hash') IS DISTINCT FROM 'string'
                                        OR e.value->>'wp_user_id_hash' !~ '^[0-9a-f]{64}$' THEN
                                       'wp_user_id_hash must be 64 lowercase hex characters'
                                   WHEN jsonb_typeof(e.value->'source') IS DISTINCT FROM 'string'
                                        OR e.value->>'source' NOT IN ('manual', 'bulk', 'queue', 'inline') THEN
                                       'source must be one of manual, bulk, queue, inline'
                                   WHEN jsonb_typeof(e.value->'model') IS DISTINCT FROM 'string'
                                        OR e.value->>'model' !~ '^[A-Za-z0-9._:/@-]{1,100}$' THEN
                                       'model must be 1 to 100 characters of [A-Za-z0-9._:/@-]'
                                   WHEN NOT coalesce(plpgsql_ingest.is_int(e.value->'prompt_tokens', 0, 2147483647), false) THEN
                                       'prompt_tokens must be an integer from 0 to 2147483647'
                                   WHEN NOT coalesce(plpgsql_ingest.is_int(e.value->'completion_tokens', 0, 2147483647), false) THEN
                                       'completion_tokens must be an integer from 0 to 2147483647'
                                   WHEN e.value ? 'total_tokens'
                                        AND (NOT plpgsql_ingest.is_int(e.value->'total_tokens', 0, 4294967294)
                                             OR (e.value->>'total_tokens')::bigint
                                                <> (e.value->>'prompt_tokens')::bigint + (e.value->>'completion_tokens')::bigint) THEN
                                       format('total_tokens %s is not prompt_tokens %s + completion_tokens %s',
                                              e.value->>'total_tokens', e.value->>'prompt_tokens', e.value->>'completion_tokens')
                                   WHEN e.value ? 'cached_prompt_tokens'
                                        AND NOT plpgsql_ingest.is_int(e.value->'cached_prompt_tokens', 0,
                                                                      (e.value->>'prompt_tokens')::bigint) THEN
                                       'cached_prompt_tokens must be an integer from 0 to prompt_tokens'
                                   WHEN coalesce(jsonb_typeof(e.value->'request_id') NOT IN ('string', 'null'), false)
                                        OR coalesce(length(e.value->>'request_id') > 50, false) THEN
                                       'request_id must be a string of at most 50 characters'
                                   WHEN coalesce(jsonb_typeof(e.value->'context') NOT IN ('object', 'null'), false)
                                        OR coalesce(octet_length((e.value->'context')::text) > 4096, false) THEN
                                       'context must be a JSON object of at most 4096 bytes'
                                   WHEN jsonb_typeof(e.value->'created_at') IS DISTINCT FROM 'string'
                                        OR e.value->>'created_at' !~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$'
                                        OR NOT plpgsql_ingest.valid_day(e.value->>'created_at') THEN
                                       'created_at must be an RFC 3339 timestamp with Z or an offset'
                                   WHEN (e.value->>'created_at')::timestamptz > now + interval '5 minutes' THEN
                                       'created_at is more than 5 minutes in the future'
                                   WHEN (e.value->>'created_at')::timestamptz < now - interval '90 days' THEN
                                       'created_at is older than the event retention'
                                   END AS err
                              FROM jsonb_array_elements(doc->'events') WITH ORDINALITY e
                            OFFSET 0) x) r) c;  -- OFFSET 0: check each event once

    UPDATE plpgsql_ingest.installations i
       SET first_seen_at = coalesce(i.first_seen_at, now),
           last_seen_at = greatest(i.last_seen_at, now)
     WHERE i.install_id = install;

    inserted := 0;
    new_tokens := 0;
    IF cardinality(evs) > 0 THEN
        WITH ins AS (
            INSERT INTO plpgsql_ingest.events (install_id, event_id, wp_user_id_hash, source, model,
                   prompt_tokens, completion_tokens, cached_prompt_tokens, request_id, context,
                   created_at, received_at)
            SELECT install, e->>'event_id', e->>'wp_user_id_hash', e->>'source', e->>'model',
                   (e->>'prompt_tokens')::int, (e->>'completion_tokens')::int,
                   coalesce((e->>'cached_prompt_tokens')::int, 0), e->>'request_id',
                   CASE WHEN jsonb_typeof(e->'context') = 'object' THEN e->'context' END,
                   (e->>'created_at')::timestamptz, now
              FROM unnest(evs) e
            ON CONFLICT DO NOTHING
            RETURNING prompt_tokens, completion_tokens)
        SELECT count(*), coalesce(sum(prompt_tokens::bigint + completion_tokens), 0)
          INTO inserted, new_tokens FROM ins;
    END IF;

    -- Quota verdict for the account's calendar month.
    SELECT p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct
      INTO lim, warn, crit, blk
      FROM plpgsql_ingest.accounts a JOIN plpgsql_ingest.plans p USING (plan)
     WHERE a.account_id = inst.account_id;
    SELECT coalesce(sum(d.total_requests), 0) INTO used
      FROM plpgsql_ingest.daily d
      JOIN plpgsql_ingest.installations i USING (install_id)
     WHERE i.account_id = inst.account_id
       AND d.usage_date >= month_start
       AND d.usage_date < (month_start + interval '1 month')::date;

    RETURN jsonb_build_object(
        'success', true,
        'received', cardinality(ids),
        'duplicates', cardinality(ids) - inserted,
        'event_ids', to_jsonb(ids),
        'rejected', rejected,
        'quota', jsonb_build_object(
            'level', CASE WHEN lim IS NULL THEN 'ok'
                          WHEN used * 100 >= lim * blk THEN 'blocked'
                          WHEN used * 100 >= lim * crit THEN 'critical'
                          WHEN used * 100 >= lim * warn THEN 'warning'
                          ELSE 'ok' END,
            'used', used,
            'limit', lim));
END
$$;
