// Recovery: an instance whose engine stopped is taken over from what the store holds, and
// leases keep two engines from running one instance.
//
// A crash is reproduced exactly: a task of the first engine copies what was durable at the
// moment it ran (the "started" record of its own step) into a second store, as if the process
// had died right then; a second engine recovers from that store.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/fault_injecting_state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::FaultInjectingStateStore;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using statelang::StateMachine;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr Duration kTimeout = seconds(60);

std::shared_ptr<const StateMachine> MustLoad(const std::string& text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

std::vector<std::string> Trace(const InstanceRecord& r) {
  std::vector<std::string> out;
  for (const StateExecution& e : r.executions) {
    out.push_back(e.state.str() + " " + std::string(ExecutionKindName(e.kind)) + " " +
                  std::string(RunStatusCode(e.status)));
  }
  return out;
}

// A, B and C in a row, each with a compensation; B retries DemoException once after 30 s.
std::string Flow(const std::string& recover_strategy) {
  return R"({
  "Name": "pay", "StartState": "A", "RecoverStrategy": ")" +
         recover_strategy + R"(",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "CompensateState": "UndoA", "Input": ["$.[order]"], "Output": {"a": "$.#root"},
          "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b",
          "CompensateState": "UndoB", "Input": ["$.[a]"], "Output": {"b": "$.#root"},
          "Retry": [{"Exceptions": ["DemoException"], "IntervalSeconds": 30, "MaxAttempts": 1}],
          "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "c",
          "Input": ["$.[b]"], "Next": "Done"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoA"},
    "UndoB": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "undoB"},
    "Done": {"Type": "Succeed"}
  }
})";
}

struct Call {
  std::string task;
  std::string idempotency_key;
  int attempt;
  Json args;
};

class RecoveryTest : public ::testing::Test {
 protected:
  RecoveryTest() {
    EXPECT_THAT(registry_.errors().Define("DemoException", "Error"), IsOk());
    for (const char* name : {"svc.a", "svc.b", "svc.c", "svc.undoA", "svc.undoB"}) {
      std::string task = name;
      registry_.add(task, [this, task](TaskContext& ctx, const Json& args) -> Json {
        {
          std::lock_guard lock(mu_);
          calls_.push_back(Call{task, ctx.idempotency_key(), ctx.attempt(), args});
        }
        if (task == crash_in_) {
          crash_in_.clear();
          Crash(ctx.instance_id());
        }
        if (fail_ > 0 && task == fail_task_) {
          --fail_;
          throw TaskError("DemoException", "try later");
        }
        return task + " done";
      });
    }
  }

  // Copies what `first_` holds of `id` into `second_` with its lease already expired: the
  // durable state at this moment, as if the first engine's process died now.
  void Crash(const InstanceId& id) {
    auto stored = first_.LoadInstance(id);
    ASSERT_THAT(stored, IsOk());
    InstanceRecord r = *stored;
    r.lease_until = clock_.Now() - seconds(1);
    auto def = first_.LoadDefinition(r.flow_name, r.flow_hash);
    ASSERT_THAT(def, IsOk());
    ASSERT_THAT(second_.SaveDefinition(*def), IsOk());
    ASSERT_THAT(second_.CreateInstance(r), IsOk());
    crashed_ = r;
  }

  std::unique_ptr<Executor> Engine(StateStore& store, const std::string& owner) {
    ExecutorOptions options;
    options.workers = 0;
    options.virtual_clock = &clock_;
    options.owner = owner;
    auto executor = std::make_unique<Executor>(std::move(options), registry_, store, clock_);
    EXPECT_THAT(executor->Start(), IsOk());
    return executor;
  }

  // Runs the flow on the first engine until `crash_task` is invoked, then recovers the copy on
  // a second engine and returns what it stored in the end.
  InstanceRecord CrashInAndRecover(const std::string& strategy, const std::string& crash_task) {
    auto machine = MustLoad(Flow(strategy));
    crash_in_ = crash_task;
    auto first = Engine(first_, "first");
    auto run = first->Run(machine, Json{{"order", "o-1"}}, {}, kTimeout);
    EXPECT_THAT(run, IsOk());
    EXPECT_TRUE(crashed_.has_value()) << crash_task << " was never invoked";
    if (!crashed_) return {};
    calls_before_recovery_ = calls_.size();

    auto second = Engine(second_, "second");
    auto report = second->RecoverExpired();
    EXPECT_THAT(report, IsOk());
    EXPECT_THAT(report->resumed, ElementsAre(crashed_->id));
    EXPECT_THAT(report->failed, IsEmpty());
    EXPECT_THAT(second->RunUntilIdle(), IsOk());
    auto stored = second_.LoadInstance(crashed_->id);
    EXPECT_THAT(stored, IsOk());
    return stored.ok() ? *stored : InstanceRecord{};
  }

  // An instance of `machine` as a process that died right after creating it left it: never
  // stepped, its lease expired now.
  InstanceRecord NeverStepped(const StateMachine& machine, const std::string& order) const {
    InstanceRecord r;
    r.id = NewInstanceId();
    r.flow_name = machine.name();
    r.flow_version = machine.version();
    r.flow_hash = machine.content_hash();
    r.input = Json{{"order", order}};
    r.context = r.input;
    r.started_at = r.updated_at = clock_.Now();
    r.owner = "dead";
    r.lease_until = clock_.Now();
    r.cursor.current = machine.start();
    return r;
  }

  std::vector<Call> CallsAfterRecovery() const {
    return {calls_.begin() + static_cast<std::ptrdiff_t>(calls_before_recovery_), calls_.end()};
  }

  const Call* FindCall(const std::string& task, std::size_t from = 0) const {
    for (std::size_t i = from; i < calls_.size(); ++i) {
      if (calls_[i].task == task) return &calls_[i];
    }
    return nullptr;
  }

  TaskRegistry registry_;
  ManualClock clock_{TimePoint(seconds(1'700'000'000))};
  adapters::MemoryStateStore first_;
  adapters::MemoryStateStore second_;
  std::mutex mu_;
  std::vector<Call> calls_;
  std::size_t calls_before_recovery_ = 0;
  std::string crash_in_;
  std::string fail_task_;
  int fail_ = 0;
  std::optional<InstanceRecord> crashed_;
};

TEST_F(RecoveryTest, TheStartedRecordAndTheContextAreDurableBeforeATaskRuns) {
  CrashInAndRecover("Compensate", "svc.b");
  ASSERT_TRUE(crashed_.has_value());
  // What the crash left: A finished with its Output in the stored context, B started.
  EXPECT_THAT(Trace(*crashed_), ElementsAre("A forward SU", "B forward RU"));
  EXPECT_EQ(crashed_->executions[1].attempts, 1);
  EXPECT_EQ(crashed_->executions[1].input, Json::array({"svc.a done"}));
  EXPECT_EQ(crashed_->context, (Json{{"order", "o-1"}, {"a", "svc.a done"}}));
  EXPECT_EQ(crashed_->owner, "first");
}

TEST_F(RecoveryTest, CompensateStrategyUndoesTheInDoubtStepAndEverythingBefore) {
  InstanceRecord r = CrashInAndRecover("Compensate", "svc.b");
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward UN", "UndoB compensation SU",
                                    "UndoA compensation SU"));
  EXPECT_TRUE(r.finished());
  EXPECT_EQ(r.status, RunStatus::kUnknown);
  EXPECT_EQ(r.compensation_status, RunStatus::kSucceeded);
  ASSERT_TRUE(r.executions[1].error.has_value());
  EXPECT_THAT(r.executions[1].error->message, HasSubstr("in doubt"));
  // The compensation of the in-doubt step is keyed on that step's key.
  std::vector<Call> after = CallsAfterRecovery();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].task, "svc.undoB");
  EXPECT_EQ(after[0].idempotency_key, r.executions[1].idempotency_key + "/UndoB");
  EXPECT_EQ(after[1].task, "svc.undoA");
  EXPECT_EQ(r.owner, "second");
  EXPECT_LE(r.lease_until, clock_.Now());  // given back at the end
}

TEST_F(RecoveryTest, ForwardStrategyRunsTheInDoubtStepAgainWithTheSameKey) {
  InstanceRecord r = CrashInAndRecover("Forward", "svc.b");
  EXPECT_THAT(Trace(r), ElementsAre("A forward SU", "B forward SU", "C forward SU"));
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
  std::vector<Call> after = CallsAfterRecovery();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].task, "svc.b");
  EXPECT_EQ(after[0].idempotency_key, FindCall("svc.b")->idempotency_key);
  EXPECT_EQ(after[0].attempt, 2);
  EXPECT_EQ(after[0].args, Json::array({"svc.a done"}));  // the stored input, not re-rendered
  EXPECT_EQ(after[1].task, "svc.c");
  EXPECT_EQ(after[1].args, Json::array({"svc.b done"}));
  EXPECT_EQ(r.context, (Json{{"order", "o-1"}, {"a", "svc.a done"}, {"b", "svc.b done"}}));
}

TEST_F(RecoveryTest, AnInDoubtCompensationRunsAgainWithTheSameKey) {
  // The run succeeds; an operator's compensate then dies while UndoB runs.
  auto machine = MustLoad(Flow("Compensate"));
  auto first = Engine(first_, "first");
  auto run = first->Run(machine, Json{{"order", "o-1"}}, {}, kTimeout);
  ASSERT_THAT(run, IsOk());
  ASSERT_EQ(run->status, RunStatus::kSucceeded);
  crash_in_ = "svc.undoB";
  ASSERT_THAT(first->Operate(Operation::kCompensate, run->id, Json(), kTimeout), IsOk());
  ASSERT_TRUE(crashed_.has_value());
  const std::string key = FindCall("svc.undoB")->idempotency_key;
  calls_before_recovery_ = calls_.size();

  auto second = Engine(second_, "second");
  ASSERT_THAT(second->Resume(crashed_->id), IsOk());
  ASSERT_THAT(second->RunUntilIdle(), IsOk());
  auto r = second_.LoadInstance(crashed_->id);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->compensation_status, RunStatus::kSucceeded);
  std::vector<Call> after = CallsAfterRecovery();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].task, "svc.undoB");
  EXPECT_EQ(after[0].idempotency_key, key);
  EXPECT_EQ(after[1].task, "svc.undoA");
}

TEST_F(RecoveryTest, ARetryWaitingInBackoffResumesAtTheAttemptItReached) {
  // B fails once and waits 30 s in backoff; the first engine dies during the wait.
  auto machine = MustLoad(Flow("Compensate"));
  fail_task_ = "svc.b";
  fail_ = 1;
  FaultInjectingStateStore watched(first_);
  watched.AfterWrite([this](const WriteBatch& b) {
    for (const ExecutionProgress& p : b.progress) {
      if (!crashed_ && p.id == 1 && p.retry_at) Crash(b.instance);
    }
  });
  auto first = Engine(watched, "first");
  const TimePoint failed_at = clock_.Now();
  ASSERT_THAT(first->Run(machine, Json{{"order", "o-1"}}, {}, kTimeout), IsOk());
  ASSERT_TRUE(crashed_.has_value());
  ASSERT_TRUE(crashed_->executions[1].retry_at.has_value());
  EXPECT_EQ(*crashed_->executions[1].retry_at, failed_at + seconds(30));
  EXPECT_EQ(crashed_->executions[1].retry_counts, std::vector<int>{1});
  EXPECT_EQ(crashed_->executions[1].attempts, 1);

  // The second engine starts 10 s after the failure: 20 s of the backoff are left.
  clock_.AdvanceTo(failed_at + seconds(10));
  calls_before_recovery_ = calls_.size();
  auto second = Engine(second_, "second");
  ASSERT_THAT(second->Resume(crashed_->id), IsOk());
  ASSERT_THAT(second->RunUntilIdle(), IsOk());
  auto r = second_.LoadInstance(crashed_->id);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, RunStatus::kSucceeded);
  EXPECT_EQ(r->executions[1].ended_at, failed_at + seconds(30));  // when it was due, no later
  std::vector<Call> after = CallsAfterRecovery();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].task, "svc.b");
  EXPECT_EQ(after[0].attempt, 2);
  EXPECT_EQ(after[1].task, "svc.c");
}

TEST_F(RecoveryTest, AnInstanceCreatedButNeverSteppedRunsFromTheStart) {
  auto machine = MustLoad(Flow("Compensate"));
  auto second = Engine(second_, "second");
  ASSERT_THAT(second->AddFlow(machine), IsOk());
  InstanceRecord r = NeverStepped(*machine, "o-9");
  ASSERT_THAT(second_.CreateInstance(r), IsOk());

  auto report = second->RecoverExpired();
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(r.id));
  ASSERT_THAT(second->RunUntilIdle(), IsOk());
  auto stored = second_.LoadInstance(r.id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  EXPECT_THAT(Trace(*stored), ElementsAre("A forward SU", "B forward SU", "C forward SU"));
}

TEST_F(RecoveryTest, ALargeClaimIsLoadedInChunksAndALoadThatFailsIsTakenAgainLater) {
  // More instances than one chunk of loading; the first load refused as by a database that
  // went away. The others run; the refused one is reported and, once the lease its claim took
  // has expired, claimed and run by the next pass.
  auto machine = MustLoad(Flow("Compensate"));
  FaultInjectingStateStore flaky(second_);
  auto second = Engine(flaky, "second");
  ASSERT_THAT(second->AddFlow(machine), IsOk());
  constexpr int kInstances = 600;
  for (int i = 0; i < kInstances; ++i) {
    ASSERT_THAT(second_.CreateInstance(NeverStepped(*machine, "o-" + std::to_string(i))),
                IsOk());
  }
  flaky.FailNextLoads(1);
  auto report = second->RecoverExpired(kInstances);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->resumed.size(), kInstances - 1u);
  ASSERT_EQ(report->failed.size(), 1u);
  const InstanceId refused = report->failed[0].first;
  EXPECT_THAT(report->failed[0].second, StatusIs(StatusCode::kUnavailable));
  ASSERT_THAT(second->RunUntilIdle(), IsOk());
  EXPECT_FALSE(second_.LoadInstance(refused)->finished());

  clock_.Advance(ExecutorOptions{}.lease_ttl);
  report = second->RecoverExpired(kInstances);
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(refused));
  ASSERT_THAT(second->RunUntilIdle(), IsOk());
  InstanceFilter all;
  all.limit = kInstances;
  auto listed = second_.ListInstances(all);
  ASSERT_THAT(listed, IsOk());
  ASSERT_EQ(listed->size(), static_cast<std::size_t>(kInstances));
  for (const auto& summary : *listed) EXPECT_EQ(summary.status, RunStatus::kSucceeded);
}

TEST_F(RecoveryTest, RecoveryLeavesLiveLeasesAloneAndTakesThemOnceExpired) {
  CrashInAndRecover("Compensate", "svc.b");  // fills second_ with a finished instance
  auto machine = MustLoad(Flow("Compensate"));
  InstanceRecord r = *crashed_;
  r.id = NewInstanceId();
  r.owner = "alive";
  r.lease_until = clock_.Now() + seconds(5);
  ASSERT_THAT(second_.CreateInstance(r), IsOk());

  auto other = Engine(second_, "third");
  auto report = other->RecoverExpired();
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, IsEmpty());
  EXPECT_THAT(other->Resume(r.id), StatusIs(StatusCode::kFailedPrecondition, HasSubstr("alive")));
  auto pending = second_.Unfinished("third", clock_.Now());
  ASSERT_THAT(pending, IsOk());
  EXPECT_EQ(pending->unfinished, 1u);
  EXPECT_EQ(pending->leased_elsewhere, 1u);
  EXPECT_EQ(pending->next_expiry, r.lease_until);

  clock_.AdvanceTo(r.lease_until);
  report = other->RecoverExpired();
  ASSERT_THAT(report, IsOk());
  EXPECT_THAT(report->resumed, ElementsAre(r.id));
  ASSERT_THAT(other->RunUntilIdle(), IsOk());
  auto stored = second_.LoadInstance(r.id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_TRUE(stored->finished());
  EXPECT_EQ(stored->owner, "third");
}

TEST_F(RecoveryTest, OperationsAreRefusedWhileAnotherEngineHoldsALiveLease) {
  auto machine = MustLoad(Flow("Compensate"));
  fail_task_ = "svc.c";
  fail_ = 100;  // C fails uncaught: the run ends FA
  auto first = Engine(first_, "first");
  auto run = first->Run(machine, Json{{"order", "o-1"}}, {}, kTimeout);
  ASSERT_THAT(run, IsOk());
  ASSERT_TRUE(run->finished());
  ASSERT_NE(run->status, RunStatus::kSucceeded);
  // Another engine is operating on it: its lease is live.
  ASSERT_THAT(first_.ClaimInstance(run->id, "operator-2", clock_.Now(), clock_.Now() + seconds(5)),
              IsOk());
  EXPECT_THAT(first->Operate(Operation::kCompensate, run->id, Json(), kTimeout),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("operator-2")));
  clock_.AdvanceTo(clock_.Now() + seconds(5));
  auto compensated = first->Operate(Operation::kCompensate, run->id, Json(), kTimeout);
  ASSERT_THAT(compensated, IsOk());
  EXPECT_EQ(compensated->compensation_status, RunStatus::kSucceeded);
  // Idempotent, and a refusal gives the lease back at once.
  EXPECT_THAT(first->Operate(Operation::kCompensate, run->id, Json(), kTimeout), IsOk());
  EXPECT_THAT(first->Operate(Operation::kSkip, run->id, Json(), kTimeout),
              StatusIs(StatusCode::kFailedPrecondition));
  auto stored = first_.LoadInstance(run->id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_LE(stored->lease_until, clock_.Now());
}

TEST_F(RecoveryTest, AnEngineThatLostItsLeaseStopsWithoutActingFurther) {
  auto machine = MustLoad(Flow("Compensate"));
  // While A runs, another engine takes the instance over.
  registry_.add("svc.a", [this](TaskContext& ctx, const Json&) -> Json {
    EXPECT_THAT(first_.ClaimInstance(ctx.instance_id(), "usurper", clock_.Now() + seconds(10),
                                     clock_.Now() + seconds(20)),
                IsOk());
    return "a";
  });
  auto first = Engine(first_, "first");
  auto run = first->Run(machine, Json{{"order", "o-1"}}, {}, kTimeout);
  EXPECT_THAT(run, StatusIs(StatusCode::kFailedPrecondition, HasSubstr("usurper")));
  EXPECT_EQ(FindCall("svc.b"), nullptr);  // nothing after the refused write ran
  EXPECT_EQ(first->live_instances(), 0u);
}

TEST_F(RecoveryTest, ThreadedEnginesRenewTheirLeases) {
  auto machine = MustLoad(Flow("Compensate"));
  fail_task_ = "svc.b";
  fail_ = 1;  // B waits 30 s in backoff: the instance stays unfinished
  SystemClock real;
  ExecutorOptions options;
  options.workers = 1;
  options.owner = "renewing";
  options.lease_ttl = milliseconds(150);
  Executor engine(options, registry_, first_, real);
  ASSERT_THAT(engine.Start(), IsOk());
  auto id = engine.StartInstance(machine, Json{{"order", "o-1"}});
  ASSERT_THAT(id, IsOk());
  std::this_thread::sleep_for(milliseconds(600));  // four lease lengths
  auto stored = first_.LoadInstance(*id);
  ASSERT_THAT(stored, IsOk());
  EXPECT_FALSE(stored->finished());
  EXPECT_GT(stored->lease_until, real.Now());
  EXPECT_THAT(first_.ClaimDue("thief", real.Now(), real.Now() + seconds(1), 10),
              ::testing::Property(&Result<std::vector<InstanceId>>::value, IsEmpty()));
  engine.Stop();
}

TEST_F(RecoveryTest, AsynchronousStoresShareCommitsAndStillStoreBeforeActing) {
  auto machine = MustLoad(Flow("Compensate"));
  FaultInjectingStateStore batching(first_);
  batching.SetAsynchronous();
  SystemClock real;
  ExecutorOptions options;
  options.workers = 2;
  options.owner = "batching";
  Executor engine(options, registry_, batching, real);
  ASSERT_THAT(engine.Start(), IsOk());
  std::vector<InstanceId> ids;
  for (int i = 0; i < 200; ++i) {
    auto id = engine.StartInstance(machine, Json{{"order", "o-" + std::to_string(i)}});
    ASSERT_THAT(id, IsOk());
    ids.push_back(*id);
  }
  batching.FailNextWrites(5);  // refused writes are retried
  for (const InstanceId& id : ids) {
    auto r = engine.Await(id, kTimeout);
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->status, RunStatus::kSucceeded);
    auto stored = first_.LoadInstance(id);
    ASSERT_THAT(stored, IsOk());
    EXPECT_EQ(stored->status, RunStatus::kSucceeded);
  }
  engine.Stop();
  EXPECT_LT(batching.batches(), batching.batched_calls());
}

}  // namespace
}  // namespace sagaflow::engine
