#include "sagaflow/common/status.h"

#include <gtest/gtest.h>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::testing::HasSubstr;

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  SAGAFLOW_ASSIGN_OR_RETURN(int h, Half(x));
  SAGAFLOW_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrorsFormat) {
  EXPECT_THAT(Status::Ok(), IsOk());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  EXPECT_EQ(NotFound("no instance x").ToString(), "NOT_FOUND: no instance x");
}

TEST(ResultTest, PropagatesTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_THAT(Quarter(6), StatusIs(StatusCode::kInvalidArgument, HasSubstr("odd: 3")));
}

TEST(ResultTest, BuildingFromOkStatusIsAnInternalError) {
  Result<int> r = Status::Ok();
  EXPECT_THAT(r, StatusIs(StatusCode::kInternal));
}

TEST(IdsTest, InstanceIdsAreUniqueAndSortByTime) {
  InstanceId a = NewInstanceId();
  InstanceId b = NewInstanceId();
  EXPECT_EQ(a.str().size(), 26u);
  EXPECT_NE(a, b);
  EXPECT_LE(a.str().substr(0, 10), b.str().substr(0, 10));  // the first 10 characters are time
}

TEST(ClockTest, ManualClockMovesOnlyForward) {
  ManualClock clock(TimePoint(std::chrono::seconds(100)));
  clock.Advance(std::chrono::seconds(5));
  EXPECT_EQ(clock.Now(), TimePoint(std::chrono::seconds(105)));
  clock.AdvanceTo(TimePoint(std::chrono::seconds(50)));
  EXPECT_EQ(clock.Now(), TimePoint(std::chrono::seconds(105)));
  EXPECT_EQ(FormatTime(TimePoint(std::chrono::milliseconds(1500))), "1970-01-01T00:00:01.500Z");
  EXPECT_EQ(SecondsToDuration(1.5), std::chrono::milliseconds(1500));
  EXPECT_EQ(SecondsToDuration(-3), Duration::zero());
}

}  // namespace
}  // namespace sagaflow
