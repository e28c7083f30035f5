-- test/e2e/dashboard_seed.sql — usage of five installations in three accounts
-- from 2025-10-15 to 2025-11-20, ordinary every day but one: on 2025-11-20
-- installation 3 (account blog_net) makes 40 times its usual requests.
SELECT usage_tracking.create_account('acme', 'agency'),
       usage_tracking.create_account('blog_net', 'pro'),
       usage_tracking.create_account('solo', 'free');
CREATE TEMP TABLE seed_inst (k int, install_id text, account_id text, model text, per_day int);
INSERT INTO seed_inst VALUES
  (1, '11111111-1111-4111-8111-111111111111_0000000000a1', 'acme',     'gpt-4o-mini',  40),
  (2, '22222222-2222-4222-8222-222222222222_0000000000a2', 'acme',     'gpt-4.1-mini', 20),
  (3, '33333333-3333-4333-8333-333333333333_0000000000b3', 'blog_net', 'gpt-4o',       10),
  (4, '44444444-4444-4444-8444-444444444444_0000000000b4', 'blog_net', 'gpt-4.1-nano',  5),
  (5, '55555555-5555-4555-8555-555555555555_0000000000c5', 'solo',     'gpt-4o-mini',   3);
SELECT count(usage_tracking.register_installation(install_id, account_id)) AS registered FROM seed_inst;

-- The days' partitions (a plain INSERT finds no default partition).
SELECT usage_tracking.ensure_partitions('2025-10-15', '2025-11-20') >= 0 AS partitions_ready;
-- Requests per day: the installation's level, a weekly rhythm, and the spike.
INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                   prompt_tokens, completion_tokens, cached_prompt_tokens, created_at)
SELECT s.install_id,
       'evt_' || to_char(d, 'YYYYMMDD') || '_' || n,
       encode(sha256(convert_to('user' || (n % 7), 'UTF8')), 'hex'),
       (ARRAY['bulk', 'manual', 'queue', 'inline'])[1 + n % 4],
       s.model,
       700 + (n * 37) % 300, 40 + n % 20, CASE WHEN n % 5 = 0 THEN 200 ELSE 0 END,
       d + time '06:00' + n * interval '7 seconds'
  FROM seed_inst s
 CROSS JOIN generate_series(timestamp '2025-10-15', '2025-11-20', '1 day') d
 CROSS JOIN LATERAL generate_series(1,
        CASE WHEN s.k = 3 AND d = '2025-11-20' THEN 400
             ELSE s.per_day + (s.per_day * (extract(isodow FROM d)::int % 3)) / 10 END) n
 WHERE s.k <> 5 OR d < '2025-11-11';

UPDATE usage_tracking.installations i
   SET first_seen_at = '2025-10-15 06:00:07+00',
       last_seen_at = CASE WHEN i.install_id LIKE '5%' THEN timestamptz '2025-11-10 07:00:00+00'
                           ELSE timestamptz '2025-11-20 18:00:00+00' END,
       plugin_version = '2.4.1';
SELECT usage_tracking.set_installation_status('55555555-5555-4555-8555-555555555555_0000000000c5', 'suspended');
