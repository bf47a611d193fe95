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

std::optional<TimePoint> AddSeconds(TimePoint from, double seconds) {
  if (!(seconds > 0)) return from;
  if (from >= kLatestTime || seconds > DurationToSeconds(kLatestTime - from)) return std::nullopt;
  return from + SecondsToDuration(seconds);
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

namespace {

// Reads exactly `width` decimal digits at `pos`.
bool Digits(std::string_view s, std::size_t& pos, int width, int& out) {
  if (pos + static_cast<std::size_t>(width) > s.size()) return false;
  out = 0;
  for (int i = 0; i < width; ++i) {
    char c = s[pos++];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  return true;
}

bool Expect(std::string_view s, std::size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

}  // namespace

std::optional<TimePoint> ParseTime(std::string_view s) {
  std::size_t pos = 0;
  int year, month, day, hour, minute, second;
  if (!Digits(s, pos, 4, year) || !Expect(s, pos, '-') || !Digits(s, pos, 2, month) ||
      !Expect(s, pos, '-') || !Digits(s, pos, 2, day)) {
    return std::nullopt;
  }
  if (pos >= s.size() || (s[pos] != 'T' && s[pos] != 't')) return std::nullopt;
  ++pos;
  if (!Digits(s, pos, 2, hour) || !Expect(s, pos, ':') || !Digits(s, pos, 2, minute) ||
      !Expect(s, pos, ':') || !Digits(s, pos, 2, second)) {
    return std::nullopt;
  }
  std::int64_t nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 9) nanos = nanos * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (int i = digits; i < 9; ++i) nanos *= 10;
  }
  int offset_minutes = 0;
  if (pos >= s.size()) return std::nullopt;  // no offset
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int sign = s[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om;
    if (!Digits(s, pos, 2, oh) || !Expect(s, pos, ':') || !Digits(s, pos, 2, om) || oh > 23 ||
        om > 59) {
      return std::nullopt;
    }
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  if (hour > 23 || minute > 59 || second > 60) return std::nullopt;  // 60: a leap second
  std::chrono::year_month_day date{std::chrono::year(year),
                                   std::chrono::month(static_cast<unsigned>(month)),
                                   std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok() || year < 1700 || year > 2261) return std::nullopt;
  auto t = std::chrono::sys_days(date).time_since_epoch() + std::chrono::hours(hour) +
           std::chrono::minutes(minute - offset_minutes) + std::chrono::seconds(second);
  return TimePoint(std::chrono::duration_cast<Duration>(t) + Duration(nanos));
}

}  // namespace sagaflow
