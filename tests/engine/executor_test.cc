#include "sagaflow/engine/executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/fault_injecting_state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::FaultInjectingStateStore;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using statelang::StateMachine;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr Duration kTimeout = seconds(120);

std::shared_ptr<const StateMachine> MustLoad(std::string_view text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

// Records hold JSON values either plainly or shared; this reads both the same way.
const Json& AsJson(const Json& value) { return value; }

std::vector<std::string> Trace(const InstanceRecord& r, int from = 0) {
  std::vector<std::string> out;
  for (std::size_t i = static_cast<std::size_t>(from); i < r.executions.size(); ++i) {
    const StateExecution& e = r.executions[i];
    out.push_back(e.state.str() + " " + std::string(ExecutionKindName(e.kind)) + " " +
                  std::string(RunStatusCode(e.status)));
  }
  return out;
}

constexpr std::string_view kThreeSteps = R"json({
  "Name": "threeSteps", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "Input": ["$.[n]"], "Output": {"aResult": "$.#root"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "Input": ["$.[aResult]"], "Output": {"bResult": "$.#root"},
          "Retry": [{"IntervalSeconds": 0.001, "MaxAttempts": 3}], "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c",
          "Input": ["$.[bResult]"], "Output": {"cResult": "$.#root"}, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})json";

constexpr std::string_view kFlaky = R"json({
  "Name": "flaky", "StartState": "Flaky",
  "States": {
    "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
              "Output": {"result": "$.#root"},
              "Retry": [{"Exceptions": ["DemoException", "NetworkError"], "IntervalSeconds": 1.5,
                         "MaxAttempts": 3, "BackoffRate": 1.5}],
              "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})json";

constexpr std::string_view kRecovery = R"json({
  "Name": "recovery", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "CompensateState": "UndoA", "Input": [{"throw": "$.[aThrows]"}],
          "Status": {"$Exception{DemoException}": "UN", "#root != null": "SU"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "CompensateState": "UndoB", "Input": [{"throw": "$.[bThrows]"}],
          "Status": {"$Exception{DemoException}": "UN", "#root != null": "SU"}, "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c", "Next": "Done"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoA"},
    "UndoB": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoB"},
    "Done": {"Type": "Succeed"}
  }
})json";

// Counts calls per task. Thread-safe.
class CallCounter {
 public:
  void Count(const std::string& task) {
    std::lock_guard lock(mu_);
    ++calls_[task];
  }
  int operator[](const std::string& task) const {
    std::lock_guard lock(mu_);
    auto it = calls_.find(task);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> calls_;
};

class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest() { EXPECT_THAT(registry_.errors().Define("DemoException", "Error"), IsOk()); }

  // An executor in manual mode on the virtual clock: RunUntilIdle (and Await, Operate) drive it
  // on the calling thread and jump the clock to the next timer.
  std::unique_ptr<Executor> Manual(StateStore& store, ExecutorOptions options = {}) {
    options.workers = 0;
    options.virtual_clock = &clock_;
    auto executor = std::make_unique<Executor>(std::move(options), registry_, store, clock_);
    EXPECT_THAT(executor->Start(), IsOk());
    return executor;
  }
  std::unique_ptr<Executor> Manual(ExecutorOptions options = {}) {
    return Manual(store_, std::move(options));
  }

  // The demo services of the Seata samples: throw DemoException when args[0].throw is "true".
  void RegisterRecoveryTasks() {
    for (const char* name : {"svc.a", "svc.b"}) {
      std::string task = name;
      registry_.add(task, [this, task](TaskContext&, const Json& args) -> Json {
        calls_.Count(task);
        if (args.at(0).value("throw", "") == "true") {
          throw TaskError("DemoException", "demo failure");
        }
        return Json{{"done", task}};
      });
    }
    for (const char* name : {"svc.c", "svc.undoA", "svc.undoB"}) {
      std::string task = name;
      registry_.add(task, [this, task](TaskContext&, const Json&) -> Json {
        calls_.Count(task);
        return true;
      });
    }
  }

  TaskRegistry registry_;
  adapters::MemoryStateStore store_;
  ManualClock clock_{TimePoint(seconds(1'700'000'000))};
  CallCounter calls_;
};

TEST_F(ExecutorTest, RunReturnsTheFinalRecord) {
  registry_.add("svc.a", [](int n) { return n + 1; });
  registry_.add("svc.b", [](int n) { return n * 10; });
  registry_.add("svc.c", [](int n) { return std::to_string(n); });
  auto m = MustLoad(kThreeSteps);
  auto executor = Manual();

  Result<InstanceRecord> r = executor->Run(m, Json{{"n", 4}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->finished());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(r->flow_name, "threeSteps");
  EXPECT_EQ(r->input, (Json{{"n", 4}}));
  EXPECT_EQ(r->context, (Json{{"n", 4}, {"aResult", 5}, {"bResult", 50}, {"cResult", "50"}}));
  EXPECT_THAT(Trace(*r), ElementsAre("A forward SU", "B forward SU", "C forward SU"));
  EXPECT_EQ(executor->live_instances(), 0u);

  // What Run returned is what the store holds.
  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  EXPECT_EQ(stored->context, r->context);
  EXPECT_THAT(Trace(*stored), ElementsAre("A forward SU", "B forward SU", "C forward SU"));

  // Await on a finished instance answers from the store.
  Result<InstanceRecord> again = executor->Await(r->id, kTimeout);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->status, RunStatus::kSucceeded);
  EXPECT_THAT(executor->Await(InstanceId("01JNOSUCHINSTANCE000000000"), kTimeout),
              StatusIs(StatusCode::kNotFound));
}

TEST_F(ExecutorTest, ManualModeRetriesTakeOnlyVirtualTime) {
  int calls = 0;
  registry_.add("svc.flaky", [&calls](TaskContext&, const Json&) -> Json {
    if (++calls <= 3) throw TaskError("DemoException", "not yet");
    return "finally";
  });
  auto m = MustLoad(kFlaky);
  auto executor = Manual();
  const TimePoint start = clock_.Now();

  Result<InstanceRecord> r = executor->Run(m, nullptr, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(calls, 4);
  ASSERT_EQ(r->executions.size(), 1u);
  EXPECT_EQ(r->executions[0].attempts, 4);
  EXPECT_EQ(AsJson(r->context).at("result"), "finally");
  // 1.5 + 2.25 + 3.375 seconds of backoff, all of it on the virtual clock.
  EXPECT_EQ(clock_.Now() - start,
            SecondsToDuration(1.5) + SecondsToDuration(2.25) + SecondsToDuration(3.375));
}

TEST_F(ExecutorTest, TaskContextCarriesInstanceStateAttemptAndStableKey) {
  struct Seen {
    InstanceId id;
    StateName state;
    int attempt;
    std::string key;
  };
  std::vector<Seen> seen;
  registry_.add("svc.flaky", [&seen](TaskContext& ctx, const Json&) -> Json {
    seen.push_back({ctx.instance_id(), ctx.state_name(), ctx.attempt(), ctx.idempotency_key()});
    if (ctx.attempt() < 3) throw TaskError("ConnectError", "refused");
    return true;
  });
  auto m = MustLoad(kFlaky);
  auto executor = Manual();
  Result<InstanceId> id = executor->StartInstance(m, Json::object());
  ASSERT_THAT(id, IsOk());
  Result<InstanceRecord> r = executor->Await(*id, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);

  ASSERT_EQ(seen.size(), 3u);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].id, *id);
    EXPECT_EQ(seen[i].state, StateName("Flaky"));
    EXPECT_EQ(seen[i].attempt, static_cast<int>(i) + 1);
    EXPECT_EQ(seen[i].key, seen[0].key);
  }
  EXPECT_FALSE(seen[0].key.empty());
  EXPECT_EQ(r->executions.at(0).idempotency_key, seen[0].key);
}

TEST_F(ExecutorTest, ThreadedModeRunsManyConcurrentInstances) {
  constexpr int kInstances = 2000;
  std::atomic<int> a_calls{0};
  std::atomic<int> b_calls{0};
  std::atomic<int> c_calls{0};
  registry_.add("svc.a", [&a_calls](int n) {
    a_calls.fetch_add(1);
    return n;
  });
  // Fails once per instance with a network error, which the default Retry rule retries.
  registry_.add("svc.b", [&b_calls](TaskContext& ctx, const Json& args) -> Json {
    b_calls.fetch_add(1);
    if (ctx.attempt() == 1) throw TaskError("ConnectError", "first attempt always fails");
    return args.at(0).get<int>() * 2;
  });
  registry_.add("svc.c", [&c_calls](int n) {
    c_calls.fetch_add(1);
    return n + 1;
  });
  std::mutex finished_mu;
  std::map<InstanceId, int> finished;
  SystemClock clock;
  auto executor =
      std::make_unique<Executor>(ExecutorOptions{.workers = 2,
                                                 .on_finished =
                                                     [&](const InstanceRecord& r) {
                                                       std::lock_guard lock(finished_mu);
                                                       ++finished[r.id];
                                                     }},
                                 registry_, store_, clock);
  ASSERT_THAT(executor->Start(), IsOk());
  auto m = MustLoad(kThreeSteps);

  std::vector<InstanceId> ids;
  for (int i = 0; i < kInstances; ++i) {
    Result<InstanceId> id = executor->StartInstance(m, Json{{"n", i}});
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  for (int i = 0; i < kInstances; ++i) {
    Result<InstanceRecord> r = executor->Await(ids[static_cast<std::size_t>(i)], kTimeout);
    ASSERT_THAT(r, IsOk());
    ASSERT_EQ(r->status, RunStatus::kSucceeded)
        << i << " " << (r->error ? r->error->type + ": " + r->error->message : "")
        << ::testing::PrintToString(Trace(*r));
    EXPECT_EQ(AsJson(r->context).at("cResult"), i * 2 + 1);
    EXPECT_EQ(r->executions.at(1).attempts, 2);
  }
  // Joins the executor's threads: every on_finished call has returned.
  executor->Stop();
  EXPECT_EQ(a_calls.load(), kInstances);
  EXPECT_EQ(b_calls.load(), 2 * kInstances);
  EXPECT_EQ(c_calls.load(), kInstances);
  EXPECT_EQ(executor->live_instances(), 0u);
  std::lock_guard lock(finished_mu);
  EXPECT_EQ(finished.size(), static_cast<std::size_t>(kInstances));
  for (const InstanceId& id : ids) EXPECT_EQ(finished[id], 1) << id.str();
}

TEST_F(ExecutorTest, StartInstanceRequiresAnObjectInput) {
  registry_.add("svc.flaky", [](const Json&) { return true; });
  auto m = MustLoad(kFlaky);
  auto executor = Manual();
  EXPECT_THAT(executor->StartInstance(m, Json::array({1, 2})),
              StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(executor->StartInstance(m, Json(42)), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(executor->StartInstance(m, Json("text")), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_EQ(store_.instance_count(), 0u);

  // null counts as an empty object.
  Result<InstanceRecord> r = executor->Run(m, nullptr, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->input, Json::object());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
}

constexpr std::string_view kCallsMissingTask = R"json({
  "Name": "callsMissingTask", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "missing"}
  }
})json";

TEST_F(ExecutorTest, RefusesAFlowCallingAnUnregisteredTask) {
  registry_.add("svc.a", [this](const Json&) {
    calls_.Count("svc.a");
    return true;
  });
  auto m = MustLoad(kCallsMissingTask);
  auto executor = Manual();
  EXPECT_THAT(executor->AddFlow(m),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("svc.missing")));
  EXPECT_THAT(executor->StartInstance(m, Json::object()),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("svc.missing")));
  EXPECT_EQ(store_.instance_count(), 0u);
  EXPECT_EQ(calls_["svc.a"], 0);
}

TEST_F(ExecutorTest, InstanceReachingAnUnregisteredTaskStopsWithNotFound) {
  registry_.add("svc.a", [this](const Json&) {
    calls_.Count("svc.a");
    return true;
  });
  auto m = MustLoad(kCallsMissingTask);
  auto executor = Manual(ExecutorOptions{.require_registered_tasks = false});
  ASSERT_THAT(executor->AddFlow(m), IsOk());
  Result<InstanceId> id = executor->StartInstance(m, Json::object());
  ASSERT_THAT(id, IsOk());
  EXPECT_THAT(executor->Await(*id, kTimeout),
              StatusIs(StatusCode::kNotFound, HasSubstr("svc.missing")));
  EXPECT_EQ(calls_["svc.a"], 1);
  Result<InstanceRecord> stored = store_.LoadInstance(*id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kRunning);  // left for an operator or a later deploy
}

TEST_F(ExecutorTest, BusinessKeyMakesStartIdempotent) {
  registry_.add("svc.flaky", [this](const Json&) {
    calls_.Count("svc.flaky");
    return true;
  });
  auto m = MustLoad(kFlaky);
  auto executor = Manual();
  StartOptions key{.business_key = "order-1001"};

  Result<InstanceId> first = executor->StartInstance(m, Json{{"order", 1001}}, key);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(executor->Await(*first, kTimeout), IsOk());

  Result<InstanceId> repeat = executor->StartInstance(m, Json{{"order", 1001}}, key);
  ASSERT_THAT(repeat, IsOk());
  EXPECT_EQ(*repeat, *first);
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  EXPECT_EQ(calls_["svc.flaky"], 1);  // the repeat ran nothing
  EXPECT_EQ(store_.instance_count(), 1u);

  EXPECT_THAT(executor->StartInstance(m, Json{{"order", 1002}}, key),
              StatusIs(StatusCode::kConflict, HasSubstr("order-1001")));
  EXPECT_EQ(store_.instance_count(), 1u);

  // Without a key every start is a new instance.
  ASSERT_THAT(executor->Run(m, Json{{"order", 1001}}, {}, kTimeout), IsOk());
  EXPECT_EQ(store_.instance_count(), 2u);
}

TEST_F(ExecutorTest, OperateForward) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  auto executor = Manual();
  Result<InstanceRecord> r = executor->Run(m, Json{{"bThrows", "true"}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->status, RunStatus::kUnknown);
  ASSERT_THAT(Trace(*r), ElementsAre("A forward SU", "B forward UN"));

  Result<InstanceRecord> forwarded =
      executor->Operate(Operation::kForward, r->id, Json{{"bThrows", "false"}}, kTimeout);
  ASSERT_THAT(forwarded, IsOk());
  EXPECT_EQ(forwarded->status, RunStatus::kSucceeded);
  EXPECT_THAT(Trace(*forwarded),
              ElementsAre("A forward SU", "B forward UN", "B forward SU", "C forward SU"));
  EXPECT_EQ(calls_["svc.a"], 1);
  EXPECT_EQ(calls_["svc.b"], 2);
  EXPECT_EQ(AsJson(forwarded->context).at("bThrows"), "false");

  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  EXPECT_EQ(stored->executions.size(), 4u);
  EXPECT_TRUE(stored->executions[1].superseded);

  // Idempotent: forwarding a succeeded instance again changes nothing.
  Result<InstanceRecord> again = executor->Operate(Operation::kForward, r->id, nullptr, kTimeout);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->status, RunStatus::kSucceeded);
  EXPECT_EQ(again->executions.size(), 4u);
  EXPECT_EQ(calls_["svc.b"], 2);
}

TEST_F(ExecutorTest, OperateCompensate) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  auto executor = Manual();
  Result<InstanceRecord> r = executor->Run(m, Json{{"bThrows", "true"}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());

  Result<InstanceRecord> compensated =
      executor->Operate(Operation::kCompensate, r->id, nullptr, kTimeout);
  ASSERT_THAT(compensated, IsOk());
  EXPECT_THAT(compensated->compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_EQ(compensated->status, RunStatus::kUnknown);
  EXPECT_THAT(Trace(*compensated, 2),
              ElementsAre("UndoB compensation SU", "UndoA compensation SU"));
  EXPECT_EQ(calls_["svc.undoA"], 1);
  EXPECT_EQ(calls_["svc.undoB"], 1);

  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_THAT(stored->compensation_status, Optional(RunStatus::kSucceeded));

  // Forward after compensation is refused; compensate again does nothing.
  EXPECT_THAT(executor->Operate(Operation::kForward, r->id, nullptr, kTimeout),
              StatusIs(StatusCode::kFailedPrecondition));
  ASSERT_THAT(executor->Operate(Operation::kCompensate, r->id, nullptr, kTimeout), IsOk());
  EXPECT_EQ(calls_["svc.undoA"], 1);
  EXPECT_EQ(calls_["svc.undoB"], 1);
}

TEST_F(ExecutorTest, OperateSkip) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  auto executor = Manual();
  Result<InstanceRecord> r = executor->Run(m, Json{{"bThrows", "true"}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());

  Result<InstanceRecord> skipped = executor->Operate(Operation::kSkip, r->id, nullptr, kTimeout);
  ASSERT_THAT(skipped, IsOk());
  EXPECT_EQ(skipped->status, RunStatus::kSucceeded);
  EXPECT_THAT(Trace(*skipped),
              ElementsAre("A forward SU", "B forward UN", "B forward SK", "C forward SU"));
  EXPECT_EQ(calls_["svc.b"], 1);
  EXPECT_EQ(calls_["svc.c"], 1);
}

TEST_F(ExecutorTest, OperateRefusals) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  auto executor = Manual();
  Result<InstanceRecord> r = executor->Run(m, Json{{"bThrows", "true"}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(executor->Operate(Operation::kForward, InstanceId("01JNOSUCHINSTANCE000000000"),
                                nullptr, kTimeout),
              StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(executor->Operate(Operation::kForward, r->id, Json::array({1}), kTimeout),
              StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(executor->Operate(Operation::kSkip, r->id, Json("x"), kTimeout),
              StatusIs(StatusCode::kInvalidArgument));
  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kUnknown);
  EXPECT_EQ(stored->executions.size(), 2u);
}

TEST_F(ExecutorTest, OperateInThreadedMode) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  SystemClock clock;
  Executor executor(ExecutorOptions{.workers = 2}, registry_, store_, clock);
  ASSERT_THAT(executor.Start(), IsOk());
  Result<InstanceRecord> r = executor.Run(m, Json{{"aThrows", "true"}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->status, RunStatus::kUnknown);
  Result<InstanceRecord> forwarded =
      executor.Operate(Operation::kForward, r->id, Json{{"aThrows", "false"}}, kTimeout);
  ASSERT_THAT(forwarded, IsOk());
  EXPECT_EQ(forwarded->status, RunStatus::kSucceeded);
  EXPECT_THAT(Trace(*forwarded, 1), ElementsAre("A forward SU", "B forward SU", "C forward SU"));
}

// A gate a task waits at until the test opens it. Opening twice is harmless.
class Gate {
 public:
  void Open() {
    std::call_once(opened_, [this] { promise_.set_value(); });
  }
  std::shared_future<void> opened() const { return future_; }

 private:
  std::promise<void> promise_;
  std::shared_future<void> future_ = promise_.get_future().share();
  std::once_flag opened_;
};

// Opens a gate when it goes out of scope: declared after the executor, it lets a blocked task
// go on before the executor joins its threads, on every way out of a test.
class OpenOnExit {
 public:
  explicit OpenOnExit(Gate& gate) : gate_(gate) {}
  ~OpenOnExit() { gate_.Open(); }

 private:
  Gate& gate_;
};

TEST_F(ExecutorTest, OperationsOnARunningInstanceAreRefused) {
  Gate entered;
  Gate release;
  registry_.add("svc.flaky",
                [&entered, released = release.opened()](TaskContext&, const Json&) -> Json {
                  entered.Open();
                  released.wait();
                  return true;
                });
  auto m = MustLoad(kFlaky);
  SystemClock clock;
  Executor executor(ExecutorOptions{.workers = 2}, registry_, store_, clock);
  ASSERT_THAT(executor.Start(), IsOk());
  OpenOnExit open_on_exit(release);
  Result<InstanceId> id = executor.StartInstance(m, Json::object());
  ASSERT_THAT(id, IsOk());
  ASSERT_EQ(entered.opened().wait_for(kTimeout), std::future_status::ready);

  for (Operation op : {Operation::kForward, Operation::kCompensate, Operation::kSkip}) {
    EXPECT_THAT(executor.Operate(op, *id, nullptr, kTimeout),
                StatusIs(StatusCode::kFailedPrecondition))
        << OperationName(op);
  }
  EXPECT_EQ(executor.live_instances(), 1u);
  release.Open();
  Result<InstanceRecord> r = executor.Await(*id, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(r->executions.size(), 1u);
}

TEST_F(ExecutorTest, OnFinishedIsCalledOncePerFinishedRunOrOperation) {
  RegisterRecoveryTasks();
  auto m = MustLoad(kRecovery);
  std::map<InstanceId, std::vector<RunStatus>> finished;
  bool stored_before_reported = true;
  auto executor = Manual(ExecutorOptions{.on_finished = [&](const InstanceRecord& r) {
    finished[r.id].push_back(r.status);
    Result<InstanceRecord> stored = store_.LoadInstance(r.id);
    if (!stored.ok() || stored->status != r.status || !stored->finished()) {
      stored_before_reported = false;
    }
  }});
  std::vector<InstanceId> ids;
  for (const char* b_throws : {"false", "true", "false"}) {
    Result<InstanceId> id = executor->StartInstance(m, Json{{"bThrows", b_throws}});
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  EXPECT_EQ(finished.size(), 3u);
  EXPECT_THAT(finished[ids[0]], ElementsAre(RunStatus::kSucceeded));
  EXPECT_THAT(finished[ids[1]], ElementsAre(RunStatus::kUnknown));
  EXPECT_THAT(finished[ids[2]], ElementsAre(RunStatus::kSucceeded));

  ASSERT_THAT(executor->Operate(Operation::kForward, ids[1], Json{{"bThrows", "false"}}, kTimeout),
              IsOk());
  EXPECT_THAT(finished[ids[1]], ElementsAre(RunStatus::kUnknown, RunStatus::kSucceeded));
  EXPECT_TRUE(stored_before_reported);
}

// ---------------------------------------------------------------------------------------------
// A store that refuses writes

constexpr std::string_view kTwoSteps = R"json({
  "Name": "twoSteps", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "Output": {"aResult": "$.#root"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "Output": {"bResult": "$.#root"}}
  }
})json";

class ExecutorStoreFaultTest : public ExecutorTest {
 protected:
  // The executor retries a refused write after 10 ms, then 20 ms, then 25 ms (the cap).
  std::unique_ptr<Executor> ManualOnFaultyStore(ExecutorOptions options = {}) {
    options.store_retry_initial = milliseconds(10);
    options.store_retry_max = milliseconds(25);
    return Manual(faulty_, std::move(options));
  }

  FaultInjectingStateStore faulty_{store_};
};

TEST_F(ExecutorStoreFaultTest, DoesNotInvokeTheNextTaskUntilTheWriteSucceeded) {
  int failed_writes_seen_by_b = -1;
  std::optional<InstanceRecord> durable_when_b_ran;
  registry_.add("svc.a", [this](TaskContext&, const Json&) -> Json {
    faulty_.FailNextWrites(3);  // the write recording A's result and B's start
    return "a";
  });
  registry_.add("svc.b", [&, this](TaskContext& ctx, const Json&) -> Json {
    failed_writes_seen_by_b = faulty_.failed_writes();
    auto stored = store_.LoadInstance(ctx.instance_id());
    if (stored.ok()) durable_when_b_ran = *stored;
    return "b";
  });
  auto m = MustLoad(kTwoSteps);
  auto executor = ManualOnFaultyStore();
  const TimePoint start = clock_.Now();

  Result<InstanceRecord> r = executor->Run(m, Json::object(), {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(failed_writes_seen_by_b, 3);
  ASSERT_TRUE(durable_when_b_ran.has_value());
  ASSERT_EQ(durable_when_b_ran->executions.size(), 2u);
  EXPECT_EQ(durable_when_b_ran->executions[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(durable_when_b_ran->executions[0].output, Json("a"));
  EXPECT_EQ(durable_when_b_ran->executions[1].attempts, 1);  // "started" before the call
  EXPECT_EQ(durable_when_b_ran->executions[1].status, RunStatus::kRunning);
  // The write was retried through the timer queue, in virtual time.
  EXPECT_EQ(clock_.Now() - start, milliseconds(10 + 20 + 25));

  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  EXPECT_EQ(stored->context, (Json{{"aResult", "a"}, {"bResult", "b"}}));
  EXPECT_THAT(Trace(*stored), ElementsAre("A forward SU", "B forward SU"));
}

TEST_F(ExecutorStoreFaultTest, TheFirstTasksStartIsStoredWithTheInstanceBeforeItRuns) {
  std::optional<InstanceRecord> stored_when_a_ran;
  int writes_before_a = -1;
  registry_.add("svc.a", [&, this](TaskContext& ctx, const Json&) -> Json {
    writes_before_a = faulty_.write_calls();
    auto stored = store_.LoadInstance(ctx.instance_id());
    if (stored.ok()) stored_when_a_ran = *stored;
    return "a";
  });
  registry_.add("svc.b", [](const Json&) { return "b"; });
  auto m = MustLoad(kTwoSteps);
  auto executor = ManualOnFaultyStore();

  Result<InstanceRecord> r = executor->Run(m, Json{{"n", 1}}, {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  // One create carried the instance and A's "started" record: no write happened before A ran.
  EXPECT_EQ(writes_before_a, 0);
  ASSERT_TRUE(stored_when_a_ran.has_value());
  ASSERT_EQ(stored_when_a_ran->executions.size(), 1u);
  EXPECT_EQ(stored_when_a_ran->executions[0].state.str(), "A");
  EXPECT_EQ(stored_when_a_ran->executions[0].attempts, 1);
  EXPECT_EQ(stored_when_a_ran->executions[0].status, RunStatus::kRunning);
  EXPECT_EQ(stored_when_a_ran->cursor.active_execution, 0);
  EXPECT_EQ(stored_when_a_ran->owner, executor->owner());
}

TEST_F(ExecutorStoreFaultTest, ReportsTheEndOnlyAfterTheFinalWriteSucceeded) {
  registry_.add("svc.a", [](const Json&) { return "a"; });
  registry_.add("svc.b", [this](TaskContext&, const Json&) -> Json {
    faulty_.FailNextWrites(4);  // the write recording the end of the run
    return "b";
  });
  std::optional<RunStatus> stored_when_reported;
  auto executor = ManualOnFaultyStore(ExecutorOptions{.on_finished = [&](const InstanceRecord& r) {
    auto stored = store_.LoadInstance(r.id);
    if (stored.ok()) stored_when_reported = stored->status;
  }});
  auto m = MustLoad(kTwoSteps);

  Result<InstanceRecord> r = executor->Run(m, Json::object(), {}, kTimeout);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(faulty_.failed_writes(), 4);
  EXPECT_THAT(stored_when_reported, Optional(RunStatus::kSucceeded));
  Result<InstanceRecord> stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  EXPECT_TRUE(stored->finished());
}

TEST_F(ExecutorStoreFaultTest, RefusedCreateFailsTheStartAndRunsNothing) {
  registry_.add("svc.a", [this](const Json&) {
    calls_.Count("svc.a");
    return "a";
  });
  registry_.add("svc.b", [](const Json&) { return "b"; });
  auto m = MustLoad(kTwoSteps);
  auto executor = ManualOnFaultyStore();
  faulty_.FailNextCreates(1);
  EXPECT_THAT(executor->StartInstance(m, Json::object()), StatusIs(StatusCode::kUnavailable));
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  EXPECT_EQ(calls_["svc.a"], 0);
  EXPECT_EQ(store_.instance_count(), 0u);
  EXPECT_EQ(executor->live_instances(), 0u);
}

}  // namespace
}  // namespace sagaflow::engine
