#!/usr/bin/env bash
# bench/run.sh — `make bench`: build, install, start a throwaway cluster and
# measure the extension against a PL/pgSQL + pgcrypto implementation of the
# same contract and against a plain INSERT of the same rows, with pgbench.
# Prints a table of results and ratios with the settings used, and writes it
# to bench/RESULTS.md.
#
# Knobs (environment):
#   BENCH_SECONDS=15        length of each ingest measurement (50-event batches)
#   BENCH_ROUNDS=3          the implementations take turns, in this many slices
#   BENCH_BIG_SECONDS=      length of each 1000-event measurement (default BENCH_SECONDS)
#   BENCH_CLIENTS=2         pgbench clients (and threads)
#   BENCH_INSTALLS=200      installations the batches are spread over
#   BENCH_MEM_INGESTS=100000  ingests in one session for the memory test (0: skip)
#   BENCH_MEM_EVENTS=10     events per batch in the memory test
#   BENCH_READ_EVENTS=5000000 events stored for the read test (0: skip)
#   BENCH_READ_INSTALLS=10000 installations for the read test
#   BENCH_READ_SECONDS=10   length of each read measurement
#   BENCH_EXPORT_ROWS=200000  rows for bench/export_memory.sh
#   AUTH_SECONDS=           length of each bench/authorize.sh measurement (default BENCH_SECONDS)
#   BENCH_SECTIONS="ingest big memory reads extra"  what to run
#   BENCH_RESULTS=bench/RESULTS.md  where to write the table ('' : nowhere)
set -euo pipefail

START=$(date +%s)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

SECS=${BENCH_SECONDS:-15}
ROUNDS=${BENCH_ROUNDS:-3}
BIG_SECS=${BENCH_BIG_SECONDS:-$SECS}
CLIENTS=${BENCH_CLIENTS:-2}
INSTALLS=${BENCH_INSTALLS:-200}
ACCOUNTS=$(( INSTALLS / 4 > 0 ? INSTALLS / 4 : 1 ))
MEM_INGESTS=${BENCH_MEM_INGESTS:-100000}
MEM_EVENTS=${BENCH_MEM_EVENTS:-10}
READ_EVENTS=${BENCH_READ_EVENTS:-5000000}
READ_INSTALLS=${BENCH_READ_INSTALLS:-10000}
SECTIONS=" ${BENCH_SECTIONS:-ingest big memory reads extra} "
RESULTS_FILE=${BENCH_RESULTS-bench/RESULTS.md}

ut_throwaway_cluster usage_tracking_bench bench
export UT_ROOT=$ROOT UT_WORK=$WORK

export PGOPTIONS="-c client_min_messages=warning"
PSQL=(psql -qX -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -At -d "${DB:-bench}" -c "$1"; }

# Checkpoints come from the CHECKPOINT before each measurement (and the
# timeout), not from WAL volume in the middle of one: as on a server whose
# max_wal_size is sized for its write rate.
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET max_wal_size = '4GB'" -c "SELECT pg_reload_conf()" >/dev/null

# Batches are signed at T0 and ingested with now => T0, so signatures and
# event times stay valid however long the run takes.  Noon UTC yesterday:
# one site's five minutes never straddle midnight.
T0=$(date -u -d 'yesterday 12:00' '+%Y-%m-%d %H:%M:%S+00')

# ---------------------------------------------------------------- results
RES=$WORK/results.tsv
: >"$RES"
# result SECTION MEASURE VALUE [TARGET] [VERDICT]
result() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" "${5:-}" >>"$RES"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# ratio_verdict A B MIN → PASS or FAIL for A / B, judged unrounded (a
# ratio shown as 1.00 may be under 1).
ratio_verdict() { awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { print (b > 0 && a / b >= m) ? "PASS" : "FAIL" }'; }
TIMES=""
LAP=$START
lap() { local now; now=$(date +%s); TIMES="$TIMES${TIMES:+, }$1 $((now - LAP)) s"; LAP=$now; }

# ---------------------------------------------------------------- database
ut_log "creating the benchmark database"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null
"${PSQL[@]}" -d bench -f bench/plpgsql_ingest.sql >/dev/null
"${PSQL[@]}" -d bench -v t0="$T0" -v installs="$INSTALLS" -v accounts="$ACCOUNTS" \
  -f bench/setup.sql >/dev/null

# Pools of signed batches grow on demand: before a measurement, enough for
# SECS seconds at the rate guessed for that kind (raised after each run).
declare -A GUESS=([real]=2500 [adv]=2500 [big]=80 [mem]=0)
declare -A SKIPPED=()
declare -A NEVENTS=([real]=50 [adv]=50 [big]=1000 [mem]=$MEM_EVENTS)
declare -A POOL_KIND=([real]=real [adv]=adv [big]=real [mem]=real)

pool_size() { q "SELECT coalesce(max(id), 0) FROM bench.pool WHERE kind = '$1'"; }

# ensure_pool KIND UPTO — generate batches up to id UPTO, two sessions at once.
ensure_pool() {
  local kind=$1 upto=$2 have mid
  have=$(pool_size "$kind")
  [ "$have" -ge "$upto" ] && return 0
  ut_log "generating $kind batches $((have + 1))..$upto (${NEVENTS[$kind]} events each)"
  mid=$(( (have + 1 + upto) / 2 ))
  q "SELECT bench.make_pool('$kind', $((have + 1)), $mid, ${NEVENTS[$kind]}, '${POOL_KIND[$kind]}')" >/dev/null &
  q "SELECT bench.make_pool('$kind', $((mid + 1)), $upto, ${NEVENTS[$kind]}, '${POOL_KIND[$kind]}')" >/dev/null
  wait
}

seq_value() { q "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench.\"seq_$1\""; }

# The statement each implementation runs per transaction, for a kind.
statement() {  # statement IMPL KIND SEQNAME
  local impl=$1 kind=$2 seq=$3 pick
  pick="p.kind = '$kind' AND p.id = (SELECT nextval('bench.\"seq_$seq\"'))"
  case $impl in
    project|executor)
      # executor: the same call with usage_tracking.direct_write off (set
      # for its connections by measure), drawing from the project's batches.
      echo "SELECT usage_tracking.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p WHERE $pick;" ;;
    plpgsql)
      echo "SELECT plpgsql_ingest.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p WHERE $pick;" ;;
    resend)
      # The batches the project has stored so far, sent again a minute
      # later (a site's retry), in a cycle: every event a duplicate.
      echo "SELECT usage_tracking.ingest(p.body, p.sig, '$T0'::timestamptz + interval '60 seconds') FROM bench.pool p" \
           "WHERE p.kind = '$kind' AND p.id = (SELECT (nextval('bench.\"seq_$seq\"') - 1)" \
           "% $(seq_value "project_$kind") + 1);" ;;
    floor)
      # The body is parsed once (a MATERIALIZED CTE), as a competent user would.
      echo "WITH b AS MATERIALIZED (SELECT p.body::jsonb AS d FROM bench.pool p WHERE $pick)"\
           "INSERT INTO floor_ingest.events (install_id, event_id, wp_user_id_hash, source, model,"\
           "prompt_tokens, completion_tokens, cached_prompt_tokens, request_id, context, created_at, received_at)"\
           "SELECT b.d->>'install_id', e.event_id, e.wp_user_id_hash, e.source, e.model, e.prompt_tokens,"\
           "e.completion_tokens, coalesce(e.cached_prompt_tokens, 0), e.request_id, e.context, e.created_at,"\
           "'$T0'::timestamptz"\
           "FROM b,"\
           "jsonb_to_recordset(b.d->'events') AS e(event_id text, wp_user_id_hash text, source text,"\
           "model text, prompt_tokens integer, completion_tokens integer, cached_prompt_tokens integer,"\
           "request_id text, context jsonb, created_at timestamptz);" ;;
  esac
}

# pgbench_tps NAME SCRIPT SECONDS [CLIENTS] — run pgbench, print tps.
pgbench_tps() {
  local name=$1 script=$2 secs=$3 c=${4:-$CLIENTS} log=$WORK/$1.log tps
  q "CHECKPOINT" >/dev/null
  if ! pgbench -n -M prepared -c "$c" -j "$c" -T "$secs" -f "$script" bench >"$log" 2>&1 \
     || grep -q 'aborted' "$log"; then
    cat "$log" >&2
    echo "pgbench run $name failed" >&2
    return 1
  fi
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log" | head -1)
  printf '%.1f' "$tps"
}

# measure IMPL KIND SECONDS — MEASURED: batches/s of IMPL on fresh batches of KIND.
# Every transaction takes the next batch from the pool by a sequence; if the
# pool ran dry the run is repeated with a larger pool.
measure() {
  local impl=$1 kind=$2 secs=$3 name="${1}_$2" script tps before after attempt opts=$PGOPTIONS
  # The executor path ingests the project's next batches into the same
  # tables, so it draws from the project's sequence.
  if [ "$impl" = executor ]; then
    name="project_$kind"
    opts="$PGOPTIONS -c usage_tracking.direct_write=off"
  fi
  q "CREATE SEQUENCE IF NOT EXISTS bench.\"seq_$name\"" >/dev/null
  script=$WORK/${impl}_$kind.sql
  statement "$impl" "$kind" "$name" >"$script"
  for attempt in 1 2 3; do
    before=$(seq_value "$name")
    [ "$impl" = resend ] || ensure_pool "$kind" $(( before + (secs * ${GUESS[$kind]} * 12) / 10 + 100 ))
    ut_log "ingest: $impl, $kind batches, ${secs}s"
    tps=$(PGOPTIONS=$opts pgbench_tps "${impl}_$kind" "$script" "$secs") || exit 1
    after=$(seq_value "$name")
    if [ "$impl" = resend ] || [ "$after" -le "$(pool_size "$kind")" ]; then
      break
    fi
    ut_log "the pool ran out; again with a larger one"
    # The ids drawn past the end of the pool were never ingested.
    SKIPPED[$name]=$(( ${SKIPPED[$name]:-0} + after - $(pool_size "$kind") ))
    GUESS[$kind]=$(( ${GUESS[$kind]} * 3 ))
  done
  [ "$impl" != resend ] && awk -v t="$tps" -v g="${GUESS[$kind]}" 'BEGIN { exit !(t * 1.3 > g) }' \
    && GUESS[$kind]=$(awk -v t="$tps" 'BEGIN { printf "%d", t * 1.3 }')
  MEASURED=$tps
}

# compare KIND SECONDS IMPL... — TPS[IMPL_KIND]: the implementations take
# turns, ROUNDS rounds of SECONDS/ROUNDS each, so that a change in the
# machine's load hits them alike; the result is the mean over the rounds.
# Each round starts one implementation further on (a resend stays last:
# it replays what the project stored), so that none always runs right
# after the same other one.
declare -A TPS
compare() {
  local kind=$1 secs=$2 impl round slice i n
  shift 2
  local impls=("$@") order
  slice=$(( secs / ROUNDS > 0 ? secs / ROUNDS : 1 ))
  n=${#impls[@]}
  [ "${impls[n - 1]}" = resend ] && n=$((n - 1))
  declare -A sum=()
  for ((round = 1; round <= ROUNDS; round++)); do
    order=()
    for ((i = 0; i < n; i++)); do order+=("${impls[(i + round - 1) % n]}"); done
    order+=("${impls[@]:n}")
    for impl in "${order[@]}"; do
      measure "$impl" "$kind" "$slice"
      sum[$impl]=$(awk -v a="${sum[$impl]:-0}" -v b="$MEASURED" 'BEGIN { print a + b }')
    done
  done
  for impl in "$@"; do
    TPS[${impl}_$kind]=$(awk -v a="${sum[$impl]}" -v r="$ROUNDS" 'BEGIN { printf "%.1f", a / r }')
  done
}

lap "set-up"

# ---------------------------------------------------------------- settings
q "SELECT name, current_setting(name) FROM pg_settings
    WHERE name IN ('server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_level',
                   'shared_buffers', 'work_mem', 'max_wal_size', 'checkpoint_timeout', 'autovacuum',
                   'wal_buffers', 'effective_io_concurrency', 'jit')
    ORDER BY name" | tr '|' '=' >"$WORK/settings"
SETTINGS=$(paste -sd ' ' "$WORK/settings")
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)

# ---------------------------------------------------------------- (a) ingest
if [[ $SECTIONS == *" ingest "* ]]; then
  compare real "$SECS" floor plpgsql project executor resend
  compare adv "$SECS" floor plpgsql project
  # Every batch was stored whole, and the summaries add up to the events.
  for impl in project plpgsql floor; do
    case $impl in
      project) schema=usage_tracking ;;
      plpgsql) schema=plpgsql_ingest ;;
      floor) schema=floor_ingest ;;
    esac
    expect=$(( ($(seq_value "${impl}_real") - ${SKIPPED[${impl}_real]:-0}
                + $(seq_value "${impl}_adv") - ${SKIPPED[${impl}_adv]:-0}) * 50 ))
    got=$(q "SELECT count(*) FROM $schema.events")
    [ "$got" -eq "$expect" ] || { echo "$impl stored $got events, expected $expect" >&2; exit 1; }
    if [ "$impl" != floor ]; then
      daily=$(q "SELECT coalesce(sum(total_requests), 0) FROM $schema.daily")
      [ "$daily" -eq "$expect" ] || { echo "$impl summaries count $daily events, expected $expect" >&2; exit 1; }
    fi
  done
  KEYS_REAL=$(q "SELECT round(avg(k), 1) FROM (
                    SELECT count(DISTINCT (e->>'wp_user_id_hash', e->>'source', e->>'model',
                                           left(e->>'created_at', 10))) AS k
                      FROM bench.pool p, jsonb_array_elements(p.body::jsonb->'events') e
                     WHERE p.kind = 'real' AND p.id <= 400 GROUP BY p.id) x")

  for kind in real adv; do
    label=$([ $kind = real ] && echo realistic || echo adversarial)
    for impl in project plpgsql floor; do
      result "(a) ingest, 50-event batches, $label" "$impl" "${TPS[${impl}_$kind]} batches/s"
    done
  done
  r=$(ratio "${TPS[project_real]}" "${TPS[plpgsql_real]}")
  result "(a) ratios" "project / PL/pgSQL, realistic" "${r}×" "≥ 2.0" \
    "$(ratio_verdict "${TPS[project_real]}" "${TPS[plpgsql_real]}" 2.0)"
  r=$(ratio "${TPS[project_real]}" "${TPS[floor_real]}")
  result "(a) ratios" "project / plain INSERT floor, realistic" "${r}×" "≥ 1.0" \
    "$(ratio_verdict "${TPS[project_real]}" "${TPS[floor_real]}" 1.0)"
  result "(a) ingest, 50-event batches, realistic" "project, executor path (direct_write off)" \
    "${TPS[executor_real]} batches/s"
  r=$(ratio "${TPS[project_real]}" "${TPS[executor_real]}")
  result "(a) ratios" "direct path / executor path, realistic" "${r}×"
  r=$(ratio "${TPS[project_adv]}" "${TPS[plpgsql_adv]}")
  result "(a) ratios" "project / PL/pgSQL, adversarial" "${r}×" "≥ 1.5" \
    "$(ratio_verdict "${TPS[project_adv]}" "${TPS[plpgsql_adv]}" 1.5)"
  r=$(ratio "${TPS[project_adv]}" "${TPS[floor_adv]}")
  result "(a) ratios" "project / plain INSERT floor, adversarial" "${r}×"
  r=$(ratio "${TPS[resend_real]}" "${TPS[project_real]}")
  result "(a) ratios" "duplicate resend / first send (${TPS[resend_real]} batches/s)" "${r}×" "≥ 3.0" \
    "$(ratio_verdict "${TPS[resend_real]}" "${TPS[project_real]}" 3.0)"
fi

[[ $SECTIONS == *" ingest "* ]] && lap "ingest"

# ---------------------------------------------------------------- (a) 1000-event batches
if [[ $SECTIONS == *" big "* ]]; then
  compare big "$BIG_SECS" floor plpgsql project
  for impl in project plpgsql floor; do
    result "(a) ingest, 1000-event batches, realistic" "$impl" \
      "${TPS[${impl}_big]} batches/s ($(awk -v t="${TPS[${impl}_big]}" 'BEGIN { printf "%.0f", t * 1000 }') events/s)"
  done
  r=$(ratio "${TPS[project_big]}" "${TPS[plpgsql_big]}")
  result "(a) ratios" "project / PL/pgSQL, 1000-event batches" "${r}×"
  r=$(ratio "${TPS[project_big]}" "${TPS[floor_big]}")
  result "(a) ratios" "project / plain INSERT floor, 1000-event batches" "${r}×"
fi

# pgbench_latency NAME SCRIPT SECONDS CLIENTS DB — "avg_ms p99_ms tps" of a
# pgbench run, from its per-transaction log.
pgbench_latency() {
  local name=$1 script=$2 secs=$3 c=$4 db=$5 log=$WORK/$1.log
  rm -f "$WORK/lat_$name".*
  if ! pgbench -n -M prepared -c "$c" -j "$c" -T "$secs" -l --log-prefix="$WORK/lat_$name" \
         -f "$script" "$db" >"$log" 2>&1 || grep -q 'aborted' "$log"; then
    cat "$log" >&2
    echo "pgbench run $name failed" >&2
    return 1
  fi
  cat "$WORK/lat_$name".* | awk '{ print $3 }' | sort -n | awk -v secs="$secs" '
    { v[NR] = $1; sum += $1 }
    END { i = int(NR * 0.99); if (i < 1) i = 1
          printf "%.2f %.2f %.1f\n", sum / NR / 1000, v[i] / 1000, NR / secs }'
}

[[ $SECTIONS == *" big "* ]] && lap "1000-event"

# ---------------------------------------------------------------- (e) memory
# One session ingests MEM_INGESTS new batches; its backend samples its own
# memory (/proc status and its memory contexts) every tenth of the way.
if [[ $SECTIONS == *" memory "* ]] && [ "$MEM_INGESTS" -gt 0 ]; then
  ensure_pool mem "$MEM_INGESTS"
  q "CREATE SEQUENCE bench.seq_mem" >/dev/null
  step=$(( MEM_INGESTS / 10 > 0 ? MEM_INGESTS / 10 : 1 ))
  cat >"$WORK/memory.sql" <<SQL
SELECT nextval('bench.seq_mem') AS n \gset
SELECT usage_tracking.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p WHERE p.kind = 'mem' AND p.id = :n;
\if :n % $step = 0
SELECT bench.sample_memory(:n);
\endif
SQL
  ut_log "memory: $MEM_INGESTS ingests of $MEM_EVENTS-event batches in one session"
  # synchronous_commit off for this session only: the test is about memory,
  # not commit latency.
  if ! PGOPTIONS="$PGOPTIONS -c synchronous_commit=off" pgbench -n -M prepared -c 1 -j 1 -t "$MEM_INGESTS" \
         -f "$WORK/memory.sql" bench >"$WORK/memory.log" 2>&1 || grep -q 'aborted' "$WORK/memory.log"; then
    cat "$WORK/memory.log" >&2
    echo "memory run failed" >&2
    exit 1
  fi
  read -r first_n first_anon first_ctx <<<"$(q "SELECT ingests, rss_anon_kb, contexts_bytes FROM bench.memory ORDER BY ingests LIMIT 1" | tr '|' ' ')"
  read -r last_n last_anon last_ctx last_rss last_hwm <<<"$(q "SELECT ingests, rss_anon_kb, contexts_bytes, vm_rss_kb, vm_hwm_kb FROM bench.memory ORDER BY ingests DESC LIMIT 1" | tr '|' ' ')"
  curve=$(q "SELECT string_agg((rss_anon_kb / 1024.0)::numeric(10,1)::text, ' ' ORDER BY ingests) FROM bench.memory")
  grow_anon=$(( last_anon - first_anon ))
  grow_ctx=$(( last_ctx - first_ctx ))
  result "(e) memory, one backend" "private memory (RssAnon) after $first_n → $last_n ingests" \
    "$((first_anon / 1024)) → $((last_anon / 1024)) MiB (every tenth: $curve)" "≤ 64 MiB" \
    "$([ "$last_anon" -le $((64 * 1024)) ] && echo PASS || echo FAIL)"
  result "(e) memory, one backend" "growth of RssAnon, $first_n → $last_n ingests" "$grow_anon KiB" "≤ 2048 KiB" \
    "$([ "$grow_anon" -le 2048 ] && echo PASS || echo FAIL)"
  result "(e) memory, one backend" "growth of memory contexts, $first_n → $last_n ingests" "$grow_ctx bytes" "≤ 65536 bytes" \
    "$([ "$grow_ctx" -le 65536 ] && echo PASS || echo FAIL)"
  result "(e) memory, one backend" "VmRSS / VmHWM at the end (include shared buffers touched)" \
    "$((last_rss / 1024)) / $((last_hwm / 1024)) MiB"
fi

[[ $SECTIONS == *" memory "* ]] && lap "memory"

# ---------------------------------------------------------------- (c) reads
if [[ $SECTIONS == *" reads "* ]] && [ "$READ_EVENTS" -gt 0 ]; then
  READ_SECS=${BENCH_READ_SECONDS:-10}
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE bench_reads" >/dev/null
  "${PSQL[@]}" -d bench_reads -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null
  "${PSQL[@]}" -d bench_reads -v t0="$T0" -v installs="$READ_INSTALLS" -f bench/reads_setup.sql >/dev/null
  per_day=$(( (READ_EVENTS + 89) / 90 ))
  ut_log "reads: loading $READ_EVENTS events over 90 days and $READ_INSTALLS installations"
  load_days() { local d; for d in "$@"; do DB=bench_reads q "SELECT bench.load_day($d, $per_day)" >/dev/null; done; }
  load_days $(seq 0 2 89) &
  load_days $(seq 1 2 89)
  wait
  DB=bench_reads q "VACUUM ANALYZE" >/dev/null
  stored=$(DB=bench_reads q "SELECT count(*) FROM usage_tracking.events")
  keys=$(DB=bench_reads q "SELECT count(*) FROM usage_tracking.daily")
  inst1=$(DB=bench_reads q "SELECT install_id FROM bench.installs WHERE n = 1")
  d_to=$(date -u -d "$T0" +%F)
  d_from=$(date -u -d "$T0 - 89 days" +%F)
  result "(c) reads" "data" "$stored events, $keys daily rows, $READ_INSTALLS installations"

  if [ -n "$(DB=bench_reads q "SELECT to_regprocedure('usage_tracking.usage_summary(text, date, date, text)')")" ]; then
    echo "SELECT count(*) FROM usage_tracking.usage_summary('$inst1', '$d_from', '$d_to', 'day');" >"$WORK/summary.sql"
    ut_log "reads: usage_summary, ${READ_SECS}s"
    read -r avg p99 tps <<<"$(pgbench_latency summary "$WORK/summary.sql" "$READ_SECS" 1 bench_reads)" || exit 1
    plan=$(DB=bench_reads q "EXPLAIN (COSTS OFF) SELECT * FROM usage_tracking.usage_summary('$inst1', '$d_from', '$d_to', 'day')")
    if grep -q 'events' <<<"$plan"; then raw="reads raw events"
    elif grep -q 'Function Scan' <<<"$plan"; then raw="plan not visible"
    else raw="reads summaries only"; fi
    result "(c) reads" "usage_summary, one installation, 90 days by day ($raw)" "avg $avg ms, p99 $p99 ms ($tps/s, 1 client)" \
      "no raw events" "$([ "$raw" = "reads raw events" ] && echo FAIL || echo PASS)"
  else
    result "(c) reads" "usage_summary" "not available"
  fi
  if [ -n "$(DB=bench_reads q "SELECT to_regprocedure('usage_tracking.installations(date, date)')")" ]; then
    echo "SELECT count(*) FROM usage_tracking.installations('$(date -u -d "$T0 - 29 days" +%F)', '$d_to');" >"$WORK/installations.sql"
    ut_log "reads: installations(), ${READ_SECS}s"
    read -r avg p99 tps <<<"$(pgbench_latency installations "$WORK/installations.sql" "$READ_SECS" 1 bench_reads)" || exit 1
    result "(c) reads" "installations(), $READ_INSTALLS installations, last 30 days" "avg $avg ms, p99 $p99 ms ($tps/s, 1 client)"
  else
    result "(c) reads" "installations()" "not available"
  fi
fi

[[ $SECTIONS == *" reads "* ]] && lap "reads"

# ---------------------------------------------------------------- other parts
# bench/http.sh, retention.sh, authorize.sh and export_memory.sh measure the
# parts of the product they name, each on its own throwaway cluster.  Their
# standard output goes into the report under the table, verbatim; a script
# that fails, or prints FAIL, counts as a missed target.
EXTRA=$WORK/extra.md
: >"$EXTRA"
if [[ $SECTIONS == *" extra "* ]]; then
  for part in http retention authorize export_memory; do
    [ -f "bench/$part.sh" ] || continue
    ut_log "running bench/$part.sh"
    rc=0
    AUTH_SECONDS=${AUTH_SECONDS:-$SECS} BENCH_SECONDS=$SECS BENCH_T0=$T0 \
      bash "bench/$part.sh" $([ "$part" = export_memory ] && echo "${BENCH_EXPORT_ROWS:-200000}") \
      >"$WORK/$part.out" 2>"$WORK/$part.err" || rc=$?
    if [ $rc -ne 0 ]; then
      { echo "bench/$part.sh exited with status $rc; the end of its log:"; tail -20 "$WORK/$part.err"; } >&2
      result "other parts" "bench/$part.sh (below)" "exit status $rc" "exit status 0" "FAIL"
    elif grep -qw FAIL "$WORK/$part.out"; then
      result "other parts" "bench/$part.sh (below)" "a target missed" "all PASS" "FAIL"
    else
      result "other parts" "bench/$part.sh (below)" "ran"
    fi
    lap "$part.sh"
    { echo; echo "bench/$part.sh:"; echo; sed -e '/^==>/d' -e '/./,$!d' "$WORK/$part.out"; } >>"$EXTRA"
  done
fi

# ---------------------------------------------------------------- table
END=$(date +%s)
ELAPSED=$((END - START))
TABLE=$WORK/table.md
{
  echo "| Section | Measure | Result | Target | |"
  echo "|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$RES"
  echo
  echo "Machine: $CPUS cores ($CPU_MODEL), $MEM RAM. Clients: $CLIENTS (pgbench -n -M prepared -c $CLIENTS -j $CLIENTS)," \
       "$SECS s per 50-event measurement and $BIG_SECS s per 1000-event one, the implementations taking turns in $ROUNDS slices," \
       "$INSTALLS installations," \
       "realistic batches: ${KEYS_REAL:-?} summary keys per batch on average (adversarial: 50)."
  echo
  echo "Settings: $SETTINGS (otherwise initdb defaults; a CHECKPOINT before each measurement)."
  echo
  echo "Command: \`make bench\` (bench/run.sh); run time ${ELAPSED} s ($TIMES); load average before the run: $LOAD; $(date -u '+%Y-%m-%d %H:%M UTC')."
  cat "$EXTRA"
} >"$TABLE"

echo
cat "$TABLE"
if [ -n "$RESULTS_FILE" ]; then
  {
    echo "# Benchmark results"
    echo
    echo "Latest \`make bench\` run (written by bench/run.sh)."
    echo
    cat "$TABLE"
  } >"$ROOT/$RESULTS_FILE"
fi
FAILED=$(awk -F'\t' '$5 == "FAIL"' "$RES" | wc -l)
echo
echo "bench: $FAILED target(s) missed; run time ${ELAPSED} s"
[ "$FAILED" -eq 0 ]
