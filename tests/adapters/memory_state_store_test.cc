#include "sagaflow/adapters/memory/memory_state_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::adapters {
namespace {

using engine::DefinitionRecord;
using engine::ExecutionKind;
using engine::InstanceFilter;
using engine::InstanceRecord;
using engine::InstanceSummary;
using engine::WriteBatch;
using engine::RunStatus;
using engine::StateExecution;
using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

// Records hold JSON values either plainly or shared; this reads both the same way.
const Json& AsJson(const Json& value) { return value; }

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
  return r;
}

StateExecution MakeExecution(int id, const std::string& state, Json input) {
  StateExecution e;
  e.id = id;
  e.state = StateName(state);
  e.state_index = id;
  e.idempotency_key = "key:" + state;
  e.for_update = true;
  e.attempts = 1;
  e.input = std::move(input);
  e.started_at = At(id);
  return e;
}

std::vector<std::string> Ids(const std::vector<InstanceSummary>& list) {
  std::vector<std::string> out;
  for (const auto& s : list) out.push_back(s.id.str());
  return out;
}

TEST(MemoryStateStoreTest, CreateThenLoadReturnsTheRecord) {
  MemoryStateStore store;
  InstanceRecord r = MakeRecord("i1", "order_fulfill", At(5), "bk-1");
  r.executions.push_back(MakeExecution(0, "FulfillService", Json::array({1})));
  r.cursor.current = 3;
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  EXPECT_EQ(*store.CreateInstance(MakeRecord("i2")), InstanceId("i2"));
  EXPECT_EQ(store.instance_count(), 2u);

  Result<InstanceRecord> loaded = store.LoadInstance(InstanceId("i1"));
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->id, InstanceId("i1"));
  EXPECT_EQ(loaded->flow_name, "order_fulfill");
  EXPECT_EQ(loaded->flow_version, "1.0.0");
  EXPECT_EQ(loaded->flow_hash, "00000000deadbeef");
  EXPECT_EQ(loaded->business_key, "bk-1");
  EXPECT_EQ(loaded->status, RunStatus::kRunning);
  EXPECT_EQ(loaded->input, (Json{{"orderId", "1001"}}));
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}}));
  EXPECT_EQ(loaded->started_at, At(5));
  EXPECT_EQ(loaded->cursor.current, 3);
  ASSERT_EQ(loaded->executions.size(), 1u);
  EXPECT_EQ(loaded->executions[0].state, StateName("FulfillService"));
  EXPECT_EQ(loaded->executions[0].input, Json::array({1}));
}

TEST(MemoryStateStoreTest, UnknownAndDuplicateInstances) {
  MemoryStateStore store;
  EXPECT_THAT(store.LoadInstance(InstanceId("nope")), StatusIs(StatusCode::kNotFound));
  InstanceRecord r = MakeRecord("i1");
  EXPECT_THAT(store.Write(WriteBatch::Of(r, {}, true)), StatusIs(StatusCode::kNotFound));
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  EXPECT_THAT(store.CreateInstance(r), StatusIs(StatusCode::kAlreadyExists));
  EXPECT_EQ(store.instance_count(), 1u);
}

TEST(MemoryStateStoreTest, WriteAppliesHeaderListedExecutionsAndFlaggedContext) {
  MemoryStateStore store;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());

  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  r.cursor.active_execution = 1;
  r.updated_at = At(10);
  r.context = Json{{"orderId", "1001"}, {"aResult", true}};
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0, 1}, false)), IsOk());

  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->executions.size(), 2u);
  EXPECT_EQ(loaded->executions[1].state, StateName("B"));
  EXPECT_EQ(loaded->executions[1].input, Json::array({"b"}));
  EXPECT_EQ(loaded->cursor.active_execution, 1);
  EXPECT_EQ(loaded->updated_at, At(10));
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}}));  // not flagged: not written

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
  r.cursor.phase = engine::Phase::kFinished;
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {1}, true)), IsOk());

  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->status, RunStatus::kUnknown);
  EXPECT_THAT(loaded->compensation_status, Optional(RunStatus::kSucceeded));
  EXPECT_THAT(loaded->error, Optional(TaskFailure{"DemoException", "boom"}));
  EXPECT_EQ(loaded->error_code, "500");
  EXPECT_EQ(loaded->error_message, "fulfilment failed");
  EXPECT_THAT(loaded->ended_at, Optional(At(12)));
  EXPECT_TRUE(loaded->finished());
  EXPECT_EQ(loaded->context, (Json{{"orderId", "1001"}, {"aResult", true}}));
  EXPECT_EQ(loaded->executions[0].status, RunStatus::kRunning);
  EXPECT_EQ(loaded->executions[1].status, RunStatus::kFailed);
  EXPECT_EQ(loaded->executions[1].output, Json(false));
  EXPECT_THAT(loaded->executions[1].ended_at, Optional(At(11)));
}

// An Output's keys, as a flow's state defines them (only the keys matter to a store).
engine::ContextKeys OutputKeys(std::initializer_list<std::string> keys) {
  engine::ContextKeys out;
  for (const auto& k : keys) out.emplace_back(k, statelang::ValueTemplate());
  return out;
}

// A batch writing the whole context and naming the keys in which it changed.
WriteBatch WithKeys(WriteBatch batch, const engine::ContextKeys* keys) {
  batch.changed_keys = keys;
  return batch;
}

TEST(MemoryStateStoreTest, AWriteNamingItsContextKeysStoresThoseKeys) {
  MemoryStateStore store;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  const engine::ContextKeys a = OutputKeys({"aResult", "aMissing"});
  const engine::ContextKeys b = OutputKeys({"bResult"});

  r.context = Json{{"orderId", "1001"}, {"aResult", true}};  // aMissing did not render
  ASSERT_THAT(store.Write(WithKeys(WriteBatch::Of(r, {}, true, false), &a)), IsOk());
  r.context = Json{{"orderId", "1001"}, {"aResult", true}, {"bResult", Json{{"n", 1}}}};
  ASSERT_THAT(store.Write(WithKeys(WriteBatch::Of(r, {}, true, false), &b)), IsOk());
  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->context, r.context);

  // The keys set again, then a whole-context write (an operation's patch) replacing them.
  r.context = Json{{"orderId", "1001"}, {"aResult", false}, {"bResult", Json{{"n", 1}}}};
  ASSERT_THAT(store.Write(WithKeys(WriteBatch::Of(r, {}, true, false), &a)), IsOk());
  ASSERT_THAT(store.ClaimInstance(r.id, "", At(0), At(0)), IsOk());
  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->context, r.context);
  r.context = Json{{"patched", 1}};
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {}, true, false)), IsOk());
  loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->context, (Json{{"patched", 1}}));
}

TEST(MemoryStateStoreTest, KeepsTheMostRecentlyFinishedInstancesAndEveryUnfinishedOne) {
  // One per shard at most: with 16 shards, at most 16 finished instances stay.
  MemoryStateStore store(MemoryStoreOptions{.max_finished = 16});
  std::vector<InstanceRecord> records;
  for (int i = 0; i < 200; ++i) {
    records.push_back(MakeRecord("i" + std::to_string(i), "order_fulfill", At(i),
                                 i % 2 == 0 ? "key-" + std::to_string(i) : ""));
    ASSERT_THAT(store.CreateInstance(records.back()), IsOk());
  }
  // The even ones finish, in order; the odd ones keep running.
  for (int i = 0; i < 200; i += 2) {
    records[i].cursor.phase = engine::Phase::kFinished;
    records[i].status = RunStatus::kSucceeded;
    ASSERT_THAT(store.Write(WriteBatch::Of(records[i], {}, true)), IsOk());
  }
  std::size_t finished_kept = 0;
  std::size_t dropped = 0;
  for (int i = 0; i < 200; ++i) {
    Result<InstanceRecord> loaded = store.LoadInstance(records[i].id);
    if (i % 2 == 1) {
      EXPECT_THAT(loaded, IsOk()) << "unfinished instance " << i << " was dropped";
      continue;
    }
    if (loaded.ok()) {
      ++finished_kept;
      continue;
    }
    // Dropped, and its business key is free for a new instance.
    ++dropped;
    EXPECT_THAT(loaded, StatusIs(StatusCode::kNotFound)) << i;
    InstanceRecord again = MakeRecord("again" + std::to_string(i), "order_fulfill", At(i),
                                      "key-" + std::to_string(i), Json{{"other", i}});
    Result<InstanceId> created = store.CreateInstance(again);
    ASSERT_THAT(created, IsOk()) << i;
    EXPECT_EQ(*created, again.id) << i;
  }
  EXPECT_EQ(finished_kept + dropped, 100u);
  EXPECT_LE(finished_kept, 16u);
  EXPECT_GE(finished_kept, 1u);
  // The most recent one is always kept.
  EXPECT_THAT(store.LoadInstance(records[198].id), IsOk());
  EXPECT_EQ(store.instance_count(), 100u + finished_kept + dropped);
}

TEST(MemoryStateStoreTest, AnInstanceRunningAgainIsNotDroppedForItsEarlierFinish) {
  MemoryStateStore store(MemoryStoreOptions{.max_finished = 16});
  InstanceRecord first = MakeRecord("first");
  ASSERT_THAT(store.CreateInstance(first), IsOk());
  first.cursor.phase = engine::Phase::kFinished;
  ASSERT_THAT(store.Write(WriteBatch::Of(first, {}, true)), IsOk());
  // An operation runs it again: unfinished, it must stay however many others finish.
  first.cursor.phase = engine::Phase::kForward;
  ASSERT_THAT(store.Write(WriteBatch::Of(first, {}, true)), IsOk());
  for (int i = 0; i < 300; ++i) {
    InstanceRecord r = MakeRecord("other" + std::to_string(i));
    r.cursor.phase = engine::Phase::kFinished;
    ASSERT_THAT(store.CreateInstance(r), IsOk());  // created finished (a flow with no task)
  }
  EXPECT_THAT(store.LoadInstance(first.id), IsOk());
  EXPECT_LE(store.instance_count(), 17u);
}

TEST(MemoryStateStoreTest, TheBoundIsOnTheWholeStoreWhateverShardsTheIdsFallIn) {
  // Ids made on one thread all fall in one shard (InstanceIdLane).
  MemoryStateStore store(MemoryStoreOptions{.max_finished = 100});
  std::vector<InstanceId> ids;
  for (int i = 0; i < 1'000; ++i) {
    InstanceRecord r = MakeRecord(NewInstanceId().str());
    ASSERT_THAT(store.CreateInstance(r), IsOk());
    r.cursor.phase = engine::Phase::kFinished;
    ASSERT_THAT(store.Write(WriteBatch::Of(r, {}, true)), IsOk());
    ids.push_back(r.id);
  }
  EXPECT_EQ(store.instance_count(), 100u);
  // The last 100 to finish are the ones kept.
  for (std::size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(store.LoadInstance(ids[i]).ok(), i >= 900) << i;
  }
}

TEST(MemoryStateStoreTest, KeepingNoFinishedInstanceDropsThemAtOnce) {
  MemoryStateStore store(MemoryStoreOptions{.max_finished = 0});
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  r.cursor.phase = engine::Phase::kFinished;
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {}, true)), IsOk());
  EXPECT_THAT(store.LoadInstance(r.id), StatusIs(StatusCode::kNotFound));
  EXPECT_EQ(store.instance_count(), 0u);
}

TEST(MemoryStateStoreTest, KeepingEverythingDropsNothing) {
  MemoryStateStore store(MemoryStoreOptions{.max_finished = std::nullopt});
  for (int i = 0; i < 50'000; ++i) {
    InstanceRecord r = MakeRecord("i" + std::to_string(i));
    r.cursor.phase = engine::Phase::kFinished;
    ASSERT_THAT(store.CreateInstance(r), IsOk());
  }
  EXPECT_EQ(store.instance_count(), 50'000u);
}

TEST(MemoryStateStoreTest, LaterWritesChangeOnlyAnExecutionsProgress) {
  MemoryStateStore store;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  r.executions.push_back(MakeExecution(0, "A", Json::array({"first input"})));
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0}, false)), IsOk());

  StateExecution& e = r.executions[0];
  e.attempts = 3;
  e.retry_counts = {2};
  e.retry_at = At(30);
  e.error = TaskFailure{"ConnectError", "refused"};
  e.superseded = true;
  e.compensation_status = RunStatus::kUnknown;
  e.input = Json::array({"rewritten"});  // identity and input are fixed once written
  e.idempotency_key = "another key";
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0}, false)), IsOk());

  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  const StateExecution& stored = loaded->executions.at(0);
  EXPECT_EQ(stored.attempts, 3);
  EXPECT_THAT(stored.retry_counts, ElementsAre(2));
  EXPECT_THAT(stored.retry_at, Optional(At(30)));
  EXPECT_THAT(stored.error, Optional(TaskFailure{"ConnectError", "refused"}));
  EXPECT_TRUE(stored.superseded);
  EXPECT_THAT(stored.compensation_status, Optional(RunStatus::kUnknown));
  EXPECT_EQ(stored.state, StateName("A"));
  EXPECT_EQ(stored.input, Json::array({"first input"}));
  EXPECT_EQ(stored.idempotency_key, "key:A");
}

TEST(MemoryStateStoreTest, FirstWriteListingAnExecutionFixesItsIdentity) {
  // Execution 1 is written before execution 0 is listed for the first time: each one's identity
  // comes from the first write that lists it.
  MemoryStateStore store;
  InstanceRecord r = MakeRecord("i1");
  ASSERT_THAT(store.CreateInstance(r), IsOk());
  r.executions.push_back(MakeExecution(0, "A", Json::array({"a"})));
  r.executions.push_back(MakeExecution(1, "B", Json::array({"b"})));
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {1}, false)), IsOk());
  ASSERT_THAT(store.Write(WriteBatch::Of(r, {0}, false)), IsOk());

  Result<InstanceRecord> loaded = store.LoadInstance(r.id);
  ASSERT_THAT(loaded, IsOk());
  ASSERT_EQ(loaded->executions.size(), 2u);
  EXPECT_EQ(loaded->executions[0].state, StateName("A"));
  EXPECT_EQ(loaded->executions[0].input, Json::array({"a"}));
  EXPECT_EQ(loaded->executions[0].idempotency_key, "key:A");
  EXPECT_EQ(loaded->executions[1].state, StateName("B"));
}

TEST(MemoryStateStoreTest, LoadedRecordIsACopy) {
  MemoryStateStore store;
  ASSERT_THAT(store.CreateInstance(MakeRecord("i1")), IsOk());
  Result<InstanceRecord> loaded = store.LoadInstance(InstanceId("i1"));
  ASSERT_THAT(loaded, IsOk());
  loaded->status = RunStatus::kFailed;
  loaded->context = Json{{"changed", true}};
  Result<InstanceRecord> again = store.LoadInstance(InstanceId("i1"));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->status, RunStatus::kRunning);
  EXPECT_EQ(again->context, (Json{{"orderId", "1001"}}));
}

class MemoryStateStoreListTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Add("a-old", "order_fulfill", 1, RunStatus::kSucceeded);
    Add("b-mid", "order_cancel", 2, RunStatus::kFailed);
    Add("c-new", "order_fulfill", 3, RunStatus::kFailed);
    Add("d-newest", "order_fulfill", 4, RunStatus::kRunning);
  }
  void Add(const std::string& id, const std::string& flow, int started, RunStatus status) {
    InstanceRecord r = MakeRecord(id, flow, At(started), "key-" + id);
    ASSERT_THAT(store_.CreateInstance(r), IsOk());
    r.status = status;
    if (status != RunStatus::kRunning) {
      r.ended_at = At(started + 10);
      r.cursor.phase = engine::Phase::kFinished;
    }
    ASSERT_THAT(store_.Write(WriteBatch::Of(r, {}, false)), IsOk());
  }
  std::vector<std::string> List(InstanceFilter filter) {
    Result<std::vector<InstanceSummary>> list = store_.ListInstances(filter);
    EXPECT_THAT(list, IsOk());
    return list.ok() ? Ids(*list) : std::vector<std::string>{};
  }
  MemoryStateStore store_;
};

TEST_F(MemoryStateStoreListTest, NewestFirst) {
  EXPECT_THAT(List({}), ElementsAre("d-newest", "c-new", "b-mid", "a-old"));
}

TEST_F(MemoryStateStoreListTest, FiltersByStatusAndFlow) {
  EXPECT_THAT(List({.status = RunStatus::kFailed}), ElementsAre("c-new", "b-mid"));
  EXPECT_THAT(List({.flow_name = "order_fulfill"}), ElementsAre("d-newest", "c-new", "a-old"));
  EXPECT_THAT(List({.status = RunStatus::kFailed, .flow_name = "order_fulfill"}),
              ElementsAre("c-new"));
  EXPECT_THAT(List({.status = RunStatus::kUnknown}), IsEmpty());
  EXPECT_THAT(List({.flow_name = "no_such_flow"}), IsEmpty());
}

TEST_F(MemoryStateStoreListTest, LimitKeepsTheNewest) {
  EXPECT_THAT(List({.limit = 2}), ElementsAre("d-newest", "c-new"));
  EXPECT_THAT(List({.flow_name = "order_fulfill", .limit = 1}), ElementsAre("d-newest"));
  EXPECT_THAT(List({.limit = 0}), IsEmpty());
}

TEST_F(MemoryStateStoreListTest, SummariesCarryTheHeader) {
  Result<std::vector<InstanceSummary>> list =
      store_.ListInstances({.status = RunStatus::kFailed, .flow_name = "order_cancel"});
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 1u);
  const InstanceSummary& s = list->front();
  EXPECT_EQ(s.id, InstanceId("b-mid"));
  EXPECT_EQ(s.flow_name, "order_cancel");
  EXPECT_EQ(s.flow_version, "1.0.0");
  EXPECT_EQ(s.business_key, "key-b-mid");
  EXPECT_EQ(s.status, RunStatus::kFailed);
  EXPECT_EQ(s.started_at, At(2));
  EXPECT_THAT(s.ended_at, Optional(At(12)));
}

TEST(MemoryStateStoreTest, BusinessKeyRepeatReturnsTheExistingInstance) {
  MemoryStateStore store;
  ASSERT_THAT(store.CreateInstance(MakeRecord("first", "order_fulfill", At(0), "order-1001")),
              IsOk());
  Result<InstanceId> repeat =
      store.CreateInstance(MakeRecord("second", "order_fulfill", At(1), "order-1001"));
  ASSERT_THAT(repeat, IsOk());
  EXPECT_EQ(*repeat, InstanceId("first"));
  EXPECT_EQ(store.instance_count(), 1u);
  EXPECT_THAT(store.LoadInstance(InstanceId("second")), StatusIs(StatusCode::kNotFound));
}

TEST(MemoryStateStoreTest, BusinessKeyWithDifferentInputIsAConflict) {
  MemoryStateStore store;
  ASSERT_THAT(store.CreateInstance(MakeRecord("first", "order_fulfill", At(0), "order-1001")),
              IsOk());
  EXPECT_THAT(store.CreateInstance(MakeRecord("second", "order_fulfill", At(1), "order-1001",
                                              Json{{"orderId", "1002"}})),
              StatusIs(StatusCode::kConflict, HasSubstr("order-1001")));
  EXPECT_EQ(store.instance_count(), 1u);
}

TEST(MemoryStateStoreTest, BusinessKeysAreScopedByFlow) {
  MemoryStateStore store;
  ASSERT_THAT(store.CreateInstance(MakeRecord("fulfil", "order_fulfill", At(0), "order-1001")),
              IsOk());
  Result<InstanceId> other =
      store.CreateInstance(MakeRecord("cancel", "order_cancel", At(1), "order-1001"));
  ASSERT_THAT(other, IsOk());
  EXPECT_EQ(*other, InstanceId("cancel"));
  // Without a key nothing is deduplicated.
  ASSERT_THAT(store.CreateInstance(MakeRecord("x1")), IsOk());
  ASSERT_THAT(store.CreateInstance(MakeRecord("x2")), IsOk());
  EXPECT_EQ(store.instance_count(), 4u);
}

TEST(MemoryStateStoreTest, BusinessKeyRepeatsFromManyThreadsCreateOneInstance) {
  MemoryStateStore store;
  constexpr int kThreads = 8;
  std::vector<std::string> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, &got, t] {
      Result<InstanceId> id = store.CreateInstance(
          MakeRecord("start-" + std::to_string(t), "order_fulfill", At(t), "order-7"));
      got[static_cast<std::size_t>(t)] = id.ok() ? id->str() : id.status().ToString();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()).size(), 1u);
  EXPECT_EQ(store.instance_count(), 1u);
  EXPECT_THAT(store.LoadInstance(InstanceId(got[0])), IsOk());
}

TEST(MemoryStateStoreTest, DefinitionsSaveAndLoad) {
  MemoryStateStore store;
  DefinitionRecord v1{"order_fulfill", "1.0.0", "hash-1", "{\"Name\": \"order_fulfill\"}", At(0)};
  DefinitionRecord v2{"order_fulfill", "1.1.0", "hash-2", "{\"Name\": \"order_fulfill\", \"v\": 2}",
                      At(1)};
  ASSERT_THAT(store.SaveDefinition(v1), IsOk());
  ASSERT_THAT(store.SaveDefinition(v2), IsOk());

  Result<DefinitionRecord> loaded = store.LoadDefinition("order_fulfill", "hash-1");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->version, "1.0.0");
  EXPECT_EQ(loaded->content, v1.content);
  EXPECT_EQ(loaded->created_at, At(0));
  loaded = store.LoadDefinition("order_fulfill", "hash-2");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->version, "1.1.0");

  EXPECT_THAT(store.LoadDefinition("order_fulfill", "hash-3"), StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(store.LoadDefinition("order_cancel", "hash-1"), StatusIs(StatusCode::kNotFound));
}

TEST(MemoryStateStoreTest, SavingTheSameDefinitionAgainChangesNothing) {
  MemoryStateStore store;
  DefinitionRecord def{"order_fulfill", "1.0.0", "hash-1", "original", At(0)};
  ASSERT_THAT(store.SaveDefinition(def), IsOk());
  ASSERT_THAT(store.SaveDefinition(def), IsOk());
  DefinitionRecord later = def;
  later.created_at = At(100);
  later.content = "something else";
  ASSERT_THAT(store.SaveDefinition(later), IsOk());
  Result<DefinitionRecord> loaded = store.LoadDefinition("order_fulfill", "hash-1");
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->content, "original");
  EXPECT_EQ(loaded->created_at, At(0));
}

TEST(MemoryStateStoreTest, ConcurrentWritersOnDifferentInstances) {
  MemoryStateStore store;
  constexpr int kThreads = 8;
  constexpr int kInstancesPerThread = 50;
  constexpr int kSteps = 10;
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, &failures, t] {
      for (int i = 0; i < kInstancesPerThread; ++i) {
        InstanceRecord r = MakeRecord("t" + std::to_string(t) + "-i" + std::to_string(i),
                                      t % 2 ? "order_cancel" : "order_fulfill", At(i));
        if (!store.CreateInstance(r).ok()) ++failures;
        for (int step = 0; step < kSteps; ++step) {
          r.executions.push_back(
              MakeExecution(step, "S" + std::to_string(step), Json::array({t, i, step})));
          r.executions.back().status = RunStatus::kSucceeded;
          r.cursor.current = step;
          if (step == kSteps - 1) {
            r.status = RunStatus::kSucceeded;
            r.cursor.phase = engine::Phase::kFinished;
            r.context = Json{{"thread", t}, {"instance", i}};
          }
          if (!store.Write(WriteBatch::Of(r, {step}, step == kSteps - 1)).ok()) {
            ++failures;
          }
        }
      }
    });
  }
  // A reader listing while the writers work.
  std::thread reader([&store, &failures, &done] {
    while (!done.load()) {
      auto list = store.ListInstances({.status = RunStatus::kSucceeded, .limit = 1000});
      if (!list.ok()) ++failures;
    }
  });
  for (auto& th : threads) th.join();
  done = true;
  reader.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store.instance_count(), static_cast<std::size_t>(kThreads * kInstancesPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kInstancesPerThread; ++i) {
      Result<InstanceRecord> r =
          store.LoadInstance(InstanceId("t" + std::to_string(t) + "-i" + std::to_string(i)));
      ASSERT_THAT(r, IsOk());
      EXPECT_EQ(r->status, RunStatus::kSucceeded);
      ASSERT_EQ(r->executions.size(), static_cast<std::size_t>(kSteps));
      EXPECT_EQ(r->executions[kSteps - 1].input, Json::array({t, i, kSteps - 1}));
      EXPECT_EQ(AsJson(r->context).at("instance"), i);
      EXPECT_EQ(AsJson(r->context).at("thread"), t);
    }
  }
  Result<std::vector<InstanceSummary>> succeeded =
      store.ListInstances({.status = RunStatus::kSucceeded, .limit = 10000});
  ASSERT_THAT(succeeded, IsOk());
  EXPECT_EQ(succeeded->size(), static_cast<std::size_t>(kThreads * kInstancesPerThread));
}

}  // namespace
}  // namespace sagaflow::adapters
