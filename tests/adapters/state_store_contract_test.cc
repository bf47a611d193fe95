// The StateStore contract (engine/include/sagaflow/engine/state_store.h), run against every
// store: the in-memory reference, SQLite and PostgreSQL (SAGAFLOW_TEST_POSTGRES_URL).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/testing/matchers.h"
#include "test_databases.h"

namespace sagaflow::adapters {
namespace {

using engine::ClaimedDispatches;
using engine::DefinitionRecord;
using engine::DispatchKey;
using engine::DispatchRecord;
using engine::ExecutionKind;
using engine::InstanceFilter;
using engine::InstanceRecord;
using engine::ExecutionProgress;
using engine::InstanceSummary;
using engine::WriteBatch;
using engine::Phase;
using engine::RunStatus;
using engine::StateExecution;
using engine::StateStore;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::IsOkAndHolds;
using ::sagaflow::testing::StatusIs;
using ::sagaflow::testing::TestDatabase;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

TimePoint At(int s) { return TimePoint(seconds(1'700'000'000 + s)); }

InstanceRecord MakeRecord(const std::string& id, const std::string& flow = "order_fulfill",
                          TimePoint started = At(0), const std::string& business_key = "",
                          Json input = Json{{"orderId", "1001"}}) {
  InstanceRecord r;
  r.id = InstanceId(id);
  r.flow_name = flow;
  r.flow_version = "1.0.0";
  r.flow_hash = "00000000deadbeef";
  r.business_key = business_key;
  r.input = input;
  r.context = std::move(input);
  r.started_at = r.updated_at = started;
  r.owner = "node-a";
  r.lease_until = At(1000);
  return r;
}

StateExecution MakeExecution(int id, const std::string& state, Json input) {
  StateExecution e;
  e.id = id;
  e.state = StateName(state);
  e.state_index = id + 1;
  e.idempotency_key = "key:" + state;
  e.for_update = true;
  e.attempts = 1;
  e.input = std::move(input);
  e.started_at = At(id);
  return e;
}

// An outbox row of instance `id`: the attempt `attempt` of execution `execution`, due at
// At(due).
DispatchRecord MakeDispatch(const std::string& id, int execution, int attempt, int due,
                            Json input = Json::array({"order-1001"})) {
  DispatchRecord d;
  d.delivery.instance = InstanceId(id);
  d.delivery.execution = execution;
  d.delivery.attempt = attempt;
  d.delivery.state = StateName("ReserveStock");
  d.delivery.task = TaskName("inventory.reserve");
  d.delivery.idempotency_key = id + ":" + std::to_string(execution);
  d.delivery.input = std::move(input);
  d.due_at = At(due);
  return d;
}

std::vector<std::string> Keys(const std::vector<DispatchRecord>& rows) {
  std::vector<std::string> out;
  for (const DispatchRecord& d : rows) {
    out.push_back(d.delivery.instance.str() + "/" + std::to_string(d.delivery.execution) + "/" +
                  std::to_string(d.delivery.attempt));
  }
  return out;
}

std::vector<std::string> Ids(const std::vector<InstanceSummary>& list) {
  std::vector<std::string> out;
  for (const auto& s : list) out.push_back(s.id.str());
  return out;
}

std::vector<std::string> Strs(const std::vector<InstanceId>& ids) {
  std::vector<std::string> out;
  for (const auto& id : ids) out.push_back(id.str());
  return out;
}

// A store under test and, for the durable ones, a second store over the same database (another
// engine process); the in-memory store is its own peer.
class StateStoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string& backend = GetParam();
    if (backend == "memory") {
      store_ = std::make_unique<MemoryStateStore>();
      return;
    }
    if (backend == "postgresql") SAGAFLOW_REQUIRE_TEST_POSTGRES();
    db_ = std::make_unique<TestDatabase>(backend == "sqlite" ? TestDatabase::Kind::kSqlite
                                                             : TestDatabase::Kind::kPostgres);
    auto opened = db_->Open();
    ASSERT_THAT(opened, IsOk());
    store_ = std::move(*opened);
  }

  void TearDown() override {
    peer_.reset();
    store_.reset();
    db_.reset();
  }

  StateStore& store() { return *store_; }

  StateStore& peer() {
    if (!db_) return *store_;
    if (!peer_) {
      auto opened = db_->Open();
      EXPECT_THAT(opened, IsOk());
      if (opened.ok()) peer_ = std::move(*opened);
    }
    return peer_ ? *peer_ : *store_;
  }

  bool durable() const { return db_ != nullptr; }

  // Creates `r` and checks it was created.
  void Create(const InstanceRecord& r) {
    Result<InstanceId> id = store().CreateInstance(r);
    ASSERT_THAT(id, IsOk());
    EXPECT_EQ(*id, r.id);
  }

  // Marks `r` finished and writes it.
  void Finish(InstanceRecord& r, RunStatus status = RunStatus::kSucceeded) {
    r.status = status;
    r.cursor.phase = Phase::kFinished;
    r.ended_at = r.updated_at;
    ASSERT_THAT(store().Write(WriteBatch::Of(r, {}, false)), IsOk());
  }

  // Creates instance `id` leased by `owner` until At(lease), finished or not.
  void CreateLeased(const std::string& id, const std::string& owner, int lease, bool finished) {
    InstanceRecord r = MakeRecord(id);
    r.owner = owner;
    r.lease_until = At(lease);
    Create(r);
    if (finished) Finish(r);
  }

  InstanceRecord Load(const std::string& id) {
    Result<InstanceRecord> r = store().LoadInstance(InstanceId(id));
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : InstanceRecord{};
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<StateStore> peer_;
};

// Counts down to zero; Wait() returns once it got there.
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void CountDown() {
    std::lock_guard lock(mu_);
    if (--n_ == 0) done_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mu_);
    done_.wait(lock, [this] { return n_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  int n_;
};

// --- Definitions -----------------------------------------------------------------------------

TEST_P(StateStoreContractTest, DefinitionsSaveAndLoad) {
  DefinitionRecord v1{"order_fulfill", "1.0.0", "hash-1", "{\"Name\": \"order_fulfill\"}", At(0)};
  DefinitionRecord v2{"order_fulfill", "1.1.0", "hash-2", "{\"Name\": \"order_fulfill\", \"v\": 2}",
                      At(1)};
  ASSERT_THAT(store().SaveDefinition(v1), IsOk());
  ASSERT_THAT(store().SaveDefinition(v2), IsOk());

  Result<DefinitionRecord> loaded = store().LoadDefinition("order_fulfill", "hash-1");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->name, "order_fulfill");
  EXPECT_EQ(loaded->hash, "hash-1");
  EXPECT_EQ(loaded->version, "1.0.0");
  EXPECT_EQ(loaded->content, v1.content);
  EXPECT_EQ(loaded->created_at, At(0));
  loaded = store().LoadDefinition("order_fulfill", "hash-2");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->version, "1.1.0");
  EXPECT_EQ(loaded->content, v2.content);
}

TEST_P(StateStoreContractTest, LoadingAMissingDefinitionIsNotFound) {
  ASSERT_THAT(store().SaveDefinition({"order_fulfill", "1.0.0", "hash-1", "{}", At(0)}), IsOk());
  EXPECT_THAT(store().LoadDefinition("order_fulfill", "hash-3"), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store().LoadDefinition("order_cancel", "hash-1"), StatusIs(StatusCode::kNotFound));
}

TEST_P(StateStoreContractTest, SavingTheSameDefinitionAgainChangesNothing) {
  DefinitionRecord def{"order_fulfill", "1.0.0", "hash-1", "original", At(0)};
  ASSERT_THAT(store().SaveDefinition(def), IsOk());
  ASSERT_THAT(store().SaveDefinition(def), IsOk());
  DefinitionRecord later = def;
  later.created_at = At(100);
  later.content = "something else";
  later.version = "9.9.9";
  ASSERT_THAT(peer().SaveDefinition(later), IsOk());
  Result<DefinitionRecord> loaded = store().LoadDefinition("order_fulfill", "hash-1");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->content, "original");
  EXPECT_EQ(loaded->version, "1.0.0");
  EXPECT_EQ(loaded->created_at, At(0));
}

// --- Create and load -------------------------------------------------------------------------

// An instance with every field set to something other than its default.
InstanceRecord FullRecord() {
  InstanceRecord r = MakeRecord("full-1", "order_fulfill", At(5), "bk-full",
                                Json{{"orderId", "1001"}, {"amount", 12.5}, {"tags", {"a", "b"}}});
  r.flow_version = "2.3.4";
  r.flow_hash = "cafebabe00112233";
  r.status = RunStatus::kUnknown;
  r.compensation_status = RunStatus::kFailed;
  r.context = Json{{"orderId", "1001"}, {"picked", true}, {"unicode", "订单履约 ✓"}};
  r.error = TaskFailure{"CarrierUnavailable", "carrier API answered 503"};
  r.error_code = "500";
  r.error_message = "订单履约异常！！";
  r.updated_at = At(7);
  r.ended_at = At(9);
  r.owner = "node-b";
  r.lease_until = At(600);
  r.cursor.phase = Phase::kCompensating;
  r.cursor.current = 4;
  r.cursor.active_execution = 1;
  r.cursor.compensation_stack = {0, 1};
  r.cursor.compensations_run = {2};
  r.cursor.compensation_trigger = 6;
  r.cursor.compensated_in_run = true;
  r.cursor.reached_fail = true;
  r.cursor.caught = TaskFailure{"NetworkError", "timeout"};
  r.cursor.epoch = 3;
  r.cursor.run_first_execution = 1;
  r.cursor.idle_transitions = 7;
  r.cursor.sequences_issued = 5'000'000'000LL;

  StateExecution a = MakeExecution(0, "FulfillService", Json::array({{{"orderId", "1001"}}}));
  a.status = RunStatus::kSucceeded;
  a.compensation_status = RunStatus::kSucceeded;
  a.output = Json(true);
  a.ended_at = At(6);
  a.epoch = 2;
  a.retry_counts = {1, 0, 3};
  StateExecution b = MakeExecution(1, "TmsService", Json::array({"x", 1, nullptr}));
  b.status = RunStatus::kUnknown;
  b.attempts = 4;
  b.retry_at = At(8);
  b.retried_for = 0;
  b.superseded = true;
  b.for_update = false;
  b.error = TaskFailure{"ConnectError", "refused"};
  StateExecution c = MakeExecution(2, "FulfillCompensate", Json::array());
  c.kind = ExecutionKind::kCompensation;
  c.compensates = 0;
  c.status = RunStatus::kSkipped;
  r.executions = {a, b, c};
  return r;
}

void ExpectSameExecution(const StateExecution& got, const StateExecution& want) {
  SCOPED_TRACE("execution " + std::to_string(want.id));
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.state, want.state);
  EXPECT_EQ(got.state_index, want.state_index);
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.compensates, want.compensates);
  EXPECT_EQ(got.retried_for, want.retried_for);
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.attempts, want.attempts);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.compensation_status, want.compensation_status);
  EXPECT_EQ(got.superseded, want.superseded);
  EXPECT_EQ(got.for_update, want.for_update);
  EXPECT_EQ(got.retry_counts, want.retry_counts);
  EXPECT_EQ(got.retry_at, want.retry_at);
  EXPECT_EQ(got.idempotency_key, want.idempotency_key);
  EXPECT_EQ(got.input, want.input);
  EXPECT_EQ(got.output, want.output);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.started_at, want.started_at);
  EXPECT_EQ(got.ended_at, want.ended_at);
}

void ExpectSameRecord(const InstanceRecord& got, const InstanceRecord& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.flow_name, want.flow_name);
  EXPECT_EQ(got.flow_version, want.flow_version);
  EXPECT_EQ(got.flow_hash, want.flow_hash);
  EXPECT_EQ(got.business_key, want.business_key);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.compensation_status, want.compensation_status);
  EXPECT_EQ(got.input, want.input);
  EXPECT_EQ(got.context, want.context);
  EXPECT_EQ(got.error, want.error);
  EXPECT_EQ(got.error_code, want.error_code);
  EXPECT_EQ(got.error_message, want.error_message);
  EXPECT_EQ(got.started_at, want.started_at);
  EXPECT_EQ(got.updated_at, want.updated_at);
  EXPECT_EQ(got.ended_at, want.ended_at);
  EXPECT_EQ(got.owner, want.owner);
  EXPECT_EQ(got.lease_until, want.lease_until);
  const engine::Cursor& gc = got.cursor;
  const engine::Cursor& wc = want.cursor;
  EXPECT_EQ(gc.phase, wc.phase);
  EXPECT_EQ(gc.current, wc.current);
  EXPECT_EQ(gc.active_execution, wc.active_execution);
  EXPECT_EQ(gc.compensation_stack, wc.compensation_stack);
  EXPECT_EQ(gc.compensations_run, wc.compensations_run);
  EXPECT_EQ(gc.compensation_trigger, wc.compensation_trigger);
  EXPECT_EQ(gc.compensated_in_run, wc.compensated_in_run);
  EXPECT_EQ(gc.reached_fail, wc.reached_fail);
  EXPECT_EQ(gc.caught, wc.caught);
  EXPECT_EQ(gc.epoch, wc.epoch);
  EXPECT_EQ(gc.run_first_execution, wc.run_first_execution);
  EXPECT_EQ(gc.idle_transitions, wc.idle_transitions);
  EXPECT_EQ(gc.sequences_issued, wc.sequences_issued);
  ASSERT_EQ(got.executions.size(), want.executions.size());
  for (std::size_t i = 0; i < want.executions.size(); ++i) {
    ExpectSameExecution(got.executions[i], want.executions[i]);
  }
}

TEST_P(StateStoreContractTest, CreateThenLoadReturnsEveryField) {
  const InstanceRecord r = FullRecord();
  Create(r);
  Result<InstanceRecord> loaded = store().LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ExpectSameRecord(*loaded, r);
  // Another process sees the same.
  Result<InstanceRecord> seen = peer().LoadInstance(r.id);
  ASSERT_THAT(seen, IsOk());
  ExpectSameRecord(*seen, r);
}

TEST_P(StateStoreContractTest, DefaultsRoundTrip) {
  InstanceRecord r;
  r.id = InstanceId("bare");
  r.flow_name = "f";
  Create(r);
  Result<InstanceRecord> loaded = store().LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ExpectSameRecord(*loaded, r);
  EXPECT_TRUE(loaded->input.is_null());
  EXPECT_FALSE(loaded->ended_at.has_value());
  EXPECT_FALSE(loaded->error.has_value());
}

TEST_P(StateStoreContractTest, AwkwardTextRoundTrips) {
  // Quotes, backslashes, braces, commas, "NULL", empty strings, newlines and non-ASCII text, in
  // every kind of column, through a create and through a write.
  const std::string nasty = "a\"b\\c{d},NULL'e\n\t\u00e9 ✓ \\\"";
  InstanceRecord r = MakeRecord("odd\"id{1}", "flow,\"x\"", At(1), nasty, Json{{nasty, nasty}});
  r.flow_version = "NULL";
  r.flow_hash = "";
  r.error_code = "{}";
  r.error_message = nasty;
  r.owner = "own\\er";
  r.error = TaskFailure{nasty, "NULL"};
  StateExecution e = MakeExecution(0, "NULL", Json::array({nasty, "\\", "\""}));
  e.idempotency_key = nasty;
  e.output = Json(nasty);
  r.executions.push_back(e);
  Create(r);
  r.executions[0].error = TaskFailure{"", nasty};
  r.executions.push_back(MakeExecution(1, nasty, Json::array({"{", "}", ","})));
  r.context = Json{{"k", nasty}, {"empty", ""}};
  r.error_message = "\\";
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0, 1}, true)), IsOk());
  Result<InstanceRecord> loaded = store().LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ExpectSameRecord(*loaded, r);
  Result<std::vector<InstanceSummary>> list = store().ListInstances({.flow_name = r.flow_name});
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(list->front().business_key, nasty);
}

TEST_P(StateStoreContractTest, UnknownAndDuplicateInstances) {
  EXPECT_THAT(store().LoadInstance(InstanceId("nope")), StatusIs(StatusCode::kNotFound));
  InstanceRecord r = MakeRecord("i1");
  EXPECT_THAT(store().Write(WriteBatch::Of(r, {}, true)), StatusIs(StatusCode::kNotFound));
  Create(r);
  InstanceRecord other = MakeRecord("i1", "order_cancel", At(3), "", Json{{"other", true}});
  EXPECT_THAT(store().CreateInstance(other), StatusIs(StatusCode::kAlreadyExists));
  EXPECT_EQ(Load("i1").flow_name, "order_fulfill");
}

TEST_P(StateStoreContractTest, LoadInstancesAnswersEveryIdInItsPlace) {
  // More instances than one query reads, with zero to three executions each, asked for out of
  // order, with unknown ids among them and one id twice.
  constexpr int kInstances = 600;
  std::vector<InstanceRecord> records;
  for (int i = 0; i < kInstances; ++i) {
    InstanceRecord r = MakeRecord("many-" + std::to_string(i), "order_fulfill", At(i), "",
                                  Json{{"n", i}});
    for (int e = 0; e < i % 4; ++e) {
      r.executions.push_back(MakeExecution(e, "S" + std::to_string(e), Json{{"n", i}}));
    }
    Create(r);
    records.push_back(std::move(r));
  }
  std::vector<InstanceId> ids;
  for (int i = kInstances - 1; i >= 0; i -= 2) ids.push_back(records[i].id);
  for (int i = 0; i < kInstances; i += 2) ids.push_back(records[i].id);
  ids.insert(ids.begin() + 300, InstanceId("unknown-1"));
  ids.push_back(InstanceId("unknown-2"));
  ids.push_back(records[7].id);
  Result<std::vector<Result<InstanceRecord>>> loaded = peer().LoadInstances(ids);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->size(), ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const Result<InstanceRecord>& got = (*loaded)[i];
    if (ids[i].str().starts_with("unknown")) {
      EXPECT_THAT(got, StatusIs(StatusCode::kNotFound, HasSubstr(ids[i].str())));
      continue;
    }
    ASSERT_THAT(got, IsOk()) << ids[i].str();
    const int n = std::stoi(ids[i].str().substr(5));
    ExpectSameRecord(*got, records[static_cast<std::size_t>(n)]);
  }
  Result<std::vector<Result<InstanceRecord>>> none = store().LoadInstances({});
  ASSERT_THAT(none, IsOk());
  EXPECT_THAT(*none, IsEmpty());
}

// --- Business keys ---------------------------------------------------------------------------

TEST_P(StateStoreContractTest, BusinessKeyRepeatReturnsTheExistingInstance) {
  Create(MakeRecord("first", "order_fulfill", At(0), "order-1001"));
  Result<InstanceId> repeat =
      peer().CreateInstance(MakeRecord("second", "order_fulfill", At(1), "order-1001"));
  ASSERT_THAT(repeat, IsOk());
  EXPECT_EQ(*repeat, InstanceId("first"));
  EXPECT_THAT(store().LoadInstance(InstanceId("second")), StatusIs(StatusCode::kNotFound));
}

TEST_P(StateStoreContractTest, BusinessKeyWithDifferentInputIsAConflict) {
  Create(MakeRecord("first", "order_fulfill", At(0), "order-1001"));
  EXPECT_THAT(
      store().CreateInstance(
          MakeRecord("second", "order_fulfill", At(1), "order-1001", Json{{"orderId", "1002"}})),
      StatusIs(StatusCode::kConflict,
               AllOf(HasSubstr("order-1001"), HasSubstr("order_fulfill"), HasSubstr("first"))));
  EXPECT_THAT(store().LoadInstance(InstanceId("second")), StatusIs(StatusCode::kNotFound));
}

TEST_P(StateStoreContractTest, BusinessKeysAreScopedByFlowAndEmptyMeansNone) {
  Create(MakeRecord("fulfil", "order_fulfill", At(0), "order-1001"));
  Result<InstanceId> other =
      store().CreateInstance(MakeRecord("cancel", "order_cancel", At(1), "order-1001"));
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(*other, InstanceId("cancel"));
  Create(MakeRecord("x1"));
  Create(MakeRecord("x2"));
  Result<std::vector<InstanceSummary>> all = store().ListInstances({.limit = 100});
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), 4u);
}

TEST_P(StateStoreContractTest, BusinessKeyRepeatsFromManyThreadsCreateOneInstance) {
  constexpr int kThreads = 8;
  StateStore& second = peer();  // half the starts arrive at another process
  std::vector<std::string> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      StateStore& s = t % 2 ? second : store();
      Result<InstanceId> id = s.CreateInstance(
          MakeRecord("start-" + std::to_string(t), "order_fulfill", At(t), "order-7"));
      got[static_cast<std::size_t>(t)] = id.ok() ? id->str() : id.status().ToString();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 1u)
      << ::testing::PrintToString(got);
  EXPECT_THAT(store().LoadInstance(InstanceId(got[0])), IsOk());
  Result<std::vector<InstanceSummary>> all = store().ListInstances({.limit = 100});
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), 1u);
}

TEST_P(StateStoreContractTest, ManyBusinessKeysFromTwoProcessesInOppositeOrders) {
  // Two processes start the same 40 orders, one from the first, the other from the last,
  // each with asynchronous creates (so that their batches overlap): every start succeeds, with
  // one instance per key.
  constexpr int kKeys = 40;
  StateStore& second = peer();
  std::vector<InstanceRecord> records[2];
  std::vector<std::string> got[2];
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) {
    records[p].reserve(kKeys);
    got[p].resize(kKeys);
    for (int k = 0; k < kKeys; ++k) {
      const int key = p == 0 ? k : kKeys - 1 - k;
      records[p].push_back(MakeRecord("p" + std::to_string(p) + "-" + std::to_string(key),
                                      "order_fulfill", At(key), "order-" + std::to_string(key),
                                      Json{{"order", key}}));
    }
    threads.emplace_back([&, p] {
      StateStore& s = p == 0 ? store() : second;
      Latch done(kKeys);
      for (int k = 0; k < kKeys; ++k) {
        s.Create(records[p][static_cast<std::size_t>(k)],
                              [&, p, k](Result<InstanceId> id) {
                                if (id.ok()) {
                                  got[p][static_cast<std::size_t>(k)] = id->str();
                                } else {
                                  ++failures;
                                  ADD_FAILURE() << id.status().ToString();
                                }
                                done.CountDown();
                              });
      }
      done.Wait();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int k = 0; k < kKeys; ++k) {
    // Both processes got the same instance for the key.
    EXPECT_EQ(got[0][static_cast<std::size_t>(k)], got[1][static_cast<std::size_t>(kKeys - 1 - k)]);
  }
  Result<std::vector<InstanceSummary>> all = store().ListInstances({.limit = 1000});
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), static_cast<std::size_t>(kKeys));
}

// --- Writes ----------------------------------------------------------------------------------

TEST_P(StateStoreContractTest, WriteAppliesHeaderListedExecutionsAndFlaggedContext) {
  InstanceRecord r = MakeRecord("i1");
  Create(r);

  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  r.cursor.active_execution = 1;
  r.updated_at = At(10);
  r.lease_until = At(2000);
  r.context = Json{{"orderId", "1001"}, {"aResult", true}};
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0, 1}, false)), IsOk());

  InstanceRecord loaded = Load("i1");
  ASSERT_EQ(loaded.executions.size(), 2u);
  EXPECT_EQ(loaded.executions[1].state, StateName("B"));
  EXPECT_EQ(loaded.executions[1].input, Json::array({"b"}));
  EXPECT_EQ(loaded.cursor.active_execution, 1);
  EXPECT_EQ(loaded.updated_at, At(10));
  EXPECT_EQ(loaded.lease_until, At(2000));
  EXPECT_EQ(loaded.context, (Json{{"orderId", "1001"}}));  // not flagged: not written

  // The end of the run: header, one execution's progress and the context.
  r.executions[0].status = RunStatus::kSucceeded;  // changed but not listed
  r.executions[1].status = RunStatus::kFailed;
  r.executions[1].output = Json(false);
  r.executions[1].ended_at = At(11);
  r.status = RunStatus::kUnknown;
  r.compensation_status = RunStatus::kSucceeded;
  r.error = TaskFailure{"DemoException", "boom"};
  r.error_code = "500";
  r.error_message = "fulfilment failed";
  r.ended_at = At(12);
  r.cursor.phase = Phase::kFinished;
  const TimePoint started = r.started_at;
  r.started_at = At(9);  // the creation's, stored by the create alone
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {1}, true)), IsOk());

  loaded = Load("i1");
  EXPECT_EQ(loaded.started_at, started);
  EXPECT_EQ(loaded.status, RunStatus::kUnknown);
  EXPECT_THAT(loaded.compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_THAT(loaded.error, Optional(TaskFailure{"DemoException", "boom"}));
  EXPECT_EQ(loaded.error_code, "500");
  EXPECT_EQ(loaded.error_message, "fulfilment failed");
  EXPECT_THAT(loaded.ended_at, Optional(At(12)));
  EXPECT_TRUE(loaded.finished());
  EXPECT_EQ(loaded.context, (Json{{"orderId", "1001"}, {"aResult", true}}));
  EXPECT_EQ(loaded.executions[0].status, RunStatus::kRunning);
  EXPECT_EQ(loaded.executions[1].status, RunStatus::kFailed);
  EXPECT_EQ(loaded.executions[1].output, Json(false));
  EXPECT_THAT(loaded.executions[1].ended_at, Optional(At(11)));
}

// A batch is one value applied whole: one that cannot be applied leaves the instance as it was,
// its header, cursor, context and every execution.
TEST_P(StateStoreContractTest, ARefusedBatchAppliesNothing) {
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  Create(r);
  const InstanceRecord before = Load("i1");

  InstanceRecord next = r;
  next.status = RunStatus::kFailed;
  next.lease_until = At(5000);
  next.cursor.active_execution = 1;
  next.updated_at = At(77);
  next.context = Json{{"changed", true}};
  next.executions[0].status = RunStatus::kSucceeded;
  next.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));

  // Progress for an execution the store does not have.
  WriteBatch unstored = WriteBatch::Of(next, {1}, true);
  unstored.progress.push_back(ExecutionProgress::Of(next.executions[0]));
  unstored.progress.push_back(ExecutionProgress::Of(next.executions[1]));
  unstored.progress.back().id = 7;
  EXPECT_THAT(store().Write(unstored), StatusIs(StatusCode::kInvalidArgument, HasSubstr("7")));
  // A new execution without a state (every state has a name).
  WriteBatch nameless = WriteBatch::Of(next, {1}, true);
  nameless.new_executions.back().state = StateName();
  EXPECT_THAT(store().Write(nameless), StatusIs(StatusCode::kInvalidArgument, HasSubstr("1")));
  // An id the record does not have: WriteBatch::Of keeps it so that the store names it.
  EXPECT_THAT(store().Write(WriteBatch::Of(next, {0, 9}, true)),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("9")));

  const InstanceRecord after = Load("i1");
  EXPECT_EQ(after.status, before.status);
  EXPECT_EQ(after.lease_until, before.lease_until);
  EXPECT_EQ(after.updated_at, before.updated_at);
  EXPECT_EQ(after.cursor.active_execution, before.cursor.active_execution);
  EXPECT_EQ(after.context, before.context);
  ASSERT_EQ(after.executions.size(), 1u);
  EXPECT_EQ(after.executions[0].status, RunStatus::kRunning);

  // The same changes as a well-formed batch: progress for the stored one, the new one whole.
  WriteBatch good = WriteBatch::Of(next, {1}, true);
  good.progress.push_back(ExecutionProgress::Of(next.executions[0]));
  ASSERT_THAT(store().Write(good), IsOk());
  const InstanceRecord applied = Load("i1");
  EXPECT_EQ(applied.status, RunStatus::kFailed);
  EXPECT_EQ(applied.lease_until, At(5000));
  EXPECT_EQ(applied.context, (Json{{"changed", true}}));
  ASSERT_EQ(applied.executions.size(), 2u);
  EXPECT_EQ(applied.executions[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(applied.executions[0].input, Json::array({"a"}));
  EXPECT_EQ(applied.executions[1].state, StateName("B"));
}

// The batch is the caller's no longer once handed over: what the store writes is what the batch
// held then, whatever the caller does with its record afterwards; done comes exactly once.
TEST_P(StateStoreContractTest, ABatchIsAValueAndCompletesOnce) {
  InstanceRecord r = MakeRecord("i1");
  Create(r);
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.context = Json{{"v", 1}};
  r.updated_at = At(20);
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  Status outcome = Internal("not called");
  store().Apply(WriteBatch::Of(r, {0}, true), [&](Status s) {
    std::lock_guard lock(mu);
    ++calls;
    outcome = std::move(s);
    cv.notify_all();
  });
  // Changed at once, before the write may have completed.
  r.context = Json{{"v", 2}};
  r.executions[0].input = Json::array({"changed"});
  r.updated_at = At(21);
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return calls > 0; });
  }
  EXPECT_THAT(outcome, IsOk());
  const InstanceRecord loaded = Load("i1");
  EXPECT_EQ(loaded.context, (Json{{"v", 1}}));
  EXPECT_EQ(loaded.updated_at, At(20));
  ASSERT_EQ(loaded.executions.size(), 1u);
  EXPECT_EQ(loaded.executions[0].input, Json::array({"a"}));
  // A later write through the waiting form sees the first one applied.
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {}, true)), IsOk());
  EXPECT_EQ(Load("i1").context, (Json{{"v", 2}}));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::lock_guard lock(mu);
  EXPECT_EQ(calls, 1);
}

// The engine fills one batch per instance again for each step: the store takes what it keeps
// during Apply, so the batch may be refilled as soon as the call returns, before its write
// completes, and whatever the store left in it is overwritten.
TEST_P(StateStoreContractTest, ABatchRefilledOnceItsCallReturnsStoresEachStepAsGiven) {
  InstanceRecord r = MakeRecord("i1");
  Create(r);
  std::mutex mu;
  std::condition_variable cv;
  int completed = 0;
  std::vector<Status> outcomes;
  auto done = [&](Status s) {
    std::lock_guard lock(mu);
    ++completed;
    outcomes.push_back(std::move(s));
    cv.notify_all();
  };
  auto wait_for = [&](int n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return completed >= n; });
  };

  WriteBatch batch;
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.cursor.compensation_stack = {0};
  r.cursor.current = 1;
  r.context = Json{{"step", 1}};
  batch = WriteBatch::Of(r, {0}, true);
  store().Apply(batch, done);
  // Refilled at once for the next step, as the engine's next FillBatch would.
  r.executions[0].status = RunStatus::kSucceeded;
  r.executions[0].output = Json{{"a", "done"}};
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  r.cursor.compensation_stack = {0, 1};
  r.cursor.current = 2;
  r.context = Json{{"step", 2}};
  batch.cursor = r.cursor;
  batch.context = r.context;
  batch.new_executions.clear();
  batch.new_executions.push_back(r.executions[1]);
  batch.progress.clear();
  batch.progress.push_back(engine::ExecutionProgress::Of(r.executions[0]));
  wait_for(1);
  {
    const InstanceRecord first = Load("i1");
    EXPECT_EQ(first.context, (Json{{"step", 1}}));
    EXPECT_EQ(first.cursor.current, 1);
    EXPECT_THAT(first.cursor.compensation_stack, ElementsAre(0));
    ASSERT_EQ(first.executions.size(), 1u);
    EXPECT_EQ(first.executions[0].status, RunStatus::kRunning);
  }
  store().Apply(batch, done);
  wait_for(2);
  const InstanceRecord second = Load("i1");
  EXPECT_EQ(second.context, (Json{{"step", 2}}));
  EXPECT_EQ(second.cursor.current, 2);
  EXPECT_THAT(second.cursor.compensation_stack, ElementsAre(0, 1));
  ASSERT_EQ(second.executions.size(), 2u);
  EXPECT_EQ(second.executions[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(second.executions[0].output, (Json{{"a", "done"}}));
  EXPECT_EQ(second.executions[1].state.str(), "B");
  EXPECT_EQ(second.executions[1].input, Json::array({"b"}));
  std::lock_guard lock(mu);
  EXPECT_THAT(outcomes, ElementsAre(IsOk(), IsOk()));
}

TEST_P(StateStoreContractTest, AWriteWithoutHeaderStoresTheCursorUpdatedAtAndCompensationStatus) {
  const InstanceRecord r = MakeRecord("i1");
  Create(r);
  InstanceRecord w = r;
  // Not stored without `header`:
  w.status = RunStatus::kFailed;
  w.error = TaskFailure{"E", "boom"};
  w.error_code = "E1";
  w.error_message = "failed";
  w.started_at = At(50);
  w.ended_at = At(60);
  w.lease_until = At(5000);
  // Stored by every write:
  w.compensation_status = RunStatus::kSucceeded;
  w.updated_at = At(70);
  w.cursor.current = 5;
  w.cursor.sequences_issued = 7;
  w.context = Json{{"changed", true}};
  w.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  ASSERT_THAT(store().Write(WriteBatch::Of(w, {0}, true, false)), IsOk());

  InstanceRecord loaded = Load("i1");
  EXPECT_EQ(loaded.status, RunStatus::kRunning);
  EXPECT_FALSE(loaded.error.has_value());
  EXPECT_EQ(loaded.error_code, "");
  EXPECT_EQ(loaded.error_message, "");
  EXPECT_EQ(loaded.started_at, At(0));
  EXPECT_FALSE(loaded.ended_at.has_value());
  EXPECT_EQ(loaded.lease_until, At(1000));
  EXPECT_THAT(loaded.compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_EQ(loaded.updated_at, At(70));
  EXPECT_EQ(loaded.cursor.current, 5);
  EXPECT_EQ(loaded.cursor.sequences_issued, 7);
  EXPECT_FALSE(loaded.finished());
  EXPECT_EQ(loaded.context, (Json{{"changed", true}}));
  ASSERT_EQ(loaded.executions.size(), 1u);

  // Finishing is a write with the header: then nothing is left to recover or claim.
  w.cursor.phase = Phase::kFinished;
  ASSERT_THAT(store().Write(WriteBatch::Of(w, {}, false)), IsOk());
  Result<engine::UnfinishedSummary> unfinished = store().Unfinished("me", At(6000));
  ASSERT_THAT(unfinished, IsOk());
  EXPECT_EQ(unfinished->unfinished, 0u);
  EXPECT_THAT(*store().ClaimDue("me", At(6000), At(7000), 10), IsEmpty());

  // The lease is checked all the same.
  w.owner = "node-z";
  EXPECT_THAT(store().Write(WriteBatch::Of(w, {}, false, false)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("lease lost")));
}

TEST_P(StateStoreContractTest, LaterWritesChangeOnlyAnExecutionsProgress) {
  InstanceRecord r = MakeRecord("i1");
  Create(r);
  r.executions.push_back(MakeExecution(0, "A", Json::array({"first input"})));
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0}, false)), IsOk());

  StateExecution& e = r.executions[0];
  e.attempts = 3;
  e.retry_counts = {2};
  e.retry_at = At(30);
  e.error = TaskFailure{"ConnectError", "refused"};
  e.superseded = true;
  e.compensation_status = RunStatus::kUnknown;
  e.output = Json{{"partial", 1}};
  e.ended_at = At(31);
  // Identity and input are fixed once written.
  e.input = Json::array({"rewritten"});
  e.idempotency_key = "another key";
  e.state = StateName("Renamed");
  e.state_index = 99;
  e.kind = ExecutionKind::kCompensation;
  e.compensates = 5;
  e.retried_for = 6;
  e.epoch = 7;
  e.for_update = false;
  e.started_at = At(40);
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0}, false)), IsOk());

  const StateExecution stored = Load("i1").executions.at(0);
  EXPECT_EQ(stored.attempts, 3);
  EXPECT_THAT(stored.retry_counts, ElementsAre(2));
  EXPECT_THAT(stored.retry_at, Optional(At(30)));
  EXPECT_THAT(stored.error, Optional(TaskFailure{"ConnectError", "refused"}));
  EXPECT_TRUE(stored.superseded);
  EXPECT_THAT(stored.compensation_status, Optional(RunStatus::kUnknown));
  EXPECT_EQ(stored.output, (Json{{"partial", 1}}));
  EXPECT_THAT(stored.ended_at, Optional(At(31)));
  EXPECT_EQ(stored.state, StateName("A"));
  EXPECT_EQ(stored.state_index, 1);
  EXPECT_EQ(stored.kind, ExecutionKind::kForward);
  EXPECT_EQ(stored.compensates, -1);
  EXPECT_EQ(stored.retried_for, -1);
  EXPECT_EQ(stored.epoch, 0);
  EXPECT_TRUE(stored.for_update);
  EXPECT_EQ(stored.started_at, At(0));
  EXPECT_EQ(stored.input, Json::array({"first input"}));
  EXPECT_EQ(stored.idempotency_key, "key:A");

  // Progress goes back to "not set" too.
  e.retry_at.reset();
  e.error.reset();
  e.compensation_status.reset();
  e.ended_at.reset();
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0}, false)), IsOk());
  const StateExecution cleared = Load("i1").executions.at(0);
  EXPECT_FALSE(cleared.retry_at.has_value());
  EXPECT_FALSE(cleared.error.has_value());
  EXPECT_FALSE(cleared.compensation_status.has_value());
  EXPECT_FALSE(cleared.ended_at.has_value());
}

TEST_P(StateStoreContractTest, WriteNeverChangesTheInstancesIdentityOrInput) {
  InstanceRecord r = MakeRecord("i1", "order_fulfill", At(0), "bk-1");
  Create(r);
  r.flow_name = "other_flow";
  r.flow_version = "9";
  r.flow_hash = "ffff";
  r.business_key = "bk-2";
  r.input = Json{{"changed", true}};
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {}, false)), IsOk());
  InstanceRecord loaded = Load("i1");
  EXPECT_EQ(loaded.flow_name, "order_fulfill");
  EXPECT_EQ(loaded.flow_version, "1.0.0");
  EXPECT_EQ(loaded.flow_hash, "00000000deadbeef");
  EXPECT_EQ(loaded.business_key, "bk-1");
  EXPECT_EQ(loaded.input, (Json{{"orderId", "1001"}}));
}

TEST_P(StateStoreContractTest, FirstWriteListingAnExecutionFixesItsIdentity) {
  InstanceRecord r = MakeRecord("i1");
  Create(r);
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {1}, false)), IsOk());
  r.executions[1].input = Json::array({"changed"});
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0, 1}, false)), IsOk());

  InstanceRecord loaded = Load("i1");
  ASSERT_EQ(loaded.executions.size(), 2u);
  EXPECT_EQ(loaded.executions[0].state, StateName("A"));
  EXPECT_EQ(loaded.executions[0].input, Json::array({"a"}));
  EXPECT_EQ(loaded.executions[0].idempotency_key, "key:A");
  EXPECT_EQ(loaded.executions[1].state, StateName("B"));
  EXPECT_EQ(loaded.executions[1].input, Json::array({"b"}));
}

TEST_P(StateStoreContractTest, WriteFromAnotherOwnerIsRefusedAndWritesNothing) {
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  Create(r);
  // node-b took the instance over.
  Result<InstanceRecord> taken = peer().ClaimInstance(r.id, "node-b", At(2000), At(3000));
  ASSERT_THAT(taken, IsOk());

  // node-a, unaware, writes a step.
  r.status = RunStatus::kFailed;
  r.updated_at = At(50);
  r.lease_until = At(5000);
  r.cursor.current = 9;
  r.context = Json{{"stale", true}};
  r.executions[0].status = RunStatus::kSucceeded;
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  EXPECT_THAT(store().Write(WriteBatch::Of(r, {0, 1}, true)),
              StatusIs(StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("lease lost"), HasSubstr("node-b"))));
  EXPECT_THAT(store().Write(WriteBatch::Of(r, {0, 1}, false)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("lease lost")));

  InstanceRecord loaded = Load("i1");
  EXPECT_EQ(loaded.owner, "node-b");
  EXPECT_EQ(loaded.lease_until, At(3000));
  EXPECT_EQ(loaded.status, RunStatus::kRunning);
  EXPECT_EQ(loaded.updated_at, At(0));
  EXPECT_EQ(loaded.cursor.current, statelang::kNoState);
  EXPECT_EQ(loaded.context, (Json{{"orderId", "1001"}}));
  ASSERT_EQ(loaded.executions.size(), 1u);
  EXPECT_EQ(loaded.executions[0].status, RunStatus::kRunning);

  // The new owner writes.
  InstanceRecord mine = *taken;
  mine.status = RunStatus::kSucceeded;
  mine.lease_until = At(4000);
  ASSERT_THAT(peer().Write(WriteBatch::Of(mine, {}, false)), IsOk());
  EXPECT_EQ(Load("i1").status, RunStatus::kSucceeded);
  EXPECT_EQ(Load("i1").lease_until, At(4000));
}

// --- Leases ----------------------------------------------------------------------------------

TEST_P(StateStoreContractTest, ClaimDueTakesOnlyExpiredUnfinishedOldestFirst) {
  CreateLeased("expired-late", "dead", 90, false);
  CreateLeased("expired-early", "dead", 10, false);
  CreateLeased("expired-exact", "dead", 100, false);  // lease_until == now: expired
  CreateLeased("expired-mid", "other-dead", 50, false);
  CreateLeased("live", "alive", 101, false);
  CreateLeased("finished", "dead", 5, true);

  Result<std::vector<InstanceId>> first = store().ClaimDue("me", At(100), At(200), 2);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(Strs(*first), ElementsAre("expired-early", "expired-mid"));
  Result<std::vector<InstanceId>> rest = store().ClaimDue("me", At(100), At(200), 10);
  ASSERT_THAT(rest, IsOk());
  EXPECT_THAT(Strs(*rest), ElementsAre("expired-late", "expired-exact"));
  Result<std::vector<InstanceId>> none = store().ClaimDue("me", At(100), At(200), 10);
  ASSERT_THAT(none, IsOk());
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_THAT(*store().ClaimDue("me", At(100), At(200), 0), IsEmpty());

  for (const char* id : {"expired-early", "expired-mid", "expired-late", "expired-exact"}) {
    InstanceRecord r = Load(id);
    EXPECT_EQ(r.owner, "me") << id;
    EXPECT_EQ(r.lease_until, At(200)) << id;
  }
  EXPECT_EQ(Load("live").owner, "alive");
  EXPECT_EQ(Load("finished").owner, "dead");
}

// A write with release_owner parks the instance: no owner, its wake time as lease_until.
TEST_P(StateStoreContractTest, AParkedInstanceHasNoOwnerAndIsDueAtItsWakeTime) {
  InstanceRecord r = MakeRecord("parked");
  r.owner = "node-a";
  r.lease_until = At(100);
  Create(r);
  InstanceRecord sleeper = MakeRecord("sleeps-for-an-event");
  sleeper.lease_until = At(100);
  Create(sleeper);

  r.cursor.wake_at = At(500);
  r.lease_until = At(500);
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {}, false).Parking(r)),
              IsOk());
  sleeper.lease_until = TimePoint::max();
  ASSERT_THAT(store().Write(WriteBatch::Of(sleeper, {}, false).Parking(sleeper)),
              IsOk());
  InstanceRecord stored = Load("parked");
  EXPECT_EQ(stored.owner, "");
  EXPECT_EQ(stored.lease_until, At(500));
  EXPECT_EQ(stored.cursor.wake_at, At(500));
  EXPECT_EQ(Load("sleeps-for-an-event").owner, "");

  // The parking node renews nothing: it no longer holds the lease.
  Result<std::size_t> renewed = store().RenewLeases("node-a", At(110), At(10000), At(20000));
  ASSERT_THAT(renewed, IsOk());
  EXPECT_EQ(*renewed, 0u);
  EXPECT_EQ(Load("parked").lease_until, At(500));

  // Counted as parked, not as leased elsewhere.
  Result<engine::UnfinishedSummary> left = store().Unfinished("node-b", At(200));
  ASSERT_THAT(left, IsOk());
  EXPECT_EQ(left->unfinished, 2u);
  EXPECT_EQ(left->leased_elsewhere, 0u);
  EXPECT_EQ(left->parked, 2u);
  EXPECT_EQ(left->next_wake, At(500));

  // Not claimed before its time, by anyone; claimed once at it.
  EXPECT_THAT(*store().ClaimDue("node-b", At(499), At(600), 10), IsEmpty());
  Result<std::vector<InstanceId>> due =
      store().ClaimDue("node-b", At(500), At(2'000'000), 10);
  ASSERT_THAT(due, IsOk());
  EXPECT_THAT(Strs(*due), ElementsAre("parked"));
  EXPECT_THAT(*store().ClaimDue("node-c", At(500), At(600), 10), IsEmpty());
  stored = Load("parked");
  EXPECT_EQ(stored.owner, "node-b");
  EXPECT_EQ(stored.lease_until, At(2'000'000));

  // One parked for an event is never due by time; its event takes it at any moment.
  EXPECT_THAT(*store().ClaimDue("node-b", At(1'000'000), At(1'000'100), 10), IsEmpty());
  Result<InstanceRecord> taken =
      store().ClaimInstance(InstanceId("sleeps-for-an-event"), "node-c", At(300), At(400));
  ASSERT_THAT(taken, IsOk());
  EXPECT_EQ(taken->owner, "node-c");
  EXPECT_EQ(Load("sleeps-for-an-event").owner, "node-c");
  // Then it is node-c's: another claimer is refused while that lease lives.
  EXPECT_THAT(store().ClaimInstance(InstanceId("sleeps-for-an-event"), "node-d", At(350), At(450)),
              StatusIs(StatusCode::kFailedPrecondition));
}

// Parking checks the lease like any write: a node that lost the instance cannot park it.
TEST_P(StateStoreContractTest, ParkingAnInstanceTakenOverIsRefused) {
  InstanceRecord r = MakeRecord("taken");
  r.owner = "node-a";
  r.lease_until = At(100);
  Create(r);
  ASSERT_THAT(*store().ClaimDue("node-b", At(100), At(200), 10), ElementsAre(InstanceId("taken")));
  r.lease_until = At(900);
  EXPECT_THAT(store().Write(WriteBatch::Of(r, {}, false).Parking(r)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("lease lost")));
  InstanceRecord stored = Load("taken");
  EXPECT_EQ(stored.owner, "node-b");
  EXPECT_EQ(stored.lease_until, At(200));
}

// An execution's deadline is stored with it.
TEST_P(StateStoreContractTest, AnExecutionsDeadlineIsStored) {
  InstanceRecord r = MakeRecord("deadline");
  StateExecution e = MakeExecution(0, "A", Json::array());
  e.deadline_at = At(42);
  r.executions.push_back(e);
  Create(r);
  EXPECT_EQ(Load("deadline").executions.at(0).deadline_at, At(42));
  r.executions[0].deadline_at.reset();
  r.executions[0].attempts = 2;
  ASSERT_THAT(store().Write(WriteBatch::Of(r, {0}, false, false)), IsOk());
  InstanceRecord stored = Load("deadline");
  EXPECT_FALSE(stored.executions.at(0).deadline_at.has_value());
  EXPECT_EQ(stored.executions.at(0).attempts, 2);
}

TEST_P(StateStoreContractTest, ConcurrentClaimersGetDisjointSets) {
  constexpr int kInstances = 60;
  for (int i = 0; i < kInstances; ++i) {
    InstanceRecord r = MakeRecord("i" + std::to_string(i));
    r.owner = "dead";
    r.lease_until = At(i);
    Create(r);
  }
  StateStore& other = peer();
  std::vector<std::string> claimed[2];
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      StateStore& s = t == 0 ? store() : other;
      const std::string owner = "claimer-" + std::to_string(t);
      while (true) {
        Result<std::vector<InstanceId>> got = s.ClaimDue(owner, At(1000), At(5000), 7);
        if (!got.ok()) {
          ++errors;
          break;
        }
        if (got->empty()) break;
        for (const InstanceId& id : *got) claimed[t].push_back(id.str());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<std::string> all;
  for (const auto& list : claimed) {
    for (const std::string& id : list) {
      EXPECT_TRUE(all.insert(id).second) << id << " was claimed twice";
    }
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kInstances));
  for (int t = 0; t < 2; ++t) {
    for (const std::string& id : claimed[t]) {
      EXPECT_EQ(Load(id).owner, "claimer-" + std::to_string(t)) << id;
    }
  }
}

// --- Children created with a step ----------------------------------------------------------

TEST_P(StateStoreContractTest, ABatchCreatesItsChildrenWithTheStep) {
  InstanceRecord parent = MakeRecord("parent");
  parent.executions.push_back(MakeExecution(0, "Refund", Json::array({"order-1001"})));
  Create(parent);

  InstanceRecord child = MakeRecord("child", "order_refund", At(5), "order-1001/refund",
                                    Json{{"orderId", "1001"}, {"amount", 30}});
  child.owner = "";
  child.lease_until = At(5);
  child.executions.push_back(MakeExecution(0, "Credit", Json::array({30})));
  parent.cursor.active_execution = 0;
  parent.updated_at = At(5);
  WriteBatch batch = WriteBatch::Of(parent, {0}, false);
  batch.children.push_back(child);
  InstanceRecord second = MakeRecord("child2", "order_refund", At(5));
  batch.children.push_back(second);
  ASSERT_THAT(store().Write(batch), IsOk());

  Result<InstanceRecord> stored = peer().LoadInstance(InstanceId("child"));
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->flow_name, "order_refund");
  EXPECT_EQ(stored->business_key, "order-1001/refund");
  EXPECT_EQ(stored->input.get(), (Json{{"orderId", "1001"}, {"amount", 30}}));
  EXPECT_EQ(stored->owner, "");
  ASSERT_EQ(stored->executions.size(), 1u);
  EXPECT_EQ(stored->executions[0].state, StateName("Credit"));
  EXPECT_THAT(peer().LoadInstance(InstanceId("child2")), IsOk());
  EXPECT_EQ(Load("parent").cursor.active_execution, 0);

  // Applied once more (its outcome was lost): the children stay as stored.
  WriteBatch again = batch;
  again.children[0].executions.push_back(MakeExecution(1, "Notify", Json::array()));
  ASSERT_THAT(store().Write(again), IsOk());
  EXPECT_EQ(Load("child").executions.size(), 1u);
  // And a child's business key is taken like a create's.
  InstanceRecord repeat = child;
  repeat.id = InstanceId("elsewhere");
  EXPECT_THAT(store().CreateInstance(repeat), IsOkAndHolds(InstanceId("child")));
}

TEST_P(StateStoreContractTest, ARefusedBatchCreatesNoChild) {
  InstanceRecord parent = MakeRecord("parent");
  Create(parent);
  InstanceRecord other = MakeRecord("taken", "order_refund", At(0), "order-1001/refund");
  Create(other);
  const InstanceRecord before = Load("parent");

  auto with_child = [&](InstanceRecord child) {
    InstanceRecord next = parent;
    next.updated_at = At(9);
    next.cursor.active_execution = 4;
    WriteBatch b = WriteBatch::Of(next, {}, false);
    b.children.push_back(std::move(child));
    return b;
  };
  // The lease is lost.
  WriteBatch stolen = with_child(MakeRecord("c1", "order_refund"));
  stolen.owner = "node-b";
  EXPECT_THAT(store().Write(stolen), StatusIs(StatusCode::kFailedPrecondition));
  // The child's id is another instance's.
  EXPECT_THAT(store().Write(with_child(MakeRecord("taken", "order_other"))),
              StatusIs(StatusCode::kAlreadyExists, HasSubstr("taken")));
  // Its business key is another instance's (with another input, or the same).
  EXPECT_THAT(store().Write(with_child(MakeRecord("c2", "order_refund", At(0),
                                                  "order-1001/refund", Json{{"x", 1}}))),
              StatusIs(StatusCode::kConflict, HasSubstr("order-1001/refund")));
  EXPECT_THAT(store().Write(with_child(MakeRecord("c3", "order_refund", At(0),
                                                  "order-1001/refund"))),
              StatusIs(StatusCode::kConflict, HasSubstr("taken")));
  // The instance itself.
  EXPECT_THAT(store().Write(with_child(MakeRecord("parent"))),
              StatusIs(StatusCode::kInvalidArgument));

  for (const char* id : {"c1", "c2", "c3"}) {
    EXPECT_THAT(store().LoadInstance(InstanceId(id)), StatusIs(StatusCode::kNotFound)) << id;
  }
  const InstanceRecord after = Load("parent");
  EXPECT_EQ(after.updated_at, before.updated_at);
  EXPECT_EQ(after.cursor.active_execution, before.cursor.active_execution);
  EXPECT_EQ(Load("taken").flow_name, "order_refund");
}

TEST_P(StateStoreContractTest, ABadChildRefusesItsBatchAloneAmongOthers) {
  Create(MakeRecord("taken", "order_refund"));
  constexpr int kParents = 20;
  std::vector<WriteBatch> batches;
  for (int i = 0; i < kParents; ++i) {
    InstanceRecord parent = MakeRecord("p" + std::to_string(i));
    Create(parent);
    parent.updated_at = At(7);
    WriteBatch b = WriteBatch::Of(parent, {}, false);
    // Parent 7's child has the id of another instance.
    b.children.push_back(MakeRecord(i == 7 ? "taken" : "c" + std::to_string(i), "order_other"));
    batches.push_back(std::move(b));
  }
  // Submitted together, so that a group-committing store holds them in one transaction.
  std::vector<Status> outcomes(kParents);
  Latch done(kParents);
  for (int i = 0; i < kParents; ++i) {
    store().Apply(batches[static_cast<std::size_t>(i)], [&, i](Status s) {
      outcomes[static_cast<std::size_t>(i)] = std::move(s);
      done.CountDown();
    });
  }
  done.Wait();
  for (int i = 0; i < kParents; ++i) {
    const std::string c = "c" + std::to_string(i);
    if (i == 7) {
      EXPECT_THAT(outcomes[7], StatusIs(StatusCode::kAlreadyExists));
      EXPECT_EQ(Load("p7").updated_at, At(0));
      continue;
    }
    EXPECT_THAT(outcomes[static_cast<std::size_t>(i)], IsOk()) << i;
    EXPECT_EQ(Load("p" + std::to_string(i)).updated_at, At(7));
    EXPECT_THAT(store().LoadInstance(InstanceId(c)), IsOk()) << c;
  }
}

// --- The outbox ------------------------------------------------------------------------------

TEST_P(StateStoreContractTest, ABatchStoresItsDispatchesWithTheStep) {
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "ReserveStock", Json::array({"order-1001"})));
  Create(r);
  ASSERT_THAT(store().ListDispatches(InstanceId("i1")), IsOkAndHolds(IsEmpty()));

  WriteBatch batch = WriteBatch::Of(r, {0}, false);
  DispatchRecord row = MakeDispatch("i1", 0, 1, 30, Json{{"sku", "ü-42"}, {"qty", 2}});
  row.delivery.deadline = At(90);
  batch.dispatches.push_back(row);
  batch.dispatches.push_back(MakeDispatch("i1", 0, 2, 31));
  ASSERT_THAT(store().Write(batch), IsOk());

  Result<std::vector<DispatchRecord>> stored = peer().ListDispatches(InstanceId("i1"));
  ASSERT_THAT(stored, IsOk());
  EXPECT_THAT(Keys(*stored), ElementsAre("i1/0/1", "i1/0/2"));
  const engine::TaskDelivery& d = (*stored)[0].delivery;
  EXPECT_EQ(d.state, StateName("ReserveStock"));
  EXPECT_EQ(d.task, TaskName("inventory.reserve"));
  EXPECT_EQ(d.idempotency_key, "i1:0");
  EXPECT_EQ(d.input.get(), (Json{{"sku", "ü-42"}, {"qty", 2}}));
  EXPECT_THAT(d.deadline, Optional(At(90)));
  EXPECT_EQ((*stored)[0].due_at, At(30));
  EXPECT_EQ((*stored)[1].delivery.deadline, std::nullopt);

  // Applied once more (its outcome was lost): the rows stay as stored, once.
  WriteBatch again = batch;
  again.dispatches[0].due_at = At(500);
  ASSERT_THAT(store().Write(again), IsOk());
  stored = store().ListDispatches(InstanceId("i1"));
  ASSERT_THAT(stored, IsOk());
  ASSERT_THAT(Keys(*stored), ElementsAre("i1/0/1", "i1/0/2"));
  EXPECT_EQ((*stored)[0].due_at, At(30));
}

TEST_P(StateStoreContractTest, ARefusedBatchStoresNoDispatch) {
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "ReserveStock", Json::array({"order-1001"})));
  Create(r);

  // Another owner's batch: the lease is lost, nothing of it is stored.
  WriteBatch stolen = WriteBatch::Of(r, {0}, false);
  stolen.owner = "node-b";
  stolen.dispatches.push_back(MakeDispatch("i1", 0, 1, 30));
  EXPECT_THAT(store().Write(stolen), StatusIs(StatusCode::kFailedPrecondition));
  // A malformed one (progress of an execution not stored).
  WriteBatch malformed = WriteBatch::Of(r, {0}, false);
  malformed.progress.emplace_back().id = 5;
  malformed.dispatches.push_back(MakeDispatch("i1", 0, 1, 30));
  EXPECT_THAT(store().Write(malformed), StatusIs(StatusCode::kInvalidArgument));
  // A dispatch of another instance is refused, naming it.
  Create(MakeRecord("i2"));
  WriteBatch foreign = WriteBatch::Of(r, {0}, false);
  foreign.dispatches.push_back(MakeDispatch("i2", 0, 1, 30));
  EXPECT_THAT(store().Write(foreign), StatusIs(StatusCode::kInvalidArgument, HasSubstr("i2")));

  EXPECT_THAT(store().ListDispatches(InstanceId("i1")), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store().ListDispatches(InstanceId("i2")), IsOkAndHolds(IsEmpty()));
}

TEST_P(StateStoreContractTest, ACreateStoresItsDispatchesOnlyWhenItCreates) {
  InstanceRecord r = MakeRecord("i1", "order_fulfill", At(0), "order-1001");
  r.executions.push_back(MakeExecution(0, "ReserveStock", Json::array({"order-1001"})));
  const std::vector<DispatchRecord> rows = {MakeDispatch("i1", 0, 1, 30)};
  ASSERT_THAT(store().CreateInstance(r, rows), IsOkAndHolds(InstanceId("i1")));
  EXPECT_THAT(peer().ListDispatches(InstanceId("i1")),
              IsOkAndHolds(::testing::SizeIs(1)));

  // A repeat of the start under another id is that instance: nothing of its own is stored.
  InstanceRecord repeat = r;
  repeat.id = InstanceId("i2");
  const std::vector<DispatchRecord> repeat_rows = {MakeDispatch("i2", 0, 1, 30)};
  EXPECT_THAT(store().CreateInstance(repeat, repeat_rows), IsOkAndHolds(InstanceId("i1")));
  EXPECT_THAT(store().ListDispatches(InstanceId("i2")), IsOkAndHolds(IsEmpty()));
  // A conflicting one is refused, and stores nothing either.
  repeat.input = Json{{"orderId", "other"}};
  EXPECT_THAT(store().CreateInstance(repeat, repeat_rows), StatusIs(StatusCode::kConflict));
  EXPECT_THAT(store().ListDispatches(InstanceId("i2")), IsOkAndHolds(IsEmpty()));
  // A row of another instance refuses the create.
  InstanceRecord third = MakeRecord("i3");
  EXPECT_THAT(store().CreateInstance(third, repeat_rows),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("i2")));
  EXPECT_THAT(store().LoadInstance(InstanceId("i3")), StatusIs(StatusCode::kNotFound));
}

TEST_P(StateStoreContractTest, ClaimDispatchesTakesDueRowsEarliestFirstAndDefersThem) {
  for (int i = 0; i < 4; ++i) {
    InstanceRecord r = MakeRecord("i" + std::to_string(i));
    r.executions.push_back(MakeExecution(0, "ReserveStock", Json::array({i})));
    const std::vector<DispatchRecord> rows = {
        MakeDispatch(r.id.str(), 0, 1, 40 - 10 * i, Json::array({i}))};
    ASSERT_THAT(store().CreateInstance(r, rows), IsOk());
  }
  // Due at At(10), At(20), At(30), At(40): at At(25) two are due, the earliest first.
  Result<ClaimedDispatches> got = store().ClaimDispatches(At(25), At(100), 10);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(Keys(got->rows), ElementsAre("i3/0/1", "i2/0/1"));
  EXPECT_THAT(got->corrupt, IsEmpty());
  EXPECT_EQ(got->rows[0].due_at, At(100));
  EXPECT_EQ(got->rows[0].delivery.input.get(), Json::array({3}));
  // Claimed: not due again until At(100), in any process.
  got = peer().ClaimDispatches(At(25), At(100), 10);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(got->rows, IsEmpty());
  // The limit holds.
  got = peer().ClaimDispatches(At(50), At(200), 1);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(Keys(got->rows), ElementsAre("i1/0/1"));
  // Removing takes rows out for good; keys with no row are left alone.
  const std::vector<DispatchKey> keys = {{InstanceId("i3"), 0, 1},
                                         {InstanceId("i2"), 0, 1},
                                         {InstanceId("nobody"), 3, 1}};
  ASSERT_THAT(store().RemoveDispatches(keys), IsOk());
  got = store().ClaimDispatches(At(1000), At(2000), 10);
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT(Keys(got->rows), ElementsAre("i0/0/1", "i1/0/1"));
  EXPECT_THAT(store().ListDispatches(InstanceId("i3")), IsOkAndHolds(IsEmpty()));
}

TEST_P(StateStoreContractTest, ConcurrentDispatchClaimersGetDisjointRows) {
  constexpr int kRows = 60;
  for (int i = 0; i < kRows; ++i) {
    InstanceRecord r = MakeRecord("i" + std::to_string(i));
    r.executions.push_back(MakeExecution(0, "ReserveStock", Json::array({i})));
    const std::vector<DispatchRecord> rows = {MakeDispatch(r.id.str(), 0, 1, i)};
    ASSERT_THAT(store().CreateInstance(r, rows), IsOk());
  }
  StateStore& other = peer();
  std::vector<std::string> claimed[2];
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      StateStore& s = t == 0 ? store() : other;
      while (true) {
        Result<ClaimedDispatches> got = s.ClaimDispatches(At(1000), At(5000), 7);
        if (!got.ok()) {
          ++errors;
          break;
        }
        if (got->rows.empty()) break;
        for (const std::string& key : Keys(got->rows)) claimed[t].push_back(key);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<std::string> all;
  for (const auto& list : claimed) {
    for (const std::string& key : list) EXPECT_TRUE(all.insert(key).second) << key << " twice";
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kRows));
}

TEST_P(StateStoreContractTest, ClaimInstance) {
  EXPECT_THAT(store().ClaimInstance(InstanceId("nope"), "me", At(0), At(10)),
              StatusIs(StatusCode::kNotFound));

  InstanceRecord r = MakeRecord("i1");
  r.owner = "other";
  r.lease_until = At(100);
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  Create(r);

  // Another owner's live lease.
  EXPECT_THAT(store().ClaimInstance(r.id, "me", At(99), At(200)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("other")));
  EXPECT_EQ(Load("i1").owner, "other");

  // Expired (lease_until <= now): taken, and the record comes back as stored after the claim.
  Result<InstanceRecord> claimed = store().ClaimInstance(r.id, "me", At(100), At(200));
  ASSERT_THAT(claimed, IsOk());
  EXPECT_EQ(claimed->owner, "me");
  EXPECT_EQ(claimed->lease_until, At(200));
  EXPECT_EQ(claimed->input, (Json{{"orderId", "1001"}}));
  ASSERT_EQ(claimed->executions.size(), 1u);
  EXPECT_EQ(claimed->executions[0].state, StateName("A"));
  EXPECT_EQ(Load("i1").owner, "me");

  // Taking a lease one holds renews it, even while live.
  claimed = peer().ClaimInstance(r.id, "me", At(150), At(300));
  ASSERT_THAT(claimed, IsOk());
  EXPECT_EQ(Load("i1").lease_until, At(300));
  // Now "other" is refused.
  EXPECT_THAT(store().ClaimInstance(r.id, "other", At(299), At(400)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("me")));
  // Released (lease_until = now), anyone may take it.
  ASSERT_THAT(store().ClaimInstance(r.id, "me", At(300), At(300)), IsOk());
  ASSERT_THAT(store().ClaimInstance(r.id, "other", At(300), At(500)), IsOk());
  EXPECT_EQ(Load("i1").owner, "other");
}

// ClaimIdle takes only what no process is stepping: the claim of an event (a timer fired from
// memory, a reply) must not start a second run next to the one that holds the instance, even
// in the same process (whose recovery pass may have claimed it a moment before).
TEST_P(StateStoreContractTest, ClaimIdleTakesParkedOrExpiredButNotAHeldLease) {
  EXPECT_THAT(store().ClaimIdle(InstanceId("nope"), "me", At(0), At(10)),
              StatusIs(StatusCode::kNotFound));
  InstanceRecord r = MakeRecord("idle");
  r.owner = "me";
  r.lease_until = At(100);
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  Create(r);

  // Its own live lease is refused, as another owner's is, and nothing changes.
  EXPECT_THAT(store().ClaimIdle(r.id, "me", At(99), At(200)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("me")));
  EXPECT_THAT(store().ClaimIdle(r.id, "other", At(99), At(200)),
              StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_EQ(Load("idle").lease_until, At(100));
  // Expired: taken, the record as stored after the claim.
  Result<InstanceRecord> claimed = peer().ClaimIdle(r.id, "me", At(100), At(200));
  ASSERT_THAT(claimed, IsOk());
  EXPECT_EQ(claimed->owner, "me");
  EXPECT_EQ(claimed->lease_until, At(200));
  ASSERT_EQ(claimed->executions.size(), 1u);

  // Parked (owner "", woken at 900): anyone may take it for an event before its wake time.
  InstanceRecord parked = MakeRecord("idle-parked");
  parked.owner = "";
  parked.lease_until = At(900);
  Create(parked);
  claimed = store().ClaimIdle(parked.id, "other", At(150), At(250));
  ASSERT_THAT(claimed, IsOk());
  EXPECT_EQ(claimed->owner, "other");
  EXPECT_EQ(Load("idle-parked").lease_until, At(250));
  // Held now: a second event's claim, by either process, is refused.
  EXPECT_THAT(store().ClaimIdle(parked.id, "other", At(160), At(260)),
              StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_THAT(store().ClaimIdle(parked.id, "me", At(160), At(260)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("other")));
}

TEST_P(StateStoreContractTest, RenewLeasesExtendsOnlyLiveUnfinishedLeasesOfTheOwner) {
  CreateLeased("mine-1", "me", 100, false);
  CreateLeased("mine-2", "me", 150, false);
  CreateLeased("mine-expired", "me", 50, false);
  CreateLeased("mine-released", "me", 60, false);  // lease_until == now: not live
  CreateLeased("mine-finished", "me", 100, true);
  CreateLeased("theirs", "them", 100, false);

  CreateLeased("mine-far", "me", 400, false);  // expires after renew_before: time left

  Result<std::size_t> renewed = store().RenewLeases("me", At(60), At(300), At(500));
  ASSERT_THAT(renewed, IsOk());
  EXPECT_EQ(*renewed, 2u);
  EXPECT_EQ(Load("mine-1").lease_until, At(500));
  EXPECT_EQ(Load("mine-2").lease_until, At(500));
  EXPECT_EQ(Load("mine-far").lease_until, At(400));
  EXPECT_EQ(Load("mine-expired").lease_until, At(50));
  EXPECT_EQ(Load("mine-released").lease_until, At(60));
  EXPECT_EQ(Load("mine-finished").lease_until, At(100));
  EXPECT_EQ(Load("theirs").lease_until, At(100));
  EXPECT_THAT(store().RenewLeases("nobody", At(60), At(300), At(500)), IsOk());
  EXPECT_EQ(*store().RenewLeases("nobody", At(60), At(300), At(500)), 0u);
}

TEST_P(StateStoreContractTest, UnfinishedCountsAndLeasesElsewhere) {
  Result<engine::UnfinishedSummary> empty = store().Unfinished("me", At(0));
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(empty->unfinished, 0u);
  EXPECT_EQ(empty->leased_elsewhere, 0u);
  EXPECT_FALSE(empty->next_expiry.has_value());

  CreateLeased("mine", "me", 500, false);
  CreateLeased("theirs-late", "them", 400, false);
  CreateLeased("theirs-soon", "them", 300, false);
  CreateLeased("theirs-expired", "them", 100, false);
  CreateLeased("theirs-finished", "them", 250, true);

  Result<engine::UnfinishedSummary> summary = store().Unfinished("me", At(200));
  ASSERT_THAT(summary, IsOk());
  EXPECT_EQ(summary->unfinished, 4u);
  EXPECT_EQ(summary->leased_elsewhere, 2u);
  EXPECT_THAT(summary->next_expiry, Optional(At(300)));
}

// --- Lists -----------------------------------------------------------------------------------

class StateStoreListTest : public StateStoreContractTest {
 protected:
  void SetUp() override {
    StateStoreContractTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    Add("a-old", "order_fulfill", 1, RunStatus::kSucceeded);
    Add("b-mid", "order_cancel", 2, RunStatus::kFailed);
    Add("c-new", "order_fulfill", 3, RunStatus::kFailed);
    Add("d-newest", "order_fulfill", 4, RunStatus::kRunning);
  }
  void Add(const std::string& id, const std::string& flow, int started, RunStatus status) {
    InstanceRecord r = MakeRecord(id, flow, At(started), "key-" + id);
    r.owner = "owner-" + id;
    r.lease_until = At(100 + started);
    ASSERT_THAT(store().CreateInstance(r), IsOk());
    r.status = status;
    if (status != RunStatus::kRunning) {
      r.ended_at = At(started + 10);
      r.compensation_status = RunStatus::kSucceeded;
      r.cursor.phase = Phase::kFinished;
    }
    ASSERT_THAT(store().Write(WriteBatch::Of(r, {}, false)), IsOk());
  }
  std::vector<std::string> List(InstanceFilter filter) {
    Result<std::vector<InstanceSummary>> list = store().ListInstances(filter);
    EXPECT_THAT(list, IsOk());
    return list.ok() ? Ids(*list) : std::vector<std::string>{};
  }
};

TEST_P(StateStoreListTest, NewestFirst) {
  EXPECT_THAT(List({}), ElementsAre("d-newest", "c-new", "b-mid", "a-old"));
}

TEST_P(StateStoreListTest, FiltersByStatusAndFlow) {
  EXPECT_THAT(List({.status = RunStatus::kFailed}), ElementsAre("c-new", "b-mid"));
  EXPECT_THAT(List({.flow_name = "order_fulfill"}), ElementsAre("d-newest", "c-new", "a-old"));
  EXPECT_THAT(List({.status = RunStatus::kFailed, .flow_name = "order_fulfill"}),
              ElementsAre("c-new"));
  EXPECT_THAT(List({.status = RunStatus::kUnknown}), IsEmpty());
  EXPECT_THAT(List({.flow_name = "no_such_flow"}), IsEmpty());
}

TEST_P(StateStoreListTest, LimitKeepsTheNewest) {
  EXPECT_THAT(List({.limit = 2}), ElementsAre("d-newest", "c-new"));
  EXPECT_THAT(List({.flow_name = "order_fulfill", .limit = 1}), ElementsAre("d-newest"));
  EXPECT_THAT(List({.limit = 0}), IsEmpty());
}

TEST_P(StateStoreListTest, SummariesCarryTheHeader) {
  Result<std::vector<InstanceSummary>> list =
      store().ListInstances({.status = RunStatus::kFailed, .flow_name = "order_cancel"});
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  const InstanceSummary& s = list->front();
  EXPECT_EQ(s.id, InstanceId("b-mid"));
  EXPECT_EQ(s.flow_name, "order_cancel");
  EXPECT_EQ(s.flow_version, "1.0.0");
  EXPECT_EQ(s.business_key, "key-b-mid");
  EXPECT_EQ(s.status, RunStatus::kFailed);
  EXPECT_THAT(s.compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_EQ(s.started_at, At(2));
  EXPECT_THAT(s.ended_at, Optional(At(12)));
  EXPECT_EQ(s.owner, "owner-b-mid");
  EXPECT_EQ(s.lease_until, At(102));
  EXPECT_TRUE(s.finished);

  list = store().ListInstances({.status = RunStatus::kRunning});
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_FALSE(list->front().ended_at.has_value());
  EXPECT_FALSE(list->front().finished);
  EXPECT_FALSE(list->front().compensation_status.has_value());
}

// --- Asynchronous writes and group commit ----------------------------------------------------

TEST_P(StateStoreContractTest, AsyncWritesFromManyThreadsCompleteOnceEach) {
  constexpr int kThreads = 8;
  constexpr int kInstancesPerThread = 6;
  constexpr int kSteps = 5;
  constexpr int kWrites = kThreads * kInstancesPerThread * kSteps;
  // calls[instance][step]: how often that write's callback ran; step 0 is the create.
  std::vector<std::atomic<int>> calls(kThreads * kInstancesPerThread * (kSteps + 1));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<InstanceRecord> records;
      for (int i = 0; i < kInstancesPerThread; ++i) {
        records.push_back(MakeRecord("t" + std::to_string(t) + "-i" + std::to_string(i),
                                     "order_fulfill", At(t * 100 + i)));
      }
      auto slot = [&](int i, int step) {
        return static_cast<std::size_t>(((t * kInstancesPerThread) + i) * (kSteps + 1) + step);
      };
      {
        Latch created(kInstancesPerThread);
        for (int i = 0; i < kInstancesPerThread; ++i) {
          store().Create(records[static_cast<std::size_t>(i)],
                                      [&, i](Result<InstanceId> id) {
                                        if (!id.ok()) ++failures;
                                        ++calls[slot(i, 0)];
                                        created.CountDown();
                                      });
        }
        created.Wait();
      }
      for (int step = 0; step < kSteps; ++step) {
        // Every instance of this thread writes its step at once; the record stays unchanged
        // until its callback.
        Latch written(kInstancesPerThread);
        for (int i = 0; i < kInstancesPerThread; ++i) {
          InstanceRecord& r = records[static_cast<std::size_t>(i)];
          r.executions.push_back(
              MakeExecution(step, "S" + std::to_string(step), Json::array({t, i, step})));
          r.executions.back().status = RunStatus::kSucceeded;
          r.cursor.current = step;
          r.updated_at = At(1000 + step);
          const bool last = step == kSteps - 1;
          if (last) {
            r.status = RunStatus::kSucceeded;
            r.cursor.phase = Phase::kFinished;
            r.context = Json{{"thread", t}, {"instance", i}};
          }
          store().Apply(WriteBatch::Of(r, {step}, last), [&, i, step](Status s) {
            if (!s.ok()) ++failures;
            ++calls[slot(i, step + 1)];
            written.CountDown();
          });
        }
        written.Wait();
      }
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(failures.load(), 0);
  for (std::size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].load(), 1) << "callback " << i;
  }
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kInstancesPerThread; ++i) {
      InstanceRecord r = Load("t" + std::to_string(t) + "-i" + std::to_string(i));
      EXPECT_EQ(r.status, RunStatus::kSucceeded);
      ASSERT_EQ(r.executions.size(), static_cast<std::size_t>(kSteps));
      EXPECT_EQ(r.executions[kSteps - 1].input, Json::array({t, i, kSteps - 1}));
      EXPECT_EQ(r.context.get().at("instance"), i);
    }
  }
  if (auto* soci_store = dynamic_cast<SociStateStore*>(store_.get())) {
    const GroupCommitStats stats = soci_store->stats();
    const int items = kWrites + kThreads * kInstancesPerThread;
    EXPECT_EQ(stats.items_written, static_cast<std::uint64_t>(items));
    EXPECT_LT(stats.commits, static_cast<std::uint64_t>(items)) << "no group commit happened";
    EXPECT_GT(stats.largest_batch, 1u);
    std::cout << "[ stats    ] " << GetParam() << ": " << items << " creates+writes in "
              << stats.commits << " commits, largest batch " << stats.largest_batch << "\n";
  }
}

INSTANTIATE_TEST_SUITE_P(AllStores, StateStoreContractTest,
                         ::testing::Values("memory", "sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(AllStores, StateStoreListTest,
                         ::testing::Values("memory", "sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sagaflow::adapters
