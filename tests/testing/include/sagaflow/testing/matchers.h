#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "sagaflow/common/status.h"

namespace sagaflow {

// Readable failure messages for statuses and results.
inline void PrintTo(const Status& s, std::ostream* os) { *os << s.ToString(); }
template <typename T>
void PrintTo(const Result<T>& r, std::ostream* os) {
  *os << (r.ok() ? std::string("OK (a value)") : r.status().ToString());
}

}  // namespace sagaflow

namespace sagaflow::testing {

inline const Status& GetStatus(const Status& s) { return s; }
template <typename T>
const Status& GetStatus(const Result<T>& r) {
  return r.status();
}

// EXPECT_THAT(store.Load(id), IsOk());
MATCHER(IsOk, "is OK") {
  const Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s.ToString();
  return s.ok();
}

// EXPECT_THAT(op, StatusIs(StatusCode::kConflict));
MATCHER_P(StatusIs, code, "has status code " + std::string(StatusCodeName(code))) {
  const Status& s = GetStatus(arg);
  if (s.code() != code) *result_listener << "status is " << s.ToString();
  return s.code() == code;
}

// EXPECT_THAT(op, StatusIs(StatusCode::kConflict, HasSubstr("business key")));
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const Status& s = GetStatus(arg);
  if (!::testing::MatcherCast<StatusCode>(code).Matches(s.code())) {
    *result_listener << "status is " << s.ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(message_matcher, s.message(), result_listener);
}

// EXPECT_THAT(store.ListDispatches(id), IsOkAndHolds(IsEmpty()));
MATCHER_P(IsOkAndHolds, value_matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace sagaflow::testing
