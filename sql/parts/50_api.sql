-- sql/parts/50_api.sql — the HTTP-facing schema usage_api: one function per
-- route, written so that PostgREST (db-schemas = usage_api) and the
-- project's gateway serve them unchanged.  Functions read the request the
-- PostgREST way: headers from request.headers, the tenant from
-- request.jwt.claims, and signal HTTP status with SQLSTATE 'PGRST'.

CREATE SCHEMA IF NOT EXISTS usage_api;
COMMENT ON SCHEMA usage_api IS
    'HTTP routes of usage_tracking, one function per route, PostgREST-compatible (served from /rpc/<name>).';
GRANT USAGE ON SCHEMA usage_api TO usage_tracking_ingest, usage_tracking_reader,
                                   usage_tracking_analyst, usage_tracking_admin;

-- Re-raise an error caught in a route function the way PostgREST turns it
-- into an HTTP answer: the extension's SQLSTATEs (usage_tracking.error_codes)
-- become SQLSTATE 'PGRST' with message {"code","message","details","hint"}
-- and detail {"status","headers"}; UTR01's DETAIL {"retry_after_s": N}
-- becomes a Retry-After header.  Any other SQLSTATE is raised again as is.
CREATE FUNCTION @extschema@.raise_http_error(sqlstate text, message text,
                                             detail text DEFAULT NULL,
                                             hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    code    text;
    status  integer;
    headers jsonb := '{}';
    retry   text;
BEGIN
    SELECT e.error, e.http_status INTO code, status
      FROM @extschema@.error_codes e
     WHERE e.sqlstate = raise_http_error.sqlstate;
    IF NOT FOUND THEN
        IF detail IS NULL AND hint IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
        ELSIF hint IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
        ELSIF detail IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
        END IF;
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail, HINT = hint;
    END IF;
    IF status = 429 THEN
        BEGIN
            retry := (detail::jsonb ->> 'retry_after_s');
        EXCEPTION WHEN invalid_text_representation THEN
            retry := NULL;
        END;
        headers := jsonb_build_object('Retry-After',
                                      greatest(ceil(coalesce(retry, '1')::numeric), 1)::bigint::text);
    END IF;
    RAISE SQLSTATE 'PGRST'
        USING MESSAGE = json_build_object('code', code, 'message', message,
                                          'details', detail, 'hint', hint)::text,
              DETAIL = json_build_object('status', status, 'headers', headers)::text;
END
$$;
REVOKE ALL ON FUNCTION @extschema@.raise_http_error(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.raise_http_error(text, text, text, text)
    TO usage_tracking_ingest, usage_tracking_reader, usage_tracking_analyst, usage_tracking_admin;
COMMENT ON FUNCTION @extschema@.raise_http_error(text, text, text, text) IS
    'For usage_api functions'' exception handlers: raise an extension SQLSTATE (usage_tracking.error_codes) again as SQLSTATE PGRST with the PostgREST JSON message and {"status","headers"} detail (Retry-After for 429); raise any other SQLSTATE again unchanged.';

-- POST /api/usage/event ------------------------------------------------------

CREATE FUNCTION usage_api.ingest(json)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_api_ingest'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION usage_api.ingest(json) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.ingest(json) TO usage_tracking_ingest, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.ingest(json) IS
    'POST /api/usage/event: ingest the raw request body (a single unnamed json parameter, byte for byte) signed by the X-Install-Signature of request.headers, for the account_id of request.jwt.claims (not checked when the claim is absent). Errors: SQLSTATE PGRST with the status of usage_tracking.error_codes.';

-- The same route with the body as text: what the gateway calls.  A json
-- argument is lexed by PostgreSQL once more before ingest parses it; as
-- text it is parsed once, and invalid JSON still answers 400
-- malformed_json (UTB01).  Under PostgREST it is the text/plain variant.
CREATE FUNCTION usage_api.ingest(text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_api_ingest'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION usage_api.ingest(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.ingest(text) TO usage_tracking_ingest, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.ingest(text) IS
    'POST /api/usage/event as usage_api.ingest(json), the body passed as text (parsed once, by ingest itself).';

-- Read routes: SECURITY INVOKER, so the row-level security of the caller's
-- role and JWT account decides what they see (sql/parts/25_rls.sql).

-- GET /api/usage/summary -----------------------------------------------------

CREATE FUNCTION usage_api.summary(install_id text DEFAULT NULL,
                                  date_from date DEFAULT NULL,
                                  date_to date DEFAULT NULL,
                                  group_by text DEFAULT 'day')
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT coalesce(pg_catalog.jsonb_agg(
           CASE WHEN 'day' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('date', s.usage_date) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'install' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('install_id', s.install_id) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'user' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('wp_user_id_hash', s.wp_user_id_hash) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'source' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('source', s.source) ELSE '{}' END
           OPERATOR(pg_catalog.||) CASE WHEN 'model' = ANY (k.keys) THEN pg_catalog.jsonb_build_object('model', s.model) ELSE '{}' END
           OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(
               'total_requests', s.total_requests, 'prompt_tokens', s.prompt_tokens,
               'completion_tokens', s.completion_tokens, 'cached_prompt_tokens', s.cached_prompt_tokens,
               'total_tokens', s.total_tokens, 'estimated_cost_usd', s.estimated_cost_usd)
           ORDER BY s.n), '[]')
  FROM (SELECT @extschema@._summary_keys(summary.group_by) AS keys) k,
       @extschema@.usage_summary(summary.install_id, summary.date_from, summary.date_to, summary.group_by)
           WITH ORDINALITY AS s(usage_date, install_id, wp_user_id_hash, source, model, total_requests,
                                prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens,
                                estimated_cost_usd, n)
$$;
REVOKE ALL ON FUNCTION usage_api.summary(text, date, date, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.summary(text, date, date, text) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.summary(text, date, date, text) IS
    'GET /api/usage/summary?install_id=&date_from=&date_to=&group_by=: a JSON array, one object per group with the grouping keys (date, install_id, wp_user_id_hash, source, model as grouped), total_requests, prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens and estimated_cost_usd. Without install_id: every installation of the caller''s account. See usage_tracking.usage_summary.';

-- GET /api/usage/events ------------------------------------------------------

CREATE FUNCTION usage_api.events(install_id text DEFAULT NULL,
                                 date_from date DEFAULT NULL,
                                 date_to date DEFAULT NULL,
                                 after text DEFAULT NULL,
                                 lim integer DEFAULT 100)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT pg_catalog.jsonb_build_object(
           'events', coalesce(pg_catalog.jsonb_agg(
                         pg_catalog.to_jsonb(e) OPERATOR(pg_catalog.-) 'cursor' OPERATOR(pg_catalog.-) 'n'
                         ORDER BY e.n), '[]'),
           'next', CASE WHEN pg_catalog.count(*) = events.lim
                        THEN (pg_catalog.array_agg(e.cursor ORDER BY e.n DESC))[1] END)
  FROM @extschema@.list_events(events.install_id,
                               events.date_from::timestamp AT TIME ZONE 'UTC',
                               (events.date_to + 1)::timestamp AT TIME ZONE 'UTC',
                               events.after, events.lim)
           WITH ORDINALITY AS e(install_id, event_id, wp_user_id_hash, source, model, prompt_tokens,
                                completion_tokens, cached_prompt_tokens, total_tokens, request_id,
                                context, created_at, received_at, cursor, n)
$$;
REVOKE ALL ON FUNCTION usage_api.events(text, date, date, text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.events(text, date, date, text, integer) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.events(text, date, date, text, integer) IS
    'GET /api/usage/events?install_id=&date_from=&date_to=&after=&limit=: {"events": [...], "next": cursor or null}, raw events created on the UTC days date_from to date_to, newest received first, at most lim (1 to 1000, default 100; the gateway''s limit= is lim). Pass next as after for the following page; next is null on a short page.';

-- GET /api/usage/installations (admin) ----------------------------------------

CREATE FUNCTION usage_api.installations(date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(i) ORDER BY i.account_id, i.install_id), '[]')
  FROM @extschema@.installations(installations.date_from, installations.date_to) i
$$;
REVOKE ALL ON FUNCTION usage_api.installations(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.installations(date, date) TO usage_tracking_admin;
COMMENT ON FUNCTION usage_api.installations(date, date) IS
    'GET /api/usage/installations?date_from=&date_to= (admin): a JSON array of every installation with account_id, status, first_seen, last_seen, total_requests, total_tokens and estimated_cost_usd for the period.';

-- POST /api/usage/export ------------------------------------------------------

-- Plain SQL with no SET clause, so the planner inlines it (and export_csv)
-- into the caller's query: the gateway streams rows as they are produced.
CREATE FUNCTION usage_api.export(kind text DEFAULT 'daily', install_id text DEFAULT NULL,
                                 date_from date DEFAULT NULL, date_to date DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql STABLE PARALLEL UNSAFE
AS $$
SELECT l FROM @extschema@.export_csv(export.kind, export.install_id, export.date_from, export.date_to) AS l
$$;
REVOKE ALL ON FUNCTION usage_api.export(text, text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.export(text, text, date, date) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.export(text, text, date, date) IS
    'POST /api/usage/export with a JSON body {"kind": "daily"|"events", "install_id", "date_from", "date_to"}: the CSV lines, header first. The gateway streams them as text/csv; PostgREST answers them as a JSON array of lines.';

-- GET /api/usage/quota ---------------------------------------------------------

-- SECURITY DEFINER to read governance's state; the tenant check is the one
-- row-level security makes for the read routes: the installation must be of
-- the account in the JWT claims, unless the caller's role is the admin's.
-- Anything else is "not found", so nobody learns which installations exist.
CREATE FUNCTION usage_api.quota(install_id text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller  text := pg_catalog.current_setting('role');
    owner   text;
BEGIN
    SELECT i.account_id INTO owner FROM @extschema@.installations i WHERE i.install_id = quota.install_id;
    IF owner IS NULL
       OR (owner IS DISTINCT FROM @extschema@.current_account()
           AND NOT pg_catalog.pg_has_role(CASE WHEN caller = 'none' THEN session_user ELSE caller END,
                                          'usage_tracking_admin', 'USAGE')) THEN
        RAISE SQLSTATE 'PGRST'
            USING MESSAGE = json_build_object('code', 'not_found', 'message', 'unknown installation',
                                              'details', NULL, 'hint', NULL)::text,
                  DETAIL = '{"status": 404, "headers": {}}';
    END IF;
    RETURN @extschema@.quota_status(quota.install_id, pg_catalog.now());
END
$$;
REVOKE ALL ON FUNCTION usage_api.quota(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.quota(text) TO usage_tracking_reader, usage_tracking_admin;
COMMENT ON FUNCTION usage_api.quota(text) IS
    'GET /api/usage/quota?install_id=: the quota verdict of usage_tracking.quota_status (level, used, limit, percent, 5-minute window, hour and abuse flags) for an installation of the caller''s account (any installation for the admin); 404 otherwise.';
