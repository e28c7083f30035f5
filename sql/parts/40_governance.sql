-- sql/parts/40_governance.sql — plans, the real-time authorize() gate,
-- quota status, alerts and their delivery records.
--
-- Quota: per account per calendar month (UTC), in requests; used = events
-- recorded in the month + calls authorize() admitted whose events have not
-- arrived yet (quota_usage.pending, consumed as the events are stored).
-- Rate limits: per installation over a sliding 5-minute window of one-minute
-- slots, enforced by authorize() on calls before they are made (and, on
-- posts, by ingest_quota()).  Abuse: per installation per UTC clock hour,
-- the larger of the calls admitted and the calls recorded.

-- Plans -----------------------------------------------------------------------

CREATE FUNCTION @extschema@.set_plan(plan text, monthly_requests bigint,
                                     warning_pct integer DEFAULT 75,
                                     critical_pct integer DEFAULT 90,
                                     block_pct integer DEFAULT 100,
                                     rate_requests_5m integer DEFAULT NULL,
                                     rate_tokens_5m bigint DEFAULT NULL,
                                     abuse_requests_1h integer DEFAULT NULL,
                                     abuse_tokens_1h bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF plan IS NULL OR plan !~ '^[a-z0-9_-]{1,40}$' THEN
        RAISE EXCEPTION 'invalid plan name'
            USING ERRCODE = '22023', HINT = 'Use 1 to 40 characters of [a-z0-9_-].';
    END IF;
    IF monthly_requests < 0 THEN
        RAISE EXCEPTION 'monthly_requests must not be negative'
            USING ERRCODE = '22023', HINT = 'NULL means unlimited.';
    END IF;
    IF warning_pct IS NULL OR critical_pct IS NULL OR block_pct IS NULL
       OR NOT (0 < warning_pct AND warning_pct <= critical_pct
               AND critical_pct <= block_pct AND block_pct <= 1000) THEN
        RAISE EXCEPTION 'thresholds must satisfy 0 < warning_pct <= critical_pct <= block_pct <= 1000'
            USING ERRCODE = '22023';
    END IF;
    IF rate_requests_5m <= 0 OR rate_tokens_5m <= 0 OR abuse_requests_1h <= 0 OR abuse_tokens_1h <= 0 THEN
        RAISE EXCEPTION 'rate limits and abuse thresholds must be positive'
            USING ERRCODE = '22023', HINT = 'NULL keeps the current value (the default for a new plan).';
    END IF;
    INSERT INTO @extschema@.plans AS p (plan, monthly_requests, warning_pct, critical_pct, block_pct,
                                        rate_requests_5m, rate_tokens_5m,
                                        abuse_requests_1h, abuse_tokens_1h)
    VALUES (set_plan.plan, set_plan.monthly_requests, set_plan.warning_pct,
            set_plan.critical_pct, set_plan.block_pct,
            coalesce(set_plan.rate_requests_5m, 100), coalesce(set_plan.rate_tokens_5m, 50000),
            coalesce(set_plan.abuse_requests_1h, 200), coalesce(set_plan.abuse_tokens_1h, 100000))
    ON CONFLICT ON CONSTRAINT plans_pkey DO UPDATE
       SET monthly_requests = EXCLUDED.monthly_requests,
           warning_pct = EXCLUDED.warning_pct,
           critical_pct = EXCLUDED.critical_pct,
           block_pct = EXCLUDED.block_pct,
           rate_requests_5m = coalesce(set_plan.rate_requests_5m, p.rate_requests_5m),
           rate_tokens_5m = coalesce(set_plan.rate_tokens_5m, p.rate_tokens_5m),
           abuse_requests_1h = coalesce(set_plan.abuse_requests_1h, p.abuse_requests_1h),
           abuse_tokens_1h = coalesce(set_plan.abuse_tokens_1h, p.abuse_tokens_1h);
END
$$;
COMMENT ON FUNCTION @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint) IS
    'Create or change a plan: monthly request quota (NULL = unlimited), warning/critical/block thresholds in percent of it, and per installation the rate limits per 5 minutes and abuse thresholds per hour (NULL keeps the current value; defaults 100 requests, 50 000 tokens, 200 requests, 100 000 tokens).';

-- Admissions per installation -------------------------------------------------

CREATE TABLE @extschema@.rate_state (
    install_id          text COLLATE "C" PRIMARY KEY REFERENCES @extschema@.installations ON DELETE CASCADE,
    minute              timestamptz NOT NULL,
    requests            bigint[] NOT NULL CHECK (cardinality(requests) = 5),
    tokens              bigint[] NOT NULL CHECK (cardinality(tokens) = 5),
    hour                timestamptz NOT NULL,
    hour_requests       bigint NOT NULL DEFAULT 0,
    hour_tokens         bigint NOT NULL DEFAULT 0,
    prev_hour_requests  bigint NOT NULL DEFAULT 0,
    prev_hour_tokens    bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.rate_state IS
    'Calls authorize() admitted per installation: the last five minutes, one slot per minute (slot 1 = minute), and the current and previous UTC hour. Its row is the lock that serializes one installation''s authorize() calls.';

-- authorize ------------------------------------------------------------------

CREATE FUNCTION @extschema@.authorize(install_id text, requests integer DEFAULT 1,
                                      tokens bigint DEFAULT 0,
                                      now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    acc     text;
    active  boolean;
    lim     bigint;
    warn    integer;
    crit    integer;
    blk     integer;
    rreq    integer;
    rtok    bigint;
    m       timestamptz := date_trunc('minute', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
    st      @extschema@.rate_state;
    reqs    bigint[];
    toks    bigint[];
    wreq    bigint;
    wtok    bigint;
    used    bigint;
    retry   integer;
BEGIN
    IF requests IS NULL OR requests < 1 OR tokens IS NULL OR tokens < 0 OR now IS NULL THEN
        RAISE EXCEPTION 'requests must be at least 1 and tokens at least 0' USING ERRCODE = '22023';
    END IF;

    SELECT i.account_id, i.status = 'active' AND a.status = 'active',
           p.monthly_requests, p.warning_pct, p.critical_pct, p.block_pct,
           p.rate_requests_5m, p.rate_tokens_5m, coalesce(q.recorded + q.pending, 0)
      INTO acc, active, lim, warn, crit, blk, rreq, rtok, used
      FROM @extschema@.installations i
      JOIN @extschema@.accounts a USING (account_id)
      JOIN @extschema@.plans p USING (plan)
      LEFT JOIN @extschema@.quota_usage q ON q.account_id = i.account_id AND q.month = mon
     WHERE i.install_id = authorize.install_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('allowed', false, 'level', NULL,
                                  'reason', 'unknown_installation', 'retry_after_s', NULL);
    END IF;
    IF NOT active THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'suspended', 'retry_after_s', NULL);
    END IF;
    IF requests > rreq OR tokens > rtok OR requests::bigint * 100 > lim * blk THEN
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'too_large', 'retry_after_s', NULL);
    END IF;

    -- Reservations are soft state (the events re-count every call): commit
    -- them without waiting for the WAL flush, as a rate limiter may.  A
    -- crash can forget the last few hundred milliseconds of admissions.
    PERFORM pg_catalog.set_config('synchronous_commit', 'off', true);

    -- Rate: the installation's row serializes its callers.
    SELECT r.* INTO st FROM @extschema@.rate_state r
     WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO @extschema@.rate_state (install_id, minute, requests, tokens, hour)
        VALUES (authorize.install_id, m, '{0,0,0,0,0}', '{0,0,0,0,0}', h)
        ON CONFLICT DO NOTHING;
        SELECT r.* INTO st FROM @extschema@.rate_state r
         WHERE r.install_id = authorize.install_id FOR NO KEY UPDATE;
    END IF;
    m := greatest(st.minute, m);
    reqs := @extschema@.window_shift(st.requests, st.minute, m);
    toks := @extschema@.window_shift(st.tokens, st.minute, m);
    wreq := reqs[1] + reqs[2] + reqs[3] + reqs[4] + reqs[5];
    wtok := toks[1] + toks[2] + toks[3] + toks[4] + toks[5];
    IF wreq + requests > rreq OR wtok + tokens > rtok THEN
        retry := greatest(
            CASE WHEN wreq + requests > rreq
                 THEN @extschema@.window_retry_after(reqs, m, now, wreq + requests - rreq) END,
            CASE WHEN wtok + tokens > rtok
                 THEN @extschema@.window_retry_after(toks, m, now, wtok + tokens - rtok) END);
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'rate_limited', 'retry_after_s', retry);
    END IF;

    -- Quota: reserve on the account's row, or refuse.  A plain UPDATE first:
    -- waiters queue on the row in arrival order.
    UPDATE @extschema@.quota_usage q
       SET admitted = q.admitted + authorize.requests,
           pending = q.pending + authorize.requests
     WHERE q.account_id = acc AND q.month = mon
       AND (lim IS NULL OR (q.recorded + q.pending + authorize.requests) * 100 <= lim * blk)
    RETURNING q.recorded + q.pending INTO used;
    IF NOT FOUND THEN
        -- Refused, or the account's first call of the month.
        INSERT INTO @extschema@.quota_usage AS q (account_id, month, admitted, pending)
        VALUES (acc, mon, requests, requests)
        ON CONFLICT ON CONSTRAINT quota_usage_pkey DO UPDATE
           SET admitted = q.admitted + EXCLUDED.admitted,
               pending = q.pending + EXCLUDED.pending
         WHERE lim IS NULL OR (q.recorded + q.pending + EXCLUDED.pending) * 100 <= lim * blk
        RETURNING q.recorded + q.pending INTO used;
    END IF;
    IF NOT FOUND THEN
        SELECT q.recorded + q.pending INTO used
          FROM @extschema@.quota_usage q WHERE q.account_id = acc AND q.month = mon;
        RETURN jsonb_build_object('allowed', false,
                                  'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                                  'reason', 'quota_exceeded',
                                  'retry_after_s', ceil(extract(epoch FROM
                                      ((mon + interval '1 month')::timestamp AT TIME ZONE 'UTC') - now))::integer);
    END IF;

    -- Admitted: count it in the window and the hour.
    reqs[1] := reqs[1] + requests;
    toks[1] := toks[1] + tokens;
    IF h > st.hour THEN
        IF h = st.hour + interval '1 hour' THEN
            st.prev_hour_requests := st.hour_requests;
            st.prev_hour_tokens := st.hour_tokens;
        ELSE
            st.prev_hour_requests := 0;
            st.prev_hour_tokens := 0;
        END IF;
        st.hour := h;
        st.hour_requests := 0;
        st.hour_tokens := 0;
    END IF;
    UPDATE @extschema@.rate_state r
       SET minute = m, requests = reqs, tokens = toks, hour = st.hour,
           hour_requests = st.hour_requests + authorize.requests,
           hour_tokens = st.hour_tokens + authorize.tokens,
           prev_hour_requests = st.prev_hour_requests,
           prev_hour_tokens = st.prev_hour_tokens
     WHERE r.install_id = authorize.install_id;
    RETURN jsonb_build_object('allowed', true,
                              'level', @extschema@.quota_level(used, lim, warn, crit, blk),
                              'reason', 'ok', 'retry_after_s', NULL);
END
$$;
COMMENT ON FUNCTION @extschema@.authorize(text, integer, bigint, timestamptz) IS
    'The real-time gate before a generation: {allowed, level, reason, retry_after_s}. Admits requests calls of about tokens tokens when the installation stays within its 5-minute rate limits and the account within its monthly quota (at block_pct), and reserves them; reason is ok, rate_limited, quota_exceeded, too_large, suspended or unknown_installation. Sets synchronous_commit = off for the rest of its transaction: call it in a transaction of its own.';

-- quota_status ---------------------------------------------------------------

CREATE FUNCTION @extschema@.quota_status(install_id text, now timestamptz DEFAULT now())
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    i       @extschema@.installations;
    a       @extschema@.accounts;
    p       @extschema@.plans;
    q       @extschema@.quota_usage;
    st      @extschema@.rate_state;
    m       timestamptz := date_trunc('minute', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
    reqs    bigint[];
    toks    bigint[];
    posts   bigint[];
    used    bigint;
    hreq    bigint;
    htok    bigint;
BEGIN
    SELECT * INTO i FROM @extschema@.installations x WHERE x.install_id = quota_status.install_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown installation' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO a FROM @extschema@.accounts x WHERE x.account_id = i.account_id;
    SELECT * INTO p FROM @extschema@.plans x WHERE x.plan = a.plan;
    SELECT * INTO q FROM @extschema@.quota_usage x WHERE x.account_id = a.account_id AND x.month = mon;
    used := coalesce(q.recorded, 0) + coalesce(q.pending, 0);

    SELECT * INTO st FROM @extschema@.rate_state x WHERE x.install_id = i.install_id;
    reqs := @extschema@.window_shift(st.requests, st.minute, m);
    toks := @extschema@.window_shift(st.tokens, st.minute, m);
    SELECT @extschema@.window_shift(w.posts, w.minute, m) INTO posts
      FROM @extschema@.ingest_windows w WHERE w.install_id = i.install_id;
    posts := coalesce(posts, '{0,0,0,0,0}');

    SELECT greatest(coalesce(hu.requests, 0),
                    CASE WHEN st.hour = h THEN st.hour_requests ELSE 0 END),
           greatest(coalesce(hu.tokens, 0),
                    CASE WHEN st.hour = h THEN st.hour_tokens ELSE 0 END)
      INTO hreq, htok
      FROM (SELECT 1) one
      LEFT JOIN @extschema@.hourly_usage hu ON hu.install_id = i.install_id AND hu.hour = h;

    RETURN jsonb_build_object(
        'install_id', i.install_id,
        'account_id', a.account_id,
        'plan', p.plan,
        'status', CASE WHEN i.status = 'active' AND a.status = 'active' THEN 'active' ELSE 'suspended' END,
        'month', to_char(mon, 'YYYY-MM'),
        'used', used,
        'recorded', coalesce(q.recorded, 0),
        'pending', coalesce(q.pending, 0),
        'limit', p.monthly_requests,
        'percent', CASE WHEN p.monthly_requests > 0
                        THEN round(used * 100.0 / p.monthly_requests, 1) END,
        'level', @extschema@.quota_level(used, p.monthly_requests, p.warning_pct,
                                         p.critical_pct, p.block_pct),
        'window_5m', jsonb_build_object(
            'requests', reqs[1] + reqs[2] + reqs[3] + reqs[4] + reqs[5],
            'tokens', toks[1] + toks[2] + toks[3] + toks[4] + toks[5],
            'posts', posts[1] + posts[2] + posts[3] + posts[4] + posts[5],
            'limit_requests', p.rate_requests_5m,
            'limit_tokens', p.rate_tokens_5m),
        'hour', jsonb_build_object(
            'start', to_char(h AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'requests', hreq,
            'tokens', htok,
            'abuse_requests', p.abuse_requests_1h,
            'abuse_tokens', p.abuse_tokens_1h),
        'abuse', jsonb_build_object(
            'requests', hreq > p.abuse_requests_1h,
            'tokens', htok > p.abuse_tokens_1h));
END
$$;
COMMENT ON FUNCTION @extschema@.quota_status(text, timestamptz) IS
    'Where an installation and its account stand at now: month-to-date requests of the account against its limit (percent, level), the installation''s 5-minute windows (admitted requests and tokens, posts) and its current UTC hour with abuse flags.';

-- Alerts ---------------------------------------------------------------------

CREATE TABLE @extschema@.alerts (
    alert_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    install_id      text COLLATE "C" REFERENCES @extschema@.installations ON DELETE CASCADE,
    level           text NOT NULL
                    CHECK (level IN ('warning', 'critical', 'blocked', 'abuse_requests', 'abuse_tokens')),
    period_start    timestamptz NOT NULL,
    observed        bigint NOT NULL,
    threshold       bigint NOT NULL,
    created_at      timestamptz NOT NULL,
    CHECK ((install_id IS NULL) = (level IN ('warning', 'critical', 'blocked')))
);
CREATE UNIQUE INDEX alerts_account_level_day ON @extschema@.alerts (account_id, level, period_start)
    WHERE install_id IS NULL;
CREATE UNIQUE INDEX alerts_install_kind_hour ON @extschema@.alerts (install_id, level, period_start)
    WHERE install_id IS NOT NULL;
COMMENT ON TABLE @extschema@.alerts IS
    'Alerts: quota levels (warning, critical, blocked) once per account per UTC day (period_start = the day), abuse (abuse_requests, abuse_tokens) once per installation per UTC hour (period_start = the hour). observed is what was counted, threshold what it reached.';

CREATE TABLE @extschema@.alert_channels (
    channel_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('webhook', 'slack', 'discord', 'email')),
    target          text NOT NULL CHECK (length(target) <= 2000),
    secret          text CHECK ((kind = 'webhook') = (secret IS NOT NULL)),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    UNIQUE (account_id, kind)
);
COMMENT ON TABLE @extschema@.alert_channels IS
    'Where an account''s alerts go, one channel per kind: webhook (generic JSON, Standard Webhooks signature with secret), slack, discord (incoming webhook URLs) or email (an address).';

CREATE TABLE @extschema@.alert_deliveries (
    alert_id        bigint NOT NULL REFERENCES @extschema@.alerts ON DELETE CASCADE,
    channel_id      bigint NOT NULL REFERENCES @extschema@.alert_channels ON DELETE CASCADE,
    attempts        integer NOT NULL DEFAULT 0,
    last_status     text,
    last_attempt_at timestamptz,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (alert_id, channel_id)
);
CREATE INDEX alert_deliveries_due ON @extschema@.alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND next_attempt_at IS NOT NULL;
COMMENT ON TABLE @extschema@.alert_deliveries IS
    'One row per alert and channel: attempts so far, the last status, when the next attempt is due (NULL once delivered or given up) and delivered_at.';

CREATE FUNCTION @extschema@.set_alert_channel(account_id text, kind text, target text,
                                              secret text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c   @extschema@.alert_channels;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.accounts a WHERE a.account_id = set_alert_channel.account_id) THEN
        RAISE EXCEPTION 'unknown account "%"', account_id USING ERRCODE = '22023';
    END IF;
    IF kind IS NULL OR kind NOT IN ('webhook', 'slack', 'discord', 'email') THEN
        RAISE EXCEPTION 'kind must be webhook, slack, discord or email' USING ERRCODE = '22023';
    END IF;
    IF target IS NULL THEN
        DELETE FROM @extschema@.alert_channels x
         WHERE x.account_id = set_alert_channel.account_id AND x.kind = set_alert_channel.kind
        RETURNING * INTO c;
        RETURN CASE WHEN c.channel_id IS NULL THEN NULL
                    ELSE jsonb_build_object('channel_id', c.channel_id, 'kind', c.kind, 'removed', true) END;
    END IF;
    IF kind = 'email' AND (target !~ '^[^@\s<>",;]+@[A-Za-z0-9.-]+$' OR length(target) > 254) THEN
        RAISE EXCEPTION 'invalid email address' USING ERRCODE = '22023';
    END IF;
    IF kind <> 'email' AND target !~ '^https?://[^\s]+$' THEN
        RAISE EXCEPTION 'invalid URL' USING ERRCODE = '22023', HINT = 'Use an http:// or https:// URL.';
    END IF;
    IF secret IS NOT NULL AND (kind <> 'webhook' OR secret !~ '^whsec_[A-Za-z0-9+/]{24,}={0,2}$') THEN
        RAISE EXCEPTION 'a secret is for webhook channels only, as whsec_ and base64 of at least 18 bytes'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.alert_channels AS x (account_id, kind, target, secret)
    VALUES (set_alert_channel.account_id, set_alert_channel.kind, set_alert_channel.target,
            CASE WHEN set_alert_channel.kind = 'webhook'
                 THEN coalesce(set_alert_channel.secret,
                               'whsec_' || encode(decode(@extschema@.generate_secret(), 'hex'), 'base64')) END)
    ON CONFLICT ON CONSTRAINT alert_channels_account_id_kind_key DO UPDATE
       SET target = EXCLUDED.target,
           secret = coalesce(set_alert_channel.secret, x.secret)
    RETURNING * INTO c;
    RETURN jsonb_strip_nulls(jsonb_build_object('channel_id', c.channel_id, 'kind', c.kind,
                                                'target', c.target, 'secret', c.secret));
END
$$;
COMMENT ON FUNCTION @extschema@.set_alert_channel(text, text, text, text) IS
    'Set where an account''s alerts of one channel kind go (webhook, slack, discord: an http(s) URL; email: an address); NULL target removes the channel. A webhook channel gets a Standard Webhooks signing secret (whsec_…, generated unless given, kept on later changes), returned here.';

CREATE FUNCTION @extschema@.alert_message(a @extschema@.alerts)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN a.install_id IS NULL THEN
            format('Account %s is at the %s level: %s of %s requests this month (%s%%).',
                   a.account_id, a.level, a.observed, a.threshold,
                   CASE WHEN a.threshold > 0 THEN round(a.observed * 100.0 / a.threshold) ELSE 100 END)
        ELSE
            format('Installation %s of account %s %s in the hour from %s UTC (abuse threshold %s).',
                   a.install_id, a.account_id,
                   CASE a.level WHEN 'abuse_requests' THEN format('made %s requests', a.observed)
                                ELSE format('used %s tokens', a.observed) END,
                   to_char(a.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), a.threshold)
    END
$$;
COMMENT ON FUNCTION @extschema@.alert_message(@extschema@.alerts) IS
    'One sentence that says what an alert is about, as sent to Slack, Discord and email.';

CREATE FUNCTION @extschema@.alert_json(a @extschema@.alerts)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object(
        'alert_id', a.alert_id, 'account_id', a.account_id, 'install_id', a.install_id,
        'level', a.level,
        'period_start', to_char(a.period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'observed', a.observed, 'threshold', a.threshold,
        'created_at', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'message', @extschema@.alert_message(a))
$$;
COMMENT ON FUNCTION @extschema@.alert_json(@extschema@.alerts) IS
    'An alert as JSON: the NOTIFY payload and the data of a generic webhook.';

CREATE FUNCTION @extschema@.alert_body(a @extschema@.alerts, kind text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE kind
        WHEN 'webhook' THEN jsonb_build_object(
            'type', 'usage_tracking.alert',
            'timestamp', to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'data', @extschema@.alert_json(a))::text
        WHEN 'slack' THEN jsonb_build_object('text', @extschema@.alert_message(a))::text
        WHEN 'discord' THEN jsonb_build_object('content', @extschema@.alert_message(a))::text
        WHEN 'email' THEN @extschema@.alert_message(a) || E'\n\n' || jsonb_pretty(@extschema@.alert_json(a)) || E'\n'
    END
$$;
COMMENT ON FUNCTION @extschema@.alert_body(@extschema@.alerts, text) IS
    'What is sent for an alert on a channel kind: webhook, the generic JSON {type, timestamp, data}; slack {text}; discord {content}; email, the plain-text body.';

CREATE FUNCTION @extschema@.evaluate_alerts(now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r       @extschema@.alerts;
    n       integer := 0;
    day     timestamptz := date_trunc('day', now, 'UTC');
    h       timestamptz := date_trunc('hour', now, 'UTC');
    mon     date := date_trunc('month', now AT TIME ZONE 'UTC')::date;
BEGIN
    -- One evaluation at a time (a second one waits, then finds nothing new).
    PERFORM pg_advisory_xact_lock(1970300406, 1);

    FOR r IN
        INSERT INTO @extschema@.alerts AS al
            (account_id, install_id, level, period_start, observed, threshold, created_at)
        SELECT x.account_id, x.install_id, x.level, x.period_start, x.observed, x.threshold,
               evaluate_alerts.now
          FROM (
            -- Quota: the account's level today, if not ok.
            SELECT q.account_id, NULL::text AS install_id,
                   @extschema@.quota_level(q.recorded + q.pending, p.monthly_requests,
                                           p.warning_pct, p.critical_pct, p.block_pct) AS level,
                   day AS period_start, q.recorded + q.pending AS observed,
                   p.monthly_requests AS threshold
              FROM @extschema@.quota_usage q
              JOIN @extschema@.accounts a USING (account_id)
              JOIN @extschema@.plans p USING (plan)
             WHERE q.month = mon AND p.monthly_requests IS NOT NULL
            UNION ALL
            -- Abuse: installation hours of the last day over a threshold.
            SELECT i.account_id, act.install_id, k.level, act.hour, k.observed, k.threshold
              FROM (SELECT u.install_id, u.hour, max(u.requests) AS requests, max(u.tokens) AS tokens
                      FROM (SELECT hu.install_id, hu.hour, hu.requests, hu.tokens
                              FROM @extschema@.hourly_usage hu
                             WHERE hu.hour >= h - interval '24 hours' AND hu.hour <= h
                            UNION ALL
                            SELECT s.install_id, s.hour, s.hour_requests, s.hour_tokens
                              FROM @extschema@.rate_state s
                             WHERE s.hour >= h - interval '24 hours' AND s.hour <= h
                            UNION ALL
                            SELECT s.install_id, s.hour - interval '1 hour', s.prev_hour_requests,
                                   s.prev_hour_tokens
                              FROM @extschema@.rate_state s
                             WHERE s.hour > h - interval '24 hours' AND s.hour <= h) u
                     GROUP BY 1, 2) act
              JOIN @extschema@.installations i USING (install_id)
              JOIN @extschema@.accounts a ON a.account_id = i.account_id
              JOIN @extschema@.plans p ON p.plan = a.plan
             CROSS JOIN LATERAL (VALUES
                    ('abuse_requests', act.requests, p.abuse_requests_1h::bigint),
                    ('abuse_tokens', act.tokens, p.abuse_tokens_1h)) k(level, observed, threshold)
             WHERE k.observed > k.threshold
          ) x
         WHERE x.level <> 'ok'
           AND NOT EXISTS (SELECT 1 FROM @extschema@.alerts o
                            WHERE o.account_id = x.account_id
                              AND o.install_id IS NOT DISTINCT FROM x.install_id
                              AND o.level = x.level AND o.period_start = x.period_start)
         ORDER BY x.account_id, x.install_id NULLS FIRST, x.period_start, x.level
        ON CONFLICT DO NOTHING
        RETURNING al.*
    LOOP
        INSERT INTO @extschema@.alert_deliveries (alert_id, channel_id, next_attempt_at)
        SELECT r.alert_id, c.channel_id, evaluate_alerts.now
          FROM @extschema@.alert_channels c
         WHERE c.account_id = r.account_id;
        PERFORM pg_notify('usage_tracking_alerts', @extschema@.alert_json(r)::text);
        n := n + 1;
    END LOOP;

    DELETE FROM @extschema@.hourly_usage hu WHERE hu.hour < h - interval '7 days';
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.evaluate_alerts(timestamptz) IS
    'Raise the alerts due at now: each account''s quota level (warning, critical, blocked) once per UTC day, and each installation''s abuse (over abuse_requests_1h or abuse_tokens_1h in a UTC hour of the last day) once per hour. Each new alert gets a delivery row per channel of its account and a NOTIFY on usage_tracking_alerts with the alert as JSON. Returns how many alerts it raised. Also prunes hourly counters older than 7 days.';

-- Delivery (used by the notifier) ---------------------------------------------

CREATE FUNCTION @extschema@.claim_deliveries(max_rows integer DEFAULT 10,
                                             lease interval DEFAULT '5 minutes',
                                             now timestamptz DEFAULT now())
RETURNS TABLE (alert_id bigint, channel_id bigint, attempt integer, kind text, target text,
               secret text, message_id text, subject text, body text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH due AS (
        SELECT d.alert_id, d.channel_id
          FROM @extschema@.alert_deliveries d
         WHERE d.delivered_at IS NULL AND d.next_attempt_at <= claim_deliveries.now
         ORDER BY d.next_attempt_at, d.alert_id, d.channel_id
         LIMIT max_rows
           FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE @extschema@.alert_deliveries d
           SET attempts = d.attempts + 1,
               last_attempt_at = claim_deliveries.now,
               next_attempt_at = claim_deliveries.now + lease
          FROM due
         WHERE d.alert_id = due.alert_id AND d.channel_id = due.channel_id
        RETURNING d.alert_id, d.channel_id, d.attempts)
    SELECT c.alert_id, c.channel_id, c.attempts, ch.kind, ch.target, ch.secret,
           'alert_' || a.alert_id,
           format('[usage_tracking] %s: %s', a.level, coalesce(a.install_id, a.account_id)),
           @extschema@.alert_body(a, ch.kind)
      FROM claimed c
      JOIN @extschema@.alerts a ON a.alert_id = c.alert_id
      JOIN @extschema@.alert_channels ch ON ch.channel_id = c.channel_id
     ORDER BY c.alert_id, c.channel_id
$$;
COMMENT ON FUNCTION @extschema@.claim_deliveries(integer, interval, timestamptz) IS
    'For the notifier: take up to max_rows due deliveries (SKIP LOCKED, so several notifiers share the work), count the attempt and lease them for lease; returns what to send: channel kind, target, webhook secret, a message id stable across retries, a subject and the rendered body. Report each outcome with record_delivery().';

CREATE FUNCTION @extschema@.record_delivery(alert_id bigint, channel_id bigint, ok boolean,
                                            status text,
                                            retry_base interval DEFAULT '30 seconds',
                                            max_attempts integer DEFAULT 10,
                                            now timestamptz DEFAULT now())
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.alert_deliveries d
       SET last_status = left(record_delivery.status, 500),
           delivered_at = CASE WHEN ok THEN record_delivery.now END,
           next_attempt_at = CASE
               WHEN ok OR d.attempts >= max_attempts THEN NULL
               ELSE record_delivery.now
                    + least(retry_base * power(2, d.attempts - 1), interval '6 hours') END
     WHERE d.alert_id = record_delivery.alert_id AND d.channel_id = record_delivery.channel_id
       AND d.delivered_at IS NULL;
$$;
COMMENT ON FUNCTION @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz) IS
    'For the notifier: record the outcome of a delivery attempt. Success sets delivered_at; a failure schedules the next attempt after retry_base * 2^(attempts - 1) (at most 6 hours), or gives up (next_attempt_at NULL) after max_attempts.';

-- Privileges -----------------------------------------------------------------

REVOKE ALL ON FUNCTION @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.authorize(text, integer, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.quota_status(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.set_alert_channel(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_message(@extschema@.alerts) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_json(@extschema@.alerts) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.alert_body(@extschema@.alerts, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.evaluate_alerts(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.claim_deliveries(integer, interval, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    @extschema@.set_plan(text, bigint, integer, integer, integer, integer, bigint, integer, bigint),
    @extschema@.authorize(text, integer, bigint, timestamptz),
    @extschema@.quota_status(text, timestamptz),
    @extschema@.set_alert_channel(text, text, text, text),
    @extschema@.evaluate_alerts(timestamptz),
    @extschema@.claim_deliveries(integer, interval, timestamptz),
    @extschema@.record_delivery(bigint, bigint, boolean, text, interval, integer, timestamptz)
    TO usage_tracking_admin;
GRANT SELECT ON @extschema@.alerts, @extschema@.alert_deliveries TO usage_tracking_admin;
GRANT SELECT (channel_id, account_id, kind, target, created_at) ON @extschema@.alert_channels
    TO usage_tracking_admin;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.quota_usage', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_channels', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.alerts', 'alert_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('@extschema@.alert_channels', 'channel_id')::regclass, '');
