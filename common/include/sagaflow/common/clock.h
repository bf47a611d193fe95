#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sagaflow {

using Duration = std::chrono::nanoseconds;

// Engine time: nanoseconds since the Unix epoch, so that a stored time means the same thing to
// every process that reads it.
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

// Where the engine gets the time from. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// Wall-clock time.
class SystemClock final : public Clock {
 public:
  TimePoint Now() const override;
};

// Time that moves only when told to: the virtual clock of `simulate` and of tests.
// Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint{}) : now_(start.time_since_epoch().count()) {}
  TimePoint Now() const override { return TimePoint(Duration(now_.load())); }
  void Advance(Duration d) { now_.fetch_add(d.count()); }
  // Moves the clock to `t` if `t` is later than now.
  void AdvanceTo(TimePoint t);

 private:
  std::atomic<std::int64_t> now_;
};

// Seconds as a double (for durations read from definitions).
Duration SecondsToDuration(double seconds);
double DurationToSeconds(Duration d);

// ISO-8601 UTC with milliseconds, e.g. "2026-11-21T21:16:41.123Z".
std::string FormatTime(TimePoint t);

// The latest time sagaflow stores, 2262-01-01T00:00:00Z: times are nanoseconds since 1970 in
// 64 bits, which end in April 2262. A wake time or a deadline after it is refused, not wrapped.
inline constexpr TimePoint kLatestTime{Duration(9'214'646'400'000'000'000)};

// `from` plus `seconds` (at least 0), or nullopt when that falls after kLatestTime.
std::optional<TimePoint> AddSeconds(TimePoint from, double seconds);

// Reads an RFC 3339 time: "2026-11-21T21:16:41Z", with optional fractional seconds (to the
// nanosecond) and a "Z" or "+hh:mm"/"-hh:mm" offset; "t" and "z" are accepted for "T" and "Z".
// A time without an offset is refused: it would mean a different instant on every node.
// Returns nullopt for anything else, including dates that do not exist (2026-02-30) and
// years before 1700 or after 2261 (see kLatestTime).
std::optional<TimePoint> ParseTime(std::string_view text);

}  // namespace sagaflow
