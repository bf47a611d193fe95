#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/tasks/task_error.h"

namespace sagaflow::engine {

// JSON encodings of the parts of an instance record that a store keeps as one value: the
// Cursor, a TaskFailure, and an execution's retry counters. Any store may use them; the SOCI
// adapter keeps them as text columns. Keys are the field names of records.h (snake_case), so
// that the stored values read plainly in a SQL shell.
//
// A cursor is written with its phase and current state, and every other field only when it
// differs from its default (a field missing when decoded takes its default: rows written before
// this form, with every field, decode the same).
//
// The decoders treat their input as untrusted (stored data may be corrupt or written by another
// version): every required field must be present, every field present is checked for its type
// and range, and the error
// (kInvalidArgument) names the bad field with a path, e.g. "cursor.compensation_stack[1]: expected
// an integer, found string". Fields they do not know are ignored. Encoding never fails.
// Stateless functions; thread-safe.

// The cursor as compact JSON text (what a store keeps), written directly rather than built as
// an object and dumped: every write of an instance stores one.
std::string CursorToText(const Cursor& cursor);
Json CursorToJson(const Cursor& cursor);  // CursorToText, parsed

Result<Cursor> CursorFromJson(const Json& json);

// {"type": ..., "message": ...}
Json TaskFailureToJson(const TaskFailure& failure);
Result<TaskFailure> TaskFailureFromJson(const Json& json);

// A StateExecution's retry_counts: a JSON array of non-negative integers.
Json RetryCountsToJson(const std::vector<int>& counts);
Result<std::vector<int>> RetryCountsFromJson(const Json& json);

// The names stored for a Phase: "forward", "compensating", "finished".
std::string_view PhaseName(Phase phase);
std::optional<Phase> ParsePhase(std::string_view name);

// The inverse of ExecutionKindName: "forward", "compensation".
std::optional<ExecutionKind> ParseExecutionKind(std::string_view name);

}  // namespace sagaflow::engine
