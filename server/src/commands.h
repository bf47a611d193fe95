#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::cli {

// Where instances are stored (operator commands).
struct StoreArgs {
  std::string url;                  // "" for the default (SAGAFLOW_DB, else sqlite:sagaflow.db)
  std::string durability = "full";  // SQLite: full or normal
  // memory: how many finished instances to keep ("all", or a count)
  std::string retain = "0";
};

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
  StoreArgs store{"memory"};
  std::vector<std::string> flows;
  std::string scenario;
  std::size_t instances = 100000;
  int threads = 0;  // 0: one per core
  std::size_t window = 4096;
  bool json = false;
};

struct RunArgs {
  StoreArgs store;
  std::vector<std::string> flows;
  std::string flow_name;  // "" for the first flow given
  std::string input;      // "": the --mocks scenario's input, else {}
  std::string business_key;
  std::string mocks;
  double timeout_s = 60;
  bool json = false;
};

struct ListArgs {
  StoreArgs store;
  std::string status;
  std::string flow;
  std::size_t limit = 50;
  bool json = false;
};

struct ShowArgs {
  StoreArgs store;
  std::string id;
  bool json = false;
};

struct OperateArgs {
  StoreArgs store;
  engine::Operation operation = engine::Operation::kForward;
  std::string id;
  std::string mocks;
  std::string patch;  // JSON object merged into the context first ("" for none)
  bool plan = false;        // replay: print the plan only
  bool all_failed = false;  // replay: every FA or UN instance not compensated
  std::string flow;         // with all_failed: only this flow
  double timeout_s = 60;
  bool json = false;
};

struct RecoverArgs {
  StoreArgs store;
  std::string mocks;
  double wait_s = 60;  // how long to wait for live leases of other engines to expire
  bool json = false;
};

int RunValidate(const std::vector<std::string>& files);
int RunRun(const RunArgs& args, const TaskRegistry& base);
int RunInstancesList(const ListArgs& args);
int RunInstancesShow(const ShowArgs& args);
int RunOperate(const OperateArgs& args, const TaskRegistry& base);
int RunRecover(const RecoverArgs& args, const TaskRegistry& base);
int RunDbMigrate(const StoreArgs& args);
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
