// End-to-end tests of the `sagaflow` command line: each test runs the built binary.

#include "sagaflow/server/cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sagaflow/common/json.h"
#include "cli_fixture.h"

namespace sagaflow::cli {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

// One service task calling `svc.flaky` with a Retry policy, then Succeed; a Catch of
// DemoException routes to a Fail state.
const char* const kRetryFlow = R"({
  "Name": "retryFlow",
  "StartState": "Flaky",
  "States": {
    "Flaky": {
      "Type": "ServiceTask",
      "ServiceName": "svc",
      "ServiceMethod": "flaky",
      "Input": ["$.[a]"],
      "Output": {"flakyResult": "$.#root"},
      "Retry": [{"Exceptions": ["DemoException"], "IntervalSeconds": 2, "MaxAttempts": 3,
                 "BackoffRate": 3}],
      "Catch": [{"Exceptions": ["DemoException"], "Next": "Fail"}],
      "Next": "Succeed"
    },
    "Succeed": {"Type": "Succeed"},
    "Fail": {"Type": "Fail", "ErrorCode": "GAVE_UP", "Message": "retries exhausted"}
  }
})";

// One service task without a Catch: a failure ends the instance, which `forward` can re-run.
const char* const kOneStepFlow = R"({
  "Name": "oneStep",
  "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "Input": ["$.[x]"], "Output": {"aResult": "$.#root"}, "Next": "Succeed"},
    "Succeed": {"Type": "Succeed"}
  }
})";

std::vector<std::string> States(const Json& trace) {
  std::vector<std::string> out;
  for (const Json& e : trace)
    out.push_back(e.value("state", "?") + "/" + e.value("kind", "?") + "/" +
                  e.value("status", "?"));
  return out;
}

// ---------------------------------------------------------------------------------------------
// validate

TEST_F(CliTest, ValidateAcceptsTheSeedFlow) {
  CliRun r = Sagaflow({"validate", kFulfillFlow});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr(kFulfillFlow), HasSubstr("valid")));
  EXPECT_THAT(r.err, IsEmpty());
}

TEST_F(CliTest, ValidateReportsEveryIssueWithFileAndPointer) {
  std::string bad = Write("bad.json", R"({
    "Name": "bad",
    "StartState": "A",
    "States": {
      "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "Next": "Nowhere"},
      "B": {"Type": "Choice", "Choices": [{"Expression": "[x] == ", "Next": "Gone"}],
            "Default": "A"},
      "C": {"Type": "Bogus"}
    }
  })");
  CliRun r = Sagaflow({"validate", bad});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(bad + ": /States/A/Next: "));
  EXPECT_THAT(r.err, HasSubstr("Nowhere"));
  EXPECT_THAT(r.err, HasSubstr(bad + ": /States/B/Choices/0/Expression: "));
  EXPECT_THAT(r.err, HasSubstr(bad + ": /States/B/Choices/0/Next: "));
  EXPECT_THAT(r.err, HasSubstr("Gone"));
  EXPECT_THAT(r.err, HasSubstr(bad + ": /States/C/Type: "));
  EXPECT_THAT(r.err, HasSubstr("Bogus"));
  EXPECT_THAT(r.out, Not(HasSubstr("valid")));
}

TEST_F(CliTest, ValidateChecksEveryFileAndFailsIfAnyIsInvalid) {
  std::string bad = Write("unknown_next.json", R"({"Name": "x", "StartState": "A",
    "States": {"A": {"Type": "Succeed", "Next": "B"}, "Z": {"Type": "Choice",
    "Choices": [{"Expression": "true", "Next": "Missing"}]}}})");
  CliRun r = Sagaflow({"validate", kFulfillFlow, bad});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.out, HasSubstr(kFulfillFlow + ": valid"));
  EXPECT_THAT(r.err, HasSubstr(bad + ": /States/Z/Choices/0/Next: "));
  EXPECT_THAT(r.err, Not(HasSubstr(kFulfillFlow)));
}

TEST_F(CliTest, ValidateReportsAMissingFile) {
  std::string missing = (dir_ / "no_such_flow.json").string();
  CliRun r = Sagaflow({"validate", missing});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(missing));
}

TEST_F(CliTest, ValidateReportsADirectory) {
  CliRun r = Sagaflow({"validate", dir_.string()});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(dir_.string()));
}

TEST_F(CliTest, ValidateNamesTheFileOfTruncatedJson) {
  std::string truncated =
      Write("truncated.json", R"({"Name": "x", "StartState": "A", "States": {)");
  CliRun r = Sagaflow({"validate", truncated});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, AllOf(StartsWith(truncated + ": "), HasSubstr("JSON")));
}

TEST_F(CliTest, ValidateNeedsAFile) {
  CliRun r = Sagaflow({"validate"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, Not(IsEmpty()));
}

// ---------------------------------------------------------------------------------------------
// simulate --json

TEST_F(CliTest, SimulateHappyPathPrintsTheContractFields) {
  Json out = SimulateJson({kFulfillFlow}, kHappyScenario);
  EXPECT_EQ(out["status"], "SU");
  ASSERT_TRUE(out.contains("compensationStatus"));
  EXPECT_TRUE(out["compensationStatus"].is_null());
  ASSERT_TRUE(out.contains("errorCode"));
  EXPECT_TRUE(out["errorCode"].is_null());
  EXPECT_EQ(out["context"]["CreateFulfillOrderResult"], true);
  EXPECT_EQ(out["context"]["WmsPickGoodsResult"], true);
  EXPECT_EQ(out["context"]["TmsSendOutResult"], true);
  EXPECT_EQ(out["context"]["receiveFulfillRequest"],
            (Json{{"orderId", "1001"}, {"userId", "u-7"}}));

  ASSERT_TRUE(out["trace"].is_array());
  EXPECT_THAT(States(out["trace"]), ElementsAre("FulfillService/forward/SU",
                                                "WmsService/forward/SU", "TmsService/forward/SU"));
  for (const Json& e : out["trace"]) {
    EXPECT_EQ(e["attempts"], 1) << e.dump();
    EXPECT_FALSE(e.contains("compensates")) << e.dump();
  }
  EXPECT_EQ(out["calls"]["fulfillSagaService.createFulfillOrder"], 1);
  EXPECT_EQ(out["calls"]["wmsSageService.pickGoods"], 1);
  EXPECT_EQ(out["calls"]["tmsSagaService.sendOut"], 1);
  EXPECT_EQ(out["calls"].value("tmsSagaService.sendOutCompensate", 0), 0);
  EXPECT_EQ(out["virtualSeconds"], 0);
  EXPECT_EQ(out["operations"], Json::array());
}

TEST_F(CliTest, SimulateCompensatesNewestFirstWhenSendOutFails) {
  Json out = SimulateJson({kFulfillFlow}, kSendOutFailsScenario);
  EXPECT_EQ(out["status"], "UN");
  EXPECT_EQ(out["compensationStatus"], "SU");
  EXPECT_EQ(out["errorCode"], "500");
  EXPECT_THAT(
      States(out["trace"]),
      ElementsAre("FulfillService/forward/SU", "WmsService/forward/SU", "TmsService/forward/UN",
                  "TmsSendOutCompensate/compensation/SU", "WmsPickGoodsCompensate/compensation/SU",
                  "CreateFulfillOrderCompensate/compensation/SU"));
  const Json& trace = out["trace"];
  ASSERT_EQ(trace.size(), 6u);
  EXPECT_EQ(trace[3]["compensates"], "TmsService");
  EXPECT_EQ(trace[4]["compensates"], "WmsService");
  EXPECT_EQ(trace[5]["compensates"], "FulfillService");
  for (const Json& e : trace) EXPECT_EQ(e["attempts"], 1) << e.dump();
  EXPECT_EQ(out["calls"]["tmsSagaService.sendOut"], 1);
  EXPECT_EQ(out["calls"]["tmsSagaService.sendOutCompensate"], 1);
  EXPECT_EQ(out["calls"]["wmsSageService.pickGoodsCompensate"], 1);
  EXPECT_EQ(out["calls"]["fulfillSagaService.createFulfillOrderCompensate"], 1);
  EXPECT_FALSE(out["context"].contains("TmsSendOutResult"));
  EXPECT_EQ(out["operations"], Json::array());
}

TEST_F(CliTest, SimulateRetryTakesTheBackoffSumInVirtualTime) {
  std::string flow = Write("retry.json", kRetryFlow);
  // Fails twice, then answers: retries after 2 s and 2 x 3 = 6 s.
  std::string scenario = Write("scenario.json", R"({
    "input": {"a": 1},
    "errors": {"DemoException": "Error"},
    "mocks": {"svc.flaky": [{"throw": "DemoException", "message": "1"},
                            {"throw": "DemoException", "message": "2"},
                            {"echo": 0}]}
  })");
  Json out = SimulateJson({flow}, scenario);
  EXPECT_EQ(out["status"], "SU");
  ASSERT_EQ(out["trace"].size(), 1u);
  EXPECT_EQ(out["trace"][0]["state"], "Flaky");
  EXPECT_EQ(out["trace"][0]["status"], "SU");
  EXPECT_EQ(out["trace"][0]["attempts"], 3);
  EXPECT_EQ(out["calls"]["svc.flaky"], 3);
  EXPECT_EQ(out["context"]["flakyResult"], 1);
  ASSERT_TRUE(out["virtualSeconds"].is_number());
  EXPECT_DOUBLE_EQ(out["virtualSeconds"].get<double>(), 8.0);
}

TEST_F(CliTest, SimulateExhaustedRetriesEndInTheCatch) {
  std::string flow = Write("retry.json", kRetryFlow);
  // Always fails: retries after 2, 6 and 18 s, then the Catch routes to Fail.
  std::string scenario = Write("scenario.json", R"({
    "input": {"a": 1},
    "errors": {"DemoException": "Error"},
    "mocks": {"svc.flaky": {"throw": "DemoException", "message": "still broken"}}
  })");
  Json out = SimulateJson({flow}, scenario);
  EXPECT_EQ(out["status"], "FA");
  EXPECT_TRUE(out["compensationStatus"].is_null());
  EXPECT_EQ(out["errorCode"], "GAVE_UP");
  ASSERT_EQ(out["trace"].size(), 1u);
  EXPECT_EQ(out["trace"][0]["status"], "FA");
  EXPECT_EQ(out["trace"][0]["attempts"], 4);
  EXPECT_EQ(out["calls"]["svc.flaky"], 4);
  EXPECT_DOUBLE_EQ(out["virtualSeconds"].get<double>(), 26.0);
}

TEST_F(CliTest, SimulateVirtualSecondsCoverTheOperations) {
  std::string flow = Write("retry.json", kRetryFlow);
  // The first run gives up after 2 + 6 + 18 s; forward fails once more, waits 2 s, succeeds.
  std::string scenario = Write("scenario.json", R"({
    "input": {"a": 1},
    "errors": {"DemoException": "Error"},
    "mocks": {"svc.flaky": {"throw": "DemoException"}},
    "then": [{"op": "forward",
              "mocks": {"svc.flaky": [{"throw": "DemoException"}, {"echo": 0}]}}]
  })");
  Json out = SimulateJson({flow}, scenario);
  EXPECT_EQ(out["status"], "FA");
  ASSERT_EQ(out["operations"].size(), 1u);
  EXPECT_EQ(out["operations"][0]["status"], "SU");
  ASSERT_EQ(out["operations"][0]["trace"].size(), 1u);
  EXPECT_EQ(out["operations"][0]["trace"][0]["attempts"], 2);
  EXPECT_EQ(out["calls"]["svc.flaky"], 6);
  EXPECT_DOUBLE_EQ(out["virtualSeconds"].get<double>(), 28.0);
}

TEST_F(CliTest, SimulateThenForwardWithReplacedMocks) {
  std::string flow = Write("one.json", kOneStepFlow);
  std::string scenario = Write("scenario.json", R"({
    "input": {"x": 1},
    "errors": {"DemoException": "Error"},
    "mocks": {"svc.a": {"throw": "DemoException", "message": "nope"}},
    "then": [{"op": "forward", "input": {"x": 2}, "mocks": {"svc.a": {"echo": 0}}}]
  })");
  Json out = SimulateJson({flow}, scenario);
  EXPECT_EQ(out["status"], "FA");
  EXPECT_THAT(States(out["trace"]), ElementsAre("A/forward/FA"));
  ASSERT_EQ(out["operations"].size(), 1u);
  const Json& op = out["operations"][0];
  EXPECT_EQ(op["op"], "forward");
  EXPECT_EQ(op["status"], "SU");
  EXPECT_FALSE(op.contains("refused")) << op.dump();
  EXPECT_THAT(States(op["trace"]), ElementsAre("A/forward/SU"));
  EXPECT_EQ(op["context"]["aResult"], 2);
  // The first mock's call and the replacement's.
  EXPECT_EQ(out["calls"]["svc.a"], 2);
}

TEST_F(CliTest, SimulateReportsARefusedOperation) {
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": true},
    "tmsSagaService.sendOut": {"throw": "CarrierUnavailable", "message": "503"},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "wmsSageService.pickGoodsCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}
  })",
                                         R"(, "then": [{"op": "forward"}])");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  Json out = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.out;
  EXPECT_EQ(out["compensationStatus"], "SU");
  ASSERT_EQ(out["operations"].size(), 1u);
  const Json& op = out["operations"][0];
  EXPECT_EQ(op["op"], "forward");
  ASSERT_TRUE(op.contains("refused")) << op.dump();
  ASSERT_TRUE(op["refused"].is_string());
  EXPECT_THAT(op["refused"].get<std::string>(), HasSubstr("compensat"));
  EXPECT_EQ(op["trace"], Json::array());
  EXPECT_EQ(op["status"], out["status"]);
  // Nothing ran again.
  EXPECT_EQ(out["calls"]["tmsSagaService.sendOut"], 1);
}

TEST_F(CliTest, SimulateErrorTypesMayBeWrittenParentFirstInAnyNameOrder) {
  std::string flow = Write("one.json", kOneStepFlow);
  // ZooParent is written first; AChild sorts before it by name.
  std::string scenario = Write("scenario.json", R"({
    "input": {"x": 1},
    "errors": {"ZooParent": "Error", "AChild": "ZooParent"},
    "mocks": {"svc.a": {"echo": 0}}
  })");
  CliRun r = Sagaflow({"simulate", "--flow", flow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
}

TEST_F(CliTest, SimulateMissingMockNamesTheService) {
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "tmsSagaService.sendOut": {"return": true}
  })");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("wmsSageService.pickGoods"));
}

TEST_F(CliTest, SimulateMissingCompensationMockNamesTheService) {
  // Only noticed when compensation runs: the forward path fails at the carrier.
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": true},
    "tmsSagaService.sendOut": {"throw": "CarrierUnavailable", "message": "503"},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}
  })");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("wmsSageService.pickGoodsCompensate"));
}

TEST_F(CliTest, SimulateStartsTheScenarioFlowAmongSeveral) {
  std::string one = Write("one.json", kOneStepFlow);
  std::string retry = Write("retry.json", kRetryFlow);
  std::string scenario = Write("scenario.json", R"({
    "flow": "retryFlow",
    "input": {"a": 5},
    "mocks": {"svc.flaky": {"echo": 0}, "svc.a": {"return": "unused"}}
  })");
  Json out = SimulateJson({one, retry}, scenario);
  EXPECT_THAT(States(out["trace"]), ElementsAre("Flaky/forward/SU"));
  EXPECT_EQ(out["context"]["flakyResult"], 5);
  EXPECT_EQ(out["calls"].value("svc.a", 0), 0);
}

TEST_F(CliTest, SimulateStartsTheFirstFlowWhenTheScenarioNamesNone) {
  std::string one = Write("one.json", kOneStepFlow);
  std::string retry = Write("retry.json", kRetryFlow);
  std::string scenario = Write("scenario.json", R"({
    "input": {"x": 3, "a": 5},
    "mocks": {"svc.flaky": {"echo": 0}, "svc.a": {"echo": 0}}
  })");
  Json out = SimulateJson({one, retry}, scenario);
  EXPECT_THAT(States(out["trace"]), ElementsAre("A/forward/SU"));
  EXPECT_EQ(out["context"]["aResult"], 3);
}

TEST_F(CliTest, SimulateInvalidScenarioNamesTheFileAndPointer) {
  std::string scenario = FulfillScenario("bad_scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"echo": -1}
  })");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(scenario));
  EXPECT_THAT(r.err, HasSubstr("/mocks/wmsSageService.pickGoods/echo"));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(CliTest, SimulateScenarioWithAnUnknownKeyNamesIt) {
  std::string scenario = Write("bad_scenario.json", R"({"inputs": {}})");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, AllOf(HasSubstr(scenario), HasSubstr("/inputs")));
}

TEST_F(CliTest, SimulateTruncatedScenarioNamesTheFile) {
  std::string scenario = Write("truncated_scenario.json", R"({"mocks": {)");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(scenario));
}

TEST_F(CliTest, SimulateMissingScenarioFileNamesIt) {
  std::string scenario = (dir_ / "no_such_scenario.json").string();
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(scenario));
}

TEST_F(CliTest, SimulateInvalidFlowIsExitTwo) {
  std::string flow = Write("bad.json", R"({"Name": "bad", "StartState": "Nowhere", "States": {}})");
  CliRun r = Sagaflow({"simulate", "--flow", flow, "--scenario", kHappyScenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(flow));
}

TEST_F(CliTest, SimulateUnknownStartFlowNamesIt) {
  std::string scenario = Write("scenario.json", R"({"flow": "noSuchFlow", "mocks": {}})");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, AllOf(HasSubstr("noSuchFlow"), HasSubstr("order_fulfill")));
}

TEST_F(CliTest, SimulateUndefinedErrorParentNamesThePointer) {
  std::string scenario =
      FulfillScenario("scenario.json", kFulfillMocks, R"(, "errors": {"Orphan": "NoSuchParent"})");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err,
              AllOf(HasSubstr(scenario), HasSubstr("/errors/Orphan"), HasSubstr("NoSuchParent")));
}

TEST_F(CliTest, SimulateUndefinedErrorParentBehindAChainNamesTheTypeThatHasIt) {
  // AirTimeout's parent is in the scenario; CarrierError's parent is defined nowhere.
  std::string scenario = FulfillScenario(
      "scenario.json", kFulfillMocks,
      R"(, "errors": {"AirTimeout": "CarrierError", "CarrierError": "NoSuchParent"})");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario, "--json"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, AllOf(HasSubstr("/errors/CarrierError"), HasSubstr("NoSuchParent")));
}

TEST_F(CliTest, SimulateHumanOutputShowsTheTraceAndFinalStatus) {
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", kSendOutFailsScenario});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  std::size_t fulfill = r.out.find("FulfillService");
  std::size_t tms = r.out.find("TmsService");
  std::size_t undo_tms = r.out.find("TmsSendOutCompensate");
  std::size_t undo_fulfill = r.out.find("CreateFulfillOrderCompensate");
  std::size_t status = r.out.find("status UN");
  ASSERT_NE(fulfill, std::string::npos) << r.out;
  ASSERT_NE(tms, std::string::npos) << r.out;
  ASSERT_NE(undo_tms, std::string::npos) << r.out;
  ASSERT_NE(undo_fulfill, std::string::npos) << r.out;
  ASSERT_NE(status, std::string::npos) << r.out;
  EXPECT_LT(fulfill, tms);
  EXPECT_LT(tms, undo_tms);
  EXPECT_LT(undo_tms, undo_fulfill);
  EXPECT_LT(undo_fulfill, status);
  EXPECT_THAT(r.out, AllOf(HasSubstr("compensationStatus SU"), HasSubstr("errorCode 500"),
                           HasSubstr("carrier API answered 503")));
  // Not JSON.
  EXPECT_FALSE(Json::accept(r.out));
}

TEST_F(CliTest, SimulateHumanOutputShowsOperations) {
  // The warehouse answers false: the flow fails without compensating; `compensate` then undoes
  // the fulfil order.
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": false},
    "tmsSagaService.sendOut": {"return": true},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "wmsSageService.pickGoodsCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}
  })",
                                         R"(, "then": [{"op": "compensate"}])");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  std::size_t then = r.out.find("then compensate");
  ASSERT_NE(then, std::string::npos) << r.out;
  EXPECT_LT(r.out.find("WmsService"), then) << r.out;
  EXPECT_GT(r.out.find("CreateFulfillOrderCompensate"), then) << r.out;
  EXPECT_THAT(r.out.substr(then), HasSubstr("compensationStatus SU"));
}

TEST_F(CliTest, SimulateHumanOutputShowsARefusedOperation) {
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": true},
    "tmsSagaService.sendOut": {"throw": "CarrierUnavailable", "message": "503"},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "wmsSageService.pickGoodsCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}
  })",
                                         R"(, "then": [{"op": "forward"}])");
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", scenario});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  std::size_t then = r.out.find("then forward");
  ASSERT_NE(then, std::string::npos) << r.out;
  EXPECT_THAT(r.out.substr(then), HasSubstr("refused"));
}

// ---------------------------------------------------------------------------------------------
// graph

TEST_F(CliTest, GraphMermaidDrawsCompensationEdgesDashed) {
  CliRun r = Sagaflow({"graph", "--flow", kFulfillFlow, "--format", "mermaid"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("flowchart"));
  EXPECT_THAT(r.out, HasSubstr("-."));
  EXPECT_THAT(r.out, AllOf(HasSubstr("FulfillService"), HasSubstr("TmsSendOutCompensate")));
}

TEST_F(CliTest, GraphDefaultsToMermaid) {
  CliRun r = Sagaflow({"graph", "--flow", kFulfillFlow});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("flowchart"));
}

TEST_F(CliTest, GraphDotDrawsCompensationEdgesDashed) {
  CliRun r = Sagaflow({"graph", "--flow", kFulfillFlow, "--format", "dot"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("digraph"));
  EXPECT_THAT(r.out, HasSubstr("style=dashed"));
  EXPECT_THAT(r.out, AllOf(HasSubstr("WmsService"), HasSubstr("WmsPickGoodsCompensate")));
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_THAT(r.out, HasSubstr("}"));
}

TEST_F(CliTest, GraphRefusesAnUnknownFormat) {
  CliRun r = Sagaflow({"graph", "--flow", kFulfillFlow, "--format", "svg"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("--format"));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(CliTest, GraphRefusesAnInvalidFlow) {
  std::string flow = Write("bad.json", R"({"Name": "bad", "StartState": "Nowhere", "States": {}})");
  CliRun r = Sagaflow({"graph", "--flow", flow});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr(flow));
}

// ---------------------------------------------------------------------------------------------
// bench

TEST_F(CliTest, BenchJsonReportsInstancesAndStatuses) {
  CliRun r = Sagaflow({"bench", "--flow", kFulfillFlow, "--scenario", kHappyScenario, "--json",
                       "--instances", "2000", "--threads", "2"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  Json out = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.out;
  EXPECT_EQ(out["instances"], 2000);
  EXPECT_TRUE(out["seconds"].is_number()) << r.out;
  EXPECT_TRUE(out["instances_per_s"].is_number()) << r.out;
  EXPECT_EQ(out["statuses"], (Json{{"SU", 2000}}));
}

TEST_F(CliTest, BenchCountsFailedOutcomes) {
  CliRun r = Sagaflow({"bench", "--flow", kFulfillFlow, "--scenario", kSendOutFailsScenario,
                       "--json", "--instances", "50", "--threads", "2"});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  Json out = Json::parse(r.out, nullptr, false);
  ASSERT_TRUE(out.is_object()) << r.out;
  EXPECT_EQ(out["statuses"], (Json{{"UN", 50}}));
}

TEST_F(CliTest, BenchMissingMockNamesTheTask) {
  std::string scenario = FulfillScenario("scenario.json", R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "tmsSagaService.sendOut": {"return": true}
  })");
  CliRun r = Sagaflow(
      {"bench", "--flow", kFulfillFlow, "--scenario", scenario, "--json", "--instances", "10"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("wmsSageService.pickGoods"));
  EXPECT_THAT(r.out, IsEmpty());
}

TEST_F(CliTest, BenchRefusesZeroInstances) {
  CliRun r =
      Sagaflow({"bench", "--flow", kFulfillFlow, "--scenario", kHappyScenario, "--instances", "0"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("--instances"));
}

// ---------------------------------------------------------------------------------------------
// arguments and help

TEST_F(CliTest, UnknownCommandIsExitTwo) {
  CliRun r = Sagaflow({"frobnicate"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, Not(IsEmpty()));
}

TEST_F(CliTest, NoCommandIsExitTwo) {
  CliRun r = Sagaflow({});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, Not(IsEmpty()));
}

TEST_F(CliTest, MissingRequiredOptionIsExitTwoNamingIt) {
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("--scenario"));

  r = Sagaflow({"graph"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("--flow"));
}

TEST_F(CliTest, UnknownOptionIsExitTwo) {
  CliRun r = Sagaflow({"simulate", "--flow", kFulfillFlow, "--scenario", kHappyScenario, "--jsn"});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("--jsn"));
}

TEST_F(CliTest, HelpListsCommandsAndExitCodes) {
  CliRun r = Sagaflow({"--help"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("validate"), HasSubstr("simulate"), HasSubstr("graph"),
                           HasSubstr("bench")));
  EXPECT_THAT(r.out, HasSubstr("Exit codes"));
  EXPECT_THAT(r.out, AllOf(HasSubstr("0  "), HasSubstr("1  "), HasSubstr("2  ")));
}

TEST_F(CliTest, VersionIsExitZero) {
  CliRun r = Sagaflow({"--version"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sagaflow"));
}

TEST_F(CliTest, CommandHelpListsItsOptions) {
  CliRun r = Sagaflow({"simulate", "--help"});
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("--flow"), HasSubstr("--scenario"), HasSubstr("--json")));
}

}  // namespace
}  // namespace sagaflow::cli
