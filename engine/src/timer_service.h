#pragma once

// The executor's timers. Internal to engine/.

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <queue>
#include <stop_token>
#include <thread>
#include <vector>

#include "live.h"
#include "sagaflow/common/clock.h"

namespace sagaflow::engine {

// One queue of wake-up times for everything an executor waits for in time: the deadlines of
// attempts in flight, the store's retry backoff, and the timers of instances it parked (a
// Wait, a retry's backoff), which are also stored (lease_until) so that any process fires
// them after this one is gone. No thread sleeps per timer: one thread waits for the earliest
// (in real time, re-reading the clock at least every second, so that a virtual clock moved by
// a test is followed), or the owner of a manual executor releases them with ReleaseDue.
//
// Thread-safe. Timers due at the same time fire in the order they were added.
class TimerService {
 public:
  using Fire = std::function<void(Work)>;
  TimerService(const Clock& clock, Fire fire);
  ~TimerService();  // Stop()

  // Starts the thread that fires due timers (without it, ReleaseDue does).
  void Start();
  void Stop() noexcept;

  void Add(TimePoint due, Work work);
  // Fires every timer due now, on this thread; returns the earliest time still to come.
  std::optional<TimePoint> ReleaseDue();
  std::optional<TimePoint> NextDue() const;
  std::size_t size() const;

 private:
  struct Timer {
    TimePoint due;
    std::uint64_t seq;
    Work work;
    bool operator>(const Timer& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void Loop(std::stop_token stop);

  const Clock& clock_;
  const Fire fire_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t seq_ = 0;
  std::jthread thread_;
};

}  // namespace sagaflow::engine
