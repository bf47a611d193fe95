#include <iostream>

#include "commands.h"

namespace sagaflow::cli {

std::optional<std::vector<std::shared_ptr<const statelang::StateMachine>>> LoadFlows(
    const std::vector<std::string>& files) {
  std::vector<std::shared_ptr<const statelang::StateMachine>> out;
  bool ok = true;
  for (const std::string& f : files) {
    auto loaded = statelang::LoadStateMachineFile(f);
    std::cerr << loaded.Describe(f);
    if (!loaded.ok()) {
      ok = false;
      continue;
    }
    out.push_back(loaded.machine);
  }
  if (!ok) return std::nullopt;
  return out;
}

std::shared_ptr<const statelang::StateMachine> PickFlow(
    const std::vector<std::shared_ptr<const statelang::StateMachine>>& flows,
    const std::string& name) {
  if (flows.empty()) return nullptr;
  if (name.empty()) return flows.front();
  for (const auto& f : flows) {
    if (f->name() == name) return f;
  }
  std::string names;
  for (const auto& f : flows) names += (names.empty() ? "" : ", ") + f->name();
  std::cerr << "error: the scenario starts flow '" << name
            << "', which is not among the flows given (" << names << ")\n";
  return nullptr;
}

Json NullableStatus(const std::optional<engine::RunStatus>& s) {
  if (!s) return nullptr;
  return std::string(engine::RunStatusCode(*s));
}

Json TraceJson(const engine::InstanceRecord& r, std::size_t first, std::size_t last) {
  Json trace = Json::array();
  for (std::size_t i = first; i < last && i < r.executions.size(); ++i) {
    const engine::StateExecution& e = r.executions[i];
    Json entry = {{"state", e.state.str()},
                  {"kind", std::string(engine::ExecutionKindName(e.kind))},
                  {"status", std::string(engine::RunStatusCode(e.status))},
                  {"attempts", e.attempts}};
    if (e.kind == engine::ExecutionKind::kCompensation && e.compensates >= 0) {
      entry["compensates"] = r.executions[static_cast<std::size_t>(e.compensates)].state.str();
    }
    if (e.error) entry["error"] = {{"type", e.error->type}, {"message", e.error->message}};
    trace.push_back(std::move(entry));
  }
  return trace;
}

}  // namespace sagaflow::cli
