// What the SOCI store adds to the StateStore contract (state_store_contract_test.cc): URLs,
// files, migrations, group commit, and failures of the database underneath.

#include "sagaflow/adapters/soci/soci_state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/testing/matchers.h"
#include "test_databases.h"

namespace sagaflow::adapters {
namespace {

using engine::DefinitionRecord;
using engine::InstanceRecord;
using engine::WriteBatch;
using engine::Phase;
using engine::RunStatus;
using engine::StateExecution;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::sagaflow::testing::TestDatabase;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

TimePoint At(int s) { return TimePoint(seconds(1'700'000'000 + s)); }

InstanceRecord MakeRecord(const std::string& id, Json input = Json{{"orderId", "1001"}}) {
  InstanceRecord r;
  r.id = InstanceId(id);
  r.flow_name = "order_fulfill";
  r.flow_version = "1.0.0";
  r.flow_hash = "00000000deadbeef";
  r.input = input;
  r.context = std::move(input);
  r.started_at = r.updated_at = At(0);
  r.owner = "node-a";
  r.lease_until = At(1000);
  return r;
}

StateExecution MakeExecution(int id, const std::string& state, Json input) {
  StateExecution e;
  e.id = id;
  e.state = StateName(state);
  e.idempotency_key = "key:" + state;
  e.attempts = 1;
  e.input = std::move(input);
  e.started_at = At(id);
  return e;
}

// One committer: the batching tests gate it and count its batches.
SociStoreOptions OneCommitter() {
  SociStoreOptions options;
  options.committers = 1;
  return options;
}

// Holds the committer back until Open() is called, so that everything queued meanwhile goes
// into one batch (with one committer, OneCommitter(); with several, only the one the gate's
// instances go to). The committer runs at most one batch ahead of its completer: a first
// instance's callback keeps the completer busy, a second's batch waits to be taken, and a
// third's batch, applied, waits to be handed over, with the committer.
class CommitterGate {
 public:
  explicit CommitterGate(SociStateStore& store) {
    std::shared_future<void> opened = opened_.get_future().share();
    auto first = std::make_shared<InstanceRecord>(MakeRecord("gate-1"));
    auto entered = std::make_shared<std::promise<void>>();
    std::future<void> entered_future = entered->get_future();
    // The callbacks hold their own references: the gate may be gone before they return.
    store.Create(*first, [first, entered, opened](Result<InstanceId>) {
      entered->set_value();
      opened.wait();
    });
    entered_future.wait();
    for (const char* name : {"gate-2", "gate-3"}) {
      const std::uint64_t before = store.stats().batches;
      auto next = std::make_shared<InstanceRecord>(MakeRecord(name));
      store.Create(*next, [next](Result<InstanceId>) {});
      while (store.stats().batches == before) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  }
  ~CommitterGate() { Open(); }
  void Open() {
    if (open_) return;
    open_ = true;
    opened_.set_value();
  }

 private:
  std::promise<void> opened_;
  bool open_ = false;
};

// Tests for both backends.
class SociStateStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") SAGAFLOW_REQUIRE_TEST_POSTGRES();
    db_ = std::make_unique<TestDatabase>(GetParam() == "sqlite" ? TestDatabase::Kind::kSqlite
                                                                : TestDatabase::Kind::kPostgres);
  }

  std::unique_ptr<SociStateStore> Open(SociStoreOptions options = {}) {
    auto opened = db_->Open(std::move(options));
    EXPECT_THAT(opened, IsOk());
    return opened.ok() ? std::move(*opened) : nullptr;
  }

  std::unique_ptr<TestDatabase> db_;
};

TEST_P(SociStateStoreTest, ReopeningFindsEverything) {
  InstanceRecord r = MakeRecord("i1");
  {
    std::unique_ptr<SociStateStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->SaveDefinition({"order_fulfill", "1.0.0", "hash-1", "{\"x\": 1}", At(0)}),
                IsOk());
    ASSERT_THAT(store->CreateInstance(r), IsOk());
    r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
    r.executions[0].status = RunStatus::kSucceeded;
    r.executions[0].output = Json{{"ok", true}};
    r.status = RunStatus::kSucceeded;
    r.cursor.phase = Phase::kFinished;
    r.context = Json{{"done", true}};
    ASSERT_THAT(store->Write(WriteBatch::Of(r, {0}, true)), IsOk());
  }
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  Result<DefinitionRecord> def = store->LoadDefinition("order_fulfill", "hash-1");
  ASSERT_THAT(def, IsOk());
  EXPECT_EQ(def->content, "{\"x\": 1}");
  Result<InstanceRecord> loaded = store->LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kSucceeded);
  EXPECT_TRUE(loaded->finished());
  EXPECT_EQ(loaded->context, (Json{{"done", true}}));
  ASSERT_EQ(loaded->executions.size(), 1u);
  EXPECT_EQ(loaded->executions[0].output, (Json{{"ok", true}}));
  auto list = store->ListInstances({});
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), 1u);
}

TEST_P(SociStateStoreTest, MigrationsAreAppliedOnce) {
  Result<std::vector<int>> first = MigrateDatabase(db_->url(), db_->Options());
  ASSERT_THAT(first, IsOk());
  std::vector<int> all;
  for (int v = 1; v <= LatestSchemaVersion(); ++v) all.push_back(v);
  EXPECT_EQ(*first, all);
  Result<std::vector<int>> again = MigrateDatabase(db_->url(), db_->Options());
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(*again, IsEmpty());
  // Opening applies nothing more either.
  ASSERT_NE(Open(), nullptr);
  EXPECT_EQ(db_->Execute("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(LatestSchemaVersion()));
  EXPECT_EQ(db_->Execute("SELECT COUNT(*) FROM schema_migrations WHERE version = 1 AND "
                         "description <> '' AND applied_at > 0"),
            "1");
}

TEST_P(SociStateStoreTest, LeaseIndexesHoldRunningInstancesOnly) {
  ASSERT_NE(Open(), nullptr);
  const bool sqlite = GetParam() == "sqlite";
  for (const char* index : {"instances_claim", "instances_owner"}) {
    const std::string definition =
        sqlite ? db_->Execute(std::string("SELECT sql FROM sqlite_master WHERE name = '") + index +
                              "'")
               : db_->Execute(std::string("SELECT indexdef FROM pg_indexes WHERE indexname = '") +
                              index + "' AND schemaname = current_schema()");
    EXPECT_THAT(definition, HasSubstr("unfinished = 1")) << index;
  }
  if (!sqlite) {
    EXPECT_THAT(db_->Execute("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE "
                             "relname = 'instances' AND relnamespace = current_schema()::regnamespace"),
                HasSubstr("fillfactor=50"));
  }
  // The queries that use them still answer: a running instance is found, a finished one not.
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord running = MakeRecord("running");
  running.owner = "engine-a";
  running.lease_until = TimePoint(std::chrono::seconds(100));
  InstanceRecord done = MakeRecord("done");
  done.owner = "engine-a";
  done.lease_until = TimePoint(std::chrono::seconds(100));
  done.cursor.phase = engine::Phase::kFinished;
  ASSERT_THAT(store->CreateInstance(running), IsOk());
  ASSERT_THAT(store->CreateInstance(done), IsOk());
  auto claimed = store->ClaimDue("engine-b", TimePoint(std::chrono::seconds(200)),
                                     TimePoint(std::chrono::seconds(300)), 10);
  ASSERT_THAT(claimed, IsOk());
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0], running.id);
  auto renewed = store->RenewLeases("engine-b", TimePoint(std::chrono::seconds(250)),
                                    TimePoint(std::chrono::seconds(350)),
                                    TimePoint(std::chrono::seconds(400)));
  ASSERT_THAT(renewed, IsOk());
  EXPECT_EQ(*renewed, 1u);
}

// Schema version 3 drops the executions' foreign key: a database at version 2 (with the key,
// without version 4's deadline column or version 5's outbox) keeps every row through
// migrations 3 to 5, SQLite's rebuilt table included.
TEST_P(SociStateStoreTest, MigrationThreeDropsTheExecutionsForeignKeyAndKeepsTheRows) {
  const bool sqlite = GetParam() == "sqlite";
  const std::string foreign_keys =
      sqlite ? "SELECT COUNT(*) FROM pragma_foreign_key_list('state_executions')"
             : "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' AND "
               "conrelid = 'state_executions'::regclass";
  InstanceRecord r = MakeRecord("kept");
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.executions.push_back(MakeExecution(1, "B", Json{{"b", 2}}));
  {
    std::unique_ptr<SociStateStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->CreateInstance(r), IsOk());
  }
  EXPECT_EQ(db_->Execute(foreign_keys), "0");

  // Back to version 2's table, rows and all.
  const std::string v2 =
      sqlite ? R"(PRAGMA foreign_keys = OFF;
         CREATE TABLE state_executions_v2 (
           instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
           seq INTEGER NOT NULL, state TEXT NOT NULL, state_index INTEGER NOT NULL,
           kind TEXT NOT NULL, compensates INTEGER NOT NULL, retried_for INTEGER NOT NULL,
           epoch INTEGER NOT NULL, attempts INTEGER NOT NULL, status TEXT NOT NULL,
           compensation_status TEXT, superseded INTEGER NOT NULL, for_update INTEGER NOT NULL,
           retry_counts TEXT NOT NULL, retry_at BIGINT, idempotency_key TEXT NOT NULL,
           input TEXT NOT NULL, output TEXT NOT NULL, error TEXT, started_at BIGINT NOT NULL,
           ended_at BIGINT, PRIMARY KEY (instance_id, seq));
         INSERT INTO state_executions_v2 SELECT instance_id, seq, state, state_index, kind,
           compensates, retried_for, epoch, attempts, status, compensation_status, superseded,
           for_update, retry_counts, retry_at, idempotency_key, input, output, error,
           started_at, ended_at FROM state_executions;
         DROP TABLE state_executions;
         ALTER TABLE state_executions_v2 RENAME TO state_executions;
         DROP TABLE dispatches;
         DELETE FROM schema_migrations WHERE version >= 3;)"
             : "ALTER TABLE state_executions ADD CONSTRAINT state_executions_instance_id_fkey "
               "FOREIGN KEY (instance_id) REFERENCES instances (id) ON DELETE CASCADE; "
               "ALTER TABLE state_executions DROP COLUMN deadline_at; "
               "DROP TABLE dispatches; "
               "DELETE FROM schema_migrations WHERE version >= 3";
  ASSERT_THAT(db_->Execute(v2), Not(HasSubstr("ERROR")));
  ASSERT_EQ(db_->Execute(foreign_keys), "1");

  Result<std::vector<int>> applied = MigrateDatabase(db_->url(), db_->Options());
  ASSERT_THAT(applied, IsOk());
  EXPECT_THAT(*applied, ElementsAre(3, 4, 5));
  EXPECT_EQ(db_->Execute(foreign_keys), "0");

  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  Result<InstanceRecord> loaded = store->LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->executions.size(), 2u);
  EXPECT_EQ(loaded->executions[0].input, Json::array({"a"}));
  EXPECT_EQ(loaded->executions[1].state, StateName("B"));
  EXPECT_EQ(loaded->executions[1].input, (Json{{"b", 2}}));
  // And the table takes new rows.
  r.executions.push_back(MakeExecution(2, "C", Json::array()));
  ASSERT_THAT(store->Write(WriteBatch::Of(r, {2}, false)), IsOk());
  loaded = store->LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->executions.size(), 3u);
}

TEST_P(SociStateStoreTest, OpeningAFreshDatabaseMigratesIt) {
  ASSERT_NE(Open(), nullptr);
  EXPECT_EQ(db_->Execute("SELECT MAX(version) FROM schema_migrations"),
            std::to_string(LatestSchemaVersion()));
  Result<std::vector<int>> again = MigrateDatabase(db_->url(), db_->Options());
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(*again, IsEmpty());
}

TEST_P(SociStateStoreTest, ConcurrentMigratorsApplyEachVersionOnce) {
  constexpr int kThreads = 4;
  std::vector<Result<std::vector<int>>> results(kThreads, Status(StatusCode::kInternal, "unset"));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      results[static_cast<std::size_t>(t)] = MigrateDatabase(db_->url(), db_->Options());
    });
  }
  for (auto& th : threads) th.join();
  int applied = 0;
  for (const auto& r : results) {
    ASSERT_THAT(r, IsOk());
    applied += static_cast<int>(r->size());
  }
  EXPECT_EQ(applied, LatestSchemaVersion());
  EXPECT_EQ(db_->Execute("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(LatestSchemaVersion()));
}

TEST_P(SociStateStoreTest, ANewerSchemaIsRefused) {
  ASSERT_THAT(MigrateDatabase(db_->url(), db_->Options()), IsOk());
  ASSERT_EQ(db_->Execute("INSERT INTO schema_migrations (version, description, applied_at) "
                         "VALUES (999, 'from the future', 1)"),
            "");
  EXPECT_THAT(db_->Open(), StatusIs(StatusCode::kFailedPrecondition,
                                    AllOf(HasSubstr("999"), HasSubstr("newer"))));
  EXPECT_THAT(MigrateDatabase(db_->url(), db_->Options()),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("999")));
}

TEST_P(SociStateStoreTest, CorruptStoredDataIsAnInternalErrorNamingTheColumn) {
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  ASSERT_THAT(store->CreateInstance(r), IsOk());
  ASSERT_THAT(store->CreateInstance(MakeRecord("i2")), IsOk());

  ASSERT_EQ(db_->Execute("UPDATE instances SET cursor = '{\"phase\": \"sideways\"}' "
                         "WHERE id = 'i1'"),
            "");
  EXPECT_THAT(store->LoadInstance(r.id),
              StatusIs(StatusCode::kInternal, AllOf(HasSubstr("instance i1"), HasSubstr("cursor"),
                                                    HasSubstr("sideways"))));
  ASSERT_EQ(db_->Execute("UPDATE instances SET status = 'XX' WHERE id = 'i2'"), "");
  EXPECT_THAT(store->LoadInstance(InstanceId("i2")),
              StatusIs(StatusCode::kInternal, AllOf(HasSubstr("status"), HasSubstr("XX"))));
  EXPECT_THAT(store->ListInstances({}), StatusIs(StatusCode::kInternal, HasSubstr("XX")));
  ASSERT_EQ(db_->Execute("UPDATE instances SET status = 'RU', "
                         "cursor = (SELECT cursor FROM instances WHERE id = 'i2') WHERE id = 'i1'"),
            "");
  ASSERT_EQ(
      db_->Execute("UPDATE state_executions SET output = '{not json' WHERE instance_id = 'i1'"),
      "");
  EXPECT_THAT(
      store->LoadInstance(r.id),
      StatusIs(StatusCode::kInternal, AllOf(HasSubstr("execution 0"), HasSubstr("output"))));
  // Loaded together, a corrupt instance fails alone.
  ASSERT_THAT(store->CreateInstance(MakeRecord("i3")), IsOk());
  Result<std::vector<Result<InstanceRecord>>> loaded =
      store->LoadInstances({r.id, InstanceId("i3"), InstanceId("i2")});
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->size(), 3u);
  EXPECT_THAT((*loaded)[0], StatusIs(StatusCode::kInternal, HasSubstr("output")));
  ASSERT_THAT((*loaded)[1], IsOk());
  EXPECT_EQ((*loaded)[1]->id, InstanceId("i3"));
  EXPECT_THAT((*loaded)[2], StatusIs(StatusCode::kInternal, HasSubstr("XX")));
}

TEST_P(SociStateStoreTest, ARefusedItemDoesNotFailTheOthersOfItsBatch) {
  std::unique_ptr<SociStateStore> store = Open(OneCommitter());
  ASSERT_NE(store, nullptr);
  constexpr int kInstances = 30;
  std::vector<InstanceRecord> records;
  for (int i = 0; i < kInstances; ++i) records.push_back(MakeRecord("i" + std::to_string(i)));
  for (const auto& r : records) ASSERT_THAT(store->CreateInstance(r), IsOk());
  // One write from an owner that lost the lease, one for an instance that does not exist, one
  // create that conflicts on its business key; all queued with good writes around them.
  records[10].owner = "node-z";
  InstanceRecord ghost = MakeRecord("ghost");
  InstanceRecord keyed = MakeRecord("keyed");
  keyed.business_key = "k";
  ASSERT_THAT(store->CreateInstance(keyed), IsOk());
  InstanceRecord conflicting = MakeRecord("conflicting", Json{{"other", 1}});
  conflicting.business_key = "k";

  std::vector<std::promise<Status>> done(kInstances + 2);
  std::promise<Result<InstanceId>> conflict_done;
  CommitterGate gate(*store);
  for (int i = 0; i < kInstances; ++i) {
    records[static_cast<std::size_t>(i)].status = RunStatus::kSucceeded;
    store->Apply(
        WriteBatch::Of(records[static_cast<std::size_t>(i)], {}, false),
        [&done, i](Status s) { done[static_cast<std::size_t>(i)].set_value(s); });
    if (i == 15) {
      store->Apply(WriteBatch::Of(ghost, {}, false),
                                [&done](Status s) { done[kInstances].set_value(s); });
      store->Create(conflicting, [&conflict_done](Result<InstanceId> id) {
        conflict_done.set_value(std::move(id));
      });
    }
  }
  gate.Open();
  for (int i = 0; i < kInstances; ++i) {
    Status s = done[static_cast<std::size_t>(i)].get_future().get();
    if (i == 10) {
      EXPECT_THAT(s, StatusIs(StatusCode::kFailedPrecondition, HasSubstr("lease lost")));
    } else {
      EXPECT_THAT(s, IsOk()) << i;
    }
  }
  EXPECT_THAT(done[kInstances].get_future().get(), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(conflict_done.get_future().get(), StatusIs(StatusCode::kConflict));
  for (int i = 0; i < kInstances; ++i) {
    Result<InstanceRecord> loaded = store->LoadInstance(records[static_cast<std::size_t>(i)].id);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(loaded->status, i == 10 ? RunStatus::kRunning : RunStatus::kSucceeded) << i;
  }
  const GroupCommitStats stats = store->stats();
  EXPECT_EQ(stats.items_refused, 3u);
  EXPECT_GE(stats.largest_batch, static_cast<std::uint64_t>(kInstances + 2));
  EXPECT_EQ(stats.commits, stats.batches);  // refusals need no retry
}

TEST_P(SociStateStoreTest, RequestsOfOneInstanceInOneBatchApplyInOrder) {
  std::unique_ptr<SociStateStore> store = Open(OneCommitter());
  ASSERT_NE(store, nullptr);
  // Three requests for one instance, and one for another, in one batch. Each request has its
  // own record (a caller may not change a record before its callback).
  InstanceRecord created = MakeRecord("i1");
  InstanceRecord first = created;
  first.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  first.status = RunStatus::kFailed;
  first.context = Json{{"step", 1}};
  InstanceRecord second = first;
  second.executions[0].attempts = 2;
  second.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  second.status = RunStatus::kSucceeded;
  InstanceRecord other = MakeRecord("i2");

  std::vector<std::promise<Status>> done(4);
  {
    CommitterGate gate(*store);
    store->Create(created,
                               [&](Result<InstanceId> id) { done[0].set_value(id.status()); });
    store->Apply(WriteBatch::Of(first, {0}, true),
                              [&](Status s) { done[1].set_value(s); });
    store->Create(other,
                               [&](Result<InstanceId> id) { done[2].set_value(id.status()); });
    store->Apply(WriteBatch::Of(second, {0, 1}, false),
                              [&](Status s) { done[3].set_value(s); });
  }
  for (auto& d : done) EXPECT_THAT(d.get_future().get(), IsOk());
  const GroupCommitStats stats = store->stats();
  EXPECT_GE(stats.largest_batch, 4u);
  EXPECT_EQ(stats.commits, stats.batches);  // one transaction, no retry item by item
  Result<InstanceRecord> loaded = store->LoadInstance(created.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kSucceeded);
  EXPECT_EQ(loaded->context, (Json{{"step", 1}}));
  ASSERT_EQ(loaded->executions.size(), 2u);
  EXPECT_EQ(loaded->executions[0].attempts, 2);
  EXPECT_EQ(loaded->executions[1].state, StateName("B"));
  EXPECT_THAT(store->LoadInstance(other.id), IsOk());
}

TEST_P(SociStateStoreTest, AWriteListingAnExecutionTheRecordLacksIsRefused) {
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store->CreateInstance(r), IsOk());
  r.status = RunStatus::kFailed;
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  EXPECT_THAT(store->Write(WriteBatch::Of(r, {0, 3}, true)),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("execution 3")));
  Result<InstanceRecord> loaded = store->LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kRunning);
  EXPECT_TRUE(loaded->executions.empty());
  InstanceRecord misnumbered = MakeRecord("i2");
  misnumbered.executions.push_back(MakeExecution(4, "A", Json::array()));
  EXPECT_THAT(store->CreateInstance(misnumbered), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(store->LoadInstance(misnumbered.id), StatusIs(StatusCode::kNotFound));
}

TEST_P(SociStateStoreTest, StoredExecutionsGetTheirProgressUpdatedInPlace) {
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord r = MakeRecord("i1");
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  ASSERT_THAT(store->CreateInstance(r), IsOk());

  // Execution 0 is stored: the batch carries its progress; execution 1 is new.
  r.executions[0].status = RunStatus::kSucceeded;
  r.executions[0].output = Json{{"done", true}};
  r.executions[0].ended_at = TimePoint(std::chrono::seconds(1'700'000'005));
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  WriteBatch batch = WriteBatch::Of(r, {1}, false);
  batch.progress.push_back(engine::ExecutionProgress::Of(r.executions[0]));
  ASSERT_THAT(store->Write(batch), IsOk());

  // Progress for an execution no batch stored: refused, and nothing of its batch applied.
  InstanceRecord other = MakeRecord("i2");
  ASSERT_THAT(store->CreateInstance(other), IsOk());
  other.executions.push_back(MakeExecution(0, "C", Json::array({"c"})));
  other.executions[0].status = RunStatus::kFailed;
  other.cursor.current = 3;
  WriteBatch wrong = WriteBatch::Of(other, {}, false);
  wrong.progress.push_back(engine::ExecutionProgress::Of(other.executions[0]));
  EXPECT_THAT(store->Write(wrong), StatusIs(StatusCode::kInvalidArgument));

  Result<InstanceRecord> loaded = store->LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->executions.size(), 2u);
  EXPECT_EQ(loaded->executions[0].status, RunStatus::kSucceeded);
  EXPECT_EQ(loaded->executions[0].output, (Json{{"done", true}}));
  EXPECT_EQ(loaded->executions[0].ended_at, r.executions[0].ended_at);
  EXPECT_EQ(loaded->executions[0].input, Json::array({"a"}));  // identity and input kept
  EXPECT_EQ(loaded->executions[0].idempotency_key, r.executions[0].idempotency_key);
  EXPECT_EQ(loaded->executions[1].state, StateName("B"));
  EXPECT_EQ(loaded->executions[1].input, Json::array({"b"}));
  Result<InstanceRecord> loaded_other = store->LoadInstance(other.id);
  ASSERT_THAT(loaded_other, IsOk());
  EXPECT_TRUE(loaded_other->executions.empty());
  EXPECT_NE(loaded_other->cursor.current, 3);
}

TEST_P(SociStateStoreTest, ARepeatedCreateOfTheSameInstanceReturnsItsId) {
  // A create whose commit succeeded but whose answer was lost is retried by the caller.
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store->CreateInstance(r), IsOk());
  Result<InstanceId> again = store->CreateInstance(r);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, r.id);
  InstanceRecord different = MakeRecord("i1", Json{{"orderId", "other"}});
  EXPECT_THAT(store->CreateInstance(different), StatusIs(StatusCode::kAlreadyExists));
}

TEST_P(SociStateStoreTest, DestructionDrainsTheQueue) {
  constexpr int kInstances = 200;
  std::vector<InstanceRecord> records;
  for (int i = 0; i < kInstances; ++i) records.push_back(MakeRecord("i" + std::to_string(i)));
  std::atomic<int> ok{0};
  std::atomic<int> called{0};
  {
    std::unique_ptr<SociStateStore> store = Open();
    ASSERT_NE(store, nullptr);
    for (auto& r : records) {
      store->Create(r, [&](Result<InstanceId> id) {
        if (id.ok()) ++ok;
        ++called;
      });
    }
  }  // every callback has run when the destructor returns
  EXPECT_EQ(called.load(), kInstances);
  EXPECT_EQ(ok.load(), kInstances);
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  auto list = store->ListInstances({.limit = 1000});
  ASSERT_THAT(list, IsOk());
  EXPECT_EQ(list->size(), static_cast<std::size_t>(kInstances));
}

TEST_P(SociStateStoreTest, AfterStopWritesAreRefusedAndReadsWork) {
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store->CreateInstance(r), IsOk());
  store->Stop();
  store->Stop();  // idempotent
  EXPECT_THAT(store->Write(WriteBatch::Of(r, {}, false)),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("stopped")));
  EXPECT_THAT(store->CreateInstance(MakeRecord("i2")), StatusIs(StatusCode::kFailedPrecondition));
  bool called = false;
  store->Apply(WriteBatch::Of(r, {}, false), [&](Status s) {
    called = true;
    EXPECT_THAT(s, StatusIs(StatusCode::kFailedPrecondition));
  });
  EXPECT_TRUE(called);
  EXPECT_THAT(store->LoadInstance(r.id), IsOk());
}

TEST_P(SociStateStoreTest, ACallbackMayWriteSynchronously) {
  std::unique_ptr<SociStateStore> store = Open();
  ASSERT_NE(store, nullptr);
  InstanceRecord first = MakeRecord("i1");
  InstanceRecord second = MakeRecord("i2");
  std::promise<Status> done;
  store->Create(first, [&](Result<InstanceId> id) {
    if (!id.ok()) {
      done.set_value(id.status());
      return;
    }
    // On the committer thread: must not wait for its own queue.
    Result<InstanceId> created = store->CreateInstance(second);
    if (!created.ok()) {
      done.set_value(created.status());
      return;
    }
    second.status = RunStatus::kFailed;
    done.set_value(store->Write(WriteBatch::Of(second, {}, false)));
  });
  auto future = done.get_future();
  ASSERT_EQ(future.wait_for(seconds(20)), std::future_status::ready);
  EXPECT_THAT(future.get(), IsOk());
  Result<InstanceRecord> loaded = store->LoadInstance(second.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kFailed);
}

TEST_P(SociStateStoreTest, SmallBatchesStillCommitEverything) {
  std::unique_ptr<SociStateStore> store = Open({.max_batch = 3});
  ASSERT_NE(store, nullptr);
  constexpr int kInstances = 40;
  std::vector<InstanceRecord> records;
  for (int i = 0; i < kInstances; ++i) records.push_back(MakeRecord("i" + std::to_string(i)));
  std::vector<std::promise<Result<InstanceId>>> done(kInstances);
  for (int i = 0; i < kInstances; ++i) {
    store->Create(records[static_cast<std::size_t>(i)],
                               [&done, i](Result<InstanceId> id) {
                                 done[static_cast<std::size_t>(i)].set_value(std::move(id));
                               });
  }
  for (auto& d : done) EXPECT_THAT(d.get_future().get(), IsOk());
  const GroupCommitStats stats = store->stats();
  EXPECT_LE(stats.largest_batch, 3u);
  EXPECT_GE(stats.commits, static_cast<std::uint64_t>(kInstances / 3));
  EXPECT_EQ(stats.items_written, static_cast<std::uint64_t>(kInstances));
}

INSTANTIATE_TEST_SUITE_P(Backends, SociStateStoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// --- URLs --------------------------------------------------------------------------------------

TEST(SociStoreUrlTest, UnsupportedUrlsNameTheAcceptedForms) {
  for (const std::string url : {"", "mysql://u:secret@h/db", "sagaflow.db", "sqlite", "http://x"}) {
    Result<std::unique_ptr<SociStateStore>> store = OpenSociStore(url);
    EXPECT_THAT(store, StatusIs(StatusCode::kInvalidArgument,
                                AllOf(HasSubstr("sqlite:PATH"), HasSubstr("postgresql://"),
                                      Not(HasSubstr("secret")))))
        << url;
  }
  EXPECT_THAT(OpenSociStore("sqlite:"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(OpenSociStore("sqlite::memory:"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("in-memory")));
  EXPECT_THAT(MigrateDatabase("redis://x"), StatusIs(StatusCode::kInvalidArgument));
}

TEST(SociStoreUrlTest, ABadPostgresUrlIsInvalid) {
  EXPECT_THAT(OpenSociStore("postgresql://u:secret@localhost/db?no_such_option=1"),
              StatusIs(StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("no_such_option"), Not(HasSubstr("secret")))));
  EXPECT_THAT(OpenSociStore("postgresql://localhost/db", {.schema = "bad name; DROP"}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("schema")));
}

TEST(SociStoreUrlTest, AnUnreachablePostgresIsUnavailableQuickly) {
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<SociStateStore>> store = OpenSociStore(
      "postgresql://sagaflow:secret@127.0.0.1:1/sagaflow", {.connect_timeout = seconds(2)});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(store, StatusIs(StatusCode::kUnavailable,
                              AllOf(HasSubstr("127.0.0.1:1"), HasSubstr("refused"),
                                    Not(HasSubstr("secret")))));
  EXPECT_LT(took, seconds(3));
  EXPECT_THAT(MigrateDatabase("postgres://127.0.0.1:1/sagaflow"),
              StatusIs(StatusCode::kUnavailable));
}

// --- SQLite ------------------------------------------------------------------------------------

class SqliteStoreTest : public ::testing::Test {
 protected:
  TestDatabase db_{TestDatabase::Kind::kSqlite};
};

TEST_F(SqliteStoreTest, AMissingDirectoryIsAClearError) {
  const std::string url = "sqlite:" + db_.path() + ".d/no/such/dir/store.db";
  EXPECT_THAT(OpenSociStore(url),
              StatusIs(StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("no/such/dir"), HasSubstr("does not exist"))));
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseIsAClearError) {
  {
    std::ofstream out(db_.path());
    out << "these are not the pages you are looking for\n";
    for (int i = 0; i < 200; ++i) out << "0123456789abcdef";
  }
  EXPECT_THAT(OpenSociStore(db_.url()),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("not a SQLite database")));
  const std::string dir_url = "sqlite:" + std::filesystem::path(db_.path()).parent_path().string();
  EXPECT_THAT(OpenSociStore(dir_url), StatusIs(StatusCode::kInvalidArgument));
}

TEST_F(SqliteStoreTest, TheFileIsCreatedInWalModeAndTripleSlashUrlsWork) {
  ASSERT_FALSE(std::filesystem::exists(db_.path()));
  Result<std::unique_ptr<SociStateStore>> store = OpenSociStore("sqlite://" + db_.path());
  ASSERT_THAT(store, IsOk());
  EXPECT_TRUE(std::filesystem::exists(db_.path()));
  EXPECT_EQ(db_.Execute("PRAGMA journal_mode"), "wal");
  EXPECT_EQ((*store)->display_url(), "sqlite:" + db_.path());
  Result<std::unique_ptr<SociStateStore>> normal =
      OpenSociStore(db_.url(), {.durability = SociStoreOptions::Durability::kNormal});
  ASSERT_THAT(normal, IsOk());
  ASSERT_THAT((*normal)->CreateInstance(MakeRecord("i1")), IsOk());
  EXPECT_THAT((*store)->LoadInstance(InstanceId("i1")), IsOk());
}

// With durability kFull a write is reported done only once the WAL holding its commit is
// flushed: when the WAL file cannot be flushed (here it is gone), the write is kUnavailable,
// never OK. With kNormal nothing is flushed, and the same write succeeds.
TEST_F(SqliteStoreTest, AWriteIsReportedDoneOnlyOnceItsWalIsFlushed) {
  Result<std::unique_ptr<SociStateStore>> store = OpenSociStore(db_.url());
  ASSERT_THAT(store, IsOk());
  ASSERT_THAT((*store)->CreateInstance(MakeRecord("i1")), IsOk());
  const std::string wal = db_.path() + "-wal";
  ASSERT_TRUE(std::filesystem::exists(wal));
  std::filesystem::remove(wal);
  EXPECT_THAT((*store)->CreateInstance(MakeRecord("i2")),
              StatusIs(StatusCode::kUnavailable, AllOf(HasSubstr("WAL"), HasSubstr(wal))));
  (*store)->Stop();

  TestDatabase other(TestDatabase::Kind::kSqlite);
  Result<std::unique_ptr<SociStateStore>> normal =
      OpenSociStore(other.url(), {.durability = SociStoreOptions::Durability::kNormal});
  ASSERT_THAT(normal, IsOk());
  ASSERT_THAT((*normal)->CreateInstance(MakeRecord("i1")), IsOk());
  std::filesystem::remove(other.path() + "-wal");
  EXPECT_THAT((*normal)->CreateInstance(MakeRecord("i2")), IsOk());
}

// A batch whose last item the database refuses (a child with the id of another instance) is
// retried item by item, and the refused item closes the connection last. The commits before it
// were checkpointed into the database by that close, which also deleted the WAL file: they are
// done, not "cannot find the WAL file".
TEST_F(SqliteStoreTest, ARefusedLastItemOfABatchLeavesTheOthersDone) {
  Result<std::unique_ptr<SociStateStore>> opened = OpenSociStore(db_.url(), OneCommitter());
  ASSERT_THAT(opened, IsOk());
  SociStateStore& store = **opened;
  ASSERT_THAT(store.CreateInstance(MakeRecord("taken")), IsOk());
  constexpr int kParents = 6;
  std::vector<WriteBatch> batches;
  for (int i = 0; i < kParents; ++i) {
    InstanceRecord parent = MakeRecord("p" + std::to_string(i));
    ASSERT_THAT(store.CreateInstance(parent), IsOk());
    parent.status = RunStatus::kSucceeded;
    WriteBatch b = WriteBatch::Of(parent, {}, false);
    b.children.push_back(MakeRecord(i == kParents - 1 ? "taken" : "c" + std::to_string(i),
                                    Json{{"orderId", "child"}}));
    batches.push_back(std::move(b));
  }
  std::vector<std::promise<Status>> done(kParents);
  {
    CommitterGate gate(store);
    for (int i = 0; i < kParents; ++i) {
      store.Apply(batches[static_cast<std::size_t>(i)], [&done, i](Status s) {
        done[static_cast<std::size_t>(i)].set_value(std::move(s));
      });
    }
  }
  for (int i = 0; i < kParents; ++i) {
    const Status s = done[static_cast<std::size_t>(i)].get_future().get();
    if (i == kParents - 1) {
      EXPECT_THAT(s, StatusIs(StatusCode::kAlreadyExists));
      continue;
    }
    EXPECT_THAT(s, IsOk()) << i;
    EXPECT_THAT(store.LoadInstance(InstanceId("c" + std::to_string(i))), IsOk()) << i;
    Result<InstanceRecord> parent = store.LoadInstance(InstanceId("p" + std::to_string(i)));
    ASSERT_THAT(parent, IsOk());
    EXPECT_EQ(parent->status, RunStatus::kSucceeded) << i;
  }
  EXPECT_GE(store.stats().largest_batch, static_cast<std::uint64_t>(kParents));
}

// The store's connection cannot get the write lock (another process holds it) within the busy
// timeout: the write fails with kUnavailable, nothing of it is visible, and once the lock is
// released the next write succeeds.
TEST_F(SqliteStoreTest, AWriteRefusedForALockIsUnavailableAndLeavesNothing) {
  Result<std::unique_ptr<SociStateStore>> opened =
      OpenSociStore(db_.url(), {.busy_timeout = std::chrono::milliseconds(200)});
  ASSERT_THAT(opened, IsOk());
  SociStateStore& store = **opened;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_.path().c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  r.status = RunStatus::kFailed;
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.context = Json{{"changed", true}};
  EXPECT_THAT(store.Write(WriteBatch::Of(r, {0}, true)),
              StatusIs(StatusCode::kUnavailable, HasSubstr("locked")));
  EXPECT_THAT(store.CreateInstance(MakeRecord("i2")), StatusIs(StatusCode::kUnavailable));
  // Readers are not blocked (WAL) and see nothing of the refused writes.
  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kRunning);
  EXPECT_TRUE(loaded->executions.empty());
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}}));
  EXPECT_THAT(store.LoadInstance(InstanceId("i2")), StatusIs(StatusCode::kNotFound));
  EXPECT_GE(store.stats().items_failed, 2u);

  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0}, true)), IsOk());
  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kFailed);
  EXPECT_EQ(loaded->executions.size(), 1u);
  EXPECT_EQ(loaded->context, (Json{{"changed", true}}));
}

// The disk fills up (here: the file size limit) in the middle of a commit.
TEST_F(SqliteStoreTest, AWriteRefusedForAFullDiskIsUnavailableAndLeavesNothing) {
  Result<std::unique_ptr<SociStateStore>> opened = OpenSociStore(db_.url());
  ASSERT_THAT(opened, IsOk());
  SociStateStore& store = **opened;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());

  const std::string wal = db_.path() + "-wal";
  ASSERT_TRUE(std::filesystem::exists(wal));
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = static_cast<rlim_t>(std::filesystem::file_size(wal));
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);

  // Far more than the log holds: the commit must grow it past the limit.
  r.context = Json{{"blob", std::string(4 << 20, 'x')}};
  r.status = RunStatus::kSucceeded;
  const Status refused = store.Write(WriteBatch::Of(r, {}, true));

  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, previous);
  EXPECT_THAT(refused, StatusIs(StatusCode::kUnavailable));

  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kRunning);
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}}));

  ASSERT_THAT(store.Write(WriteBatch::Of(r, {}, true)), IsOk());
  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kSucceeded);
  EXPECT_EQ(loaded->context.get().at("blob").get<std::string>().size(), 4u << 20);
}

// --- PostgreSQL --------------------------------------------------------------------------------

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SAGAFLOW_REQUIRE_TEST_POSTGRES();
    db_ = std::make_unique<TestDatabase>(TestDatabase::Kind::kPostgres);
  }
  // Terminates every connection of the store under test, as an administrator or a failover
  // would.
  int KillStoreConnections() {
    const std::string n = db_->Execute(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '" +
        db_->application_name() + "'");
    return n.rfind("ERROR", 0) == 0 ? -1 : std::stoi(n);
  }
  // A store with `committers` committer threads, and `n` instances created in it, named
  // `prefix` and their number.
  std::unique_ptr<SociStateStore> OpenWithInstances(std::size_t committers,
                                                    const std::string& prefix, int n,
                                                    std::vector<InstanceRecord>& records) {
    SociStoreOptions options;
    options.committers = committers;
    Result<std::unique_ptr<SociStateStore>> opened = db_->Open(options);
    if (!opened.ok()) {
      ADD_FAILURE() << opened.status().ToString();
      return nullptr;
    }
    for (int i = 0; i < n; ++i) {
      records.push_back(MakeRecord(prefix + std::to_string(i)));
      if (Result<InstanceId> id = (*opened)->CreateInstance(records.back()); !id.ok()) {
        ADD_FAILURE() << id.status().ToString();
        return nullptr;
      }
    }
    return std::move(*opened);
  }
  std::unique_ptr<TestDatabase> db_;
};

// Several committers: each instance's writes go to one of them, in the order submitted, and
// every write lands.
TEST_F(PostgresStoreTest, ParallelCommittersApplyEachInstancesWritesInOrder) {
  constexpr int kInstances = 40;
  constexpr int kWrites = 5;
  std::vector<InstanceRecord> records;
  std::unique_ptr<SociStateStore> opened = OpenWithInstances(3, "p", kInstances, records);
  ASSERT_NE(opened, nullptr);
  SociStateStore& store = *opened;

  // Write k of an instance sets its cursor to k; all of them queued at once, without waiting.
  std::vector<std::vector<InstanceRecord>> versions(kInstances);
  std::vector<std::promise<Status>> done(kInstances * kWrites);
  for (int i = 0; i < kInstances; ++i) {
    for (int k = 1; k <= kWrites; ++k) {
      InstanceRecord& v = versions[static_cast<std::size_t>(i)].emplace_back(
          records[static_cast<std::size_t>(i)]);
      v.cursor.current = k;
    }
  }
  for (int k = 1; k <= kWrites; ++k) {
    for (int i = 0; i < kInstances; ++i) {
      const auto slot = static_cast<std::size_t>(i * kWrites + k - 1);
      store.Apply(
          WriteBatch::Of(versions[static_cast<std::size_t>(i)][static_cast<std::size_t>(k - 1)], {}, false, false),
          [&done, slot](Status s) { done[slot].set_value(std::move(s)); });
    }
  }
  for (auto& d : done) EXPECT_THAT(d.get_future().get(), IsOk());
  for (const InstanceRecord& r : records) {
    Result<InstanceRecord> loaded = store.LoadInstance(r.id);
    ASSERT_THAT(loaded, IsOk());
    EXPECT_EQ(loaded->cursor.current, kWrites) << r.id.str();
  }
  EXPECT_EQ(store.stats().items_written,
            static_cast<std::uint64_t>(kInstances + kInstances * kWrites));
}

// A callback (on a completer thread) writing synchronously has its write applied by its own
// committer, whichever committer the instance goes to: callbacks of several committers, each
// writing another's instance, do not wait for each other.
TEST_F(PostgresStoreTest, SynchronousWritesFromCallbacksOfSeveralCommittersDoNotDeadlock) {
  constexpr int kInstances = 16;
  std::vector<InstanceRecord> records;
  std::unique_ptr<SociStateStore> opened = OpenWithInstances(4, "d", kInstances, records);
  ASSERT_NE(opened, nullptr);
  SociStateStore& store = *opened;
  std::vector<InstanceRecord> firsts = records;
  std::vector<InstanceRecord> seconds = records;
  std::vector<std::promise<Status>> done(kInstances);
  for (int i = 0; i < kInstances; ++i) {
    firsts[static_cast<std::size_t>(i)].cursor.current = 1;
    seconds[static_cast<std::size_t>(i)].cursor.current = 2;
  }
  for (int i = 0; i < kInstances; ++i) {
    // The callback of instance i's write writes instance i+1 (another committer, mostly).
    const auto next = static_cast<std::size_t>((i + 1) % kInstances);
    store.Apply(
        WriteBatch::Of(firsts[static_cast<std::size_t>(i)], {}, false, false),
        [&, next, i](Status) {
          done[static_cast<std::size_t>(i)].set_value(
              store.Write(WriteBatch::Of(seconds[next], {}, false, false)));
        });
  }
  for (auto& d : done) {
    std::future<Status> f = d.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    EXPECT_THAT(f.get(), IsOk());
  }
}

TEST_F(PostgresStoreTest, AKilledConnectionFailsOneWriteAndTheNextReconnects) {
  Result<std::unique_ptr<SociStateStore>> opened = db_->Open();
  ASSERT_THAT(opened, IsOk());
  SociStateStore& store = **opened;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  ASSERT_THAT(store.LoadInstance(r.id), IsOk());  // a pooled reader exists too

  ASSERT_GE(KillStoreConnections(), 2);
  r.status = RunStatus::kFailed;
  r.context = Json{{"changed", true}};
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  EXPECT_THAT(store.Write(WriteBatch::Of(r, {0}, true)),
              StatusIs(StatusCode::kUnavailable));

  // Reads reconnect by themselves; the refused write left nothing.
  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kRunning);
  EXPECT_TRUE(loaded->executions.empty());
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}}));

  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0}, true)), IsOk());
  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kFailed);
  EXPECT_EQ(loaded->executions.size(), 1u);
  EXPECT_EQ(loaded->context, (Json{{"changed", true}}));
}

// An item the database rejects (PostgreSQL text cannot hold invalid UTF-8) fails alone: the
// batch is retried one item per transaction.
TEST_F(PostgresStoreTest, AnItemTheDatabaseRejectsFailsAlone) {
  Result<std::unique_ptr<SociStateStore>> opened = db_->Open(OneCommitter());
  ASSERT_THAT(opened, IsOk());
  SociStateStore& store = **opened;
  constexpr int kInstances = 20;
  std::vector<InstanceRecord> records;
  for (int i = 0; i < kInstances; ++i) records.push_back(MakeRecord("i" + std::to_string(i)));
  records[7].flow_name = "bad \xff\xfe name";
  std::vector<std::promise<Result<InstanceId>>> done(kInstances);
  CommitterGate gate(store);
  for (int i = 0; i < kInstances; ++i) {
    store.Create(records[static_cast<std::size_t>(i)],
                              [&done, i](Result<InstanceId> id) {
                                done[static_cast<std::size_t>(i)].set_value(std::move(id));
                              });
  }
  gate.Open();
  for (int i = 0; i < kInstances; ++i) {
    Result<InstanceId> id = done[static_cast<std::size_t>(i)].get_future().get();
    if (i == 7) {
      EXPECT_THAT(id, StatusIs(StatusCode::kInternal, HasSubstr("i7")));
    } else {
      EXPECT_THAT(id, IsOk()) << i;
    }
  }
  auto list = store.ListInstances({.limit = 100});
  ASSERT_THAT(list, IsOk());
  // All but i7, and the gate's three.
  EXPECT_EQ(list->size(), static_cast<std::size_t>(kInstances - 1 + 3));
  const GroupCommitStats stats = store.stats();
  EXPECT_EQ(stats.largest_batch, static_cast<std::uint64_t>(kInstances));
  // The batch failed, then its items went one per transaction.
  EXPECT_EQ(stats.commits, stats.batches - 1 + kInstances - 1);
  EXPECT_EQ(stats.items_written, static_cast<std::uint64_t>(kInstances - 1 + 3));
}

TEST_F(PostgresStoreTest, TheSchemaIsCreatedAndUsed) {
  ASSERT_THAT(db_->Open(), IsOk());
  EXPECT_EQ(db_->Execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '" +
                         db_->schema() +
                         "' AND table_name IN ('instances', 'state_executions', "
                         "'flow_definitions', 'schema_migrations')"),
            "4");
}

}  // namespace
}  // namespace sagaflow::adapters
