#!/usr/bin/env bash
# test/e2e/crash_ingest.sh — crash safety of ingest.  Four clients post
# distinct signed batches without pause (two installations, two clients
# each, the same summary keys), each logging the event_ids of every answer
# it received, i.e. of every committed batch.  In the middle of that the
# postmaster and all its processes are killed with SIGKILL; the cluster is
# restarted (crash recovery) and the test proves:
#   1. daily equals the GROUP BY over the raw events (EXCEPT ALL both ways);
#   2. every acknowledged event_id is stored;
#   3. after every batch a client tried is sent again (twice), nothing is
#      counted twice: acknowledged batches come back as all duplicates,
#      each event is stored once, and daily still equals the raw events.
# Runs in a database of its own in the cluster tools/test.sh started.
set -uo pipefail

ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
WORK=${UT_WORK:-$(mktemp -d)}/crash_ingest
. "$ROOT/tools/lib.sh"
DB=crash_ingest
CLIENTS=4
MIN_ACKED=${CRASH_MIN_ACKED:-40}     # batches committed before the kill
EVENTS=20                            # events per batch
DATA=$PGHOST/data

rm -rf "$WORK"; mkdir -p "$WORK"
pass=0 fail=0
ok() {
  if [ "$1" -eq 0 ]; then pass=$((pass + 1)); echo "ok - $2"; else fail=$((fail + 1)); echo "not ok - $2"; fi
}
is() { if [ "$1" = "$2" ]; then ok 0 "$3"; else ok 1 "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi; }
sql() { psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

cleanup() {
  local p
  for p in "${CLIENT_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
}
trap cleanup EXIT

psql -qX -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
  -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
psql -qX -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'SQL' || exit 1
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION usage_tracking;
SELECT usage_tracking.ensure_partitions(now() - interval '1 day', now() + interval '1 day');
-- A plan no rate limit stops: the clients post as fast as they can.
INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m,
                                  abuse_requests_1h, abuse_tokens_1h)
VALUES ('crash_test', NULL, 1000000000, 1000000000000, 1000000000, 1000000000000);
SELECT usage_tracking.create_account('acc_crash', 'crash_test');
SELECT usage_tracking.register_installation('c4a5c4a5-0000-4000-8000-00000000c4a5_00000000c4a1', 'acc_crash', 'crash-secret-1-0123456789abcdef');
SELECT usage_tracking.register_installation('c4a5c4a5-0000-4000-8000-00000000c4a5_00000000c4a2', 'acc_crash', 'crash-secret-2-0123456789abcdef');
-- Sign with the server clock, as a site with a good clock does.
CREATE FUNCTION crash_post(body text, secret text) RETURNS jsonb LANGUAGE sql AS $$
  SELECT usage_tracking.ingest(body, encode(hmac(ts || '.' || body, secret, 'sha256'), 'hex') || ':' || ts)
    FROM (SELECT extract(epoch FROM now())::bigint::text AS ts) s
$$;
-- Summaries re-derived from raw events, priced at the row in force.
CREATE VIEW crash_oracle AS
SELECT e.install_id, (e.created_at AT TIME ZONE 'UTC')::date AS usage_date,
       e.wp_user_id_hash, e.source, e.model, count(*)::bigint AS total_requests,
       sum(e.prompt_tokens)::bigint AS prompt_tokens, sum(e.completion_tokens)::bigint AS completion_tokens,
       sum(e.cached_prompt_tokens)::bigint AS cached_prompt_tokens,
       sum(((e.prompt_tokens - e.cached_prompt_tokens) * p.prompt_usd_per_mtok
            + e.cached_prompt_tokens * coalesce(p.cached_prompt_usd_per_mtok, p.prompt_usd_per_mtok)
            + e.completion_tokens * p.completion_usd_per_mtok) / 1000000)::numeric(30,12) AS estimated_cost_usd,
       count(*) FILTER (WHERE p.model IS NULL)::bigint AS unpriced_requests
  FROM usage_tracking.events e
  LEFT JOIN LATERAL (
    SELECT * FROM usage_tracking.model_prices mp
     WHERE mp.model IN (e.model, '*') AND mp.effective_from <= e.created_at
     ORDER BY mp.model = '*', mp.effective_from DESC LIMIT 1) p ON true
 GROUP BY 1, 2, 3, 4, 5;
CREATE VIEW crash_drift AS
(SELECT install_id, usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens,
        completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM usage_tracking.daily
 EXCEPT ALL SELECT * FROM crash_oracle)
UNION ALL
(SELECT * FROM crash_oracle
 EXCEPT ALL
 SELECT install_id, usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens,
        completion_tokens, cached_prompt_tokens, estimated_cost_usd::numeric(30,12), unpriced_requests
   FROM usage_tracking.daily);
SQL

USERS=()
for u in 1 2 3; do USERS+=("$(printf 'crash-user-%d' "$u" | sha256sum | cut -d' ' -f1)"); done
MODELS=(gpt-4o-mini gpt-4o unpriced-model)
SOURCES=(bulk queue inline manual)

# batch CLIENT N — the Nth batch of a client: EVENTS events, ids unique to
# (client, batch, event), on a few shared summary keys.
batch() {
  local c=$1 n=$2 k sep= install at
  install=c4a5c4a5-0000-4000-8000-00000000c4a5_00000000c4a$((c % 2 + 1))
  at=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
  printf '{"install_id":"%s","events":[' "$install"
  for ((k = 0; k < EVENTS; k++)); do
    printf '%s{"event_id":"crash_c%d_b%d_e%d","wp_user_id_hash":"%s","source":"%s","model":"%s","prompt_tokens":%d,"completion_tokens":%d,"cached_prompt_tokens":%d,"created_at":"%s"}' \
      "$sep" "$c" "$n" "$k" "${USERS[$((k % 3))]}" "${SOURCES[$((k % 4))]}" "${MODELS[$(((k + n) % 3))]}" \
      $((100 + k * 7 + n)) $((10 + k)) $((k % 2 * 50)) "$at"
    sep=,
  done
  printf ']}'
}

# client C — post batches until the server goes away.  Every batch tried is
# kept (to resend); the event_ids of each answer received are logged.
client() {
  local c=$1 n=0 body secret out rc
  secret=crash-secret-$((c % 2 + 1))-0123456789abcdef
  while :; do
    body=$(batch "$c" "$n")
    printf '%s\n' "$body" >>"$WORK/tried_$c"
    out=$(psql -qAtX -d "$DB" -v body="$body" -v secret="$secret" 2>>"$WORK/client_$c.err" \
          <<<"SELECT jsonb_array_elements_text(crash_post(:'body', :'secret')->'event_ids')")
    rc=$?
    [ $rc -eq 0 ] || break
    printf '%s\n' "$out" >>"$WORK/acked_ids_$c"
    echo "$n" >>"$WORK/acked_batches_$c"
    n=$((n + 1))
  done
}

acked_batches() { cat "$WORK"/acked_batches_* 2>/dev/null | wc -l; }

CLIENT_PIDS=()
for ((c = 0; c < CLIENTS; c++)); do
  : >"$WORK/tried_$c"; : >"$WORK/acked_ids_$c"
  client "$c" &
  CLIENT_PIDS+=($!)
done

# Wait for enough committed batches (not for a time), then crash.
for _ in $(seq 1 600); do
  [ "$(acked_batches)" -ge "$MIN_ACKED" ] && break
  sleep 0.1
done
before_kill=$(acked_batches)
recoveries=$(grep -c "automatic recovery in progress" "$PGHOST/server.log")
pm=$(head -1 "$DATA/postmaster.pid")
children=$(ps -o pid= --ppid "$pm" | tr -s ' \n' ' ')
kill -9 "$pm"
for p in $children; do kill -9 "$p" 2>/dev/null; done
echo "# killed postmaster $pm and its processes after $before_kill acknowledged batches"
for p in "${CLIENT_PIDS[@]}"; do wait "$p"; done
CLIENT_PIDS=()
ok $([ "$before_kill" -ge "$MIN_ACKED" ]; echo $?) "ingest was running when the postmaster was killed ($before_kill batches committed)"
# Clients stop only because the server went away, never on an SQL error.
is "$(cat "$WORK"/client_*.err | grep -v -E 'server closed the connection|terminated abnormally|before or while processing|connection to server|could not connect|Connection refused|No such file|is the server running|accepting connections|unexpected postmaster exit|recovery mode|shutting down|^\s*$' | head -3)" "" \
   "the clients saw no error but the lost connection"

# Restart: crash recovery replays the WAL.
for _ in $(seq 1 100); do
  kill -0 "$pm" 2>/dev/null || break
  sleep 0.1
done
ut_as_pg pg_ctl -D "$DATA" -l "$PGHOST/server.log" -w -t 120 start >/dev/null 2>&1
ok $? "the cluster restarts after the crash"
is "$(grep -c "automatic recovery in progress" "$PGHOST/server.log")" $((recoveries + 1)) "the restart ran crash recovery"

# 1. Summaries equal the raw events.
is "$(sql "SELECT count(*) FROM crash_drift")" 0 "after recovery daily equals the GROUP BY over raw events (EXCEPT ALL both ways)"

# 2. Nothing acknowledged is missing.
cat "$WORK"/acked_ids_* | sort -u >"$WORK/acked_all"
acked=$(wc -l <"$WORK/acked_all")
psql -qX -d "$DB" -c "CREATE TABLE crash_acked (event_id text PRIMARY KEY)" >/dev/null
psql -qX -d "$DB" -c "\\copy crash_acked FROM '$WORK/acked_all'" >/dev/null
is "$(sql "SELECT count(*) FROM crash_acked")" "$acked" "the acknowledged event_ids are loaded ($acked)"
ok $([ "$acked" -ge $((before_kill * EVENTS)) ]; echo $?) "every acknowledged batch logged its event_ids"
is "$(sql "SELECT count(*) FROM crash_acked a WHERE NOT EXISTS (SELECT 1 FROM usage_tracking.events e WHERE e.event_id = a.event_id)")" 0 \
   "every acknowledged event_id is stored after the crash"
stored_after_crash=$(sql "SELECT count(*) FROM usage_tracking.events")
echo "# $acked events acknowledged, $stored_after_crash stored after recovery"

# 3. Resend every batch any client tried, twice.
resend() {  # resend PASS — post every tried batch again; count new events
  local c n body secret r
  for ((c = 0; c < CLIENTS; c++)); do
    n=0
    secret=crash-secret-$((c % 2 + 1))-0123456789abcdef
    while IFS= read -r body; do
      r=$(psql -qAtX -d "$DB" -v body="$body" -v secret="$secret" \
          <<<"SELECT r->>'received', r->>'duplicates', jsonb_array_length(r->'rejected') FROM crash_post(:'body', :'secret') r") || return 1
      echo "$c $n $r" >>"$WORK/resend_$1"
      n=$((n + 1))
    done <"$WORK/tried_$c"
  done
}
resend 1
ok $? "every tried batch is sent again"
tried=$(cat "$WORK"/tried_* | wc -l)
is "$(awk -F'[ |]' '$3 != 20 || $5 != 0' "$WORK/resend_1" | wc -l)" 0 "every resent batch is stored whole ($tried batches)"
is "$(sql "SELECT count(*) FROM usage_tracking.events")" $((tried * EVENTS)) "each event of every tried batch is stored exactly once"
# Each acknowledged batch (client, number) must come back all duplicates.
is "$(for ((c = 0; c < CLIENTS; c++)); do sed "s/^/$c /" "$WORK/acked_batches_$c" 2>/dev/null; done |
      awk -F'[ |]' 'NR == FNR { acked[$1 " " $2] = 1; next } ($1 " " $2) in acked && $4 != 20' - "$WORK/resend_1" | wc -l)" 0 \
   "every acknowledged batch is all duplicates when sent again"
new_on_resend=$(awk -F'[ |]' '{s += $3 - $4} END {print s + 0}' "$WORK/resend_1")
is "$new_on_resend" $((tried * EVENTS - stored_after_crash)) "the resend added only the events that were not stored ($new_on_resend)"
resend 2
is "$(awk -F'[ |]' '$3 != $4' "$WORK/resend_2" | wc -l)" 0 "a second resend is all duplicates"
is "$(sql "SELECT count(*) FROM crash_drift")" 0 "after the resends daily still equals the raw events"
is "$(sql "SELECT sum(total_requests) FROM usage_tracking.daily")" $((tried * EVENTS)) "daily counts every event once"
is "$(sql "SELECT count(*) FROM (SELECT install_id, event_id FROM usage_tracking.events GROUP BY 1, 2 HAVING count(*) > 1) d")" 0 \
   "no (install_id, event_id) is stored twice"

echo "crash_ingest: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
