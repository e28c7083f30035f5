#!/usr/bin/env bash
# fuzz/run.sh — `make fuzz`: build the libFuzzer harnesses with clang
# (AddressSanitizer + UndefinedBehaviorSanitizer, outside the backend, with
# -DFRONTEND against PostgreSQL's frontend headers and libpgcommon/libpgport)
# and run each one for FUZZ_SECONDS (default 60) from the seed corpus in
# fuzz/corpus/<target>/.  Prints the executions of each and the total, and
# exits non-zero when any harness finds a crash (the input is kept and shown).
#
#   FUZZ_SECONDS=600 make fuzz
#   FUZZ_TARGETS="batch signature" FUZZ_SECONDS=10 bash fuzz/run.sh
#   FUZZ_TARGETS=batch bash fuzz/run.sh /tmp/…/batch-crash-…   # replay inputs
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
. tools/lib.sh

ut_require_packages clang libclang-rt-14-dev "postgresql-server-dev-$PG_MAJOR" || exit 1

PG_CONFIG=${PG_CONFIG:-pg_config}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
CC=${FUZZ_CC:-clang}

# Harness name → the sources it links.  A harness whose sources are not all
# in the tree yet is skipped with a note.
declare -A SOURCES=(
  [batch]="fuzz/fuzz_batch.c src/batch.c src/rfc3339.c"
  [rfc3339]="fuzz/fuzz_rfc3339.c src/rfc3339.c"
  [signature]="fuzz/fuzz_signature.c src/signature.c"
  [jwt]="fuzz/fuzz_jwt.c gateway/jwt.c gateway/json.c"
)
declare -A EXTRA_LIBS=([jwt]="-lssl -lcrypto")
TARGETS=${FUZZ_TARGETS:-batch signature rfc3339 jwt}

WORK=$(mktemp -d /tmp/usage_tracking_fuzz.XXXXXX)
trap '[ -n "${FUZZ_KEEP:-}" ] || rm -rf "$WORK"' EXIT

# libpgcommon.a / libpgport.a: Debian puts them in the package lib dir.
LIBDIR=
for d in "$($PG_CONFIG --libdir)" "$($PG_CONFIG --pkglibdir)"; do
  if [ -f "$d/libpgcommon.a" ] && [ -f "$d/libpgport.a" ]; then LIBDIR=$d; break; fi
done
[ -n "$LIBDIR" ] || { echo "libpgcommon.a not found (install postgresql-server-dev-$PG_MAJOR)" >&2; exit 1; }

CFLAGS=(-g -O1 -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -DFRONTEND -Isrc -Ifuzz -Igateway
        -I"$($PG_CONFIG --includedir-server)" -I"$($PG_CONFIG --includedir)"
        -Wall -Wno-unused-parameter -Wno-ignored-attributes)

build() {  # build TARGET → $WORK/TARGET.fuzz
  local t=$1 src
  for src in ${SOURCES[$t]}; do
    [ -f "$src" ] || return 2
  done
  # fuzz_common.c comes first: its palloc family replaces fe_memutils.o.
  $CC "${CFLAGS[@]}" -o "$WORK/$t.fuzz" fuzz/fuzz_common.c ${SOURCES[$t]} \
    -L"$LIBDIR" -lpgcommon -lpgport ${EXTRA_LIBS[$t]:-} -lm 2>"$WORK/$t.build.log" \
    || { cat "$WORK/$t.build.log" >&2; return 1; }
}

# Replay mode: run the given files through one harness and exit.
if [ $# -gt 0 ]; then
  t=${TARGETS%% *}
  build "$t" || exit 1
  exec "$WORK/$t.fuzz" "$@"
fi

total=0
failed=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $TARGETS; do
  build "$t"
  case $? in
    0) ;;
    2) ut_log "fuzz $t: skipped (sources not in the tree yet)"; continue ;;
    *) failed=$((failed + 1)); continue ;;
  esac
  mkdir -p "$WORK/corpus-$t"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  # New inputs go to the scratch corpus; the committed seeds are read only.
  "$WORK/$t.fuzz" -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 -timeout=10 \
    -max_len="${FUZZ_MAX_LEN:-16384}" -rss_limit_mb=2048 \
    -artifact_prefix="$WORK/$t-" "${dict[@]}" \
    "$WORK/corpus-$t" "fuzz/corpus/$t" >"$WORK/$t.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log" | tail -1)
  execs=${execs:-0}
  total=$((total + execs))
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    echo "fuzz $t: FAILED after $execs executions"
    grep -E 'ERROR|SUMMARY|invariant failed|runtime error|#[0-9]+ 0x' "$WORK/$t.log" | head -40
    FUZZ_KEEP=1
    for a in "$WORK/$t-"*; do
      [ -e "$a" ] || continue
      echo "input kept as $a:"
      head -c 2000 "$a" | od -c | head -30
    done
  else
    printf 'fuzz %-10s %12d executions in %ss, corpus %d inputs, no crash\n' \
      "$t" "$execs" "$FUZZ_SECONDS" "$(ls "$WORK/corpus-$t" "fuzz/corpus/$t" 2>/dev/null | wc -l)"
  fi
done
echo "fuzz total: $total executions"
[ $failed -eq 0 ]
