# tools/lib.sh — shared shell helpers: Debian packages and a private,
# throwaway PostgreSQL cluster.  Sourced by tools/test.sh, tools/demo.sh and
# bench/run.sh.

PG_MAJOR=${PG_MAJOR:-15}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PATH="$PG_BIN:$PATH"

# Packages every command needs; callers may add their own.
UT_PACKAGES=(
  build-essential
  "postgresql-server-dev-$PG_MAJOR"
  "postgresql-$PG_MAJOR-cron"
  "postgresql-$PG_MAJOR-pgtap"
  "postgresql-$PG_MAJOR-pgaudit"
  libtap-parser-sourcehandler-pgtap-perl
  postgresql-contrib
  libpq-dev
  libssl-dev
  libmicrohttpd-dev
  libcurl4-openssl-dev
  curl
  openssl
  php-cli
  chromium
  python3-aiosmtpd
)

ut_log() { printf '==> %s\n' "$*" >&2; }

# ut_require_packages PKG... — install what is missing (as root), or print
# the one apt-get line to run and fail.
ut_require_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing packages. Run as root:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  ut_log "installing ${missing[*]}"
  if [ -z "${UT_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    UT_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# ut_free_port — a TCP port on loopback nobody listens on.
ut_free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# ut_as_pg CMD... — run CMD as the postgres OS user (initdb and postgres
# refuse root).
ut_as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# ut_cluster_start DIR [CRON_DB] — initdb and start a cluster under DIR on a
# free port, pg_cron preloaded and the extension's library loaded at the
# start of every session (so its usage_tracking.* settings are known before
# any of its functions runs; docs/operations.md, "Configuration").  Needs the
# extension installed.  Exports PGHOST, PGPORT, PGUSER, UT_CLUSTER.
ut_cluster_start() {
  local dir=$1 cron_db=${2:-postgres}
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  chmod 755 "$dir"
  local port
  port=$(ut_free_port)
  ut_as_pg initdb -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  cat >>"$dir/data/postgresql.conf" <<EOF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_cron'
session_preload_libraries = 'usage_tracking'
cron.database_name = '$cron_db'
max_connections = 100
shared_buffers = 256MB
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
EOF
  ut_as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  export PGHOST=$dir PGPORT=$port PGUSER=postgres UT_CLUSTER=$dir
}

ut_cluster_stop() {
  local dir=${1:-$UT_CLUSTER}
  [ -n "$dir" ] && [ -f "$dir/data/postmaster.pid" ] || return 0
  ut_as_pg pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# ut_build_install — build everything and install the extension.
ut_build_install() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  make -C "$root" -s >/dev/null
  if [ "$(id -u)" -eq 0 ]; then
    make -C "$root" -s install >/dev/null
  else
    echo "Run 'make install' as root (or with sudo), then try again." >&2
    return 1
  fi
}

# ut_throwaway_cluster PREFIX CRON_DB — install the packages needed, build
# and install, then start a cluster in a new /tmp/PREFIX.XXXXXX directory
# (WORK) that is stopped and removed on exit (kept with KEEP_CLUSTER=1).  A
# caller with more to clean up defines ut_extra_cleanup, run first.
ut_throwaway_cluster() {
  ut_require_packages "${UT_PACKAGES[@]}" || exit 1
  ut_log "building and installing"
  ut_build_install || exit 1
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 755 "$WORK"
  trap ut_throwaway_cleanup EXIT
  trap 'exit 130' INT TERM
  ut_log "starting a throwaway cluster in $WORK"
  ut_cluster_start "$WORK" "$2" || exit 1
}

ut_throwaway_cleanup() {
  if declare -F ut_extra_cleanup >/dev/null; then ut_extra_cleanup; fi
  ut_cluster_stop "$WORK"
  [ -n "${KEEP_CLUSTER:-}" ] || rm -rf "$WORK"
}
