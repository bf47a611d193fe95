#include "flow_catalog.h"

#include <atomic>

#include "sagaflow/statelang/loader.h"

namespace sagaflow::engine {

using statelang::StateMachine;

namespace {

std::atomic<std::uint64_t> next_generation{1};

// The flow a thread looked up last, by machine address: starts of one flow from many threads
// then share no lock and no reference count.
struct LastFlow {
  std::uint64_t generation = 0;
  const StateMachine* machine = nullptr;
  const Flow* flow = nullptr;
};
thread_local LastFlow last_flow;

}  // namespace

FlowCatalog::FlowCatalog(FlowCatalogOptions options, const TaskRegistry& registry,
                         StateStore& store, const Clock& clock)
    : options_(options),
      registry_(registry),
      store_(store),
      clock_(clock),
      generation_(next_generation.fetch_add(1)) {}

Result<const Flow*> FlowCatalog::For(const std::shared_ptr<const StateMachine>& machine) {
  if (!machine) return InvalidArgument("no flow given");
  if (last_flow.generation == generation_ && last_flow.machine == machine.get()) {
    return last_flow.flow;
  }
  std::string key;
  {
    std::lock_guard lock(mu_);
    auto known = by_machine_.find(machine.get());
    if (known != by_machine_.end()) {
      last_flow = LastFlow{generation_, machine.get(), known->second};
      return known->second;
    }
    key = machine->name() + "\n" + machine->content_hash();
    auto it = flows_.find(key);
    if (it != flows_.end()) {
      // The same definition compiled again: keep using the first compilation (and keep this
      // machine alive, since its address is the key).
      by_machine_.emplace(machine.get(), it->second.get());
      machines_.push_back(machine);
      return it->second.get();
    }
  }
  auto flow = std::make_unique<Flow>();
  flow->machine = machine;
  flow->tasks.resize(machine->states().size(), nullptr);
  std::vector<std::string> async_states;
  for (std::size_t i = 0; i < machine->states().size(); ++i) {
    const statelang::State& s = machine->states()[i];
    if (!s.is_task()) continue;
    flow->tasks[i] = registry_.Find(s.service_task().task);
    if (s.service_task().is_async) {
      flow->has_async = true;
      async_states.push_back(s.name);
    }
  }
  if (options_.require_registered_tasks) {
    std::vector<TaskName> missing = registry_.Missing(machine->TaskNames());
    if (!missing.empty()) {
      std::string list;
      for (const TaskName& m : missing) list += (list.empty() ? "" : ", ") + m.str();
      return InvalidArgument("flow '" + machine->name() +
                             "' calls tasks that are not registered: " + list);
    }
  }
  if (options_.refuse_async && flow->has_async) {
    std::string list;
    for (const std::string& s : async_states) list += (list.empty() ? "'" : ", '") + s + "'";
    return InvalidArgument("flow '" + machine->name() + "' has async steps (" + list +
                           ") but this engine has no task dispatcher to run them");
  }
  SAGAFLOW_RETURN_IF_ERROR(store_.SaveDefinition(
      DefinitionRecord{machine->name(), machine->version(), machine->content_hash(),
                       machine->content(), clock_.Now()}));
  std::lock_guard lock(mu_);
  auto [it, inserted] = flows_.emplace(key, std::move(flow));
  by_machine_.emplace(machine.get(), it->second.get());
  if (!inserted) machines_.push_back(machine);  // compiled twice, added concurrently
  return it->second.get();
}

Result<const Flow*> FlowCatalog::ForRecord(const InstanceRecord& r) {
  {
    std::lock_guard lock(mu_);
    auto it = flows_.find(r.flow_name + "\n" + r.flow_hash);
    if (it != flows_.end()) return it->second.get();
  }
  SAGAFLOW_ASSIGN_OR_RETURN(DefinitionRecord def, store_.LoadDefinition(r.flow_name, r.flow_hash));
  auto loaded = statelang::LoadStateMachine(def.content);
  if (!loaded.ok()) {
    return Internal("stored definition of flow '" + r.flow_name + "' (" + r.flow_hash +
                    ") no longer loads: " + loaded.Describe(r.flow_name));
  }
  return For(loaded.machine);
}

}  // namespace sagaflow::engine
