#!/usr/bin/env bash
# test/e2e/write_hooks_pgaudit.sh — a module that hooks the executor sees
# ingest's writes as it sees a plain INSERT's.  pgaudit's object audit
# logging (Debian's postgresql-15-pgaudit, preloaded in a cluster of this
# test's own) logs every INSERT into usage_tracking.events that the audit
# role may perform: the gate must send ingest through the executor, and the
# log must show the same audit line for ingest as for the plain statement.
set -uo pipefail
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$ROOT/tools/lib.sh"
WORK=$(mktemp -d "${UT_WORK:-/tmp}/pgaudit.XXXXXX")
chmod 755 "$WORK"
. "$(dirname "$0")/lib/checks.sh"
cleanup() { ut_cluster_stop "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT

if [ ! -f "$(pg_config --pkglibdir)/pgaudit.so" ]; then
  ut_require_packages "postgresql-$PG_MAJOR-pgaudit" || { echo "write_hooks_pgaudit: 0 passed, 0 failed, 1 skipped (pgaudit not installed)"; exit 1; }
fi
ut_cluster_start "$WORK" postgres || exit 1
cat >>"$WORK/data/postgresql.conf" <<'EOF'
shared_preload_libraries = 'pg_cron,pgaudit'
pgaudit.role = 'ut_auditor'
pgaudit.log_parameter = off
EOF
ut_as_pg pg_ctl -D "$WORK/data" -l "$WORK/server.log" -w -t 60 restart >/dev/null || { cat "$WORK/server.log"; exit 1; }
q() { psql -XAtq -v ON_ERROR_STOP=1 -d postgres "$@"; }

q -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION pgaudit" -c "CREATE EXTENSION usage_tracking" >/dev/null || exit 1
q -f "$ROOT/test/e2e/lib/batches.sql" >/dev/null || exit 1
q -c "CREATE ROLE ut_auditor" -c "GRANT INSERT ON usage_tracking.events TO ut_auditor" >/dev/null || exit 1
q -c "SELECT usage_tracking.create_account('audited')" \
  -c "SELECT usage_tracking.register_installation('5d41402a-bc4b-4a76-b971-9d911017c592_abcdefabcdef', 'audited', 'audit-secret-0123456789abcdef', '2026-11-01')" \
  >/dev/null || exit 1

check "the gate sends ingest through the executor while pgaudit is loaded" \
  "an executor hook is set" "$(q -c "SELECT usage_tracking.write_path('usage_tracking.events')")"

audit_lines() { grep -c 'AUDIT: OBJECT,.*,WRITE,INSERT,TABLE,usage_tracking.events,' "$WORK/server.log"; }
q -c "SELECT usage_tracking.ensure_partitions('2026-11-02', '2026-11-02')" >/dev/null || exit 1
before=$(audit_lines)
q -c "INSERT INTO usage_tracking.events (install_id, event_id, wp_user_id_hash, source, model, prompt_tokens,
        completion_tokens, cached_prompt_tokens, created_at, received_at)
      VALUES ('5d41402a-bc4b-4a76-b971-9d911017c592_abcdefabcdef', 'evt_plain_1', repeat('a', 64), 'bulk',
              'gpt-4o-mini', 1, 1, 0, '2026-11-02 08:00Z', '2026-11-02 09:00Z')
      ON CONFLICT DO NOTHING" >/dev/null
after_plain=$(audit_lines)
check "a plain INSERT is audited once" 1 $((after_plain - before))

out=$(q -c "SELECT ut_t.post(ut_t.batch('5d41402a-bc4b-4a76-b971-9d911017c592_abcdefabcdef', 'audit', '2026-11-02 08:00Z', 20),
                              'audit-secret-0123456789abcdef', '2026-11-02 09:00Z')->>'received'")
check "ingest stores the batch" 20 "$out"
after_ingest=$(audit_lines)
check "ingest's INSERT is audited as the plain one is" 1 $((after_ingest - after_plain))
check "the summaries still count every event" 21 \
  "$(q -c "SELECT sum(total_requests) FROM usage_tracking.daily WHERE install_id = '5d41402a-bc4b-4a76-b971-9d911017c592_abcdefabcdef'")"

echo "write_hooks_pgaudit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
