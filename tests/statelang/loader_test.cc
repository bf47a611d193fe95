#include "sagaflow/statelang/loader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "printers.h"
#include "sagaflow/common/json.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::statelang {

// Shows an issue as `sagaflow validate` would in a failed expectation.
void PrintTo(const Issue& issue, std::ostream* os) { *os << issue.Format("<flow>"); }

namespace {

using ::sagaflow::testing::IsOk;
using ::testing::_;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kFlowsDir = std::string(SAGAFLOW_CONFORMANCE_DIR) + "/flows";

MATCHER_P2(ErrorAt, pointer, message_matcher, "an error at '" + std::string(pointer) + "'") {
  if (arg.severity != Issue::Severity::kError) {
    *result_listener << "is a warning";
    return false;
  }
  if (arg.pointer != pointer) {
    *result_listener << "is at '" << arg.pointer << "'";
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, arg.message, result_listener);
}

MATCHER_P2(WarningAt, pointer, message_matcher, "a warning at '" + std::string(pointer) + "'") {
  if (arg.severity != Issue::Severity::kWarning) {
    *result_listener << "is an error";
    return false;
  }
  if (arg.pointer != pointer) {
    *result_listener << "is at '" << arg.pointer << "'";
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, arg.message, result_listener);
}

std::vector<Issue> Errors(const LoadResult& r) {
  std::vector<Issue> out;
  for (const Issue& i : r.issues) {
    if (i.severity == Issue::Severity::kError) out.push_back(i);
  }
  return out;
}

// A flow whose start state A is a task with `extra` keys, going to the Succeed state Done.
std::string TaskFlow(std::string_view extra) {
  std::string text = R"({"Name": "f", "StartState": "A", "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "run", "Next": "Done")";
  if (!extra.empty()) {
    text += ",\n";
    text += extra;
  }
  text += R"(},
    "Done": {"Type": "Succeed"}}})";
  return text;
}

// A flow with the given States body, starting at A.
std::string StatesFlow(std::string_view states) {
  return R"({"Name": "f", "StartState": "A", "States": {)" + std::string(states) + "}}";
}

std::vector<std::string> Names(const std::vector<TaskName>& tasks) {
  std::vector<std::string> out;
  for (const TaskName& t : tasks) out.push_back(t.str());
  return out;
}

// ---------------------------------------------------------------------------------------------
// A valid flow

TEST(LoaderTest, MinimalTaskFlowLoads) {
  LoadResult r = LoadStateMachine(TaskFlow(""));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, IsEmpty());
  const StateMachine& m = *r.machine;
  EXPECT_EQ(m.name(), "f");
  EXPECT_EQ(m.start(), m.Find("A"));
  ASSERT_EQ(m.states().size(), 2u);
  const State& a = m.state(m.Find("A"));
  EXPECT_EQ(a.type, StateType::kServiceTask);
  EXPECT_EQ(a.service_task().task.str(), "svc.run");
  EXPECT_EQ(a.service_task().service_name, "svc");
  EXPECT_EQ(a.service_task().service_method, "run");
  EXPECT_EQ(a.next, m.Find("Done"));
  EXPECT_FALSE(a.service_task().for_update);
  EXPECT_EQ(m.state(m.Find("Done")).type, StateType::kSucceed);
  EXPECT_EQ(m.Find("Nowhere"), kNoState);
  EXPECT_EQ(m.recover_strategy(), RecoverStrategy::kCompensate);
}

TEST(LoaderTest, SeedFlowLoadsWithCompensationFlags) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/order_fulfill.json");
  ASSERT_TRUE(r.ok()) << r.Describe("order_fulfill.json");
  EXPECT_THAT(r.issues, IsEmpty()) << r.Describe("order_fulfill.json");
  const StateMachine& m = *r.machine;
  EXPECT_EQ(m.name(), "order_fulfill");
  EXPECT_EQ(m.version(), "1.0.0");
  EXPECT_EQ(m.comment(), "订单履约流程");
  EXPECT_EQ(m.states().size(), 11u);
  EXPECT_EQ(m.start(), m.Find("FulfillService"));

  const std::pair<const char*, const char*> compensated[] = {
      {"FulfillService", "CreateFulfillOrderCompensate"},
      {"WmsService", "WmsPickGoodsCompensate"},
      {"TmsService", "TmsSendOutCompensate"}};
  for (const auto& [forward, compensation] : compensated) {
    SCOPED_TRACE(forward);
    ASSERT_NE(m.Find(forward), kNoState);
    ASSERT_NE(m.Find(compensation), kNoState);
    const ServiceTaskState& f = m.state(m.Find(forward)).service_task();
    EXPECT_EQ(f.compensate_state, m.Find(compensation));
    EXPECT_TRUE(f.for_update) << "IsForUpdate is forced by CompensateState";
    EXPECT_FALSE(f.for_compensation);
    const ServiceTaskState& c = m.state(m.Find(compensation)).service_task();
    EXPECT_TRUE(c.for_compensation);
    EXPECT_FALSE(c.for_update);
    EXPECT_EQ(c.compensate_state, kNoState);
  }

  const State& fulfill = m.state(m.Find("FulfillService"));
  EXPECT_EQ(fulfill.next, m.Find("ChoiceWmsState"));
  const ServiceTaskState& task = fulfill.service_task();
  ASSERT_EQ(task.status.size(), 3u);
  EXPECT_EQ(task.status[0].condition.source(), "#root == true");
  EXPECT_EQ(task.status[0].status, StepStatus::kSucceeded);
  EXPECT_EQ(task.status[1].condition.source(), "#root == false");
  EXPECT_EQ(task.status[1].status, StepStatus::kFailed);
  EXPECT_EQ(task.status[2].condition.form(), Expression::Form::kExceptionMatch);
  EXPECT_EQ(task.status[2].condition.exception_type(), "java.lang.Throwable");
  EXPECT_EQ(task.status[2].status, StepStatus::kUnknown);
  ASSERT_EQ(task.catches.size(), 1u);
  EXPECT_THAT(task.catches[0].exceptions, ElementsAre("java.lang.Throwable"));
  EXPECT_EQ(task.catches[0].next, m.Find("CompensationTrigger"));
  ASSERT_EQ(task.input.size(), 1u);
  Json context = {{"receiveFulfillRequest", {{"orderId", "o-7"}}}};
  auto arg = task.input[0].Render(EvalEnv{.root = &context});
  ASSERT_THAT(arg, IsOk());
  EXPECT_EQ(*arg, context["receiveFulfillRequest"]);
  ASSERT_EQ(task.output.size(), 1u);
  EXPECT_EQ(task.output[0].first, "CreateFulfillOrderResult");

  const ChoiceState& choice = m.state(m.Find("ChoiceWmsState")).choice();
  ASSERT_EQ(choice.choices.size(), 1u);
  EXPECT_EQ(choice.choices[0].next, m.Find("WmsService"));
  EXPECT_EQ(choice.default_next, m.Find("Fail"));
  Json after_create = {{"CreateFulfillOrderResult", true}};
  auto taken = choice.choices[0].condition.EvaluateCondition(EvalEnv{.root = &after_create});
  ASSERT_THAT(taken, IsOk());
  EXPECT_TRUE(*taken);

  EXPECT_EQ(m.state(m.Find("TmsService")).next, m.Find("Succeed"));
  EXPECT_EQ(m.state(m.Find("CompensationTrigger")).next, m.Find("Fail"));
  EXPECT_EQ(m.state(m.Find("Fail")).fail().error_code, "500");
  EXPECT_EQ(m.state(m.Find("Fail")).fail().message, "订单履约异常！！");

  EXPECT_THAT(
      Names(m.TaskNames()),
      ElementsAre("fulfillSagaService.createFulfillOrder", "wmsSageService.pickGoods",
                  "tmsSagaService.sendOut", "fulfillSagaService.createFulfillOrderCompensate",
                  "wmsSageService.pickGoodsCompensate", "tmsSagaService.sendOutCompensate"));
}

TEST(LoaderTest, EveryConformanceFlowLoads) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kFlowsDir)) {
    if (entry.path().extension() != ".json") continue;
    ++count;
    LoadResult r = LoadStateMachineFile(entry.path().string());
    EXPECT_TRUE(r.ok()) << r.Describe(entry.path().filename().string());
  }
  EXPECT_GE(count, 1);
}

TEST(LoaderTest, EveryInvalidConformanceFlowFails) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kFlowsDir + "/invalid")) {
    ++count;
    LoadResult r = LoadStateMachineFile(entry.path().string());
    EXPECT_FALSE(r.ok()) << entry.path();
    EXPECT_THAT(Errors(r), Not(IsEmpty())) << entry.path();
  }
  EXPECT_GE(count, 1);
}

TEST(LoaderTest, CompensateStateForcesForUpdate) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "do", "IsForUpdate": false,
          "CompensateState": "UndoA", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "read", "IsForUpdate": true,
          "Next": "Done"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "undo"},
    "Done": {"Type": "Succeed"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  const StateMachine& m = *r.machine;
  EXPECT_TRUE(m.state(m.Find("A")).service_task().for_update);
  EXPECT_TRUE(m.state(m.Find("B")).service_task().for_update);
  EXPECT_FALSE(m.state(m.Find("B")).service_task().for_compensation);
  EXPECT_TRUE(m.state(m.Find("UndoA")).service_task().for_compensation);
}

TEST(LoaderTest, StatusRulesKeepDeclaredOrder) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Status": {
      "#root.code == 3": "UN", "#root.code == 1": "SU", "$Exception{TimeoutError}": "FA",
      "#root.code == 2": "FA"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  const auto& rules = r.machine->state(r.machine->Find("A")).service_task().status;
  ASSERT_EQ(rules.size(), 4u);
  EXPECT_EQ(rules[0].condition.source(), "#root.code == 3");
  EXPECT_EQ(rules[0].status, StepStatus::kUnknown);
  EXPECT_EQ(rules[1].condition.source(), "#root.code == 1");
  EXPECT_EQ(rules[1].status, StepStatus::kSucceeded);
  EXPECT_EQ(rules[2].condition.source(), "$Exception{TimeoutError}");
  EXPECT_EQ(rules[2].status, StepStatus::kFailed);
  EXPECT_EQ(rules[3].condition.source(), "#root.code == 2");
  EXPECT_EQ(rules[3].status, StepStatus::kFailed);
}

TEST(LoaderTest, TaskNamesAreInStateOrderWithoutRepeats) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "b", "ServiceMethod": "x", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "a", "ServiceMethod": "y", "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "b", "ServiceMethod": "x", "Next": "D"},
    "D": {"Type": "Succeed"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(Names(r.machine->TaskNames()), ElementsAre("b.x", "a.y"));
}

TEST(LoaderTest, RetryRulesAreParsedWithStepFunctionsDefaults) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [
      {},
      {"Exceptions": ["TimeoutError", "DemoException"], "IntervalSeconds": 0.5,
       "MaxAttempts": 5, "BackoffRate": 1.5, "MaxDelaySeconds": 10, "JitterStrategy": "FULL"}])"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  const auto& retry = r.machine->state(r.machine->Find("A")).service_task().retry;
  ASSERT_EQ(retry.size(), 2u);
  EXPECT_THAT(retry[0].exceptions, IsEmpty());
  EXPECT_EQ(retry[0].interval_seconds, 1.0);
  EXPECT_EQ(retry[0].max_attempts, 3);
  EXPECT_EQ(retry[0].backoff_rate, 2.0);
  EXPECT_FALSE(retry[0].max_delay_seconds.has_value());
  EXPECT_EQ(retry[0].jitter, JitterStrategy::kNone);
  EXPECT_THAT(retry[1].exceptions, ElementsAre("TimeoutError", "DemoException"));
  EXPECT_EQ(retry[1].interval_seconds, 0.5);
  EXPECT_EQ(retry[1].max_attempts, 5);
  EXPECT_EQ(retry[1].backoff_rate, 1.5);
  EXPECT_EQ(retry[1].max_delay_seconds, 10.0);
  EXPECT_EQ(retry[1].jitter, JitterStrategy::kFull);
}

TEST(LoaderTest, TopLevelOptionsAreRead) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "Version": "2", "Comment": "c",
      "RecoverStrategy": "Forward", "IsPersist": "false", "StartState": "A",
      "States": {"A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
                       "IsPersist": "false"}}})");
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_EQ(r.machine->version(), "2");
  EXPECT_EQ(r.machine->comment(), "c");
  EXPECT_EQ(r.machine->recover_strategy(), RecoverStrategy::kForward);
  EXPECT_EQ(r.machine->state(0).next, kNoState);
}

TEST(LoaderTest, ContentAndHashIdentifyTheText) {
  const std::string text = TaskFlow("");
  LoadResult a = LoadStateMachine(text);
  LoadResult b = LoadStateMachine(text);
  LoadResult c = LoadStateMachine(text + "\n");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a.machine->content(), text);
  EXPECT_THAT(a.machine->content_hash(), ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(a.machine->content_hash(), b.machine->content_hash());
  EXPECT_NE(a.machine->content_hash(), c.machine->content_hash());
}

TEST(LoaderTest, CommentsAreAccepted) {
  LoadResult r = LoadStateMachine(R"(// a Seata file with comments
{
  /* block
     comment */
  "Name": "f", // trailing
  "StartState": "A",
  "States": {
    // the only state
    "A": {"Type": /* inline */ "Succeed"}
  }
}
// end)");
  EXPECT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, IsEmpty());
}

TEST(LoaderTest, FailStateAcceptsANumericErrorCode) {
  LoadResult r = LoadStateMachine(StatesFlow(R"("A": {"Type": "Fail", "ErrorCode": 500})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_EQ(r.machine->state(0).fail().error_code, "500");
}

// ---------------------------------------------------------------------------------------------
// Document errors

TEST(LoaderTest, InvalidJsonNamesLineAndColumn) {
  LoadResult r = LoadStateMachine("{\n  \"Name\": \"f\",\n  \"StartState\": \n}\n");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues, ElementsAre(ErrorAt(
                            "", AllOf(StartsWith("invalid JSON"), HasSubstr("line 4, column 1")))));
}

TEST(LoaderTest, TruncatedFileIsInvalidJson) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/truncated.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues,
              ElementsAre(ErrorAt("", AllOf(StartsWith("invalid JSON"), HasSubstr("line 1")))));
}

TEST(LoaderTest, EmptyTextIsInvalidJson) {
  LoadResult r = LoadStateMachine("");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues, ElementsAre(ErrorAt("", StartsWith("invalid JSON"))));
}

TEST(LoaderTest, UnreadableFileIsOneError) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/no_such_flow.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues, ElementsAre(ErrorAt("", HasSubstr("cannot read"))));
}

TEST(LoaderTest, DefinitionMustBeAnObject) {
  LoadResult r = LoadStateMachine("[1, 2]");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues, ElementsAre(ErrorAt("", HasSubstr("must be a JSON object"))));
}

TEST(LoaderTest, DuplicateTopLevelKey) {
  LoadResult r = LoadStateMachine(R"({"Name": "a", "StartState": "A", "Name": "b",
                                      "States": {"A": {"Type": "Succeed"}}})");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/Name", HasSubstr("duplicate key 'Name'"))));
}

TEST(LoaderTest, DuplicateKeyInAState) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Next": "Done")"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Next", HasSubstr("duplicate key"))));
}

TEST(LoaderTest, DuplicateStateName) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}, "A": {"Type": "Fail"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A", HasSubstr("duplicate key 'A'"))));
}

TEST(LoaderTest, DuplicateKeyInsideArraysHasTheElementIndex) {
  LoadResult r = LoadStateMachine(TaskFlow(R"(
    "Input": [[1, [2, 3]], "x", {"k": {"n": 1}}, {"k": 1, "k": 2}],
    "Catch": [{"Exceptions": ["E"], "Next": "Done"},
              {"Exceptions": ["F"], "Next": "Done", "Next": "Done"}])"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Input/3/k", HasSubstr("'k'")),
                                     ErrorAt("/States/A/Catch/1/Next", HasSubstr("'Next'"))));
}

TEST(LoaderTest, DuplicateKeyPointerEscapesSlashAndTilde) {
  LoadResult r =
      LoadStateMachine(TaskFlow(R"("Output": {"a/b~c": "$.#root", "a/b~c": "$.#root"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Output/a~1b~0c", HasSubstr("duplicate"))));
}

TEST(LoaderTest, DefinitionNestedTooDeeplyIsRefused) {
  // The limit is 64 levels: the document object and 63 arrays load, a 64th array does not.
  auto flow = [](int arrays) {
    return R"({"Name": "f", "StartState": "A", "X": )" + std::string(arrays, '[') +
           std::string(arrays, ']') + R"(, "States": {"A": {"Type": "Succeed"}}})";
  };
  LoadResult at_limit = LoadStateMachine(flow(63));
  EXPECT_TRUE(at_limit.ok()) << at_limit.Describe("flow");

  LoadResult over = LoadStateMachine(flow(64));
  EXPECT_FALSE(over.ok());
  std::string pointer = "/X";
  for (int i = 0; i < 63; ++i) pointer += "/0";
  EXPECT_THAT(over.issues,
              ElementsAre(ErrorAt(pointer, HasSubstr("nested deeper than 64 levels"))));
}

// ---------------------------------------------------------------------------------------------
// Required keys and references

TEST(LoaderTest, MissingName) {
  LoadResult r = LoadStateMachine(R"({"StartState": "A", "States": {"A": {"Type": "Succeed"}}})");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/Name", HasSubstr("missing required key 'Name'"))));
}

TEST(LoaderTest, MissingStartState) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "States": {"A": {"Type": "Succeed"}}})");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/StartState", HasSubstr("missing required key 'StartState'"))));
}

TEST(LoaderTest, UnknownStartState) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/no_start.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/StartState", HasSubstr("'Nowhere'"))));
}

TEST(LoaderTest, StartStateMustBeAString) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "StartState": 1,
                                      "States": {"A": {"Type": "Succeed"}}})");
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/StartState", HasSubstr("must be a state name"))));
}

TEST(LoaderTest, MissingStates) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "StartState": "A"})");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States", HasSubstr("missing required key 'States'")),
                                     ErrorAt("/StartState", HasSubstr("'A'"))));
}

TEST(LoaderTest, StatesMustBeANonEmptyObject) {
  EXPECT_THAT(Errors(LoadStateMachine(R"({"Name": "f", "StartState": "A", "States": []})")),
              Contains(ErrorAt("/States", HasSubstr("must be an object"))));
  EXPECT_THAT(Errors(LoadStateMachine(R"({"Name": "f", "StartState": "A", "States": {}})")),
              Contains(ErrorAt("/States", HasSubstr("at least one state"))));
}

TEST(LoaderTest, StateMustBeAnObject) {
  LoadResult r = LoadStateMachine(StatesFlow(R"("A": "Succeed")"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A", HasSubstr("must be an object"))));
}

TEST(LoaderTest, MissingType) {
  LoadResult r = LoadStateMachine(StatesFlow(R"("A": {"Next": "A"})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Type", HasSubstr("missing required"))));
}

TEST(LoaderTest, UnknownType) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/unknown_type.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Type", HasSubstr("unknown state type 'Teleport'"))));
}

class LoaderUnsupportedTypeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoaderUnsupportedTypeTest, IsAnErrorNamingTheType) {
  LoadResult r = LoadStateMachine(StatesFlow(R"("A": {"Type": ")" + GetParam() +
                                             R"(", "Next": "B"}, "B": {"Type": "Succeed"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Type", AllOf(HasSubstr("'" + GetParam() + "'"),
                                                          HasSubstr("not supported")))));
}

INSTANTIATE_TEST_SUITE_P(LoaderTest, LoaderUnsupportedTypeTest,
                         ::testing::Values("SubStateMachine", "CompensateSubMachine",
                                           "ScriptTask"));

TEST(LoaderTest, AsyncTasksLoad) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("IsAsync": true)"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.machine->states()[0].service_task().is_async);
  LoadResult sync = LoadStateMachine(TaskFlow(R"("IsAsync": false)"));
  ASSERT_TRUE(sync.ok());
  EXPECT_FALSE(sync.machine->states()[0].service_task().is_async);
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("IsAsync": 1)"))),
              ElementsAre(ErrorAt("/States/A/IsAsync", HasSubstr("true or false"))));
}

// A Wait flow: `wait` is the Wait state's body, followed by Next "B".
std::string WaitFlow(const std::string& wait) {
  return StatesFlow(R"("A": {"Type": "Wait", )" + wait +
                    R"(, "Next": "B"}, "B": {"Type": "Succeed"})");
}

TEST(LoaderTest, WaitTakesSecondsTimestampOrAPath) {
  using Kind = WaitState::Kind;
  LoadResult r = LoadStateMachine(WaitFlow(R"("Seconds": 1.5)"));
  ASSERT_TRUE(r.ok());
  const State& a = r.machine->states()[0];
  EXPECT_EQ(a.type, StateType::kWait);
  EXPECT_EQ(a.next, 1);
  EXPECT_EQ(a.wait().kind, Kind::kSeconds);
  EXPECT_DOUBLE_EQ(a.wait().seconds, 1.5);

  r = LoadStateMachine(WaitFlow(R"("Timestamp": "2026-12-24T18:00:00+08:00")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.machine->states()[0].wait().kind, Kind::kTimestamp);
  EXPECT_EQ(r.machine->states()[0].wait().at, *ParseTime("2026-12-24T10:00:00Z"));

  r = LoadStateMachine(WaitFlow(R"("SecondsPath": "$.delay")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.machine->states()[0].wait().kind, Kind::kSecondsPath);
  r = LoadStateMachine(WaitFlow(R"("TimestampPath": "$.[order].payBy")"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.machine->states()[0].wait().kind, Kind::kTimestampPath);
}

TEST(LoaderTest, WaitErrorsNameTheKey) {
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Comment": "none")"))),
              ElementsAre(ErrorAt("/States/A", HasSubstr("needs one of Seconds"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Seconds": 1, "SecondsPath": "$.d")"))),
              ElementsAre(ErrorAt("/States/A/SecondsPath", HasSubstr("only one of"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Seconds": -1)"))),
              ElementsAre(ErrorAt("/States/A/Seconds", HasSubstr("at least 0"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Seconds": "10")"))),
              ElementsAre(ErrorAt("/States/A/Seconds", HasSubstr("must be a number"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Seconds": 1e12)"))),
              ElementsAre(ErrorAt("/States/A/Seconds", HasSubstr("at most"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Seconds": 7000000001)"))),
              ElementsAre(ErrorAt("/States/A/Seconds", HasSubstr("at most 7000000000"))));
  EXPECT_TRUE(LoadStateMachine(WaitFlow(R"("Seconds": 7000000000)")).ok());
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Timestamp": "2262-01-01T00:00:00Z")"))),
              ElementsAre(ErrorAt("/States/A/Timestamp", HasSubstr("before 2262"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Timestamp": "2026-12-24 18:00")"))),
              ElementsAre(ErrorAt("/States/A/Timestamp", HasSubstr("RFC 3339"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("Timestamp": "2026-12-24T18:00:00")"))),
              ElementsAre(ErrorAt("/States/A/Timestamp", HasSubstr("with an offset"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("SecondsPath": "delay")"))),
              ElementsAre(ErrorAt("/States/A/SecondsPath", HasSubstr("starting with '$.'"))));
  EXPECT_THAT(Errors(LoadStateMachine(WaitFlow(R"("TimestampPath": "$.(")"))),
              ElementsAre(ErrorAt("/States/A/TimestampPath", _)));
  EXPECT_THAT(Errors(LoadStateMachine(StatesFlow(
                  R"("A": {"Type": "Wait", "Seconds": 1}, "B": {"Type": "Succeed"})"))),
              ElementsAre(ErrorAt("/States/A/Next", HasSubstr("missing"))));
  EXPECT_THAT(Errors(LoadStateMachine(StatesFlow(
                  R"("A": {"Type": "Wait", "Seconds": 1, "Next": "Gone"}, "B": {"Type": "Succeed"})"))),
              ElementsAre(ErrorAt("/States/A/Next", HasSubstr("'Gone'"))));
}

TEST(LoaderTest, AWaitInACycleWithNoWayOutIsAnError) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Wait", "Seconds": 1, "Next": "A"}, "B": {"Type": "Succeed"})"));
  EXPECT_FALSE(r.ok());
}

TEST(LoaderTest, LoopIsRejected) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Loop": {"Parallel": 1})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Loop", HasSubstr("not supported"))));
}

TEST(LoaderTest, TaskNeedsServiceNameAndMethod) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceMethod": "", "Next": "B"}, "B": {"Type": "Succeed"})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/ServiceName", HasSubstr("missing")),
                                     ErrorAt("/States/A/ServiceMethod", HasSubstr("non-empty"))));
}

TEST(LoaderTest, UnknownNext) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "Gone"},
    "Done": {"Type": "Succeed"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Next",
                                  HasSubstr("names state 'Gone', which is not defined"))));
}

TEST(LoaderTest, UnknownChoiceNextAndNextInConformanceFlow) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/unknown_next.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Next", HasSubstr("'Missing'")),
                          ErrorAt("/States/B/Choices/0/Next", HasSubstr("'AlsoMissing'"))));
}

TEST(LoaderTest, UnknownDefault) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Choice", "Choices": [{"Expression": "[x] == 1", "Next": "B"}],
          "Default": "Elsewhere"},
    "B": {"Type": "Succeed"})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Default", HasSubstr("'Elsewhere'"))));
}

TEST(LoaderTest, UnknownChoiceNext) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Choice", "Choices": [{"Expression": "[x] == 1", "Next": "B"},
                                        {"Expression": "[x] == 2", "Next": "C"}],
          "Default": "B"},
    "B": {"Type": "Succeed"})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Choices/1/Next", HasSubstr("'C'"))));
}

TEST(LoaderTest, ChoiceNeedsChoicesWithExpressionAndNext) {
  EXPECT_THAT(Errors(LoadStateMachine(StatesFlow(R"("A": {"Type": "Choice", "Default": "B"},
                                                    "B": {"Type": "Succeed"})"))),
              ElementsAre(ErrorAt("/States/A/Choices", HasSubstr("missing"))));
  EXPECT_THAT(Errors(LoadStateMachine(StatesFlow(R"("A": {"Type": "Choice", "Choices": []})"))),
              ElementsAre(ErrorAt("/States/A/Choices", HasSubstr("non-empty array"))));
  EXPECT_THAT(Errors(LoadStateMachine(StatesFlow(R"(
                  "A": {"Type": "Choice", "Choices": [{"Next": "B"}, {"Expression": "true"}]},
                  "B": {"Type": "Succeed"})"))),
              ElementsAre(ErrorAt("/States/A/Choices/0/Expression", HasSubstr("missing")),
                          ErrorAt("/States/A/Choices/1/Next", HasSubstr("missing"))));
}

TEST(LoaderTest, UnknownCatchNext) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Catch": [{"Exceptions": ["E"], "Next": "Nope"}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Catch/0/Next", HasSubstr("'Nope'"))));
}

TEST(LoaderTest, UnknownCompensateState) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("CompensateState": "Undo")"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/CompensateState", HasSubstr("'Undo'"))));
}

TEST(LoaderTest, CompensateStateMustNameATask) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
          "CompensateState": "Undo", "Next": "B"},
    "B": {"Type": "Succeed"},
    "Undo": {"Type": "Fail"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/CompensateState", HasSubstr("'Undo' is a Fail"))));
}

TEST(LoaderTest, StateCannotCompensateItself) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("CompensateState": "A")"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/CompensateState",
                                             HasSubstr("cannot compensate itself"))));
}

// ---------------------------------------------------------------------------------------------
// Value types

TEST(LoaderTest, InputMustBeAnArray) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Input": {"a": 1})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Input", HasSubstr("must be an array"))));
}

TEST(LoaderTest, OutputMustBeAnObject) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Output": ["$.#root"])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Output", HasSubstr("must be an object"))));
}

TEST(LoaderTest, StatusMustBeAnObject) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Status": "SU")"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Status", HasSubstr("must be an object"))));
}

TEST(LoaderTest, StatusValueMustBeSuFaOrUn) {
  LoadResult r = LoadStateMachine(
      TaskFlow(R"("Status": {"#root == true": "SU", "#root == false": "OK", "[a] / 2 == 1": 1})"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Status/#root == false",
                                  HasSubstr(R"(must be "SU", "FA" or "UN", found "OK")")),
                          ErrorAt("/States/A/Status/[a] ~1 2 == 1", HasSubstr("found 1"))));
}

TEST(LoaderTest, BooleanOptionsMustBeBooleans) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("IsPersist": 1, "IsForUpdate": "yes")"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/IsForUpdate", HasSubstr("true or false")),
                                     ErrorAt("/States/A/IsPersist", HasSubstr("true or false"))));
}

TEST(LoaderTest, RecoverStrategyMustBeCompensateOrForward) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "StartState": "A", "RecoverStrategy": "Retry",
                                      "States": {"A": {"Type": "Succeed"}}})");
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/RecoverStrategy", HasSubstr("\"Retry\""))));
}

TEST(LoaderTest, RetryMustBeAnArrayOfObjects) {
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("Retry": {"MaxAttempts": 1})"))),
              ElementsAre(ErrorAt("/States/A/Retry", HasSubstr("must be an array"))));
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("Retry": [{}, 3])"))),
              ElementsAre(ErrorAt("/States/A/Retry/1", HasSubstr("must be an object"))));
}

TEST(LoaderTest, RetryIntervalSecondsMustNotBeNegative) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [{"IntervalSeconds": -1}])"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Retry/0/IntervalSeconds", HasSubstr("at least 0"))));
  EXPECT_TRUE(LoadStateMachine(TaskFlow(R"("Retry": [{"IntervalSeconds": 0}])")).ok());
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("Retry": [{"IntervalSeconds": "1"}])"))),
              ElementsAre(ErrorAt("/States/A/Retry/0/IntervalSeconds", HasSubstr("a number"))));
}

TEST(LoaderTest, RetryMaxAttemptsMustBeAWholeNumber) {
  for (const char* bad : {"1.5", "-1", "\"3\"", "1000001"}) {
    LoadResult r =
        LoadStateMachine(TaskFlow(R"("Retry": [{}, {"MaxAttempts": )" + std::string(bad) + "}]"));
    EXPECT_THAT(Errors(r),
                ElementsAre(ErrorAt("/States/A/Retry/1/MaxAttempts", HasSubstr("whole number"))))
        << bad;
  }
  EXPECT_TRUE(LoadStateMachine(TaskFlow(R"("Retry": [{"MaxAttempts": 0}])")).ok());
}

TEST(LoaderTest, RetryBackoffRateMustBeAtLeastOne) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [{"BackoffRate": 0.5}])"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Retry/0/BackoffRate", HasSubstr("at least 1"))));
  EXPECT_TRUE(LoadStateMachine(TaskFlow(R"("Retry": [{"BackoffRate": 1}])")).ok());
}

TEST(LoaderTest, RetryMaxDelaySecondsMustBePositive) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [{"MaxDelaySeconds": 0}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Retry/0/MaxDelaySeconds",
                                             HasSubstr("greater than 0"))));
}

TEST(LoaderTest, RetryJitterStrategyMustBeFullOrNone) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [{"JitterStrategy": "HALF"}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Retry/0/JitterStrategy",
                                             HasSubstr(R"(found "HALF")"))));
  EXPECT_TRUE(LoadStateMachine(TaskFlow(R"("Retry": [{"JitterStrategy": "NONE"}])")).ok());
}

TEST(LoaderTest, RetryExceptionsMustBeNames) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Retry": [{"Exceptions": ["E", 7]}])"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Retry/0/Exceptions/1", HasSubstr("error type name"))));
}

TEST(LoaderTest, CatchMustBeAnArrayOfObjects) {
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("Catch": {"Next": "Done"})"))),
              ElementsAre(ErrorAt("/States/A/Catch", HasSubstr("must be an array"))));
  EXPECT_THAT(Errors(LoadStateMachine(TaskFlow(R"("Catch": ["Done"])"))),
              ElementsAre(ErrorAt("/States/A/Catch/0", HasSubstr("must be an object"))));
}

TEST(LoaderTest, CatchWithoutExceptions) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Catch": [{"Next": "Done"}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Catch/0/Exceptions",
                                             HasSubstr("missing required key 'Exceptions'"))));
  EXPECT_THAT(
      Errors(LoadStateMachine(TaskFlow(R"("Catch": [{"Exceptions": [], "Next": "Done"}])"))),
      ElementsAre(ErrorAt("/States/A/Catch/0/Exceptions", HasSubstr("at least one"))));
}

TEST(LoaderTest, CatchWithoutNext) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Catch": [{"Exceptions": ["E"]}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Catch/0/Next",
                                             HasSubstr("missing required key 'Next'"))));
}

// ---------------------------------------------------------------------------------------------
// Expressions are compiled at load

TEST(LoaderTest, ChoiceExpressionSyntaxErrorHasColumn) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/bad_expression.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/C/Choices/0/Expression",
                                  AllOf(HasSubstr("column 8"), HasSubstr("'[a] == == 1'")))));
}

TEST(LoaderTest, ChoiceExpressionCannotBeASequence) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Choice", "Choices": [{"Expression": "$Sequence.X|SIMPLE", "Next": "B"}],
          "Default": "B"},
    "B": {"Type": "Succeed"})"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Choices/0/Expression", HasSubstr("not a condition"))));
}

TEST(LoaderTest, ChoiceExpressionMayMatchAnException) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Choice", "Choices": [{"Expression": "$Exception{Error}", "Next": "B"}],
          "Default": "B"},
    "B": {"Type": "Succeed"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_EQ(r.machine->state(0).choice().choices[0].condition.form(),
            Expression::Form::kExceptionMatch);
}

TEST(LoaderTest, StatusKeySyntaxErrorHasColumn) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Status": {"[a] == == 1": "SU"})"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Status/[a] == == 1", HasSubstr("column 8"))));
}

TEST(LoaderTest, StatusKeyCannotBeASequence) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Status": {"$Sequence.X": "SU"})"));
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Status/$Sequence.X", HasSubstr("not a condition"))));
}

TEST(LoaderTest, InputExpressionSyntaxErrorHasPointerAndColumn) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Input": [{"id": "$.[a] == == 1"}, "$.==", "ok"])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Input/0/id", HasSubstr("column 10")),
                                     ErrorAt("/States/A/Input/1", HasSubstr("column 3"))));
}

TEST(LoaderTest, InputExpressionErrorPointerKeepsKeysWithColonSpace) {
  LoadResult r = LoadStateMachine(TaskFlow(R"("Input": [{"note: urgent": "$Nope"}])"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Input/0/note: urgent",
                                             HasSubstr("unknown expression form"))));
}

TEST(LoaderTest, OutputExpressionSyntaxErrorHasPointer) {
  LoadResult r = LoadStateMachine(
      TaskFlow(R"("Output": {"ok": "$.#root", "r": "$.#root.", "m": {"x": ["$Foo"]}})"));
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Output/r", HasSubstr("column 9")),
                                     ErrorAt("/States/A/Output/m/x/0", HasSubstr("'$Foo'"))));
}

// ---------------------------------------------------------------------------------------------
// The graph

TEST(LoaderTest, EndlessCycleIsAnError) {
  LoadResult r = LoadStateMachineFile(kFlowsDir + "/invalid/endless_loop.json");
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r),
              ElementsAre(ErrorAt("/States/A/Next", AllOf(HasSubstr("cycle with no way out"),
                                                          HasSubstr("A -> B -> A"))),
                          ErrorAt("/States/B/Next", HasSubstr("B -> A -> B"))));
}

TEST(LoaderTest, EndlessCycleThroughAChoiceIsAnError) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Expression": "[x] == 1", "Next": "A"}],
          "Default": "A"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Errors(r), ElementsAre(ErrorAt("/States/A/Next", HasSubstr("cycle")),
                                     ErrorAt("/States/C/Choices", HasSubstr("cycle"))));
}

TEST(LoaderTest, CycleWithAWayOutIsValid) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "poll", "Next": "C"},
    "C": {"Type": "Choice", "Choices": [{"Expression": "[done] != true", "Next": "A"}],
          "Default": "Done"},
    "Done": {"Type": "Succeed"})"));
  EXPECT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(Errors(r), IsEmpty());
}

TEST(LoaderTest, CycleLeftThroughCatchIsValid) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "B",
          "Catch": [{"Exceptions": ["Error"], "Next": "Failed"}]},
    "B": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "n", "Next": "A"},
    "Failed": {"Type": "Fail"})"));
  EXPECT_TRUE(r.ok()) << r.Describe("flow");
}

// ---------------------------------------------------------------------------------------------
// Warnings

TEST(LoaderTest, UnknownKeysWarnButLoad) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "Author": "me", "StartState": "A",
      "States": {"A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
                       "Timeout": 5, "Catch": [{"Exceptions": ["E"], "Next": "B", "X": 1}],
                       "Next": "B"},
                 "B": {"Type": "Succeed", "Next": "A"}}})");
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, ElementsAre(WarningAt("/Author", HasSubstr("unknown key 'Author'")),
                                    WarningAt("/States/A/Timeout", HasSubstr("'Timeout'")),
                                    WarningAt("/States/A/Catch/0/X", HasSubstr("'X'")),
                                    WarningAt("/States/B/Next", HasSubstr("'Next'"))));
}

TEST(LoaderTest, UnreachableStateWarnsButLoads) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "Succeed"},
    "Orphan": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, ElementsAre(WarningAt("/States/Orphan", HasSubstr("never reached"))));
}

TEST(LoaderTest, CompensationTriggerWithNothingToCompensateWarnsButLoads) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "T"},
    "T": {"Type": "CompensationTrigger", "Next": "F"},
    "F": {"Type": "Fail"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, ElementsAre(WarningAt("/States/T", HasSubstr("nothing to compensate"))));
}

TEST(LoaderTest, CompensationStateInTheForwardFlowWarnsButLoads) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
          "CompensateState": "B", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "undo"})"));
  ASSERT_TRUE(r.ok()) << r.Describe("flow");
  EXPECT_THAT(r.issues, ElementsAre(WarningAt("/States/B", HasSubstr("also reached"))));
}

// ---------------------------------------------------------------------------------------------
// Reporting

TEST(LoaderTest, AllIssuesAreCollectedInFileOrder) {
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "Missing"},
    "B": {"Type": "Teleport"},
    "C": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Input": {}})"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.machine, nullptr);
  EXPECT_THAT(r.issues, ElementsAre(ErrorAt("/States/A/Next", HasSubstr("'Missing'")),
                                    ErrorAt("/States/B/Type", HasSubstr("'Teleport'")),
                                    ErrorAt("/States/C/Input", HasSubstr("must be an array"))));
}

TEST(LoaderTest, GraphErrorsTakeTheirPlaceInFileOrder) {
  // loader.h: issues are "every error and warning found, in file order".
  LoadResult r = LoadStateMachine(StatesFlow(R"(
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
          "CompensateState": "F", "Next": "B"},
    "B": {"Type": "Succeed", "Foo": 1},
    "F": {"Type": "Fail"})"));
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.issues,
              ElementsAre(ErrorAt("/States/A/CompensateState", HasSubstr("'F' is a Fail")),
                          WarningAt("/States/B/Foo", HasSubstr("unknown key"))));
}

TEST(LoaderTest, IssueFormatNamesFilePointerAndSeverity) {
  EXPECT_EQ((Issue{Issue::Severity::kError, "/States/A/Next", "bad target"}).Format("f.json"),
            "f.json: /States/A/Next: bad target");
  EXPECT_EQ((Issue{Issue::Severity::kWarning, "/Foo", "unknown key"}).Format("f.json"),
            "f.json: /Foo: warning: unknown key");
  EXPECT_EQ((Issue{Issue::Severity::kError, "", "invalid JSON"}).Format("f.json"),
            "f.json: invalid JSON");
}

TEST(LoaderTest, DescribeListsEveryIssueOnItsOwnLine) {
  LoadResult r = LoadStateMachine(R"({"Name": "f", "Extra": 1, "StartState": "A",
      "States": {"A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m",
                       "Next": "Nope"}}})");
  EXPECT_EQ(r.Describe("flow.json"),
            "flow.json: /Extra: warning: unknown key 'Extra' is ignored\n"
            "flow.json: /States/A/Next: Next names state 'Nope', which is not defined in States\n");
}

}  // namespace
}  // namespace sagaflow::statelang
