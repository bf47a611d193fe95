#!/usr/bin/env bash
# Durable throughput of two sagaflow binaries side by side, in interleaved rounds with the raw
# baselines (README, "Durable throughput and recovery"): each round runs the SQLite FULL
# single-row commit rate, both binaries' `bench` on SQLite, pgbench, and both binaries' `bench`
# on an empty PostgreSQL database. Prints one JSON line per measurement; the medians and ratios
# are computed by the caller (or read off the lines).
# usage: bench/durable_ab.sh OLD_BINARY NEW_BINARY [ROUNDS=3] [INSTANCES=30000] [FLOW] [SCENARIO]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3} n=${4:-30000}
flow=${5:-flows/order_fulfill.json}
scenario=${6:-bench/scenarios/fulfill_all_succeed.json}
rate=build/release/bench/sagaflow_sqlite_commit_rate
pg=$(scripts/postgres.sh start)
base=${pg%/*}
export PGOPTIONS="-c client_min_messages=warning"  # no NOTICE for the DROP of a missing database
for round in $(seq "$rounds"); do
  echo "{\"round\": $round, \"sqlite_full_commits_per_s\": $("$rate" --dir build --seconds 3 | sed -n 's/.*"mode":"FULL".*"commits_per_s":\([0-9.]*\).*/\1/p')}"
  for which in old new; do
    bin=${!which}
    rm -f build/ab.db build/ab.db-*
    "$bin" bench --flow "$flow" --scenario "$scenario" --instances "$n" --store sqlite:build/ab.db --json \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'round': $round, 'binary': '$which', 'store': 'sqlite', 'instances_per_s': round(d['instances_per_s'])}))"
  done
  echo "{\"round\": $round, \"pgbench_tps\": $(bench/baselines/pgbench_insert.sh "$pg" 8 5 2>/dev/null | tail -1 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tps"]))')}"
  for which in old new; do
    bin=${!which}
    db=ab_${which}_$round
    psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    "$bin" bench --flow "$flow" --scenario "$scenario" --instances "$n" --store "$base/$db" --json \
      | python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'round': $round, 'binary': '$which', 'store': 'postgresql', 'instances_per_s': round(d['instances_per_s'])}))"
    psql -q "$base/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  done
done
