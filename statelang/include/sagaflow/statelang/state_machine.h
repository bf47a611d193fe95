#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/statelang/expression.h"
#include "sagaflow/statelang/value_template.h"

namespace sagaflow::statelang {

// Index of a state in StateMachine::states().
using StateIndex = int;
inline constexpr StateIndex kNoState = -1;

// The status a `Status` rule assigns to a state execution.
enum class StepStatus { kSucceeded, kFailed, kUnknown };  // SU FA UN

enum class RecoverStrategy { kCompensate, kForward };

enum class JitterStrategy { kNone, kFull };

// One element of a task state's `Retry` list. Defaults are AWS Step Functions' (Seata's absent
// keys would crash or retry at once).
struct RetryRule {
  std::vector<std::string> exceptions;  // empty: matches NetworkError and its descendants
  double interval_seconds = 1.0;
  int max_attempts = 3;  // retries after the first attempt
  double backoff_rate = 2.0;
  std::optional<double> max_delay_seconds;
  JitterStrategy jitter = JitterStrategy::kNone;
};

struct CatchRule {
  std::vector<std::string> exceptions;
  StateIndex next = kNoState;
};

struct StatusRule {
  Expression condition;  // over the task's result; `$Exception{T}` over its error
  StepStatus status;
};

struct ServiceTaskState {
  TaskName task;  // "ServiceName.ServiceMethod"
  std::string service_name;
  std::string service_method;
  StateIndex compensate_state = kNoState;
  bool for_update = false;        // forced true when CompensateState is set
  bool for_compensation = false;  // true when another state names this one as CompensateState
  // The step's task is handed to the engine's TaskDispatcher and its result resumes the
  // instance. With a durable dispatcher the instance parks meanwhile, holding no thread; with
  // the in-process one it stays leased here (its attempt would be lost with the process).
  bool is_async = false;
  // sagaflow extension: a result that arrives later than this counts as a TimeoutError.
  std::optional<double> timeout_seconds;
  std::vector<ValueTemplate> input;                              // positional arguments
  std::vector<std::pair<std::string, ValueTemplate>> output;     // context key -> value
  std::vector<StatusRule> status;                                // first true wins
  std::vector<RetryRule> retry;
  std::vector<CatchRule> catches;
};

struct Choice {
  Expression condition;
  StateIndex next = kNoState;
};

struct ChoiceState {
  std::vector<Choice> choices;
  StateIndex default_next = kNoState;
};

struct SucceedState {};

struct FailState {
  std::string error_code;
  std::string message;
};

struct CompensationTriggerState {};

// sagaflow extension: a durable timer. Exactly one of the four ways to say when is set; the
// instance sleeps (parked in the store, holding no thread) until then, then goes on at `next`.
struct WaitState {
  enum class Kind { kSeconds, kSecondsPath, kTimestamp, kTimestampPath };
  Kind kind = Kind::kSeconds;
  double seconds = 0;       // kSeconds: at least 0
  std::string timestamp;    // kTimestamp: RFC 3339, as written
  TimePoint at{};           // kTimestamp: parsed
  Expression path;          // k*Path: over the context; a number of seconds, or an RFC 3339 text
};

enum class StateType { kServiceTask, kChoice, kSucceed, kFail, kCompensationTrigger, kWait };

std::string_view StateTypeName(StateType type);

// One state of a compiled machine. `next` is kNoState when the state has no `Next` (for a task
// state that ends the machine).
struct State {
  std::string name;
  StateType type;
  StateIndex next = kNoState;
  std::string comment;
  std::variant<ServiceTaskState, ChoiceState, SucceedState, FailState, CompensationTriggerState,
               WaitState>
      spec;

  const ServiceTaskState& service_task() const { return std::get<ServiceTaskState>(spec); }
  const ChoiceState& choice() const { return std::get<ChoiceState>(spec); }
  const FailState& fail() const { return std::get<FailState>(spec); }
  const WaitState& wait() const { return std::get<WaitState>(spec); }
  bool is_task() const { return type == StateType::kServiceTask; }
};

// A validated, compiled flow definition. Built by LoadStateMachine; immutable, shared between
// threads as std::shared_ptr<const StateMachine>.
class StateMachine {
 public:
  StateMachine(std::string name, std::string version, std::string comment, StateIndex start,
               RecoverStrategy recover_strategy, std::vector<State> states, std::string content);

  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  const std::string& comment() const { return comment_; }
  StateIndex start() const { return start_; }
  RecoverStrategy recover_strategy() const { return recover_strategy_; }
  const std::vector<State>& states() const { return states_; }
  const State& state(StateIndex i) const { return states_[static_cast<std::size_t>(i)]; }
  // kNoState when there is no such state.
  StateIndex Find(std::string_view name) const;
  // The definition text as loaded, and a hash of it (16 hex digits, FNV-1a 64).
  const std::string& content() const { return content_; }
  const std::string& content_hash() const { return hash_; }
  // Every task name the machine can invoke, in state order, without repeats.
  std::vector<TaskName> TaskNames() const;

 private:
  std::string name_;
  std::string version_;
  std::string comment_;
  StateIndex start_;
  RecoverStrategy recover_strategy_;
  std::vector<State> states_;
  std::unordered_map<std::string, StateIndex> index_;
  std::string content_;
  std::string hash_;
};

}  // namespace sagaflow::statelang
