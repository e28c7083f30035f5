-- sql/parts/35_ingest_quota.sql — governance counters kept by every insert
-- of events, and the quota verdict each ingest response carries.
--
-- Ingested events record model calls that already happened: ingest never
-- refuses them for quota or for their volume, it only counts them.  What
-- ingest does rate-limit is the posting itself: an installation may post no
-- more batches that store new events in a sliding 5 minutes than its plan's
-- rate_requests_5m (a site that posted one batch per admitted call would stay
-- inside it); the next post is refused with UTR01 (HTTP 429) and nothing of
-- it is written.  A retry whose events are all stored already writes nothing.
-- Generation calls are rate-limited before they happen, by authorize().
--
-- Lock order, the same on every path, so that no two transactions deadlock:
--   rate_state (installation)  — authorize only
--   quota_usage (account, month ascending)
--   hourly_usage (installation, hour ascending)
--   ingest_windows (installation) — ingest only

-- Monthly usage per account ----------------------------------------------------

CREATE TABLE @extschema@.quota_usage (
    account_id      text NOT NULL REFERENCES @extschema@.accounts ON DELETE CASCADE,
    month           date NOT NULL CHECK (extract(day FROM month) = 1),
    recorded        bigint NOT NULL DEFAULT 0 CHECK (recorded >= 0),
    recorded_tokens bigint NOT NULL DEFAULT 0 CHECK (recorded_tokens >= 0),
    admitted        bigint NOT NULL DEFAULT 0 CHECK (admitted >= 0),
    pending         bigint NOT NULL DEFAULT 0 CHECK (pending >= 0),
    PRIMARY KEY (account_id, month)
);
COMMENT ON TABLE @extschema@.quota_usage IS
    'Requests per account per calendar month (UTC): recorded = events stored with created_at in the month, admitted = calls authorize() let through, pending = admitted calls whose events have not arrived yet. The quota counts recorded + pending.';

-- Hourly usage per installation, from the stored events (abuse detection).
CREATE TABLE @extschema@.hourly_usage (
    install_id      text COLLATE "C" NOT NULL REFERENCES @extschema@.installations ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    requests        bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    tokens          bigint NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    PRIMARY KEY (install_id, hour)
);
CREATE INDEX hourly_usage_hour_idx ON @extschema@.hourly_usage (hour);
COMMENT ON TABLE @extschema@.hourly_usage IS
    'Requests and tokens of the stored events per installation per UTC hour of created_at; evaluate_alerts() reads it for abuse and prunes it after 7 days.';

-- Posts per installation, one slot per minute (slot 1 = the minute in
-- "minute", slot i = i - 1 minutes before): a sliding 5-minute window.
CREATE TABLE @extschema@.ingest_windows (
    install_id      text COLLATE "C" PRIMARY KEY REFERENCES @extschema@.installations ON DELETE CASCADE,
    minute          timestamptz NOT NULL,
    posts           bigint[] NOT NULL CHECK (cardinality(posts) = 5)
);
COMMENT ON TABLE @extschema@.ingest_windows IS
    'Batches each installation posted in its last five minutes, one slot per minute (slot 1 = minute, slot i = i - 1 minutes earlier).';

-- Sliding windows -------------------------------------------------------------

CREATE FUNCTION @extschema@.window_shift(slots bigint[], slot_minute timestamptz,
                                         at_minute timestamptz)
RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN slots IS NULL OR at_minute >= slot_minute + interval '5 minutes'
            THEN '{0,0,0,0,0}'::bigint[]
        WHEN at_minute <= slot_minute THEN slots
        ELSE pg_catalog.array_fill(0::bigint,
                 ARRAY[(extract(epoch FROM at_minute - slot_minute) / 60)::integer])
             || slots[1 : 5 - (extract(epoch FROM at_minute - slot_minute) / 60)::integer]
    END
$$;
COMMENT ON FUNCTION @extschema@.window_shift(bigint[], timestamptz, timestamptz) IS
    'A 5-slot per-minute window whose slot 1 is slot_minute, moved on to at_minute: older slots fall out, new ones are 0. A window from the future stays as it is.';

CREATE FUNCTION @extschema@.window_retry_after(slots bigint[], at_minute timestamptz,
                                               now timestamptz, excess bigint)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ceil(extract(epoch FROM at_minute + (6 - f.i) * interval '1 minute' - now))::integer
      FROM (SELECT g.i, sum(slots[g.i]) OVER (ORDER BY g.i DESC) AS freed
              FROM pg_catalog.generate_series(5, 1, -1) AS g(i)) f
     WHERE f.freed >= excess
     ORDER BY f.i DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION @extschema@.window_retry_after(bigint[], timestamptz, timestamptz, bigint) IS
    'Seconds from now until the oldest slots of a window (slot 1 = at_minute) that add up to excess have left it; NULL when even an empty window is not enough.';

-- Quota levels ----------------------------------------------------------------

CREATE FUNCTION @extschema@.quota_level(used bigint, monthly_requests bigint,
                                        warning_pct integer, critical_pct integer,
                                        block_pct integer)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN monthly_requests IS NULL THEN 'ok'
                WHEN used * 100 >= monthly_requests * block_pct THEN 'blocked'
                WHEN used * 100 >= monthly_requests * critical_pct THEN 'critical'
                WHEN used * 100 >= monthly_requests * warning_pct THEN 'warning'
                ELSE 'ok' END
$$;
COMMENT ON FUNCTION @extschema@.quota_level(bigint, bigint, integer, integer, integer) IS
    'ok, warning, critical or blocked for used requests against a monthly limit (NULL: unlimited, always ok) and its thresholds in percent.';

-- Counting stored events ------------------------------------------------------
-- quota_usage and hourly_usage are kept by the C code that accounts for new
-- events (src/summary.c): ingest calls it directly, and the events_summarize
-- statement trigger calls it for any other INSERT into usage_tracking.events.
-- It takes accounts (month ascending), then installations' hours, then the
-- daily keys, each in key order.

-- The verdict -----------------------------------------------------------------

CREATE FUNCTION @extschema@.ingest_quota(install_id text, account_id text,
                                         new_requests bigint, new_tokens bigint,
                                         now timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'usage_tracking_ingest_quota'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz) IS
    'Called by ingest after storing the events: count the post in the installation''s 5-minute window (over rate_requests_5m: SQLSTATE UTR01, DETAIL {"retry_after_s": n}, which rolls the request back) and return the quota verdict {level, used, limit} for the account''s calendar month (UTC).';

REVOKE ALL ON FUNCTION @extschema@.window_shift(bigint[], timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.window_retry_after(bigint[], timestamptz, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.quota_level(bigint, bigint, integer, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ingest_quota(text, text, bigint, bigint, timestamptz) FROM PUBLIC;
