#!/usr/bin/env bash
# test/e2e/secret_stats.sh — secrets never reach pg_stat_statements.  A
# cluster of its own with pg_stat_statements preloaded (track = all, so the
# statements inside the extension's functions are recorded too): secrets
# are registered and rotated, batches posted through the core and the HTTP
# route, rightly and wrongly signed; then no recorded statement text holds
# any secret, and the server log holds none either.
set -uo pipefail
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tools/lib.sh"
DIR=$(mktemp -d /tmp/usage_tracking_stats.XXXXXX)
trap 'ut_cluster_stop "$DIR"; rm -rf "$DIR"' EXIT
ut_cluster_start "$DIR" postgres >/dev/null || exit 1
cat >>"$DIR/data/postgresql.conf" <<CONF
shared_preload_libraries = 'pg_cron,pg_stat_statements'
pg_stat_statements.track = all
CONF
ut_as_pg pg_ctl -D "$DIR/data" -l "$DIR/server.log" -w -t 60 restart >/dev/null || { cat "$DIR/server.log"; exit 1; }

pass=0 fail=0
is() { if [ "$1" = "$2" ]; then pass=$((pass + 1)); echo "ok - $3"; else fail=$((fail + 1)); echo "not ok - $3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi; }
q() { psql -qAtX -d postgres -c "$1" 2>&1; }

S1=stats-secret-first-0123456789abcdef
S2=stats-secret-second-0123456789abcdef
I1=57a757a7-0000-4000-8000-0000000057a7_0000000057a1
q "CREATE EXTENSION pg_stat_statements; CREATE EXTENSION pgcrypto; CREATE EXTENSION usage_tracking;" >/dev/null
q "SELECT usage_tracking.create_account('acc_stats', 'pro')" >/dev/null
# Literal secrets in the statement text, as a DBA would type them.
q "SELECT usage_tracking.register_installation('$I1', 'acc_stats', '$S1')" >/dev/null
q "SELECT usage_tracking.rotate_installation_secret('$I1', '$S2')" >/dev/null
GEN=$(q "SELECT usage_tracking.register_installation('57a757a7-0000-4000-8000-0000000057a7_0000000057a2', 'acc_stats')")
q "CREATE FUNCTION post(body text, secret text, http boolean DEFAULT false) RETURNS text LANGUAGE plpgsql AS \$\$
   DECLARE ts text := extract(epoch FROM now())::bigint::text;
           sig text := encode(hmac(ts || '.' || body, secret, 'sha256'), 'hex') || ':' || ts;
   BEGIN
     PERFORM set_config('request.headers', json_build_object('x-install-signature', sig)::text, true);
     PERFORM set_config('request.jwt.claims', '{\"role\": \"usage_tracking_ingest\", \"account_id\": \"acc_stats\"}', true);
     IF http THEN
       RETURN (usage_api.ingest(body::json)) ->> 'duplicates';
     END IF;
     RETURN (usage_tracking.ingest(body, sig)) ->> 'received';
   EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE;
   END \$\$" >/dev/null
B=$(printf '{"install_id":"%s","events":[{"event_id":"st_1","wp_user_id_hash":"%064d","source":"bulk","model":"gpt-4o-mini","prompt_tokens":1,"completion_tokens":2,"created_at":"%s"}]}' \
    "$I1" 7 "$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)")
is "$(q "SELECT post('$B', '$S2')")" 1 "a batch signed with the current secret is stored"
is "$(q "SELECT post('$B', '$S1')")" 1 "the rotated-out secret verifies during its grace"
is "$(q "SELECT post('$B', 'stats-wrong-secret-0123456789abcdef')")" UTA02 "a wrong secret is refused"
is "$(q "SELECT post('$B', '$S2', true)")" 1 "the HTTP route verifies the header it is given"
is "$(q "SELECT post('$B', 'stats-wrong-secret-0123456789abcdef', true)")" PGRST "and refuses a wrong secret"
is "$(q "SELECT count(*) > 0 FROM pg_stat_statements WHERE query ILIKE '%register_installation%'")" t \
   "pg_stat_statements recorded the registrations"
is "$(q "SELECT count(*) > 0 FROM pg_stat_statements WHERE query ILIKE '%installation_secrets%'")" t \
   "and the statements inside the extension's functions (track = all)"
for s in "$S1" "$S2" "$GEN"; do
  is "$(q "SELECT count(*) FROM pg_stat_statements WHERE strpos(query, '$s') > 0")" 0 \
     "no recorded statement holds secret ${s:0:12}…"
  is "$(grep -c -F "$s" "$DIR/server.log")" 0 "nor does the server log"
done
echo "secret_stats: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
