#include "sagaflow/engine/record_codec.h"

#include <cstdint>
#include <limits>
#include <string>
#include <utility>

namespace sagaflow::engine {

namespace {

Status Bad(const std::string& path, const std::string& what) {
  return InvalidArgument(path + ": " + what);
}

Status WrongType(const std::string& path, const char* expected, const Json& found) {
  return Bad(path, std::string("expected ") + expected + ", found " + found.type_name());
}

// The member `key` of the object `json` (whose path is `path`), or an error naming it.
Result<const Json*> Member(const Json& json, const std::string& path, const char* key) {
  auto it = json.find(key);
  if (it == json.end()) return Bad(path + "." + key, "missing");
  return &*it;
}

Result<std::int64_t> Int64(const Json& value, const std::string& path) {
  if (value.is_number_unsigned()) {
    if (value.get<std::uint64_t>() >
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return Bad(path, "integer " + value.dump() + " is out of range");
    }
    return static_cast<std::int64_t>(value.get<std::uint64_t>());
  }
  if (!value.is_number_integer()) return WrongType(path, "an integer", value);
  return value.get<std::int64_t>();
}

Result<int> Int(const Json& value, const std::string& path, int min) {
  SAGAFLOW_ASSIGN_OR_RETURN(std::int64_t v, Int64(value, path));
  if (v < min || v > std::numeric_limits<int>::max()) {
    return Bad(path, "integer " + std::to_string(v) + " is out of range");
  }
  return static_cast<int>(v);
}

Result<int> IntMember(const Json& json, const std::string& path, const char* key, int min) {
  SAGAFLOW_ASSIGN_OR_RETURN(const Json* value, Member(json, path, key));
  return Int(*value, path + "." + key, min);
}

Result<bool> BoolMember(const Json& json, const std::string& path, const char* key) {
  SAGAFLOW_ASSIGN_OR_RETURN(const Json* value, Member(json, path, key));
  if (!value->is_boolean()) return WrongType(path + "." + key, "a boolean", *value);
  return value->get<bool>();
}

Result<std::string> StringMember(const Json& json, const std::string& path, const char* key) {
  SAGAFLOW_ASSIGN_OR_RETURN(const Json* value, Member(json, path, key));
  if (!value->is_string()) return WrongType(path + "." + key, "a string", *value);
  return value->get<std::string>();
}

// An array of integers >= `min`.
Result<std::vector<int>> IntArray(const Json& value, const std::string& path, int min) {
  if (!value.is_array()) return WrongType(path, "an array", value);
  std::vector<int> out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    SAGAFLOW_ASSIGN_OR_RETURN(int v, Int(value[i], path + "[" + std::to_string(i) + "]", min));
    out.push_back(v);
  }
  return out;
}

Result<std::vector<int>> IntArrayMember(const Json& json, const std::string& path, const char* key,
                                        int min) {
  SAGAFLOW_ASSIGN_OR_RETURN(const Json* value, Member(json, path, key));
  return IntArray(*value, path + "." + key, min);
}

Result<TaskFailure> DecodeTaskFailure(const Json& json, const std::string& path) {
  if (!json.is_object()) return WrongType(path, "an object", json);
  TaskFailure failure;
  SAGAFLOW_ASSIGN_OR_RETURN(failure.type, StringMember(json, path, "type"));
  SAGAFLOW_ASSIGN_OR_RETURN(failure.message, StringMember(json, path, "message"));
  return failure;
}

Json IntsToJson(const std::vector<int>& values) {
  Json out = Json::array();
  for (int v : values) out.push_back(v);
  return out;
}

}  // namespace

std::string_view PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kForward:
      return "forward";
    case Phase::kCompensating:
      return "compensating";
    case Phase::kFinished:
      return "finished";
  }
  return "?";
}

std::optional<Phase> ParsePhase(std::string_view name) {
  if (name == "forward") return Phase::kForward;
  if (name == "compensating") return Phase::kCompensating;
  if (name == "finished") return Phase::kFinished;
  return std::nullopt;
}

std::optional<ExecutionKind> ParseExecutionKind(std::string_view name) {
  if (name == ExecutionKindName(ExecutionKind::kForward)) return ExecutionKind::kForward;
  if (name == ExecutionKindName(ExecutionKind::kCompensation)) return ExecutionKind::kCompensation;
  return std::nullopt;
}

namespace {

void AppendInts(std::string& out, const std::vector<int>& values) {
  out += '[';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  out += ']';
}

}  // namespace

std::string CursorToText(const Cursor& c) {
  // The phase and the current state always; every other field only when it differs from its
  // default (most instances never compensate, catch or issue a sequence), so that the row a
  // step rewrites stays short. Keys in the order nlohmann's object dumps them (sorted).
  const Cursor defaults;
  std::string out = "{";
  auto key = [&out](const char* name) {
    if (out.size() > 1) out += ',';
    out += '"';
    out += name;
    out += "\":";
  };
  if (c.active_execution != defaults.active_execution) {
    key("active_execution");
    out += std::to_string(c.active_execution);
  }
  if (c.caught) {
    key("caught");
    out += TaskFailureToJson(*c.caught).dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  if (c.compensated_in_run) {
    key("compensated_in_run");
    out += "true";
  }
  if (!c.compensation_stack.empty()) {
    key("compensation_stack");
    AppendInts(out, c.compensation_stack);
  }
  if (c.compensation_trigger != defaults.compensation_trigger) {
    key("compensation_trigger");
    out += std::to_string(c.compensation_trigger);
  }
  if (!c.compensations_run.empty()) {
    key("compensations_run");
    AppendInts(out, c.compensations_run);
  }
  key("current");
  out += std::to_string(c.current);
  if (c.epoch != defaults.epoch) {
    key("epoch");
    out += std::to_string(c.epoch);
  }
  if (c.idle_transitions != defaults.idle_transitions) {
    key("idle_transitions");
    out += std::to_string(c.idle_transitions);
  }
  key("phase");
  out += '"';
  out += PhaseName(c.phase);
  out += '"';
  if (c.reached_fail) {
    key("reached_fail");
    out += "true";
  }
  if (c.run_first_execution != defaults.run_first_execution) {
    key("run_first_execution");
    out += std::to_string(c.run_first_execution);
  }
  if (c.sequences_issued != defaults.sequences_issued) {
    key("sequences_issued");
    out += std::to_string(c.sequences_issued);
  }
  if (c.wake_at) {
    key("wake_at");
    out += std::to_string(c.wake_at->time_since_epoch().count());
  }
  out += '}';
  return out;
}

Json CursorToJson(const Cursor& c) { return Json::parse(CursorToText(c)); }

Result<Cursor> CursorFromJson(const Json& json) {
  const std::string path = "cursor";
  if (!json.is_object()) return WrongType(path, "an object", json);
  Cursor c;
  SAGAFLOW_ASSIGN_OR_RETURN(std::string phase, StringMember(json, path, "phase"));
  std::optional<Phase> parsed = ParsePhase(phase);
  if (!parsed) {
    return Bad(path + ".phase", "'" + phase + "' is not forward, compensating or finished");
  }
  c.phase = *parsed;
  SAGAFLOW_ASSIGN_OR_RETURN(c.current, IntMember(json, path, "current", statelang::kNoState));
  // The other fields are written only when they differ from their defaults; a field that is
  // present is checked like a required one.
  if (json.contains("active_execution")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.active_execution, IntMember(json, path, "active_execution", -1));
  }
  if (json.contains("compensation_stack")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.compensation_stack,
                              IntArrayMember(json, path, "compensation_stack", 0));
  }
  if (json.contains("compensations_run")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.compensations_run,
                              IntArrayMember(json, path, "compensations_run", 0));
  }
  if (json.contains("compensation_trigger")) {
    SAGAFLOW_ASSIGN_OR_RETURN(
        c.compensation_trigger,
        IntMember(json, path, "compensation_trigger", statelang::kNoState));
  }
  if (json.contains("compensated_in_run")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.compensated_in_run, BoolMember(json, path, "compensated_in_run"));
  }
  if (json.contains("reached_fail")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.reached_fail, BoolMember(json, path, "reached_fail"));
  }
  if (auto caught = json.find("caught"); caught != json.end() && !caught->is_null()) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.caught, DecodeTaskFailure(*caught, path + ".caught"));
  }
  if (json.contains("epoch")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.epoch, IntMember(json, path, "epoch", 0));
  }
  if (json.contains("run_first_execution")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.run_first_execution,
                              IntMember(json, path, "run_first_execution", 0));
  }
  if (json.contains("idle_transitions")) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.idle_transitions, IntMember(json, path, "idle_transitions", 0));
  }
  if (auto sequences = json.find("sequences_issued"); sequences != json.end()) {
    SAGAFLOW_ASSIGN_OR_RETURN(c.sequences_issued, Int64(*sequences, path + ".sequences_issued"));
    if (c.sequences_issued < 0) {
      return Bad(path + ".sequences_issued",
                 "integer " + std::to_string(c.sequences_issued) + " is out of range");
    }
  }
  if (auto wake = json.find("wake_at"); wake != json.end()) {
    SAGAFLOW_ASSIGN_OR_RETURN(std::int64_t ns, Int64(*wake, path + ".wake_at"));
    c.wake_at = TimePoint(Duration(ns));
  }
  return c;
}

Json TaskFailureToJson(const TaskFailure& failure) {
  return Json{{"type", failure.type}, {"message", failure.message}};
}

Result<TaskFailure> TaskFailureFromJson(const Json& json) {
  return DecodeTaskFailure(json, "error");
}

Json RetryCountsToJson(const std::vector<int>& counts) { return IntsToJson(counts); }

Result<std::vector<int>> RetryCountsFromJson(const Json& json) {
  return IntArray(json, "retry_counts", 0);
}

}  // namespace sagaflow::engine
