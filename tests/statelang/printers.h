#pragma once

// gtest printers for the statelang tests, so that a failed expectation shows the value or the
// status instead of the bytes of a Result.

#include <ostream>

#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/testing/matchers.h"  // PrintTo(Status)

namespace sagaflow {

inline void PrintTo(const Result<Json>& r, std::ostream* os) {
  if (r.ok()) {
    *os << "OK: " << r.value().dump();
  } else {
    *os << r.status().ToString();
  }
}

inline void PrintTo(const Result<bool>& r, std::ostream* os) {
  if (r.ok()) {
    *os << "OK: " << (r.value() ? "true" : "false");
  } else {
    *os << r.status().ToString();
  }
}

}  // namespace sagaflow
