#!/usr/bin/env bash
# test/e2e/docs_reference.sh — the reference cannot drift from the code.
# Installs the extension in a database of its own and lists what a user
# sees: every function of the schemas usage_tracking and usage_api (except
# trigger functions and those whose comment starts with "Internal:"), every
# view, every table, every usage_tracking.* setting, every role granted the
# extension's schemas, and every SQLSTATE the sources raise (found in
# src/, gateway/ and sql/, PostgreSQL's ERRCODE_ names mapped through its
# errcodes.h).  Each must appear in docs/reference.md:
#   function  usage_tracking.name(  with its argument names, in order, on
#             the same line (the type for an unnamed argument)
#   view, table  usage_tracking.name
#   setting   usage_tracking.name
#   role      its name
#   SQLSTATE  `XXXXX`
# The README must be at most 12 KiB.  Prints each missing item; exits 1.
# DOCS_REFERENCE=<file> checks another copy of the reference.
set -uo pipefail
ROOT=${UT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
REF=${DOCS_REFERENCE:-$ROOT/docs/reference.md}
README=$ROOT/README.md
README_MAX=12288
DB=docs_reference

fail=0
[ -f "$REF" ] || { echo "not ok - $REF does not exist"; exit 1; }

size=$(wc -c <"$README")
if [ "$size" -le "$README_MAX" ]; then
  echo "ok - README.md is $size bytes (at most $README_MAX)"
else
  echo "not ok - README.md is $size bytes, more than $README_MAX"
  fail=1
fi

PGOPTIONS='-c client_min_messages=warning' psql -qX -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null || exit 1
psql -qX -d postgres -c "CREATE DATABASE $DB" >/dev/null || exit 1
trap 'psql -qX -d postgres -c "DROP DATABASE IF EXISTS '"$DB"'" >/dev/null 2>&1' EXIT
psql -qX -v ON_ERROR_STOP=1 -d "$DB" \
  -c "CREATE EXTENSION pgcrypto" -c "CREATE EXTENSION usage_tracking" >/dev/null || exit 1

# One JSON document with everything the catalog says a user sees.  GUCs are
# defined when the library loads, so load it first.
CATALOG=$(psql -qAtX -v ON_ERROR_STOP=1 -d "$DB" <<'SQL'
LOAD 'usage_tracking';
SELECT json_build_object(
  'functions', (
    SELECT coalesce(json_agg(json_build_object(
             'schema', n.nspname, 'name', p.proname,
             'args', (SELECT coalesce(json_agg(coalesce(nullif(p.proargnames[a.i], ''),
                                                        format_type(p.proargtypes[a.i - 1], NULL))
                                               ORDER BY a.i), '[]')
                        FROM generate_series(1, p.pronargs) AS a(i)),
             'identity', pg_get_function_identity_arguments(p.oid))
             ORDER BY n.nspname, p.proname, p.oid), '[]')
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname IN ('usage_tracking', 'usage_api')
       AND p.prorettype <> 'trigger'::regtype
       AND coalesce(obj_description(p.oid, 'pg_proc'), '') NOT LIKE 'Internal:%'),
  'relations', (
    SELECT coalesce(json_agg(json_build_object(
             'kind', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END,
             'name', n.nspname || '.' || c.relname) ORDER BY c.relname), '[]')
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname IN ('usage_tracking', 'usage_api')
       AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
       AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE 'Internal:%'),
  'gucs', (
    SELECT coalesce(json_agg(name ORDER BY name), '[]')
      FROM pg_settings WHERE name LIKE 'usage\_tracking.%'),
  'roles', (
    SELECT coalesce(json_agg(DISTINCT r.rolname), '[]')
      FROM pg_namespace n, aclexplode(n.nspacl) x JOIN pg_roles r ON r.oid = x.grantee
     WHERE n.nspname IN ('usage_tracking', 'usage_api') AND x.grantee <> n.nspowner),
  'error_codes', (SELECT coalesce(json_agg(sqlstate ORDER BY sqlstate), '[]')
                    FROM usage_tracking.error_codes));
SQL
) || { echo "not ok - could not read the catalog"; exit 1; }

CATALOG=$CATALOG ROOT=$ROOT REF=$REF ERRCODES_H="$(pg_config --includedir-server)/utils/errcodes.h" \
python3 - <<'PY' || fail=1
import glob, json, os, re, sys

root, ref_path = os.environ["ROOT"], os.environ["REF"]
cat = json.loads(os.environ["CATALOG"])
ref = open(ref_path, encoding="utf-8").read()
lines = ref.splitlines()
missing, checked = [], 0

def need(ok, what):
    global checked
    checked += 1
    if not ok:
        missing.append(what)

# Functions: schema.name( followed, on the same line, by the argument names.
for f in cat["functions"]:
    head = re.compile(re.escape(f["schema"] + "." + f["name"] + "("))
    found = False
    for line in lines:
        m = head.search(line)
        if not m:
            continue
        rest, ok = line[m.end():], True
        for a in f["args"]:
            am = re.search(r"(?<![\w.])" + re.escape(a) + r"(?!\w)", rest)
            if not am:
                ok = False
                break
            rest = rest[am.end():]
        if ok:
            found = True
            break
    need(found, "function %s.%s(%s)" % (f["schema"], f["name"], f["identity"]))

for r in cat["relations"]:
    need(re.search(r"(?<![\w.])" + re.escape(r["name"]) + r"(?![\w(])", ref),
         "%s %s" % (r["kind"], r["name"]))
for g in cat["gucs"]:
    need(re.search(r"(?<![\w.])" + re.escape(g) + r"(?!\w)", ref), "setting " + g)
for r in cat["roles"]:
    need(re.search(r"(?<!\w)" + re.escape(r) + r"(?!\w)", ref), "role " + r)

# SQLSTATEs raised by the sources.  C: errcode(NAME) with NAME a
# MAKE_SQLSTATE macro of the project's headers or of PostgreSQL's
# errcodes.h, or errcode(MAKE_SQLSTATE('X', …)).  SQL: ERRCODE = '…' and
# RAISE SQLSTATE '…' (a condition name is mapped like an ERRCODE_ name);
# RAISE EXCEPTION without either raises P0001.
macro = {}
mk = re.compile(r"#define\s+(\w+)\s+MAKE_SQLSTATE\(\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*\)")
for h in [os.environ["ERRCODES_H"]] + glob.glob(os.path.join(root, "src", "*.h")) + glob.glob(os.path.join(root, "gateway", "*.h")):
    for m in mk.finditer(open(h, encoding="utf-8", errors="replace").read()):
        macro[m.group(1)] = "".join(m.group(2, 3, 4, 5, 6))
if len(macro) < 200:
    print("not ok - could not read PostgreSQL's errcodes.h (%s)" % os.environ["ERRCODES_H"])
    sys.exit(1)

raised = {}  # sqlstate -> where
def raise_(code, where):
    raised.setdefault(code, where)

def by_name(name, where):
    key = name.upper()
    for cand in (key, "ERRCODE_" + key):
        if cand in macro:
            raise_(macro[cand], where)
            return
    print("not ok - %s: cannot map %s to a SQLSTATE" % (where, name))
    sys.exit(1)

for path in sorted(glob.glob(os.path.join(root, "src", "*.c")) + glob.glob(os.path.join(root, "gateway", "*.c"))):
    text = open(path, encoding="utf-8", errors="replace").read()
    rel = os.path.relpath(path, root)
    for m in re.finditer(r"errcode\(\s*MAKE_SQLSTATE\(\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*,\s*'(.)'\s*\)\s*\)", text):
        raise_("".join(m.groups()), rel)
    for m in re.finditer(r"errcode\(\s*([A-Z][A-Z0-9_]*)\s*\)", text):
        by_name(m.group(1), rel)

for path in sorted(glob.glob(os.path.join(root, "sql", "usage_tracking--*.sql"))):
    text = open(path, encoding="utf-8").read()
    rel = os.path.relpath(path, root)
    text = re.sub(r"COMMENT ON .*?'(?:[^']|'')*'\s*;", "", text, flags=re.S)
    text = re.sub(r"--[^\n]*", "", text)          # comments
    for m in re.finditer(r"\bRAISE\b(.*?);", text, re.S):
        stmt = m.group(1)
        level = re.match(r"\s*(\w+)", stmt)
        if level and level.group(1).upper() in ("DEBUG", "LOG", "INFO", "NOTICE", "WARNING"):
            continue
        if not stmt.strip():
            continue                              # RAISE; re-raises
        code = re.search(r"(?:ERRCODE\s*=\s*|^\s*(?:EXCEPTION\s+)?SQLSTATE\s+)'([^']*)'", stmt, re.I)
        if code:
            c = code.group(1)
            if re.fullmatch(r"[0-9A-Z]{5}", c):
                raise_(c, rel)
            else:
                by_name(c, rel)
        elif re.search(r"ERRCODE\s*=", stmt, re.I):
            continue                              # a variable: raise_http_error re-raises
        elif re.match(r"\s*(?:EXCEPTION\s+)?([a-z_]+)\s*(?:USING|$)", stmt, re.I) and \
                not re.match(r"\s*EXCEPTION\s*(USING|$)", stmt, re.I):
            name = re.match(r"\s*(?:EXCEPTION\s+)?([a-z_]+)", stmt, re.I).group(1)
            by_name(name, rel)                    # RAISE condition_name
        else:
            raise_("P0001", rel)                  # RAISE EXCEPTION 'text'

for c in cat["error_codes"]:
    raise_(c, "usage_tracking.error_codes")
for code, where in sorted(raised.items()):
    need(("`%s`" % code) in ref, "SQLSTATE %s (raised in %s)" % (code, where))

for m in missing:
    print("missing from %s: %s" % (os.path.relpath(ref_path, root) if ref_path.startswith(root) else ref_path, m))
print("%s - docs/reference.md lists %d of %d functions, relations, settings, roles and SQLSTATEs"
      % ("ok" if not missing else "not ok", checked - len(missing), checked))
sys.exit(1 if missing else 0)
PY

if [ "$fail" -ne 0 ]; then
  echo "docs_reference: FAIL"
  exit 1
fi
echo "docs_reference: PASS"
