-- test/e2e/lib/batches.sql — helpers for end-to-end scripts that post
-- batches in SQL: signed with pgcrypto (independently of the extension's
-- own HMAC code), every time passed in.  Creates schema ut_t.
CREATE SCHEMA ut_t;
-- Post body signed with secret at time "at", the server clock also at "at".
CREATE FUNCTION ut_t.post(body text, secret text, at timestamptz) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(body,
           encode(hmac(extract(epoch FROM at)::bigint::text || '.' || body, secret, 'sha256'), 'hex')
           || ':' || extract(epoch FROM at)::bigint, at)
$$;
-- A batch of n events of installation install, one a minute from "day",
-- ids evt_<tag>_<k>, three users, sources and models in turn.
CREATE FUNCTION ut_t.batch(install text, tag text, day timestamptz, n int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('install_id', install, 'events', jsonb_agg(jsonb_build_object(
           'event_id', 'evt_' || tag || '_' || k,
           'wp_user_id_hash', encode(sha256(('user' || k % 3)::bytea), 'hex'),
           'source', (ARRAY['bulk', 'queue', 'inline'])[k % 3 + 1],
           'model', (ARRAY['gpt-4o-mini', 'gpt-4o', 'custom-model'])[k % 3 + 1],
           'prompt_tokens', 100 + k, 'completion_tokens', 20 + k, 'total_tokens', 120 + 2 * k,
           'request_id', 'req_' || tag || '_' || k,
           'created_at', to_char((day + k * interval '1 minute') AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"')) ORDER BY k))::text
    FROM generate_series(1, n) k
$$;
