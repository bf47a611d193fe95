#include "sagaflow/engine/interpreter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/error_types.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using statelang::StateMachine;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::UnorderedElementsAre;

std::shared_ptr<const StateMachine> MustLoad(std::string_view text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

TaskOutcome Ok(Json result) { return TaskOutcome{true, std::move(result), {}}; }
TaskOutcome Throw(std::string type, std::string message = "boom") {
  return TaskOutcome{false, nullptr, TaskFailure{std::move(type), std::move(message)}};
}

// A mocked service: receives the rendered argument list, says how the call ended.
using Mock = std::function<TaskOutcome(const Json& args)>;

// Call k gets outcome k; the last one repeats.
Mock Sequence(std::vector<TaskOutcome> outcomes) {
  auto calls = std::make_shared<std::size_t>(0);
  return [outcomes = std::move(outcomes), calls](const Json&) {
    std::size_t i = std::min(*calls, outcomes.size() - 1);
    ++*calls;
    return outcomes[i];
  };
}
Mock Returns(Json v) { return Sequence({Ok(std::move(v))}); }
Mock Throws(std::string type) { return Sequence({Throw(std::move(type))}); }
Mock Echo(std::size_t n) {
  return [n](const Json& args) { return Ok(args.at(n)); };
}
// Throws DemoException when args[0].throw == "true", else echoes args[0] (the demo services of
// the Seata samples).
Mock DemoService() {
  return [](const Json& args) {
    if (args.at(0).value("throw", "") == "true") return Throw("DemoException", "demo failure");
    return Ok(args.at(0));
  };
}

Duration Secs(double s) { return SecondsToDuration(s); }

// Records hold JSON values either plainly or shared; this reads both the same way.
const Json& AsJson(const Json& value) { return value; }

class InterpreterTest : public ::testing::Test {
 protected:
  InterpreterTest() {
    EXPECT_THAT(errors_.Define("DemoException", "Error"), IsOk());
    EXPECT_THAT(errors_.Define("PaymentDeclined", "Error"), IsOk());
  }

  InstanceRecord NewRecord(Json input, std::string id = "01JTESTINTERPRETER00000000") {
    InstanceRecord r;
    r.id = InstanceId(std::move(id));
    r.flow_name = "test";
    r.input = input;
    r.context = std::move(input);
    return r;
  }

  // The result of the attempt in flight of the active execution.
  Step TaskDone(InstanceRecord& r, const StateMachine& m, TaskOutcome outcome, TimePoint now) {
    const int e = r.cursor.active_execution;
    const int attempt = e >= 0 ? r.executions.at(static_cast<std::size_t>(e)).attempts : 0;
    return interp_.OnEvent(r, m, TaskResult{e, attempt, std::move(outcome)}, now);
  }
  // The backoff of the active execution is over.
  Step RetryDue(InstanceRecord& r, const StateMachine& m) {
    const int e = r.cursor.active_execution;
    return interp_.OnEvent(r, m, TimerDue{e, r.executions.at(static_cast<std::size_t>(e)).attempts},
                           now_);
  }

  // Plays the executor's part: invokes mocks and waits out backoffs in virtual time until the
  // run or operation is over.
  void Drive(InstanceRecord& r, const StateMachine& m, Step step) {
    for (int guard = 0; step.decision.kind != Decision::Kind::kFinished; ++guard) {
      ASSERT_LT(guard, 10000) << "the run does not end";
      ASSERT_FALSE(r.finished());
      if (step.decision.kind == Decision::Kind::kSleep) {
        ASSERT_GE(step.decision.wake_at, now_);
        waits_.push_back(step.decision.wake_at - now_);
        now_ = step.decision.wake_at;
        step = interp_.OnEvent(r, m, TimerDue{step.decision.execution, step.decision.attempt},
                               now_);
        continue;
      }
      ASSERT_EQ(step.decision.execution, r.cursor.active_execution);
      const StateExecution& e = r.executions.at(static_cast<std::size_t>(step.decision.execution));
      std::string task = m.state(e.state_index).service_task().task.str();
      ++calls_[task];
      invocations_.push_back(Invocation{e.id, e.attempts, e.idempotency_key});
      auto it = mocks_.find(task);
      if (it == mocks_.end()) ADD_FAILURE() << "no mock for " << task;
      TaskOutcome outcome = it == mocks_.end() ? Throw("Error", "no mock") : it->second(e.input);
      now_ += milliseconds(10);
      step = TaskDone(r, m, std::move(outcome), now_);
    }
    EXPECT_TRUE(r.finished());
    EXPECT_EQ(r.cursor.active_execution, -1);
  }

  InstanceRecord Run(const StateMachine& m, Json input,
                     std::string id = "01JTESTINTERPRETER00000000") {
    InstanceRecord r = NewRecord(std::move(input), std::move(id));
    Drive(r, m, interp_.Start(r, m, now_));
    return r;
  }

  void Operate(InstanceRecord& r, const StateMachine& m, Result<Step> first) {
    ASSERT_THAT(first, IsOk());
    Drive(r, m, std::move(first).value());
  }

  // "State kind STATUS" per execution from `from` on; compensations add "of <state>".
  static std::vector<std::string> Trace(const InstanceRecord& r, int from = 0) {
    std::vector<std::string> out;
    for (std::size_t i = static_cast<std::size_t>(from); i < r.executions.size(); ++i) {
      const StateExecution& e = r.executions[i];
      std::string line = e.state.str() + " " + std::string(ExecutionKindName(e.kind)) + " " +
                         std::string(RunStatusCode(e.status));
      if (e.kind == ExecutionKind::kCompensation) {
        line += " of " + r.executions.at(static_cast<std::size_t>(e.compensates)).state.str();
      }
      out.push_back(line);
    }
    return out;
  }

  struct Invocation {
    int execution;
    int attempt;
    std::string idempotency_key;
  };

  ErrorTypes errors_;
  Interpreter interp_{errors_};
  TimePoint now_{seconds(1'700'000'000)};
  std::map<std::string, Mock> mocks_;
  std::map<std::string, int> calls_;
  std::vector<Duration> waits_;
  std::vector<Invocation> invocations_;
};

// ---------------------------------------------------------------------------------------------
// Machine status

constexpr std::string_view kTwoSteps = R"json({
  "Name": "twoSteps", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "Input": ["$.[x]"], "Output": {"aResult": "$.#root"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "Input": ["$.[aResult]"], "Output": {"bResult": "$.#root"}}
  }
})json";

TEST_F(InterpreterTest, AllStepsSucceedMachineSucceeds) {
  auto m = MustLoad(kTwoSteps);
  mocks_["svc.a"] = Echo(0);
  mocks_["svc.b"] = [](const Json& args) { return Ok(args.at(0).get<int>() * 2); };
  InstanceRecord r = NewRecord({{"x", 21}});

  Step step = interp_.Start(r, *m, now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kInvoke);
  EXPECT_EQ(step.decision.execution, 0);
  EXPECT_THAT(step.changed_executions, ElementsAre(0));  // "started" is stored before the call
  EXPECT_EQ(r.executions[0].attempts, 1);
  EXPECT_EQ(r.executions[0].status, RunStatus::kRunning);
  EXPECT_EQ(r.executions[0].input, Json::array({21}));
  EXPECT_EQ(r.status, RunStatus::kRunning);

  step = TaskDone(r, *m, Ok(21), now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kInvoke);
  EXPECT_EQ(step.decision.execution, 1);
  EXPECT_THAT(step.changed_executions, UnorderedElementsAre(0, 1));
  EXPECT_EQ(r.executions[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(r.executions[0].output, Json(21));

  Drive(r, *m, std::move(step));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.compensation_status, std::nullopt);
  EXPECT_EQ(r.error, std::nullopt);
  EXPECT_EQ(r.context, (Json{{"x", 21}, {"aResult", 21}, {"bResult", 42}}));
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward SU"));
  EXPECT_TRUE(r.ended_at.has_value());
}

constexpr std::string_view kStatusFlow = R"json({
  "Name": "statusFlow", "StartState": "Check",
  "States": {
    "Check": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "check",
              "Input": ["$.[order]"],
              "Output": {"checkResult": "$.#root", "okFlag": "$.#root.ok"},
              "Status": {"#root.ok == true": "SU", "#root.ok == false": "FA"},
              "Next": "Notify"},
    "Notify": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "notify",
               "Input": ["$.[checkResult]", "literal text stays literal"],
               "Output": {"notified": "$.#root"}, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST_F(InterpreterTest, FailedStateWithoutErrorKeepsFlowingAndMachineEndsFailed) {
  auto m = MustLoad(kStatusFlow);
  mocks_["svc.check"] = Returns({{"ok", false}});
  mocks_["svc.notify"] = Echo(1);
  InstanceRecord r = Run(*m, {{"order", {{"id", 9}}}});
  EXPECT_THAT(Trace(r), ElementsAre("Check forward FA", "Notify forward SU"));
  EXPECT_EQ(r.status, RunStatus::kFailed);  // though it reached Succeed
  EXPECT_EQ(r.error, std::nullopt);
  // Output is applied although Status said FA.
  EXPECT_EQ(AsJson(r.context).at("checkResult"), (Json{{"ok", false}}));
  EXPECT_EQ(AsJson(r.context).at("okFlag"), Json(false));
  EXPECT_EQ(AsJson(r.context).at("notified"), "literal text stays literal");
}

TEST_F(InterpreterTest, StatusMatchingSuGivesSucceededMachine) {
  auto m = MustLoad(kStatusFlow);
  mocks_["svc.check"] = Returns({{"ok", true}});
  mocks_["svc.notify"] = Returns(true);
  InstanceRecord r = Run(*m, {{"order", {{"id", 9}}}});
  EXPECT_THAT(Trace(r), ElementsAre("Check forward SU", "Notify forward SU"));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

constexpr std::string_view kUpdateThenCheck = R"json({
  "Name": "updateThenCheck", "StartState": "Update",
  "States": {
    "Update": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "update",
               "IsForUpdate": true, "Next": "Check"},
    "Check": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "check",
              "Status": {"#root == true": "SU", "#root == false": "FA"}, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST_F(InterpreterTest, SucceededForUpdateStateAndLaterFailureGiveUnknown) {
  auto m = MustLoad(kUpdateThenCheck);
  mocks_["svc.update"] = Returns(true);
  mocks_["svc.check"] = Returns(false);
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("Update forward SU", "Check forward FA"));
  EXPECT_TRUE(r.executions[0].for_update);
  EXPECT_EQ(r.status, RunStatus::kUnknown);
}

constexpr std::string_view kStepThenFail = R"json({
  "Name": "stepThenFail", "StartState": "Step",
  "States": {
    "Step": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "step",
             "IsForUpdate": %s, "Next": "Route"},
    "Route": {"Type": "Choice", "Choices": [{"Expression": "[go] == true", "Next": "Done"}],
              "Default": "Stop"},
    "Done": {"Type": "Succeed"},
    "Stop": {"Type": "Fail", "ErrorCode": "STOPPED", "Message": "stopped by the choice"}
  }
})json";

std::string WithForUpdate(std::string_view text, bool for_update) {
  std::string s(text);
  s.replace(s.find("%s"), 2, for_update ? "true" : "false");
  return s;
}

TEST_F(InterpreterTest, ReachingFailAfterSucceededStepsIsFailed) {
  auto m = MustLoad(WithForUpdate(kStepThenFail, false));
  mocks_["svc.step"] = Returns(1);
  InstanceRecord r = Run(*m, {{"go", false}});
  EXPECT_THAT(Trace(r), ElementsAre("Step forward SU"));
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, "STOPPED");
  EXPECT_EQ(r.error_message, "stopped by the choice");
  EXPECT_TRUE(r.cursor.reached_fail);
}

TEST_F(InterpreterTest, ReachingFailAfterAForUpdateStateIsUnknown) {
  auto m = MustLoad(WithForUpdate(kStepThenFail, true));
  mocks_["svc.step"] = Returns(1);
  InstanceRecord r = Run(*m, {{"go", false}});
  EXPECT_EQ(r.status, RunStatus::kUnknown);
  EXPECT_EQ(r.error_code, "STOPPED");
}

TEST_F(InterpreterTest, ReachingSucceedIsSucceeded) {
  auto m = MustLoad(WithForUpdate(kStepThenFail, true));
  mocks_["svc.step"] = Returns(1);
  InstanceRecord r = Run(*m, {{"go", true}});
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.error_code, "");
}

TEST_F(InterpreterTest, UncaughtErrorEndsTheRun) {
  auto m = MustLoad(kTwoSteps);
  mocks_["svc.a"] = Sequence({Throw("PaymentDeclined", "card refused")});
  mocks_["svc.b"] = Returns(1);
  InstanceRecord r = Run(*m, {{"x", 1}});
  EXPECT_THAT(Trace(r), ElementsAre("A forward FA"));
  EXPECT_EQ(calls_["svc.b"], 0);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error, (TaskFailure{"PaymentDeclined", "card refused"}));
  EXPECT_EQ(r.executions[0].error, (TaskFailure{"PaymentDeclined", "card refused"}));
  EXPECT_FALSE(AsJson(r.context).contains("aResult"));
}

TEST_F(InterpreterTest, UncaughtErrorOfForUpdateStateIsUnknown) {
  auto m = MustLoad(kUpdateThenCheck);
  mocks_["svc.update"] = Throws("PaymentDeclined");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("Update forward UN"));
  EXPECT_EQ(r.status, RunStatus::kUnknown);
  EXPECT_EQ(calls_["svc.check"], 0);
}

// The error's own status map says SU, so no state decides the machine: the error does.
constexpr std::string_view kErrorMappedToSu = R"json({
  "Name": "errorMappedToSu", "StartState": "Call",
  "States": {
    "Call": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "call",
             "Status": {"$Exception{NetworkError}": "SU"}, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST_F(InterpreterTest, TimeoutErrorWithNothingElseDecidedIsUnknown) {
  auto m = MustLoad(kErrorMappedToSu);
  mocks_["svc.call"] = Throws("java.net.SocketTimeoutException");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("Call forward SU"));
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(errors_.Canonical(r.error->type), "TimeoutError");
  EXPECT_EQ(r.status, RunStatus::kUnknown);
}

TEST_F(InterpreterTest, OtherErrorWithNothingElseDecidedIsFailed) {
  auto m = MustLoad(kErrorMappedToSu);
  mocks_["svc.call"] = Throws("ConnectError");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("Call forward SU"));
  EXPECT_EQ(r.status, RunStatus::kFailed);
}

constexpr std::string_view kChoiceNoDefault = R"json({
  "Name": "choiceNoDefault", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Expression": "[a] == 1", "Next": "Done"}]},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST_F(InterpreterTest, ChoiceWithoutMatchOrDefaultFailsTheMachine) {
  auto m = MustLoad(kChoiceNoDefault);
  mocks_["svc.a"] = Returns(true);
  InstanceRecord r = Run(*m, {{"a", 3}});
  EXPECT_EQ(r.status, RunStatus::kFailed);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_THAT(r.error->message, HasSubstr("C"));
}

// ---------------------------------------------------------------------------------------------
// State status

constexpr std::string_view kStatusOrder = R"json({
  "Name": "statusOrder", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s",
          "Status": {"#root.code >= 10": "FA", "#root.code >= 0": "SU", "#root.code < 0": "UN"}}
  }
})json";

TEST_F(InterpreterTest, FirstTrueStatusRuleWinsInDeclaredOrder) {
  auto m = MustLoad(kStatusOrder);
  const std::vector<std::pair<int, RunStatus>> cases = {
      {20, RunStatus::kFailed}, {5, RunStatus::kSucceeded}, {-1, RunStatus::kUnknown}};
  for (const auto& [code, want] : cases) {
    mocks_["svc.s"] = Returns({{"code", code}});
    InstanceRecord r = Run(*m, Json::object());
    ASSERT_EQ(r.executions.size(), 1u);
    EXPECT_EQ(r.executions[0].status, want) << "code " << code;
    EXPECT_EQ(r.status, want) << "code " << code;
  }
}

constexpr std::string_view kExceptionStatus = R"json({
  "Name": "exceptionStatus", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s",
          "IsForUpdate": %s,
          "Status": {"$Exception{NetworkError}": "UN", "$Exception{java.lang.Exception}": "FA",
                     "#root != null": "SU"}}
  }
})json";

TEST_F(InterpreterTest, ExceptionStatusKeysMatchTheErrorAndItsAncestors) {
  auto m = MustLoad(WithForUpdate(kExceptionStatus, false));
  const std::vector<std::pair<TaskOutcome, RunStatus>> cases = {
      // Both exception keys hold for a network error: the first one written wins.
      {Throw("ConnectError"), RunStatus::kUnknown},
      {Throw("java.net.SocketTimeoutException"), RunStatus::kUnknown},
      {Throw("DemoException"), RunStatus::kFailed},
      {Throw("NeverDefined"), RunStatus::kFailed},
      {Ok(1), RunStatus::kSucceeded},
  };
  for (const auto& [outcome, want] : cases) {
    mocks_["svc.s"] = Sequence({outcome});
    InstanceRecord r = Run(*m, Json::object());
    ASSERT_EQ(r.executions.size(), 1u);
    EXPECT_EQ(r.executions[0].status, want) << outcome.failure.type;
  }
}

TEST_F(InterpreterTest, NoStatusRuleMatchesGivesFailedOrUnknownForUpdate) {
  auto plain = MustLoad(WithForUpdate(kExceptionStatus, false));
  auto update = MustLoad(WithForUpdate(kExceptionStatus, true));
  mocks_["svc.s"] = Returns(nullptr);  // "#root != null" is false: nothing matches
  EXPECT_EQ(Run(*plain, Json::object()).executions.at(0).status, RunStatus::kFailed);
  EXPECT_EQ(Run(*update, Json::object()).executions.at(0).status, RunStatus::kUnknown);
}

constexpr std::string_view kNoStatus = R"json({
  "Name": "noStatus", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s", "IsForUpdate": %s}
  }
})json";

TEST_F(InterpreterTest, ErrorWithoutStatusMapIsFailedOrUnknownForUpdate) {
  auto plain = MustLoad(WithForUpdate(kNoStatus, false));
  auto update = MustLoad(WithForUpdate(kNoStatus, true));
  mocks_["svc.s"] = Throws("DemoException");
  InstanceRecord r = Run(*plain, Json::object());
  EXPECT_EQ(r.executions.at(0).status, RunStatus::kFailed);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  r = Run(*update, Json::object());
  EXPECT_EQ(r.executions.at(0).status, RunStatus::kUnknown);
  EXPECT_EQ(r.status, RunStatus::kUnknown);
}

constexpr std::string_view kBadStatusExpression = R"json({
  "Name": "badStatus", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s",
          "Output": {"sResult": "$.#root"},
          "Status": {"#root.a.b == 1": "SU"}, "Next": "After"},
    "After": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "after"}
  }
})json";

TEST_F(InterpreterTest, StatusExpressionThatFailsOnTheResultIsAnExpressionError) {
  auto m = MustLoad(kBadStatusExpression);
  mocks_["svc.s"] = Returns({{"a", nullptr}});
  mocks_["svc.after"] = Returns(true);
  InstanceRecord r = Run(*m, Json::object());
  ASSERT_EQ(r.executions.size(), 1u);
  EXPECT_EQ(calls_["svc.after"], 0);
  ASSERT_TRUE(r.executions[0].error.has_value());
  EXPECT_EQ(r.executions[0].error->type, "ExpressionError");
  EXPECT_THAT(r.executions[0].error->message, HasSubstr("#root.a.b == 1"));
  EXPECT_EQ(r.executions[0].status, RunStatus::kFailed);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->type, "ExpressionError");
  EXPECT_EQ(r.status, RunStatus::kFailed);
}

constexpr std::string_view kInputOutput = R"json({
  "Name": "inputOutput", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s",
          "Input": [{"x": "$.[missing]", "y": "$.[a]", "lit": "plain",
                     "nested": {"n": "$.[missing]"}},
                    "literal text stays literal", "$.[missing]", 5, "$.[req].items[1]"],
          "Output": {"first": "$.#root[0]", "absent": "$.#root[0].nope"}}
  }
})json";

TEST_F(InterpreterTest, InputDropsNullMapEntriesAndKeepsLiterals) {
  auto m = MustLoad(kInputOutput);
  mocks_["svc.s"] = [](const Json& args) { return Ok(args); };
  InstanceRecord r = Run(*m, {{"a", 1}, {"req", {{"items", {10, 20, 30}}}}});
  ASSERT_EQ(r.executions.size(), 1u);
  EXPECT_EQ(r.executions[0].input,
            Json::array({Json{{"y", 1}, {"lit", "plain"}, {"nested", Json::object()}},
                         "literal text stays literal", nullptr, 5, 20}));
  EXPECT_EQ(AsJson(r.context).at("first"),
            (Json{{"y", 1}, {"lit", "plain"}, {"nested", Json::object()}}));
  // An Output expression that yields null stores null.
  ASSERT_TRUE(AsJson(r.context).contains("absent"));
  EXPECT_TRUE(AsJson(r.context).at("absent").is_null());
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

constexpr std::string_view kBadRuntimeExpressions = R"json({
  "Name": "badRuntimeExpressions", "StartState": "S",
  "States": {
    "S": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "s",
          "Input": ["$.[order].id"], "Output": {"id": "$.#root.order.id"}, "Next": "After"},
    "After": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "after"}
  }
})json";

TEST_F(InterpreterTest, InputThatCannotBeRenderedFailsWithoutInvokingTheTask) {
  auto m = MustLoad(kBadRuntimeExpressions);
  mocks_["svc.s"] = Returns({{"order", {{"id", 1}}}});
  mocks_["svc.after"] = Returns(true);
  InstanceRecord r = Run(*m, {{"order", nullptr}});
  EXPECT_EQ(calls_["svc.s"], 0);
  EXPECT_EQ(calls_["svc.after"], 0);
  ASSERT_EQ(r.executions.size(), 1u);
  EXPECT_EQ(r.executions[0].status, RunStatus::kFailed);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->type, "ExpressionError");
  EXPECT_EQ(r.status, RunStatus::kFailed);
}

TEST_F(InterpreterTest, OutputThatCannotBeEvaluatedIsAnExpressionError) {
  auto m = MustLoad(kBadRuntimeExpressions);
  mocks_["svc.s"] = Returns({{"order", nullptr}});
  mocks_["svc.after"] = Returns(true);
  InstanceRecord r = Run(*m, {{"order", {{"id", 1}}}});
  EXPECT_EQ(calls_["svc.s"], 1);
  EXPECT_EQ(calls_["svc.after"], 0);
  ASSERT_TRUE(r.error.has_value());
  EXPECT_EQ(r.error->type, "ExpressionError");
  EXPECT_THAT(r.error->message, HasSubstr("id"));
  EXPECT_EQ(r.status, RunStatus::kFailed);
}

// ---------------------------------------------------------------------------------------------
// Compensation

constexpr std::string_view kCompensation = R"json({
  "Name": "compensation", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "CompensateState": "UndoA", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "CompensateState": "UndoB",
          "Status": {"#root == true": "SU", "#root == false": "FA"}, "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c", "Next": "D"},
    "D": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "d",
          "CompensateState": "UndoD",
          "Input": [{"throw": "$.[dThrows]"}],
          "Status": {"$Exception{DemoException}": "UN", "#root != null": "SU"},
          "Catch": [{"Exceptions": ["DemoException"], "Next": "Trigger"}], "Next": "Done"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoA",
              "Input": [{"throw": "$.[undoAThrows]"}]},
    "UndoB": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoB"},
    "UndoD": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoD",
              "Input": [{"throw": "$.[undoDThrows]"}]},
    "Trigger": {"Type": "CompensationTrigger", "Next": "Fail"},
    "Done": {"Type": "Succeed"},
    "Fail": {"Type": "Fail", "ErrorCode": "COMPENSATED", "Message": "undone"}
  }
})json";

class CompensationTest : public InterpreterTest {
 protected:
  CompensationTest() {
    mocks_["svc.a"] = Returns(1);
    mocks_["svc.b"] = Returns(false);  // FA without an error
    mocks_["svc.c"] = Returns(1);
    mocks_["svc.d"] = DemoService();
    mocks_["svc.undoA"] = DemoService();
    mocks_["svc.undoB"] = Returns(true);
    mocks_["svc.undoD"] = DemoService();
  }
  std::shared_ptr<const StateMachine> m_ = MustLoad(kCompensation);
};

TEST_F(CompensationTest, CompensatesExecutedNonFailedStatesNewestFirst) {
  InstanceRecord r = Run(*m_, {{"dThrows", "true"}});
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward FA", "C forward SU", "D forward UN",
                                    "UndoD compensation SU of D", "UndoA compensation SU of A"));
  EXPECT_EQ(r.executions[4].compensates, 3);
  EXPECT_EQ(r.executions[5].compensates, 0);
  EXPECT_EQ(calls_["svc.undoB"], 0);  // B ended FA: nothing to undo
  EXPECT_THAT(r.executions[0].compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_EQ(r.executions[1].compensation_status, std::nullopt);
  EXPECT_THAT(r.executions[3].compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
  EXPECT_EQ(r.status, RunStatus::kUnknown);  // a machine that compensated is never SU
  EXPECT_EQ(r.error_code, "COMPENSATED");
}

TEST_F(CompensationTest, HappyPathRunsNoCompensation) {
  InstanceRecord r = Run(*m_, {{"dThrows", "false"}});
  EXPECT_THAT(Trace(r),
              ElementsAre("A forward SU", "B forward FA", "C forward SU", "D forward SU"));
  EXPECT_EQ(r.compensation_status, std::nullopt);
  EXPECT_EQ(r.status, RunStatus::kUnknown);  // B FA after succeeded for-update A
}

TEST_F(CompensationTest, StopsAtFirstFailedCompensationThenCompensateResumes) {
  InstanceRecord r = Run(*m_, {{"dThrows", "true"}, {"undoDThrows", "true"}});
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward FA", "C forward SU", "D forward UN",
                                    "UndoD compensation UN of D"));
  EXPECT_EQ(calls_["svc.undoA"], 0);
  EXPECT_EQ(r.compensation_status, RunStatus::kUnknown);
  EXPECT_EQ(r.status, RunStatus::kUnknown);
  EXPECT_THAT(r.executions[3].compensation_status, Optional(RunStatus::kUnknown));
  EXPECT_EQ(r.executions[0].compensation_status, std::nullopt);

  const int before = static_cast<int>(r.executions.size());
  Operate(r, *m_, interp_.Compensate(r, *m_, {{"undoDThrows", "false"}}, now_));
  EXPECT_THAT(Trace(r, before),
              ElementsAre("UndoD compensation SU of D", "UndoA compensation SU of A"));
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
  EXPECT_EQ(r.status, RunStatus::kUnknown);
  EXPECT_EQ(AsJson(r.context).at("undoDThrows"), "false");
  EXPECT_EQ(calls_["svc.undoD"], 2);
  EXPECT_EQ(calls_["svc.undoA"], 1);
}

TEST_F(CompensationTest, CompensateSkipsAlreadyCompensatedStates) {
  InstanceRecord r = Run(*m_, {{"dThrows", "true"}, {"undoAThrows", "true"}});
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward FA", "C forward SU", "D forward UN",
                                    "UndoD compensation SU of D", "UndoA compensation UN of A"));
  EXPECT_EQ(r.compensation_status, RunStatus::kUnknown);

  const int before = static_cast<int>(r.executions.size());
  Operate(r, *m_, interp_.Compensate(r, *m_, {{"undoAThrows", "false"}}, now_));
  EXPECT_THAT(Trace(r, before), ElementsAre("UndoA compensation SU of A"));
  EXPECT_EQ(calls_["svc.undoD"], 1);
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);

  // Once everything is compensated, compensate has nothing left to do.
  const auto executions = r.executions.size();
  Result<Step> again = interp_.Compensate(r, *m_, nullptr, now_);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->decision.kind, Decision::Kind::kFinished);
  EXPECT_THAT(again->changed_executions, IsEmpty());
  EXPECT_FALSE(again->context_changed);
  EXPECT_EQ(r.executions.size(), executions);
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
}

TEST_F(CompensationTest, CompensationStateErrorWithoutStatusIsUnknown) {
  mocks_["svc.undoD"] = Throws("PaymentDeclined");  // not matched by anything
  InstanceRecord r = Run(*m_, {{"dThrows", "true"}});
  ASSERT_EQ(r.executions.size(), 5u);
  EXPECT_EQ(r.executions[4].kind, ExecutionKind::kCompensation);
  EXPECT_EQ(r.executions[4].status, RunStatus::kUnknown);
  EXPECT_EQ(r.compensation_status, RunStatus::kUnknown);
}

TEST_F(CompensationTest, OperatorCompensateOfSucceededInstanceUndoesEverything) {
  mocks_["svc.b"] = Returns(true);
  InstanceRecord r = Run(*m_, {{"dThrows", "false"}});
  ASSERT_EQ(r.status, RunStatus::kSucceeded);
  const int before = static_cast<int>(r.executions.size());
  Operate(r, *m_, interp_.Compensate(r, *m_, nullptr, now_));
  EXPECT_THAT(Trace(r, before),
              ElementsAre("UndoD compensation SU of D", "UndoB compensation SU of B",
                          "UndoA compensation SU of A"));
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);  // compensate keeps the forward run's status
}

constexpr std::string_view kTriggerThenNext = R"json({
  "Name": "triggerThenNext", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "CompensateState": "UndoA",
          "Status": {"#root == true": "SU", "#root == false": "FA"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "Catch": [{"Exceptions": ["java.lang.Throwable"], "Next": "Trigger"}], "Next": "Trigger"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoA"},
    "Trigger": {"Type": "CompensationTrigger", "Next": "After"},
    "After": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "after",
              "Next": "Fail"},
    "Fail": {"Type": "Fail", "ErrorCode": "AFTER", "Message": "after compensation"}
  }
})json";

TEST_F(InterpreterTest, CompensationTriggerContinuesAtNextAfterCompensating) {
  auto m = MustLoad(kTriggerThenNext);
  mocks_["svc.a"] = Returns(true);
  mocks_["svc.b"] = Throws("DemoException");
  mocks_["svc.undoA"] = Returns(nullptr);
  mocks_["svc.after"] = Returns(nullptr);
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward FA", "UndoA compensation SU of A",
                                    "After forward SU"));
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
  EXPECT_EQ(r.error_code, "AFTER");
  EXPECT_EQ(r.status, RunStatus::kUnknown);  // a machine that compensated is never SU
}

TEST_F(InterpreterTest, CompensationTriggerWithNothingToUndoGoesOnToNext) {
  auto m = MustLoad(kTriggerThenNext);
  mocks_["svc.a"] = Returns(false);  // FA: nothing to compensate
  mocks_["svc.b"] = Returns(nullptr);
  mocks_["svc.undoA"] = Returns(nullptr);
  mocks_["svc.after"] = Returns(nullptr);
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(Trace(r), ElementsAre("A forward FA", "B forward SU", "After forward SU"));
  EXPECT_EQ(calls_["svc.undoA"], 0);
  EXPECT_EQ(r.compensation_status, std::nullopt);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, "AFTER");
}

// ---------------------------------------------------------------------------------------------
// Retry

constexpr std::string_view kRetry = R"json({
  "Name": "retry", "StartState": "Flaky",
  "States": {
    "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
              "Output": {"flakyResult": "$.#root"},
              "Retry": [
                {"Exceptions": ["DemoException"], "IntervalSeconds": 1.5, "MaxAttempts": 3,
                 "BackoffRate": 1.5},
                {"IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2}
              ],
              "Catch": [{"Exceptions": ["DemoException"], "Next": "Caught"}],
              "Next": "Done"},
    "Caught": {"Type": "Fail", "ErrorCode": "CAUGHT", "Message": "caught"},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST(InterpreterBackoffTest, ExponentialDelay) {
  statelang::RetryRule rule;
  rule.interval_seconds = 1.5;
  rule.backoff_rate = 1.5;
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 1), Secs(1.5));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 2), Secs(2.25));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 3), Secs(3.375));

  statelang::RetryRule defaults;  // Step Functions' defaults: 1 s, rate 2
  EXPECT_EQ(Interpreter::BackoffDelay(defaults, 1), seconds(1));
  EXPECT_EQ(Interpreter::BackoffDelay(defaults, 2), seconds(2));
  EXPECT_EQ(Interpreter::BackoffDelay(defaults, 4), seconds(8));
}

TEST(InterpreterBackoffTest, MaxDelayCapsTheDelay) {
  statelang::RetryRule rule;
  rule.interval_seconds = 2;
  rule.backoff_rate = 3;
  rule.max_delay_seconds = 10;
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 1), seconds(2));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 2), seconds(6));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 3), seconds(10));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 30), seconds(10));
}

TEST(InterpreterBackoffTest, RateOneKeepsTheInterval) {
  statelang::RetryRule rule;
  rule.interval_seconds = 0.25;
  rule.backoff_rate = 1;
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 1), milliseconds(250));
  EXPECT_EQ(Interpreter::BackoffDelay(rule, 7), milliseconds(250));
}

TEST_F(InterpreterTest, FailureWithRetryLeftWaitsInTheSameExecution) {
  auto m = MustLoad(kRetry);
  InstanceRecord r = NewRecord(Json::object());
  Step step = interp_.Start(r, *m, now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kInvoke);
  const std::string key = r.executions[0].idempotency_key;

  step = TaskDone(r, *m, Throw("DemoException", "first"), now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kSleep);
  EXPECT_EQ(step.decision.execution, 0);
  EXPECT_EQ(step.decision.wake_at, now_ + Secs(1.5));
  EXPECT_THAT(step.changed_executions, Contains(0));  // the attempt count is persisted
  ASSERT_EQ(r.executions.size(), 1u);
  const StateExecution& e = r.executions[0];
  EXPECT_EQ(e.status, RunStatus::kRunning);
  EXPECT_THAT(e.retry_at, Optional(now_ + Secs(1.5)));
  EXPECT_EQ(e.error, (TaskFailure{"DemoException", "first"}));
  EXPECT_THAT(e.retry_counts, ElementsAre(1, 0));
  EXPECT_EQ(r.cursor.active_execution, 0);
  EXPECT_FALSE(r.finished());

  now_ += Secs(1.5);
  step = RetryDue(r, *m);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kInvoke);
  EXPECT_EQ(step.decision.execution, 0);
  EXPECT_EQ(r.executions[0].attempts, 2);
  EXPECT_EQ(r.executions[0].retry_at, std::nullopt);
  EXPECT_EQ(r.executions[0].idempotency_key, key);

  step = TaskDone(r, *m, Throw("DemoException", "second"), now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kSleep);
  EXPECT_EQ(step.decision.wake_at, now_ + Secs(2.25));
}

TEST_F(InterpreterTest, ExhaustedRetriesGoToCatch) {
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] = Throws("DemoException");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(waits_, ElementsAre(Secs(1.5), Secs(2.25), Secs(3.375)));
  EXPECT_EQ(calls_["svc.flaky"], 4);
  ASSERT_EQ(r.executions.size(), 1u);  // retries share one execution
  EXPECT_EQ(r.executions[0].attempts, 4);
  EXPECT_THAT(r.executions[0].retry_counts, ElementsAre(3, 0));
  EXPECT_EQ(r.executions[0].status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, "CAUGHT");
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_THAT(r.cursor.caught, Optional(TaskFailure{"DemoException", "boom"}));
}

TEST_F(InterpreterTest, RetryThatSucceedsNeverReachesCatch) {
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] = Sequence({Throw("DemoException"), Ok(7)});
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(waits_, ElementsAre(Secs(1.5)));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.error_code, "");
  EXPECT_EQ(AsJson(r.context).at("flakyResult"), 7);
  EXPECT_EQ(r.executions[0].error, std::nullopt);
}

TEST_F(InterpreterTest, RuleWithoutExceptionsMatchesNetworkErrors) {
  ASSERT_THAT(errors_.Define("CarrierDown", "NetworkError"), IsOk());
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] =
      Sequence({Throw("ConnectError"), Throw("java.net.SocketTimeoutException"), Ok(1)});
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(waits_, ElementsAre(seconds(1), seconds(2)));
  EXPECT_EQ(r.executions[0].attempts, 3);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);

  waits_.clear();
  mocks_["svc.flaky"] = Sequence({Throw("CarrierDown"), Ok(1)});
  r = Run(*m, Json::object());
  EXPECT_THAT(waits_, ElementsAre(seconds(1)));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

TEST_F(InterpreterTest, RuleWithoutExceptionsIgnoresOtherErrors) {
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] = Throws("PaymentDeclined");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(waits_, IsEmpty());
  EXPECT_EQ(calls_["svc.flaky"], 1);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, "");  // not caught
  EXPECT_THAT(r.error, Optional(TaskFailure{"PaymentDeclined", "boom"}));
}

TEST_F(InterpreterTest, EachRuleCountsItsOwnRetries) {
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] =
      Sequence({Throw("DemoException"), Throw("ConnectError"), Throw("DemoException"),
                Throw("ConnectError"), Throw("ConnectError")});
  InstanceRecord r = Run(*m, Json::object());
  // Rule 0: 1.5, 2.25; rule 1: 1, 2; the third ConnectError finds rule 1 exhausted.
  EXPECT_THAT(waits_, ElementsAre(Secs(1.5), seconds(1), Secs(2.25), seconds(2)));
  EXPECT_EQ(r.executions[0].attempts, 5);
  EXPECT_THAT(r.executions[0].retry_counts, ElementsAre(2, 2));
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(r.error_code, "");  // ConnectError is not caught
}

constexpr std::string_view kFirstRuleDecides = R"json({
  "Name": "firstRuleDecides", "StartState": "Flaky",
  "States": {
    "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
              "Retry": [
                {"Exceptions": ["DemoException"], "IntervalSeconds": 1, "MaxAttempts": 1},
                {"Exceptions": ["java.lang.Throwable"], "IntervalSeconds": 1, "MaxAttempts": 4,
                 "BackoffRate": 1}
              ]}
  }
})json";

TEST_F(InterpreterTest, FirstMatchingRuleDecidesEvenWhenExhausted) {
  auto m = MustLoad(kFirstRuleDecides);
  mocks_["svc.flaky"] = Throws("DemoException");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_EQ(calls_["svc.flaky"], 2);  // one retry by rule 0, rule 1 is not consulted
  EXPECT_EQ(r.status, RunStatus::kFailed);

  calls_.clear();
  waits_.clear();
  mocks_["svc.flaky"] = Throws("ConnectError");
  r = Run(*m, Json::object());
  EXPECT_EQ(calls_["svc.flaky"], 5);
  EXPECT_THAT(waits_, ElementsAre(seconds(1), seconds(1), seconds(1), seconds(1)));
}

TEST_F(InterpreterTest, MaxAttemptsZeroMeansNoRetry) {
  auto m = MustLoad(R"json({
    "Name": "noRetry", "StartState": "Flaky",
    "States": {
      "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
                "Retry": [{"Exceptions": ["DemoException"], "MaxAttempts": 0}],
                "Catch": [{"Exceptions": ["DemoException"], "Next": "Caught"}]},
      "Caught": {"Type": "Fail", "ErrorCode": "CAUGHT"}
    }
  })json");
  mocks_["svc.flaky"] = Throws("DemoException");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_EQ(calls_["svc.flaky"], 1);
  EXPECT_THAT(waits_, IsEmpty());
  EXPECT_EQ(r.error_code, "CAUGHT");
}

TEST_F(InterpreterTest, MaxDelaySecondsCapsTheWait) {
  auto m = MustLoad(R"json({
    "Name": "capped", "StartState": "Flaky",
    "States": {
      "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
                "Retry": [{"IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 4,
                           "MaxDelaySeconds": 10}]}
    }
  })json");
  mocks_["svc.flaky"] = Throws("TimeoutError");
  InstanceRecord r = Run(*m, Json::object());
  EXPECT_THAT(waits_, ElementsAre(seconds(2), seconds(6), seconds(10), seconds(10)));
  EXPECT_EQ(r.executions[0].attempts, 5);
}

constexpr std::string_view kJitter = R"json({
  "Name": "jitter", "StartState": "Flaky",
  "States": {
    "Flaky": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "flaky",
              "Retry": [{"IntervalSeconds": 4, "BackoffRate": 2, "MaxAttempts": 3,
                         "JitterStrategy": "FULL"}]}
  }
})json";

TEST_F(InterpreterTest, FullJitterStaysWithinTheCapAndIsDeterministic) {
  auto m = MustLoad(kJitter);
  const std::vector<Duration> caps = {seconds(4), seconds(8), seconds(16)};
  mocks_["svc.flaky"] = Throws("ConnectError");
  std::set<std::vector<Duration::rep>> distinct;
  bool some_below_cap = false;
  for (int i = 0; i < 20; ++i) {
    std::string id = "01JJITTER" + std::to_string(1000 + i) + "00000000000000";
    waits_.clear();
    Run(*m, Json::object(), id);
    std::vector<Duration> first = waits_;
    ASSERT_EQ(first.size(), 3u);
    std::vector<Duration::rep> reps;
    for (std::size_t k = 0; k < first.size(); ++k) {
      EXPECT_GE(first[k], Duration::zero());
      EXPECT_LE(first[k], caps[k]);
      if (first[k] < caps[k]) some_below_cap = true;
      reps.push_back(first[k].count());
    }
    distinct.insert(reps);
    // The same instance retried again gets the same delays.
    waits_.clear();
    Run(*m, Json::object(), id);
    EXPECT_EQ(waits_, first) << id;
  }
  EXPECT_TRUE(some_below_cap);
  EXPECT_GT(distinct.size(), 1u);  // jitter spreads instances apart
}

// ---------------------------------------------------------------------------------------------
// Catch

constexpr std::string_view kCatchOrder = R"json({
  "Name": "catchOrder", "StartState": "Work",
  "States": {
    "Work": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "work",
             "Catch": [
               {"Exceptions": ["java.net.ConnectException"], "Next": "OnConnect"},
               {"Exceptions": ["NetworkError", "DemoException"], "Next": "OnNetworkOrDemo"},
               {"Exceptions": ["java.lang.Throwable"], "Next": "OnAny"}
             ], "Next": "Done"},
    "OnConnect": {"Type": "Fail", "ErrorCode": "CONNECT"},
    "OnNetworkOrDemo": {"Type": "Fail", "ErrorCode": "NETWORK_OR_DEMO"},
    "OnAny": {"Type": "Fail", "ErrorCode": "ANY"},
    "Done": {"Type": "Succeed"}
  }
})json";

TEST_F(InterpreterTest, FirstMatchingCatcherRoutesAndAncestorsMatch) {
  ASSERT_THAT(errors_.Define("DemoSubException", "DemoException"), IsOk());
  auto m = MustLoad(kCatchOrder);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"ConnectError", "CONNECT"},
      {"java.net.ConnectException", "CONNECT"},
      {"TimeoutError", "NETWORK_OR_DEMO"},
      {"DemoException", "NETWORK_OR_DEMO"},
      {"DemoSubException", "NETWORK_OR_DEMO"},
      {"PaymentDeclined", "ANY"},
      {"NobodyDefinedThis", "ANY"},
  };
  for (const auto& [type, code] : cases) {
    mocks_["svc.work"] = Throws(type);
    InstanceRecord r = Run(*m, Json::object());
    EXPECT_EQ(r.error_code, code) << type;
    EXPECT_THAT(r.cursor.caught, Optional(TaskFailure{type, "boom"})) << type;
    EXPECT_EQ(r.status, RunStatus::kFailed) << type;
  }
}

TEST_F(InterpreterTest, CatchersAreTriedInOrderNotByMostSpecificType) {
  auto m = MustLoad(R"json({
    "Name": "catchGeneralFirst", "StartState": "Work",
    "States": {
      "Work": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "work",
               "Catch": [
                 {"Exceptions": ["NetworkError"], "Next": "OnNetwork"},
                 {"Exceptions": ["ConnectError"], "Next": "OnConnect"}
               ]},
      "OnNetwork": {"Type": "Fail", "ErrorCode": "NETWORK"},
      "OnConnect": {"Type": "Fail", "ErrorCode": "CONNECT"}
    }
  })json");
  mocks_["svc.work"] = Throws("ConnectError");
  EXPECT_EQ(Run(*m, Json::object()).error_code, "NETWORK");
}

// ---------------------------------------------------------------------------------------------
// Operations

constexpr std::string_view kRecovery = R"json({
  "Name": "recovery", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "CompensateState": "UndoA", "Input": [{"v": "$.[a]", "throw": "$.[aThrows]"}],
          "Output": {"aResult": "$.#root"},
          "Status": {"$Exception{DemoException}": "UN", "#root != null": "SU"}, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "CompensateState": "UndoB", "Input": [{"v": "$.[aResult]", "throw": "$.[bThrows]"}],
          "Output": {"bResult": "$.#root"},
          "Status": {"$Exception{DemoException}": "UN", "#root != null": "SU"}, "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c", "Next": "Done"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoA"},
    "UndoB": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoB"},
    "Done": {"Type": "Succeed"}
  }
})json";

class OperationsTest : public InterpreterTest {
 protected:
  OperationsTest() {
    mocks_["svc.a"] = DemoService();
    mocks_["svc.b"] = DemoService();
    mocks_["svc.c"] = Returns(true);
    mocks_["svc.undoA"] = Returns(nullptr);
    mocks_["svc.undoB"] = Returns(nullptr);
  }
  std::shared_ptr<const StateMachine> m_ = MustLoad(kRecovery);
};

TEST_F(OperationsTest, ForwardRerunsTheFailedStateAsANewExecution) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"bThrows", "true"}});
  ASSERT_THAT(Trace(r), ElementsAre("A forward SU", "B forward UN"));
  ASSERT_EQ(r.status, RunStatus::kUnknown);
  ASSERT_TRUE(r.error.has_value());

  Result<Step> first = interp_.Forward(r, *m_, {{"bThrows", "false"}}, now_);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->decision.kind, Decision::Kind::kInvoke);
  EXPECT_EQ(first->decision.execution, 2);
  EXPECT_THAT(first->changed_executions, UnorderedElementsAre(1, 2));
  EXPECT_TRUE(first->context_changed);
  EXPECT_EQ(r.status, RunStatus::kRunning);
  Drive(r, *m_, std::move(first).value());

  EXPECT_THAT(Trace(r),
              ElementsAre("A forward SU", "B forward UN", "B forward SU", "C forward SU"));
  const StateExecution& old_b = r.executions[1];
  const StateExecution& new_b = r.executions[2];
  EXPECT_TRUE(old_b.superseded);
  EXPECT_FALSE(new_b.superseded);
  EXPECT_EQ(new_b.retried_for, 1);
  EXPECT_EQ(new_b.epoch, old_b.epoch + 1);
  EXPECT_NE(new_b.idempotency_key, old_b.idempotency_key);
  EXPECT_EQ(new_b.input, Json::array({Json{{"v", {{"v", 1}}}, {"throw", "false"}}}));
  EXPECT_EQ(r.cursor.run_first_execution, 2);
  EXPECT_EQ(calls_["svc.a"], 1);
  EXPECT_EQ(calls_["svc.b"], 2);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.error, std::nullopt);
  EXPECT_EQ(AsJson(r.context).at("bThrows"), "false");
}

TEST_F(OperationsTest, ForwardOfFirstStateGoesOnThroughTheFlow) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"aThrows", "true"}});
  ASSERT_THAT(Trace(r), ElementsAre("A forward UN"));
  Operate(r, *m_, interp_.Forward(r, *m_, {{"aThrows", "false"}}, now_));
  EXPECT_THAT(Trace(r, 1), ElementsAre("A forward SU", "B forward SU", "C forward SU"));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

TEST_F(OperationsTest, ForwardWhenTheLastStateSucceededRoutesOnFromItsNext) {
  auto m = MustLoad(R"json({
    "Name": "routeOn", "StartState": "A",
    "States": {
      "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "Route"},
      "Route": {"Type": "Choice", "Choices": [{"Expression": "[go] == true", "Next": "C"}],
                "Default": "Stop"},
      "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c"},
      "Stop": {"Type": "Fail", "ErrorCode": "STOPPED"}
    }
  })json");
  mocks_["svc.a"] = Returns(1);
  InstanceRecord r = Run(*m, {{"go", false}});
  ASSERT_EQ(r.status, RunStatus::kFailed);
  ASSERT_EQ(r.error_code, "STOPPED");

  Operate(r, *m, interp_.Forward(r, *m, {{"go", true}}, now_));
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "C forward SU"));
  EXPECT_FALSE(r.executions[0].superseded);
  EXPECT_EQ(calls_["svc.a"], 1);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(r.error_code, "");
}

TEST_F(OperationsTest, ForwardAndSkipAreRefusedAfterCompensation) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"bThrows", "true"}});
  Operate(r, *m_, interp_.Compensate(r, *m_, nullptr, now_));
  ASSERT_EQ(r.compensation_status, RunStatus::kSucceeded);
  EXPECT_THAT(Trace(r, 2), ElementsAre("UndoB compensation SU of B", "UndoA compensation SU of A"));
  const auto executions = r.executions.size();

  EXPECT_THAT(interp_.Forward(r, *m_, {{"bThrows", "false"}}, now_),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("compensat")));
  EXPECT_THAT(interp_.Skip(r, *m_, nullptr, now_), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.executions.size(), executions);
  EXPECT_EQ(AsJson(r.context).value("bThrows", ""), "true");  // a refused operation changes nothing
  EXPECT_TRUE(r.finished());
}

TEST_F(OperationsTest, SkipRecordsASkippedExecutionAndContinuesAtNext) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"bThrows", "true"}});
  ASSERT_EQ(r.status, RunStatus::kUnknown);
  Operate(r, *m_, interp_.Skip(r, *m_, {{"note", "skipped by operator"}}, now_));
  EXPECT_THAT(Trace(r),
              ElementsAre("A forward SU", "B forward UN", "B forward SK", "C forward SU"));
  EXPECT_EQ(calls_["svc.b"], 1);  // the skipped state is not invoked
  EXPECT_TRUE(r.executions[1].superseded);
  EXPECT_EQ(r.executions[2].retried_for, 1);
  EXPECT_EQ(r.executions[2].epoch, r.executions[1].epoch + 1);
  EXPECT_EQ(r.executions[2].input, AsJson(r.executions[1].input));  // what was skipped
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  EXPECT_EQ(AsJson(r.context).at("note"), "skipped by operator");

  // Compensation afterwards leaves out the skipped and superseded executions of B.
  Operate(r, *m_, interp_.Compensate(r, *m_, nullptr, now_));
  EXPECT_THAT(Trace(r, 4), ElementsAre("UndoA compensation SU of A"));
}

TEST_F(OperationsTest, SkipIsRefusedWhenTheLastStateSucceeded) {
  auto m = MustLoad(WithForUpdate(kStepThenFail, false));
  mocks_["svc.step"] = Returns(1);
  InstanceRecord r = Run(*m, {{"go", false}});
  ASSERT_EQ(r.status, RunStatus::kFailed);
  EXPECT_THAT(interp_.Skip(r, *m, nullptr, now_), StatusIs(StatusCode::kFailedPrecondition));
}

TEST_F(OperationsTest, OperationsOnARunningInstanceAreRefused) {
  InstanceRecord r = NewRecord({{"a", 1}});
  Step step = interp_.Start(r, *m_, now_);
  ASSERT_EQ(step.decision.kind, Decision::Kind::kInvoke);
  EXPECT_THAT(interp_.Forward(r, *m_, nullptr, now_), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_THAT(interp_.Compensate(r, *m_, nullptr, now_), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_THAT(interp_.Skip(r, *m_, nullptr, now_), StatusIs(StatusCode::kFailedPrecondition));
  // The run goes on undisturbed.
  Drive(r, *m_, std::move(step));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

TEST_F(OperationsTest, PatchMustBeAnObject) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"bThrows", "true"}});
  EXPECT_THAT(interp_.Forward(r, *m_, Json::array({1}), now_),
              StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(interp_.Compensate(r, *m_, Json("x"), now_), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(interp_.Skip(r, *m_, Json(5), now_), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_EQ(r.executions.size(), 2u);
  EXPECT_EQ(r.status, RunStatus::kUnknown);
}

TEST_F(OperationsTest, OperationsOnASucceededInstanceChangeNothing) {
  InstanceRecord r = Run(*m_, {{"a", 1}});
  ASSERT_EQ(r.status, RunStatus::kSucceeded);
  const auto executions = r.executions.size();
  const Json context = r.context;
  for (int op = 0; op < 2; ++op) {
    Result<Step> s = op == 0 ? interp_.Forward(r, *m_, {{"x", 1}}, now_)
                             : interp_.Skip(r, *m_, {{"x", 1}}, now_);
    ASSERT_THAT(s, IsOk());
    EXPECT_EQ(s->decision.kind, Decision::Kind::kFinished);
    EXPECT_THAT(s->changed_executions, IsEmpty());
    EXPECT_FALSE(s->context_changed);
    EXPECT_EQ(r.executions.size(), executions);
    EXPECT_EQ(r.context, context);
    EXPECT_EQ(r.status, RunStatus::kSucceeded);
    EXPECT_TRUE(r.finished());
  }
}

TEST_F(OperationsTest, RepeatedForwardIsIdempotent) {
  InstanceRecord r = Run(*m_, {{"a", 1}, {"bThrows", "true"}});
  Operate(r, *m_, interp_.Forward(r, *m_, {{"bThrows", "false"}}, now_));
  ASSERT_EQ(r.status, RunStatus::kSucceeded);
  const auto executions = r.executions.size();
  Result<Step> again = interp_.Forward(r, *m_, nullptr, now_);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->decision.kind, Decision::Kind::kFinished);
  EXPECT_EQ(r.executions.size(), executions);
  EXPECT_EQ(calls_["svc.b"], 2);
}

// ---------------------------------------------------------------------------------------------
// Idempotency keys and loops

TEST_F(InterpreterTest, IdempotencyKeyIsStableAcrossRetries) {
  auto m = MustLoad(kRetry);
  mocks_["svc.flaky"] = Sequence({Throw("ConnectError"), Throw("DemoException"), Ok(1)});
  InstanceRecord r = Run(*m, Json::object());
  ASSERT_EQ(invocations_.size(), 3u);
  for (std::size_t i = 0; i < invocations_.size(); ++i) {
    EXPECT_EQ(invocations_[i].execution, 0);
    EXPECT_EQ(invocations_[i].attempt, static_cast<int>(i) + 1);
    EXPECT_EQ(invocations_[i].idempotency_key, invocations_[0].idempotency_key);
  }
  EXPECT_FALSE(invocations_[0].idempotency_key.empty());

  // Another instance of the same flow gets other keys.
  invocations_.clear();
  Run(*m, Json::object(), "01JOTHERINSTANCE0000000000");
  ASSERT_FALSE(invocations_.empty());
  EXPECT_NE(invocations_[0].idempotency_key, r.executions[0].idempotency_key);
}

TEST_F(InterpreterTest, RevisitingAStateInALoopGetsANewIdempotencyKey) {
  auto m = MustLoad(R"json({
    "Name": "counter", "StartState": "Inc",
    "States": {
      "Inc": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "inc",
              "Input": ["$.[n]"], "Output": {"n": "$.#root"}, "Next": "More"},
      "More": {"Type": "Choice", "Choices": [{"Expression": "[n] < 3", "Next": "Inc"}],
               "Default": "Done"},
      "Done": {"Type": "Succeed"}
    }
  })json");
  mocks_["svc.inc"] = [](const Json& args) { return Ok(args.at(0).get<int>() + 1); };
  InstanceRecord r = Run(*m, {{"n", 0}});
  EXPECT_EQ(AsJson(r.context).at("n"), 3);
  ASSERT_EQ(r.executions.size(), 3u);
  std::set<std::string> keys;
  for (const auto& e : r.executions) keys.insert(e.idempotency_key);
  EXPECT_EQ(keys.size(), 3u);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

TEST_F(InterpreterTest, ChoiceLoopWithoutTasksEndsTheRunWithAnError) {
  auto m = MustLoad(R"json({
    "Name": "pingPong", "StartState": "Work",
    "States": {
      "Work": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "work",
               "Next": "Ping"},
      "Ping": {"Type": "Choice", "Choices": [{"Expression": "[spin] == true", "Next": "Pong"}],
               "Default": "Done"},
      "Pong": {"Type": "Choice", "Choices": [{"Expression": "[spin] == true", "Next": "Ping"}],
               "Default": "Done"},
      "Done": {"Type": "Succeed"}
    }
  })json");
  mocks_["svc.work"] = Returns(true);
  InstanceRecord r = Run(*m, {{"spin", true}});
  EXPECT_TRUE(r.finished());
  ASSERT_TRUE(r.error.has_value());
  EXPECT_THAT(r.error->message, HasSubstr("loop"));
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_EQ(calls_["svc.work"], 1);

  EXPECT_EQ(Run(*m, {{"spin", false}}).status, RunStatus::kSucceeded);
}

}  // namespace
}  // namespace sagaflow::engine
