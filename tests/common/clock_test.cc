#include "sagaflow/common/clock.h"

#include <gtest/gtest.h>

namespace sagaflow {
namespace {

TEST(ParseTime, ReadsUtcWithAndWithoutFraction) {
  auto t = ParseTime("2026-11-21T21:16:41Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(FormatTime(*t), "2026-11-21T21:16:41.000Z");
  auto f = ParseTime("2026-11-21T21:16:41.123456789Z");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ((*f - *t).count(), 123456789);
  auto lower = ParseTime("2026-11-21t21:16:41.5z");
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ((*lower - *t).count(), 500000000);
}

TEST(ParseTime, AppliesTheOffset) {
  auto utc = ParseTime("2026-01-01T00:30:00Z");
  auto east = ParseTime("2026-01-01T08:30:00+08:00");
  auto west = ParseTime("2025-12-31T19:00:00-05:30");
  ASSERT_TRUE(utc && east && west);
  EXPECT_EQ(*utc, *east);
  EXPECT_EQ(*utc, *west);
}

TEST(ParseTime, RoundTripsFormatTime) {
  TimePoint t(std::chrono::milliseconds(1795000000123));
  EXPECT_EQ(ParseTime(FormatTime(t)), t);
}

TEST(ParseTime, RefusesWhatIsNotAnRfc3339Instant) {
  for (const char* bad : {"", "2026-11-21", "2026-11-21T21:16:41", "2026-11-21 21:16:41Z",
                          "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
                          "2026-11-21T24:00:00Z", "2026-11-21T21:60:00Z",
                          "2026-11-21T21:16:41.Z", "2026-11-21T21:16:41+0800",
                          "2026-11-21T21:16:41+24:00", "2026-11-21T21:16:41Zjunk",
                          "26-11-21T21:16:41Z", "tomorrow"}) {
    EXPECT_FALSE(ParseTime(bad).has_value()) << bad;
  }
}

TEST(ParseTime, AcceptsLeapDayOnlyInLeapYears) {
  EXPECT_TRUE(ParseTime("2028-02-29T00:00:00Z").has_value());
  EXPECT_FALSE(ParseTime("2027-02-29T00:00:00Z").has_value());
}

}  // namespace
}  // namespace sagaflow
