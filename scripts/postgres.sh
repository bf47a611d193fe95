#!/usr/bin/env bash
# A private, throwaway PostgreSQL 15 server for the tests and benchmarks.
# Usage: scripts/postgres.sh start|stop|restart|status|url
#
#   start    initialises the cluster if needed, starts it, waits until it accepts connections,
#            creates database sagaflow_test if missing and prints its URL (the only stdout line).
#            Already running: prints the URL.
#   stop     stops it (fast mode) if it runs.
#   restart  stops it in immediate mode (a crash: the next start runs WAL recovery), then start.
#   status   exits 0 when it runs, 3 when it does not.
#   url      prints the URL, running or not.
#
# Environment: SAGAFLOW_PG_DIR (default /tmp/sagaflow-pg) holds data/ (the cluster, and its unix
# socket), server.log and initdb.log; SAGAFLOW_PG_PORT (default 55432) is the TCP port, on
# 127.0.0.1 only; SAGAFLOW_PG_BIN (default /usr/lib/postgresql/15/bin) the server binaries.
# Authentication is trust for local and 127.0.0.1 connections: never expose this server.
# fsync stays on, because durability figures are measured against it.
# initdb and pg_ctl refuse to run as root: as root they run as the `postgres` system user and
# the directory belongs to it; otherwise they run as the current user.
set -euo pipefail

pg_dir=${SAGAFLOW_PG_DIR:-/tmp/sagaflow-pg}
pg_dir=${pg_dir%/}
[[ $pg_dir = /* ]] || pg_dir=$PWD/$pg_dir
port=${SAGAFLOW_PG_PORT:-55432}
bin=${SAGAFLOW_PG_BIN:-/usr/lib/postgresql/15/bin}
data=$pg_dir/data
log=$pg_dir/server.log
db=sagaflow_test
url="postgresql://postgres@127.0.0.1:${port}/${db}"

die() { echo "postgres.sh: error: $*" >&2; exit 1; }
note() { echo "postgres.sh: $*" >&2; }

usage() {
  echo "usage: $0 start|stop|restart|status|url" >&2
  exit 2
}

[[ $port =~ ^[0-9]+$ ]] || die "SAGAFLOW_PG_PORT must be a port number, got '$port'"
# A unix socket path has at most 107 bytes.
((${#data} + 16 <= 107)) || die "SAGAFLOW_PG_DIR is too long for a unix socket path: $pg_dir"

# The binaries, and as root the `postgres` user the cluster belongs to.
check_binaries() {
  local b
  for b in initdb pg_ctl pg_isready psql createdb; do
    [ -x "$bin/$b" ] || die "$bin/$b not found: install the Debian packages postgresql-15 and \
postgresql-client-15 (scripts/install-deps.sh test installs them)"
  done
  if [ "$(id -u)" -eq 0 ]; then
    command -v runuser >/dev/null || die "runuser not found (Debian package util-linux)"
    id -u postgres >/dev/null 2>&1 || die "no 'postgres' system user (made by the Debian \
package postgresql-common; scripts/install-deps.sh test installs it)"
  fi
}

# Runs a command as the cluster's owner: initdb and pg_ctl refuse to run as root. The lock's
# descriptor stays behind: a postmaster inheriting it would hold the lock for its whole life.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@" 9>&-
  else
    "$@" 9>&-
  fi
}

is_running() {
  [ -f "$data/PG_VERSION" ] || return 1
  as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

# Serialises start/stop/restart of this cluster between concurrent callers.
take_lock() {
  mkdir -p "$pg_dir"
  exec 9>>"$pg_dir/lock" || die "cannot open $pg_dir/lock"
  flock -w 120 9 || die "timed out waiting for the lock $pg_dir/lock"
}

init_cluster() {
  mkdir -p "$pg_dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres: "$pg_dir"
    runuser -u postgres -- test -w "$pg_dir" -a -x "$pg_dir" ||
      die "the postgres user cannot write to $pg_dir (a parent directory is not accessible \
to it?): choose another SAGAFLOW_PG_DIR"
  else
    [ -w "$pg_dir" ] || die "$pg_dir is not writable by $(id -un) (made by root? delete it)"
  fi
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  # A left-over of an interrupted initdb.
  [ -e "$data" ] && rm -rf "$data"
  note "initialising a cluster in $data"
  if ! as_owner "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
       >"$pg_dir/initdb.log" 2>&1; then
    tail -n 30 "$pg_dir/initdb.log" >&2
    die "initdb failed (log: $pg_dir/initdb.log)"
  fi

  # Only the test client connects: trust, local socket and 127.0.0.1.
  cat >"$data/pg_hba.conf" <<'EOF'
# sagaflow test server: trust, local connections only (scripts/postgres.sh).
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
EOF
  cat >>"$data/postgresql.conf" <<'EOF'

# --- sagaflow test server (scripts/postgres.sh) ---
# sagaflow.conf is rewritten at every start with the current port and paths.
include_if_exists = 'sagaflow.conf'
EOF
  [ "$(id -u)" -eq 0 ] && chown postgres: "$data/pg_hba.conf" "$data/postgresql.conf" \
    "$pg_dir/initdb.log"
  return 0
}

write_settings() {
  cat >"$data/sagaflow.conf" <<EOF
# Written by scripts/postgres.sh at start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'

# A test server on a small (2-core) machine, shared with compilers.
max_connections = 100
shared_buffers = 128MB
work_mem = 4MB
maintenance_work_mem = 64MB
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 1
huge_pages = off
jit = off

# Durability stays as in production: the figures measured against this server include it.
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_size = 1GB
checkpoint_timeout = 5min

# Logging to server.log (pg_ctl -l), no collector.
logging_collector = off
log_line_prefix = '%m [%p] '
log_min_messages = warning
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  [ "$(id -u)" -eq 0 ] && chown postgres: "$data/sagaflow.conf"
  return 0
}

psql_q() {
  PGCONNECT_TIMEOUT=5 "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# The server answering on the port must be this cluster, not another one that had the port
# first (our postmaster then exits, and pg_isready would report the other one ready).
check_identity() {
  local served
  served=$(psql_q -d postgres -tAc 'SHOW data_directory' 2>/dev/null) || served="?"
  if [ "$served" != "$data" ]; then
    tail -n 10 "$log" >&2 || true
    die "127.0.0.1:$port is served by another PostgreSQL (data directory $served), not by \
$data: stop it or choose another SAGAFLOW_PG_PORT"
  fi
}

# Waits up to 30 s until the server accepts connections.
wait_ready() {
  local i
  for ((i = 0; i < 60; i++)); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d postgres -U postgres -t 1; then
      check_identity
      return 0
    fi
    # The postmaster is gone (bad setting, port taken...): no point in waiting.
    if ((i >= 4)) && ! is_running; then
      break
    fi
    sleep 0.5
  done
  note "the server does not accept connections on 127.0.0.1:$port; end of $log:"
  tail -n 30 "$log" >&2 || true
  die "PostgreSQL did not start"
}

ensure_db() {
  local exists
  exists=$(psql_q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ||
    die "cannot query the server on 127.0.0.1:$port"
  if [ "$exists" != 1 ]; then
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" ||
      die "cannot create database $db"
  fi
}

do_start() {
  check_binaries
  take_lock
  if is_running; then
    wait_ready
    ensure_db
    echo "$url"
    return 0
  fi
  init_cluster
  write_settings
  if [ "$(id -u)" -eq 0 ]; then
    touch "$log" && chown postgres: "$log"
  fi
  note "starting PostgreSQL on 127.0.0.1:$port (data $data, log $log)"
  # -W: wait_ready below does the waiting, with the log tail on failure.
  if ! as_owner "$bin/pg_ctl" -D "$data" -l "$log" -W start >/dev/null 2>&1; then
    tail -n 30 "$log" >&2 || true
    die "pg_ctl start failed"
  fi
  wait_ready
  ensure_db
  echo "$url"
}

do_stop() {
  local mode=$1
  check_binaries
  [ -f "$data/PG_VERSION" ] || return 0
  take_lock
  if is_running; then
    note "stopping PostgreSQL ($mode mode)"
    as_owner "$bin/pg_ctl" -D "$data" -m "$mode" -w -t 60 stop >/dev/null ||
      die "pg_ctl stop -m $mode failed (log: $log)"
  fi
}

[ $# -eq 1 ] || usage
case $1 in
  start) do_start ;;
  stop) do_stop fast ;;
  restart)
    do_stop immediate
    exec 9>&-
    do_start
    ;;
  status)
    check_binaries
    if is_running; then
      echo "running: $url (data $data)"
    else
      echo "not running"
      exit 3
    fi
    ;;
  url) echo "$url" ;;
  *) usage ;;
esac
