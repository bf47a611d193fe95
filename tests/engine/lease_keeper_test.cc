// The executor's lease keeper (engine/src/lease_keeper.h): which leases one renewal pass
// extends, and the thread that renews them and polls for due instances.
//
// The thread is paced in real time but reads the store's times from its clock; most tests give
// it a virtual clock that only the test moves, so that no lease can expire because the machine
// is slow, and wait for what the thread did rather than for a length of time.
#include "lease_keeper.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

constexpr char kOwner[] = "keeper";

// Polls `done` until it holds or a generous real-time limit passes; returns whether it held.
template <typename Condition>
bool Eventually(Condition done) {
  const auto give_up = Steady::now() + seconds(10);
  while (!done()) {
    if (Steady::now() > give_up) return false;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return true;
}

class LeaseKeeperTest : public ::testing::Test {
 protected:
  // An instance held by `owner` until `lease_until`; owner "" is a parked one waking then.
  InstanceId Add(const std::string& owner, TimePoint lease_until, bool finished = false) {
    InstanceRecord r;
    r.id = NewInstanceId();
    r.flow_name = "pay";
    r.flow_version = "1.0.0";
    r.flow_hash = "00000000deadbeef";
    r.input = Json{{"order", "o-1"}};
    r.context = r.input;
    r.started_at = r.updated_at = clock_.Now();
    r.owner = owner;
    r.lease_until = lease_until;
    if (finished) r.cursor.phase = Phase::kFinished;
    EXPECT_THAT(store_.CreateInstance(r), IsOk());
    return r.id;
  }

  TimePoint LeaseOf(const InstanceId& id) {
    auto r = store_.LoadInstance(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->lease_until : TimePoint{};
  }

  int polls() const { return polls_.load(); }

  ManualClock clock_{*ParseTime("2026-12-06T10:00:00Z")};
  const TimePoint start_ = clock_.Now();
  adapters::MemoryStateStore store_;
  std::atomic<int> polls_{0};
};

TEST_F(LeaseKeeperTest, RenewOnceExtendsOnlyOwnLiveLeasesExpiringWithinTwoThirdsOfALease) {
  const Duration ttl = seconds(30);
  const TimePoint now = clock_.Now();
  const TimePoint renew_before = now + ttl * 2 / 3;  // 20 s from now
  const InstanceId soon = Add(kOwner, now + seconds(1));
  const InstanceId at_the_bound = Add(kOwner, renew_before);
  // Time left: renewing these would only write more.
  const InstanceId past_the_bound = Add(kOwner, renew_before + Duration(1));
  const InstanceId fresh = Add(kOwner, now + ttl);
  // Lost: another process may be claiming them, so they are not revived.
  const InstanceId expired_now = Add(kOwner, now);
  const InstanceId expired = Add(kOwner, now - seconds(5));
  const InstanceId finished = Add(kOwner, now + seconds(1), /*finished=*/true);
  const InstanceId elsewhere = Add("other", now + seconds(1));
  const InstanceId parked = Add("", now + seconds(1));  // its lease is its wake time

  LeaseKeeper keeper(store_, clock_, kOwner, ttl, Duration::zero(), [this] { ++polls_; });
  auto renewed = keeper.RenewOnce();
  ASSERT_THAT(renewed, IsOk());
  EXPECT_EQ(*renewed, 2u);
  EXPECT_EQ(LeaseOf(soon), now + ttl);
  EXPECT_EQ(LeaseOf(at_the_bound), now + ttl);
  EXPECT_EQ(LeaseOf(past_the_bound), renew_before + Duration(1));
  EXPECT_EQ(LeaseOf(fresh), now + ttl);
  EXPECT_EQ(LeaseOf(expired_now), now);
  EXPECT_EQ(LeaseOf(expired), now - seconds(5));
  EXPECT_EQ(LeaseOf(finished), now + seconds(1));
  EXPECT_EQ(LeaseOf(elsewhere), now + seconds(1));
  EXPECT_EQ(LeaseOf(parked), now + seconds(1));
  auto stored = store_.LoadInstance(parked);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->owner, "");  // still parked: a renewal never takes an instance
  EXPECT_EQ(polls(), 0);         // RenewOnce is the renewal alone
}

TEST_F(LeaseKeeperTest, ALeaseIsRenewedAgainOnlyOnceAThirdOfItHasPassed) {
  const Duration ttl = seconds(30);
  const InstanceId id = Add(kOwner, clock_.Now() + seconds(1));
  LeaseKeeper keeper(store_, clock_, kOwner, ttl, Duration::zero(), [] {});
  EXPECT_EQ(keeper.RenewOnce().value(), 1u);
  // Just renewed: a whole lease is left, more than two thirds.
  EXPECT_EQ(keeper.RenewOnce().value(), 0u);
  clock_.Advance(ttl / 3 - Duration(1));
  EXPECT_EQ(keeper.RenewOnce().value(), 0u);
  clock_.Advance(Duration(1));
  EXPECT_EQ(keeper.RenewOnce().value(), 1u);
  // Extended to a lease from the clock's now, not from the lease it had.
  EXPECT_EQ(LeaseOf(id), clock_.Now() + ttl);
}

TEST_F(LeaseKeeperTest, RenewIfDueRenewsAtMostOnceASixthOfALeaseInRealTime) {
  const Duration ttl = milliseconds(120);  // a renewal due every 20 ms of real time
  const InstanceId id = Add(kOwner, clock_.Now() + Duration(1));
  LeaseKeeper keeper(store_, clock_, kOwner, ttl, Duration::zero(), [] {});
  EXPECT_EQ(keeper.RenewIfDue().value(), 1u);
  // The store's clock says the lease needs renewing again, but no sixth of a lease has passed
  // since the last renewal: nothing is written (a long poll calls this between its batches).
  clock_.Advance(ttl / 2);
  EXPECT_EQ(keeper.RenewIfDue().value(), 0u);
  EXPECT_EQ(LeaseOf(id), clock_.Now() + ttl / 2);
  std::this_thread::sleep_for(milliseconds(25));
  EXPECT_EQ(keeper.RenewIfDue().value(), 1u);
  EXPECT_EQ(LeaseOf(id), clock_.Now() + ttl);
}

TEST_F(LeaseKeeperTest, TheThreadRenewsLeasesOnEveryPassAsTheStoreClockMoves) {
  const Duration ttl = milliseconds(120);  // a pass every 20 ms of real time
  const InstanceId id = Add(kOwner, clock_.Now() + ttl);
  const InstanceId elsewhere = Add("other", clock_.Now() + ttl);
  LeaseKeeper keeper(store_, clock_, kOwner, ttl, Duration::zero(), [] {});
  keeper.Start();
  for (int round = 0; round < 3; ++round) {
    // Half a lease later the lease is due for renewal; only a pass after the move renews it,
    // and to exactly a lease from the moved clock.
    clock_.Advance(ttl / 2);
    const TimePoint expected = clock_.Now() + ttl;
    EXPECT_TRUE(Eventually([&] { return LeaseOf(id) == expected; }))
        << "round " << round << ": the lease was not renewed";
  }
  keeper.Stop();
  EXPECT_EQ(LeaseOf(elsewhere), start_ + ttl);
}

TEST_F(LeaseKeeperTest, TheThreadPollsEveryPollEveryAndNoMoreOften) {
  // Renewal passes every 10 ms; polls every 50 ms only.
  const Duration poll_every = milliseconds(50);
  std::mutex mu;
  std::vector<Steady::time_point> polled_at;
  LeaseKeeper keeper(store_, clock_, kOwner, milliseconds(60), poll_every, [&] {
    std::lock_guard lock(mu);
    polled_at.push_back(Steady::now());
  });
  const Steady::time_point started = Steady::now();
  keeper.Start();
  EXPECT_TRUE(Eventually([&] {
    std::lock_guard lock(mu);
    return polled_at.size() >= 4;
  }));
  keeper.Stop();
  std::lock_guard lock(mu);
  // The k-th poll cannot come before k periods have passed since the start.
  for (std::size_t k = 0; k < polled_at.size(); ++k) {
    EXPECT_GE(polled_at[k] - started, poll_every * static_cast<int>(k + 1)) << "poll " << k + 1;
  }
}

TEST_F(LeaseKeeperTest, AZeroPollEveryNeverPollsWhileTheThreadRenews) {
  const Duration ttl = milliseconds(60);
  const InstanceId id = Add(kOwner, clock_.Now() + ttl);
  LeaseKeeper keeper(store_, clock_, kOwner, ttl, Duration::zero(), [this] { ++polls_; });
  keeper.Start();
  // Renewals show that the thread has gone round its loop many times meanwhile.
  for (int round = 0; round < 3; ++round) {
    clock_.Advance(ttl / 2);
    const TimePoint expected = clock_.Now() + ttl;
    ASSERT_TRUE(Eventually([&] { return LeaseOf(id) == expected; })) << "round " << round;
  }
  keeper.Stop();
  EXPECT_EQ(polls(), 0);
}

TEST_F(LeaseKeeperTest, NothingIsRenewedOrPolledAfterStop) {
  const Duration ttl = milliseconds(60);
  const InstanceId id = Add(kOwner, clock_.Now() + ttl);
  LeaseKeeper keeper(store_, clock_, kOwner, ttl, milliseconds(10), [this] { ++polls_; });
  keeper.Start();
  ASSERT_TRUE(Eventually([&] { return polls() >= 1; }));
  keeper.Stop();
  const int polled = polls();
  clock_.Advance(ttl / 2);  // the lease is due for renewal: only a running thread would
  std::this_thread::sleep_for(milliseconds(100));  // ten poll periods
  EXPECT_EQ(polls(), polled);
  EXPECT_EQ(LeaseOf(id), start_ + ttl);
  // The pass itself does not need the thread.
  EXPECT_EQ(keeper.RenewOnce().value(), 1u);
}

TEST_F(LeaseKeeperTest, StopWaitsForAPollInProgress) {
  std::atomic<bool> in_poll{false};
  std::atomic<bool> release{false};
  LeaseKeeper keeper(store_, clock_, kOwner, milliseconds(60), milliseconds(10), [&] {
    ++polls_;
    in_poll = true;
    while (!release) std::this_thread::sleep_for(milliseconds(1));
  });
  keeper.Start();
  ASSERT_TRUE(Eventually([&] { return in_poll.load(); }));
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    keeper.Stop();
    stopped = true;
  });
  std::this_thread::sleep_for(milliseconds(50));
  // The poll claims and resumes instances: Stop may not return while it still runs.
  EXPECT_FALSE(stopped.load());
  release = true;
  stopper.join();
  EXPECT_TRUE(stopped.load());
  EXPECT_EQ(polls(), 1);  // the stop request is seen as soon as the poll returns
}

TEST_F(LeaseKeeperTest, StopBeforeStartAndASecondStopAreHarmless) {
  LeaseKeeper keeper(store_, clock_, kOwner, milliseconds(60), milliseconds(10),
                     [this] { ++polls_; });
  keeper.Stop();  // never started
  keeper.Start();
  ASSERT_TRUE(Eventually([&] { return polls() >= 1; }));
  keeper.Stop();
  keeper.Stop();
  const int polled = polls();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(polls(), polled);
}  // and the destructor stops a third time

TEST_F(LeaseKeeperTest, DestroyingARunningKeeperStopsItsThread) {
  {
    LeaseKeeper keeper(store_, clock_, kOwner, milliseconds(60), milliseconds(10),
                       [this] { ++polls_; });
    keeper.Start();
    ASSERT_TRUE(Eventually([&] { return polls() >= 1; }));
  }
  // The thread was joined: the poll it called, which refers to this test, runs no more.
  const int polled = polls();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(polls(), polled);
}

// Not covered: a store refusing RenewLeases. FaultInjectingStateStore forwards RenewLeases
// without a switch to refuse it, and the thread only logs a refusal.

}  // namespace
}  // namespace sagaflow::engine
