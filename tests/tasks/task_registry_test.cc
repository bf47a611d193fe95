#include "sagaflow/tasks/task_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "sagaflow/tasks/task_context.h"
#include "sagaflow/tasks/task_error.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow {
namespace {

using ::sagaflow::testing::IsOk;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

struct FulfillRequest {
  std::string orderId;
  std::string userId;
  std::vector<int> items;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(FulfillRequest, orderId, userId, items)

struct Order {
  std::string id;
  int total_cents = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Order, id, total_cents)

struct Receipt {
  std::string order_id;
  int charged_cents = 0;
  std::string idempotency_key;
  int attempt = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Receipt, order_id, charged_cents, idempotency_key, attempt)

bool IsBigOrder(const Order& o) { return o.total_cents >= 10000; }

// Owns what a TaskContext refers to, for one invocation.
class TaskRegistryTest : public ::testing::Test {
 protected:
  struct Outcome {
    bool ok = false;
    Json result;
    TaskFailure failure;
  };

  Outcome Invoke(const std::string& name, const Json& args, int attempt = 1) {
    const TaskFn* fn = registry_.Find(TaskName(name));
    EXPECT_NE(fn, nullptr) << name;
    if (fn == nullptr) return {};
    const std::stop_token token = stop_.get_token();
    TaskContext ctx(instance_, state_, attempt, key_, std::nullopt, token);
    Outcome out;
    out.ok = InvokeTask(*fn, ctx, args, out.result, out.failure);
    return out;
  }

  TaskRegistry registry_;
  InstanceId instance_{"01JTESTINSTANCE00000000000"};
  StateName state_{"FulfillService"};
  std::string key_ = "01JTESTINSTANCE00000000000:FulfillService:0";
  std::stop_source stop_;
};

TEST_F(TaskRegistryTest, PlainFormGetsTheArgumentListAndTheContext) {
  registry_.add("demoService.foo", [](TaskContext& ctx, const Json& args) -> Json {
    return Json{{"args", args}, {"state", ctx.state_name().str()}, {"attempt", ctx.attempt()}};
  });
  Outcome out = Invoke("demoService.foo", Json::array({1, "two", Json{{"three", 3}}}), 2);
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result["args"], Json::array({1, "two", Json{{"three", 3}}}));
  EXPECT_EQ(out.result["state"], "FulfillService");
  EXPECT_EQ(out.result["attempt"], 2);
}

TEST_F(TaskRegistryTest, TypedFormConvertsAStructArgument) {
  std::optional<FulfillRequest> seen;
  registry_.add("fulfillSagaService.createFulfillOrder", [&seen](const FulfillRequest& r) {
    seen = r;
    return r.orderId == "1001";
  });
  Json request = {{"orderId", "1001"}, {"userId", "u-7"}, {"items", {3, 4}}};
  Outcome out = Invoke("fulfillSagaService.createFulfillOrder", Json::array({request}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json(true));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->userId, "u-7");
  EXPECT_THAT(seen->items, ElementsAre(3, 4));

  request["orderId"] = "1002";
  out = Invoke("fulfillSagaService.createFulfillOrder", Json::array({request}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json(false));
}

TEST_F(TaskRegistryTest, TypedFormWithContextAndSeveralArguments) {
  registry_.add("paymentService.charge",
                [](TaskContext& ctx, const Order& order, int discount_cents) -> Receipt {
                  return Receipt{order.id, order.total_cents - discount_cents,
                                 ctx.idempotency_key(), ctx.attempt()};
                });
  Outcome out = Invoke("paymentService.charge",
                       Json::array({Json{{"id", "o-1"}, {"total_cents", 2500}}, 500}), 3);
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, (Json{{"order_id", "o-1"},
                              {"charged_cents", 2000},
                              {"idempotency_key", key_},
                              {"attempt", 3}}));
}

// With a single typed parameter after the context, the task must still get the first Input
// argument, not the whole argument list.
TEST_F(TaskRegistryTest, TypedFormWithContextAndOneArgument) {
  registry_.add("demoService.double",
                [](TaskContext& ctx, int n) { return n * 2 + ctx.attempt(); });
  Outcome out = Invoke("demoService.double", Json::array({7}), 1);
  EXPECT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json(15));

  registry_.add("paymentService.total",
                [](TaskContext&, const Order& order) { return order.total_cents; });
  out = Invoke("paymentService.total", Json::array({Json{{"id", "o-1"}, {"total_cents", 2500}}}));
  EXPECT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json(2500));

  registry_.add("demoService.greet",
                [](TaskContext&, const std::string& name) { return "hello " + name; });
  out = Invoke("demoService.greet", Json::array({"ada"}));
  EXPECT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json("hello ada"));
}

TEST_F(TaskRegistryTest, TypedFormAcceptsAFunctionPointer) {
  registry_.add("orderService.isBig", &IsBigOrder);
  Outcome out =
      Invoke("orderService.isBig", Json::array({Json{{"id", "o"}, {"total_cents", 12000}}}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, Json(true));
}

TEST_F(TaskRegistryTest, VoidResultIsNull) {
  std::string logged;
  registry_.add("auditService.log", [&logged](const std::string& line) { logged = line; });
  Outcome out = Invoke("auditService.log", Json::array({"shipped"}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_TRUE(out.result.is_null());
  EXPECT_EQ(logged, "shipped");
}

TEST_F(TaskRegistryTest, MissingTrailingJsonArgumentIsNull) {
  registry_.add("demoService.pair", [](const Json& a, const Json& b) {
    return Json{{"a", a}, {"b_is_null", b.is_null()}};
  });
  Outcome out = Invoke("demoService.pair", Json::array({7}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(out.result, (Json{{"a", 7}, {"b_is_null", true}}));
}

TEST_F(TaskRegistryTest, ArgumentThatDoesNotConvertIsAnErrorFailure) {
  bool called = false;
  registry_.add("fulfillSagaService.createFulfillOrder", [&called](const FulfillRequest&) {
    called = true;
    return true;
  });
  Outcome out = Invoke("fulfillSagaService.createFulfillOrder", Json::array({42}));
  EXPECT_FALSE(out.ok);
  EXPECT_FALSE(called);
  EXPECT_EQ(out.failure.type, "Error");
  EXPECT_THAT(out.failure.message, HasSubstr("do not convert"));
  EXPECT_THAT(out.failure.message, HasSubstr("FulfillService"));  // where it happened
  EXPECT_THAT(out.failure.message, HasSubstr("number"));          // what was given

  // A member of the wrong type.
  out = Invoke("fulfillSagaService.createFulfillOrder",
               Json::array({Json{{"orderId", 1001}, {"userId", "u"}, {"items", Json::array()}}}));
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure.type, "Error");
  EXPECT_THAT(out.failure.message, HasSubstr("do not convert"));
  EXPECT_FALSE(called);
}

TEST_F(TaskRegistryTest, MissingNonJsonArgumentIsAnErrorFailure) {
  registry_.add("paymentService.charge", [](TaskContext&, const Order& o, int discount) {
    return o.total_cents - discount;
  });
  Outcome out =
      Invoke("paymentService.charge", Json::array({Json{{"id", "o"}, {"total_cents", 1}}}));
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure.type, "Error");
  EXPECT_THAT(out.failure.message, HasSubstr("do not convert"));
}

TEST_F(TaskRegistryTest, InvokeTaskTurnsThrowsIntoFailures) {
  registry_.add("s.typed", [](TaskContext&, const Json&) -> Json {
    throw TaskError("DemoException", "demo failure");
  });
  registry_.add("s.untyped",
                [](TaskContext&, const Json&) -> Json { throw TaskError("", "no type given"); });
  registry_.add("s.std", [](TaskContext&, const Json&) -> Json {
    throw std::out_of_range("index 9 out of range");
  });
  registry_.add("s.weird", [](TaskContext&, const Json&) -> Json { throw 42; });

  Outcome out = Invoke("s.typed", Json::array());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure, (TaskFailure{"DemoException", "demo failure"}));

  out = Invoke("s.untyped", Json::array());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure, (TaskFailure{"Error", "no type given"}));

  out = Invoke("s.std", Json::array());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure, (TaskFailure{"Error", "index 9 out of range"}));

  out = Invoke("s.weird", Json::array());
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure.type, "Error");
  EXPECT_THAT(out.failure.message, Not(IsEmpty()));
}

TEST_F(TaskRegistryTest, TypedTaskThrowingTaskErrorKeepsItsType) {
  registry_.add("paymentService.charge", [](const Order& o) -> int {
    if (o.total_cents <= 0) throw TaskError("PaymentDeclined", "nothing to charge");
    return o.total_cents;
  });
  Outcome out =
      Invoke("paymentService.charge", Json::array({Json{{"id", "o"}, {"total_cents", 0}}}));
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.failure, (TaskFailure{"PaymentDeclined", "nothing to charge"}));
}

TEST_F(TaskRegistryTest, FindAndMissing) {
  registry_.add("a.one", [](TaskContext&, const Json&) -> Json { return 1; });
  registry_.add("b.two", [](const Json&) { return 2; });
  EXPECT_NE(registry_.Find(TaskName("a.one")), nullptr);
  EXPECT_NE(registry_.Find(TaskName("b.two")), nullptr);
  EXPECT_EQ(registry_.Find(TaskName("a.two")), nullptr);
  EXPECT_EQ(registry_.Find(TaskName("")), nullptr);

  EXPECT_THAT(registry_.Missing(
                  {TaskName("c.three"), TaskName("a.one"), TaskName("d.four"), TaskName("b.two")}),
              ElementsAre(TaskName("c.three"), TaskName("d.four")));
  EXPECT_THAT(registry_.Missing({TaskName("a.one")}), IsEmpty());
  EXPECT_THAT(registry_.Missing({}), IsEmpty());
}

TEST_F(TaskRegistryTest, ReplacingARegistrationKeepsFoundPointerValid) {
  registry_.add("demoService.foo", [](TaskContext&, const Json&) -> Json { return "old"; });
  const TaskFn* before = registry_.Find(TaskName("demoService.foo"));
  ASSERT_NE(before, nullptr);
  // Many other registrations in between, so that the map rehashes.
  for (int i = 0; i < 500; ++i) {
    registry_.add("filler.m" + std::to_string(i), [](const Json&) { return 0; });
  }
  registry_.add("demoService.foo", [](const Json&) { return std::string("new"); });
  EXPECT_EQ(registry_.Find(TaskName("demoService.foo")), before);

  const std::stop_token token = stop_.get_token();
  TaskContext ctx(instance_, state_, 1, key_, std::nullopt, token);
  Json result;
  TaskFailure failure;
  ASSERT_TRUE(InvokeTask(*before, ctx, Json::array({"ignored"}), result, failure))
      << failure.message;
  EXPECT_EQ(result, "new");
}

TEST_F(TaskRegistryTest, ErrorTypesLiveInTheRegistry) {
  ASSERT_THAT(registry_.errors().Define("DemoException", "Error"), IsOk());
  const TaskRegistry& read_only = registry_;
  EXPECT_TRUE(read_only.errors().IsA("DemoException", "java.lang.Throwable"));
}

TEST(TaskContextTest, ExposesTheStepItRuns) {
  InstanceId id("01JTESTINSTANCE00000000000");
  StateName state("WmsService");
  std::string key = "01JTESTINSTANCE00000000000:WmsService:1";
  std::stop_source stop;
  TimePoint deadline(std::chrono::seconds(1234));
  const std::stop_token token = stop.get_token();
  TaskContext ctx(id, state, 3, key, deadline, token);
  EXPECT_EQ(ctx.instance_id(), id);
  EXPECT_EQ(ctx.state_name(), state);
  EXPECT_EQ(ctx.attempt(), 3);
  EXPECT_EQ(ctx.idempotency_key(), key);
  ASSERT_TRUE(ctx.deadline().has_value());
  EXPECT_EQ(*ctx.deadline(), deadline);
  EXPECT_FALSE(ctx.stop_requested());
  stop.request_stop();
  EXPECT_TRUE(ctx.stop_requested());
  EXPECT_TRUE(ctx.stop_token().stop_requested());
}

}  // namespace
}  // namespace sagaflow
