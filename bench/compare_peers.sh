#!/usr/bin/env bash
# Measures sagaflow side by side with two peer engines on the fulfilment flow
# (3 service tasks, 2 choices, succeed; every task returns true, all in memory):
#   - sagaflow:  `sagaflow bench` (the C++ executor, MemoryStateStore)
#   - statebox:  @wmfs/statebox (Amazon States Language engine for Node.js)
#   - medusa:    @medusajs/workflows-sdk (saga engine with compensation, Node.js)
#
# Usage: bench/compare_peers.sh [SAGAFLOW_BINARY] [INSTANCES] [REPETITIONS]
#   SAGAFLOW_BINARY  default build/release/server/sagaflow (relative to the repo root)
#   INSTANCES        sagaflow instances per run, default 100000
#   REPETITIONS      rounds of (sagaflow, statebox, medusa), default 3
# Environment:
#   STATEBOX_N, MEDUSA_N   instances per peer run (default max(INSTANCES/10, 5000): the peers
#                          are an order of magnitude slower, and the script should stay ~2 min)
#   PEER_CONCURRENCY       instances in flight for the peers (default 64)
#   SAGAFLOW_BENCH_ARGS    extra arguments for `sagaflow bench`, e.g. "--threads 1"
#   PEERS_SRC              where the peer scripts come from (default <repo>/../shared/bench/peers)
#
# Builds nothing. Installs the peers into <repo>/build/peers (npm registry) when they are missing.
# Progress goes to stderr; stdout is one JSON object with the median instances_per_s per engine
# and the ratios sagaflow/statebox and sagaflow/medusa.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-build/release/server/sagaflow}"
n="${2:-100000}"
reps="${3:-3}"
[[ "$bin" = /* ]] || bin="$repo/$bin"

die() { echo "compare_peers: $*" >&2; exit 1; }
is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

is_count "$n" || die "INSTANCES must be a positive integer, got '$n'"
is_count "$reps" || die "REPETITIONS must be a positive integer, got '$reps'"
[[ -x "$bin" ]] || die "no sagaflow binary at $bin (build it first, e.g. cmake --build --preset release)"
command -v node >/dev/null || die "node is not installed"
command -v python3 >/dev/null || die "python3 is not installed"

peer_default=$(( n / 10 ))
(( peer_default >= 5000 )) || peer_default=5000
statebox_n="${STATEBOX_N:-$peer_default}"
medusa_n="${MEDUSA_N:-$peer_default}"
conc="${PEER_CONCURRENCY:-64}"
is_count "$statebox_n" || die "STATEBOX_N must be a positive integer"
is_count "$medusa_n" || die "MEDUSA_N must be a positive integer"
is_count "$conc" || die "PEER_CONCURRENCY must be a positive integer"

flow="$repo/flows/order_fulfill.json"
scenario="$repo/bench/scenarios/fulfill_all_succeed.json"
[[ -f "$flow" ]] || die "missing $flow"
[[ -f "$scenario" ]] || die "missing $scenario"

# --- peers: copy the scripts out of the (read-only, shared) source and install beside them ----
peers="$repo/build/peers"
peers_src="${PEERS_SRC:-$repo/../shared/bench/peers}"
if [[ ! -f "$peers/statebox_bench.js" || ! -f "$peers/medusa_bench.js" || ! -f "$peers/setup.sh" ]]; then
  [[ -d "$peers_src" ]] || die "peer scripts not found at $peers_src (set PEERS_SRC)"
  echo "compare_peers: copying peer scripts from $peers_src to $peers" >&2
  mkdir -p "$peers"
  cp "$peers_src"/* "$peers"/
  chmod u+w "$peers"/*
fi
if [[ ! -d "$peers/node_modules/@wmfs/statebox" || ! -d "$peers/node_modules/@medusajs/workflows-sdk" ]]; then
  command -v npm >/dev/null || die "npm is not installed"
  echo "compare_peers: installing the peer engines into $peers (npm registry)" >&2
  bash "$peers/setup.sh" >&2
fi

# --- runs, interleaved so that drifting machine load hits every engine alike --------------------
results="$(mktemp)"
errlog="$(mktemp)"
trap 'rm -f "$results" "$errlog"' EXIT

run() {  # run ENGINE COMMAND...: appends "ENGINE<TAB>last stdout line" to $results
  local engine="$1"; shift
  local out
  if ! out="$("$@" 2>"$errlog")"; then
    cat "$errlog" >&2
    die "$engine run failed: $*"
  fi
  out="$(printf '%s\n' "$out" | tail -n 1)"
  printf '%s\t%s\n' "$engine" "$out" >>"$results"
  echo "compare_peers:   $engine $out" >&2
}

# shellcheck disable=SC2206  # word splitting of the extra arguments is intended
extra=(${SAGAFLOW_BENCH_ARGS:-})
for (( r = 1; r <= reps; r++ )); do
  echo "compare_peers: round $r/$reps" >&2
  run sagaflow "$bin" bench --flow "$flow" --scenario "$scenario" --instances "$n" --json \
    ${extra[@]+"${extra[@]}"}
  # node resolves require() from the script's directory, so no cd is needed.
  run statebox node "$peers/statebox_bench.js" "$statebox_n" "$conc"
  run medusa node "$peers/medusa_bench.js" "$medusa_n" "$conc"
done

python3 - "$results" "$reps" "$conc" <<'PY'
import json
import os
import statistics
import sys

path, reps, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
engines = ["sagaflow", "statebox", "medusa"]
runs = {e: [] for e in engines}
problems = []
with open(path) as f:
    for line in f:
        engine, _, text = line.rstrip("\n").partition("\t")
        rec = json.loads(text)
        runs[engine].append(rec)
        # Every instance of the all-succeed scenario must have succeeded.
        n = rec.get("instances")
        ok = rec.get("statuses", {}).get("SU") if engine == "sagaflow" else rec.get("succeeded")
        if ok != n:
            problems.append(f"{engine}: {ok} of {n} instances succeeded")

median = {e: statistics.median(r["instances_per_s"] for r in runs[e]) for e in engines}
out = {
    "flow": "order_fulfill",
    "scenario": "fulfill_all_succeed",
    "repetitions": reps,
    "cores": os.cpu_count(),
    "instances": {e: runs[e][0]["instances"] for e in engines},
    "peer_concurrency": conc,
    "sagaflow_threads": runs["sagaflow"][0].get("threads"),
    "median_instances_per_s": {e: round(median[e], 1) for e in engines},
    "ratios": {
        "sagaflow/statebox": round(median["sagaflow"] / median["statebox"], 2),
        "sagaflow/medusa": round(median["sagaflow"] / median["medusa"], 2),
    },
    "runs_instances_per_s": {e: [round(r["instances_per_s"], 1) for r in runs[e]] for e in engines},
}
if problems:
    out["problems"] = problems
print(json.dumps(out))
sys.exit(1 if problems else 0)
PY
