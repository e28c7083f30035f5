#!/usr/bin/env bash
# bench/authorize.sh — latency of usage_tracking.authorize() at 10 000
# installations, with pgbench on a throwaway cluster: p50, p99 and max per
# call (one call per transaction, commit included), and a check that
# clients racing for the last requests of a quota never admit more than it.
#
# Knobs (environment):
#   AUTH_INSTALLS=10000   installations (4 per account, plan pro)
#   AUTH_SECONDS=30       length of each measurement
#   AUTH_CLIENTS="1 2"    pgbench client counts to measure
#   AUTH_TARGET_MS=1      p99 target
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

INSTALLS=${AUTH_INSTALLS:-10000}
SECS=${AUTH_SECONDS:-30}
CLIENTS=${AUTH_CLIENTS:-1 2}
TARGET=${AUTH_TARGET_MS:-1}

ut_throwaway_cluster usage_tracking_authbench postgres
PSQL=(psql -qX -v ON_ERROR_STOP=1 -d authbench)
psql -qX -d postgres -c "CREATE DATABASE authbench" >/dev/null

ut_log "registering $INSTALLS installations"
"${PSQL[@]}" <<SQL
CREATE EXTENSION usage_tracking;
CREATE FUNCTION bench_install_id(n int) RETURNS text LANGUAGE sql IMMUTABLE AS
  \$\$ SELECT 'b0000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0') || '_' || lpad(to_hex(n), 12, '0') \$\$;
SELECT count(usage_tracking.create_account('bench_acc_' || a, 'pro'))
  FROM generate_series(0, ($INSTALLS - 1) / 4) a;
SELECT count(usage_tracking.register_installation(bench_install_id(n), 'bench_acc_' || (n - 1) / 4,
                                                  'bench-secret-0123456789abcdef'))
  FROM generate_series(1, $INSTALLS) n;
VACUUM ANALYZE;
SQL

cat >"$WORK/authorize.sql" <<PGB
\set n random(1, $INSTALLS)
SELECT usage_tracking.authorize(bench_install_id(:n), 1, 500);
PGB

# percentiles LOGFILES... — calls, p50, p99 and max latency in ms from
# pgbench per-transaction logs (third field: latency in microseconds).
percentiles() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 }
    END { i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1;
          printf "%d %.3f %.3f %.3f\n", NR, v[i50] / 1000, v[i99] / 1000, v[NR] / 1000 }'
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ut_log "warming up"
pgbench -n -M prepared -c 2 -j 2 -T 5 -f "$WORK/authorize.sql" authbench >/dev/null
warm=$("${PSQL[@]}" -Atc "SELECT sum(admitted) FROM usage_tracking.quota_usage")

results=()
fail=0
total=0
for c in $CLIENTS; do
  ut_log "measuring: $c client(s), ${SECS}s"
  rm -f "$WORK"/pgbench_log.*
  (cd "$WORK" && pgbench -n -M prepared -c "$c" -j "$c" -T "$SECS" -l -f "$WORK/authorize.sql" authbench >"$WORK/pgbench_$c.out")
  read -r calls p50 p99 max < <(percentiles "$WORK"/pgbench_log.*)
  total=$((total + calls))
  tps=$(awk '/^tps/ {printf "%.0f", $3; exit}' "$WORK/pgbench_$c.out")
  verdict=$(awk -v p="$p99" -v t="$TARGET" 'BEGIN { print (p < t) ? "PASS" : "FAIL" }')
  [ "$verdict" = PASS ] || fail=1
  results+=("$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$c" "$calls" "$tps" "$p50" "$p99" "$max" "$verdict")")
done
# The floor on this machine: an empty transaction, one client.
echo 'SELECT 1;' >"$WORK/floor.sql"
rm -f "$WORK"/pgbench_log.*
(cd "$WORK" && pgbench -n -M prepared -c 1 -j 1 -T "$SECS" -l -f "$WORK/floor.sql" authbench >/dev/null)
read -r fcalls fp50 fp99 fmax < <(percentiles "$WORK"/pgbench_log.*)
results+=("$(printf '| 1, SELECT 1 (floor) | %s | | %s | %s | %s | |' "$fcalls" "$fp50" "$fp99" "$fmax")")
admitted=$("${PSQL[@]}" -Atc "SELECT sum(admitted) FROM usage_tracking.quota_usage")
refused=$((total - (admitted - warm)))

# The race: 8 clients, 10 installations of one free account (50 a month).
ut_log "race: 8 clients for the requests of a 50-request quota"
"${PSQL[@]}" >/dev/null <<'SQL'
SELECT usage_tracking.create_account('bench_race', 'free');
SELECT count(usage_tracking.register_installation(bench_install_id(1000000 + n), 'bench_race')) FROM generate_series(1, 10) n;
CREATE UNLOGGED TABLE race_log (allowed boolean);
SQL
printf '%s\n' '\set n random(1, 10)' \
  "INSERT INTO race_log SELECT (usage_tracking.authorize(bench_install_id(1000000 + :n)))->>'allowed' = 'true';" \
  >"$WORK/race.sql"
pgbench -n -M prepared -c 8 -j 2 -T 3 -f "$WORK/race.sql" authbench >/dev/null
race=$("${PSQL[@]}" -Atc "SELECT count(*) FILTER (WHERE allowed) || ' admitted of ' || count(*) || ' calls, quota_usage.admitted = '
                             || (SELECT admitted FROM usage_tracking.quota_usage WHERE account_id = 'bench_race') FROM race_log")
race_ok=$("${PSQL[@]}" -Atc "SELECT count(*) FILTER (WHERE allowed) = 50 AND (SELECT admitted FROM usage_tracking.quota_usage WHERE account_id = 'bench_race') = 50 FROM race_log")
[ "$race_ok" = t ] || fail=1

echo
echo "load average before the run: $LOAD_BEFORE"
echo "authorize() at $INSTALLS installations ($(nproc) CPUs, PostgreSQL $(pg_config --version | awk '{print $2}'), ${SECS} s per row, one call per transaction, commit included):"
echo
echo "| clients | calls | tps | p50 ms | p99 ms | max ms | p99 < ${TARGET} ms |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo
echo "refused during the measurements: $refused (every installation stays within the pro plan's limits)"
echo "race, 8 clients on a 50-request quota: $race ($([ "$race_ok" = t ] && echo PASS || echo FAIL))"
exit $fail
