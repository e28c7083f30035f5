-- sql/parts/60_analytics.sql — provider analytics across every account: daily
-- totals, cost projection, anomaly detection, top installations, breakdowns by
-- model and by source, and the overview the dashboard shows.  Everything here
-- reads the daily summaries (usage_tracking.daily), never the raw events.

-- Internal: refuse a missing, inverted or over-long date range.
CREATE FUNCTION @extschema@._analytics_range(date_from date, date_to date)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF date_from IS NULL OR date_to IS NULL THEN
        RAISE EXCEPTION 'date_from and date_to are required'
            USING ERRCODE = '22023', HINT = 'Dates are YYYY-MM-DD, both inclusive.';
    END IF;
    IF date_from > date_to THEN
        RAISE EXCEPTION 'date_from % is after date_to %', date_from, date_to
            USING ERRCODE = '22023';
    END IF;
    IF date_to - date_from > 3660 THEN
        RAISE EXCEPTION 'a date range spans at most 3661 days'
            USING ERRCODE = '22023';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._analytics_range(date, date) IS
    'Internal: raise 22023 unless date_from <= date_to, both given, at most 3661 days apart.';

-- Daily totals --------------------------------------------------------------

CREATE FUNCTION @extschema@.daily_totals(date_from date, date_to date,
                                         install_id text DEFAULT NULL,
                                         account_id text DEFAULT NULL)
RETURNS TABLE (usage_date date, installations bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    PERFORM @extschema@._analytics_range(date_from, date_to);
    RETURN QUERY
    SELECT g.day::date,
           count(DISTINCT d.install_id),
           coalesce(sum(d.total_requests), 0)::bigint,
           coalesce(sum(d.prompt_tokens), 0)::bigint,
           coalesce(sum(d.completion_tokens), 0)::bigint,
           coalesce(sum(d.cached_prompt_tokens), 0)::bigint,
           coalesce(sum(d.prompt_tokens + d.completion_tokens), 0)::bigint,
           trim_scale(coalesce(sum(d.estimated_cost_usd), 0)),
           coalesce(sum(d.unpriced_requests), 0)::bigint
      FROM pg_catalog.generate_series(date_from::timestamp, date_to::timestamp, interval '1 day') AS g(day)
      LEFT JOIN (SELECT x.* FROM @extschema@.daily x
                   JOIN @extschema@.installations i ON i.install_id = x.install_id
                  WHERE x.usage_date BETWEEN date_from AND date_to
                    AND (install_id IS NULL OR x.install_id = install_id)
                    AND (account_id IS NULL OR i.account_id = account_id)) d
             ON d.usage_date = g.day::date
     GROUP BY g.day
     ORDER BY g.day;
END
$$;
COMMENT ON FUNCTION @extschema@.daily_totals(date, date, text, text) IS
    'One row per UTC day from date_from to date_to (both inclusive, zeros on days without usage): installations with usage, requests, tokens, estimated cost in USD and unpriced requests, for every installation, one installation or one account.';

-- Cost projection -----------------------------------------------------------

CREATE FUNCTION @extschema@.cost_projection(account_id text, month date DEFAULT NULL,
                                            now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    today     date := (now AT TIME ZONE 'UTC')::date;
    m0        date;
    m1        date;
    dim       integer;
    elapsed   numeric;
    remaining numeric;
    upto      date;     -- month to date: days before this one
    rate_to   date;     -- exclusive
    rate_from date;
    status    text;
    total     jsonb;
    models    jsonb;
BEGIN
    IF now IS NULL THEN
        RAISE EXCEPTION 'now is required' USING ERRCODE = '22023';
    END IF;
    IF account_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id USING ERRCODE = '22023';
    END IF;
    m0 := date_trunc('month', coalesce(month, today))::date;
    m1 := (m0 + interval '1 month')::date;
    dim := m1 - m0;
    -- Days of the month elapsed at "now", fractional, between 0 and its length.
    elapsed := least(greatest(extract(epoch FROM now - (m0::timestamp AT TIME ZONE 'UTC')) / 86400, 0), dim);
    remaining := dim - elapsed;
    upto := m0 + ceil(elapsed)::integer;
    status := CASE WHEN elapsed >= dim THEN 'complete' WHEN elapsed <= 0 THEN 'future' ELSE 'current' END;
    -- The run rate is the mean of the 7 whole UTC days before today (the last
    -- 7 days of the month for a past month).
    rate_to := least(today, m1);
    rate_from := rate_to - 7;

    WITH per_model AS (
        SELECT d.model,
               coalesce(sum(d.total_requests) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS req,
               coalesce(sum(d.prompt_tokens + d.completion_tokens) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS tok,
               coalesce(sum(d.estimated_cost_usd) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS cost,
               coalesce(sum(d.unpriced_requests) FILTER (WHERE d.usage_date >= m0 AND d.usage_date < upto), 0) AS unpriced,
               coalesce(sum(d.total_requests) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS req_rate,
               coalesce(sum(d.prompt_tokens + d.completion_tokens) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS tok_rate,
               coalesce(sum(d.estimated_cost_usd) FILTER (WHERE d.usage_date >= rate_from AND d.usage_date < rate_to), 0) / 7.0 AS cost_rate
          FROM @extschema@.daily d
          JOIN @extschema@.installations i ON i.install_id = d.install_id
         WHERE (account_id IS NULL OR i.account_id = account_id)
           AND d.usage_date >= least(m0, rate_from)
           AND d.usage_date < m1
         GROUP BY d.model),
    totals AS (
        SELECT coalesce(sum(p.req), 0) AS req, coalesce(sum(p.tok), 0) AS tok,
               coalesce(sum(p.cost), 0) AS cost, coalesce(sum(p.unpriced), 0) AS unpriced,
               coalesce(sum(p.req_rate), 0) AS req_rate, coalesce(sum(p.tok_rate), 0) AS tok_rate,
               coalesce(sum(p.cost_rate), 0) AS cost_rate
          FROM per_model p)
    SELECT jsonb_build_object(
               'month_to_date', jsonb_build_object(
                   'requests', t.req, 'tokens', t.tok,
                   'cost_usd', trim_scale(round(t.cost, 6)), 'unpriced_requests', t.unpriced),
               'run_rate_7d', jsonb_build_object(
                   'from', rate_from, 'to', rate_to - 1,
                   'requests_per_day', trim_scale(round(t.req_rate, 4)),
                   'tokens_per_day', trim_scale(round(t.tok_rate, 4)),
                   'cost_usd_per_day', trim_scale(round(t.cost_rate, 6))),
               'projected_run_rate', jsonb_build_object(
                   'requests', round(t.req + t.req_rate * remaining),
                   'tokens', round(t.tok + t.tok_rate * remaining),
                   'cost_usd', trim_scale(round(t.cost + t.cost_rate * remaining, 6))),
               'projected_linear', CASE WHEN elapsed > 0 THEN jsonb_build_object(
                   'requests', round(t.req * dim / elapsed),
                   'tokens', round(t.tok * dim / elapsed),
                   'cost_usd', trim_scale(round(t.cost * dim / elapsed, 6))) END),
           (SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'model', p.model, 'requests', p.req, 'tokens', p.tok,
                       'cost_usd', trim_scale(round(p.cost, 6)), 'unpriced_requests', p.unpriced,
                       'cost_usd_per_day_7d', trim_scale(round(p.cost_rate, 6)),
                       'projected_run_rate_cost_usd', trim_scale(round(p.cost + p.cost_rate * remaining, 6)),
                       'projected_linear_cost_usd',
                           CASE WHEN elapsed > 0 THEN trim_scale(round(p.cost * dim / elapsed, 6)) END)
                       ORDER BY p.cost DESC, p.req DESC, p.model), '[]'::jsonb)
              FROM per_model p)
      INTO total, models
      FROM totals t;

    RETURN jsonb_build_object(
               'account_id', account_id,
               'month', m0,
               'as_of', now,
               'status', status,
               'days_in_month', dim,
               'days_elapsed', trim_scale(round(elapsed, 6)))
           || total
           || jsonb_build_object('by_model', models);
END
$$;
COMMENT ON FUNCTION @extschema@.cost_projection(text, date, timestamptz) IS
    'Month-to-date requests, tokens and estimated cost of an account (NULL: every account) for the UTC calendar month holding "month" (NULL: the month of "now"), and the projected month end two ways: month to date plus the mean of the 7 whole days before today times the days left (projected_run_rate), and month to date divided by the days elapsed times the days in the month (projected_linear); with a per-model breakdown.';

-- Anomalies -----------------------------------------------------------------
--
-- Each installation, account and model is compared with its own recent past:
-- its requests, tokens and cost on "day" against the same metric on each of
-- the 28 days before (days without usage count as 0).  The score is the
-- robust z-score 0.6745 * (x - median) / MAD.  When more than half the
-- history is one value the MAD is 0: the score then uses the mean absolute
-- deviation around the median, (x - median) / (1.2533 * MeanAD); when the
-- history is perfectly flat at a level m > 0, its spread is taken as 10 % of
-- m.  A day is an anomaly when |score| >= min_score and the day is outside
-- the range of its history (above its highest day or below its lowest), so a
-- site that is busy every few days is not flagged on each busy day.
-- History starts at the subject's first usage (looked for 56 days back);
-- with fewer than 7 days of it, or none but zeros, the subject is new (or
-- back from 28 silent days) and is not scored: a new site's first bulk run
-- over its media library is expected, not an anomaly.

CREATE FUNCTION @extschema@._anomalies(day date, min_score numeric, only_install text)
RETURNS TABLE (kind text, id text, account_id text, metric text, value numeric,
               median numeric, mad numeric, score numeric, direction text,
               history_days integer, reason text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Planned for the arguments of each call: one installation's history is read
-- through the primary key, and the account and model branches drop out.
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
BEGIN
    IF day IS NULL THEN
        RAISE EXCEPTION 'day is required' USING ERRCODE = '22023';
    END IF;
    IF min_score IS NULL OR min_score < 0 THEN
        RAISE EXCEPTION 'min_score must be a number >= 0' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH per_install AS (
        SELECT d.install_id AS s_install, d.usage_date AS s_date,
               sum(d.total_requests)::numeric AS s_requests,
               sum(d.prompt_tokens + d.completion_tokens)::numeric AS s_tokens,
               coalesce(sum(d.estimated_cost_usd), 0) AS s_cost
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN _anomalies.day - 56 AND _anomalies.day
           AND (_anomalies.only_install IS NULL OR d.install_id = _anomalies.only_install)
         GROUP BY d.install_id, d.usage_date),
    series AS (
        SELECT 'installation'::text AS s_kind, p.s_install AS s_id, i.account_id AS s_account,
               p.s_date, p.s_requests, p.s_tokens, p.s_cost
          FROM per_install p
          JOIN @extschema@.installations i ON i.install_id = p.s_install
        UNION ALL
        SELECT 'account', i.account_id, i.account_id, p.s_date,
               sum(p.s_requests), sum(p.s_tokens), sum(p.s_cost)
          FROM per_install p
          JOIN @extschema@.installations i ON i.install_id = p.s_install
         WHERE _anomalies.only_install IS NULL
         GROUP BY i.account_id, p.s_date
        UNION ALL
        SELECT 'model', d.model, NULL, d.usage_date,
               sum(d.total_requests)::numeric, sum(d.prompt_tokens + d.completion_tokens)::numeric,
               coalesce(sum(d.estimated_cost_usd), 0)
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN _anomalies.day - 56 AND _anomalies.day
           AND _anomalies.only_install IS NULL
         GROUP BY d.model, d.usage_date),
    subjects AS (
        SELECT s.s_kind, s.s_id, s.s_account,
               greatest(min(s.s_date), _anomalies.day - 28) AS s_since
          FROM series s
         GROUP BY s.s_kind, s.s_id, s.s_account
        HAVING max(s.s_date) >= _anomalies.day - 28),
    -- The days of each history that had usage, and the day itself.
    present AS (
        SELECT sub.s_kind, sub.s_id, sub.s_account, sub.s_since,
               s.s_date = _anomalies.day AS p_today, s.s_requests, s.s_tokens, s.s_cost
          FROM subjects sub
          JOIN series s ON s.s_kind = sub.s_kind AND s.s_id = sub.s_id
         WHERE s.s_date >= sub.s_since),
    -- How many days of each history had no usage: they count as zeros.
    quiet AS (
        SELECT p.s_kind, p.s_id, p.s_account,
               (_anomalies.day - min(p.s_since)) - count(*) FILTER (WHERE NOT p.p_today) AS q_days
          FROM present p
         GROUP BY p.s_kind, p.s_id, p.s_account),
    points AS (
        SELECT p.s_kind, p.s_id, p.s_account, p.p_today, m.m_metric, m.m_value
          FROM present p
         CROSS JOIN LATERAL (VALUES ('requests', p.s_requests),
                                    ('tokens', p.s_tokens),
                                    ('cost_usd', p.s_cost)) m(m_metric, m_value)
        UNION ALL
        SELECT q.s_kind, q.s_id, q.s_account, false, m.m_metric, 0::numeric
          FROM quiet q
         CROSS JOIN LATERAL pg_catalog.generate_series(1, q.q_days) z
         CROSS JOIN (VALUES ('requests'), ('tokens'), ('cost_usd')) m(m_metric)),
    centre AS (
        SELECT p.s_kind, p.s_id, p.s_account, p.m_metric,
               count(*) FILTER (WHERE NOT p.p_today) AS c_n,
               coalesce(max(p.m_value) FILTER (WHERE p.p_today), 0) AS c_x,
               min(p.m_value) FILTER (WHERE NOT p.p_today) AS c_min,
               max(p.m_value) FILTER (WHERE NOT p.p_today) AS c_max,
               (percentile_disc(0.5) WITHIN GROUP (ORDER BY p.m_value)
                    FILTER (WHERE NOT p.p_today)
                + percentile_disc(0.5) WITHIN GROUP (ORDER BY p.m_value DESC)
                    FILTER (WHERE NOT p.p_today)) / 2 AS c_med
          FROM points p
         GROUP BY p.s_kind, p.s_id, p.s_account, p.m_metric),
    spread AS (
        SELECT c.s_kind, c.s_id, c.s_account, c.m_metric, c.c_n, c.c_x, c.c_min, c.c_max, c.c_med,
               (percentile_disc(0.5) WITHIN GROUP (ORDER BY abs(p.m_value - c.c_med))
                + percentile_disc(0.5) WITHIN GROUP (ORDER BY abs(p.m_value - c.c_med) DESC)) / 2 AS c_mad,
               avg(abs(p.m_value - c.c_med)) AS c_meanad
          FROM centre c
          JOIN points p ON p.s_kind = c.s_kind AND p.s_id = c.s_id AND p.m_metric = c.m_metric
         WHERE NOT p.p_today
           AND c.c_n >= 7
           AND c.c_max > 0
         GROUP BY c.s_kind, c.s_id, c.s_account, c.m_metric, c.c_n, c.c_x, c.c_min, c.c_max, c.c_med),
    scored AS (
        SELECT sp.*,
               CASE WHEN sp.c_mad > 0 THEN 0.6745 * (sp.c_x - sp.c_med) / sp.c_mad
                    WHEN sp.c_meanad > 0 THEN (sp.c_x - sp.c_med) / (1.2533 * sp.c_meanad)
                    ELSE (sp.c_x - sp.c_med) / (0.1 * sp.c_med) END AS z,
               CASE WHEN sp.c_mad > 0 THEN 'MAD'
                    WHEN sp.c_meanad > 0 THEN 'mean absolute deviation (MAD is 0)'
                    ELSE 'flat history (spread taken as 10% of the median)' END AS z_method
          FROM spread sp),
    flagged AS (
        SELECT DISTINCT ON (s.s_kind, s.s_id) s.*
          FROM scored s
         WHERE abs(s.z) >= _anomalies.min_score
           AND (s.c_x > s.c_max OR s.c_x < s.c_min)
         ORDER BY s.s_kind, s.s_id, round(abs(s.z), 6) DESC,
                  array_position(ARRAY['requests', 'tokens', 'cost_usd'], s.m_metric))
    SELECT f.s_kind, f.s_id, f.s_account, f.m_metric,
           trim_scale(round(f.c_x, 6)), trim_scale(round(f.c_med, 6)), trim_scale(round(f.c_mad, 6)),
           round(f.z, 2),
           CASE WHEN f.z > 0 THEN 'spike' ELSE 'drop' END,
           f.c_n::integer,
           pg_catalog.format('%s %s on %s against a median of %s over the %s days before: robust z %s (%s)',
                             f.m_metric, trim_scale(round(f.c_x, 6)), _anomalies.day,
                             trim_scale(round(f.c_med, 6)), f.c_n, round(f.z, 2), f.z_method)
      FROM flagged f
     ORDER BY abs(f.z) DESC, f.s_kind DESC, f.s_id;
END
$$;
COMMENT ON FUNCTION @extschema@._anomalies(date, numeric, text) IS
    'Internal: anomalies(day, min_score), or only one installation''s when only_install is given.';

CREATE FUNCTION @extschema@.anomalies(day date, min_score numeric DEFAULT 3.5)
RETURNS TABLE (kind text, id text, account_id text, metric text, value numeric,
               median numeric, mad numeric, score numeric, direction text,
               history_days integer, reason text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._anomalies(day, min_score, NULL) $$;
COMMENT ON FUNCTION @extschema@.anomalies(date, numeric) IS
    'Installations, accounts and models whose usage on "day" (UTC) is far from their own previous 28 days: robust z-score 0.6745 * (x - median) / MAD of requests, tokens or cost (the strongest metric per subject), at least min_score in absolute value and outside the history''s range. Falls back to the mean absolute deviation when the MAD is 0; subjects with fewer than 7 days of history are not scored. See the README for the method.';

-- Top installations ---------------------------------------------------------

CREATE FUNCTION @extschema@.top_installations(date_from date, date_to date,
                                              by text DEFAULT 'cost', lim integer DEFAULT 20)
RETURNS TABLE (rank bigint, install_id text, account_id text, status text,
               total_requests bigint, prompt_tokens bigint, completion_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               active_days bigint, share_pct numeric, last_seen_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM @extschema@._analytics_range(top_installations.date_from, top_installations.date_to);
    IF top_installations.by IS NULL OR top_installations.by NOT IN ('cost', 'requests', 'tokens') THEN
        RAISE EXCEPTION 'by must be cost, requests or tokens' USING ERRCODE = '22023';
    END IF;
    IF top_installations.lim IS NULL OR top_installations.lim NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'lim must be between 1 and 1000' USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH per_install AS (
        SELECT d.install_id AS p_install,
               sum(d.total_requests)::bigint AS p_requests,
               sum(d.prompt_tokens)::bigint AS p_prompt,
               sum(d.completion_tokens)::bigint AS p_completion,
               coalesce(sum(d.estimated_cost_usd), 0) AS p_cost,
               sum(d.unpriced_requests)::bigint AS p_unpriced,
               count(DISTINCT d.usage_date) AS p_days
          FROM @extschema@.daily d
         WHERE d.usage_date BETWEEN top_installations.date_from AND top_installations.date_to
         GROUP BY d.install_id),
    measured AS (
        SELECT p.*, CASE top_installations.by
                        WHEN 'cost' THEN p.p_cost
                        WHEN 'requests' THEN p.p_requests::numeric
                        ELSE (p.p_prompt + p.p_completion)::numeric END AS p_measure
          FROM per_install p)
    SELECT row_number() OVER (ORDER BY m.p_measure DESC, m.p_install),
           m.p_install, i.account_id, i.status,
           m.p_requests, m.p_prompt, m.p_completion, m.p_prompt + m.p_completion,
           trim_scale(m.p_cost), m.p_unpriced, m.p_days,
           CASE WHEN sum(m.p_measure) OVER () > 0
                THEN round(100 * m.p_measure / sum(m.p_measure) OVER (), 2) ELSE 0 END,
           i.last_seen_at
      FROM measured m
      JOIN @extschema@.installations i ON i.install_id = m.p_install
     ORDER BY m.p_measure DESC, m.p_install
     LIMIT top_installations.lim;
END
$$;
COMMENT ON FUNCTION @extschema@.top_installations(date, date, text, integer) IS
    'The lim installations with the highest cost, requests or tokens ("by") from date_from to date_to (UTC days, inclusive), across every account, with their share of the total in percent.';

-- Breakdowns ----------------------------------------------------------------

CREATE FUNCTION @extschema@._breakdown(dimension text, date_from date, date_to date, install_id text)
RETURNS TABLE (key text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM @extschema@._analytics_range(_breakdown.date_from, _breakdown.date_to);
    RETURN QUERY
    SELECT b.b_key, b.b_installs, b.b_accounts, b.b_requests, b.b_prompt, b.b_completion,
           b.b_cached, b.b_prompt + b.b_completion, trim_scale(b.b_cost), b.b_unpriced,
           CASE WHEN sum(b.b_cost) OVER () > 0
                THEN round(100 * b.b_cost / sum(b.b_cost) OVER (), 2) ELSE 0 END
      FROM (SELECT CASE _breakdown.dimension WHEN 'model' THEN d.model ELSE d.source END AS b_key,
                   count(DISTINCT d.install_id) AS b_installs,
                   count(DISTINCT i.account_id) AS b_accounts,
                   sum(d.total_requests)::bigint AS b_requests,
                   sum(d.prompt_tokens)::bigint AS b_prompt,
                   sum(d.completion_tokens)::bigint AS b_completion,
                   sum(d.cached_prompt_tokens)::bigint AS b_cached,
                   coalesce(sum(d.estimated_cost_usd), 0) AS b_cost,
                   sum(d.unpriced_requests)::bigint AS b_unpriced
              FROM @extschema@.daily d
              JOIN @extschema@.installations i ON i.install_id = d.install_id
             WHERE d.usage_date BETWEEN _breakdown.date_from AND _breakdown.date_to
               AND (_breakdown.install_id IS NULL OR d.install_id = _breakdown.install_id)
             GROUP BY 1) b
     ORDER BY b.b_cost DESC, b.b_requests DESC, b.b_key;
END
$$;
COMMENT ON FUNCTION @extschema@._breakdown(text, date, date, text) IS
    'Internal: usage from date_from to date_to grouped by model or by source.';

CREATE FUNCTION @extschema@.model_breakdown(date_from date, date_to date, install_id text DEFAULT NULL)
RETURNS TABLE (model text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._breakdown('model', date_from, date_to, install_id) $$;
COMMENT ON FUNCTION @extschema@.model_breakdown(date, date, text) IS
    'Usage per model from date_from to date_to (UTC days, inclusive) across every account (or one installation): installations and accounts using it, requests, tokens, estimated cost and its share of the cost in percent.';

CREATE FUNCTION @extschema@.source_breakdown(date_from date, date_to date, install_id text DEFAULT NULL)
RETURNS TABLE (source text, installations bigint, accounts bigint, total_requests bigint,
               prompt_tokens bigint, completion_tokens bigint, cached_prompt_tokens bigint,
               total_tokens bigint, estimated_cost_usd numeric, unpriced_requests bigint,
               cost_share_pct numeric)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM @extschema@._breakdown('source', date_from, date_to, install_id) $$;
COMMENT ON FUNCTION @extschema@.source_breakdown(date, date, text) IS
    'Usage per source (manual, bulk, queue, inline) from date_from to date_to (UTC days, inclusive) across every account (or one installation): installations and accounts, requests, tokens, estimated cost and its share of the cost in percent.';

-- Overview ------------------------------------------------------------------

CREATE FUNCTION @extschema@.provider_overview(day date DEFAULT NULL, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    as_of timestamptz := now;
    proj  jsonb;
    today jsonb;
    inst  jsonb;
    accts jsonb;
BEGIN
    IF day IS NULL THEN
        day := (now AT TIME ZONE 'UTC')::date;
    ELSE
        as_of := (day + 1)::timestamp AT TIME ZONE 'UTC';    -- the end of that day
    END IF;
    proj := @extschema@.cost_projection(NULL, day, as_of);
    SELECT jsonb_build_object('requests', t.total_requests, 'tokens', t.total_tokens,
                              'cost_usd', trim_scale(round(t.estimated_cost_usd, 6)),
                              'installations', t.installations)
      INTO today
      FROM @extschema@.daily_totals(day, day) t;
    SELECT jsonb_build_object('total', count(*),
                              'active', count(*) FILTER (WHERE i.status = 'active'),
                              'suspended', count(*) FILTER (WHERE i.status = 'suspended'))
      INTO inst
      FROM @extschema@.installations i;
    SELECT jsonb_build_object('total', count(*),
                              'active', count(*) FILTER (WHERE a.status = 'active'))
      INTO accts
      FROM @extschema@.accounts a;
    RETURN jsonb_build_object(
        'day', day,
        'as_of', as_of,
        'installations', inst,
        'accounts', accts,
        'today', today,
        'month_to_date', proj->'month_to_date',
        'projected', jsonb_build_object(
            'run_rate', proj->'projected_run_rate',
            'linear', proj->'projected_linear'),
        'projection', proj);
END
$$;
COMMENT ON FUNCTION @extschema@.provider_overview(date, timestamptz) IS
    'The provider''s overview as of the end of "day" (NULL: as of "now"): installations and accounts, requests, tokens and cost on that day, month to date and projected to the month end (cost_projection over every account).';

-- Privileges ----------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@._analytics_range(date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._breakdown(text, date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@._anomalies(date, numeric, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.daily_totals(date, date, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.cost_projection(text, date, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.anomalies(date, numeric) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.top_installations(date, date, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.model_breakdown(date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.source_breakdown(date, date, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.provider_overview(date, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.daily_totals(date, date, text, text),
    @extschema@.cost_projection(text, date, timestamptz),
    @extschema@.anomalies(date, numeric),
    @extschema@.top_installations(date, date, text, integer),
    @extschema@.model_breakdown(date, date, text),
    @extschema@.source_breakdown(date, date, text),
    @extschema@.provider_overview(date, timestamptz)
    TO usage_tracking_admin, usage_tracking_analyst;
