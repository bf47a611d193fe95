#pragma once

#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::cli {

// Exit codes of the `sagaflow` command.
inline constexpr int kExitOk = 0;       // done (whatever the flow's outcome)
inline constexpr int kExitFailure = 1;  // the command could not finish (an engine or I/O error)
inline constexpr int kExitInvalid = 2;  // invalid input: arguments, flow, scenario, missing mock
inline constexpr int kExitRefused = 3;  // refused: leased by another engine, or does not apply

// The `sagaflow` command line: validate, simulate, graph, bench, run, instances, replay,
// compensate, skip, recover, db. A service developer's own binary calls this with a registry
// holding their tasks. Returns the exit code.
int run(int argc, char** argv, TaskRegistry& registry);

}  // namespace sagaflow::cli
