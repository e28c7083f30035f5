-- sql/parts/61_analytics_api.sql — the HTTP routes of provider analytics, in
-- the PostgREST-style schema usage_api: each function answers GET
-- /rpc/<name>?<arg>=<value>&… with one JSON document.  They are what the
-- dashboard reads; all are STABLE (PostgREST serves only those over GET) and
-- call the usage_tracking analytics functions.
-- The HTTP schema is created by the API part; create it here only when
-- absent, quietly (CREATE SCHEMA IF NOT EXISTS would raise a notice).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'usage_api') THEN
        CREATE SCHEMA usage_api;
    END IF;
END
$$;

CREATE FUNCTION usage_api.analytics_overview(day date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.provider_overview(day) $$;
COMMENT ON FUNCTION usage_api.analytics_overview(date) IS
    'GET /rpc/analytics_overview?day=: installations, accounts, requests, tokens and cost on the day (default today, UTC), month to date and projected to the month end, over every account.';

CREATE FUNCTION usage_api.analytics_daily(date_from date, date_to date,
                                          install_id text DEFAULT NULL,
                                          account_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'date', t.usage_date, 'installations', t.installations,
               'requests', t.total_requests, 'prompt_tokens', t.prompt_tokens,
               'completion_tokens', t.completion_tokens, 'tokens', t.total_tokens,
               'cost_usd', t.estimated_cost_usd, 'unpriced_requests', t.unpriced_requests)
               ORDER BY t.usage_date), '[]'::jsonb)
      FROM @extschema@.daily_totals(date_from, date_to, install_id, account_id) t
$$;
COMMENT ON FUNCTION usage_api.analytics_daily(date, date, text, text) IS
    'GET /rpc/analytics_daily?date_from=&date_to=&install_id=&account_id=: one object per UTC day (zeros included) with requests, tokens and cost.';

CREATE FUNCTION usage_api.analytics_top_installations(date_from date, date_to date,
                                                      by text DEFAULT 'cost',
                                                      lim integer DEFAULT 20)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY t.rank), '[]'::jsonb)
      FROM @extschema@.top_installations(date_from, date_to, by, lim) t
$$;
COMMENT ON FUNCTION usage_api.analytics_top_installations(date, date, text, integer) IS
    'GET /rpc/analytics_top_installations?date_from=&date_to=&by=cost|requests|tokens&lim=: the top installations across every account.';

CREATE FUNCTION usage_api.analytics_anomalies(day date, min_score numeric DEFAULT 3.5)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(to_jsonb(a)), '[]'::jsonb)
      FROM @extschema@.anomalies(day, min_score) a
$$;
COMMENT ON FUNCTION usage_api.analytics_anomalies(date, numeric) IS
    'GET /rpc/analytics_anomalies?day=&min_score=: installations, accounts and models whose day is far from their previous 28 days, strongest first.';

CREATE FUNCTION usage_api.analytics_breakdown(by text, date_from date, date_to date,
                                              install_id text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF by = 'model' THEN
        RETURN (SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb)
                  FROM @extschema@.model_breakdown(date_from, date_to, install_id) b);
    ELSIF by = 'source' THEN
        RETURN (SELECT coalesce(jsonb_agg(to_jsonb(b)), '[]'::jsonb)
                  FROM @extschema@.source_breakdown(date_from, date_to, install_id) b);
    END IF;
    RAISE EXCEPTION 'by must be model or source' USING ERRCODE = '22023';
END
$$;
COMMENT ON FUNCTION usage_api.analytics_breakdown(text, date, date, text) IS
    'GET /rpc/analytics_breakdown?by=model|source&date_from=&date_to=&install_id=: usage per model or per source, across every account or for one installation.';

CREATE FUNCTION usage_api.analytics_projection(account_id text DEFAULT NULL, month date DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT @extschema@.cost_projection(account_id, month) $$;
COMMENT ON FUNCTION usage_api.analytics_projection(text, date) IS
    'GET /rpc/analytics_projection?account_id=&month=: the cost projection of one account (default every account) for a month (default this one).';

CREATE FUNCTION usage_api.analytics_installation(install_id text, day date DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d    date := coalesce(day, (pg_catalog.now() AT TIME ZONE 'UTC')::date);
    m0   date := date_trunc('month', d)::date;
    info jsonb;
BEGIN
    SELECT jsonb_build_object(
               'install_id', i.install_id, 'account_id', i.account_id, 'status', i.status,
               'plan', a.plan, 'account_status', a.status,
               'first_seen_at', i.first_seen_at, 'last_seen_at', i.last_seen_at,
               'plugin_version', i.plugin_version, 'created_at', i.created_at)
      INTO info
      FROM @extschema@.installations i
      JOIN @extschema@.accounts a ON a.account_id = i.account_id
     WHERE i.install_id = analytics_installation.install_id;
    IF info IS NULL THEN
        RAISE SQLSTATE 'PT404' USING MESSAGE = 'unknown installation';
    END IF;
    RETURN info || jsonb_build_object(
        'day', d,
        'today', (SELECT jsonb_build_object('requests', t.total_requests, 'tokens', t.total_tokens,
                                            'cost_usd', t.estimated_cost_usd)
                    FROM @extschema@.daily_totals(d, d, analytics_installation.install_id) t),
        'month_to_date', (SELECT jsonb_build_object('requests', sum(t.total_requests),
                                                    'tokens', sum(t.total_tokens),
                                                    'cost_usd', sum(t.estimated_cost_usd),
                                                    'unpriced_requests', sum(t.unpriced_requests))
                            FROM @extschema@.daily_totals(m0, d, analytics_installation.install_id) t),
        'last_30_days', (SELECT jsonb_build_object('requests', sum(t.total_requests),
                                                   'tokens', sum(t.total_tokens),
                                                   'cost_usd', sum(t.estimated_cost_usd),
                                                   'active_days', count(*) FILTER (WHERE t.total_requests > 0))
                           FROM @extschema@.daily_totals(d - 29, d, analytics_installation.install_id) t),
        'anomalies', (SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.on_day DESC), '[]'::jsonb)
                        FROM (SELECT g::date AS on_day, a.metric, a.value, a.median, a.score, a.direction, a.reason
                                FROM pg_catalog.generate_series(d - 29, d, interval '1 day') g,
                                     @extschema@._anomalies(g::date, 3.5, analytics_installation.install_id) a) x));
END
$$;
COMMENT ON FUNCTION usage_api.analytics_installation(text, date) IS
    'GET /rpc/analytics_installation?install_id=&day=: one installation''s account, status, first and last seen, usage on the day, month to date and over the last 30 days, and its anomalies in those 30 days. 404 when unknown.';

GRANT USAGE ON SCHEMA usage_api TO usage_tracking_admin, usage_tracking_analyst;
REVOKE ALL ON FUNCTION usage_api.analytics_overview(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_daily(date, date, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_top_installations(date, date, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_anomalies(date, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_breakdown(text, date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_projection(text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION usage_api.analytics_installation(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    usage_api.analytics_overview(date),
    usage_api.analytics_daily(date, date, text, text),
    usage_api.analytics_top_installations(date, date, text, integer),
    usage_api.analytics_anomalies(date, numeric),
    usage_api.analytics_breakdown(text, date, date, text),
    usage_api.analytics_projection(text, date),
    usage_api.analytics_installation(text, date)
    TO usage_tracking_admin, usage_tracking_analyst;
