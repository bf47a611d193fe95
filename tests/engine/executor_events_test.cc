// The threaded executor on events: async steps through the in-process dispatcher, Waits that
// park and fire (here, or in another executor after this one stopped), and deadlines that hold
// while a task hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/in_process_dispatcher.h"
#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/fault_injecting_state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

std::shared_ptr<const statelang::StateMachine> MustLoad(const std::string& text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

constexpr const char* kAsyncFlow = R"({"Name": "async", "StartState": "A", "States": {
  "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "IsAsync": true,
        "Output": {"a": "$.#root"}, "Next": "B"},
  "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b", "IsAsync": true,
        "Input": [{"a": "$.[a]"}], "Output": {"b": "$.#root"}, "Next": "Done"},
  "Done": {"Type": "Succeed"}}})";

std::string WaitFlow(double seconds) {
  return R"({"Name": "wait", "StartState": "Pause", "States": {
    "Pause": {"Type": "Wait", "Seconds": )" +
         std::to_string(seconds) + R"(, "Next": "After"},
    "After": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "after",
              "Next": "Done"},
    "Done": {"Type": "Succeed"}}})";
}

class ExecutorEventsTest : public ::testing::Test {
 protected:
  ExecutorEventsTest() {
    registry_.add("svc.a", [](TaskContext&, const Json&) -> Json { return "from-a"; });
    registry_.add("svc.b", [](TaskContext&, const Json& args) -> Json {
      return args.at(0).at("a").get<std::string>() + "+b";
    });
    registry_.add("svc.after", [this](TaskContext&, const Json&) -> Json {
      ++after_calls_;
      return true;
    });
  }
  TaskRegistry registry_;
  adapters::MemoryStateStore store_;
  SystemClock clock_;
  std::atomic<int> after_calls_{0};
};

TEST_F(ExecutorEventsTest, AsyncStepsRunOnTheDispatcherAndResumeTheInstance) {
  adapters::InProcessDispatcher dispatcher(registry_, clock_, {.threads = 2});
  Executor executor(ExecutorOptions{.workers = 2, .dispatcher = &dispatcher}, registry_, store_,
                    clock_);
  ASSERT_THAT(executor.Start(), IsOk());
  auto m = MustLoad(kAsyncFlow);
  ASSERT_THAT(executor.AddFlow(m), IsOk());
  constexpr int kInstances = 200;
  std::vector<InstanceId> ids;
  for (int i = 0; i < kInstances; ++i) {
    auto id = executor.StartInstance(m, Json::object());
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  for (const InstanceId& id : ids) {
    auto r = executor.Await(id, seconds(20));
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, RunStatus::kSucceeded);
    EXPECT_EQ(r->context.get().at("b"), "from-a+b");
  }
  EXPECT_EQ(executor.stats().dispatched, 2u * kInstances);
  EXPECT_EQ(dispatcher.delivered(), 2u * kInstances);
  executor.Stop();
}

TEST_F(ExecutorEventsTest, AnAsyncFlowIsRefusedWithoutADispatcher) {
  Executor executor(ExecutorOptions{.workers = 1}, registry_, store_, clock_);
  ASSERT_THAT(executor.Start(), IsOk());
  EXPECT_THAT(executor.AddFlow(MustLoad(kAsyncFlow)),
              ::sagaflow::testing::StatusIs(StatusCode::kInvalidArgument));
}

TEST_F(ExecutorEventsTest, AWaitParksWithoutALeaseAndFiresNotBeforeItsTime) {
  Executor executor(ExecutorOptions{.workers = 2}, registry_, store_, clock_);
  ASSERT_THAT(executor.Start(), IsOk());
  auto m = MustLoad(WaitFlow(0.3));
  ASSERT_THAT(executor.AddFlow(m), IsOk());
  const TimePoint t0 = clock_.Now();
  auto id = executor.StartInstance(m, Json::object());
  ASSERT_THAT(id, IsOk());
  std::this_thread::sleep_for(milliseconds(100));
  // Parked: no owner, its wake time stored as the time any node may claim it.
  auto parked = store_.LoadInstance(*id);
  ASSERT_THAT(parked, IsOk());
  EXPECT_EQ(parked->owner, "");
  ASSERT_TRUE(parked->cursor.wake_at.has_value());
  EXPECT_GE(*parked->cursor.wake_at, t0 + milliseconds(300));
  EXPECT_EQ(parked->lease_until, *parked->cursor.wake_at);
  EXPECT_EQ(executor.live_instances(), 0u);
  auto r = executor.Await(*id, seconds(10));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  ASSERT_EQ(r->executions.size(), 1u);
  EXPECT_GE(r->executions[0].started_at, t0 + milliseconds(300));
  EXPECT_EQ(after_calls_.load(), 1);
  EXPECT_GE(executor.stats().parked, 1u);
}

// An engine stops while its instances wait; another one, claiming what is due, fires each
// Wait once, at its time.
TEST_F(ExecutorEventsTest, AnotherEngineFiresTheWaitsOfOneThatStopped) {
  auto m = MustLoad(WaitFlow(0.5));
  constexpr int kInstances = 50;
  std::vector<InstanceId> ids;
  TimePoint t0;
  {
    Executor first(ExecutorOptions{.workers = 2, .owner = "first"}, registry_, store_, clock_);
    ASSERT_THAT(first.Start(), IsOk());
    ASSERT_THAT(first.AddFlow(m), IsOk());
    t0 = clock_.Now();
    for (int i = 0; i < kInstances; ++i) {
      auto id = first.StartInstance(m, Json::object());
      ASSERT_THAT(id, IsOk());
      ids.push_back(*id);
    }
    std::this_thread::sleep_for(milliseconds(100));
    first.Stop();
  }
  EXPECT_EQ(after_calls_.load(), 0);
  Executor second(ExecutorOptions{.workers = 2, .owner = "second", .recover_every = milliseconds(50)},
                  registry_, store_, clock_);
  Executor third(ExecutorOptions{.workers = 2, .owner = "third", .recover_every = milliseconds(50)},
                 registry_, store_, clock_);
  ASSERT_THAT(second.Start(), IsOk());
  ASSERT_THAT(third.Start(), IsOk());
  ASSERT_THAT(second.AddFlow(m), IsOk());
  ASSERT_THAT(third.AddFlow(m), IsOk());
  const auto give_up = Steady::now() + seconds(10);
  std::size_t done = 0;
  while (Steady::now() < give_up) {
    done = 0;
    for (const InstanceId& id : ids) {
      auto r = store_.LoadInstance(id);
      ASSERT_THAT(r, IsOk());
      if (r->finished()) ++done;
    }
    if (done == ids.size()) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (done != ids.size()) {
    auto r = store_.LoadInstance(ids[0]);
    ASSERT_THAT(r, IsOk());
    ADD_FAILURE() << "first instance: owner '" << r->owner << "', lease until "
                  << FormatTime(r->lease_until) << ", now " << FormatTime(clock_.Now());
  }
  ASSERT_EQ(done, ids.size());
  EXPECT_EQ(after_calls_.load(), kInstances);  // each Wait fired once, across both engines
  for (const InstanceId& id : ids) {
    auto r = store_.LoadInstance(id);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, RunStatus::kSucceeded);
    ASSERT_EQ(r->executions.size(), 1u);
    EXPECT_GE(r->executions[0].started_at, t0 + milliseconds(500));  // none early
  }
  EXPECT_GE(second.stats().woken + third.stats().woken, static_cast<std::uint64_t>(kInstances));
}

// The claim of a Wait that is due stores this engine as its owner, with a lease: the write
// that ends the Wait and starts the next state leaves the header as the claim stored it (a
// write of fewer columns, none of them indexed), and the lease is still held until the last
// write gives it back.
TEST_F(ExecutorEventsTest, TheFirstWriteAfterAClaimedWaitLeavesTheHeaderAsClaimed) {
  auto m = MustLoad(WaitFlow(0.3));
  InstanceId id;
  {
    Executor first(ExecutorOptions{.workers = 2, .owner = "first"}, registry_, store_, clock_);
    ASSERT_THAT(first.Start(), IsOk());
    ASSERT_THAT(first.AddFlow(m), IsOk());
    auto started = first.StartInstance(m, Json::object());
    ASSERT_THAT(started, IsOk());
    id = *started;
    std::this_thread::sleep_for(milliseconds(100));
    first.Stop();
  }
  ::sagaflow::testing::FaultInjectingStateStore watched(store_);
  std::mutex mu;
  std::vector<std::string> writes;  // per write: header or not, and the owner stored after it
  watched.AfterWrite([&](const WriteBatch& b) {
    auto stored = store_.LoadInstance(b.instance);
    std::lock_guard lock(mu);
    writes.push_back(std::string(b.header ? "header" : "no header") + ", owner '" +
                     (stored.ok() ? stored->owner : "?") + "'");
  });
  Executor second(ExecutorOptions{.workers = 2, .owner = "second", .recover_every = milliseconds(50)},
                  registry_, watched, clock_);
  ASSERT_THAT(second.Start(), IsOk());
  ASSERT_THAT(second.AddFlow(m), IsOk());
  auto r = second.Await(id, seconds(10));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(after_calls_.load(), 1);
  second.Stop();
  std::lock_guard lock(mu);
  EXPECT_EQ(writes, (std::vector<std::string>{"no header, owner 'second'",
                                              "header, owner 'second'"}));
}

// An engine that claims what is due (recover_every) fires the local timers of Waits ending
// close together with claims of what is due, many instances each, not with one claim per
// instance: at most one claim per timer tick the wake times fall in, however many instances
// are due in it. Each Wait still fires once and not before its time. The periodic pass is an
// hour away: only the timers' own claims run.
void ExpectWaitsClaimedTogether(const std::string& flow, int instances,
                                TaskRegistry& registry, StateStore& base,
                                const std::atomic<int>& fired, const Clock& clock) {
  ::sagaflow::testing::FaultInjectingStateStore store(base);
  auto m = MustLoad(flow);
  Executor executor(ExecutorOptions{.workers = 2, .owner = "poller", .recover_every = seconds(3600)},
                    registry, store, clock);
  ASSERT_THAT(executor.Start(), IsOk());
  ASSERT_THAT(executor.AddFlow(m), IsOk());
  const TimePoint t0 = clock.Now();
  std::vector<InstanceId> ids;
  for (int i = 0; i < instances; ++i) {
    auto id = executor.StartInstance(m, Json{{"due", FormatTime(t0 + milliseconds(400))}});
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  // Every Wait started by now, so every wake time is within [t0, parked_by] + 400 ms: as
  // many ticks as that span covers, whatever the machine's speed (a sanitizer build starts
  // instances slower and spreads them over more ticks).
  const auto give_up = Steady::now() + seconds(20);
  while (executor.stats().parked < static_cast<std::uint64_t>(instances) &&
         Steady::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  const TimePoint parked_by = clock.Now();
  const Duration tick = ExecutorOptions{}.local_timer_tick;
  ASSERT_GT(tick, Duration::zero());
  const auto ticks = static_cast<int>((parked_by - t0) / tick) + 2;
  for (const InstanceId& id : ids) {
    auto r = executor.Await(id, seconds(20));
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, RunStatus::kSucceeded);
    ASSERT_EQ(r->executions.size(), 1u);
    // None early (the Timestamp is written to the millisecond).
    EXPECT_GE(r->executions[0].started_at, t0 + milliseconds(399));
  }
  EXPECT_EQ(fired.load(), instances);
  EXPECT_EQ(store.claim_idle_calls(), 0);
  EXPECT_GE(store.claim_due_calls(), 1);
  EXPECT_LE(store.claim_due_calls(), ticks);
  EXPECT_LT(store.claim_due_calls(), instances);
  EXPECT_EQ(executor.stats().woken, static_cast<std::uint64_t>(instances));
  executor.Stop();
}

TEST_F(ExecutorEventsTest, WaitsEndingTogetherAreClaimedTogether) {
  // One wake time for all (a Timestamp): one timer, one claim for the lot.
  ExpectWaitsClaimedTogether(R"({"Name": "at", "StartState": "Pause", "States": {
    "Pause": {"Type": "Wait", "TimestampPath": "$.due", "Next": "After"},
    "After": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "after",
              "Next": "Done"},
    "Done": {"Type": "Succeed"}}})",
                             300, registry_, store_, after_calls_, clock_);
}

TEST_F(ExecutorEventsTest, WaitsEndingCloseTogetherShareClaims) {
  // A wake time each (Seconds from each start): a timer each, claims shared.
  ExpectWaitsClaimedTogether(WaitFlow(0.4), 300, registry_, store_, after_calls_, clock_);
}

TEST_F(ExecutorEventsTest, TheDeadlineHoldsWhileATaskHangs) {
  std::atomic<bool> release{false};
  std::atomic<int> calls{0};
  registry_.add("svc.hang", [&](TaskContext&, const Json&) -> Json {
    ++calls;
    while (!release.load()) std::this_thread::sleep_for(milliseconds(5));
    return "late";
  });
  auto m = MustLoad(R"({"Name": "hang", "StartState": "H", "States": {
    "H": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "hang",
          "TimeoutSeconds": 0.2, "Output": {"h": "$.#root"},
          "Catch": [{"Exceptions": ["TimeoutError"], "Next": "Late"}], "Next": "Done"},
    "Late": {"Type": "Fail", "ErrorCode": "LATE"},
    "Done": {"Type": "Succeed"}}})");
  Executor executor(ExecutorOptions{.workers = 1}, registry_, store_, clock_);
  ASSERT_THAT(executor.Start(), IsOk());
  const auto t0 = Steady::now();
  auto r = executor.Run(m, Json::object(), {}, seconds(10));
  const auto took = Steady::now() - t0;
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->error_code, "LATE");
  ASSERT_TRUE(r->executions.at(0).error.has_value());
  EXPECT_EQ(r->executions[0].error->type, "TimeoutError");
  EXPECT_GE(took, milliseconds(200));
  EXPECT_LT(took, seconds(5)) << "the step waited for the hung task";
  // The one worker is free: another instance runs while the first task still hangs.
  auto other = executor.Run(MustLoad(WaitFlow(0)), Json::object(), {}, seconds(10));
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(other->status, RunStatus::kSucceeded);
  // The hung task returns at last: its result is ignored and counted.
  release = true;
  const auto give_up = Steady::now() + seconds(5);
  while (executor.stats().late_results == 0 && Steady::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(executor.stats().late_results, 1u);
  auto stored = store_.LoadInstance(r->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_FALSE(stored->context.get().contains("h"));
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace sagaflow::engine
