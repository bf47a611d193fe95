#include "sagaflow/tasks/error_types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/testing/matchers.h"

namespace sagaflow {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ErrorTypesTest, BuiltInHierarchy) {
  ErrorTypes errors;
  EXPECT_TRUE(errors.IsA("Error", "Error"));
  EXPECT_TRUE(errors.IsA("NetworkError", "Error"));
  EXPECT_TRUE(errors.IsA("ConnectError", "NetworkError"));
  EXPECT_TRUE(errors.IsA("ConnectError", "Error"));
  EXPECT_TRUE(errors.IsA("TimeoutError", "NetworkError"));
  EXPECT_TRUE(errors.IsA("TimeoutError", "Error"));
  EXPECT_TRUE(errors.IsA("ExpressionError", "Error"));

  EXPECT_FALSE(errors.IsA("Error", "NetworkError"));
  EXPECT_FALSE(errors.IsA("NetworkError", "ConnectError"));
  EXPECT_FALSE(errors.IsA("ConnectError", "TimeoutError"));
  EXPECT_FALSE(errors.IsA("TimeoutError", "ConnectError"));
  EXPECT_FALSE(errors.IsA("ExpressionError", "NetworkError"));
}

TEST(ErrorTypesTest, JavaNamesAreAliases) {
  ErrorTypes errors;
  EXPECT_EQ(errors.Canonical("java.lang.Throwable"), "Error");
  EXPECT_EQ(errors.Canonical("java.lang.Exception"), "Error");
  EXPECT_EQ(errors.Canonical("java.lang.RuntimeException"), "Error");
  EXPECT_EQ(errors.Canonical("java.net.ConnectException"), "ConnectError");
  EXPECT_EQ(errors.Canonical("java.net.SocketTimeoutException"), "TimeoutError");
  EXPECT_EQ(errors.Canonical("DemoException"), "DemoException");

  // Aliases resolve on both sides of IsA.
  EXPECT_TRUE(errors.IsA("java.net.ConnectException", "NetworkError"));
  EXPECT_TRUE(errors.IsA("java.net.SocketTimeoutException", "java.lang.Throwable"));
  EXPECT_TRUE(errors.IsA("ConnectError", "java.net.ConnectException"));
  EXPECT_TRUE(errors.IsA("TimeoutError", "java.lang.RuntimeException"));
  EXPECT_TRUE(errors.IsA("java.lang.Exception", "java.lang.Throwable"));
  EXPECT_FALSE(errors.IsA("java.net.ConnectException", "java.net.SocketTimeoutException"));
  EXPECT_FALSE(errors.IsA("java.lang.Throwable", "NetworkError"));
}

TEST(ErrorTypesTest, UserTypesDescendFromTheirParent) {
  ErrorTypes errors;
  ASSERT_THAT(errors.Define("DemoException", "Error"), IsOk());
  ASSERT_THAT(errors.Define("PaymentDeclined", "DemoException"), IsOk());
  ASSERT_THAT(errors.Define("CarrierTimeout", "java.net.SocketTimeoutException"), IsOk());

  EXPECT_TRUE(errors.IsA("PaymentDeclined", "DemoException"));
  EXPECT_TRUE(errors.IsA("PaymentDeclined", "java.lang.Throwable"));
  EXPECT_FALSE(errors.IsA("PaymentDeclined", "NetworkError"));
  EXPECT_FALSE(errors.IsA("DemoException", "PaymentDeclined"));

  // Defined under an alias: the parent is the canonical type.
  EXPECT_TRUE(errors.IsA("CarrierTimeout", "TimeoutError"));
  EXPECT_TRUE(errors.IsA("CarrierTimeout", "NetworkError"));
  EXPECT_FALSE(errors.IsA("CarrierTimeout", "ConnectError"));
}

TEST(ErrorTypesTest, DefineRefusesAnUnknownParent) {
  ErrorTypes errors;
  EXPECT_THAT(errors.Define("Orphan", "NoSuchParent"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("NoSuchParent")));
  EXPECT_THAT(errors.Define("Self", "Self"), StatusIs(StatusCode::kInvalidArgument));
  EXPECT_THAT(errors.Define("", "Error"), StatusIs(StatusCode::kInvalidArgument));
  // The refused type was not defined: it still counts as a plain child of Error.
  EXPECT_THAT(errors.Lineage("Orphan"), ElementsAre("Orphan", "Error"));
}

TEST(ErrorTypesTest, RedefinitionWithTheSameParentIsANoOp) {
  ErrorTypes errors;
  ASSERT_THAT(errors.Define("DemoException", "Error"), IsOk());
  EXPECT_THAT(errors.Define("DemoException", "Error"), IsOk());
  // The parent may be named by an alias of the same type.
  EXPECT_THAT(errors.Define("DemoException", "java.lang.Exception"), IsOk());
  EXPECT_THAT(errors.Lineage("DemoException"), ElementsAre("DemoException", "Error"));
}

TEST(ErrorTypesTest, ConflictingRedefinitionIsRefused) {
  ErrorTypes errors;
  ASSERT_THAT(errors.Define("DemoException", "Error"), IsOk());
  EXPECT_THAT(errors.Define("DemoException", "NetworkError"),
              StatusIs(StatusCode::kAlreadyExists, HasSubstr("DemoException")));
  // The first definition stands.
  EXPECT_FALSE(errors.IsA("DemoException", "NetworkError"));

  // Built-in types and aliases cannot be moved elsewhere in the hierarchy.
  EXPECT_THAT(errors.Define("TimeoutError", "Error"), StatusIs(StatusCode::kAlreadyExists));
  EXPECT_THAT(errors.Define("Error", "NetworkError"), StatusIs(StatusCode::kAlreadyExists));
  EXPECT_THAT(errors.Define("java.lang.Exception", "NetworkError"),
              StatusIs(StatusCode::kAlreadyExists));
  EXPECT_TRUE(errors.IsA("TimeoutError", "NetworkError"));
  EXPECT_FALSE(errors.IsA("Error", "NetworkError"));
  EXPECT_EQ(errors.Canonical("java.lang.Exception"), "Error");
}

TEST(ErrorTypesTest, UndefinedTypeIsAChildOfError) {
  ErrorTypes errors;
  EXPECT_TRUE(errors.IsA("SomethingNobodyDefined", "Error"));
  EXPECT_TRUE(errors.IsA("SomethingNobodyDefined", "java.lang.Throwable"));
  EXPECT_TRUE(errors.IsA("SomethingNobodyDefined", "SomethingNobodyDefined"));
  EXPECT_FALSE(errors.IsA("SomethingNobodyDefined", "NetworkError"));
  EXPECT_FALSE(errors.IsA("SomethingNobodyDefined", "SomethingElse"));
  EXPECT_FALSE(errors.IsA("Error", "SomethingNobodyDefined"));
}

TEST(ErrorTypesTest, LineageListsAncestorsNearestFirst) {
  ErrorTypes errors;
  ASSERT_THAT(errors.Define("CarrierTimeout", "TimeoutError"), IsOk());
  EXPECT_THAT(errors.Lineage("Error"), ElementsAre("Error"));
  EXPECT_THAT(errors.Lineage("ConnectError"), ElementsAre("ConnectError", "NetworkError", "Error"));
  EXPECT_THAT(errors.Lineage("java.net.SocketTimeoutException"),
              ElementsAre("TimeoutError", "NetworkError", "Error"));
  EXPECT_THAT(errors.Lineage("java.lang.RuntimeException"), ElementsAre("Error"));
  EXPECT_THAT(errors.Lineage("CarrierTimeout"),
              ElementsAre("CarrierTimeout", "TimeoutError", "NetworkError", "Error"));
  EXPECT_THAT(errors.Lineage("Unheard"), ElementsAre("Unheard", "Error"));
}

TEST(ErrorTypesTest, ConcurrentDefineAndLookup) {
  ErrorTypes errors;
  std::atomic<bool> wrong{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&errors, &wrong, t] {
      for (int i = 0; i < 200; ++i) {
        std::string name = "E" + std::to_string(t) + "_" + std::to_string(i);
        if (!errors.Define(name, t % 2 ? "NetworkError" : "Error").ok()) wrong = true;
        if (errors.IsA(name, "NetworkError") != (t % 2 == 1)) wrong = true;
        if (!errors.IsA("ConnectError", "NetworkError")) wrong = true;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(wrong);
  EXPECT_THAT(errors.Lineage("E1_199"), ElementsAre("E1_199", "NetworkError", "Error"));
}

}  // namespace
}  // namespace sagaflow
