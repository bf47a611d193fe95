#!/usr/bin/env bash
# Raw PostgreSQL single-row commit rate: pgbench with CLIENTS connections, each transaction one
# INSERT of a 200-byte row (autocommit), for SECONDS. The ceiling a durable state store on
# PostgreSQL reaches when every persistence point is its own transaction. See bench/README.md.
#
# Usage: bench/baselines/pgbench_insert.sh URL [CLIENTS=8] [SECONDS=10]
#   e.g. bench/baselines/pgbench_insert.sh "$(scripts/postgres.sh start)"
#
# Creates table sagaflow_pgbench_insert_<pid>, drops it afterwards. Prints pgbench's output, then
# one JSON line: {"clients":8,"seconds":10,"transactions":...,"tps":...}.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 URL [CLIENTS=8] [SECONDS=10]" >&2
  exit 2
fi
url=$1
clients=${2:-8}
seconds=${3:-10}
[[ $clients =~ ^[1-9][0-9]*$ ]] || { echo "error: CLIENTS must be a positive integer" >&2; exit 2; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "error: SECONDS must be a positive integer" >&2; exit 2; }
threads=$((clients < 2 ? clients : 2))

bin=${SAGAFLOW_PG_BIN:-/usr/lib/postgresql/15/bin}
pgbench=$bin/pgbench
psql=$bin/psql
[ -x "$pgbench" ] || pgbench=$(command -v pgbench) || {
  echo "error: pgbench not found: install the Debian package postgresql-15" \
       "(scripts/install-deps.sh test installs it)" >&2
  exit 1
}
[ -x "$psql" ] || psql=$(command -v psql) || {
  echo "error: psql not found: install the Debian package postgresql-client-15" >&2
  exit 1
}

table=sagaflow_pgbench_insert_$$
work=$(mktemp -d)
sql() { "$psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"; }
cleanup() {
  sql -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

sql -c "CREATE TABLE $table (id bigserial PRIMARY KEY, payload text NOT NULL)"

# One transaction = one INSERT (autocommit): a 200-byte payload that differs per row.
cat >"$work/insert.sql" <<EOF
\\set r random(1, 1000000000)
INSERT INTO $table (payload) VALUES (rpad(CAST(:r AS text), 200, 'x'));
EOF

"$pgbench" -c "$clients" -j "$threads" -T "$seconds" -n -f "$work/insert.sql" "$url" \
  | tee "$work/out.txt"

tps=$(awk '/^tps = / { print $3; exit }' "$work/out.txt")
transactions=$(awk -F': *' '/^number of transactions actually processed/ { print $2; exit }' \
  "$work/out.txt")
rows=$(sql -tAc "SELECT count(*) FROM $table")
if [ -z "$tps" ] || [ -z "$transactions" ]; then
  echo "error: could not read tps / transactions from pgbench's output" >&2
  exit 1
fi
if [ "$rows" != "$transactions" ]; then
  echo "error: pgbench reports $transactions transactions but the table holds $rows rows" >&2
  exit 1
fi
printf '{"clients":%d,"seconds":%d,"transactions":%d,"tps":%s}\n' \
  "$clients" "$seconds" "$transactions" "$tps"
