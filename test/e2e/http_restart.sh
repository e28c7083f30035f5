#!/usr/bin/env bash
# test/e2e/http_restart.sh — PostgreSQL restarts under the gateway while a
# site keeps posting: requests answer 503 with a JSON body while it is down,
# the gateway never crashes, reconnects by itself, and every batch is stored
# whole or not at all.  Restarts the test cluster (pg_ctl as the postgres OS
# user on $PGHOST/data) and leaves it running.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_restart
IA=3d4e5f6a-7b8c-4d9e-af0a-3b4c5d6e7f8a_4e5747a47001
SA=restart-secret-a-0123456789abcdef
DATA=$PGHOST/data
pg_up() { ut_as_pg pg_ctl -D "$DATA" -l "$PGHOST/server.log" -w -t 60 start >/dev/null; }
restore() {
  [ -f "$DATA/postmaster.pid" ] || pg_up
  e2e_cleanup
  rm -f "$WORK/http_restart_stop"
}
trap restore EXIT
[ -d "$DATA" ] || { echo "no data directory at $DATA" >&2; exit 1; }
sql "INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m)
     VALUES ('e2e_restart', NULL, 1000000, 1000000000);
     SELECT usage_tracking.create_account('acc_restart', 'e2e_restart');
     SELECT usage_tracking.register_installation('$IA', 'acc_restart', '$SA');" >/dev/null
gw_start USAGE_POOL=2
ING=$(token usage_tracking_ingest acc_restart)

# A site posting batches of 10 events until told to stop; one line per
# batch: its number and the status it got.
site() {
  local k=0 b f
  while [ ! -e "$WORK/http_restart_stop" ]; do
    k=$((k + 1))
    b=$(batch "$IA" "evt_r$k" 10)
    f=$WORK/http_restart_body; printf '%s' "$b" >"$f"
    echo "$k $(curl -s -o /dev/null -w '%{http_code}' -m 10 -H "Authorization: Bearer $ING" \
                 -H "X-Install-Signature: $(sign "$b" "$SA")" --data-binary @"$f" "$BASE/api/usage/event")"
    sleep 0.05
  done
}
site >"$WORK/http_restart_statuses" &
SITE=$!
wait_for() {  # wait_for STATUS — until the site has seen it (at most 30 s)
  local _
  for _ in $(seq 1 300); do
    grep -q " $1\$" "$WORK/http_restart_statuses" && return 0
    sleep 0.1
  done
  return 1
}
wait_for 200; ok $? "the site posts while the database is up"

ut_as_pg pg_ctl -D "$DATA" -m fast -w stop >/dev/null
ok $? "PostgreSQL stopped (fast shutdown) under the gateway"
wait_for 503; ok $? "the site gets 503 while it is down"
req GET /healthz
is "$(error_of)" "503 database_unavailable" "GET /healthz: 503 database_unavailable"
is "$(header Retry-After)" 1 "503 carries Retry-After"
b=$(batch "$IA" evt_down 1)
post_batch "$b" "$(sign "$b" "$SA")" "$ING"
is "$STATUS $(printf '%s' "$BODY" | grep -o '"success": false, "error": "database_unavailable"')" \
   '503 "success": false, "error": "database_unavailable"' "POST while down: 503 with a JSON error body"
sleep 1.5
kill -0 "$GW_PID"; ok $? "the gateway is still running"

down_lines=$(wc -l <"$WORK/http_restart_statuses")
pg_up
ok $? "PostgreSQL started again"
for _ in $(seq 1 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
req GET /healthz
is "$STATUS" 200 "GET /healthz: 200 again, without restarting the gateway"
for _ in $(seq 1 100); do
  [ "$(tail -n +$((down_lines + 1)) "$WORK/http_restart_statuses" | grep -c ' 200$')" -ge 3 ] && break
  sleep 0.1
done
touch "$WORK/http_restart_stop"
wait "$SITE"
is "$(tail -n 3 "$WORK/http_restart_statuses" | awk '{print $2}' | tr '\n' ' ')" "200 200 200 " "the site's posts succeed again"
is "$(awk '{print $2}' "$WORK/http_restart_statuses" | sort -u | tr '\n' ' ')" "200 503 " "it only ever saw 200 or 503"
kill -0 "$GW_PID"; ok $? "the gateway never crashed"

# All or nothing per batch: each stored in full or not at all, every 200 stored.
partial=$(sql "SELECT count(*) FROM (SELECT split_part(event_id, '_', 2) FROM usage_tracking.events
                WHERE install_id = '$IA' GROUP BY 1 HAVING count(*) <> 10) p")
is "$partial" 0 "no batch is stored in part"
accepted=$(awk '$2 == 200 {print "evt_r" $1}' "$WORK/http_restart_statuses" | sort)
stored=$(sql "SELECT DISTINCT 'evt_' || split_part(event_id, '_', 2) FROM usage_tracking.events WHERE install_id = '$IA'" | sort)
missing=$(comm -23 <(printf '%s\n' "$accepted") <(printf '%s\n' "$stored") | grep -c . || true)
is "$missing" 0 "every batch answered 200 is stored"
is "$(sql "SELECT sum(total_requests) FROM usage_tracking.daily WHERE install_id = '$IA'")" \
   "$(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id = '$IA'")" "the summaries match the stored events"
grep -q " 503 " "$GW_LOG"; ok $? "the access log shows the 503s"

finish
