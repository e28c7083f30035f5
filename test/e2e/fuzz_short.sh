#!/usr/bin/env bash
# test/e2e/fuzz_short.sh — a short run of every libFuzzer harness (10 s
# each unless FUZZ_SHORT_SECONDS says otherwise) as part of `make test`;
# fails when any harness finds a crash.  `make fuzz` runs the long version.
set -uo pipefail
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
FUZZ_SECONDS=${FUZZ_SHORT_SECONDS:-10} bash "$ROOT/fuzz/run.sh"
