#!/usr/bin/env bash
# tools/soak.sh — `make soak`: SOAK_MINUTES (default 30) of concurrent
# ingest, reads and maintenance against a private cluster and the real
# gateway, in bounded loops, then a report:
#   - requests per route and every answer that was not 200 (errors);
#   - memory of the gateway and of its pooled backends, start and end
#     (private memory: RssAnon; shared buffers are not the backend's own);
#   - exactness: daily equals the GROUP BY over raw events (EXCEPT ALL both
#     ways), every acknowledged event is stored once, and nothing else is.
# Exits non-zero when there were errors, memory grew past SOAK_MAX_GROWTH_KB
# (default 32768) in any process, or the summaries are not exact.
#
#   SOAK_MINUTES=5 make soak
#   SOAK_SECONDS=20 make soak        (a short run; wins over SOAK_MINUTES)
#   SOAK_INGESTERS=4 SOAK_READERS=2 SOAK_SAMPLE_S=30 bash tools/soak.sh
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

MINUTES=${SOAK_MINUTES:-30}
SECONDS_RUN=${SOAK_SECONDS:-$((MINUTES * 60))}
INGESTERS=${SOAK_INGESTERS:-4}
READERS=${SOAK_READERS:-2}
SAMPLE_S=${SOAK_SAMPLE_S:-30}
MAX_GROWTH_KB=${SOAK_MAX_GROWTH_KB:-32768}
EVENTS=20
INSTALLS=8

ut_require_packages "${UT_PACKAGES[@]}" || exit 1
ut_log "building and installing"
ut_build_install || exit 1

SOAK=$(mktemp -d /tmp/usage_tracking_soak.XXXXXX)
export UT_WORK=$SOAK UT_ROOT=$ROOT
PIDS=()
# Stops what the run started (workers, gateway, cluster) and keeps the exit
# status the run ended with.  It waits for the workers by pid only: a bare
# `wait` would also wait for the gateway, which never exits on its own.
cleanup() {
  local rc=$? p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
  if [ -n "${GW_PID:-}" ]; then
    kill "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
  fi
  ut_cluster_stop "$SOAK"
  [ -n "${SOAK_KEEP:-}" ] || rm -rf "$SOAK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ut_log "starting a private cluster in $SOAK"
ut_cluster_start "$SOAK" postgres || exit 1
. test/e2e/lib/http.sh
WORK=$SOAK
e2e_db soak

# A plan no rate limit stops; installations on two accounts.
sql "INSERT INTO usage_tracking.plans (plan, monthly_requests, rate_requests_5m, rate_tokens_5m, abuse_requests_1h, abuse_tokens_1h)
     VALUES ('soak', NULL, 1000000000, 1000000000000, 1000000000, 1000000000000);
     SELECT usage_tracking.create_account('acc_soak_' || a, 'soak') FROM generate_series(0, 1) a;" >/dev/null
install_id() { printf '5a5a5a5a-0000-4000-8000-00000000%04d_00000000%04d' "$1" "$1"; }
for ((i = 0; i < INSTALLS; i++)); do
  sql "SELECT usage_tracking.register_installation('$(install_id "$i")', 'acc_soak_$((i % 2))', 'soak-secret-$i-0123456789abcdef')" >/dev/null
done
gw_start USAGE_POOL=4
ut_log "gateway on $BASE (pid $GW_PID), $INGESTERS ingesters, $READERS readers, maintenance, $SECONDS_RUN s"

DEADLINE=$(( $(date +%s) + SECONDS_RUN ))
TOKEN_TTL=$(( SECONDS_RUN + 600 ))
ING=( "$(token usage_tracking_ingest acc_soak_0 "$TOKEN_TTL")" "$(token usage_tracking_ingest acc_soak_1 "$TOKEN_TTL")" )
RD=( "$(token usage_tracking_reader acc_soak_0 "$TOKEN_TTL")" "$(token usage_tracking_reader acc_soak_1 "$TOKEN_TTL")" )
ADMIN=$(token usage_tracking_admin "" "$TOKEN_TTL")
USERS=()
for u in 1 2 3 4; do USERS+=("$(printf 'soak-user-%d' "$u" | sha256sum | cut -d' ' -f1)"); done
MODELS=(gpt-4o-mini gpt-4o gpt-4.1-mini unpriced-model)

# batch WORKER N INSTALL — EVENTS events created a minute ago.
soak_batch() {
  local w=$1 n=$2 inst=$3 k sep= at
  at=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
  printf '{"install_id":"%s","events":[' "$inst"
  for ((k = 0; k < EVENTS; k++)); do
    printf '%s{"event_id":"soak_w%d_b%d_e%d","wp_user_id_hash":"%s","source":"%s","model":"%s","prompt_tokens":%d,"completion_tokens":%d,"cached_prompt_tokens":%d,"created_at":"%s"}' \
      "$sep" "$w" "$n" "$k" "${USERS[$((k % 4))]}" "$( ((k % 3)) && echo bulk || echo inline)" \
      "${MODELS[$(((k + n) % 4))]}" $((100 + (k * 13 + n) % 500)) $((5 + k)) $((k % 2 * 40)) "$at"
    sep=,
  done
  printf ']}'
}

# Each worker appends "route status" per request to its own file.
ingester() {
  local w=$1 n=0 i inst secret body sig f="$SOAK/body_$1" st
  while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    i=$(( (w + n) % INSTALLS )); inst=$(install_id "$i"); secret=soak-secret-$i-0123456789abcdef
    if (( n % 10 == 9 )) && [ -s "$SOAK/sent_$w" ]; then
      # a retry of an earlier batch, as a site whose answer was lost
      IFS=' ' read -r i body < <(shuf -n 1 "$SOAK/sent_$w"); inst=$(install_id "$i"); secret=soak-secret-$i-0123456789abcdef
      route=resend
    else
      body=$(soak_batch "$w" "$n" "$inst"); route=ingest
    fi
    printf '%s' "$body" >"$f"
    sig=$(sign "$body" "$secret")
    st=$(curl -sS -o "$SOAK/resp_$w" -w '%{http_code}' -X POST "$BASE/api/usage/event" \
         -H "Authorization: Bearer ${ING[$((i % 2))]}" -H "X-Install-Signature: $sig" \
         -H 'Content-Type: application/json' --data-binary @"$f" 2>/dev/null) || st=000
    echo "$route $st" >>"$SOAK/stats_ingest_$w"
    if [ "$st" = 200 ]; then
      [ "$route" = ingest ] && echo "$i $body" >>"$SOAK/sent_$w"
      grep -o '"event_ids": *\[[^]]*\]' "$SOAK/resp_$w" | grep -o '"soak_[^"]*"' | tr -d '"' >>"$SOAK/acked_$w"
    else
      { echo "$route $st"; head -c 300 "$SOAK/resp_$w"; echo; } >>"$SOAK/errors_ingest_$w"
    fi
    n=$((n + 1))
  done
}

reader() {
  local w=$1 a st tok day path cursor page
  day=$(date -u +%Y-%m-%d)
  while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    a=$(( RANDOM % 2 )); tok=${RD[$a]}
    for path in "/api/usage/summary?date_from=$day&date_to=$day" \
                "/api/usage/summary?date_from=$day&date_to=$day&group_by=day,model,source,user" \
                "/api/usage/summary?install_id=$(install_id "$a")&group_by=model" \
                "/api/usage/quota?install_id=$(install_id "$a")"; do
      st=$(curl -sS -o "$SOAK/rresp_$w" -w '%{http_code}' -H "Authorization: Bearer $tok" "$BASE$path" 2>/dev/null) || st=000
      echo "${path%%\?*} $st" >>"$SOAK/stats_read_$w"
      [ "$st" = 200 ] || { echo "$path $st $(head -c 300 "$SOAK/rresp_$w")" >>"$SOAK/errors_read_$w"; }
    done
    # three pages of raw events, following the cursor
    cursor=
    for page in 1 2 3; do
      st=$(curl -sS -o "$SOAK/rresp_$w" -w '%{http_code}' -H "Authorization: Bearer $tok" \
           "$BASE/api/usage/events?date_from=$day&date_to=$day&limit=200${cursor:+&after=$cursor}" 2>/dev/null) || st=000
      echo "/api/usage/events $st" >>"$SOAK/stats_read_$w"
      [ "$st" = 200 ] || { echo "events $st $(head -c 300 "$SOAK/rresp_$w")" >>"$SOAK/errors_read_$w"; break; }
      cursor=$(grep -o '"next": *"[^"]*"' "$SOAK/rresp_$w" | sed 's/.*"next": *"//; s/"$//')
      [ -n "$cursor" ] || break
    done
    st=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN" "$BASE/api/usage/installations" 2>/dev/null) || st=000
    echo "/api/usage/installations $st" >>"$SOAK/stats_read_$w"
    st=$(curl -sS -o "$SOAK/export_$w.csv" -w '%{http_code}' -X POST -H "Authorization: Bearer $tok" \
         -H 'Content-Type: application/json' --data-binary "{\"kind\":\"daily\",\"date_from\":\"$day\",\"date_to\":\"$day\"}" \
         "$BASE/api/usage/export" 2>/dev/null) || st=000
    echo "/api/usage/export $st" >>"$SOAK/stats_read_$w"
    [ "$st" = 200 ] || echo "export $st $(head -c 300 "$SOAK/export_$w.csv")" >>"$SOAK/errors_read_$w"
  done
}

# Maintenance as pg_cron would run it, every 20 s: retention and
# partitions, alert evaluation, a read-only reconcile of today.
maintainer() {
  local f out
  while [ "$(date +%s)" -lt "$DEADLINE" ]; do
    for f in "usage_tracking.run_maintenance(now())" "usage_tracking.evaluate_alerts(now())" \
             "usage_tracking.reconcile(current_date, false)"; do
      sql "SELECT to_regprocedure('${f%%(*}(timestamptz)') IS NOT NULL OR to_regprocedure('${f%%(*}(date,boolean)') IS NOT NULL" | grep -q t || continue
      if out=$(sql "SELECT $f" 2>&1); then
        echo "${f%%(*} ok" >>"$SOAK/stats_maint"
      else
        echo "${f%%(*} error" >>"$SOAK/stats_maint"; echo "$f: $out" >>"$SOAK/errors_maint"
      fi
    done
    sleep 20
  done
}

# Private memory (kB) of the gateway and of each of its pooled backends.
rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pool_pids() {
  sql "SELECT pid FROM pg_stat_activity WHERE datname = 'soak' AND backend_type = 'client backend'
          AND application_name NOT LIKE 'psql%' AND pid <> pg_backend_pid() ORDER BY pid"
}
sample() {  # sample LABEL — one line: label, gateway kB, backend pid:kB ...
  local line p
  line="$1 gateway=$(rss_anon "$GW_PID")"
  for p in $(pool_pids); do line+=" $p=$(rss_anon "$p")"; done
  echo "$line" >>"$SOAK/memory"
}

for ((w = 0; w < INGESTERS; w++)); do ingester "$w" & PIDS+=($!); done
for ((w = 0; w < READERS; w++)); do reader "$w" & PIDS+=($!); done
maintainer & PIDS+=($!)

# Warm up for a minute (or a fifth of the run), then sample until the end.
sleep $(( SECONDS_RUN / 5 < 60 ? SECONDS_RUN / 5 : 60 ))
sample start
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
  sleep "$SAMPLE_S"
  sample "t+$(( $(date +%s) - DEADLINE + SECONDS_RUN ))s"
done
for p in "${PIDS[@]}"; do wait "$p"; done
PIDS=()
sample end

# --- report ------------------------------------------------------------------
echo
echo "soak: $SECONDS_RUN s, $INGESTERS ingesters, $READERS readers, maintenance every 20 s"
echo "requests (route status count):"
cat "$SOAK"/stats_* 2>/dev/null | sort | uniq -c | awk '{printf "  %-28s %s %8d\n", $2, $3, $1}'
errors=$(cat "$SOAK"/stats_ingest_* "$SOAK"/stats_read_* 2>/dev/null | awk '$2 != 200' | wc -l)
merrors=$(grep -c error "$SOAK/stats_maint" 2>/dev/null)
total=$(cat "$SOAK"/stats_ingest_* "$SOAK"/stats_read_* 2>/dev/null | wc -l)
echo "errors: $errors of $total HTTP requests, ${merrors:-0} maintenance runs"
cat "$SOAK"/errors_* 2>/dev/null | head -10

echo "memory (RssAnon kB), start -> end:"
start=$(grep '^start ' "$SOAK/memory"); end=$(grep '^end ' "$SOAK/memory")
growth_bad=0
for kv in $start; do
  case $kv in start) continue ;; esac
  k=${kv%%=*} v0=${kv#*=}
  v1=$(printf '%s\n' $end | sed -n "s/^$k=//p")
  [ -n "$v1" ] || v1=gone
  label=$([ "$k" = gateway ] && echo "gateway" || echo "backend $k")
  printf '  %-16s %8s -> %8s' "$label" "$v0" "$v1"
  if [ "$v1" != gone ]; then
    printf '  (%+d kB)' $((v1 - v0))
    [ $((v1 - v0)) -gt "$MAX_GROWTH_KB" ] && { growth_bad=1; printf '  TOO MUCH'; }
  fi
  echo
done
echo "  (every sample: $SOAK/memory when SOAK_KEEP=1)"

cat "$SOAK"/acked_* 2>/dev/null | sort -u >"$SOAK/acked_all"
psql -qX -d soak -c "CREATE TABLE soak_acked (event_id text PRIMARY KEY)" >/dev/null
psql -qX -d soak -c "\\copy soak_acked FROM '$SOAK/acked_all'" >/dev/null
acked=$(sql "SELECT count(*) FROM soak_acked")
stored=$(sql "SELECT count(*) FROM usage_tracking.events")
missing=$(sql "SELECT count(*) FROM soak_acked a WHERE NOT EXISTS (SELECT 1 FROM usage_tracking.events e WHERE e.event_id = a.event_id)")
twice=$(sql "SELECT count(*) FROM (SELECT install_id, event_id FROM usage_tracking.events GROUP BY 1, 2 HAVING count(*) > 1) d")
requests=$(sql "SELECT coalesce(sum(total_requests), 0) FROM usage_tracking.daily")
drift=$(sql "WITH o AS (
  SELECT e.install_id, (e.created_at AT TIME ZONE 'UTC')::date AS d, e.wp_user_id_hash, e.source, e.model,
         count(*)::bigint AS r, sum(e.prompt_tokens)::bigint AS p, sum(e.completion_tokens)::bigint AS c,
         sum(e.cached_prompt_tokens)::bigint AS k
    FROM usage_tracking.events e GROUP BY 1, 2, 3, 4, 5),
  s AS (SELECT install_id, usage_date, wp_user_id_hash, source, model, total_requests, prompt_tokens,
               completion_tokens, cached_prompt_tokens FROM usage_tracking.daily)
  SELECT (SELECT count(*) FROM (SELECT * FROM s EXCEPT ALL SELECT * FROM o) x)
       + (SELECT count(*) FROM (SELECT * FROM o EXCEPT ALL SELECT * FROM s) y)")
echo "exactness: $acked events acknowledged, $stored stored, $missing acknowledged but missing," \
     "$twice stored twice, daily counts $requests requests, $drift rows of drift (EXCEPT ALL both ways)"
bad=0
[ "$errors" -eq 0 ] && [ "${merrors:-0}" -eq 0 ] || bad=1
[ "$growth_bad" -eq 0 ] || bad=1
[ "$missing" -eq 0 ] && [ "$twice" -eq 0 ] && [ "$drift" -eq 0 ] && [ "$requests" -eq "$stored" ] && [ "$acked" -eq "$stored" ] || bad=1
[ $bad -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$bad"
