#!/usr/bin/env bash
# tools/build_dashboard.sh — install the dashboard's npm packages (exactly as
# package-lock.json pins them) and bundle it into dashboard/dist, which the
# gateway serves under /dashboard.  Called by `make test` and `make demo`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tools/lib.sh"

if ! command -v npm >/dev/null 2>&1; then
  ut_require_packages nodejs npm
fi
cd "$ROOT/dashboard"
# npm ci only when the lock file changed since the last install.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  ut_log "dashboard: npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
ut_log "dashboard: build"
npm run --silent build >/dev/null
test -s dist/app.js -a -s dist/index.html
