// Micro benchmarks of the pieces one saga step goes through: expression evaluation and
// compilation, loading a definition, one interpreter step, and one whole instance on the
// executor with the in-memory store. See bench/README.md for what each one measures.
//
// Uses public headers only. The fulfilment flow is read from the source tree
// (SAGAFLOW_SOURCE_DIR/flows/order_fulfill.json, an absolute path set by CMake), so the binary
// runs from any working directory.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/expression.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/error_types.h"
#include "sagaflow/tasks/task_context.h"
#include "sagaflow/tasks/task_registry.h"

#ifndef SAGAFLOW_SOURCE_DIR
#error "SAGAFLOW_SOURCE_DIR must be defined (bench/CMakeLists.txt sets it)"
#endif

namespace sagaflow {
namespace {

constexpr char kFulfillFlowPath[] = SAGAFLOW_SOURCE_DIR "/flows/order_fulfill.json";

// The seed flow's text, read once; "" when the file cannot be read.
const std::string& FulfillFlowText() {
  static const std::string text = [] {
    std::ifstream in(kFulfillFlowPath, std::ios::binary);
    if (!in) return std::string();
    std::ostringstream buf;
    buf << in.rdbuf();
    return buf.str();
  }();
  return text;
}

// The compiled seed flow, loaded once; null when it does not load.
std::shared_ptr<const statelang::StateMachine> FulfillMachine() {
  static const std::shared_ptr<const statelang::StateMachine> machine =
      statelang::LoadStateMachine(FulfillFlowText()).machine;
  return machine;
}

// Skips the benchmark (the loop is then not entered) when the flow is unavailable.
std::shared_ptr<const statelang::StateMachine> FulfillMachineOrSkip(benchmark::State& state) {
  auto machine = FulfillMachine();
  if (!machine) {
    state.SkipWithError(FulfillFlowText().empty() ? "cannot read " SAGAFLOW_SOURCE_DIR
                                                    "/flows/order_fulfill.json"
                                                  : "flows/order_fulfill.json does not load");
  }
  return machine;
}

Json FulfillInput() {
  return Json{{"receiveFulfillRequest", {{"orderId", "1001"}, {"userId", "u-7"}}}};
}

// A context as a Choice after the first task sees it.
Json ChoiceContext() {
  Json ctx = FulfillInput();
  ctx["CreateFulfillOrderResult"] = true;
  return ctx;
}

Json OrderContext() {
  return Json{{"req",
               {{"orderId", "1001"},
                {"items", Json::array({{{"sku", "A-1"}, {"price", 12.5}, {"quantity", 2}},
                                       {{"sku", "B-7"}, {"price", 3}, {"quantity", 1}}})}}}};
}

constexpr char kCompareSource[] = "[CreateFulfillOrderResult] == true";
constexpr char kPropertyChainSource[] = "[req].items[0].price > 10 && [req].items.size() > 0";

// Compiles `source` and checks that it evaluates to true against `context` before timing.
bool PrepareCondition(benchmark::State& state, const char* source, const Json& context,
                      statelang::Expression& out) {
  auto compiled = statelang::Expression::Compile(source);
  if (!compiled.ok()) {
    state.SkipWithError(("does not compile: " + compiled.status().message()).c_str());
    return false;
  }
  out = std::move(compiled).value();
  auto check = out.EvaluateCondition(statelang::EvalEnv{.root = &context});
  if (!check.ok() || !*check) {
    state.SkipWithError("the expression does not evaluate to true");
    return false;
  }
  return true;
}

void BM_ExpressionCompare(benchmark::State& state) {
  const Json context = ChoiceContext();
  statelang::Expression expr;
  if (PrepareCondition(state, kCompareSource, context, expr)) {
    const statelang::EvalEnv env{.root = &context};
    for (auto _ : state) {
      auto r = expr.EvaluateCondition(env);
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExpressionCompare);

void BM_ExpressionPropertyChain(benchmark::State& state) {
  const Json context = OrderContext();
  statelang::Expression expr;
  if (PrepareCondition(state, kPropertyChainSource, context, expr)) {
    const statelang::EvalEnv env{.root = &context};
    for (auto _ : state) {
      auto r = expr.EvaluateCondition(env);
      benchmark::DoNotOptimize(r);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExpressionPropertyChain);

void BM_ExpressionCompile(benchmark::State& state) {
  if (!statelang::Expression::Compile(kPropertyChainSource).ok()) {
    state.SkipWithError("the property-chain expression does not compile");
  }
  for (auto _ : state) {
    auto r = statelang::Expression::Compile(kPropertyChainSource);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExpressionCompile);

void BM_LoadFulfillFlow(benchmark::State& state) {
  const std::string& text = FulfillFlowText();
  FulfillMachineOrSkip(state);
  for (auto _ : state) {
    statelang::LoadResult r = statelang::LoadStateMachine(text);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(text.size()));
}
BENCHMARK(BM_LoadFulfillFlow);

// Start (route to FulfillService, create its execution, build its input) and its TaskResult with
// `true` (Status rules, Output, the Choice, then WmsService's execution): the interpreter's work
// for one ServiceTask step. Each iteration copies a fresh record, which is part of the figure.
void BM_InterpreterStep(benchmark::State& state) {
  auto machine = FulfillMachineOrSkip(state);
  if (!machine) return;
  ErrorTypes errors;
  const engine::Interpreter interpreter(errors);
  const TimePoint now = SystemClock().Now();

  engine::InstanceRecord fresh;
  fresh.id = NewInstanceId();
  fresh.flow_name = machine->name();
  fresh.flow_version = machine->version();
  fresh.flow_hash = machine->content_hash();
  fresh.input = FulfillInput();
  fresh.context = FulfillInput();
  fresh.started_at = fresh.updated_at = now;
  fresh.cursor.current = machine->start();

  auto step = [&](engine::InstanceRecord& record) {
    engine::Step first = interpreter.Start(record, *machine, now);
    engine::TaskOutcome outcome;
    outcome.ok = true;
    outcome.result = true;
    engine::Step second = interpreter.OnEvent(
        record, *machine, engine::TaskResult{first.decision.execution, first.decision.attempt, std::move(outcome)}, now);
    return std::make_pair(first, second);
  };
  {
    engine::InstanceRecord record = fresh;
    auto [first, second] = step(record);
    if (first.decision.kind != engine::Decision::Kind::kInvoke ||
        second.decision.kind != engine::Decision::Kind::kInvoke || record.executions.size() != 2 ||
        record.executions[0].status != engine::RunStatus::kSucceeded ||
        record.context.get().value("CreateFulfillOrderResult", false) != true) {
      state.SkipWithError("the interpreter did not invoke FulfillService, then WmsService");
    }
  }
  for (auto _ : state) {
    engine::InstanceRecord record = fresh;
    auto steps = step(record);
    benchmark::DoNotOptimize(steps);
    benchmark::DoNotOptimize(record);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_InterpreterStep);

// One whole fulfilment instance (3 tasks returning true, 2 Choices, Succeed) on the executor in
// manual mode (workers = 0: this thread drives it) with the in-memory store: StartInstance, then
// RunUntilIdle. Includes every persistence point the executor writes to the store.
void BM_OneInstanceInMemory(benchmark::State& state) {
  auto machine = FulfillMachineOrSkip(state);
  if (!machine) return;
  TaskRegistry registry;
  auto succeed = [](TaskContext&, const Json&) -> Json { return true; };
  auto nothing_to_undo = [](TaskContext&, const Json&) -> Json { return nullptr; };
  registry.add("fulfillSagaService.createFulfillOrder", succeed);
  registry.add("wmsSageService.pickGoods", succeed);
  registry.add("tmsSagaService.sendOut", succeed);
  registry.add("fulfillSagaService.createFulfillOrderCompensate", nothing_to_undo);
  registry.add("wmsSageService.pickGoodsCompensate", nothing_to_undo);
  registry.add("tmsSagaService.sendOutCompensate", nothing_to_undo);

  SystemClock clock;
  adapters::MemoryStateStore store;
  engine::Executor executor(engine::ExecutorOptions{.workers = 0}, registry, store, clock);
  if (Status s = executor.Start(); !s.ok()) {
    state.SkipWithError(("Start: " + s.message()).c_str());
    return;
  }
  if (Status s = executor.AddFlow(machine); !s.ok()) {
    state.SkipWithError(("AddFlow: " + s.message()).c_str());
    executor.Stop();
    return;
  }
  const Json input = FulfillInput();
  InstanceId last;
  for (auto _ : state) {
    auto id = executor.StartInstance(machine, input);
    Status idle = id.ok() ? executor.RunUntilIdle() : id.status();
    if (!idle.ok()) {
      state.SkipWithError(("instance: " + idle.message()).c_str());
      break;
    }
    last = *id;
  }
  executor.Stop();
  state.SetItemsProcessed(state.iterations());
  if (!last.empty()) {
    auto record = store.LoadInstance(last);
    if (!record.ok() || record->status != engine::RunStatus::kSucceeded) {
      state.SkipWithError("the last instance did not succeed");
    }
  }
}
BENCHMARK(BM_OneInstanceInMemory);

}  // namespace
}  // namespace sagaflow
