#!/usr/bin/env bash
# tools/build_install_sql.sh VERSION — print the install script of VERSION:
# the released 1.0 script followed by each upgrade script on the path from
# 1.0 to VERSION.  Fails when a step of the path is missing.
set -euo pipefail
cd "$(dirname "$0")/../sql"
target=$1
from=1.0
cat "usage_tracking--$from.sql"
while [ "$from" != "$target" ]; do
  step=$(ls usage_tracking--"$from"--*.sql 2>/dev/null | sort -V | tail -n 1)
  [ -n "$step" ] || { echo "no upgrade script from $from towards $target" >&2; exit 1; }
  cat "$step"
  from=${step#usage_tracking--"$from"--}
  from=${from%.sql}
done
