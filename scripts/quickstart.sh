#!/usr/bin/env bash
# Quick start: installs what is missing, builds sagaflow, and runs the order fulfilment flow
# end to end on the embedded default (in-memory store and bus, mocked services).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh build
cmake --preset release -DSAGAFLOW_BUILD_TESTS=OFF -DSAGAFLOW_BUILD_BENCH=OFF >/dev/null
cmake --build --preset release --target sagaflow

bin=build/release/server/sagaflow
echo
echo "== sagaflow validate flows/order_fulfill.json"
"$bin" validate flows/order_fulfill.json
echo
echo "== all services succeed"
"$bin" simulate --flow flows/order_fulfill.json --scenario flows/scenarios/fulfill_happy.json
echo
echo "== the carrier fails: the picked goods and the fulfil order are compensated, newest first"
"$bin" simulate --flow flows/order_fulfill.json --scenario flows/scenarios/fulfill_sendout_fails.json
