#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds with warnings as errors, runs the unit
# tests and the statelang conformance suite against the built binary, then builds and runs the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer. Both test runs use a
# private PostgreSQL server (scripts/postgres.sh), stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
conformance=../shared/conformance/run.py

scripts/install-deps.sh test

echo "== release build"
# Tests and benchmarks on explicitly: the quick start configures the same build without them.
cmake --preset release -DSAGAFLOW_BUILD_TESTS=ON -DSAGAFLOW_BUILD_BENCH=ON >/dev/null
cmake --build --preset release

echo "== PostgreSQL test server"
# A private cluster (scripts/postgres.sh) for the PostgreSQL store tests of both ctest runs;
# SAGAFLOW_REQUIRE_POSTGRES makes those tests fail, not skip, when it cannot be reached.
trap 'scripts/postgres.sh stop || true' EXIT
SAGAFLOW_TEST_POSTGRES_URL=$(scripts/postgres.sh start)
export SAGAFLOW_TEST_POSTGRES_URL SAGAFLOW_REQUIRE_POSTGRES=1
echo "$SAGAFLOW_TEST_POSTGRES_URL"

echo "== unit tests"
ctest --preset release
echo "== conformance suite"
[ -f "$conformance" ] || { echo "error: $conformance not found" >&2; exit 1; }
python3 "$conformance" build/release/server/sagaflow
echo "== conformance suite: Wait (sagaflow extension)"
python3 "$conformance" build/release/server/sagaflow --cases ../shared/conformance/wait/cases

echo "== ASan + UBSan build"
cmake --preset asan -DSAGAFLOW_BUILD_TESTS=ON >/dev/null
cmake --build --preset asan
echo "== unit tests under ASan + UBSan"
# The slow crash tests (label integration) ran once, in the release run; the preset leaves them out.
ctest --preset asan
echo "all tests passed"
