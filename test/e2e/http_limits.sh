#!/usr/bin/env bash
# test/e2e/http_limits.sh — the gateway under hostile or heavy clients, over
# real HTTP: an oversized body is refused before it is read, slow clients
# are cut off without blocking anyone else, concurrent posts neither lose
# nor double a count, and SIGTERM lets requests in flight finish.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_limits
trap e2e_cleanup EXIT
IA=2c3d4e5f-6a7b-4c8d-8e9f-2a3b4c5d6e7f_11a11a11a001
SA=limits-secret-a-0123456789abcdef
sql "SELECT usage_tracking.create_account('acc_limits', 'credits');
     INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m)
     VALUES ('e2e_unlimited', NULL, 1000000, 1000000000);
     SELECT usage_tracking.create_account('acc_limits', 'e2e_unlimited');
     SELECT usage_tracking.register_installation('$IA', 'acc_limits', '$SA');
     CREATE FUNCTION usage_api.e2e_sleep(seconds float8) RETURNS jsonb LANGUAGE sql AS
       \$\$ SELECT jsonb_build_object('slept', seconds) FROM pg_sleep(seconds) \$\$;
     GRANT EXECUTE ON FUNCTION usage_api.e2e_sleep(float8) TO usage_tracking_admin;" >/dev/null
gw_start USAGE_CLIENT_TIMEOUT=2 USAGE_POOL=2
ING=$(token usage_tracking_ingest acc_limits)
ADMIN=$(token usage_tracking_admin)
gw_rss() { awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status"; }

# raw PYTHON-SNIPPET — run with sock connected to the gateway; prints what it says.
raw() {
  python3 - "$PORT" "$1" <<'PY'
import socket, sys, time
port, code = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(30)
def answer():
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"Content-Length: " in data:
                head, _, body = data.partition(b"\r\n\r\n")
                n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    except (ConnectionResetError, socket.timeout):
        pass
    return data
exec(code)
PY
}

# --- the body limit is enforced before the body is read ---------------------------------
out=$(raw '
sock.sendall(b"POST /api/usage/event HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\nContent-Length: 52428800\r\n\r\n")
print(answer().split(b"\r\n")[0].decode()[:12])')
is "$out" "HTTP/1.1 413" "Content-Length of 50 MiB: 413 at once, with none of the body sent"
out=$(raw '
sock.sendall(b"POST /api/usage/event HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")
print(answer().split(b"\r\n")[0].decode()[:12])')
is "$out" "HTTP/1.1 413" "Expect: 100-continue with 2 MB: 413, never 100 Continue"
rss0=$(gw_rss)
out=$(raw '
sock.sendall(b"POST /api/usage/event HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
sent = 0
try:
    for i in range(1024):          # 64 MiB, unannounced
        sock.sendall(chunk)
        sent += 65536
    sock.sendall(b"0\r\n\r\n")
except (BrokenPipeError, ConnectionResetError):
    pass
a = answer()
print("closed" if sent < 64 * 1048576 or not a else a.split(b"\r\n")[0].decode())')
is "$out" "closed" "64 MiB chunked: the gateway stops reading and drops the connection"
rss1=$(gw_rss)
[ $((rss1 - rss0)) -lt 16384 ]; ok $? "and its memory grew by less than 16 MiB (${rss0} kB -> ${rss1} kB)"
head -c 1500000 /dev/zero | tr '\0' ' ' >"$WORK/http_limits_big"
req POST /api/usage/event -H "Authorization: Bearer $ING" -H "Transfer-Encoding: chunked" --data-binary @"$WORK/http_limits_big"
is "$(error_of)" "413 body_too_large" "1.5 MB chunked: 413 body_too_large"
b=$(batch "$IA" evt_ok 3)
post_batch "$b" "$(sign "$b" "$SA")" "$ING"
is "$STATUS" 200 "a normal batch still passes"

# --- slow clients time out and block nobody -------------------------------------------
out=$(raw '
t = time.time()
sock.sendall(b"POST /api/usage/event HTTP/1.1\r\nHost: t\r\n")
a = answer()
print("closed" if time.time() - t < 20 else "open")')
is "$out" "closed" "headers never finished: the connection is closed (USAGE_CLIENT_TIMEOUT=2)"
out=$(raw '
t = time.time()
sock.sendall(b"POST /api/usage/event HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
try:
    for i in range(100):            # a byte every 1.5 s: never idle long enough to time out
        time.sleep(1.5)
        sock.sendall(b" ")
except (BrokenPipeError, ConnectionResetError):
    pass
print("cut" if time.time() - t < 60 else "served")')
is "$out" "cut" "a body trickled a byte at a time is cut off"
python3 - "$PORT" <<'PY' &
import socket, sys, time
socks = []
for i in range(50):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
    socks.append(s)
time.sleep(4)
PY
loris=$!
sleep 1
req GET /healthz
is "$STATUS" 200 "50 slow-loris connections open: others are still served"
b=$(batch "$IA" evt_during_loris 2)
post_batch "$b" "$(sign "$b" "$SA")" "$ING"
is "$STATUS" 200 "and ingest too"
wait $loris
kill -0 "$GW_PID"; ok $? "the gateway is alive"

# --- concurrent requests ------------------------------------------------------------
before=$(sql "SELECT count(*) FROM usage_tracking.events")
post_many() {  # post_many CLIENT — 10 batches of 20 distinct events
  local c=$1 k b f
  for k in $(seq 1 10); do
    b=$(batch "$IA" "evt_c${c}_$k" 20)
    f=$(mktemp "$WORK/body.XXXXXX"); printf '%s' "$b" >"$f"
    curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $ING" \
      -H "X-Install-Signature: $(sign "$b" "$SA")" --data-binary @"$f" "$BASE/api/usage/event"
    rm -f "$f"
  done
}
pids=()
for c in 1 2 3 4 5 6 7 8; do post_many $c >"$WORK/http_limits_c$c" & pids+=($!); done
wait "${pids[@]}"
is "$(cat "$WORK"/http_limits_c? | sort | uniq -c | awk '{print $1 " " $2}')" "80 200" "8 clients x 10 batches through 2 connections: all 200"
is "$(sql "SELECT count(*) FROM usage_tracking.events") " "$((before + 1600)) " "every event stored once"
is "$(sql "SELECT sum(total_requests) FROM usage_tracking.daily WHERE install_id = '$IA'")" \
   "$(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id = '$IA'")" "the summaries count each event once"
same=$(batch "$IA" evt_same 25)
f=$WORK/http_limits_same; printf '%s' "$same" >"$f"
sig=$(sign "$same" "$SA")
pids=()
for c in 1 2 3 4 5 6; do
  curl -s -H "Authorization: Bearer $ING" -H "X-Install-Signature: $sig" --data-binary @"$f" "$BASE/api/usage/event" >"$WORK/http_limits_same$c" &
  pids+=($!)
done
wait "${pids[@]}"
is "$(for c in 1 2 3 4 5 6; do jget "$(cat "$WORK/http_limits_same$c")" '{received}'; done | sort -u)" 25 "the same batch 6 times at once: each answer lists all 25"
is "$(for c in 1 2 3 4 5 6; do jget "$(cat "$WORK/http_limits_same$c")" '{duplicates}'; done | sort | tr '\n' ' ')" \
   "0 25 25 25 25 25 " "exactly one of them stored it"
is "$(sql "SELECT count(*) FROM usage_tracking.events WHERE event_id LIKE 'evt\_same\_%'")" 25 "and it is stored once"

# --- SIGTERM finishes requests in flight, then exits 0 -------------------------------------
curl -s -o "$WORK/http_limits_slow" -w '%{http_code}' -H "Authorization: Bearer $ADMIN" \
  "$BASE/rpc/e2e_sleep?seconds=2" >"$WORK/http_limits_slow_status" &
slow=$!
sleep 0.7
kill -TERM "$GW_PID"
wait $slow
is "$(cat "$WORK/http_limits_slow_status") $(cat "$WORK/http_limits_slow")" '200 {"slept": 2}' "a request in flight at SIGTERM completes"
wait "$GW_PID"
is "$?" 0 "the gateway exits 0 after SIGTERM"
GW_PID=
curl -s -o /dev/null "$BASE/healthz"
[ $? -ne 0 ]; ok $? "and no longer accepts connections"
grep -q "SIGTERM received" "$GW_LOG" && grep -q "stopped" "$GW_LOG"; ok $? "it says so in its log"

finish
