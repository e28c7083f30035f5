#!/usr/bin/env bash
# `make soak` ends with its verdict as exit status and leaves nothing
# running: a short soak (tools/soak.sh with SOAK_SECONDS) that passes exits
# 0 and prints PASS; the same run held to an impossible memory bound exits
# 1 and prints FAIL.  After each, no process of the run (cluster, gateway,
# workers) is left and its scratch directory is gone.
set -uo pipefail
ROOT=${UT_ROOT:?}
. "$ROOT/test/e2e/lib/checks.sh"

# soak RUN-NAME [VAR=VALUE...] — run a short soak; sets RC, OUT, DIR.
soak() {
  local name=$1
  shift
  OUT=$UT_WORK/soak_$name.out
  env SOAK_SECONDS=20 SOAK_SAMPLE_S=5 SOAK_INGESTERS=2 SOAK_READERS=1 "$@" \
    bash "$ROOT/tools/soak.sh" </dev/null >"$OUT" 2>&1
  RC=$?
  DIR=$(sed -n 's/.*starting a private cluster in \(\/[^ ]*\).*/\1/p' "$OUT" | head -1)
}

# left_behind DIR — processes whose command line or working directory is
# in DIR (postgres runs with -D DIR/...; the gateway and workers from it).
left_behind() {
  local d=$1 p n=0
  for p in /proc/[0-9]*; do
    if grep -qaF -- "$d" "$p/cmdline" 2>/dev/null \
       || [[ "$(readlink "$p/cwd" 2>/dev/null)" == "$d"* ]]; then
      n=$((n + 1))
    fi
  done
  echo "$n"
}

verdict() {  # verdict NAME EXPECTED-RC EXPECTED-WORD
  local name=$1 want=$2 word=$3
  if [ -z "$DIR" ]; then
    not_ok "$name: the soak started its cluster"
    tail -20 "$OUT"
    return
  fi
  check "$name: exit status" "$want" "$RC"
  check "$name: verdict line" 1 "$(grep -c "^soak: $word\$" "$OUT")"
  check "$name: processes left running" 0 "$(left_behind "$DIR")"
  check "$name: scratch directory removed" gone "$([ -e "$DIR" ] && echo present || echo gone)"
  [ "$RC" = "$want" ] || tail -30 "$OUT"
}

soak pass
verdict "passing run" 0 PASS
grep -E '^(requests|errors|exactness)' "$OUT"

soak fail SOAK_MAX_GROWTH_KB=-1000000000
verdict "failing run" 1 FAIL

echo "soak_verdict: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
