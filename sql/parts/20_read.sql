-- sql/parts/20_read.sql — the read side: summaries, raw event pages, the
-- installations listing, CSV export and the views BI tools read.
--
-- Every function here is SECURITY INVOKER: it reads as its caller, so the
-- row-level security of sql/parts/25_rls.sql decides which rows a reader sees.

-- Summaries ------------------------------------------------------------------

-- The keys of a group_by list, validated.
CREATE FUNCTION @extschema@._summary_keys(group_by text)
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    keys text[];
    k    text;
BEGIN
    IF group_by IS NULL THEN
        RETURN ARRAY['day'];
    END IF;
    keys := pg_catalog.string_to_array(pg_catalog.lower(group_by), ',');
    IF keys IS NULL OR pg_catalog.cardinality(keys) = 0 THEN
        keys := ARRAY[''];
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(keys) LOOP
        k := pg_catalog.btrim(keys[i]);
        IF k NOT IN ('day', 'install', 'user', 'source', 'model') THEN
            RAISE EXCEPTION 'invalid group_by key "%"', k
                USING ERRCODE = '22023',
                      HINT = 'group_by is a comma list of day, install, user, source and model.';
        END IF;
        keys[i] := k;
    END LOOP;
    RETURN keys;
END
$$;
COMMENT ON FUNCTION @extschema@._summary_keys(text) IS
    'Internal: the validated keys of a usage_summary group_by list (22023 on an unknown key).';

-- True, or 22023 when the range is inverted.
CREATE FUNCTION @extschema@._check_range(date_from anyelement, date_to anyelement)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF date_from > date_to THEN
        RAISE EXCEPTION 'date_from % is after date_to %', date_from, date_to
            USING ERRCODE = '22023';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@._check_range(anyelement, anyelement) IS
    'Internal: true, or SQLSTATE 22023 when date_from is after date_to.';

-- A plain SQL function the planner inlines: the caller's plan is the plan of
-- the query below, on the daily table only (never raw events), with the
-- partitions outside the range pruned.
CREATE FUNCTION @extschema@.usage_summary(install_id text DEFAULT NULL,
                                          date_from date DEFAULT NULL,
                                          date_to date DEFAULT NULL,
                                          group_by text DEFAULT 'day')
RETURNS TABLE (usage_date date, install_id text, wp_user_id_hash text, source text, model text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               cached_prompt_tokens bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH g AS MATERIALIZED (
    SELECT 'day' = ANY (k) AS by_day, 'install' = ANY (k) AS by_install, 'user' = ANY (k) AS by_user,
           'source' = ANY (k) AS by_source, 'model' = ANY (k) AS by_model
      FROM (SELECT @extschema@._summary_keys(usage_summary.group_by) AS k) s
     WHERE @extschema@._check_range(usage_summary.date_from, usage_summary.date_to)
)
SELECT CASE WHEN g.by_day THEN d.usage_date END,
       CASE WHEN g.by_install THEN d.install_id END,
       CASE WHEN g.by_user THEN d.wp_user_id_hash END,
       CASE WHEN g.by_source THEN d.source END,
       CASE WHEN g.by_model THEN d.model END,
       pg_catalog.sum(d.total_requests)::bigint,
       pg_catalog.sum(d.prompt_tokens)::bigint,
       pg_catalog.sum(d.completion_tokens)::bigint,
       pg_catalog.sum(d.cached_prompt_tokens)::bigint,
       pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint,
       pg_catalog.sum(d.estimated_cost_usd)
  FROM g,
       (SELECT x.* FROM @extschema@.daily x
         WHERE x.install_id = usage_summary.install_id
           AND x.usage_date >= coalesce(usage_summary.date_from, '-infinity'::date)
           AND x.usage_date <= coalesce(usage_summary.date_to, 'infinity'::date)
        UNION ALL
        SELECT x.* FROM @extschema@.daily x
         WHERE usage_summary.install_id IS NULL
           AND x.install_id IN (SELECT i.install_id FROM @extschema@.installations i)
           AND x.usage_date >= coalesce(usage_summary.date_from, '-infinity'::date)
           AND x.usage_date <= coalesce(usage_summary.date_to, 'infinity'::date)) d
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 1, 2, 3, 4, 5
$$;
COMMENT ON FUNCTION @extschema@.usage_summary(text, date, date, text) IS
    'Usage totals of one installation (or of every installation the caller may see when install_id is NULL) for the UTC days date_from to date_to (both included; NULL: unbounded), grouped by the comma list group_by of day, install, user, source and model; columns not grouped are NULL. Reads the daily summaries only. A bad group_by or date_from after date_to raises 22023.';

-- Raw events, a page at a time --------------------------------------------

-- Pages walk this index backwards: newest received first.
CREATE INDEX events_received_idx ON @extschema@.events (install_id, received_at, event_id, created_at);

-- Opaque cursor: the received-order key of the last row of a page.
CREATE FUNCTION @extschema@._event_cursor(received_at timestamptz, install_id text,
                                          event_id text, created_at timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(pg_catalog.convert_to(
           pg_catalog.concat_ws('|', 'v1',
               (extract(epoch FROM received_at) * 1000000)::bigint,
               (extract(epoch FROM created_at) * 1000000)::bigint,
               install_id, event_id), 'UTF8'), 'base64'), E'+/\n', '-_'), '=')
$$;
COMMENT ON FUNCTION @extschema@._event_cursor(timestamptz, text, text, timestamptz) IS
    'Internal: the opaque list_events cursor of a row.';

-- The key an after cursor names; the top of the order when it is NULL.
CREATE FUNCTION @extschema@._cursor_key(after text, OUT received_at timestamptz, OUT install_id text,
                                        OUT event_id text, OUT created_at timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    parts text[];
    raw   text;
BEGIN
    IF after IS NULL THEN
        received_at := 'infinity';
        install_id := '';
        event_id := '';
        created_at := 'infinity';
        RETURN;
    END IF;
    BEGIN
        raw := pg_catalog.translate(after, '-_', '+/');
        raw := raw || pg_catalog.repeat('=', (4 - pg_catalog.length(raw) % 4) % 4);
        parts := pg_catalog.string_to_array(
                     pg_catalog.convert_from(pg_catalog.decode(raw, 'base64'), 'UTF8'), '|');
        IF pg_catalog.cardinality(parts) <> 5 OR parts[1] <> 'v1' THEN
            RAISE EXCEPTION USING ERRCODE = '22P02';
        END IF;
        received_at := pg_catalog.to_timestamp(0) + parts[2]::bigint * interval '1 microsecond';
        created_at := pg_catalog.to_timestamp(0) + parts[3]::bigint * interval '1 microsecond';
        install_id := parts[4];
        event_id := parts[5];
    EXCEPTION WHEN data_exception OR invalid_parameter_value OR character_not_in_repertoire THEN
        RAISE EXCEPTION 'invalid cursor' USING ERRCODE = '22023',
            HINT = 'Pass the cursor of the last row of the previous page, unchanged.';
    END;
END
$$;
COMMENT ON FUNCTION @extschema@._cursor_key(text) IS
    'Internal: the received-order key a list_events cursor names (22023 when it is not one).';

-- lim, or 22023 when it is not 1 to 1000.
CREATE FUNCTION @extschema@._check_lim(lim integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF lim IS NULL OR lim < 1 OR lim > 1000 THEN
        RAISE EXCEPTION 'lim must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN lim;
END
$$;
COMMENT ON FUNCTION @extschema@._check_lim(integer) IS
    'Internal: a list_events page size, 1 to 1000 (22023 otherwise).';

-- Newest received first.  With an installation, each events partition is
-- read backwards along events_received_idx from the cursor on, and the
-- pages merged: a page costs about lim rows however many events there are.
CREATE FUNCTION @extschema@.list_events(install_id text,
                                        date_from timestamptz DEFAULT NULL,
                                        date_to timestamptz DEFAULT NULL,
                                        after text DEFAULT NULL,
                                        lim integer DEFAULT 100)
RETURNS TABLE (install_id text, event_id text, wp_user_id_hash text, source text, model text,
               prompt_tokens integer, completion_tokens integer, cached_prompt_tokens integer,
               total_tokens bigint, request_id text, context jsonb,
               created_at timestamptz, received_at timestamptz, cursor text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
WITH k AS MATERIALIZED (
    SELECT c.* FROM @extschema@._cursor_key(list_events.after) c
     WHERE @extschema@._check_range(list_events.date_from, list_events.date_to)
)
SELECT p.install_id, p.event_id, p.wp_user_id_hash, p.source, p.model,
       p.prompt_tokens, p.completion_tokens, p.cached_prompt_tokens,
       p.prompt_tokens::bigint + p.completion_tokens, p.request_id, p.context,
       p.created_at, p.received_at,
       @extschema@._event_cursor(p.received_at, p.install_id, p.event_id, p.created_at)
  FROM ((SELECT e.* FROM @extschema@.events e
          WHERE e.install_id = list_events.install_id
            AND (e.received_at, e.event_id, e.created_at)
                < ((SELECT k.received_at FROM k), (SELECT k.event_id FROM k), (SELECT k.created_at FROM k))
            AND e.created_at >= coalesce(list_events.date_from, '-infinity')
            AND e.created_at < coalesce(list_events.date_to, 'infinity')
            AND e.voided_at IS NULL
          ORDER BY e.received_at DESC, e.event_id DESC, e.created_at DESC
          LIMIT @extschema@._check_lim(list_events.lim))
        UNION ALL
        (SELECT e.* FROM @extschema@.events e
          WHERE list_events.install_id IS NULL
            AND e.install_id IN (SELECT i.install_id FROM @extschema@.installations i)
            AND (e.received_at, e.install_id, e.event_id, e.created_at)
                < ((SELECT k.received_at FROM k), (SELECT k.install_id FROM k),
                   (SELECT k.event_id FROM k), (SELECT k.created_at FROM k))
            AND e.created_at >= coalesce(list_events.date_from, '-infinity')
            AND e.created_at < coalesce(list_events.date_to, 'infinity')
            AND e.voided_at IS NULL
          ORDER BY e.received_at DESC, e.install_id DESC, e.event_id DESC, e.created_at DESC
          LIMIT @extschema@._check_lim(list_events.lim))) p
 ORDER BY p.received_at DESC, p.install_id DESC, p.event_id DESC, p.created_at DESC
$$;
COMMENT ON FUNCTION @extschema@.list_events(text, timestamptz, timestamptz, text, integer) IS
    'Raw events of one installation (NULL: every installation the caller may see) created in [date_from, date_to), newest received first, at most lim (1 to 1000) rows. Each row carries an opaque cursor: pass the last row''s as after for the next page; a page shorter than lim is the last. Every event stored before the first page appears exactly once; a batch stored later appears at most once.';

-- Installations (admin) ------------------------------------------------------

CREATE FUNCTION @extschema@.installations(date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS TABLE (install_id text, account_id text, status text,
               first_seen timestamptz, last_seen timestamptz,
               total_requests bigint, total_tokens bigint, estimated_cost_usd numeric)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT i.install_id, i.account_id, i.status, i.first_seen_at, i.last_seen_at,
       coalesce(t.total_requests, 0), coalesce(t.total_tokens, 0),
       t.estimated_cost_usd
  FROM @extschema@.installations i
  LEFT JOIN (SELECT d.install_id,
                    pg_catalog.sum(d.total_requests)::bigint AS total_requests,
                    pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
                    pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd
               FROM @extschema@.daily d
              WHERE d.usage_date >= coalesce(installations.date_from, '-infinity'::date)
                AND d.usage_date <= coalesce(installations.date_to, 'infinity'::date)
                AND @extschema@._check_range(installations.date_from, installations.date_to)
              GROUP BY d.install_id) t ON t.install_id = i.install_id
 WHERE @extschema@._check_range(installations.date_from, installations.date_to)
 ORDER BY i.account_id, i.install_id
$$;
COMMENT ON FUNCTION @extschema@.installations(date, date) IS
    'Admin: every installation with its account, status, first and last seen, and its requests, tokens and estimated cost in USD for the UTC days date_from to date_to (both included; NULL: unbounded).';

-- CSV export -----------------------------------------------------------------

-- One RFC 4180 field: quoted when it holds a quote, comma or line break, or
-- is the empty string (so that it differs from NULL, written as nothing).
CREATE FUNCTION @extschema@._csv(v text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN v IS NULL THEN ''
            WHEN v = '' OR v ~ '[",\r\n]' THEN '"' || pg_catalog.replace(v, '"', '""') || '"'
            ELSE v END
$$;
COMMENT ON FUNCTION @extschema@._csv(text) IS
    'Internal: a value as one RFC 4180 CSV field (NULL as an empty field).';

CREATE FUNCTION @extschema@._export_kind(kind text, date_from date, date_to date)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF kind IS NULL OR kind NOT IN ('daily', 'events') THEN
        RAISE EXCEPTION 'invalid export kind "%"', kind
            USING ERRCODE = '22023', HINT = 'kind is daily or events.';
    END IF;
    PERFORM @extschema@._check_range(date_from, date_to);
    RETURN kind;
END
$$;
COMMENT ON FUNCTION @extschema@._export_kind(text, date, date) IS
    'Internal: the validated export_csv kind (22023 on an unknown kind or an inverted range).';

-- A plain SQL function the planner inlines into the caller's query, so rows
-- flow from the scan to the client one at a time: nothing is collected or
-- sorted first, and rows come in storage order (events: partitions by day).
-- PARALLEL UNSAFE keeps the plan serial, so the header comes first.
CREATE FUNCTION @extschema@.export_csv(kind text, install_id text DEFAULT NULL,
                                       date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL UNSAFE
AS $$
SELECT CASE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to)
       WHEN 'daily' THEN 'account_id,install_id,usage_date,wp_user_id_hash,source,model,total_requests,'
                         'prompt_tokens,completion_tokens,cached_prompt_tokens,total_tokens,'
                         'estimated_cost_usd,unpriced_requests'
       ELSE 'install_id,event_id,wp_user_id_hash,source,model,prompt_tokens,completion_tokens,'
            'cached_prompt_tokens,total_tokens,request_id,context,created_at,received_at' END
UNION ALL
(SELECT pg_catalog.concat_ws(',', @extschema@._csv(u.account_id), @extschema@._csv(u.install_id),
            pg_catalog.to_char(u.usage_date, 'YYYY-MM-DD'), u.wp_user_id_hash, u.source,
            @extschema@._csv(u.model), u.total_requests, u.prompt_tokens, u.completion_tokens,
            u.cached_prompt_tokens, u.total_tokens, coalesce(u.estimated_cost_usd::text, ''),
            u.unpriced_requests)
   FROM @extschema@.daily_usage u
  WHERE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to) = 'daily'
    AND (u.install_id = export_csv.install_id OR export_csv.install_id IS NULL)
    AND u.usage_date >= coalesce(export_csv.date_from, '-infinity'::date)
    AND u.usage_date <= coalesce(export_csv.date_to, 'infinity'::date))
UNION ALL
(SELECT pg_catalog.concat_ws(',', @extschema@._csv(e.install_id), @extschema@._csv(e.event_id),
            e.wp_user_id_hash, e.source, @extschema@._csv(e.model), e.prompt_tokens,
            e.completion_tokens, e.cached_prompt_tokens, e.prompt_tokens::bigint + e.completion_tokens,
            @extschema@._csv(e.request_id), @extschema@._csv(e.context::text),
            pg_catalog.to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            pg_catalog.to_char(e.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
   FROM @extschema@.events e
  WHERE @extschema@._export_kind(export_csv.kind, export_csv.date_from, export_csv.date_to) = 'events'
    AND (e.install_id = export_csv.install_id OR export_csv.install_id IS NULL)
    AND e.created_at >= coalesce(export_csv.date_from, '-infinity'::date)::timestamp AT TIME ZONE 'UTC'
    AND e.created_at < (coalesce(export_csv.date_to, 'infinity'::date) + 1)::timestamp AT TIME ZONE 'UTC'
    AND e.voided_at IS NULL)
$$;
COMMENT ON FUNCTION @extschema@.export_csv(text, text, date, date) IS
    'CSV export, one RFC 4180 record per row, the header first: kind ''daily'' (the daily_usage columns) or ''events'' (the usage_events columns, times in UTC), of one installation or every one the caller may see, for the UTC days date_from to date_to (both included). Streams: use it as COPY (SELECT * FROM usage_tracking.export_csv(...)) TO STDOUT.';

-- Views for BI tools ---------------------------------------------------------

COMMENT ON COLUMN @extschema@.daily_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.daily_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.daily_usage.usage_date IS 'UTC calendar day of the events'' created_at.';
COMMENT ON COLUMN @extschema@.daily_usage.wp_user_id_hash IS 'SHA-256 hex of the WordPress user; never the raw user id.';
COMMENT ON COLUMN @extschema@.daily_usage.source IS 'Where the request came from: manual, bulk, queue or inline.';
COMMENT ON COLUMN @extschema@.daily_usage.model IS 'Model name as the site sent it.';
COMMENT ON COLUMN @extschema@.daily_usage.total_requests IS 'Number of model calls (events).';
COMMENT ON COLUMN @extschema@.daily_usage.prompt_tokens IS 'Prompt (input) tokens, cached ones included.';
COMMENT ON COLUMN @extschema@.daily_usage.completion_tokens IS 'Completion (output) tokens.';
COMMENT ON COLUMN @extschema@.daily_usage.cached_prompt_tokens IS 'Prompt tokens served from the provider''s cache (priced at the cached rate).';
COMMENT ON COLUMN @extschema@.daily_usage.total_tokens IS 'prompt_tokens + completion_tokens.';
COMMENT ON COLUMN @extschema@.daily_usage.estimated_cost_usd IS 'Estimated cost in USD at the model prices in force at each event''s created_at; NULL when no request was priced.';
COMMENT ON COLUMN @extschema@.daily_usage.unpriced_requests IS 'Requests no price applied to; they add nothing to estimated_cost_usd.';

CREATE VIEW @extschema@.monthly_usage WITH (security_invoker = true) AS
SELECT i.account_id, d.install_id,
       pg_catalog.date_trunc('month', d.usage_date)::date AS month,
       pg_catalog.sum(d.total_requests)::bigint AS total_requests,
       pg_catalog.sum(d.prompt_tokens)::bigint AS prompt_tokens,
       pg_catalog.sum(d.completion_tokens)::bigint AS completion_tokens,
       pg_catalog.sum(d.cached_prompt_tokens)::bigint AS cached_prompt_tokens,
       pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
       pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd,
       pg_catalog.sum(d.unpriced_requests)::bigint AS unpriced_requests
  FROM @extschema@.daily d
  JOIN @extschema@.installations i USING (install_id)
 GROUP BY i.account_id, d.install_id, pg_catalog.date_trunc('month', d.usage_date)::date;
COMMENT ON VIEW @extschema@.monthly_usage IS
    'Usage per account, installation and UTC calendar month, with estimated cost in USD.';
COMMENT ON COLUMN @extschema@.monthly_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.monthly_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.monthly_usage.month IS 'First day of the UTC calendar month.';
COMMENT ON COLUMN @extschema@.monthly_usage.total_requests IS 'Number of model calls (events) in the month.';
COMMENT ON COLUMN @extschema@.monthly_usage.prompt_tokens IS 'Prompt (input) tokens, cached ones included.';
COMMENT ON COLUMN @extschema@.monthly_usage.completion_tokens IS 'Completion (output) tokens.';
COMMENT ON COLUMN @extschema@.monthly_usage.cached_prompt_tokens IS 'Prompt tokens served from the provider''s cache.';
COMMENT ON COLUMN @extschema@.monthly_usage.total_tokens IS 'prompt_tokens + completion_tokens.';
COMMENT ON COLUMN @extschema@.monthly_usage.estimated_cost_usd IS 'Estimated cost in USD; NULL when no request was priced.';
COMMENT ON COLUMN @extschema@.monthly_usage.unpriced_requests IS 'Requests no price applied to; they add nothing to estimated_cost_usd.';

CREATE VIEW @extschema@.installation_usage WITH (security_invoker = true) AS
SELECT i.install_id, i.account_id, i.status, i.first_seen_at, i.last_seen_at,
       w.since,
       coalesce(t.total_requests, 0) AS total_requests,
       coalesce(t.prompt_tokens, 0) AS prompt_tokens,
       coalesce(t.completion_tokens, 0) AS completion_tokens,
       coalesce(t.total_tokens, 0) AS total_tokens,
       t.estimated_cost_usd
  FROM (SELECT ((pg_catalog.now() AT TIME ZONE 'UTC')::date - 29) AS since) w
 CROSS JOIN @extschema@.installations i
  LEFT JOIN LATERAL (
       SELECT pg_catalog.sum(d.total_requests)::bigint AS total_requests,
              pg_catalog.sum(d.prompt_tokens)::bigint AS prompt_tokens,
              pg_catalog.sum(d.completion_tokens)::bigint AS completion_tokens,
              pg_catalog.sum(d.prompt_tokens + d.completion_tokens)::bigint AS total_tokens,
              pg_catalog.sum(d.estimated_cost_usd) AS estimated_cost_usd
         FROM @extschema@.daily d
        WHERE d.install_id = i.install_id AND d.usage_date >= w.since) t ON true;
COMMENT ON VIEW @extschema@.installation_usage IS
    'Per installation: status, first and last seen, and totals for the last 30 UTC days (today included).';
COMMENT ON COLUMN @extschema@.installation_usage.install_id IS 'Installation (one WordPress site).';
COMMENT ON COLUMN @extschema@.installation_usage.account_id IS 'Account (tenant) of the installation.';
COMMENT ON COLUMN @extschema@.installation_usage.status IS 'active or suspended.';
COMMENT ON COLUMN @extschema@.installation_usage.first_seen_at IS 'When its first accepted batch arrived; NULL if none yet.';
COMMENT ON COLUMN @extschema@.installation_usage.last_seen_at IS 'When its latest accepted batch arrived; NULL if none yet.';
COMMENT ON COLUMN @extschema@.installation_usage.since IS 'First UTC day counted: today minus 29 days.';
COMMENT ON COLUMN @extschema@.installation_usage.total_requests IS 'Model calls (events) since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.prompt_tokens IS 'Prompt (input) tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.completion_tokens IS 'Completion (output) tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.total_tokens IS 'prompt_tokens + completion_tokens since the day in since.';
COMMENT ON COLUMN @extschema@.installation_usage.estimated_cost_usd IS 'Estimated cost in USD since the day in since; NULL when nothing was priced.';
