#pragma once

// The flows an executor can run. Internal to engine/.

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::engine {

// A flow the executor can run: the compiled machine and its tasks, resolved once per state.
struct Flow {
  std::shared_ptr<const statelang::StateMachine> machine;
  std::vector<const TaskFn*> tasks;  // by state index; nullptr for non-task or unregistered
  bool has_async = false;            // a state with IsAsync
};

struct FlowCatalogOptions {
  // Refuse a flow that calls a task nobody registered.
  bool require_registered_tasks = true;
  // Refuse a flow with async steps (there is no TaskDispatcher to run them).
  bool refuse_async = false;
};

// Flows by definition (name and content hash) and by the address of the machine callers pass.
// A flow is stored (StateStore::SaveDefinition) the first time it is added, and an instance
// always runs on the definition it started with: one that started on an older definition is
// loaded from the store. Flows live as long as the catalog, so instances refer to them by
// plain pointer. Thread-safe; the lookup by machine from one thread is lock-free when it asks
// for the same machine as last time.
class FlowCatalog {
 public:
  FlowCatalog(FlowCatalogOptions options, const TaskRegistry& registry, StateStore& store,
              const Clock& clock);

  // Errors: kInvalidArgument (no machine, unregistered tasks, async steps without a
  // dispatcher), or the store's error saving the definition.
  Result<const Flow*> For(const std::shared_ptr<const statelang::StateMachine>& machine);
  // The flow `record` started on. Errors: the store's (kNotFound for an unknown definition),
  // kInternal when the stored definition no longer loads.
  Result<const Flow*> ForRecord(const InstanceRecord& record);

 private:
  const FlowCatalogOptions options_;
  const TaskRegistry& registry_;
  StateStore& store_;
  const Clock& clock_;
  const std::uint64_t generation_;  // tells this catalog from one that lived at its address

  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<const Flow>> flows_;  // name + "\n" + hash
  std::unordered_map<const statelang::StateMachine*, const Flow*> by_machine_;
  // Machines compiled again from a known definition: kept alive while their address is a key.
  std::vector<std::shared_ptr<const statelang::StateMachine>> machines_;
};

}  // namespace sagaflow::engine
