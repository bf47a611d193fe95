#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::cli {

struct SimulateArgs {
  std::vector<std::string> flows;
  std::string scenario;
  bool json = false;
};

struct GraphArgs {
  std::string flow;
  std::string format = "mermaid";
};

struct BenchArgs {
  std::vector<std::string> flows;
  std::string scenario;
  std::size_t instances = 100000;
  int threads = 0;  // 0: one per core
  std::size_t window = 4096;
  bool json = false;
};

int RunValidate(const std::vector<std::string>& files);
int RunSimulate(const SimulateArgs& args);
int RunGraph(const GraphArgs& args);
int RunBench(const BenchArgs& args, const TaskRegistry& base);

// Loads flow files, printing every issue to stderr. Returns nullopt when any file has errors.
std::optional<std::vector<std::shared_ptr<const statelang::StateMachine>>> LoadFlows(
    const std::vector<std::string>& files);

// Picks the flow named `name` ("" for the first); prints an error and returns null if absent.
std::shared_ptr<const statelang::StateMachine> PickFlow(
    const std::vector<std::shared_ptr<const statelang::StateMachine>>& flows,
    const std::string& name);

// One trace entry per execution in [first, last).
Json TraceJson(const engine::InstanceRecord& r, std::size_t first, std::size_t last);
Json NullableStatus(const std::optional<engine::RunStatus>& s);

}  // namespace sagaflow::cli
