// One recovery pass (engine/src/recovery.h): what it claims, how it hands each claimed
// instance to `resume`, what it reports, and that two processes passing at once share the work.
#include "recovery.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/testing/fault_injecting_state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::FaultInjectingStateStore;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

constexpr char kOwner[] = "recoverer";
constexpr Duration kTtl = seconds(30);

// Forwards to a real store and logs each LoadInstances call (its size), so that a test can see
// how a pass interleaves loading with resuming; `refuse_loads` refuses whole calls.
class LoadLoggingStore final : public StateStore {
 public:
  LoadLoggingStore(StateStore& base, std::vector<std::string>& log) : base_(base), log_(log) {}
  int refuse_loads = 0;

  Status SaveDefinition(const DefinitionRecord& def) override { return base_.SaveDefinition(def); }
  Result<DefinitionRecord> LoadDefinition(const std::string& name,
                                          const std::string& hash) override {
    return base_.LoadDefinition(name, hash);
  }
  using StateStore::Create;
  void Create(const InstanceRecord& r, std::span<const DispatchRecord> dispatches,
              CreateDone done) override {
    base_.Create(r, dispatches, std::move(done));
  }
  using StateStore::Apply;
  void Apply(WriteBatch& batch, WriteDone done) override {
    base_.Apply(batch, std::move(done));
  }
  Result<InstanceRecord> LoadInstance(const InstanceId& id) override {
    return base_.LoadInstance(id);
  }
  Result<std::vector<Result<InstanceRecord>>> LoadInstances(
      const std::vector<InstanceId>& ids) override {
    log_.push_back("load " + std::to_string(ids.size()));
    if (refuse_loads > 0) {
      --refuse_loads;
      return Unavailable("load refused");
    }
    return base_.LoadInstances(ids);
  }
  Result<std::vector<InstanceSummary>> ListInstances(const InstanceFilter& filter) override {
    return base_.ListInstances(filter);
  }
  Result<std::vector<InstanceId>> ClaimDue(const std::string& owner, TimePoint now,
                                           TimePoint lease_until, std::size_t limit) override {
    return base_.ClaimDue(owner, now, lease_until, limit);
  }
  Result<InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                       TimePoint now, TimePoint lease_until) override {
    return base_.ClaimInstance(id, owner, now, lease_until);
  }
  Result<InstanceRecord> ClaimIdle(const InstanceId& id, const std::string& owner,
                                   TimePoint now, TimePoint lease_until) override {
    return base_.ClaimIdle(id, owner, now, lease_until);
  }
  Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                  TimePoint renew_before, TimePoint lease_until) override {
    return base_.RenewLeases(owner, now, renew_before, lease_until);
  }
  Result<UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) override {
    return base_.Unfinished(owner, now);
  }
  Result<ClaimedDispatches> ClaimDispatches(TimePoint now, TimePoint next_due,
                                                              std::size_t limit) override {
    return base_.ClaimDispatches(now, next_due, limit);
  }
  Status RemoveDispatches(std::span<const DispatchKey> keys) override {
    return base_.RemoveDispatches(keys);
  }
  Result<std::vector<DispatchRecord>> ListDispatches(const InstanceId& instance) override {
    return base_.ListDispatches(instance);
  }

 private:
  StateStore& base_;
  std::vector<std::string>& log_;
};

class RecoveryPassTest : public ::testing::Test {
 protected:
  // An unfinished instance held by `owner` until `lease_until`; owner "" is a parked one
  // waking then.
  InstanceId Add(const std::string& owner, TimePoint lease_until, bool finished = false) {
    InstanceRecord r;
    r.id = NewInstanceId();
    r.flow_name = "pay";
    r.flow_version = "1.0.0";
    r.flow_hash = "00000000deadbeef";
    r.business_key = "bk-" + r.id.str();
    r.input = Json{{"order", r.id.str()}};
    r.context = r.input;
    r.started_at = r.updated_at = clock_.Now() - seconds(60);
    r.owner = owner;
    r.lease_until = lease_until;
    if (finished) r.cursor.phase = Phase::kFinished;
    EXPECT_THAT(store_.CreateInstance(r), IsOk());
    return r.id;
  }

  InstanceRecord Stored(const InstanceId& id) {
    auto r = store_.LoadInstance(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : InstanceRecord{};
  }

  // Resumes everything, keeping what it was handed.
  Recovery::Resume Keep() {
    return [this](const InstanceId& id, Result<InstanceRecord> loaded) {
      handed_.emplace_back(id, std::move(loaded));
      return Status::Ok();
    };
  }
  std::vector<InstanceId> HandedIds() const {
    std::vector<InstanceId> out;
    for (const auto& [id, loaded] : handed_) out.push_back(id);
    return out;
  }

  ManualClock clock_{*ParseTime("2026-12-06T10:00:00Z")};
  const TimePoint now_ = clock_.Now();
  adapters::MemoryStateStore store_;
  FaultInjectingStateStore flaky_{store_};
  Recovery recovery_{flaky_, clock_, kOwner, kTtl};
  std::vector<std::pair<InstanceId, Result<InstanceRecord>>> handed_;
};

TEST_F(RecoveryPassTest, APassClaimsOnlyExpiredLeasesAndDueTimers) {
  const InstanceId dead = Add("died", now_ - seconds(1));
  const InstanceId dead_just_now = Add("died", now_);
  const InstanceId woken = Add("", now_ - seconds(5));
  const InstanceId woken_just_now = Add("", now_);
  const InstanceId live = Add("alive", now_ + Duration(1));
  const InstanceId sleeping = Add("", now_ + seconds(1));
  const InstanceId waiting_for_event = Add("", TimePoint::max());
  const InstanceId finished = Add("died", now_ - seconds(1), /*finished=*/true);

  auto report = recovery_.Pass(100, Keep());
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, UnorderedElementsAre(dead, dead_just_now, woken, woken_just_now));
  EXPECT_THAT(report->failed, IsEmpty());
  EXPECT_THAT(HandedIds(), ElementsAreArray(report->resumed));
  for (const InstanceId& id : report->resumed) {
    const InstanceRecord r = Stored(id);
    EXPECT_EQ(r.owner, kOwner);
    EXPECT_EQ(r.lease_until, now_ + kTtl);
  }
  EXPECT_EQ(Stored(live).owner, "alive");
  EXPECT_EQ(Stored(live).lease_until, now_ + Duration(1));
  EXPECT_EQ(Stored(sleeping).owner, "");
  EXPECT_EQ(Stored(sleeping).lease_until, now_ + seconds(1));
  EXPECT_EQ(Stored(waiting_for_event).owner, "");
  EXPECT_EQ(Stored(finished).owner, "died");

  // What it claimed is its own until the lease expires: the next pass finds nothing.
  handed_.clear();
  report = recovery_.Pass(100, Keep());
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, IsEmpty());
  EXPECT_THAT(handed_, IsEmpty());
}

TEST_F(RecoveryPassTest, ResumeIsHandedTheRecordAsStoredAfterTheClaim) {
  const InstanceId id = Add("died", now_ - seconds(1));
  ASSERT_THAT(recovery_.Pass(10, Keep()), IsOk());
  ASSERT_EQ(handed_.size(), 1u);
  EXPECT_EQ(handed_[0].first, id);
  const Result<InstanceRecord>& loaded = handed_[0].second;
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->id, id);
  EXPECT_EQ(loaded->business_key, "bk-" + id.str());
  EXPECT_EQ(loaded->input, (Json{{"order", id.str()}}));
  // The resumed run writes as the claiming owner: the record it starts from says so.
  EXPECT_EQ(loaded->owner, kOwner);
  EXPECT_EQ(loaded->lease_until, now_ + kTtl);
}

TEST_F(RecoveryPassTest, ALimitTakesTheLongestDueFirstAndLeavesTheRestForTheNextPass) {
  std::vector<InstanceId> due;
  for (int i = 5; i >= 1; --i) due.push_back(Add("died", now_ - seconds(i)));
  auto report = recovery_.Pass(2, Keep());
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(due[0], due[1]));
  EXPECT_EQ(Stored(due[2]).owner, "died");  // not claimed: a later pass or process takes it

  report = recovery_.Pass(10, Keep());
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(due[2], due[3], due[4]));
  EXPECT_THAT(HandedIds(), ElementsAreArray(due));
}

TEST_F(RecoveryPassTest, ALoadThatFailsIsHandedToResumeAndItsLeaseGivenBackForALaterPass) {
  const std::vector<InstanceId> due = {Add("died", now_ - seconds(3)),
                                       Add("died", now_ - seconds(2)),
                                       Add("died", now_ - seconds(1))};
  flaky_.FailNextLoads(1);
  // As the executor does, a record that did not load is not resumed; the others run to the
  // end at once, so that only the refused one can be due again.
  auto resume = [this](const InstanceId& id, Result<InstanceRecord> loaded) {
    Status s = loaded.status();
    if (loaded.ok()) {
      InstanceRecord done = *loaded;
      done.cursor.phase = Phase::kFinished;
      done.status = RunStatus::kSucceeded;
      EXPECT_THAT(store_.Write(WriteBatch::Of(done, {}, false)), IsOk());
    }
    handed_.emplace_back(id, std::move(loaded));
    return s;
  };
  auto report = recovery_.Pass(10, resume);
  ASSERT_THAT(report, IsOk());
  ASSERT_EQ(report->failed.size(), 1u);
  const InstanceId refused = report->failed[0].first;
  EXPECT_THAT(report->failed[0].second, StatusIs(StatusCode::kUnavailable));
  EXPECT_EQ(report->resumed.size(), 2u);
  EXPECT_THAT(HandedIds(), UnorderedElementsAreArray(due));  // the refused one too
  for (const auto& [id, loaded] : handed_) {
    EXPECT_EQ(loaded.ok(), id != refused) << id.str();
  }
  // Its lease is given back (the lease keeper would otherwise renew it while nothing runs
  // it): due at once, for this process's next pass or another's.
  EXPECT_EQ(Stored(refused).owner, kOwner);
  EXPECT_EQ(Stored(refused).lease_until, now_);
  Recovery other(store_, clock_, "other", kTtl);
  report = other.Pass(10, resume);
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(refused));
  EXPECT_THAT(report->failed, IsEmpty());
  EXPECT_EQ(Stored(refused).owner, "other");
}

// When the store refuses giving the lease back too, the next pass gives it back first.
TEST_F(RecoveryPassTest, ALeaseNotGivenBackIsGivenBackAtTheNextPass) {
  const InstanceId id = Add("died", now_ - seconds(1));
  flaky_.FailNextLoads(1);
  ASSERT_THAT(recovery_.Pass(10, [](const InstanceId&, Result<InstanceRecord> loaded) {
    return loaded.status();
  }),
              IsOk());
  ASSERT_EQ(Stored(id).lease_until, now_);  // given back at once
  // Claimed again by a pass whose load fails and whose release the store refuses.
  flaky_.FailNextLoads(1);
  flaky_.FailNextClaims(1);
  ASSERT_THAT(recovery_.Pass(10, [](const InstanceId&, Result<InstanceRecord> loaded) {
    return loaded.status();
  }),
              IsOk());
  EXPECT_EQ(Stored(id).lease_until, now_ + kTtl);  // still claimed
  std::vector<InstanceId> resumed;
  auto report = recovery_.Pass(10, [&](const InstanceId& i, Result<InstanceRecord> loaded) {
    resumed.push_back(i);
    return loaded.status();
  });
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(resumed, ElementsAre(id));  // given back first, then claimed and loaded
}

TEST_F(RecoveryPassTest, AnErrorFromResumeIsReportedAndTheRestAreStillResumed) {
  const std::vector<InstanceId> due = {Add("died", now_ - seconds(3)),
                                       Add("died", now_ - seconds(2)),
                                       Add("died", now_ - seconds(1))};
  std::vector<InstanceId> handed;
  auto report = recovery_.Pass(10, [&](const InstanceId& id, Result<InstanceRecord>) {
    handed.push_back(id);
    if (id == due[0]) return NotFound("flow 'pay' is not registered");
    return Status::Ok();
  });
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(due[1], due[2]));
  ASSERT_EQ(report->failed.size(), 1u);
  EXPECT_EQ(report->failed[0].first, due[0]);
  EXPECT_THAT(report->failed[0].second,
              StatusIs(StatusCode::kNotFound, HasSubstr("flow 'pay' is not registered")));
  EXPECT_THAT(handed, ElementsAreArray(due));
}

TEST_F(RecoveryPassTest, MoreThanOneChunkIsLoadedAChunkAtATimeAndAllAreResumed) {
  for (std::size_t count : {256u, 257u, 600u}) {
    SCOPED_TRACE(count);
    std::vector<InstanceId> due;
    for (std::size_t i = 0; i < count; ++i) due.push_back(Add("died", now_ - seconds(1)));
    std::vector<std::string> log;
    LoadLoggingStore logging(store_, log);
    Recovery recovery(logging, clock_, kOwner, kTtl);
    std::size_t mismatched = 0;
    auto report = recovery.Pass(1000, [&](const InstanceId& id, Result<InstanceRecord> loaded) {
      log.push_back("resume");
      if (!loaded.ok() || loaded->id != id) ++mismatched;
      return Status::Ok();
    });
    ASSERT_THAT(report, IsOk());
    EXPECT_THAT(report->resumed, UnorderedElementsAreArray(due));
    EXPECT_EQ(mismatched, 0u) << "an instance was handed another's record";
    // The first instances are resumed before the later ones are loaded.
    std::vector<std::string> expected;
    for (std::size_t begin = 0; begin < count; begin += 256) {
      const std::size_t size = std::min<std::size_t>(256, count - begin);
      expected.push_back("load " + std::to_string(size));
      expected.insert(expected.end(), size, "resume");
    }
    EXPECT_EQ(log, expected);
  }
}

TEST_F(RecoveryPassTest, ChunksLoadOnSeveralThreadsAndTheReportKeepsTheClaimOrder) {
  // Due one after another: the claim takes them in this order.
  std::vector<InstanceId> due;
  for (int i = 0; i < 1500; ++i) due.push_back(Add("died", now_ - seconds(2000 - i)));
  Recovery recovery(store_, clock_, kOwner, kTtl, /*loaders=*/3);
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::thread::id> threads;
  std::map<InstanceId, int> handed;
  std::size_t mismatched = 0;
  auto report = recovery.Pass(5000, [&](const InstanceId& id, Result<InstanceRecord> loaded) {
    std::unique_lock lock(mu);
    if (!loaded.ok() || loaded->id != id) ++mismatched;
    ++handed[id];
    // The first call on each thread waits (a while at most) for a second thread to call: the
    // chunks are in flight on more than one at once.
    if (threads.insert(std::this_thread::get_id()).second) {
      cv.notify_all();
      cv.wait_for(lock, seconds(10), [&] { return threads.size() >= 2; });
    }
    return Status::Ok();
  });
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAreArray(due));
  EXPECT_THAT(report->failed, IsEmpty());
  EXPECT_EQ(mismatched, 0u) << "an instance was handed another's record";
  EXPECT_EQ(handed.size(), due.size());
  EXPECT_TRUE(std::all_of(handed.begin(), handed.end(), [](auto& h) { return h.second == 1; }));
  EXPECT_GE(threads.size(), 2u);
  EXPECT_LE(threads.size(), 3u);
  for (const InstanceId& id : due) EXPECT_EQ(Stored(id).owner, kOwner);
}

TEST_F(RecoveryPassTest, ARefusedLoadFailsItsChunkAloneWithoutCallingResume) {
  std::vector<InstanceId> due;
  for (int i = 0; i < 300; ++i) due.push_back(Add("died", now_ - seconds(1)));
  std::vector<std::string> log;
  LoadLoggingStore logging(store_, log);
  logging.refuse_loads = 1;
  Recovery recovery(logging, clock_, kOwner, kTtl);
  auto report = recovery.Pass(1000, Keep());
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(log, (std::vector<std::string>{"load 256", "load 44"}));
  ASSERT_EQ(report->failed.size(), 256u);
  std::vector<InstanceId> all = report->resumed;
  for (const auto& [id, status] : report->failed) {
    EXPECT_THAT(status, StatusIs(StatusCode::kUnavailable));
    all.push_back(id);
  }
  EXPECT_EQ(report->resumed.size(), 44u);
  EXPECT_THAT(HandedIds(), ElementsAreArray(report->resumed));
  EXPECT_THAT(all, UnorderedElementsAreArray(due));
}

TEST_F(RecoveryPassTest, TwoProcessesPassingAtOnceNeverResumeTheSameInstance) {
  constexpr int kInstances = 2000;
  std::set<InstanceId> due;
  for (int i = 0; i < kInstances; ++i) due.insert(Add(i % 2 ? "" : "died", now_ - seconds(1)));
  const std::vector<std::string> owners = {"node-a", "node-b"};
  std::map<std::string, std::vector<InstanceId>> resumed;
  for (const std::string& owner : owners) resumed[owner];  // no insertion while threads run
  std::latch go(2);
  std::vector<std::thread> threads;
  for (const std::string& owner : owners) {
    threads.emplace_back([&, owner] {
      Recovery recovery(store_, clock_, owner, kTtl);
      std::vector<InstanceId>& mine = resumed.at(owner);
      go.arrive_and_wait();
      // Small passes, so that the two claim side by side many times.
      while (true) {
        auto report = recovery.Pass(25, [&](const InstanceId& id, Result<InstanceRecord> r) {
          EXPECT_TRUE(r.ok() && r->owner == owner) << id.str();
          mine.push_back(id);
          return Status::Ok();
        });
        if (!report.ok() || report->resumed.empty()) break;
      }
    });
  }
  for (std::thread& t : threads) t.join();

  std::set<InstanceId> seen;
  for (const std::string& owner : owners) {
    for (const InstanceId& id : resumed[owner]) {
      EXPECT_TRUE(seen.insert(id).second) << id.str() << " resumed twice";
      EXPECT_EQ(Stored(id).owner, owner);
    }
  }
  EXPECT_EQ(seen, due);
}

}  // namespace
}  // namespace sagaflow::engine
