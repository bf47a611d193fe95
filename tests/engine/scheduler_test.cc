// The executor's worker threads and ready queues (engine/src/scheduler.h): every posted item
// runs exactly once, in manual mode on the calling thread; Stop joins and drops what is queued.
#include "scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace sagaflow::engine {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;
using ::testing::Each;

// How long a test waits for work that should run at once before it gives up: only reached
// when something is broken, so generous for a loaded machine.
constexpr auto kGiveUp = seconds(30);

// Work items are told apart by Work::execution.
Work Item(int n) {
  Work w;
  w.kind = WorkKind::kTimer;
  w.execution = n;
  return w;
}

// How many times each item ran, and on which threads.
class Runs {
 public:
  explicit Runs(int items) : counts_(static_cast<std::size_t>(items)) {}

  void Ran(int n) {
    counts_.at(static_cast<std::size_t>(n)).fetch_add(1);
    {
      std::lock_guard lock(mu_);
      threads_.push_back(std::this_thread::get_id());
      ++total_;
    }
    cv_.notify_all();
  }
  // Waits until `n` runs happened in all (false when kGiveUp passed first).
  bool WaitForTotal(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kGiveUp, [&] { return total_ >= n; });
  }
  int total() {
    std::lock_guard lock(mu_);
    return total_;
  }
  std::vector<int> Counts() const {
    std::vector<int> out;
    for (const auto& c : counts_) out.push_back(c.load());
    return out;
  }
  std::vector<std::thread::id> Threads() {
    std::lock_guard lock(mu_);
    return threads_;
  }

 private:
  std::vector<std::atomic<int>> counts_;
  std::mutex mu_;
  std::condition_variable cv_;
  int total_ = 0;
  std::vector<std::thread::id> threads_;
};

TEST(SchedulerTest, ManualModeRunsEachPostedItemOnceOnTheCallingThread) {
  Runs runs(3);
  Scheduler scheduler(0, [&](Work w) { runs.Ran(w.execution); });
  scheduler.Start();  // no threads to start
  EXPECT_FALSE(scheduler.AnyQueued());
  EXPECT_FALSE(scheduler.RunOne());

  for (int i = 0; i < 3; ++i) scheduler.Post(Item(i));
  EXPECT_TRUE(scheduler.AnyQueued());
  EXPECT_EQ(runs.total(), 0) << "manual mode ran work nobody asked it to";
  EXPECT_TRUE(scheduler.RunOne());
  EXPECT_EQ(runs.total(), 1);
  EXPECT_TRUE(scheduler.RunOne());
  EXPECT_TRUE(scheduler.RunOne());
  EXPECT_FALSE(scheduler.RunOne());
  EXPECT_FALSE(scheduler.AnyQueued());

  EXPECT_THAT(runs.Counts(), Each(1));
  EXPECT_THAT(runs.Threads(), Each(std::this_thread::get_id()));
}

TEST(SchedulerTest, ManualModeRunsWorkThatWorkPosts) {
  constexpr int kItems = 100;
  Runs runs(kItems);
  std::unique_ptr<Scheduler> scheduler;
  scheduler = std::make_unique<Scheduler>(0, [&](Work w) {
    runs.Ran(w.execution);
    if (w.execution + 1 < kItems) scheduler->Post(Item(w.execution + 1));
  });
  scheduler->Post(Item(0));
  int steps = 0;
  while (scheduler->RunOne()) ++steps;
  EXPECT_EQ(steps, kItems);
  EXPECT_THAT(runs.Counts(), Each(1));
  EXPECT_THAT(runs.Threads(), Each(std::this_thread::get_id()));
  EXPECT_FALSE(scheduler->AnyQueued());
}

TEST(SchedulerTest, WaitForWorkReturnsAtOnceWhenWorkIsQueued) {
  Scheduler scheduler(0, [](Work) {});
  scheduler.Post(Item(0));
  const auto start = Steady::now();
  scheduler.WaitForWork(kGiveUp);
  EXPECT_LT(Steady::now() - start, kGiveUp / 2);
  EXPECT_TRUE(scheduler.RunOne()) << "waiting took the work";
}

TEST(SchedulerTest, WaitForWorkReturnsWhenSomethingIsPostedFromAnotherThread) {
  std::atomic<int> ran{0};
  Scheduler scheduler(0, [&](Work) { ran.fetch_add(1); });
  std::jthread poster([&] {
    std::this_thread::sleep_for(milliseconds(20));
    scheduler.Post(Item(0));
  });
  const auto start = Steady::now();
  scheduler.WaitForWork(kGiveUp);
  EXPECT_LT(Steady::now() - start, kGiveUp / 2) << "slept through the post";
  EXPECT_TRUE(scheduler.AnyQueued());
  EXPECT_TRUE(scheduler.RunOne());
  EXPECT_EQ(ran.load(), 1);
}

TEST(SchedulerTest, WaitForWorkReturnsAfterItsMaximumWhenNothingIsPosted) {
  Scheduler scheduler(0, [](Work) {});
  const auto start = Steady::now();
  scheduler.WaitForWork(milliseconds(50));
  const auto waited = Steady::now() - start;
  EXPECT_GE(waited, milliseconds(50));
  EXPECT_LT(waited, kGiveUp);
  EXPECT_FALSE(scheduler.AnyQueued());
}

TEST(SchedulerTest, WorkersRunEveryItemPostedFromOutsideExactlyOnce) {
  constexpr int kPosters = 3;
  constexpr int kPerPoster = 5000;
  constexpr int kItems = kPosters * kPerPoster;
  Runs runs(kItems);
  Scheduler scheduler(2, [&](Work w) { runs.Ran(w.execution); });
  scheduler.Start();
  {
    std::vector<std::jthread> posters;
    for (int p = 0; p < kPosters; ++p) {
      posters.emplace_back([&, p] {
        for (int i = 0; i < kPerPoster; ++i) scheduler.Post(Item(p * kPerPoster + i));
      });
    }
  }
  ASSERT_TRUE(runs.WaitForTotal(kItems)) << "ran " << runs.total() << " of " << kItems;
  scheduler.Stop();
  EXPECT_THAT(runs.Counts(), Each(1));
  EXPECT_EQ(runs.total(), kItems);
}

TEST(SchedulerTest, AnIdleWorkerWakesForEachItemPostedFromOutside) {
  // One item at a time, each posted once the workers have gone back to sleep: a lost wakeup
  // leaves an item queued forever.
  constexpr int kItems = 200;
  Runs runs(kItems);
  Scheduler scheduler(2, [&](Work w) { runs.Ran(w.execution); });
  scheduler.Start();
  for (int i = 0; i < kItems; ++i) {
    scheduler.Post(Item(i));
    ASSERT_TRUE(runs.WaitForTotal(i + 1)) << "item " << i << " never ran";
  }
  scheduler.Stop();
  EXPECT_THAT(runs.Counts(), Each(1));
}

TEST(SchedulerTest, WorkPostedByWorkersRunsExactlyOnce) {
  // Every item posts two more (a binary tree): most work is posted from the workers.
  constexpr int kItems = (1 << 14) - 1;
  Runs runs(kItems);
  std::unique_ptr<Scheduler> scheduler;
  scheduler = std::make_unique<Scheduler>(3, [&](Work w) {
    runs.Ran(w.execution);
    for (int child : {2 * w.execution + 1, 2 * w.execution + 2}) {
      if (child < kItems) scheduler->Post(Item(child));
    }
  });
  scheduler->Start();
  scheduler->Post(Item(0));
  ASSERT_TRUE(runs.WaitForTotal(kItems)) << "ran " << runs.total() << " of " << kItems;
  scheduler->Stop();
  EXPECT_THAT(runs.Counts(), Each(1));
  EXPECT_EQ(runs.total(), kItems);
}

TEST(SchedulerTest, IdleWorkersTakeWhatABusyWorkerPosted) {
  // The first item posts the rest from its worker and then waits for them: they can only run
  // on the other workers.
  constexpr int kChildren = 100;
  Runs runs(kChildren + 1);
  std::unique_ptr<Scheduler> scheduler;
  std::atomic<bool> children_ran{false};
  scheduler = std::make_unique<Scheduler>(3, [&](Work w) {
    if (w.execution == 0) {
      for (int i = 1; i <= kChildren; ++i) scheduler->Post(Item(i));
      children_ran = runs.WaitForTotal(kChildren);
    }
    runs.Ran(w.execution);
  });
  scheduler->Start();
  std::this_thread::sleep_for(milliseconds(10));  // let the workers go idle
  scheduler->Post(Item(0));
  ASSERT_TRUE(runs.WaitForTotal(kChildren + 1)) << "ran " << runs.total();
  EXPECT_TRUE(children_ran.load()) << "what a busy worker posted waited for it";
  scheduler->Stop();
  EXPECT_THAT(runs.Counts(), Each(1));
}

TEST(SchedulerTest, StopJoinsTheWorkersAndDropsWhatIsQueued) {
  constexpr int kItems = 500;
  std::atomic<int> started{0};
  std::atomic<int> running{0};
  std::atomic<int> finished{0};
  Scheduler scheduler(2, [&](Work) {
    started.fetch_add(1);
    running.fetch_add(1);
    std::this_thread::sleep_for(milliseconds(2));
    running.fetch_sub(1);
    finished.fetch_add(1);
  });
  scheduler.Start();
  for (int i = 0; i < kItems; ++i) scheduler.Post(Item(i));
  const auto give_up = Steady::now() + kGiveUp;
  while (started.load() == 0 && Steady::now() < give_up) std::this_thread::yield();
  ASSERT_GT(started.load(), 0);

  scheduler.Stop();
  EXPECT_EQ(running.load(), 0) << "Stop returned while a worker was in an item";
  EXPECT_EQ(started.load(), finished.load());
  // Draining 500 items of 2 ms on two workers would take half a second.
  EXPECT_LT(finished.load(), kItems) << "Stop ran the queued work instead of dropping it";

  const int after_stop = finished.load();
  scheduler.Post(Item(kItems));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(started.load(), after_stop) << "work ran after Stop";
}

TEST(SchedulerTest, StopIsIdempotent) {
  Runs runs(1);
  Scheduler scheduler(2, [&](Work w) { runs.Ran(w.execution); });
  scheduler.Stop();  // before Start: nothing to stop
  scheduler.Start();
  scheduler.Post(Item(0));
  ASSERT_TRUE(runs.WaitForTotal(1));
  scheduler.Stop();
  scheduler.Stop();
  EXPECT_EQ(runs.total(), 1);
  // The destructor stops once more.
}

TEST(SchedulerTest, StopReturnsPromptlyWhenTheWorkersAreIdle) {
  Scheduler scheduler(2, [](Work) {});
  scheduler.Start();
  std::this_thread::sleep_for(milliseconds(10));  // let the workers go to sleep
  const auto start = Steady::now();
  scheduler.Stop();
  EXPECT_LT(Steady::now() - start, kGiveUp / 2);
}

}  // namespace
}  // namespace sagaflow::engine
