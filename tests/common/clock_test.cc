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
                          "26-11-21T21:16:41Z", "tomorrow", "2262-01-01T00:00:00Z",
                          "9999-12-31T23:59:59Z", "1600-01-01T00:00:00Z"}) {
    EXPECT_FALSE(ParseTime(bad).has_value()) << bad;
  }
}

TEST(ParseTime, AcceptsLeapDayOnlyInLeapYears) {
  EXPECT_TRUE(ParseTime("2028-02-29T00:00:00Z").has_value());
  EXPECT_FALSE(ParseTime("2027-02-29T00:00:00Z").has_value());
}

TEST(ParseTime, ReadsTheLastYearItStores) {
  auto last = ParseTime("2261-12-31T23:59:59Z");
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(FormatTime(*last), "2261-12-31T23:59:59.000Z");
  EXPECT_LT(*last, kLatestTime);
  EXPECT_EQ(FormatTime(kLatestTime), "2262-01-01T00:00:00.000Z");
}

TEST(AddSeconds, RefusesWhatFallsAfterTheLatestTime) {
  const TimePoint now = *ParseTime("2026-12-06T10:00:00Z");
  EXPECT_EQ(AddSeconds(now, 90), now + std::chrono::seconds(90));
  EXPECT_EQ(AddSeconds(now, 0), now);
  EXPECT_EQ(AddSeconds(now, -3), now);
  const double left = DurationToSeconds(kLatestTime - now);
  EXPECT_TRUE(AddSeconds(now, left - 1).has_value());
  EXPECT_FALSE(AddSeconds(now, left + 1).has_value());
  EXPECT_FALSE(AddSeconds(now, 9.0e9).has_value());
  EXPECT_FALSE(AddSeconds(now, 1e300).has_value());
  EXPECT_FALSE(AddSeconds(kLatestTime, 1).has_value());
}

}  // namespace
}  // namespace sagaflow
