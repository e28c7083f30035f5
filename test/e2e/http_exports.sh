#!/usr/bin/env bash
# test/e2e/http_exports.sh — one tenant's slow CSV exports cannot take the
# gateway down for everyone: exports have connections of their own
# (USAGE_EXPORT_POOL), a per-account cap, a deadline and a minimum rate,
# and /healthz has its own connection.  While four slow readers of one
# tenant hold exports for 30 s, another tenant's reads and posts and
# /healthz keep answering 200; then the deadline cuts the readers off and
# their transactions end.  All on loopback, every reader bounded.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_exports
trap e2e_cleanup EXIT
IA=e0e0e0e0-0000-4000-8000-00000000e0e0_00000000e0a1
IB=e0e0e0e0-0000-4000-8000-00000000e0e0_00000000e0b1
SB=exports-secret-b-0123456789abcdef
sql "SELECT usage_tracking.create_account('acc_exp_a', 'credits'), usage_tracking.create_account('acc_exp_b', 'pro');
     SELECT usage_tracking.register_installation('$IA', 'acc_exp_a') IS NOT NULL,
            usage_tracking.register_installation('$IB', 'acc_exp_b', '$SB') IS NOT NULL;
     INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model,
                                        prompt_tokens, completion_tokens, cached_prompt_tokens,
                                        request_id, created_at, received_at)
     SELECT '$IA', 'evt_export_' || n, encode(sha256(('u' || n % 50)::bytea), 'hex'), 'bulk', 'gpt-4o-mini',
            100, 20, 0, 'req_export_padding_' || n, now() - interval '1 hour' - n * interval '10 ms', now()
       FROM generate_series(1, 150000) n;" >/dev/null
# Exports get five connections, four per account; the deadline is 35 s and
# the readers below (16 KiB/s) keep above the 1 KiB/s minimum.
gw_start USAGE_POOL=2 USAGE_EXPORT_POOL=5 USAGE_EXPORTS_PER_ACCOUNT=4 USAGE_EXPORT_TIMEOUT=35 \
         USAGE_EXPORT_MIN_RATE=1024
READER_A=$(token usage_tracking_reader acc_exp_a 600)
READER_B=$(token usage_tracking_reader acc_exp_b 600)
ING_B=$(token usage_tracking_ingest acc_exp_b 600)

# slow_reader TOKEN SECONDS STEP OUT — POST an events export and read 8 KiB
# every STEP seconds for at most SECONDS; OUT gets "<status> <bytes> <cut|open|done> <seconds>".
slow_reader() {
  python3 - "$PORT" "$1" "$2" "$3" >"$4" <<'PY' &
import socket, sys, time
port, tok, limit, step = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
body = b'{"kind": "events"}'
s.sendall(b"POST /api/usage/export HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + tok.encode() +
          b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
s.settimeout(10)
t0 = time.time()
data = b""
state = "open"
while time.time() - t0 < limit:
    try:
        chunk = s.recv(8192)
    except (socket.timeout, ConnectionResetError):
        state = "cut"
        break
    if not chunk:
        state = "done" if data.endswith(b"0\r\n\r\n") else "cut"
        break
    data += chunk
    time.sleep(step)
status = data.split(b" ")[1].decode() if data.startswith(b"HTTP/1.1 ") else "000"
print(status, len(data), state, int(time.time() - t0))
PY
}

exporting() {
  sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
         AND application_name = 'usage-gateway' AND state = 'active' AND query LIKE '%usage_api.\"export\"%'"
}
slow_pids=()
for i in 1 2 3 4; do slow_reader "$READER_A" 45 0.5 "$WORK/http_exports_slow$i"; slow_pids+=($!); done
for _ in $(seq 1 100); do [ "$(exporting)" = 4 ] && break; sleep 0.2; done
is "$(exporting)" 4 "four slow readers of one tenant hold four exports"
# A fifth export of the same tenant is over its cap: 429 at once.
req POST /api/usage/export -H "Authorization: Bearer $READER_A" -d '{"kind": "daily"}'
is "$STATUS $(header Retry-After) $(jget "$BODY" '{error}' 2>/dev/null)" "429 5 too_many_exports" \
   "a fifth concurrent export of one account: 429 with Retry-After"

# For 30 s, once a second: the other tenant reads and posts, /healthz answers.
fails=0
checks=0
for k in $(seq 1 30); do
  h=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/healthz")
  r=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $READER_B" "$BASE/api/usage/summary?install_id=$IB")
  b=$(batch "$IB" "evt_during_$k" 1)
  f=$WORK/http_exports_body; printf '%s' "$b" >"$f"
  p=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $ING_B" \
        -H "X-Install-Signature: $(sign "$b" "$SB")" --data-binary @"$f" "$BASE/api/usage/event")
  checks=$((checks + 1))
  if [ "$h $r $p" != "200 200 200" ]; then fails=$((fails + 1)); echo "#   second $k: healthz $h, summary $r, post $p"; fi
  sleep 1
done
is "$fails of $checks" "0 of $checks" "while four slow exports run 30 s: /healthz, another tenant's summary and its posts answer 200 every second"
# The other tenant may still export (a connection of the export pool is left).
req POST /api/usage/export -H "Authorization: Bearer $READER_B" -d '{"kind": "daily"}'
is "$STATUS $(header Content-Type)" "200 text/csv; charset=utf-8" "and another tenant's export still runs"

wait "${slow_pids[@]}"
for i in 1 2 3 4; do
  read -r st bytes state secs <"$WORK/http_exports_slow$i"
  [ "$st" = 200 ] && [ "$state" = cut ] && [ "$secs" -lt 45 ]
  ok $? "slow reader $i: 200, then cut off by the 35 s deadline ($st $bytes bytes $state after ${secs}s)"
done
sleep 1
is "$(sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'usage-gateway' AND state <> 'idle'")" 0 \
   "their queries were cancelled and their transactions ended"
is "$(grep -c "export cut off after" "$GW_LOG")" 4 "the gateway logs why it cut them off"

# The minimum rate: a reader at 8 KiB/s is cut once the 10 s grace has
# passed (the idle timeout, which would also end it, set out of the way).
gw_stop
gw_start USAGE_EXPORT_MIN_RATE=65536 USAGE_EXPORT_TIMEOUT=300 USAGE_CLIENT_TIMEOUT=60
slow_reader "$READER_A" 40 1 "$WORK/http_exports_trickle"
wait $!
read -r st bytes state secs <"$WORK/http_exports_trickle"
[ "$st" = 200 ] && [ "$state" = cut ] && [ "$secs" -lt 40 ]
ok $? "a reader below USAGE_EXPORT_MIN_RATE is cut off after the grace ($st $bytes bytes $state after ${secs}s)"
is "$(grep -c "export cut off after" "$GW_LOG")" 1 "by the gateway's rate check"
req POST /api/usage/export -H "Authorization: Bearer $READER_A" -d '{"kind": "events"}' --max-time 60
is "$STATUS $(printf '%s\n' "$BODY" | wc -l)" "200 150001" "a client that reads at full speed gets the whole export"

finish
