#include "sagaflow/common/clock.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace sagaflow {

TimePoint SystemClock::Now() const {
  return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
}

void ManualClock::AdvanceTo(TimePoint t) {
  std::int64_t target = t.time_since_epoch().count();
  std::int64_t cur = now_.load();
  while (cur < target && !now_.compare_exchange_weak(cur, target)) {
  }
}

Duration SecondsToDuration(double seconds) {
  if (!(seconds > 0)) return Duration::zero();
  // Clamp to about 290 years so that the conversion cannot overflow.
  constexpr double kMax = 9.0e9;
  return Duration(static_cast<std::int64_t>(std::llround(std::min(seconds, kMax) * 1e9)));
}

double DurationToSeconds(Duration d) { return static_cast<double>(d.count()) / 1e9; }

std::string FormatTime(TimePoint t) {
  auto ns = t.time_since_epoch().count();
  std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  int millis = static_cast<int>((ns / 1000000) % 1000);
  if (ns < 0) {
    secs = 0;
    millis = 0;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

}  // namespace sagaflow
