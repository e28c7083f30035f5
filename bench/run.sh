#!/usr/bin/env bash
# bench/run.sh — `make bench`: build, install, start a throwaway cluster and
# measure the extension against a PL/pgSQL + pgcrypto implementation of the
# same contract and against a plain INSERT of the same rows, with pgbench.
# Prints a table of results and ratios with the settings used, and writes it
# to bench/RESULTS.md.
#
# Knobs (environment):
#   BENCH_SECONDS=20        length of each ingest measurement (50-event batches)
#   BENCH_BIG_SECONDS=      length of each 1000-event measurement (default BENCH_SECONDS)
#   BENCH_CLIENTS=2         pgbench clients (and threads)
#   BENCH_INSTALLS=200      installations the batches are spread over
#   BENCH_MEM_INGESTS=100000  ingests in one session for the memory test (0: skip)
#   BENCH_MEM_EVENTS=10     events per batch in the memory test
#   BENCH_READ_EVENTS=5000000 events stored for the read test (0: skip)
#   BENCH_READ_INSTALLS=10000 installations for the read test
#   BENCH_SECTIONS="ingest big memory reads extra"  what to run
#   BENCH_RESULTS=bench/RESULTS.md  where to write the table ('' : nowhere)
set -euo pipefail

START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

SECS=${BENCH_SECONDS:-20}
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

ut_require_packages "${UT_PACKAGES[@]}" || exit 1
ut_log "building and installing"
ut_build_install || exit 1

WORK=$(mktemp -d /tmp/usage_tracking_bench.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  ut_cluster_stop "$WORK"
  [ -n "${KEEP_CLUSTER:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ut_log "starting a throwaway cluster in $WORK"
ut_cluster_start "$WORK" bench || exit 1
export UT_ROOT=$ROOT UT_WORK=$WORK

PSQL=(psql -qX -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -At -d "${DB:-bench}" -c "$1"; }

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
atleast() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "n/a" && a + 0 >= b + 0) ? "PASS" : "FAIL" }'; }
verdict() { atleast "$@"; }  # verdict VALUE MIN → PASS or FAIL

# ---------------------------------------------------------------- database
ut_log "creating the benchmark database"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null
"${PSQL[@]}" -d bench -f bench/plpgsql_ingest.sql >/dev/null
"${PSQL[@]}" -d bench -v t0="$T0" -v installs="$INSTALLS" -v accounts="$ACCOUNTS" \
  -f bench/setup.sql >/dev/null

# Pools of signed batches grow on demand: before a measurement, enough for
# SECS seconds at the rate guessed for that kind (raised after each run).
declare -A GUESS=([real]=1500 [adv]=1500 [big]=80 [mem]=0)
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
    project)
      echo "SELECT usage_tracking.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p WHERE $pick;" ;;
    plpgsql)
      echo "SELECT plpgsql_ingest.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p WHERE $pick;" ;;
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

# measure IMPL KIND SECONDS — batches/s of IMPL on fresh batches of KIND.
# Every transaction takes the next batch from the pool by a sequence; if the
# pool ran dry the run is repeated with a larger pool.
declare -A TPS
measure() {
  local impl=$1 kind=$2 secs=$3 name="${1}_$2" script tps before after attempt
  q "CREATE SEQUENCE IF NOT EXISTS bench.\"seq_$name\"" >/dev/null
  script=$WORK/$name.sql
  statement "$impl" "$kind" "$name" >"$script"
  for attempt in 1 2 3; do
    before=$(seq_value "$name")
    ensure_pool "$kind" $(( before + (secs * ${GUESS[$kind]} * 12) / 10 + 100 ))
    ut_log "ingest: $impl, $kind batches, ${secs}s"
    tps=$(pgbench_tps "$name" "$script" "$secs") || exit 1
    after=$(seq_value "$name")
    if [ "$after" -le "$(pool_size "$kind")" ]; then
      break
    fi
    ut_log "the pool ran out; again with a larger one"
    GUESS[$kind]=$(( ${GUESS[$kind]} * 3 ))
  done
  awk -v t="$tps" -v g="${GUESS[$kind]}" 'BEGIN { exit !(t * 1.3 > g) }' \
    && GUESS[$kind]=$(awk -v t="$tps" 'BEGIN { printf "%d", t * 1.3 }')
  TPS[$name]=$tps
  echo "$tps"
}

# ---------------------------------------------------------------- settings
q "SELECT name, setting || coalesce(unit, '') FROM pg_settings
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
  for kind in real adv; do
    for impl in floor plpgsql project; do
      measure "$impl" "$kind" "$SECS" >/dev/null
    done
  done
  # Resend: the batches the project has just stored, sent again (every
  # event a duplicate), cycling over them.
  sent=$(seq_value project_real)
  q "CREATE SEQUENCE bench.seq_resend" >/dev/null
  echo "SELECT usage_tracking.ingest(p.body, p.sig, '$T0'::timestamptz) FROM bench.pool p" \
       "WHERE p.kind = 'real' AND p.id = (SELECT (nextval('bench.seq_resend') - 1) % $sent + 1);" \
       >"$WORK/resend.sql"
  ut_log "ingest: project, resending $sent stored batches, ${SECS}s"
  TPS[resend]=$(pgbench_tps resend "$WORK/resend.sql" "$SECS") || exit 1

  # Every batch was stored whole, and the summaries add up to the events.
  for impl in project plpgsql floor; do
    case $impl in
      project) schema=usage_tracking ;;
      plpgsql) schema=plpgsql_ingest ;;
      floor) schema=floor_ingest ;;
    esac
    expect=$(( ($(seq_value "${impl}_real") + $(seq_value "${impl}_adv")) * 50 ))
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
  result "(a) ratios" "project / PL/pgSQL, realistic" "${r}×" "≥ 2.0" "$(verdict "$r" 2.0)"
  r=$(ratio "${TPS[project_real]}" "${TPS[floor_real]}")
  result "(a) ratios" "project / plain INSERT floor, realistic" "${r}×" "≥ 1.0" "$(verdict "$r" 1.0)"
  r=$(ratio "${TPS[project_adv]}" "${TPS[plpgsql_adv]}")
  result "(a) ratios" "project / PL/pgSQL, adversarial" "${r}×" "≥ 1.5" "$(verdict "$r" 1.5)"
  r=$(ratio "${TPS[project_adv]}" "${TPS[floor_adv]}")
  result "(a) ratios" "project / plain INSERT floor, adversarial" "${r}×"
  r=$(ratio "${TPS[resend]}" "${TPS[project_real]}")
  result "(a) ratios" "duplicate resend / first send (${TPS[resend]} batches/s)" "${r}×" "≥ 3.0" "$(verdict "$r" 3.0)"
fi

# ---------------------------------------------------------------- (a) 1000-event batches
if [[ $SECTIONS == *" big "* ]]; then
  for impl in floor plpgsql project; do
    measure "$impl" big "$BIG_SECS" >/dev/null
  done
  for impl in project plpgsql floor; do
    result "(a) ingest, 1000-event batches, realistic" "$impl" \
      "${TPS[${impl}_big]} batches/s ($(awk -v t="${TPS[${impl}_big]}" 'BEGIN { printf "%.0f", t * 1000 }') events/s)"
  done
  r=$(ratio "${TPS[project_big]}" "${TPS[plpgsql_big]}")
  result "(a) ratios" "project / PL/pgSQL, 1000-event batches" "${r}×"
  r=$(ratio "${TPS[project_big]}" "${TPS[floor_big]}")
  result "(a) ratios" "project / plain INSERT floor, 1000-event batches" "${r}×"
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
       "$SECS s per 50-event measurement, $BIG_SECS s per 1000-event measurement, $INSTALLS installations," \
       "realistic batches: ${KEYS_REAL:-?} summary keys per batch on average (adversarial: 50)."
  echo
  echo "Settings: $SETTINGS (otherwise initdb defaults; a CHECKPOINT before each measurement)."
  echo
  echo "Command: \`make bench\` (bench/run.sh); run time ${ELAPSED} s; $(date -u '+%Y-%m-%d %H:%M UTC')."
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
