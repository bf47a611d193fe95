// The outbox of a durable dispatcher: each dispatch is stored with the step that decides it,
// handed over once stored, its row removed once taken, and a row left behind (the process died
// before the hand-over, the dispatcher refused it) handed over by a later pass of any process.
#include "outbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/task_dispatcher.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/fault_injecting_state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::IsOkAndHolds;
using std::chrono::seconds;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TimePoint At(int s) { return TimePoint(seconds(1'700'000'000 + s)); }

// A durable dispatcher standing in for a broker: it keeps what it takes until the test replies,
// can refuse deliveries, and records whether each delivery's row was stored when it was handed
// over (a reply must never come for a step that is not stored).
class FakeBroker final : public TaskDispatcher {
 public:
  explicit FakeBroker(StateStore& store) : store_(store) {}

  Status Start(ReplyHandler on_reply) override {
    on_reply_ = std::move(on_reply);
    return Status::Ok();
  }
  void Stop() noexcept override {}
  Status Dispatch(const TaskDelivery& d, TimePoint) override {
    auto rows = store_.ListDispatches(d.instance);
    bool stored = false;
    for (const DispatchRecord& row : rows.ok() ? *rows : std::vector<DispatchRecord>{}) {
      stored = stored || (row.delivery.execution == d.execution &&
                          row.delivery.attempt == d.attempt);
    }
    std::lock_guard lock(mu_);
    ++offered_;
    if (!stored) ++unstored_;
    if (refuse_ > 0) {
      --refuse_;
      return Unavailable("broker away");
    }
    taken_.push_back(d);
    return Status::Ok();
  }
  bool durable() const override { return true; }

  void Refuse(int n) {
    std::lock_guard lock(mu_);
    refuse_ = n;
  }
  // Deliveries taken and not replied to.
  std::vector<TaskDelivery> Taken() {
    std::lock_guard lock(mu_);
    return {taken_.begin(), taken_.end()};
  }
  // Replies to every delivery taken with the task's name as its result.
  int ReplyAll() {
    std::deque<TaskDelivery> taken;
    {
      std::lock_guard lock(mu_);
      taken.swap(taken_);
    }
    for (const TaskDelivery& d : taken) {
      on_reply_(TaskReply{d.instance, d.execution, d.attempt,
                          TaskOutcome{true, Json(d.task.str()), {}}});
    }
    return static_cast<int>(taken.size());
  }
  int offered() {
    std::lock_guard lock(mu_);
    return offered_;
  }
  // Deliveries handed over whose row was not stored at that moment.
  int unstored() {
    std::lock_guard lock(mu_);
    return unstored_;
  }

 private:
  StateStore& store_;
  ReplyHandler on_reply_;
  std::mutex mu_;
  std::deque<TaskDelivery> taken_;
  int refuse_ = 0;
  int offered_ = 0;
  int unstored_ = 0;
};

DispatchRecord Row(const std::string& id, int execution, TimePoint due) {
  DispatchRecord d;
  d.delivery.instance = InstanceId(id);
  d.delivery.execution = execution;
  d.delivery.attempt = 1;
  d.delivery.state = StateName("Reserve");
  d.delivery.task = TaskName("stock.reserve");
  d.delivery.idempotency_key = id + ":" + std::to_string(execution);
  d.delivery.input = Json::array({execution});
  d.due_at = due;
  return d;
}

InstanceRecord Record(const std::string& id) {
  InstanceRecord r;
  r.id = InstanceId(id);
  r.flow_name = "f";
  r.flow_version = "1";
  r.flow_hash = "00000000deadbeef";
  r.input = Json::object();
  r.context = r.input;
  return r;
}

class OutboxTest : public ::testing::Test {
 protected:
  // Instance `id` created with rows for executions 0..n-1, due at At(due).
  void CreateWithRows(const std::string& id, int n, int due) {
    std::vector<DispatchRecord> rows;
    for (int e = 0; e < n; ++e) rows.push_back(Row(id, e, At(due)));
    ASSERT_THAT(store_.CreateInstance(Record(id), rows), IsOk());
  }
  std::size_t RowsOf(const std::string& id) {
    auto rows = store_.ListDispatches(InstanceId(id));
    EXPECT_THAT(rows, IsOk());
    return rows.ok() ? rows->size() : 0;
  }

  adapters::MemoryStateStore store_;
  testing::FaultInjectingStateStore faulty_{store_};
  FakeBroker broker_{store_};
  ManualClock clock_{At(0)};
};

TEST_F(OutboxTest, ARowIsDueRetryAfterItsStep) {
  Outbox outbox(store_, broker_, clock_, seconds(30));
  TaskDelivery d = Row("i1", 0, At(0)).delivery;
  EXPECT_EQ(outbox.RowFor(d, At(5)).due_at, At(35));
  EXPECT_EQ(outbox.RowFor(d, At(5)).delivery.idempotency_key, "i1:0");
}

TEST_F(OutboxTest, RelayHandsOverOnlyDueRowsAndRemovesThem) {
  Outbox outbox(store_, broker_, clock_, seconds(30));
  CreateWithRows("early", 2, 10);
  CreateWithRows("late", 1, 100);
  clock_.AdvanceTo(At(50));
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(2u));
  EXPECT_EQ(broker_.Taken().size(), 2u);
  EXPECT_EQ(RowsOf("early"), 0u);  // taken: removed
  EXPECT_EQ(RowsOf("late"), 1u);   // not due
  // Nothing more is due: the same pass again hands nothing over twice.
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(0u));
  EXPECT_EQ(broker_.offered(), 2);
}

TEST_F(OutboxTest, ARowTheDispatcherRefusesComesDueAgainAfterRetry) {
  Outbox outbox(store_, broker_, clock_, seconds(30));
  CreateWithRows("i1", 1, 10);
  clock_.AdvanceTo(At(10));
  broker_.Refuse(1);
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(0u));
  EXPECT_EQ(RowsOf("i1"), 1u);
  // Deferred by one retry: not again before At(40).
  clock_.AdvanceTo(At(39));
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(0u));
  EXPECT_EQ(broker_.offered(), 1);
  clock_.AdvanceTo(At(40));
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(1u));
  EXPECT_EQ(RowsOf("i1"), 0u);
}

TEST_F(OutboxTest, APassEndsAtTheFirstRefusalAndTheRestComeDueLater) {
  Outbox outbox(store_, broker_, clock_, seconds(30));
  CreateWithRows("i1", 5, 10);
  clock_.AdvanceTo(At(10));
  broker_.Refuse(1);
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(0u));
  EXPECT_EQ(broker_.offered(), 1);  // not waited on five times
  EXPECT_EQ(RowsOf("i1"), 5u);
  clock_.AdvanceTo(At(40));
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(5u));
  EXPECT_EQ(RowsOf("i1"), 0u);
}

TEST_F(OutboxTest, HandedRowsAreRemovedInBatchesAndKeptWhenTheStoreRefuses) {
  Outbox outbox(faulty_, broker_, clock_, seconds(30));
  CreateWithRows("i1", 3, 10);
  outbox.Handed(DispatchKey{InstanceId("i1"), 0, 1});
  EXPECT_EQ(RowsOf("i1"), 3u);  // waits for a batch
  faulty_.FailNextDispatchRemovals(1);
  EXPECT_FALSE(outbox.Flush().ok());
  EXPECT_EQ(RowsOf("i1"), 3u);
  ASSERT_THAT(outbox.Flush(), IsOk());  // kept, removed now
  EXPECT_EQ(RowsOf("i1"), 2u);
  // A full batch is removed at once.
  std::vector<DispatchRecord> rows;
  for (int e = 0; e < static_cast<int>(Outbox::kBatch); ++e) rows.push_back(Row("many", e, At(10)));
  ASSERT_THAT(store_.CreateInstance(Record("many"), rows), IsOk());
  for (int e = 0; e < static_cast<int>(Outbox::kBatch); ++e) {
    outbox.Handed(DispatchKey{InstanceId("many"), e, 1});
  }
  EXPECT_EQ(RowsOf("many"), 0u);
}

TEST_F(OutboxTest, AClaimRefusedLeavesTheRowsForTheNextPass) {
  Outbox outbox(faulty_, broker_, clock_, seconds(30));
  CreateWithRows("i1", 1, 10);
  clock_.AdvanceTo(At(20));
  faulty_.FailNextDispatchClaims(1);
  EXPECT_FALSE(outbox.Relay(100).ok());
  EXPECT_THAT(outbox.Relay(100), IsOkAndHolds(1u));
}

// --- Through the executor ----------------------------------------------------------------------

std::shared_ptr<const statelang::StateMachine> MustLoad(const std::string& text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

// Async from its first state: the create itself stores the first dispatch.
constexpr const char* kAsyncFlow = R"({"Name": "async", "StartState": "Reserve", "States": {
  "Reserve": {"Type": "ServiceTask", "ServiceName": "stock", "ServiceMethod": "reserve",
              "IsAsync": true, "Output": {"reserved": "$.#root"}, "Next": "Charge"},
  "Charge": {"Type": "ServiceTask", "ServiceName": "pay", "ServiceMethod": "charge",
             "IsAsync": true, "Output": {"charged": "$.#root"}, "Next": "Done"},
  "Done": {"Type": "Succeed"}}})";

class OutboxExecutorTest : public ::testing::Test {
 protected:
  OutboxExecutorTest() {
    // Registered for AddFlow's check; a durable dispatcher's workers run them elsewhere.
    registry_.add("stock.reserve", [](TaskContext&, const Json&) -> Json { return nullptr; });
    registry_.add("pay.charge", [](TaskContext&, const Json&) -> Json { return nullptr; });
  }
  // Driven by RunUntilIdle on virtual time; or, `threaded`, on a thread of its own with the
  // test's clock standing still (its retries never come, as in a process about to die).
  std::unique_ptr<Executor> NewExecutor(FakeBroker& broker, const std::string& owner,
                                        bool threaded = false) {
    auto e = std::make_unique<Executor>(
        ExecutorOptions{.workers = threaded ? 1 : 0,
                        .virtual_clock = threaded ? nullptr : &clock_,
                        .owner = owner,
                        .dispatcher = &broker,
                        .dispatch_retry = seconds(30)},
        registry_, store_, clock_);
    EXPECT_THAT(e->Start(), IsOk());
    EXPECT_THAT(e->AddFlow(flow_), IsOk());
    return e;
  }

  TaskRegistry registry_;
  adapters::MemoryStateStore store_;
  ManualClock clock_{At(0)};
  std::shared_ptr<const statelang::StateMachine> flow_ = MustLoad(kAsyncFlow);
};

TEST_F(OutboxExecutorTest, EachDispatchIsStoredBeforeItIsHandedOverAndRemovedOnceTaken) {
  FakeBroker broker(store_);
  auto executor = NewExecutor(broker, "node-a");
  auto id = executor->StartInstance(flow_, Json{{"orderId", "1001"}});
  ASSERT_THAT(id, IsOk());
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  // The first state's dispatch was created with the instance, and handed over after.
  ASSERT_EQ(broker.Taken().size(), 1u);
  EXPECT_EQ(broker.Taken()[0].task, TaskName("stock.reserve"));
  auto parked = store_.LoadInstance(*id);
  ASSERT_THAT(parked, IsOk());
  EXPECT_EQ(parked->owner, "");  // parked until the reply: no lease held
  EXPECT_EQ(broker.ReplyAll(), 1);
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  ASSERT_EQ(broker.Taken().size(), 1u);
  EXPECT_EQ(broker.Taken()[0].task, TaskName("pay.charge"));
  EXPECT_EQ(broker.ReplyAll(), 1);
  ASSERT_THAT(executor->RunUntilIdle(), IsOk());
  auto done = store_.LoadInstance(*id);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->status, RunStatus::kSucceeded);
  EXPECT_EQ(done->context.get().at("charged"), "pay.charge");
  EXPECT_EQ(broker.unstored(), 0);
  EXPECT_EQ(broker.offered(), 2);
  // The rows of deliveries taken go with the next pass (or the stop).
  EXPECT_THAT(executor->RecoverExpired(), IsOk());
  EXPECT_THAT(store_.ListDispatches(*id), IsOkAndHolds(IsEmpty()));
}

TEST_F(OutboxExecutorTest, ADispatchLeftBehindByAProcessThatDiedIsHandedOverByAnother) {
  InstanceId id;
  {
    // The broker is away when node-a hands the step over, and node-a dies (stops) before its
    // retry: the dispatch is only in the store.
    FakeBroker away(store_);
    away.Refuse(1000);
    auto a = NewExecutor(away, "node-a", /*threaded=*/true);
    auto started = a->StartInstance(flow_, Json{{"orderId", "1002"}});
    ASSERT_THAT(started, IsOk());
    id = *started;
    const auto give_up = std::chrono::steady_clock::now() + seconds(10);
    while (away.offered() == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(away.offered(), 1);
    EXPECT_THAT(away.Taken(), IsEmpty());
  }
  EXPECT_THAT(store_.ListDispatches(id), IsOkAndHolds(SizeIs(1)));

  FakeBroker broker(store_);
  auto b = NewExecutor(broker, "node-b");
  // Not before dispatch_retry has passed since the step was stored.
  auto early = b->RecoverExpired();
  ASSERT_THAT(early, IsOk());
  EXPECT_EQ(early->redispatched, 0u);
  clock_.AdvanceTo(At(30));
  auto report = b->RecoverExpired();
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->redispatched, 1u);
  ASSERT_EQ(broker.Taken().size(), 1u);
  EXPECT_EQ(broker.Taken()[0].instance, id);
  EXPECT_EQ(broker.Taken()[0].task, TaskName("stock.reserve"));
  EXPECT_EQ(broker.Taken()[0].input.get(), store_.LoadInstance(id)->executions[0].input.get());
  EXPECT_THAT(store_.ListDispatches(id), IsOkAndHolds(IsEmpty()));
  // The reply resumes the parked instance in node-b, which goes on to the next step.
  EXPECT_EQ(broker.ReplyAll(), 1);
  ASSERT_THAT(b->RunUntilIdle(), IsOk());
  EXPECT_EQ(broker.ReplyAll(), 1);
  ASSERT_THAT(b->RunUntilIdle(), IsOk());
  auto done = store_.LoadInstance(id);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(done->status, RunStatus::kSucceeded);
  EXPECT_EQ(done->context.get().at("reserved"), "stock.reserve");
  EXPECT_EQ(broker.unstored(), 0);
}

}  // namespace
}  // namespace sagaflow::engine
