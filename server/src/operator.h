#pragma once

// What the operator commands (run, instances, replay, compensate, skip, recover, db) share:
// opening a store from a URL, building the task registry (the binary's tasks, plus a
// scenario's mocks), and showing instances.

#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "commands.h"
#include "sagaflow/adapters/memory/in_process_dispatcher.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/server/scenario.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::cli {

// The URL a command uses: the one given, else $SAGAFLOW_DB, else the embedded default.
std::string StoreUrl(const StoreArgs& args);

// How a command uses its store.
enum class StoreUse {
  kCreate,    // may create the database (run, bench, db migrate)
  kExisting,  // reads or changes instances that must already be stored: a missing SQLite file
              // is an error, not a new empty database
};

// Opens the store (sqlite:PATH; postgresql://...; `memory`, a store in this process, for bench
// only), applying pending schema migrations. Errors name the URL (without its password).
Result<std::unique_ptr<engine::StateStore>> OpenStore(const StoreArgs& args,
                                                      StoreUse use = StoreUse::kExisting,
                                                      bool allow_memory = false);

// The store's URL for output (without a password).
std::string StoreDisplayName(engine::StateStore& store);

// Applies pending migrations; returns the versions applied now.
Result<std::vector<int>> MigrateStore(const StoreArgs& args);

// Tasks for an engine: the binary's own tasks and error types, then the mocks and error types
// of a scenario file when one is given (its mocks replace the binary's tasks of the same name).
// Errors are kInvalidArgument naming the scenario file.
class Tasks {
 public:
  Status Load(const TaskRegistry& base, const std::string& mocks_file);
  const TaskRegistry& registry() const { return registry_; }
  // The scenario loaded (null without one).
  const server::Scenario* scenario() const { return scenario_ ? &*scenario_ : nullptr; }
  const server::MockSet& mocks() const { return mocks_; }

 private:
  TaskRegistry registry_;
  server::MockSet mocks_;
  std::optional<server::Scenario> scenario_;
};

// A running engine over a store, for one command.
struct OperatorEngine {
  std::unique_ptr<engine::StateStore> store;
  Tasks tasks;
  SystemClock clock;
  // Runs the flows' async steps (IsAsync) on this process's threads; declared before the
  // executor, which stops it.
  std::unique_ptr<adapters::InProcessDispatcher> dispatcher;
  std::unique_ptr<engine::Executor> executor;
};

// Opens the store, loads the tasks and starts an executor with `workers` threads (0: one per
// core), calling `on_finished` (ExecutorOptions::on_finished) when set. Prints the error and
// returns the exit code when it fails (kExitOk otherwise).
int OpenEngine(const StoreArgs& store, const TaskRegistry& base, const std::string& mocks_file,
               OperatorEngine& out, StoreUse use = StoreUse::kExisting, int workers = 0,
               std::function<void(const engine::InstanceRecord&)> on_finished = nullptr);

// The exit code for a failed Status: 2 for what the user got wrong (bad argument, unknown
// instance), 3 for a refusal (the instance is leased elsewhere, the operation does not apply),
// 1 for the rest.
int ExitCodeFor(const Status& status);

// A parked instance — unfinished and held by no process: sleeping in a Wait or a retry's
// backoff, or waiting for an event — is taken up by whichever engine claims it once its
// lease_until, its wake time, has come.
bool IsParked(bool finished, const std::string& owner);
// The wake time a parked instance's lease_until stands for; none when it is TimePoint::max():
// only an event wakes it. Output shows such a lease_until as no time (null, or nothing), never
// as the year 2262.
std::optional<TimePoint> WakeTime(TimePoint lease_until);

// A flow for people: "NAME VERSION", or NAME alone when the flow has no Version.
std::string FlowLabel(const std::string& name, const std::string& version);

// An instance as JSON, with its executions when `with_executions`.
Json InstanceJson(const engine::InstanceRecord& r, bool with_executions);
Json SummaryJson(const engine::InstanceSummary& s);
// Human forms.
void PrintInstance(std::ostream& out, const engine::InstanceRecord& r);
void PrintSummaries(std::ostream& out, const std::vector<engine::InstanceSummary>& list);

// Parses `text` as a JSON object for an instance's input or an operation's patch; the error
// names `what`.
Result<Json> ParseObjectArgument(const std::string& text, const std::string& what);

}  // namespace sagaflow::cli
