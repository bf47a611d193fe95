#include "sagaflow/statelang/loader.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

namespace sagaflow::statelang {

std::string Issue::Format(std::string_view file) const {
  std::string out(file);
  out += ": ";
  if (!pointer.empty()) {
    out += pointer;
    out += ": ";
  }
  if (severity == Severity::kWarning) out += "warning: ";
  out += message;
  return out;
}

std::string LoadResult::Describe(std::string_view file) const {
  std::string out;
  for (const Issue& i : issues) {
    out += i.Format(file);
    out += '\n';
  }
  return out;
}

namespace {

std::string Join(std::string_view base, std::string_view key) {
  std::string out(base);
  out += '/';
  out += JsonPointerToken(key);
  return out;
}

std::string JsonTypeName(const OrderedJson& j) {
  switch (j.type()) {
    case OrderedJson::value_t::null:
      return "null";
    case OrderedJson::value_t::object:
      return "an object";
    case OrderedJson::value_t::array:
      return "an array";
    case OrderedJson::value_t::string:
      return "a string";
    case OrderedJson::value_t::boolean:
      return "a boolean";
    case OrderedJson::value_t::number_float:
    case OrderedJson::value_t::number_integer:
    case OrderedJson::value_t::number_unsigned:
      return "a number";
    default:
      return "a value";
  }
}

// Definitions nest a few levels; a deeper document is refused before anything recursive (a
// template compiler, an error message printing a value) walks it.
constexpr std::size_t kMaxDefinitionDepth = 64;

// Thrown from the parser callback to stop parsing a document nested too deeply.
struct TooDeep {
  std::string pointer;
};

// Tracks where the parser is, so that a duplicate key can be reported with its pointer, and
// refuses documents nested deeper than kMaxDefinitionDepth.
class DuplicateKeyFinder {
 public:
  explicit DuplicateKeyFinder(std::vector<Issue>& issues) : issues_(issues) {}

  bool operator()(int /*depth*/, OrderedJson::parse_event_t event, OrderedJson& parsed) {
    using E = OrderedJson::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start: {
        std::string path = frames_.empty() ? "" : ChildPath();
        if (frames_.size() >= kMaxDefinitionDepth) throw TooDeep{std::move(path)};
        frames_.push_back(Frame{event == E::object_start, std::move(path), {}, {}, 0});
        break;
      }
      case E::key: {
        Frame& f = frames_.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second) {
          issues_.push_back(Issue{Issue::Severity::kError, Join(f.path, f.key),
                                  "duplicate key '" + f.key + "' (JSON keeps only the last one)"});
        }
        break;
      }
      case E::object_end:
      case E::array_end:
        frames_.pop_back();
        if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
        break;
      case E::value:
        if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().index;
        break;
    }
    return true;
  }

 private:
  struct Frame {
    bool is_object;
    std::string path;
    std::set<std::string> keys;
    std::string key;
    std::size_t index;
  };

  std::string ChildPath() const {
    const Frame& f = frames_.back();
    return f.is_object ? Join(f.path, f.key) : f.path + "/" + std::to_string(f.index);
  }

  std::vector<Issue>& issues_;
  std::vector<Frame> frames_;
};

class Validator {
 public:
  explicit Validator(std::vector<Issue>& issues) : issues_(issues) {}

  std::shared_ptr<const StateMachine> Run(const OrderedJson& doc, std::string content) {
    if (!doc.is_object()) {
      Error("", "a definition must be a JSON object, found " + JsonTypeName(doc));
      return nullptr;
    }
    static const std::set<std::string> kTopKeys = {"Name",
                                                   "Comment",
                                                   "Version",
                                                   "StartState",
                                                   "States",
                                                   "RecoverStrategy",
                                                   "IsPersist",
                                                   "IsRetryPersistModeUpdate",
                                                   "IsCompensatePersistModeUpdate",
                                                   "Type",
                                                   "$schema"};
    WarnUnknownKeys(doc, "", kTopKeys);

    std::string name = RequiredString(doc, "", "Name");
    std::string version = OptionalString(doc, "", "Version");
    std::string comment = OptionalString(doc, "", "Comment");
    OptionalBool(doc, "", "IsPersist");
    OptionalBool(doc, "", "IsRetryPersistModeUpdate");
    OptionalBool(doc, "", "IsCompensatePersistModeUpdate");
    RecoverStrategy recover = RecoverStrategy::kCompensate;
    if (auto it = doc.find("RecoverStrategy"); it != doc.end()) {
      if (it->is_string() && *it == "Forward") {
        recover = RecoverStrategy::kForward;
      } else if (!(it->is_string() && *it == "Compensate")) {
        Error("/RecoverStrategy", "must be \"Compensate\" or \"Forward\", found " + it->dump());
      }
    }

    auto states_it = doc.find("States");
    if (states_it == doc.end()) {
      Error("/States", "missing required key 'States'");
    } else if (!states_it->is_object()) {
      Error("/States", "must be an object of states, found " + JsonTypeName(*states_it));
    } else if (states_it->empty()) {
      Error("/States", "a flow needs at least one state");
    }
    const OrderedJson empty = OrderedJson::object();
    const OrderedJson& states_json =
        states_it != doc.end() && states_it->is_object() ? *states_it : empty;

    // Names first, so that targets can be resolved in any order.
    std::vector<std::string> names;
    for (const auto& [k, v] : states_json.items()) {
      index_.emplace(k, static_cast<StateIndex>(names.size()));
      names.push_back(k);
    }

    StateIndex start = kNoState;
    if (auto it = doc.find("StartState"); it == doc.end()) {
      Error("/StartState", "missing required key 'StartState'");
    } else if (!it->is_string()) {
      Error("/StartState", "must be a state name, found " + JsonTypeName(*it));
    } else {
      start = Resolve(it->get<std::string>(), "/StartState", "StartState");
    }

    std::vector<State> states;
    states.reserve(names.size());
    for (const auto& [k, v] : states_json.items()) {
      states.push_back(ParseState(k, v, Join("/States", k)));
    }
    if (has_errors_) return nullptr;

    // A state named as CompensateState is for compensation.
    for (const State& s : states) {
      if (!s.is_task()) continue;
      StateIndex c = s.service_task().compensate_state;
      if (c != kNoState && states[c].is_task()) {
        std::get<ServiceTaskState>(states[c].spec).for_compensation = true;
      }
    }
    CheckGraph(states, start);
    if (has_errors_) return nullptr;
    return std::make_shared<const StateMachine>(std::move(name), std::move(version),
                                                std::move(comment), start, recover,
                                                std::move(states), std::move(content));
  }

 private:
  void Error(std::string pointer, std::string message) {
    has_errors_ = true;
    issues_.push_back(Issue{Issue::Severity::kError, std::move(pointer), std::move(message)});
  }
  void Warn(std::string pointer, std::string message) {
    issues_.push_back(Issue{Issue::Severity::kWarning, std::move(pointer), std::move(message)});
  }

  void WarnUnknownKeys(const OrderedJson& obj, const std::string& ptr,
                       const std::set<std::string>& known) {
    for (const auto& [k, v] : obj.items()) {
      if (!known.count(k)) {
        Warn(Join(ptr, k), "unknown key '" + k + "' is ignored");
      }
    }
  }

  std::string RequiredString(const OrderedJson& obj, const std::string& ptr,
                             const std::string& key) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      Error(Join(ptr, key), "missing required key '" + key + "'");
      return {};
    }
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      Error(Join(ptr, key), "must be a non-empty string, found " +
                                (it->is_string() ? std::string("\"\"") : JsonTypeName(*it)));
      return {};
    }
    return it->get<std::string>();
  }

  std::string OptionalString(const OrderedJson& obj, const std::string& ptr,
                             const std::string& key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return {};
    if (!it->is_string()) {
      Error(Join(ptr, key), "must be a string, found " + JsonTypeName(*it));
      return {};
    }
    return it->get<std::string>();
  }

  std::optional<bool> OptionalBool(const OrderedJson& obj, const std::string& ptr,
                                   const std::string& key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (it->is_boolean()) return it->get<bool>();
    // Seata's own files sometimes carry "true"/"false" as strings.
    if (it->is_string() && (*it == "true" || *it == "false")) return *it == "true";
    Error(Join(ptr, key), "must be true or false, found " + it->dump());
    return std::nullopt;
  }

  StateIndex Resolve(const std::string& target, const std::string& ptr, const std::string& what) {
    auto it = index_.find(target);
    if (it == index_.end()) {
      Error(ptr, what + " names state '" + target + "', which is not defined in States");
      return kNoState;
    }
    return it->second;
  }

  // A required `Next` (of a catcher or a choice): present, a string, a defined state.
  StateIndex RequiredTarget(const OrderedJson& obj, const std::string& ptr,
                            const std::string& key) {
    auto it = obj.find(key);
    if (it == obj.end()) {
      Error(Join(ptr, key), "missing required key '" + key + "'");
      return kNoState;
    }
    if (it->is_null()) {
      Error(Join(ptr, key), "must be a state name, found null");
      return kNoState;
    }
    return OptionalTarget(obj, ptr, key);
  }

  StateIndex OptionalTarget(const OrderedJson& obj, const std::string& ptr,
                            const std::string& key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return kNoState;
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      Error(Join(ptr, key), "must be a state name, found " + JsonTypeName(*it));
      return kNoState;
    }
    return Resolve(it->get<std::string>(), Join(ptr, key), key);
  }

  std::vector<std::string> ExceptionList(const OrderedJson& obj, const std::string& ptr,
                                         bool required) {
    std::vector<std::string> out;
    auto it = obj.find("Exceptions");
    if (it == obj.end() || it->is_null()) {
      if (required) Error(Join(ptr, "Exceptions"), "missing required key 'Exceptions'");
      return out;
    }
    if (!it->is_array()) {
      Error(Join(ptr, "Exceptions"),
            "must be an array of error type names, found " + JsonTypeName(*it));
      return out;
    }
    if (it->empty() && required) {
      Error(Join(ptr, "Exceptions"), "must name at least one error type");
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      const OrderedJson& e = (*it)[i];
      if (!e.is_string() || e.get_ref<const std::string&>().empty()) {
        Error(Join(ptr, "Exceptions") + "/" + std::to_string(i),
              "must be an error type name, found " + JsonTypeName(e));
      } else {
        out.push_back(e.get<std::string>());
      }
    }
    return out;
  }

  std::optional<double> Number(const OrderedJson& obj, const std::string& ptr,
                               const std::string& key, double min, bool min_exclusive) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) {
      Error(Join(ptr, key), "must be a number, found " + JsonTypeName(*it));
      return std::nullopt;
    }
    double v = it->get<double>();
    if (v < min || (min_exclusive && v == min) || !std::isfinite(v)) {
      Error(Join(ptr, key), "must be " +
                                std::string(min_exclusive ? "greater than " : "at least ") +
                                OrderedJson(min).dump() + ", found " + it->dump());
      return std::nullopt;
    }
    return v;
  }

  State ParseState(const std::string& name, const OrderedJson& v, const std::string& ptr) {
    State s{name, StateType::kSucceed, kNoState, {}, SucceedState{}};
    if (!v.is_object()) {
      Error(ptr, "a state must be an object, found " + JsonTypeName(v));
      return s;
    }
    s.comment = OptionalString(v, ptr, "Comment");
    auto type_it = v.find("Type");
    if (type_it == v.end()) {
      Error(Join(ptr, "Type"), "missing required key 'Type'");
      return s;
    }
    if (!type_it->is_string()) {
      Error(Join(ptr, "Type"), "must be a state type name, found " + JsonTypeName(*type_it));
      return s;
    }
    const std::string type = type_it->get<std::string>();
    if (type == "ServiceTask") {
      s.type = StateType::kServiceTask;
      s.next = OptionalTarget(v, ptr, "Next");
      s.spec = ParseServiceTask(v, ptr);
    } else if (type == "Choice") {
      s.type = StateType::kChoice;
      s.spec = ParseChoice(v, ptr);
    } else if (type == "Succeed") {
      WarnUnknownKeys(v, ptr, {"Type", "Comment"});
      s.type = StateType::kSucceed;
      s.spec = SucceedState{};
    } else if (type == "Fail") {
      WarnUnknownKeys(v, ptr, {"Type", "Comment", "ErrorCode", "Message"});
      s.type = StateType::kFail;
      FailState f;
      auto code = v.find("ErrorCode");
      if (code != v.end() && code->is_number()) {
        f.error_code = code->dump();  // Seata files sometimes write ErrorCode: 500
      } else {
        f.error_code = OptionalString(v, ptr, "ErrorCode");
      }
      f.message = OptionalString(v, ptr, "Message");
      s.spec = std::move(f);
    } else if (type == "CompensationTrigger") {
      WarnUnknownKeys(v, ptr, {"Type", "Comment", "Next"});
      s.type = StateType::kCompensationTrigger;
      s.next = OptionalTarget(v, ptr, "Next");
      s.spec = CompensationTriggerState{};
    } else if (type == "Wait") {
      s.type = StateType::kWait;
      s.next = RequiredTarget(v, ptr, "Next");
      s.spec = ParseWait(v, ptr);
    } else if (type == "SubStateMachine" || type == "CompensateSubMachine" ||
               type == "ScriptTask") {
      Error(Join(ptr, "Type"), "state type '" + type +
                                   "' is part of statelang but not supported by this version of "
                                   "sagaflow; supported: ServiceTask, Choice, Wait, Succeed, "
                                   "Fail, CompensationTrigger");
    } else {
      Error(Join(ptr, "Type"), "unknown state type '" + type +
                                   "'; expected ServiceTask, Choice, Wait, Succeed, Fail or "
                                   "CompensationTrigger");
    }
    return s;
  }

  // A Wait (sagaflow extension): exactly one of Seconds, SecondsPath, Timestamp, TimestampPath.
  WaitState ParseWait(const OrderedJson& v, const std::string& ptr) {
    static const std::set<std::string> kKeys = {"Type",      "Comment",       "Next",
                                                "Seconds",   "SecondsPath",   "Timestamp",
                                                "TimestampPath"};
    WarnUnknownKeys(v, ptr, kKeys);
    WaitState w;
    std::vector<std::string> given;
    for (const char* key : {"Seconds", "SecondsPath", "Timestamp", "TimestampPath"}) {
      if (auto it = v.find(key); it != v.end() && !it->is_null()) given.push_back(key);
    }
    if (given.empty()) {
      Error(ptr, "a Wait state needs one of Seconds, SecondsPath, Timestamp or TimestampPath");
      return w;
    }
    if (given.size() > 1) {
      Error(Join(ptr, given[1]), "a Wait state takes only one of Seconds, SecondsPath, "
                                 "Timestamp or TimestampPath; found " +
                                     given[0] + " and " + given[1]);
      return w;
    }
    const std::string& key = given[0];
    if (key == "Seconds") {
      w.kind = WaitState::Kind::kSeconds;
      // About 221 years: from any time before 2039 the wake time falls before kLatestTime
      // (2262), the latest time stored; a later start past it fails the run at the Wait.
      std::optional<double> n = Number(v, ptr, "Seconds", 0, /*min_exclusive=*/false);
      if (n && *n > 7.0e9) {
        Error(Join(ptr, "Seconds"), "must be at most 7000000000, found " + v["Seconds"].dump());
      }
      w.seconds = n.value_or(0);
    } else if (key == "Timestamp") {
      w.kind = WaitState::Kind::kTimestamp;
      w.timestamp = RequiredString(v, ptr, "Timestamp");
      if (!w.timestamp.empty()) {
        std::optional<TimePoint> at = ParseTime(w.timestamp);
        if (!at) {
          Error(Join(ptr, "Timestamp"),
                "must be an RFC 3339 time with an offset, before 2262, such as "
                "\"2026-12-24T18:00:00Z\"; "
                "found \"" +
                    w.timestamp + "\"");
        } else {
          w.at = *at;
        }
      }
    } else {
      w.kind = key == "SecondsPath" ? WaitState::Kind::kSecondsPath
                                    : WaitState::Kind::kTimestampPath;
      std::string text = RequiredString(v, ptr, key);
      if (!text.empty()) {
        if (text.rfind("$.", 0) != 0) {
          Error(Join(ptr, key), "must be a context path starting with '$.', such as "
                                "\"$.delay\"; found \"" +
                                    text + "\"");
        } else {
          auto compiled = Expression::CompileDollar(text);
          if (!compiled.ok()) {
            Error(Join(ptr, key), compiled.status().message() + " in '" + text + "'");
          } else {
            w.path = std::move(compiled).value();
          }
        }
      }
    }
    return w;
  }

  ServiceTaskState ParseServiceTask(const OrderedJson& v, const std::string& ptr) {
    static const std::set<std::string> kKeys = {"Type",
                                                "Comment",
                                                "Next",
                                                "ServiceName",
                                                "ServiceMethod",
                                                "ServiceType",
                                                "CompensateState",
                                                "IsForCompensation",
                                                "IsForUpdate",
                                                "IsPersist",
                                                "IsAsync",
                                                "Input",
                                                "Output",
                                                "Status",
                                                "Retry",
                                                "Catch",
                                                "Loop",
                                                "ParameterTypes",
                                                "IsRetryPersistModeUpdate",
                                                "IsCompensatePersistModeUpdate",
                                                "TimeoutSeconds"};
    WarnUnknownKeys(v, ptr, kKeys);
    ServiceTaskState t;
    t.service_name = RequiredString(v, ptr, "ServiceName");
    t.service_method = RequiredString(v, ptr, "ServiceMethod");
    t.task = TaskName(t.service_name + "." + t.service_method);
    t.compensate_state = OptionalTarget(v, ptr, "CompensateState");
    t.for_update =
        OptionalBool(v, ptr, "IsForUpdate").value_or(false) || t.compensate_state != kNoState;
    OptionalBool(v, ptr, "IsForCompensation");
    OptionalBool(v, ptr, "IsPersist");  // every step is persisted: accepted, checked, ignored
    t.timeout_seconds = Number(v, ptr, "TimeoutSeconds", 0, /*min_exclusive=*/true);
    OptionalBool(v, ptr, "IsRetryPersistModeUpdate");
    OptionalBool(v, ptr, "IsCompensatePersistModeUpdate");
    t.is_async = OptionalBool(v, ptr, "IsAsync").value_or(false);
    if (auto loop = v.find("Loop"); loop != v.end() && !loop->is_null()) {
      Error(Join(ptr, "Loop"), "Loop is not supported by this version of sagaflow");
    }

    if (auto it = v.find("Input"); it != v.end() && !it->is_null()) {
      if (!it->is_array()) {
        Error(Join(ptr, "Input"), "must be an array of arguments, found " + JsonTypeName(*it));
      } else {
        for (std::size_t i = 0; i < it->size(); ++i) {
          std::string p = Join(ptr, "Input") + "/" + std::to_string(i);
          std::string bad;
          auto compiled = ValueTemplate::Compile((*it)[i], &bad);
          if (!compiled.ok()) {
            ReportTemplateError(p, bad, compiled.status());
          } else {
            t.input.push_back(std::move(compiled).value());
          }
        }
      }
    }
    if (auto it = v.find("Output"); it != v.end() && !it->is_null()) {
      if (!it->is_object()) {
        Error(Join(ptr, "Output"),
              "must be an object of context key to value, found " + JsonTypeName(*it));
      } else {
        for (const auto& [k, val] : it->items()) {
          std::string bad;
          auto compiled = ValueTemplate::Compile(val, &bad);
          if (!compiled.ok()) {
            ReportTemplateError(Join(Join(ptr, "Output"), k), bad, compiled.status());
          } else {
            t.output.emplace_back(k, std::move(compiled).value());
          }
        }
      }
    }
    if (auto it = v.find("Status"); it != v.end() && !it->is_null()) {
      if (!it->is_object()) {
        Error(Join(ptr, "Status"),
              "must be an object of condition to SU, FA or UN, found " + JsonTypeName(*it));
      } else {
        for (const auto& [k, val] : it->items()) {
          std::string p = Join(Join(ptr, "Status"), k);
          std::optional<StepStatus> st;
          if (val == "SU") {
            st = StepStatus::kSucceeded;
          } else if (val == "FA") {
            st = StepStatus::kFailed;
          } else if (val == "UN") {
            st = StepStatus::kUnknown;
          } else {
            Error(p, "a status must be \"SU\", \"FA\" or \"UN\", found " + val.dump());
          }
          auto cond = Expression::CompileStatusKey(k);
          if (!cond.ok()) {
            Error(p, "bad condition '" + k + "': " + cond.status().message());
          } else if (cond->form() == Expression::Form::kSequence) {
            Error(p, "a $Sequence value is not a condition");
          } else if (st) {
            t.status.push_back(StatusRule{std::move(cond).value(), *st});
          }
        }
      }
    }
    if (auto it = v.find("Retry"); it != v.end() && !it->is_null()) {
      if (!it->is_array()) {
        Error(Join(ptr, "Retry"), "must be an array of retry rules, found " + JsonTypeName(*it));
      } else {
        for (std::size_t i = 0; i < it->size(); ++i) {
          t.retry.push_back(ParseRetry((*it)[i], Join(ptr, "Retry") + "/" + std::to_string(i)));
        }
      }
    }
    if (auto it = v.find("Catch"); it != v.end() && !it->is_null()) {
      if (!it->is_array()) {
        Error(Join(ptr, "Catch"), "must be an array of catchers, found " + JsonTypeName(*it));
      } else {
        for (std::size_t i = 0; i < it->size(); ++i) {
          std::string p = Join(ptr, "Catch") + "/" + std::to_string(i);
          const OrderedJson& c = (*it)[i];
          if (!c.is_object()) {
            Error(p,
                  "a catcher must be an object with Exceptions and Next, found " + JsonTypeName(c));
            continue;
          }
          WarnUnknownKeys(c, p, {"Exceptions", "Next"});
          CatchRule rule;
          rule.exceptions = ExceptionList(c, p, /*required=*/true);
          rule.next = RequiredTarget(c, p, "Next");
          t.catches.push_back(std::move(rule));
        }
      }
    }
    return t;
  }

  // `status` is the template's: "<relative pointer>: <message>", the pointer also in `bad`.
  void ReportTemplateError(const std::string& base, const std::string& bad, const Status& status) {
    const std::string& m = status.message();
    Error(base + bad, "bad expression: " + m.substr(std::min(m.size(), bad.size() + 2)));
  }

  RetryRule ParseRetry(const OrderedJson& r, const std::string& p) {
    RetryRule rule;
    if (!r.is_object()) {
      Error(p, "a retry rule must be an object, found " + JsonTypeName(r));
      return rule;
    }
    WarnUnknownKeys(r, p,
                    {"Exceptions", "IntervalSeconds", "MaxAttempts", "BackoffRate",
                     "MaxDelaySeconds", "JitterStrategy"});
    rule.exceptions = ExceptionList(r, p, /*required=*/false);
    if (auto v = Number(r, p, "IntervalSeconds", 0, false)) rule.interval_seconds = *v;
    if (auto it = r.find("MaxAttempts"); it != r.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0 ||
          it->get<std::int64_t>() > 1000000) {
        Error(Join(p, "MaxAttempts"),
              "must be a whole number from 0 to 1000000, found " + it->dump());
      } else {
        rule.max_attempts = static_cast<int>(it->get<std::int64_t>());
      }
    }
    if (auto v = Number(r, p, "BackoffRate", 1.0, false)) rule.backoff_rate = *v;
    rule.max_delay_seconds = Number(r, p, "MaxDelaySeconds", 0, true);
    if (auto it = r.find("JitterStrategy"); it != r.end() && !it->is_null()) {
      if (*it == "FULL") {
        rule.jitter = JitterStrategy::kFull;
      } else if (*it != "NONE") {
        Error(Join(p, "JitterStrategy"), "must be \"FULL\" or \"NONE\", found " + it->dump());
      }
    }
    return rule;
  }

  ChoiceState ParseChoice(const OrderedJson& v, const std::string& ptr) {
    WarnUnknownKeys(v, ptr, {"Type", "Comment", "Choices", "Default"});
    ChoiceState c;
    c.default_next = OptionalTarget(v, ptr, "Default");
    auto it = v.find("Choices");
    if (it == v.end()) {
      Error(Join(ptr, "Choices"), "missing required key 'Choices'");
      return c;
    }
    if (!it->is_array() || it->empty()) {
      Error(Join(ptr, "Choices"), "must be a non-empty array of {Expression, Next}, found " +
                                      (it->is_array() ? std::string("[]") : JsonTypeName(*it)));
      return c;
    }
    for (std::size_t i = 0; i < it->size(); ++i) {
      std::string p = Join(ptr, "Choices") + "/" + std::to_string(i);
      const OrderedJson& ch = (*it)[i];
      if (!ch.is_object()) {
        Error(p, "a choice must be an object with Expression and Next, found " + JsonTypeName(ch));
        continue;
      }
      WarnUnknownKeys(ch, p, {"Expression", "Next"});
      Choice choice;
      std::string expr = RequiredString(ch, p, "Expression");
      if (!expr.empty()) {
        auto compiled = Expression::CompileStatusKey(expr);
        if (!compiled.ok()) {
          Error(Join(p, "Expression"), compiled.status().message() + " in '" + expr + "'");
        } else if (compiled->form() == Expression::Form::kSequence) {
          Error(Join(p, "Expression"), "a $Sequence value is not a condition");
        } else {
          choice.condition = std::move(compiled).value();
        }
      }
      choice.next = RequiredTarget(ch, p, "Next");
      c.choices.push_back(std::move(choice));
    }
    return c;
  }

  // Successors a run can take without failing, and whether the state can end the run normally.
  static void Routes(const State& s, std::vector<StateIndex>& out, bool& terminal) {
    out.clear();
    terminal = false;
    switch (s.type) {
      case StateType::kSucceed:
      case StateType::kFail:
        terminal = true;
        break;
      case StateType::kServiceTask:
        if (s.next == kNoState)
          terminal = true;
        else
          out.push_back(s.next);
        for (const CatchRule& c : s.service_task().catches) out.push_back(c.next);
        break;
      case StateType::kWait:
        out.push_back(s.next);
        break;
      case StateType::kCompensationTrigger:
        if (s.next == kNoState)
          terminal = true;
        else
          out.push_back(s.next);
        break;
      case StateType::kChoice:
        for (const Choice& c : s.choice().choices) out.push_back(c.next);
        if (s.choice().default_next != kNoState) out.push_back(s.choice().default_next);
        break;
    }
  }

  void CheckGraph(const std::vector<State>& states, StateIndex start) {
    const std::size_t n = states.size();
    std::vector<std::vector<StateIndex>> succ(n), pred(n);
    std::vector<bool> terminal(n);
    std::vector<StateIndex> tmp;
    for (std::size_t i = 0; i < n; ++i) {
      bool t;
      Routes(states[i], tmp, t);
      terminal[i] = t;
      for (StateIndex j : tmp) {
        succ[i].push_back(j);
        pred[static_cast<std::size_t>(j)].push_back(static_cast<StateIndex>(i));
      }
    }
    // Reachable from the start (forward flow).
    std::vector<bool> reachable(n, false);
    std::vector<StateIndex> stack{start};
    reachable[static_cast<std::size_t>(start)] = true;
    while (!stack.empty()) {
      StateIndex i = stack.back();
      stack.pop_back();
      for (StateIndex j : succ[static_cast<std::size_t>(i)]) {
        if (!reachable[static_cast<std::size_t>(j)]) {
          reachable[static_cast<std::size_t>(j)] = true;
          stack.push_back(j);
        }
      }
    }
    // Can end normally: backwards from the terminal states.
    std::vector<bool> can_end(n, false);
    for (std::size_t i = 0; i < n; ++i) {
      if (terminal[i]) {
        can_end[i] = true;
        stack.push_back(static_cast<StateIndex>(i));
      }
    }
    while (!stack.empty()) {
      StateIndex i = stack.back();
      stack.pop_back();
      for (StateIndex j : pred[static_cast<std::size_t>(i)]) {
        if (!can_end[static_cast<std::size_t>(j)]) {
          can_end[static_cast<std::size_t>(j)] = true;
          stack.push_back(j);
        }
      }
    }
    std::vector<bool> is_compensation(n, false);
    bool any_compensable = false;
    for (std::size_t i = 0; i < n; ++i) {
      if (!states[i].is_task()) continue;
      StateIndex c = states[i].service_task().compensate_state;
      if (c == kNoState) continue;
      is_compensation[static_cast<std::size_t>(c)] = true;
      if (reachable[i]) any_compensable = true;
      const std::string ptr = Join(Join("/States", states[i].name), "CompensateState");
      if (!states[c].is_task()) {
        Error(ptr, "CompensateState must name a ServiceTask; '" + states[c].name + "' is a " +
                       std::string(StateTypeName(states[c].type)));
      } else if (c == static_cast<StateIndex>(i)) {
        Error(ptr, "a state cannot compensate itself");
      } else if (states[c].service_task().compensate_state != kNoState) {
        Warn(ptr, "compensation state '" + states[c].name +
                      "' has a CompensateState of its own, which is never used");
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      const State& s = states[i];
      const std::string ptr = Join("/States", s.name);
      if (reachable[i] && !can_end[i]) {
        // Follow the first route until a state repeats, to show the loop.
        std::vector<StateIndex> path{static_cast<StateIndex>(i)};
        std::vector<bool> seen(n, false);
        seen[i] = true;
        StateIndex cur = static_cast<StateIndex>(i);
        while (!succ[static_cast<std::size_t>(cur)].empty()) {
          cur = succ[static_cast<std::size_t>(cur)][0];
          path.push_back(cur);
          if (seen[static_cast<std::size_t>(cur)]) break;
          seen[static_cast<std::size_t>(cur)] = true;
        }
        std::string loop;
        for (std::size_t k = 0; k < path.size(); ++k) {
          if (k) loop += " -> ";
          loop += states[path[k]].name;
        }
        std::string where = s.type == StateType::kChoice ? Join(ptr, "Choices") : Join(ptr, "Next");
        Error(where, "state '" + s.name + "' is in a cycle with no way out (" + loop +
                         "): no path from it reaches Succeed, Fail or a state without Next");
      }
      if (!reachable[i] && !is_compensation[i]) {
        Warn(ptr, "state '" + s.name + "' is never reached from StartState");
      }
      if (reachable[i] && is_compensation[i]) {
        Warn(ptr, "compensation state '" + s.name + "' is also reached in the forward flow");
      }
      if (reachable[i] && s.type == StateType::kCompensationTrigger && !any_compensable) {
        Warn(ptr,
             "CompensationTrigger in a flow where no reachable state has a CompensateState: "
             "there is nothing to compensate");
      }
    }
  }

  std::vector<Issue>& issues_;
  bool has_errors_ = false;
  std::unordered_map<std::string, StateIndex> index_;
};

// The first two tokens of a JSON pointer, unescaped.
std::pair<std::string, std::string> LeadingTokens(const std::string& pointer) {
  std::vector<std::string> tokens;
  std::size_t pos = 0;
  while (tokens.size() < 2 && pos < pointer.size() && pointer[pos] == '/') {
    std::size_t end = pointer.find('/', pos + 1);
    std::string raw = pointer.substr(pos + 1, end == std::string::npos ? end : end - pos - 1);
    std::string token;
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size()) {
        token += raw[i + 1] == '1' ? '/' : '~';
        ++i;
      } else {
        token += raw[i];
      }
    }
    tokens.push_back(std::move(token));
    if (end == std::string::npos) break;
    pos = end;
  }
  tokens.resize(2);
  return {tokens[0], tokens[1]};
}

// Orders issues as the places they point at appear in the file: by top-level key, and within
// States by state. Issues about the same place keep the order they were found in.
void SortByFilePosition(const OrderedJson& doc, std::vector<Issue>& issues) {
  if (!doc.is_object() || issues.size() < 2) return;
  std::unordered_map<std::string, std::size_t> top, states;
  for (const auto& [k, v] : doc.items()) top.emplace(k, top.size());
  if (auto it = doc.find("States"); it != doc.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) states.emplace(k, states.size());
  }
  auto position = [&](const Issue& issue) -> std::pair<std::size_t, std::size_t> {
    if (issue.pointer.empty()) return {0, 0};
    auto [first, second] = LeadingTokens(issue.pointer);
    // A key that is missing has no place of its own: it counts as the object that lacks it.
    auto t = top.find(first);
    std::size_t a = t == top.end() ? 0 : t->second + 1;
    std::size_t b = 0;
    if (first == "States" && !second.empty()) {
      auto s = states.find(second);
      b = s == states.end() ? 0 : s->second + 1;
    }
    return {a, b};
  };
  std::stable_sort(issues.begin(), issues.end(),
                   [&](const Issue& x, const Issue& y) { return position(x) < position(y); });
}

}  // namespace

LoadResult LoadStateMachine(std::string_view text) {
  LoadResult result;
  OrderedJson doc;
  try {
    DuplicateKeyFinder finder(result.issues);
    doc = OrderedJson::parse(
        text.begin(), text.end(),
        [&finder](int depth, OrderedJson::parse_event_t e, OrderedJson& parsed) {
          return finder(depth, e, parsed);
        },
        /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const TooDeep& e) {
    result.issues.push_back(Issue{
        Issue::Severity::kError, e.pointer,
        "the definition is nested deeper than " + std::to_string(kMaxDefinitionDepth) + " levels"});
    return result;
  } catch (const OrderedJson::parse_error& e) {
    std::string what = e.what();
    auto bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    result.issues.push_back(Issue{Issue::Severity::kError, "", "invalid JSON: " + what});
    return result;
  } catch (const std::exception& e) {
    result.issues.push_back(
        Issue{Issue::Severity::kError, "", std::string("invalid JSON: ") + e.what()});
    return result;
  }
  bool duplicate = !result.issues.empty();
  Validator validator(result.issues);
  auto machine = validator.Run(doc, std::string(text));
  if (!duplicate) result.machine = std::move(machine);
  SortByFilePosition(doc, result.issues);
  return result;
}

LoadResult LoadStateMachineFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    LoadResult r;
    r.issues.push_back(Issue{Issue::Severity::kError, "", "is a directory, not a flow file"});
    return r;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.issues.push_back(Issue{Issue::Severity::kError, "", "cannot read the file"});
    return r;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    LoadResult r;
    r.issues.push_back(Issue{Issue::Severity::kError, "", "error while reading the file"});
    return r;
  }
  return LoadStateMachine(buf.str());
}

}  // namespace sagaflow::statelang
