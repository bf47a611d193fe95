// The flows and scenarios of docs/examples, which docs/statelang.md and docs/cli.md show with
// their output: each test runs the built binary on them as the docs do.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_fixture.h"
#include "sagaflow/common/json.h"

namespace sagaflow::cli {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::string kExamples = kSourceDir + "/docs/examples";
const std::string kOrderPayment = kExamples + "/order_payment.json";

// Every flow of docs/examples, sorted.
std::vector<std::string> ExampleFlows() {
  std::vector<std::string> flows;
  for (const fs::directory_entry& e : fs::directory_iterator(kExamples)) {
    if (e.is_regular_file() && e.path().extension() == ".json") flows.push_back(e.path());
  }
  std::sort(flows.begin(), flows.end());
  return flows;
}

using DocsExamplesTest = CliTest;

TEST_F(DocsExamplesTest, EveryFlowValidates) {
  const std::vector<std::string> flows = ExampleFlows();
  for (const char* name : {"transfer.json", "order_payment.json", "order_short.json"}) {
    EXPECT_NE(std::find(flows.begin(), flows.end(), kExamples + "/" + name), flows.end()) << name;
  }
  std::vector<std::string> args = {"validate"};
  args.insert(args.end(), flows.begin(), flows.end());
  CliRun r = Sagaflow(args);
  EXPECT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.err, IsEmpty());
  for (const std::string& f : flows) EXPECT_THAT(r.out, HasSubstr(f + ": valid (flow '")) << f;
}

TEST_F(DocsExamplesTest, EveryScenarioRunsOnTheFlows) {
  std::vector<std::string> args = {"simulate"};
  for (const std::string& f : ExampleFlows()) {
    args.push_back("--flow");
    args.push_back(f);
  }
  std::size_t scenarios = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(kExamples + "/scenarios")) {
    if (e.path().extension() != ".json") continue;
    ++scenarios;
    std::vector<std::string> run = args;
    run.insert(run.end(), {"--scenario", e.path().string(), "--json"});
    CliRun r = Sagaflow(run);
    EXPECT_EQ(r.exit_code, kExitOk) << e.path() << ": " << r.err;
    EXPECT_TRUE(Json::accept(r.out)) << e.path() << ": " << r.out;
  }
  EXPECT_GE(scenarios, 18u);
}

TEST_F(DocsExamplesTest, OrderPaymentWaitsThirtyVirtualMinutesThenShipsWhenPaid) {
  const std::string scenario = kExamples + "/scenarios/order_paid.json";
  Json out = SimulateJson({kOrderPayment}, scenario);
  EXPECT_EQ(out["flow"], "orderPayment");
  EXPECT_EQ(out["status"], "SU");
  EXPECT_TRUE(out["compensationStatus"].is_null());
  EXPECT_EQ(out["virtualSeconds"], 1800.0);
  EXPECT_EQ(out["calls"], (Json{{"payment.status", 1}, {"shipping.send", 1},
                                {"stock.release", 0}, {"stock.reserve", 1}}));

  CliRun human = Sagaflow({"simulate", "--flow", kOrderPayment, "--scenario", scenario});
  ASSERT_EQ(human.exit_code, kExitOk) << human.err;
  EXPECT_THAT(human.out, AllOf(HasSubstr("\nstatus SU  compensationStatus -  errorCode -\n"),
                               HasSubstr("\nvirtual time 1800.0 s\n")));
}

TEST_F(DocsExamplesTest, OrderPaymentUndoesTheReservationWhenUnpaid) {
  const std::string scenario = kExamples + "/scenarios/order_unpaid.json";
  Json out = SimulateJson({kOrderPayment}, scenario);
  EXPECT_EQ(out["status"], "UN");
  EXPECT_EQ(out["compensationStatus"], "SU");
  EXPECT_EQ(out["errorCode"], "UNPAID");
  EXPECT_EQ(out["virtualSeconds"], 1800.0);
  EXPECT_EQ(out["calls"]["stock.release"], 1);
  EXPECT_EQ(out["calls"]["shipping.send"], 0);

  CliRun human = Sagaflow({"simulate", "--flow", kOrderPayment, "--scenario", scenario});
  ASSERT_EQ(human.exit_code, kExitOk) << human.err;
  EXPECT_THAT(human.out,
              AllOf(HasSubstr("(compensates Reserve)"),
                    HasSubstr("\nstatus UN  compensationStatus SU  errorCode UNPAID (not paid "
                              "within 30 minutes)\n"),
                    HasSubstr("\nvirtual time 1800.0 s\n")));
}

}  // namespace
}  // namespace sagaflow::cli
