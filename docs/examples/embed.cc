// Runs docs/examples/transfer.json in process: C++ tasks, the in-memory store, a thread pool.
// Build and run: see docs/architecture.md ("Embedding the engine").
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"

struct Movement {
  std::string account;
  int amount = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Movement, account, amount)

namespace {

void Print(const sagaflow::engine::InstanceRecord& r) {
  using namespace sagaflow::engine;
  std::cout << r.id.str() << " status " << RunStatusCode(r.status) << " compensation "
            << (r.compensation_status ? RunStatusCode(*r.compensation_status) : "-") << "\n";
  for (const StateExecution& e : r.executions) {
    std::cout << "  " << e.state.str() << " " << ExecutionKindName(e.kind) << " "
              << RunStatusCode(e.status) << " attempts " << e.attempts << " key "
              << e.idempotency_key << "\n";
  }
}

int Fail(const sagaflow::Status& s) {
  std::cerr << s.ToString() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sagaflow;
  const std::string file = argc > 1 ? argv[1] : "docs/examples/transfer.json";

  TaskRegistry registry;
  registry.errors().Define("InsufficientFunds", "Error").ok();
  registry.errors().Define("AccountClosed", "Error").ok();

  // Typed: each parameter converted from the matching Input argument, the result back to JSON.
  registry.add("accountService.credit", [](const Movement& m) -> Json {
    if (m.account == "closed") throw TaskError("AccountClosed", "account is closed");
    return {{"id", "c-1"}};
  });
  // Plain, with the context: the Input list as a JSON array.
  registry.add("accountService.debit", [](TaskContext& ctx, const Json& args) -> Json {
    Movement m = args.at(0).get<Movement>();
    if (m.amount > 1000) throw TaskError("InsufficientFunds", m.account + " cannot pay");
    return {{"id", "d-" + ctx.idempotency_key()}};  // the key identifies this debit
  });
  // Compensations.
  registry.add("accountService.refund", [](const std::string& debit_id) { return !debit_id.empty(); });
  registry.add("accountService.reverse", [](const Json&, const Json&) { return true; });
  std::atomic<int> notify_calls{0};  // the mail relay is down for the first call
  registry.add("notifyService.send", [&](TaskContext&, const Json& args) -> Json {
    if (notify_calls++ == 0) throw TaskError("SmtpDown", "mail relay unreachable");
    return "sent to " + args[0].get<std::string>();
  });

  auto loaded = statelang::LoadStateMachineFile(file);
  std::cerr << loaded.Describe(file);  // warnings, or the errors that stopped it
  if (!loaded.ok()) return 2;

  SystemClock clock;
  adapters::MemoryStateStore store;
  engine::Executor executor(engine::ExecutorOptions{.workers = 2}, registry, store, clock);
  if (Status s = executor.Start(); !s.ok()) return Fail(s);
  // Stores the definition; refuses a flow that calls a task nobody registered.
  if (Status s = executor.AddFlow(loaded.machine); !s.ok()) return Fail(s);
  const auto timeout = std::chrono::seconds(10);

  // 1. Notify fails and nothing catches it: the run ends UN. Forward re-runs Notify.
  auto first = executor.Run(loaded.machine, {{"from", "acc-1"}, {"to", "acc-2"}, {"amount", 250}},
                            {.business_key = "transfer-1"}, timeout);
  if (!first.ok()) return Fail(first.status());
  Print(*first);
  auto forwarded = executor.Operate(engine::Operation::kForward, first->id, nullptr, timeout);
  if (!forwarded.ok()) return Fail(forwarded.status());
  Print(*forwarded);

  // 2. The target account is closed: caught, compensated newest first, ends in Rejected.
  auto second = executor.Run(loaded.machine, {{"from", "acc-1"}, {"to", "closed"}, {"amount", 250}},
                             {.business_key = "transfer-2"}, timeout);
  if (!second.ok()) return Fail(second.status());
  Print(*second);
  std::cout << "errorCode " << second->error_code << ", context " << second->context.dump() << "\n";

  executor.Stop();
  return 0;
}
