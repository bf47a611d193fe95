#!/usr/bin/env bash
# Recovery time: N instances are left running by a SIGKILL; how long until `sagaflow recover`
# has finished or compensated every one of them, counted from the kill.
#
# Usage: bench/recovery_bench.sh [STORE_URL] [N=50000] [LEASE_MS=2000]
#   STORE_URL defaults to a fresh SQLite file under build/ (synchronous=FULL).
# Needs the release build with tests (build/release/tests/sagaflow_crash_driver).
#
# The engine (tests/crash/crash_driver.cc) starts N fulfilment instances at once (one order in
# five fails into compensation); once every start is acknowledged it is killed with SIGKILL, so
# all N are in flight: some between steps, some in a task (in doubt), some compensating. Then
# `sagaflow recover` waits for the dead engine's leases to expire (LEASE_MS), claims everything
# and resumes it; `crash_driver verify` checks the outcome. Prints one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/release/server/sagaflow
driver=build/release/tests/sagaflow_crash_driver
n=${2:-50000}
lease_ms=${3:-2000}
work=$(mktemp -d /work/main/build/recovery_bench.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
url=${1:-sqlite:$work/recovery.db}
[ -x "$bin" ] && [ -x "$driver" ] || {
  echo "error: build first: cmake --preset release -DSAGAFLOW_BUILD_TESTS=ON && cmake --build --preset release" >&2
  exit 2
}

"$driver" load --db "$url" --flow flows/order_fulfill.json --first 0 --count "$n" \
  --window "$n" --log "$work/acknowledged.txt" --lease-ms "$lease_ms" >"$work/load.out" 2>&1 &
pid=$!
# Wait until every start is acknowledged, then kill at once.
while [ "$( (wc -l <"$work/acknowledged.txt") 2>/dev/null || echo 0)" -lt "$n" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "error: the engine exited before it was killed:" >&2
    cat "$work/load.out" >&2
    exit 1
  fi
  sleep 0.01
done
kill -9 "$pid"
killed=$(date +%s.%N)
wait "$pid" 2>/dev/null || true

"$bin" recover --db "$url" --mocks bench/scenarios/fulfill_all_succeed.json --json \
  >"$work/recover.json"
done_at=$(date +%s.%N)
"$driver" verify --db "$url" --log "$work/acknowledged.txt" --expect-at-least "$n" \
  >"$work/verify.json" || {
  cat "$work/verify.json" >&2
  exit 1
}
python3 - "$work/recover.json" "$work/verify.json" "$killed" "$done_at" "$n" "$lease_ms" "$url" <<'EOF'
import json, sys
rec = json.load(open(sys.argv[1]))
ver = json.load(open(sys.argv[2]))
killed, done, n, lease_ms, url = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
print(json.dumps({
    "store": url.split("@")[-1], "instances": n, "lease_ms": lease_ms,
    "resumed_by_recover": rec["resumed"], "recover_outcomes": rec["outcomes"],
    "final_outcomes": ver["outcomes"],
    "seconds_from_kill_to_all_terminal": round(done - killed, 3),
    "recover_seconds": rec["seconds"],
}))
EOF
