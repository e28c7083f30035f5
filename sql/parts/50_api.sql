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
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    headers jsonb := nullif(current_setting('request.headers', true), '')::jsonb;
    claims  jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
    st      text;
    msg     text;
    det     text;
    hnt     text;
BEGIN
    RETURN @extschema@.ingest($1::text, headers ->> 'x-install-signature',
                              pg_catalog.now(), claims ->> 'account_id');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    PERFORM @extschema@.raise_http_error(st, msg, nullif(det, ''), nullif(hnt, ''));
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION usage_api.ingest(json) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION usage_api.ingest(json) TO usage_tracking_ingest;
COMMENT ON FUNCTION usage_api.ingest(json) IS
    'POST /api/usage/event: ingest the raw request body (a single unnamed json parameter, byte for byte) signed by the X-Install-Signature of request.headers, for the account_id of request.jwt.claims (not checked when the claim is absent). Errors: SQLSTATE PGRST with the status of usage_tracking.error_codes.';
