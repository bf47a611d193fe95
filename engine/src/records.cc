#include "sagaflow/engine/records.h"

namespace sagaflow::engine {

std::string_view RunStatusCode(RunStatus s) {
  switch (s) {
    case RunStatus::kRunning:
      return "RU";
    case RunStatus::kSucceeded:
      return "SU";
    case RunStatus::kFailed:
      return "FA";
    case RunStatus::kUnknown:
      return "UN";
    case RunStatus::kSkipped:
      return "SK";
  }
  return "??";
}

std::optional<RunStatus> ParseRunStatus(std::string_view code) {
  if (code == "RU") return RunStatus::kRunning;
  if (code == "SU") return RunStatus::kSucceeded;
  if (code == "FA") return RunStatus::kFailed;
  if (code == "UN") return RunStatus::kUnknown;
  if (code == "SK") return RunStatus::kSkipped;
  return std::nullopt;
}

std::string_view ExecutionKindName(ExecutionKind k) {
  return k == ExecutionKind::kForward ? "forward" : "compensation";
}

}  // namespace sagaflow::engine
