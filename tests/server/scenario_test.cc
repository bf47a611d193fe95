#include "sagaflow/server/scenario.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sagaflow/tasks/error_types.h"
#include "sagaflow/tasks/task_context.h"
#include "sagaflow/tasks/task_error.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::server {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;

// The message of a scenario that must be refused as invalid.
std::string ParseError(const std::string& text) {
  Result<Scenario> s = ParseScenario(text);
  EXPECT_FALSE(s.ok()) << "accepted: " << text;
  if (s.ok()) return "";
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << s.status().ToString();
  return s.status().message();
}

// A scenario with one mock `svc.m` defined as `rule` (JSON text).
std::string WithMock(const std::string& rule) { return R"({"mocks": {"svc.m": )" + rule + "}}"; }

MockService ServiceOf(const std::string& definition) {
  Result<Json> def = ParseJson(definition);
  EXPECT_THAT(def, IsOk());
  Result<std::vector<MockRule>> rules = CompileMock(def.ok() ? *def : Json(), "/mocks/svc.m");
  EXPECT_THAT(rules, IsOk());
  return MockService(rules.ok() ? std::move(rules).value() : std::vector<MockRule>{MockRule{}});
}

// Calls `service` expecting a TaskError; returns it (type and message).
std::optional<TaskFailure> CallExpectingError(MockService& service, const Json& args) {
  try {
    Json result = service.Call(args);
    ADD_FAILURE() << "expected a TaskError, got " << result.dump();
  } catch (const TaskError& e) {
    return TaskFailure{e.type(), e.message()};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// ParseScenario

TEST(ScenarioTest, ParsesEveryKey) {
  Result<Scenario> s = ParseScenario(R"({
    "about": "all keys",
    "comment": "c",
    "Comment": "C",
    "flow": "simpleCompensationStateMachine",
    "input": {"a": 1, "barThrowException": "true"},
    "errors": {"DemoException": "Error"},
    "mocks": {
      "demoService.foo": {"echo": 0},
      "demoService.bar": [{"throw": "DemoException", "message": "boom"}, {"return": {"ok": true}}],
      "demoService.compensateBar": {"if": "[0][throwException] == 'true'",
                                    "then": {"throw": "DemoException"},
                                    "else": {"return": true}}
    },
    "then": [{"op": "forward", "input": {"barThrowException": "false"},
              "mocks": {"demoService.bar": {"return": 1}}},
             {"op": "compensate"},
             {"op": "skip"}]
  })");
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->flow, "simpleCompensationStateMachine");
  EXPECT_EQ(s->input, (Json{{"a", 1}, {"barThrowException", "true"}}));
  EXPECT_THAT(s->errors, ElementsAre(Pair("DemoException", "Error")));
  ASSERT_THAT(s->mocks, SizeIs(3));
  EXPECT_EQ(s->mocks.at("demoService.foo"), (Json{{"echo", 0}}));
  EXPECT_TRUE(s->mocks.at("demoService.bar").is_array());
  ASSERT_THAT(s->then, SizeIs(3));
  EXPECT_EQ(s->then[0].op, engine::Operation::kForward);
  EXPECT_EQ(s->then[0].input, (Json{{"barThrowException", "false"}}));
  ASSERT_THAT(s->then[0].mocks, SizeIs(1));
  EXPECT_EQ(s->then[0].mocks.at("demoService.bar"), (Json{{"return", 1}}));
  EXPECT_EQ(s->then[1].op, engine::Operation::kCompensate);
  EXPECT_TRUE(s->then[1].input.is_null());
  EXPECT_THAT(s->then[1].mocks, IsEmpty());
  EXPECT_EQ(s->then[2].op, engine::Operation::kSkip);
}

TEST(ScenarioTest, EmptyScenarioHasDefaults) {
  Result<Scenario> s = ParseScenario("{}");
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->flow, "");
  EXPECT_EQ(s->input, Json::object());
  EXPECT_THAT(s->errors, IsEmpty());
  EXPECT_THAT(s->mocks, IsEmpty());
  EXPECT_THAT(s->then, IsEmpty());
}

TEST(ScenarioTest, AcceptsComments) {
  Result<Scenario> s = ParseScenario(R"(
    // the flow under test
    {
      "flow": "f", /* started by name */
      "input": {"a": 1}  // trailing comment
    })");
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(s->flow, "f");
  EXPECT_EQ(s->input, (Json{{"a", 1}}));
}

TEST(ScenarioTest, ParsesEveryErrorType) {
  Result<Scenario> s = ParseScenario(
      R"({"errors": {"ZooParent": "Error", "AChild": "ZooParent", "MiddleChild": "AChild"}})");
  ASSERT_THAT(s, IsOk());
  EXPECT_THAT(s->errors,
              UnorderedElementsAre(Pair("ZooParent", "Error"), Pair("AChild", "ZooParent"),
                                   Pair("MiddleChild", "AChild")));
}

TEST(ScenarioTest, RefusesInvalidJson) {
  EXPECT_THAT(ParseError(R"({"flow": "f",)"), HasSubstr("invalid JSON"));
  EXPECT_THAT(ParseError(""), HasSubstr("invalid JSON"));
}

TEST(ScenarioTest, RefusesANonObjectDocument) {
  EXPECT_THAT(ParseError("[]"), HasSubstr("must be a JSON object"));
  EXPECT_THAT(ParseError("\"flow\""), HasSubstr("must be a JSON object"));
}

TEST(ScenarioTest, RefusesAnUnknownTopLevelKey) {
  std::string m = ParseError(R"({"flow": "f", "mock": {}})");
  EXPECT_THAT(m, StartsWith("/mock: "));
  EXPECT_THAT(m, HasSubstr("unknown key"));
}

TEST(ScenarioTest, EscapesPointerTokensOfUnknownKeys) {
  EXPECT_THAT(ParseError(R"({"a/b~c": 1})"), StartsWith("/a~1b~0c: "));
}

TEST(ScenarioTest, RefusesAFlowThatIsNotAString) {
  EXPECT_THAT(ParseError(R"({"flow": 3})"), StartsWith("/flow: "));
}

TEST(ScenarioTest, RefusesInputThatIsNotAnObject) {
  EXPECT_THAT(ParseError(R"({"input": [1, 2]})"), StartsWith("/input: must be a JSON object"));
  EXPECT_THAT(ParseError(R"({"input": "a"})"), StartsWith("/input: "));
  EXPECT_THAT(ParseError(R"({"input": null})"), StartsWith("/input: "));
}

TEST(ScenarioTest, RefusesErrorsThatAreNotAnObjectOfStrings) {
  EXPECT_THAT(ParseError(R"({"errors": ["DemoException"]})"), StartsWith("/errors: "));
  EXPECT_THAT(ParseError(R"({"errors": {"DemoException": 1}})"),
              StartsWith("/errors/DemoException: must be a parent type name"));
  EXPECT_THAT(ParseError(R"({"errors": {"DemoException": null}})"),
              StartsWith("/errors/DemoException: "));
}

TEST(ScenarioTest, RefusesMocksThatAreNotAnObject) {
  EXPECT_THAT(ParseError(R"({"mocks": [{"return": 1}]})"), StartsWith("/mocks: "));
}

TEST(ScenarioTest, RefusesAMockRuleThatIsNotAnObject) {
  std::string m = ParseError(WithMock("true"));
  EXPECT_THAT(m, StartsWith("/mocks/svc.m: "));
  EXPECT_THAT(m, HasSubstr("must be an object"));
  EXPECT_THAT(ParseError(WithMock("[{\"return\": 1}, 7]")), StartsWith("/mocks/svc.m/1: "));
}

TEST(ScenarioTest, RefusesAMockRuleWithNoBehaviour) {
  std::string m = ParseError(WithMock(R"({"message": "boom"})"));
  EXPECT_THAT(m, StartsWith("/mocks/svc.m: "));
  EXPECT_THAT(m,
              AllOf(HasSubstr("return"), HasSubstr("echo"), HasSubstr("throw"), HasSubstr("if")));
  EXPECT_THAT(ParseError(WithMock("{}")), StartsWith("/mocks/svc.m: "));
}

TEST(ScenarioTest, RefusesAnEchoThatIsNotAnArgumentIndex) {
  EXPECT_THAT(ParseError(WithMock(R"({"echo": -1})")), StartsWith("/mocks/svc.m/echo: "));
  EXPECT_THAT(ParseError(WithMock(R"({"echo": 1.5})")), StartsWith("/mocks/svc.m/echo: "));
  EXPECT_THAT(ParseError(WithMock(R"({"echo": "0"})")), StartsWith("/mocks/svc.m/echo: "));
  EXPECT_THAT(ParseError(WithMock(R"({"echo": null})")), StartsWith("/mocks/svc.m/echo: "));
}

TEST(ScenarioTest, RefusesAThrowWithoutATypeName) {
  EXPECT_THAT(ParseError(WithMock(R"({"throw": ""})")), StartsWith("/mocks/svc.m/throw: "));
  EXPECT_THAT(ParseError(WithMock(R"({"throw": 42})")), StartsWith("/mocks/svc.m/throw: "));
  EXPECT_THAT(ParseError(WithMock(R"({"throw": null, "message": "m"})")),
              StartsWith("/mocks/svc.m/throw: "));
}

TEST(ScenarioTest, RefusesAThrowMessageThatIsNotAString) {
  EXPECT_THAT(ParseError(WithMock(R"({"throw": "E", "message": 5})")),
              StartsWith("/mocks/svc.m/message: "));
}

TEST(ScenarioTest, RefusesAnIfWithoutThenOrElse) {
  std::string m = ParseError(WithMock(R"({"if": "[0] == 1", "then": {"return": 1}})"));
  EXPECT_THAT(m, StartsWith("/mocks/svc.m: "));
  EXPECT_THAT(m, AllOf(HasSubstr("then"), HasSubstr("else")));
  EXPECT_THAT(ParseError(WithMock(R"({"if": "[0] == 1", "else": {"return": 1}})")),
              StartsWith("/mocks/svc.m: "));
}

TEST(ScenarioTest, RefusesAnIfWithABadExpression) {
  EXPECT_THAT(ParseError(WithMock(R"({"if": "[0] == ", "then": {"return": 1},
                                      "else": {"return": 2}})")),
              StartsWith("/mocks/svc.m/if: "));
  EXPECT_THAT(ParseError(WithMock(R"({"if": 1, "then": {"return": 1}, "else": {"return": 2}})")),
              StartsWith("/mocks/svc.m/if: "));
}

TEST(ScenarioTest, NamesTheBranchOfABadNestedRule) {
  EXPECT_THAT(ParseError(WithMock(R"({"if": "[0] == 1", "then": {"return": 1},
                                      "else": {"echo": -2}})")),
              StartsWith("/mocks/svc.m/else/echo: "));
  EXPECT_THAT(ParseError(WithMock(R"([{"return": 1}, {"if": "true", "then": {"nothing": 1},
                                      "else": {"return": 2}}])")),
              StartsWith("/mocks/svc.m/1/then: "));
}

// `levels` if rules nested in each other's `then`, ending in a return.
std::string NestedIfs(int levels) {
  std::string rule = R"({"return": "deep"})";
  for (int i = 0; i < levels; ++i) {
    rule = R"({"if": "true", "then": )" + rule + R"(, "else": {"return": "shallow"}})";
  }
  return rule;
}

TEST(ScenarioTest, AcceptsNestedIfs) {
  EXPECT_THAT(ParseScenario(WithMock(NestedIfs(10))), IsOk());
}

TEST(ScenarioTest, RefusesIfsNestedTooDeeply) {
  std::string m = ParseError(WithMock(NestedIfs(60)));
  EXPECT_THAT(m, StartsWith("/mocks/svc.m/then/then/"));
}

TEST(ScenarioTest, RefusesAnEmptyListOfRules) {
  std::string m = ParseError(WithMock("[]"));
  EXPECT_THAT(m, StartsWith("/mocks/svc.m: "));
  EXPECT_THAT(m, HasSubstr("empty"));
}

TEST(ScenarioTest, EscapesServiceNamesInMockPointers) {
  EXPECT_THAT(ParseError(R"({"mocks": {"a/b": {"echo": -1}}})"), StartsWith("/mocks/a~1b/echo: "));
}

TEST(ScenarioTest, RefusesThenThatIsNotAList) {
  EXPECT_THAT(ParseError(R"({"then": {"op": "forward"}})"), StartsWith("/then: "));
}

TEST(ScenarioTest, RefusesAnOperationWithoutAnOp) {
  EXPECT_THAT(ParseError(R"({"then": [{"input": {}}]})"), StartsWith("/then/0: "));
  EXPECT_THAT(ParseError(R"({"then": ["forward"]})"), StartsWith("/then/0: "));
  EXPECT_THAT(ParseError(R"({"then": [{"op": 1}]})"), StartsWith("/then/0: "));
}

TEST(ScenarioTest, RefusesAnUnknownOperation) {
  std::string m = ParseError(R"({"then": [{"op": "forward"}, {"op": "rewind"}]})");
  EXPECT_THAT(m, StartsWith("/then/1/op: "));
  EXPECT_THAT(m, HasSubstr("rewind"));
}

TEST(ScenarioTest, RefusesAnUnknownKeyInAnOperation) {
  std::string m = ParseError(R"({"then": [{"op": "forward", "inputs": {}}]})");
  EXPECT_THAT(m, StartsWith("/then/0/inputs: "));
  EXPECT_THAT(m, HasSubstr("unknown key"));
}

TEST(ScenarioTest, RefusesAnOperationInputThatIsNotAnObject) {
  EXPECT_THAT(ParseError(R"({"then": [{"op": "compensate", "input": [1]}]})"),
              StartsWith("/then/0/input: "));
}

TEST(ScenarioTest, RefusesBadMocksInAnOperation) {
  EXPECT_THAT(ParseError(R"({"then": [{"op": "forward", "mocks": {"svc.m": {"echo": -1}}}]})"),
              StartsWith("/then/0/mocks/svc.m/echo: "));
  EXPECT_THAT(ParseError(R"({"then": [{"op": "forward", "mocks": []}]})"),
              StartsWith("/then/0/mocks: "));
}

// `{"input": {"a": [[...]]}}` nested `depth` levels in all.
std::string NestedScenario(int depth) {
  const int arrays = depth - 2;
  return R"({"input": {"a": )" + std::string(static_cast<std::size_t>(arrays), '[') +
         std::string(static_cast<std::size_t>(arrays), ']') + "}}";
}

TEST(ScenarioTest, AcceptsNestingOfSixtyFourLevels) {
  EXPECT_THAT(ParseScenario(NestedScenario(64)), IsOk());
}

TEST(ScenarioTest, RefusesNestingDeeperThanSixtyFourLevels) {
  EXPECT_THAT(ParseError(NestedScenario(65)), HasSubstr("64"));
  // Far deeper than any stack should be asked to walk.
  EXPECT_THAT(ParseError(NestedScenario(100000)), HasSubstr("nested deeper"));
}

TEST(ScenarioTest, LoadScenarioFileReportsAnUnreadableFile) {
  EXPECT_THAT(LoadScenarioFile("/nonexistent/sagaflow/scenario.json"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cannot read")));
}

// ---------------------------------------------------------------------------------------------
// MockService

TEST(MockServiceTest, ReturnsTheValue) {
  MockService s = ServiceOf(R"({"return": {"ok": true, "n": [1, 2]}})");
  EXPECT_EQ(s.Call(Json::array()), (Json{{"ok", true}, {"n", {1, 2}}}));
}

TEST(MockServiceTest, ReturnsNull) {
  MockService s = ServiceOf(R"({"return": null})");
  EXPECT_TRUE(s.Call(Json::array({1})).is_null());
}

TEST(MockServiceTest, CallKUsesRuleKAndTheLastRepeats) {
  MockService s = ServiceOf(R"([{"return": "first"}, {"return": "second"}, {"return": "last"}])");
  EXPECT_EQ(s.Call(Json::array()), "first");
  EXPECT_EQ(s.Call(Json::array()), "second");
  EXPECT_EQ(s.Call(Json::array()), "last");
  EXPECT_EQ(s.Call(Json::array()), "last");
  EXPECT_EQ(s.Call(Json::array()), "last");
  EXPECT_EQ(s.calls(), 5u);
}

TEST(MockServiceTest, ASingleRuleRepeats) {
  MockService s = ServiceOf(R"({"return": 7})");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(s.Call(Json::array()), 7);
  EXPECT_EQ(s.calls(), 3u);
}

TEST(MockServiceTest, EchoReturnsTheArgument) {
  MockService first = ServiceOf(R"({"echo": 0})");
  EXPECT_EQ(first.Call(Json::array({Json{{"orderId", "1001"}}, 2})), (Json{{"orderId", "1001"}}));
  MockService second = ServiceOf(R"({"echo": 1})");
  EXPECT_EQ(second.Call(Json::array({"a", "b", "c"})), "b");
}

TEST(MockServiceTest, EchoFailsClearlyWhenTheCallHasFewerArguments) {
  MockService s = ServiceOf(R"({"echo": 2})");
  std::optional<TaskFailure> f = CallExpectingError(s, Json::array({"only", "two"}));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, "Error");
  EXPECT_THAT(f->message, AllOf(HasSubstr("echo 2"), HasSubstr("2 arguments")));
  EXPECT_EQ(s.calls(), 1u);
}

TEST(MockServiceTest, ThrowRaisesTaskErrorWithTypeAndMessage) {
  MockService s = ServiceOf(R"({"throw": "DemoException", "message": "boom"})");
  std::optional<TaskFailure> f = CallExpectingError(s, Json::array({1}));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, "DemoException");
  EXPECT_EQ(f->message, "boom");
}

TEST(MockServiceTest, ThrowWithoutAMessageNamesTheType) {
  MockService s = ServiceOf(R"({"throw": "DemoException"})");
  std::optional<TaskFailure> f = CallExpectingError(s, Json::array());
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, "DemoException");
  EXPECT_THAT(f->message, HasSubstr("DemoException"));
}

TEST(MockServiceTest, ThrowThenReturnAsInARetry) {
  MockService s = ServiceOf(R"([{"throw": "DemoException", "message": "boom"},
                                {"return": {"ok": true}}])");
  EXPECT_TRUE(CallExpectingError(s, Json::array()).has_value());
  EXPECT_EQ(s.Call(Json::array()), (Json{{"ok", true}}));
  EXPECT_EQ(s.Call(Json::array()), (Json{{"ok", true}}));
  EXPECT_EQ(s.calls(), 3u);
}

TEST(MockServiceTest, IfChoosesByTheArgumentList) {
  MockService s = ServiceOf(R"({"if": "[0][throwException] == 'true'",
                                "then": {"throw": "DemoException", "message": "asked to"},
                                "else": {"return": true}})");
  std::optional<TaskFailure> f =
      CallExpectingError(s, Json::array({Json{{"throwException", "true"}}}));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, "DemoException");
  EXPECT_EQ(f->message, "asked to");
  EXPECT_EQ(s.Call(Json::array({Json{{"throwException", "false"}}})), true);
  EXPECT_EQ(s.calls(), 2u);
}

TEST(MockServiceTest, IfElseCanEchoAndNest) {
  MockService s = ServiceOf(R"({"if": "[0] > 10",
                                "then": {"if": "[0] > 100", "then": {"return": "huge"},
                                         "else": {"return": "big"}},
                                "else": {"echo": 1}})");
  EXPECT_EQ(s.Call(Json::array({1000})), "huge");
  EXPECT_EQ(s.Call(Json::array({50})), "big");
  EXPECT_EQ(s.Call(Json::array({5, "small"})), "small");
}

TEST(MockServiceTest, IfPerCallInAList) {
  MockService s = ServiceOf(R"([{"return": "first"},
                                {"if": "[0] == 1", "then": {"return": "one"},
                                 "else": {"return": "other"}}])");
  EXPECT_EQ(s.Call(Json::array({1})), "first");
  EXPECT_EQ(s.Call(Json::array({1})), "one");
  EXPECT_EQ(s.Call(Json::array({2})), "other");
}

TEST(MockServiceTest, NestedIfsResolveToTheLeaf) {
  MockService s = ServiceOf(NestedIfs(10));
  EXPECT_EQ(s.Call(Json::array()), "deep");
}

TEST(MockServiceTest, AConditionThatFailsToEvaluateIsATaskError) {
  MockService s = ServiceOf(R"({"if": "[0][flag] == 'true'", "then": {"return": 1},
                                "else": {"return": 2}})");
  // [0] is null: dereferencing it is an evaluation error, reported with the condition.
  std::optional<TaskFailure> f = CallExpectingError(s, Json::array({nullptr}));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, "Error");
  EXPECT_THAT(f->message, HasSubstr("[0][flag] == 'true'"));
}

TEST(MockServiceTest, ConcurrentCallsEachTakeTheirOwnRule) {
  // Rules 0..99 return their index; the last one repeats.
  Json rules = Json::array();
  for (int i = 0; i < 100; ++i) rules.push_back(Json{{"return", i}});
  MockService s = ServiceOf(rules.dump());
  constexpr int kThreads = 4;
  constexpr int kCallsPerThread = 50;
  std::vector<std::vector<int>> seen(kThreads);
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&s, &seen, t] {
        for (int i = 0; i < kCallsPerThread; ++i)
          seen[t].push_back(s.Call(Json::array()).get<int>());
      });
    }
  }
  std::vector<int> all;
  for (const auto& v : seen) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  std::vector<int> expected;
  for (int i = 0; i < 100; ++i) expected.push_back(i);
  for (int i = 100; i < kThreads * kCallsPerThread; ++i) expected.push_back(99);
  EXPECT_EQ(all, expected);
  EXPECT_EQ(s.calls(), static_cast<std::uint64_t>(kThreads * kCallsPerThread));
}

TEST(MockServiceTest, CallsStartsAtZero) {
  MockService s = ServiceOf(R"({"return": 1})");
  EXPECT_EQ(s.calls(), 0u);
}

// ---------------------------------------------------------------------------------------------
// MockSet

class MockSetTest : public ::testing::Test {
 protected:
  // Invokes the task registered under `name` as the engine would.
  Json Invoke(const std::string& name, const Json& args) {
    const TaskFn* fn = registry_.Find(TaskName(name));
    EXPECT_NE(fn, nullptr) << name << " is not registered";
    if (fn == nullptr) return Json("<not registered>");
    const std::stop_token token = stop_.get_token();
    TaskContext ctx(instance_, state_, 1, key_, std::nullopt, token);
    Json result;
    TaskFailure failure;
    if (!InvokeTask(*fn, ctx, args, result, failure)) {
      return Json{{"failed", failure.type}, {"message", failure.message}};
    }
    return result;
  }

  static std::map<std::string, Json> Mocks(const std::string& text) {
    Result<Json> doc = ParseJson(text);
    EXPECT_THAT(doc, IsOk());
    std::map<std::string, Json> out;
    if (doc.ok()) {
      for (auto it = doc->begin(); it != doc->end(); ++it) out.emplace(it.key(), it.value());
    }
    return out;
  }

  TaskRegistry registry_;
  MockSet mocks_;
  InstanceId instance_{"01JTESTINSTANCE00000000000"};
  StateName state_{"FirstState"};
  std::string key_ = "01JTESTINSTANCE00000000000:FirstState:0";
  std::stop_source stop_;
};

TEST_F(MockSetTest, InstallRegistersEveryMock) {
  ASSERT_THAT(mocks_.Install(Mocks(R"({"demoService.foo": {"echo": 0},
                                       "demoService.bar": {"throw": "DemoException",
                                                           "message": "boom"}})"),
                             registry_),
              IsOk());
  EXPECT_EQ(Invoke("demoService.foo", Json::array({"x"})), "x");
  EXPECT_EQ(Invoke("demoService.bar", Json::array()),
            (Json{{"failed", "DemoException"}, {"message", "boom"}}));
  EXPECT_EQ(registry_.Find(TaskName("demoService.other")), nullptr);
  EXPECT_THAT(mocks_.Calls(),
              ElementsAre(Pair("demoService.bar", 1u), Pair("demoService.foo", 1u)));
}

TEST_F(MockSetTest, UncalledMocksCountZero) {
  ASSERT_THAT(mocks_.Install(Mocks(R"({"demoService.foo": {"return": 1}})"), registry_), IsOk());
  EXPECT_THAT(mocks_.Calls(), ElementsAre(Pair("demoService.foo", 0u)));
}

TEST_F(MockSetTest, ReinstallingReplacesTheMockAndCountsAccumulate) {
  ASSERT_THAT(mocks_.Install(Mocks(R"({"demoService.foo": {"return": "old"},
                                       "demoService.bar": {"return": "bar"}})"),
                             registry_),
              IsOk());
  EXPECT_EQ(Invoke("demoService.foo", Json::array()), "old");
  EXPECT_EQ(Invoke("demoService.foo", Json::array()), "old");
  EXPECT_EQ(Invoke("demoService.bar", Json::array()), "bar");

  ASSERT_THAT(mocks_.Install(Mocks(R"({"demoService.foo": {"return": "new"}})"), registry_),
              IsOk());
  EXPECT_EQ(Invoke("demoService.foo", Json::array()), "new");
  EXPECT_EQ(Invoke("demoService.bar", Json::array()), "bar");  // not replaced
  EXPECT_THAT(mocks_.Calls(),
              ElementsAre(Pair("demoService.bar", 2u), Pair("demoService.foo", 3u)));
}

TEST_F(MockSetTest, AReplacementStartsFromItsFirstRule) {
  ASSERT_THAT(mocks_.Install(Mocks(R"({"svc.m": [{"return": 1}, {"return": 2}]})"), registry_),
              IsOk());
  EXPECT_EQ(Invoke("svc.m", Json::array()), 1);
  EXPECT_EQ(Invoke("svc.m", Json::array()), 2);
  ASSERT_THAT(mocks_.Install(Mocks(R"({"svc.m": [{"return": 10}, {"return": 20}]})"), registry_),
              IsOk());
  EXPECT_EQ(Invoke("svc.m", Json::array()), 10);
  EXPECT_EQ(Invoke("svc.m", Json::array()), 20);
}

TEST_F(MockSetTest, InstallRefusesAnInvalidMockNamingIt) {
  EXPECT_THAT(mocks_.Install(Mocks(R"({"svc.m": {"echo": -1}})"), registry_),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("/mocks/svc.m/echo")));
}

TEST_F(MockSetTest, InstallEscapesTheServiceNameInThePointer) {
  // Same JSON pointer rules as ParseScenario uses for the keys of "mocks".
  EXPECT_THAT(mocks_.Install(Mocks(R"({"billing/svc.m": {"echo": -1}})"), registry_),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("/mocks/billing~1svc.m/echo")));
}

// ---------------------------------------------------------------------------------------------
// DefineErrors

TEST(DefineErrorsTest, DefinesParentsBeforeChildren) {
  Scenario s;
  s.errors = {{"DemoException", "Error"},
              {"DemoSubException", "DemoException"},
              {"DemoNetwork", "NetworkError"}};
  ErrorTypes types;
  ASSERT_THAT(DefineErrors(s, types), IsOk());
  EXPECT_TRUE(types.IsA("DemoSubException", "DemoException"));
  EXPECT_TRUE(types.IsA("DemoSubException", "Error"));
  EXPECT_FALSE(types.IsA("DemoException", "DemoSubException"));
  EXPECT_TRUE(types.IsA("DemoNetwork", "NetworkError"));
  EXPECT_FALSE(types.IsA("DemoException", "NetworkError"));
}

TEST(DefineErrorsTest, AcceptsJavaAliasesAsParents) {
  Scenario s;
  s.errors = {{"DemoException", "java.lang.RuntimeException"}};
  ErrorTypes types;
  ASSERT_THAT(DefineErrors(s, types), IsOk());
  EXPECT_TRUE(types.IsA("DemoException", "java.lang.Throwable"));
}

TEST(DefineErrorsTest, AnUnknownParentIsAnErrorNamingTheType) {
  Scenario s;
  s.errors = {{"DemoException", "Error"}, {"Orphan", "NoSuchParent"}};
  ErrorTypes types;
  Status st = DefineErrors(s, types);
  EXPECT_THAT(st, StatusIs(StatusCode::kInvalidArgument,
                           AllOf(StartsWith("/errors/Orphan: "), HasSubstr("NoSuchParent"))))
      << st.ToString();
}

TEST(DefineErrorsTest, EscapesTheTypeNameInThePointer) {
  // Same JSON pointer rules as ParseScenario uses for the keys of "errors".
  Scenario s;
  s.errors = {{"billing/Declined", "NoSuchParent"}};
  ErrorTypes types;
  EXPECT_THAT(DefineErrors(s, types),
              StatusIs(StatusCode::kInvalidArgument, StartsWith("/errors/billing~1Declined: ")));
}

TEST(DefineErrorsTest, DefinesAChildListedBeforeItsParent) {
  Scenario s;
  s.errors = {{"DemoLeaf", "DemoSubException"},
              {"DemoSubException", "DemoException"},
              {"DemoException", "Error"}};
  ErrorTypes types;
  ASSERT_THAT(DefineErrors(s, types), IsOk());
  EXPECT_TRUE(types.IsA("DemoLeaf", "DemoException"));
  EXPECT_TRUE(types.IsA("DemoSubException", "DemoException"));
}

TEST(DefineErrorsTest, ACycleIsAnErrorNamingATypeOfIt) {
  Scenario s;
  s.errors = {{"DemoA", "DemoB"}, {"DemoB", "DemoA"}};
  ErrorTypes types;
  Status st = DefineErrors(s, types);
  EXPECT_THAT(st, StatusIs(StatusCode::kInvalidArgument, StartsWith("/errors/Demo")))
      << st.ToString();
}

TEST(DefineErrorsTest, AnUnknownParentBehindAChainNamesTheTypeThatHasIt) {
  // DemoLeaf's parent is in the scenario; DemoMiddle's is defined nowhere: that is the mistake.
  Scenario s;
  s.errors = {{"DemoLeaf", "DemoMiddle"}, {"DemoMiddle", "NoSuchParent"}, {"DemoOk", "Error"}};
  ErrorTypes types;
  Status st = DefineErrors(s, types);
  EXPECT_THAT(st, StatusIs(StatusCode::kInvalidArgument,
                           AllOf(StartsWith("/errors/DemoMiddle: "), HasSubstr("NoSuchParent"))))
      << st.ToString();
}

TEST(DefineErrorsTest, RedefiningABuiltInWithAnotherParentIsAnError) {
  Scenario s;
  s.errors = {{"TimeoutError", "Error"}};
  ErrorTypes types;
  EXPECT_THAT(DefineErrors(s, types),
              StatusIs(StatusCode::kInvalidArgument, StartsWith("/errors/TimeoutError: ")));
}

TEST(DefineErrorsTest, ParsedScenarioDefinesAParentWrittenFirst) {
  // The parent is written first in the file but sorts after the child by name.
  Result<Scenario> s =
      ParseScenario(R"({"errors": {"ZooParent": "Error", "AChild": "ZooParent"}})");
  ASSERT_THAT(s, IsOk());
  ErrorTypes types;
  EXPECT_THAT(DefineErrors(*s, types), IsOk());
  EXPECT_TRUE(types.IsA("AChild", "ZooParent"));
}

}  // namespace
}  // namespace sagaflow::server
