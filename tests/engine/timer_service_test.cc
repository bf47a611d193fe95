// The executor's timer queue (engine/src/timer_service.h), on a virtual clock.
#include "timer_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "sagaflow/common/clock.h"

namespace sagaflow::engine {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Work TimerFor(int execution) {
  Work w;
  w.kind = WorkKind::kTimer;
  w.execution = execution;
  return w;
}

class TimerServiceTest : public ::testing::Test {
 protected:
  std::vector<int> Fired() {
    std::lock_guard lock(mu_);
    return fired_;
  }
  ManualClock clock_{*ParseTime("2026-12-06T10:00:00Z")};
  std::mutex mu_;
  std::vector<int> fired_;
  TimerService timers_{clock_, [this](Work w) {
                         std::lock_guard lock(mu_);
                         fired_.push_back(w.execution);
                       }};
};

TEST_F(TimerServiceTest, ReleasesOnlyWhatIsDueInTimeOrder) {
  const TimePoint t0 = clock_.Now();
  timers_.Add(t0 + seconds(30), TimerFor(3));
  timers_.Add(t0 + seconds(10), TimerFor(1));
  timers_.Add(t0 + seconds(20), TimerFor(2));
  EXPECT_EQ(timers_.size(), 3u);
  EXPECT_EQ(timers_.NextDue(), t0 + seconds(10));

  EXPECT_EQ(timers_.ReleaseDue(), t0 + seconds(10));
  EXPECT_TRUE(Fired().empty());
  clock_.Advance(seconds(20));
  EXPECT_EQ(timers_.ReleaseDue(), t0 + seconds(30));
  EXPECT_EQ(Fired(), (std::vector<int>{1, 2}));
  clock_.Advance(seconds(10));
  EXPECT_EQ(timers_.ReleaseDue(), std::nullopt);
  EXPECT_EQ(Fired(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(timers_.size(), 0u);
  EXPECT_EQ(timers_.NextDue(), std::nullopt);
}

TEST_F(TimerServiceTest, TimersDueTogetherFireInTheOrderTheyWereAdded) {
  const TimePoint due = clock_.Now() + seconds(5);
  for (int i = 0; i < 100; ++i) timers_.Add(due, TimerFor(i));
  timers_.Add(clock_.Now() - seconds(1), TimerFor(-5));  // already due: first
  clock_.AdvanceTo(due);
  timers_.ReleaseDue();
  std::vector<int> expected{-5};
  for (int i = 0; i < 100; ++i) expected.push_back(i);
  EXPECT_EQ(Fired(), expected);
}

TEST_F(TimerServiceTest, TheThreadFollowsAVirtualClockMovedByTheTest) {
  timers_.Start();
  timers_.Add(clock_.Now() + std::chrono::hours(24), TimerFor(7));
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_TRUE(Fired().empty()) << "fired a day early";
  clock_.Advance(std::chrono::hours(24));
  // The thread re-reads the clock at least every second.
  const auto give_up = std::chrono::steady_clock::now() + seconds(5);
  while (Fired().empty() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(Fired(), (std::vector<int>{7}));
  timers_.Stop();
}

TEST_F(TimerServiceTest, AddingAnEarlierTimerWakesTheThread) {
  timers_.Start();
  timers_.Add(clock_.Now() + std::chrono::hours(1), TimerFor(1));
  std::this_thread::sleep_for(milliseconds(20));
  timers_.Add(clock_.Now(), TimerFor(2));  // due now: fires without waiting for the first
  const auto give_up = std::chrono::steady_clock::now() + seconds(5);
  while (Fired().empty() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_EQ(Fired(), (std::vector<int>{2}));
  timers_.Stop();
  EXPECT_EQ(timers_.size(), 1u);  // Stop keeps what is not due; nothing fires after it
}

TEST(TimerServiceRealClockTest, FiresNotBeforeItsTime) {
  SystemClock clock;
  std::atomic<std::int64_t> fired_at{0};
  TimerService timers(clock, [&](Work) { fired_at = clock.Now().time_since_epoch().count(); });
  timers.Start();
  const TimePoint due = clock.Now() + milliseconds(80);
  timers.Add(due, TimerFor(0));
  const auto give_up = std::chrono::steady_clock::now() + seconds(5);
  while (fired_at.load() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(2));
  }
  ASSERT_NE(fired_at.load(), 0);
  EXPECT_GE(fired_at.load(), due.time_since_epoch().count());
}

}  // namespace
}  // namespace sagaflow::engine
