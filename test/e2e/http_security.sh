#!/usr/bin/env bash
# test/e2e/http_security.sh — the attacks of docs/SECURITY.md replayed over
# real HTTP against the gateway, each one refused: request smuggling, a
# forged access log, duplicated keys, symlinks under the dashboard, broken
# /rpc bodies, non-finite token times, missing security headers.
. "$(dirname "$0")/lib/http.sh"

e2e_db http_e2e_security
trap e2e_cleanup EXIT
IA=5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b_5ec000000a01
IB=5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b_5ec000000b01
SA=sec-secret-a-0123456789abcdef0123
SB=sec-secret-b-0123456789abcdef0123
sql "SELECT usage_tracking.create_account('acc_sec_a', 'pro'), usage_tracking.create_account('acc_sec_b', 'pro');
     SELECT usage_tracking.register_installation('$IA', 'acc_sec_a', '$SA'),
            usage_tracking.register_installation('$IB', 'acc_sec_b', '$SB');" >/dev/null
DASH=$WORK/http_security_dashboard
rm -rf "$DASH" "$WORK/http_security_outside"
mkdir -p "$DASH/assets" "$WORK/http_security_outside"
printf '<!doctype html><title>usage</title>\n' >"$DASH/index.html"
printf 'console.log(1)\n' >"$DASH/assets/app.js"
gw_start USAGE_DASHBOARD_DIR="$DASH"
ING_A=$(token usage_tracking_ingest acc_sec_a)
READER_A=$(token usage_tracking_reader acc_sec_a)
ADMIN=$(token usage_tracking_admin)

# raw PYTHON — run with sock connected to the gateway; everything the
# gateway sends until it closes (or 5 s of silence) is in all_of().
raw() {
  python3 - "$PORT" "$1" <<'PY'
import socket, sys
port, code = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port))
sock.settimeout(5)
def all_of():
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "closed"
            data += chunk
    except socket.timeout:
        return data, "open"
    except ConnectionResetError:
        return data, "closed"
def statuses(data):
    import re
    return " ".join(m.decode() for m in re.findall(rb"HTTP/1\.[01] ([0-9]{3}) ", data))
exec(code)
PY
}

# --- W5: request smuggling ---------------------------------------------------------------
out=$(raw '
sock.sendall(b"POST /rpc/summary HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"2\r\n{}\r\n0\r\n\r\n"
             b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
d, state = all_of()
print(statuses(d), state, b"Connection: close" in d)')
is "$out" "400 closed True" "Content-Length with Transfer-Encoding: 400, Connection: close, the pipelined request is not served"
out=$(raw '
sock.sendall(b"POST /rpc/summary HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n"
             b"{}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
d, state = all_of()
print(statuses(d), state, b"Connection: close" in d)')
is "$out" "400 closed True" "two different Content-Length headers: 400, Connection: close, nothing pipelined served"
out=$(raw '
sock.sendall(b"POST /rpc/summary HTTP/1.1\r\nHost: t\r\nContent-Length: 2, 40\r\n\r\n"
             b"{}GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
d, state = all_of()
print(statuses(d).split(" ")[0], "200" in statuses(d), state)')
is "$out" "400 False closed" "a Content-Length list: 400 and closed, nothing pipelined served"
out=$(raw '
sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
d, state = all_of()
print(statuses(d), state)')
is "$out" "200 200 closed" "plain pipelining still works"

# --- W4: the access log cannot be forged ------------------------------------------------
req GET "/nowhere%20200%200.1ms%20install=$IB%0a2026-01-01T00:00:00Z%20GET%20/fake%20200" -H "Authorization: Bearer $READER_A"
is "$STATUS" 404 "a path with encoded spaces and a newline: 404"
sleep 0.2
line=$(grep -a 'nowhere' "$GW_LOG")
is "$(printf '%s\n' "$line" | wc -l) $(printf '%s\n' "$line" | awk '{print NF}')" "1 6" "it is one log line of six fields"
case "$line" in *" /nowhere%20200%200.1ms%20install%3D$IB%0A2026-01-01T00%3A00%3A00Z%20GET%20/fake%20200 404 "*" install=-") r=0 ;; *) r=1 ;; esac
ok $r "with the path percent-encoded and no install id"
grep -aq '^2026-01-01T00:00:00Z' "$GW_LOG"; ok $((!$?)) "no forged line starts in the log"
body="{\"install_id\":\"$SA\",\"events\":[]}"
post_batch "$body" "$(sign "$body" "$SA")" "$ING_A"
is "$STATUS" 400 "a secret posted as the install_id: refused"
body=$(batch "$IA" evt_log 1)
post_batch "$body" "$(sign "$body" "wrong-secret-0123456789abcdef")" "$ING_A"
is "$STATUS" 401 "a well-formed install_id with a wrong signature: 401"
b=$(batch "$IA" evt_log 1)
post_batch "$b" "$(sign "$b" "$SA")" "$ING_A"
is "$STATUS" 200 "a signed batch: 200"
sleep 0.2
grep -aq -- "$SA" "$GW_LOG"; ok $((!$?)) "the secret is not in the access log"
is "$(grep -a 'POST /api/usage/event' "$GW_LOG" | awk '{print $4, $6}' | tail -3 | tr '\n' ' ')" \
   "400 install=- 401 install=- 200 install=$IA " "only the install_id the database accepted (200) is logged"

# --- W3: a duplicated top-level key ------------------------------------------------------
ev=$(batch "$IA" evt_dup 1 | sed 's/.*"events":\[//; s/\]}$//')
body="{\"install_id\":\"$IB\",\"install_id\":\"$IA\",\"events\":[$ev]}"
before=$(sql "SELECT count(*) FROM usage_tracking.events")
post_batch "$body" "$(sign "$body" "$SA")" "$ING_A"
is "$(error_of) $(jget "$BODY" '{message}')" "400 invalid_batch invalid batch: install_id appears more than once" \
   "install_id twice (another tenant's first, the signer's last): 400 UTB02"
is "$(sql "SELECT count(*) FROM usage_tracking.events")" "$before" "and nothing is stored"
sleep 0.2
is "$(grep -a 'POST /api/usage/event' "$GW_LOG" | tail -1 | awk '{print $4, $6}')" "400 install=-" \
   "the access log names no installation for it"

# --- the dashboard: no symlink is followed, security headers ------------------------------
printf 'outside-secret-file\n' >"$WORK/http_security_outside/leak.js"
ln -s "$WORK/http_security_outside" "$DASH/linked"
ln -s "$WORK/http_security_outside/leak.js" "$DASH/assets/leak.js"
req GET /dashboard/linked/leak.js
is "$(error_of)" "404 not_found" "a symlinked directory under the dashboard: 404"
req GET /dashboard/assets/leak.js
is "$(error_of)" "404 not_found" "a symlinked file under the dashboard: 404"
case "$BODY" in *outside-secret*) r=1 ;; *) r=0 ;; esac
ok $r "nothing outside the dashboard directory is served"
req GET /dashboard/assets/app.js
is "$STATUS" 200 "a real file in a real subdirectory is still served"
req GET /dashboard/
is "$STATUS $(header X-Content-Type-Options) $(header X-Frame-Options)" "200 nosniff DENY" \
   "the dashboard page has X-Content-Type-Options: nosniff and X-Frame-Options: DENY"
csp=$(header Content-Security-Policy)
case "$csp" in *"default-src 'none'"*"script-src 'self'"*"frame-ancestors 'none'"*) r=0 ;; *) r=1 ;; esac
ok $r "and a Content-Security-Policy allowing only its own script (got: $csp)"
case "$csp" in *unsafe-inline*|*unsafe-eval*) r=1 ;; *) r=0 ;; esac
ok $r "with no unsafe-inline or unsafe-eval"
req GET /healthz
is "$(header X-Content-Type-Options) $(header X-Frame-Options) $(header Content-Security-Policy)" \
   "nosniff DENY default-src 'none'; frame-ancestors 'none'" "API answers carry the headers too"

# --- /rpc with a body that is not a JSON object -----------------------------------------
for body in "{\"install_id\": \"$IA\"," '[1, 2]' 'install_id=x' '{"a": 1} trailing'; do
  req POST /rpc/summary -H "Authorization: Bearer $READER_A" -H 'Content-Type: application/json' --data-binary "$body"
  is "$(error_of)" "400 malformed_json" "POST /rpc/summary with body '$body': 400, not a call without arguments"
done
req POST /rpc/summary -H "Authorization: Bearer $READER_A" -H 'Content-Type: application/json' --data-binary "{\"install_id\": \"$IA\"}"
is "$STATUS" 200 "a JSON object body still passes its keys as arguments"
req POST /rpc/summary -H "Authorization: Bearer $READER_A" --data-binary '  '
is "$STATUS" 200 "a blank body is a call without arguments, as before"

# --- V2: CSV formula injection ---------------------------------------------------------
b=$(batch "$IA" evt_formula 1 | sed 's/"model":"gpt-4o-mini"/"model":"@SUM","request_id":"=cmd|'"'"' \/C calc'"'"'!A0"/')
post_batch "$b" "$(sign "$b" "$SA")" "$ING_A"
is "$STATUS $(jget "$BODY" '{received}')" "200 1" "an event with request_id =cmd|' /C calc'!A0 and model @SUM is stored"
for who in "$ADMIN" "$READER_A"; do
  req POST /api/usage/export -H "Authorization: Bearer $who" -d '{"kind": "events"}'
  line=$(printf '%s\n' "$BODY" | grep evt_formula)
  case "$line" in *",\"'@SUM\","*",\"'=cmd|' /C calc'!A0\","*) r=0 ;; *) r=1 ;; esac
  ok $r "the export writes them as text: a single quote first, quoted (status $STATUS)"
  printf '%s\n' "$BODY" | grep -Eq '(^|,)"?[=+@-]'; ok $((!$?)) "no field of the export starts a formula"
done

# --- W1: a captured request replayed after forget_user() ---------------------------------
cap=$(batch "$IA" evt_replay 3)
capsig=$(sign "$cap" "$SA")
post_batch "$cap" "$capsig" "$ING_A"
is "$STATUS $(jget "$BODY" '{received}')" "200 3" "a site posts three events of three users"
used=$(jget "$BODY" '{quota,used}')
user=$(sql "SELECT wp_user_id_hash FROM usage_tracking.events WHERE install_id = '$IA' AND event_id = 'evt_replay_0'")
sql "SELECT usage_tracking.forget_user('$IA', '$user')" >/dev/null
post_batch "$cap" "$capsig" "$ING_A"
is "$STATUS $(jget "$BODY" '{received}') $(jget "$BODY" '{rejected,0,error}')" \
   "200 2 this user's events were erased after this event was created" \
   "the captured request replayed after forget_user(): the erased user's event is refused, the others are duplicates"
is "$(jget "$BODY" '{quota,used}')" "$used" "and the quota does not count them again"
is "$(sql "SELECT count(*) FROM usage_tracking.events WHERE install_id = '$IA' AND wp_user_id_hash = '$user' AND event_id LIKE 'evt_replay_%'")" 0 \
   "nothing of the erased user is stored again"

# --- a per-client connection cap ---------------------------------------------------------
gw_stop
gw_start USAGE_CLIENT_CONNECTIONS=4 USAGE_CLIENT_TIMEOUT=5
out=$(python3 - "$PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    s.settimeout(5)
    s.recv(4096)                       # answered, kept alive
    held.append(s)
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
try:
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    fifth = "served" if extra.recv(4096).startswith(b"HTTP/1.1 200") else "refused"
except (ConnectionResetError, BrokenPipeError, socket.timeout):
    fifth = "refused"
for s in held:
    s.close()
time.sleep(0.5)
again = socket.create_connection(("127.0.0.1", port))
again.settimeout(5)
again.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
after = "served" if again.recv(4096).startswith(b"HTTP/1.1 200") else "refused"
print(fifth, after)
PY
)
is "$out" "refused served" "USAGE_CLIENT_CONNECTIONS=4: a fifth connection from one address is refused, and served once the others close"

finish
