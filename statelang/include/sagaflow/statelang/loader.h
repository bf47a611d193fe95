#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/statelang/state_machine.h"

namespace sagaflow::statelang {

// One problem found in a definition.
struct Issue {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string pointer;  // JSON pointer into the definition, "" for the whole document
  std::string message;

  // "FILE: /pointer: message", with "warning: " before the message for warnings.
  std::string Format(std::string_view file) const;
};

struct LoadResult {
  std::shared_ptr<const StateMachine> machine;  // null when there is any error
  std::vector<Issue> issues;                    // every error and warning found, in file order

  bool ok() const { return machine != nullptr; }
  // All issues formatted for `file`, one per line.
  std::string Describe(std::string_view file) const;
};

// Parses and validates a statelang definition (JSON with // and /* */ comments). Collects every
// issue instead of stopping at the first; compiles every expression. Never throws.
LoadResult LoadStateMachine(std::string_view text);

// Reads and loads a file; an unreadable file is one error issue.
LoadResult LoadStateMachineFile(const std::string& path);

}  // namespace sagaflow::statelang
