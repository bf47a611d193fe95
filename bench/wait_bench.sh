#!/usr/bin/env bash
# A million instances waiting on one durable timer, on SQLite (README, "A million Waits"):
#   1. run:  an engine starts N instances of bench/flows/wait_until.json, all waiting until
#            the same time; prints the engine's memory while they wait and the seconds from the
#            due time until every one has moved on.
#   2. kill: an engine starts N more, kills itself with SIGKILL during the wait; then
#            `sagaflow recover --wait` takes them over and fires them at their time. The store
#            is checked with SQL: every instance SU, each reminded exactly once, none early.
# usage: bench/wait_bench.sh [N=1000000] [DUE_IN_S=100] [DIR=build]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
due_in=${2:-100}
dir=${3:-build}
bin=build/release/server/sagaflow
drv=build/release/bench/sagaflow_wait_bench
[ -x "$bin" ] && [ -x "$drv" ] || { echo "error: build the release preset first" >&2; exit 1; }

check() {  # DB DUE_NS: prints a JSON line, exits 1 when an instance is lost, early or repeated
  local db=$1 due=$2
  local total su reminded early repeated
  total=$(sqlite3 "$db" "SELECT COUNT(*) FROM instances")
  su=$(sqlite3 "$db" "SELECT COUNT(*) FROM instances WHERE status = 'SU' AND unfinished = 0")
  reminded=$(sqlite3 "$db" "SELECT COUNT(DISTINCT instance_id) FROM state_executions WHERE state = 'Remind'")
  early=$(sqlite3 "$db" "SELECT COUNT(*) FROM state_executions WHERE state = 'Remind' AND started_at < $due")
  repeated=$(sqlite3 "$db" "SELECT (SELECT COUNT(*) FROM state_executions WHERE state = 'Remind') - COUNT(DISTINCT instance_id) + (SELECT COUNT(*) FROM state_executions WHERE state = 'Remind' AND attempts <> 1) FROM state_executions WHERE state = 'Remind'")
  echo "{\"instances\": $total, \"succeeded\": $su, \"reminded\": $reminded, \"early\": $early, \"repeated\": $repeated}"
  [ "$total" = "$n" ] && [ "$su" = "$n" ] && [ "$reminded" = "$n" ] && [ "$early" = 0 ] && [ "$repeated" = 0 ]
}

echo "== $n instances waiting ${due_in} s on one timer" >&2
db=$dir/wait_bench.db
rm -f "$db" "$db"-*
"$drv" run --db "sqlite:$db" --instances "$n" --due-in "$due_in"
due=$(sqlite3 "$db" "SELECT MIN(started_at) FROM state_executions WHERE state = 'Remind'")
check "$db" 0 >&2

echo "== the same, with the engine killed (SIGKILL) during the wait, then recover" >&2
db=$dir/wait_bench_kill.db
rm -f "$db" "$db"-*
due=$("$drv" start --db "sqlite:$db" --instances "$n" --due-in "$due_in" --kill-after 2 \
        | sed -n 's/^due //p') || true
[ -n "$due" ] || { echo "error: the engine printed no due time" >&2; exit 1; }
t0=$(date +%s.%N)
/usr/bin/time -f '{"recover_max_rss_mib": %M}' -o "$dir/wait_bench_recover.rss" \
  "$bin" recover --db "sqlite:$db" --mocks bench/scenarios/wait_until_remind.json \
  --wait $((due_in + 60)) --json > "$dir/wait_bench_recover.json"
t1=$(date +%s.%N)
now_ns=$(date +%s%N)
python3 - "$dir/wait_bench_recover.json" "$dir/wait_bench_recover.rss" "$due" "$t0" "$t1" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))
rss = json.load(open(sys.argv[2]))
due_s = int(sys.argv[3]) / 1e9
t0, t1 = float(sys.argv[4]), float(sys.argv[5])
print(json.dumps({"recover": {"resumed": rec["resumed"], "outcomes": rec["outcomes"],
                              "parked_left": rec.get("parked"), "failed": len(rec["failed"])},
                  "recover_seconds": round(t1 - t0, 2),
                  "seconds_due_to_recover_done": round(t1 - due_s, 2),
                  "recover_max_rss_mib": round(rss["recover_max_rss_mib"] / 1024, 1)}))
PY
check "$db" "$due"
