#!/usr/bin/env bash
# test/e2e/alerts_delivery.sh — alerts reach real receivers on loopback
# through usage-notifier: a generic webhook (Standard Webhooks signature
# checked), a Slack-shaped and a Discord-shaped webhook, and an SMTP sink.
# Each receiver gets exactly one alert per level per day; a failing
# receiver is retried; alerts raised while the notifier is stopped are
# delivered, each exactly once, when it starts again.
set -uo pipefail
: "${UT_ROOT:?}" "${UT_WORK:?}"
NOTIFIER=$UT_ROOT/notifier/usage-notifier
DB=alerts_e2e
DIR=$UT_WORK/alerts_e2e
SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
PY=/usr/bin/python3   # Debian's, with python3-aiosmtpd
rm -rf "$DIR"
mkdir -p "$DIR"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }
is() {  # is GOT WANT NAME
  if [ "$1" = "$2" ]; then ok "$3"; else not_ok "$3"; echo "#   got:  '$1'"; echo "#   want: '$2'"; fi
}
sql() { psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

RECEIVERS_PID=
NOTIFIER_PID=
cleanup() {
  [ -n "$NOTIFIER_PID" ] && kill "$NOTIFIER_PID" 2>/dev/null && wait "$NOTIFIER_PID" 2>/dev/null
  [ -n "$RECEIVERS_PID" ] && kill "$RECEIVERS_PID" 2>/dev/null && wait "$RECEIVERS_PID" 2>/dev/null
  psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
}
trap cleanup EXIT

[ -x "$NOTIFIER" ] || { echo "not ok - $NOTIFIER is not built"; exit 1; }
"$PY" -c 'import aiosmtpd' 2>/dev/null || { echo "not ok - python3-aiosmtpd is not installed"; exit 1; }

# Receivers.
"$PY" "$UT_ROOT/test/e2e/alerts_receivers.py" "$DIR" "$SECRET" 2>"$DIR/receivers.log" &
RECEIVERS_PID=$!
for _ in $(seq 100); do [ -s "$DIR/ports" ] && break; sleep 0.1; done
[ -s "$DIR/ports" ] || { echo "not ok - receivers did not start"; cat "$DIR/receivers.log"; exit 1; }
read -r HTTP_PORT SMTP_PORT <"$DIR/ports"
H=http://127.0.0.1:$HTTP_PORT

# A free account with every kind of channel; another whose webhook fails
# its first request.
psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
I1=a6a60000-0000-4000-8000-0000000000e1_a6a6a6a6a6e1
I2=a6a60000-0000-4000-8000-0000000000e2_a6a6a6a6a6e2
sql "CREATE EXTENSION usage_tracking;
     SELECT usage_tracking.create_account('e2e_free', 'free');
     SELECT usage_tracking.create_account('e2e_flaky', 'free');
     SELECT usage_tracking.register_installation('$I1', 'e2e_free');
     SELECT usage_tracking.register_installation('$I2', 'e2e_flaky');
     SELECT usage_tracking.set_alert_channel('e2e_free', 'webhook', '$H/hook', '$SECRET');
     SELECT usage_tracking.set_alert_channel('e2e_free', 'slack', '$H/slack');
     SELECT usage_tracking.set_alert_channel('e2e_free', 'discord', '$H/discord');
     SELECT usage_tracking.set_alert_channel('e2e_free', 'email', 'ops@example.com');
     SELECT usage_tracking.set_alert_channel('e2e_flaky', 'webhook', '$H/flaky', '$SECRET');" >/dev/null

# store INSTALL PREFIX N AT — N events created at AT (one second apart).
store() {
  sql "SELECT usage_tracking.ensure_partitions('$4', '$4'::timestamptz + $3 * interval '1 second')" >/dev/null
  sql "INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                          prompt_tokens, completion_tokens, created_at)
       SELECT '$1', '$2' || i, repeat('c', 64), 'bulk', 'gpt-4o-mini', 100, 20,
              '$4'::timestamptz + i * interval '1 second' FROM generate_series(1, $3) i" >/dev/null
}
evaluate() { sql "SELECT usage_tracking.evaluate_alerts('$1')"; }
undelivered() { sql "SELECT count(*) FROM usage_tracking.alert_deliveries WHERE delivered_at IS NULL"; }
# wait_delivered SECONDS — until every delivery is done; prints how long it took.
wait_delivered() {
  local start=$SECONDS
  for _ in $(seq $(($1 * 10))); do
    [ "$(undelivered)" = 0 ] && { echo $((SECONDS - start)); return 0; }
    sleep 0.1
  done
  echo timeout
  return 1
}
start_notifier() {
  "$NOTIFIER" -d "dbname=$DB" --smtp-url "smtp://127.0.0.1:$SMTP_PORT" --mail-from alerts@example.com \
              --poll 60 --retry-base 1 --timeout 5 -v >>"$DIR/notifier.log" 2>&1 &
  NOTIFIER_PID=$!
}
stop_notifier() {
  kill -TERM "$NOTIFIER_PID"
  wait "$NOTIFIER_PID"
  local rc=$?
  NOTIFIER_PID=
  return $rc
}
count() { [ -f "$DIR/$1.jsonl" ] && wc -l <"$DIR/$1.jsonl" | tr -d ' ' || echo 0; }
# field FILE KEY... — the KEYs of each JSON line of FILE, space-separated.
field() {
  "$PY" -c 'import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(" ".join(str(d[k]).lower() if isinstance(d[k], bool) else str(d[k]) for k in sys.argv[2:]))' "$@"
}

# --- the notifier is running: NOTIFY wakes it (it polls only every 60 s) ---
start_notifier
sleep 0.5
store "$I1" a 38 '2025-11-03 08:00:00+00'
is "$(evaluate '2025-11-03 09:00:00+00')" 1 "38 of 50 requests: one alert (warning)"
wait_delivered 20 >/dev/null
is "$?" 0 "delivered to the four channels well before the 60 s poll: NOTIFY woke the notifier"
store "$I1" b 7 '2025-11-03 09:00:00+00'
is "$(evaluate '2025-11-03 09:05:00+00')" 1 "45 of 50: one alert (critical)"
is "$(evaluate '2025-11-03 09:10:00+00')" 0 "evaluated again: nothing new"
store "$I1" c 5 '2025-11-03 09:10:00+00'
is "$(evaluate '2025-11-03 09:15:00+00')" 1 "50 of 50: one alert (blocked)"
is "$(evaluate '2025-11-03 18:00:00+00')" 0 "the same day: nothing new"
wait_delivered 20 >/dev/null
for r in hook slack discord email; do
  is "$(count $r)" 3 "$r receiver: three alerts"
done
is "$(field "$DIR/hook.jsonl" level | sort | tr '\n' ' ')" "blocked critical warning " \
   "webhook: one warning, one critical, one blocked"
is "$(field "$DIR/hook.jsonl" level period_start | sort | uniq -d | wc -l)" 0 \
   "webhook: never two alerts of one level on one day"
is "$(field "$DIR/hook.jsonl" signature_ok | sort -u)" true "webhook: every signature verifies"
is "$(field "$DIR/hook.jsonl" type | sort -u)" usage_tracking.alert "webhook: generic JSON of type usage_tracking.alert"
is "$(field "$DIR/slack.jsonl" text | grep -oE 'at the [a-z]+ level' | sort | tr '\n' ',')" \
   "at the blocked level,at the critical level,at the warning level," "slack: one message per level"
is "$(field "$DIR/discord.jsonl" content | grep -oE 'at the [a-z]+ level' | sort | uniq -d | wc -l)" 0 \
   "discord: one message per level"
is "$(field "$DIR/email.jsonl" subject | sort | tr '\n' ',')" \
   "[usage_tracking] blocked: e2e_free,[usage_tracking] critical: e2e_free,[usage_tracking] warning: e2e_free," \
   "email: one message per level, to the channel's address"
is "$(field "$DIR/email.jsonl" to | sort -u)" ops@example.com "email: sent to ops@example.com"

# --- the notifier is stopped: alerts wait in the table ---------------------
stop_notifier
is "$?" 0 "the notifier stops cleanly on SIGTERM"
is "$(evaluate '2025-11-04 00:05:00+00')" 1 "next day, still blocked: one alert"
store "$I1" d 201 '2025-11-04 10:00:00+00'
is "$(evaluate '2025-11-04 11:00:00+00')" 1 "201 requests in an hour: one abuse alert"
store "$I2" e 38 '2025-11-04 10:00:00+00'
is "$(evaluate '2025-11-04 11:05:00+00')" 1 "the second account reaches warning"
is "$(undelivered)" 9 "nine deliveries wait while the notifier is down"
sleep 1
is "$(count hook)/$(count slack)/$(count discord)/$(count email)" 3/3/3/3 "nothing was sent meanwhile"

# --- started again: it catches up from the table ---------------------------
start_notifier
wait_delivered 30 >/dev/null
is "$(undelivered)" 0 "all caught up after the restart"
for r in hook slack discord email; do
  is "$(count $r)" 5 "$r receiver: five alerts in all"
done
is "$(field "$DIR/hook.jsonl" alert_id | sort | uniq -d | wc -l)" 0 "webhook: each alert exactly once"
is "$(field "$DIR/hook.jsonl" id | sort | uniq -d | wc -l)" 0 "webhook: each webhook-id exactly once"
is "$(field "$DIR/email.jsonl" alert_id | sort | uniq -d | wc -l)" 0 "email: each alert exactly once"
is "$(field "$DIR/slack.jsonl" text | grep -oE 'at the [a-z]+ level|made [0-9]+ requests' | sort | uniq -c | awk '{print $1}' | tr '\n' ' ')" \
   "2 1 1 1 " "slack: each alert exactly once (blocked on two days)"
is "$(field "$DIR/hook.jsonl" level | grep -c abuse_requests)" 1 "webhook: the abuse alert arrived"
is "$(count flaky_refused)/$(count flaky)" 1/1 "the failing receiver: refused once, delivered on the retry"
is "$(field "$DIR/flaky_refused.jsonl" id)" "$(field "$DIR/flaky.jsonl" id)" \
   "the retry carries the same webhook-id"
is "$(sql "SELECT d.attempts || ' ' || d.last_status FROM usage_tracking.alert_deliveries d
           JOIN usage_tracking.alert_channels c USING (channel_id) WHERE c.account_id = 'e2e_flaky'")" \
   "2 HTTP 200" "its delivery record: two attempts, last HTTP 200"
is "$(sql "SELECT count(*) FROM usage_tracking.alert_deliveries WHERE attempts <> 1
           AND channel_id NOT IN (SELECT channel_id FROM usage_tracking.alert_channels WHERE account_id = 'e2e_flaky')")" \
   0 "every other delivery took exactly one attempt"
stop_notifier

echo "alerts_delivery: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
