#include <iomanip>
#include <iostream>

#include "commands.h"
#include "sagaflow/adapters/memory/in_process_dispatcher.h"
#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/server/cli.h"
#include "sagaflow/server/scenario.h"

namespace sagaflow::cli {
namespace {

// Long enough for any virtual-time scenario; the clock is virtual, so this is never waited.
constexpr Duration kNoDeadline = std::chrono::hours(24 * 365);

void PrintHuman(const Json& out) {
  auto print_trace = [](const Json& trace) {
    for (const Json& e : trace) {
      std::cout << "  " << std::left << std::setw(28) << e["state"].get<std::string>() << " "
                << std::setw(12) << e["kind"].get<std::string>() << " "
                << e["status"].get<std::string>() << "  attempts " << e["attempts"];
      if (e.contains("compensates"))
        std::cout << "  (compensates " << e["compensates"].get<std::string>() << ")";
      if (e.contains("error")) {
        std::cout << "  error " << e["error"]["type"].get<std::string>() << ": "
                  << e["error"]["message"].get<std::string>();
      }
      std::cout << "\n";
    }
  };
  auto text = [](const Json& j) { return j.is_null() ? std::string("-") : j.get<std::string>(); };
  std::cout << "flow " << out["flow"].get<std::string>() << "  instance "
            << out["instanceId"].get<std::string>() << "\n";
  print_trace(out["trace"]);
  std::cout << "status " << text(out["status"]) << "  compensationStatus "
            << text(out["compensationStatus"]) << "  errorCode " << text(out["errorCode"]);
  if (!out["errorMessage"].is_null()) std::cout << " (" << text(out["errorMessage"]) << ")";
  if (!out["error"].is_null()) {
    std::cout << "\nerror " << out["error"]["type"].get<std::string>() << ": "
              << out["error"]["message"].get<std::string>();
  }
  std::cout << "\n";
  for (const Json& op : out["operations"]) {
    std::cout << "then " << op["op"].get<std::string>() << ":\n";
    if (op.contains("refused")) {
      std::cout << "  refused: " << op["refused"].get<std::string>() << "\n";
      continue;
    }
    print_trace(op["trace"]);
    std::cout << "status " << text(op["status"]) << "  compensationStatus "
              << text(op["compensationStatus"]) << "\n";
  }
  std::cout << "calls:";
  for (auto it = out["calls"].begin(); it != out["calls"].end(); ++it) {
    std::cout << " " << it.key() << "=" << it.value();
  }
  std::cout << "\nvirtual time " << out["virtualSeconds"] << " s\n";
}

}  // namespace

int RunSimulate(const SimulateArgs& args) {
  auto flows = LoadFlows(args.flows);
  if (!flows) return kExitInvalid;
  auto scenario = server::LoadScenarioFile(args.scenario);
  if (!scenario.ok()) {
    std::cerr << args.scenario << ": " << scenario.status().message() << "\n";
    return kExitInvalid;
  }
  auto machine = PickFlow(*flows, scenario->flow);
  if (!machine) return kExitInvalid;

  TaskRegistry registry;
  if (Status s = server::DefineErrors(*scenario, registry.errors()); !s.ok()) {
    std::cerr << args.scenario << ": " << s.message() << "\n";
    return kExitInvalid;
  }
  server::MockSet mocks;
  if (Status s = mocks.Install(scenario->mocks, registry); !s.ok()) {
    std::cerr << args.scenario << ": " << s.message() << "\n";
    return kExitInvalid;
  }

  ManualClock clock(SystemClock().Now());
  const TimePoint t0 = clock.Now();
  adapters::MemoryStateStore store;
  // Async steps run inline too: a simulation is one thread on virtual time.
  adapters::InProcessDispatcher dispatcher(registry, clock, {.threads = 0});
  engine::Executor executor(engine::ExecutorOptions{.workers = 0,
                                                    .require_registered_tasks = false,
                                                    .virtual_clock = &clock,
                                                    .dispatcher = &dispatcher},
                            registry, store, clock);
  if (Status s = executor.Start(); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  auto report = [&](const Status& s) {
    std::cerr << "error: " << s.message() << "\n";
    return s.code() == StatusCode::kNotFound || s.code() == StatusCode::kInvalidArgument
               ? kExitInvalid
               : kExitFailure;
  };
  auto first = executor.Run(machine, scenario->input, {}, kNoDeadline);
  if (!first.ok()) return report(first.status());

  Json out;
  out["flow"] = machine->name();
  out["instanceId"] = first->id.str();
  out["status"] = std::string(engine::RunStatusCode(first->status));
  out["compensationStatus"] = NullableStatus(first->compensation_status);
  out["errorCode"] = first->error_code.empty() ? Json() : Json(first->error_code);
  out["errorMessage"] = first->error_message.empty() ? Json() : Json(first->error_message);
  out["error"] = first->error
                     ? Json{{"type", first->error->type}, {"message", first->error->message}}
                     : Json();
  out["context"] = first->context.get();
  out["trace"] = TraceJson(*first, 0, first->executions.size());
  Json operations = Json::array();
  engine::InstanceRecord latest = std::move(first).value();
  for (std::size_t i = 0; i < scenario->then.size(); ++i) {
    const server::ScenarioOperation& op = scenario->then[i];
    if (!op.mocks.empty()) {
      if (Status s = mocks.Install(op.mocks, registry); !s.ok()) {
        std::cerr << args.scenario << ": /then/" << i << ": " << s.message() << "\n";
        return kExitInvalid;
      }
    }
    Json entry = {{"op", std::string(engine::OperationName(op.op))}};
    std::size_t before = latest.executions.size();
    auto result = executor.Operate(op.op, latest.id, op.input, kNoDeadline);
    if (!result.ok()) {
      if (result.status().code() != StatusCode::kFailedPrecondition) return report(result.status());
      // The operation does not apply: that is an outcome the scenario may want to see.
      entry["refused"] = result.status().message();
      entry["status"] = std::string(engine::RunStatusCode(latest.status));
      entry["compensationStatus"] = NullableStatus(latest.compensation_status);
      entry["trace"] = Json::array();
      operations.push_back(std::move(entry));
      continue;
    }
    latest = std::move(result).value();
    entry["status"] = std::string(engine::RunStatusCode(latest.status));
    entry["compensationStatus"] = NullableStatus(latest.compensation_status);
    entry["errorCode"] = latest.error_code.empty() ? Json() : Json(latest.error_code);
    entry["context"] = latest.context.get();
    // Executions are only ever appended: the operation's are those after `before`.
    entry["trace"] = TraceJson(latest, before, latest.executions.size());
    operations.push_back(std::move(entry));
  }
  out["operations"] = std::move(operations);
  Json calls = Json::object();
  for (const auto& [name, n] : mocks.Calls()) calls[name] = n;
  out["calls"] = std::move(calls);
  out["virtualSeconds"] = DurationToSeconds(clock.Now() - t0);
  executor.Stop();
  if (args.json) {
    std::cout << out.dump() << "\n";
  } else {
    PrintHuman(out);
  }
  return kExitOk;
}

}  // namespace sagaflow::cli
