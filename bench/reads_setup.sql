-- bench/reads_setup.sql — the read benchmark's database: many installations
-- and 90 days of events, loaded straight into usage_tracking.events (the
-- extension's statement trigger builds the daily summaries as it would for
-- any INSERT).
--
-- psql variables: t0, installs.

CREATE SCHEMA bench;
CREATE TABLE bench.config (t0 timestamptz NOT NULL);
INSERT INTO bench.config VALUES (:'t0');

INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m,
                                  abuse_requests_1h, abuse_tokens_1h)
VALUES ('bench', NULL, 2147483647, 9223372036854775807, 2147483647, 9223372036854775807);

-- Installation 1 is the big site the summary is read for.
CREATE TABLE bench.installs (n integer PRIMARY KEY, install_id text NOT NULL, model text NOT NULL);
INSERT INTO bench.installs
SELECT n, substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-b'
          || substr(h, 18, 3) || '-' || substr(h, 21, 12) || '_' || substr(md5('rsite' || n), 1, 12),
       (ARRAY['gpt-4o-mini', 'gpt-4.1-mini', 'gpt-4o', 'gpt-4.1-nano', 'unpriced-model'])[n % 5 + 1]
  FROM (SELECT n, md5('rinstall' || n) AS h FROM generate_series(1, :installs) n) x;

-- Ten installations per account.
SELECT count(usage_tracking.create_account('racc_' || a, 'bench'))
  FROM generate_series(0, (:installs - 1) / 10) a;
SELECT count(usage_tracking.register_installation(install_id, 'racc_' || (n - 1) / 10,
                                                  'read-secret-' || md5(install_id)))
  FROM bench.installs;
UPDATE usage_tracking.installations i SET first_seen_at = c.t0 - interval '90 days', last_seen_at = c.t0
  FROM bench.config c;

SELECT usage_tracking.ensure_partitions(t0 - interval '91 days', t0 + interval '1 day') FROM bench.config;

-- The events of day d (0 = the day of t0, 89 = 89 days before): nevents,
-- every 10th one for installation 1, the rest spread over all
-- installations; 2 users per installation, bulk or queue plus inline.
-- For speed the events trigger is off while loading (session_replication_role)
-- and the day's summaries are then built in one statement with the same sums
-- and prices the trigger computes; the trigger path is what the ingest
-- benchmark measures.
CREATE FUNCTION bench.load_day(d integer, nevents integer) RETURNS bigint
LANGUAGE plpgsql SET session_replication_role = replica AS $$
DECLARE
    day_start timestamptz;
    installs  integer;
    loaded    bigint;
BEGIN
    SELECT ((t0 AT TIME ZONE 'UTC')::date - d)::timestamp AT TIME ZONE 'UTC' INTO day_start FROM bench.config;
    SELECT count(*) INTO installs FROM bench.installs;

    INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                       prompt_tokens, completion_tokens, cached_prompt_tokens,
                                       request_id, created_at, received_at)
    SELECT i.install_id, 'r' || d || '_' || g,
           md5(i.install_id || (g % 2)) || md5((g % 2) || i.install_id),
           CASE WHEN g % 5 = 0 THEN 'inline' WHEN g % 3 = 0 THEN 'queue' ELSE 'bulk' END, i.model,
           100 + g % 400, 10 + g % 90, CASE WHEN g % 4 = 0 THEN 50 ELSE 0 END,
           'req_' || g,
           day_start + (g::bigint * 86399 / nevents) * interval '1 second',
           day_start + (g::bigint * 86399 / nevents) * interval '1 second' + interval '3 minutes'
      FROM generate_series(1, nevents) g, bench.installs i
     WHERE i.n = CASE WHEN g % 10 = 0 THEN 1 ELSE (g::bigint * 7919) % installs + 1 END;
    GET DIAGNOSTICS loaded = ROW_COUNT;

    INSERT INTO usage_tracking.daily (install_id, usage_date, wp_user_id_hash, source, model,
                                      total_requests, prompt_tokens, completion_tokens,
                                      cached_prompt_tokens, estimated_cost_usd, unpriced_requests)
    SELECT e.install_id, (e.created_at AT TIME ZONE 'UTC')::date, e.wp_user_id_hash, e.source, e.model,
           count(*), sum(e.prompt_tokens), sum(e.completion_tokens), sum(e.cached_prompt_tokens),
           sum(((e.prompt_tokens - e.cached_prompt_tokens) * p.prompt_usd_per_mtok
                + e.cached_prompt_tokens * coalesce(p.cached_prompt_usd_per_mtok, p.prompt_usd_per_mtok)
                + e.completion_tokens * p.completion_usd_per_mtok) / 1000000),
           count(*) FILTER (WHERE p.model IS NULL)
      FROM usage_tracking.events e
      LEFT JOIN usage_tracking.model_prices p ON p.model = e.model
     WHERE e.created_at >= day_start AND e.created_at < day_start + interval '1 day'
     GROUP BY 1, 2, 3, 4, 5;
    RETURN loaded;
END
$$;
