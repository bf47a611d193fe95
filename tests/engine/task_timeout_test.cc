#include <gtest/gtest.h>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;

constexpr const char* kFlow = R"({
  "Name": "timeouts", "StartState": "Ship",
  "States": {
    "Ship": {"Type": "ServiceTask", "ServiceName": "carrier", "ServiceMethod": "ship",
             "TimeoutSeconds": 5,
             "Retry": [{"IntervalSeconds": 1, "MaxAttempts": 1}],
             "Catch": [{"Exceptions": ["TimeoutError"], "Next": "Late"}],
             "Next": "Done"},
    "Late": {"Type": "Fail", "ErrorCode": "LATE"},
    "Done": {"Type": "Succeed"}
  }
})";

// A task that takes `seconds` of (virtual) time.
class TaskTimeoutTest : public ::testing::Test {
 protected:
  Result<InstanceRecord> RunWithTaskTaking(std::vector<double> seconds) {
    auto loaded = statelang::LoadStateMachine(kFlow);
    EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
    registry_.add("carrier.ship", [this, seconds](TaskContext& ctx, const Json&) -> Json {
      deadlines_.push_back(ctx.deadline());
      std::size_t call = calls_++;
      clock_.Advance(SecondsToDuration(seconds[std::min(call, seconds.size() - 1)]));
      return true;
    });
    Executor executor(ExecutorOptions{.workers = 0, .virtual_clock = &clock_}, registry_, store_,
                      clock_);
    EXPECT_THAT(executor.Start(), IsOk());
    return executor.Run(loaded.machine, Json::object(), {}, std::chrono::seconds(5));
  }

  ManualClock clock_{TimePoint(std::chrono::seconds(1000))};
  TaskRegistry registry_;
  adapters::MemoryStateStore store_;
  std::size_t calls_ = 0;
  std::vector<std::optional<TimePoint>> deadlines_;
};

TEST_F(TaskTimeoutTest, ATaskWithinItsTimeoutSucceeds) {
  auto r = RunWithTaskTaking({4});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  ASSERT_EQ(deadlines_.size(), 1u);
  ASSERT_TRUE(deadlines_[0].has_value());
  EXPECT_EQ(*deadlines_[0], TimePoint(std::chrono::seconds(1005)));
}

TEST_F(TaskTimeoutTest, ALateResultIsATimeoutErrorThatRetryAndCatchSee) {
  // TimeoutError is a NetworkError, so the rule without Exceptions retries it once; the second
  // late result is caught.
  auto r = RunWithTaskTaking({6, 7});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(calls_, 2u);
  EXPECT_EQ(r->error_code, "LATE");
  ASSERT_EQ(r->executions.size(), 1u);
  EXPECT_EQ(r->executions[0].attempts, 2);
  ASSERT_TRUE(r->executions[0].error.has_value());
  EXPECT_EQ(r->executions[0].error->type, "TimeoutError");
  EXPECT_TRUE(r->executions[0].output.is_null());  // a late result is not taken
}

TEST_F(TaskTimeoutTest, ARetryAfterATimeoutCanSucceed) {
  auto r = RunWithTaskTaking({6, 1});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(r->executions[0].attempts, 2);
}

TEST(TaskTimeoutLoaderTest, TimeoutSecondsMustBePositive) {
  auto r = statelang::LoadStateMachine(R"({"Name": "t", "StartState": "A", "States": {
      "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", "TimeoutSeconds": 0}}})");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.Describe("f").find("/States/A/TimeoutSeconds"), std::string::npos);
}

}  // namespace
}  // namespace sagaflow::engine
