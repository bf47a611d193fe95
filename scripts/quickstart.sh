#!/usr/bin/env bash
# Quick start: installs what is missing, builds sagaflow, and runs the order fulfilment flow
# end to end on the embedded default (a SQLite store in build/, the in-process bus, mocked
# services).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh build
cmake --preset release -DSAGAFLOW_BUILD_TESTS=OFF -DSAGAFLOW_BUILD_BENCH=OFF >/dev/null
cmake --build --preset release --target sagaflow

bin=build/release/server/sagaflow
db=sqlite:build/quickstart.db   # the embedded default store: a SQLite file (WAL, synchronous=FULL)
echo
echo "== sagaflow validate flows/order_fulfill.json"
"$bin" validate flows/order_fulfill.json
echo
echo "== all services succeed (mocked services; every step stored in build/quickstart.db)"
"$bin" run --db "$db" --flow flows/order_fulfill.json --mocks flows/scenarios/fulfill_happy.json
echo
echo "== the carrier fails: the picked goods and the fulfil order are compensated, newest first"
"$bin" run --db "$db" --flow flows/order_fulfill.json \
  --mocks flows/scenarios/fulfill_sendout_fails.json
echo
echo "== the instances as stored"
"$bin" instances list --db "$db" --limit 5
