// The executor's flow catalog (engine/src/flow_catalog.h): which flows it accepts, what it
// stores, and the flow an instance started on.
#include "flow_catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using statelang::StateMachine;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::shared_ptr<const StateMachine> MustLoad(const std::string& text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

// "pay": A (svc.a) then B (svc.b); `b_extra` goes into B's definition (a new version of the
// flow, or "IsAsync").
std::string PayFlow(const std::string& version, const std::string& b_extra = "") {
  return R"({
  "Name": "pay", "Version": ")" +
         version + R"(", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b")" +
         b_extra + R"(, "Next": "Done"},
    "Done": {"Type": "Succeed"}
  }
})";
}

Json Echo(TaskContext&, const Json& args) { return args; }

// The task `flow` resolved for the state named `state`.
const TaskFn* TaskOf(const Flow& flow, const std::string& state) {
  const statelang::StateIndex i = flow.machine->Find(state);
  EXPECT_NE(i, statelang::kNoState) << state;
  return i == statelang::kNoState ? nullptr : flow.tasks.at(static_cast<std::size_t>(i));
}

class FlowCatalogTest : public ::testing::Test {
 protected:
  FlowCatalogTest() {
    registry_.add("svc.a", Echo);
    registry_.add("svc.b", Echo);
  }

  FlowCatalog& Catalog(FlowCatalogOptions options = {}) {
    catalog_.emplace(options, registry_, store_, clock_);
    return *catalog_;
  }

  // An instance record naming the definition (name, hash) it started on.
  static InstanceRecord StartedOn(const std::string& name, const std::string& hash) {
    InstanceRecord r;
    r.id = NewInstanceId();
    r.flow_name = name;
    r.flow_hash = hash;
    return r;
  }

  TaskRegistry registry_;
  ManualClock clock_{TimePoint(seconds(1'700'000'000))};
  adapters::MemoryStateStore store_;
  std::optional<FlowCatalog> catalog_;
};

TEST_F(FlowCatalogTest, StoresTheDefinitionTheFirstTimeAFlowIsAdded) {
  FlowCatalog& catalog = Catalog();
  auto machine = MustLoad(PayFlow("1"));
  ASSERT_THAT(store_.LoadDefinition("pay", machine->content_hash()),
              StatusIs(StatusCode::kNotFound));
  const TimePoint added_at = clock_.Now();

  auto flow = catalog.For(machine);
  ASSERT_THAT(flow, IsOk());
  EXPECT_EQ((*flow)->machine, machine);
  EXPECT_FALSE((*flow)->has_async);

  auto stored = store_.LoadDefinition("pay", machine->content_hash());
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->name, "pay");
  EXPECT_EQ(stored->version, "1");
  EXPECT_EQ(stored->hash, machine->content_hash());
  EXPECT_EQ(stored->content, machine->content());
  EXPECT_EQ(stored->created_at, added_at);
}

TEST_F(FlowCatalogTest, ResolvesEachTaskStateToItsRegisteredTask) {
  FlowCatalog& catalog = Catalog();
  auto machine = MustLoad(PayFlow("1"));
  auto flow = catalog.For(machine);
  ASSERT_THAT(flow, IsOk());
  ASSERT_EQ((*flow)->tasks.size(), machine->states().size());
  for (std::size_t i = 0; i < machine->states().size(); ++i) {
    const statelang::State& s = machine->states()[i];
    if (s.is_task()) {
      EXPECT_EQ((*flow)->tasks[i], registry_.Find(s.service_task().task)) << s.name;
      EXPECT_NE((*flow)->tasks[i], nullptr) << s.name;
    } else {
      EXPECT_EQ((*flow)->tasks[i], nullptr) << s.name;
    }
  }
}

TEST_F(FlowCatalogTest, ReturnsTheSameFlowForTheSameMachineAndForTheSameDefinitionCompiledAgain) {
  FlowCatalog& catalog = Catalog();
  auto machine = MustLoad(PayFlow("1"));
  auto first = catalog.For(machine);
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(catalog.For(machine).value(), *first);

  auto again = MustLoad(PayFlow("1"));  // same text, another compilation
  ASSERT_NE(again, machine);
  auto second = catalog.For(again);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ((*second)->machine, machine) << "keeps using the first compilation";
  EXPECT_EQ(catalog.For(again).value(), *first);

  auto other = catalog.For(MustLoad(PayFlow("2")));
  ASSERT_THAT(other, IsOk());
  EXPECT_NE(*other, *first);
}

TEST_F(FlowCatalogTest, ThreadsAddingOneDefinitionAtOnceAllGetOneFlow) {
  FlowCatalog& catalog = Catalog();
  constexpr int kThreads = 8;
  std::vector<std::shared_ptr<const StateMachine>> machines;
  for (int i = 0; i < kThreads; ++i) machines.push_back(MustLoad(PayFlow("1")));
  std::vector<const Flow*> flows(kThreads, nullptr);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        auto flow = catalog.For(machines[static_cast<std::size_t>(i)]);
        if (flow.ok()) flows[static_cast<std::size_t>(i)] = *flow;
      });
    }
  }
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_NE(flows[static_cast<std::size_t>(i)], nullptr) << i;
    EXPECT_EQ(flows[static_cast<std::size_t>(i)], flows[0]) << i;
  }
  // Each machine, asked for again, still gives that flow.
  for (const auto& m : machines) EXPECT_EQ(catalog.For(m).value(), flows[0]);
}

TEST_F(FlowCatalogTest, TwoCatalogsOnOneThreadKeepTheirOwnFlows) {
  // The lookup by machine caches the last answer per thread: it must not leak into another
  // catalog, nor into a new catalog built where an old one lived.
  auto machine = MustLoad(PayFlow("1"));
  adapters::MemoryStateStore other_store;
  FlowCatalog other(FlowCatalogOptions{}, registry_, other_store, clock_);
  auto mine = Catalog().For(machine);
  ASSERT_THAT(mine, IsOk());
  auto theirs = other.For(machine);
  ASSERT_THAT(theirs, IsOk());
  EXPECT_NE(*theirs, *mine);
  EXPECT_THAT(other_store.LoadDefinition("pay", machine->content_hash()), IsOk());

  for (int i = 0; i < 3; ++i) {
    adapters::MemoryStateStore fresh_store;
    std::optional<FlowCatalog> fresh;
    fresh.emplace(FlowCatalogOptions{}, registry_, fresh_store, clock_);
    ASSERT_THAT(fresh->For(machine), IsOk());
    EXPECT_THAT(fresh_store.LoadDefinition("pay", machine->content_hash()), IsOk())
        << "catalog " << i << " took a flow of an earlier catalog";
  }
}

TEST_F(FlowCatalogTest, RefusesAFlowThatCallsUnregisteredTasksAndStoresNothing) {
  FlowCatalog& catalog = Catalog();
  auto machine = MustLoad(R"({
  "Name": "ship", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "truck", "ServiceMethod": "load", "Next": "C"},
    "C": {"Type": "ServiceTask", "ServiceName": "truck", "ServiceMethod": "drive"}
  }
})");
  EXPECT_THAT(catalog.For(machine),
              StatusIs(StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("'ship'"), HasSubstr("truck.load"),
                             HasSubstr("truck.drive"), ::testing::Not(HasSubstr("svc.a")))));
  EXPECT_THAT(store_.LoadDefinition("ship", machine->content_hash()),
              StatusIs(StatusCode::kNotFound));
  // Still refused when asked again (nothing was cached).
  EXPECT_THAT(catalog.For(machine), StatusIs(StatusCode::kInvalidArgument));
}

TEST_F(FlowCatalogTest, AcceptsUnregisteredTasksWhenNotRequired) {
  FlowCatalog& catalog = Catalog(FlowCatalogOptions{.require_registered_tasks = false});
  auto machine = MustLoad(R"({
  "Name": "ship", "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a", "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "truck", "ServiceMethod": "load"}
  }
})");
  auto flow = catalog.For(machine);
  ASSERT_THAT(flow, IsOk());
  ASSERT_EQ((*flow)->tasks.size(), 2u);
  EXPECT_EQ(TaskOf(**flow, "A"), registry_.Find(TaskName("svc.a")));
  EXPECT_EQ(TaskOf(**flow, "B"), nullptr);
  EXPECT_THAT(store_.LoadDefinition("ship", machine->content_hash()), IsOk());
}

TEST_F(FlowCatalogTest, RefusesAsyncStepsWhenToldTo) {
  auto machine = MustLoad(PayFlow("1", R"(, "IsAsync": true)"));
  EXPECT_THAT(Catalog(FlowCatalogOptions{.refuse_async = true}).For(machine),
              StatusIs(StatusCode::kInvalidArgument, AllOf(HasSubstr("'B'"), HasSubstr("async"))));
  EXPECT_THAT(store_.LoadDefinition("pay", machine->content_hash()),
              StatusIs(StatusCode::kNotFound));

  auto flow = Catalog(FlowCatalogOptions{.refuse_async = false}).For(machine);
  ASSERT_THAT(flow, IsOk());
  EXPECT_TRUE((*flow)->has_async);
  // A flow without async steps is fine either way.
  EXPECT_THAT(Catalog(FlowCatalogOptions{.refuse_async = true}).For(MustLoad(PayFlow("1"))),
              IsOk());
}

TEST_F(FlowCatalogTest, RefusesNoMachine) {
  EXPECT_THAT(Catalog().For(nullptr), StatusIs(StatusCode::kInvalidArgument));
}

TEST_F(FlowCatalogTest, ForRecordGivesTheFlowTheInstanceStartedOnEvenAnOlderOne) {
  // Version 1 was added by an earlier process: this catalog knows only version 2.
  auto v1 = MustLoad(PayFlow("1"));
  ASSERT_THAT(store_.SaveDefinition(DefinitionRecord{"pay", "1", v1->content_hash(),
                                                     v1->content(), clock_.Now()}),
              IsOk());
  FlowCatalog& catalog = Catalog();
  auto v2 = MustLoad(PayFlow("2"));
  auto current = catalog.For(v2);
  ASSERT_THAT(current, IsOk());

  auto on_v2 = catalog.ForRecord(StartedOn("pay", v2->content_hash()));
  ASSERT_THAT(on_v2, IsOk());
  EXPECT_EQ(*on_v2, *current);

  auto on_v1 = catalog.ForRecord(StartedOn("pay", v1->content_hash()));
  ASSERT_THAT(on_v1, IsOk());
  EXPECT_NE(*on_v1, *current);
  EXPECT_EQ((*on_v1)->machine->version(), "1");
  EXPECT_EQ((*on_v1)->machine->content_hash(), v1->content_hash());
  EXPECT_EQ(TaskOf(**on_v1, "A"), registry_.Find(TaskName("svc.a")));
  // Loaded once, then known.
  EXPECT_EQ(catalog.ForRecord(StartedOn("pay", v1->content_hash())).value(), *on_v1);
  EXPECT_EQ(catalog.For(v1).value(), *on_v1);
}

TEST_F(FlowCatalogTest, ForRecordOfAnUnknownDefinitionIsNotFound) {
  FlowCatalog& catalog = Catalog();
  ASSERT_THAT(catalog.For(MustLoad(PayFlow("1"))), IsOk());
  EXPECT_THAT(catalog.ForRecord(StartedOn("pay", "0123456789abcdef")),
              StatusIs(StatusCode::kNotFound));
  EXPECT_THAT(catalog.ForRecord(StartedOn("refund", "0123456789abcdef")),
              StatusIs(StatusCode::kNotFound));
}

TEST_F(FlowCatalogTest, ForRecordOfAStoredDefinitionThatNoLongerLoadsIsInternal) {
  ASSERT_THAT(store_.SaveDefinition(DefinitionRecord{"pay", "1", "feedfacefeedface",
                                                     "{not a flow", clock_.Now()}),
              IsOk());
  ASSERT_THAT(store_.SaveDefinition(DefinitionRecord{"pay", "2", "deadbeefdeadbeef",
                                                     R"({"Name": "pay", "StartState": "Nowhere",
                                                         "States": {}})",
                                                     clock_.Now()}),
              IsOk());
  FlowCatalog& catalog = Catalog();
  EXPECT_THAT(catalog.ForRecord(StartedOn("pay", "feedfacefeedface")),
              StatusIs(StatusCode::kInternal,
                       AllOf(HasSubstr("'pay'"), HasSubstr("feedfacefeedface"))));
  EXPECT_THAT(catalog.ForRecord(StartedOn("pay", "deadbeefdeadbeef")),
              StatusIs(StatusCode::kInternal));
}

TEST_F(FlowCatalogTest, ForRecordOfAnOlderDefinitionWhoseTasksAreGoneIsRefused) {
  auto v1 = MustLoad(R"({
  "Name": "pay", "Version": "1", "StartState": "Old",
  "States": {"Old": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "retired"}}
})");
  ASSERT_THAT(store_.SaveDefinition(DefinitionRecord{"pay", "1", v1->content_hash(),
                                                     v1->content(), clock_.Now()}),
              IsOk());
  EXPECT_THAT(Catalog().ForRecord(StartedOn("pay", v1->content_hash())),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("svc.retired")));
}

}  // namespace
}  // namespace sagaflow::engine
