#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

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
  bool persist = true;
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

enum class StateType { kServiceTask, kChoice, kSucceed, kFail, kCompensationTrigger };

std::string_view StateTypeName(StateType type);

// One state of a compiled machine. `next` is kNoState when the state has no `Next` (for a task
// state that ends the machine).
struct State {
  std::string name;
  StateType type;
  StateIndex next = kNoState;
  std::string comment;
  std::variant<ServiceTaskState, ChoiceState, SucceedState, FailState, CompensationTriggerState>
      spec;

  const ServiceTaskState& service_task() const { return std::get<ServiceTaskState>(spec); }
  const ChoiceState& choice() const { return std::get<ChoiceState>(spec); }
  const FailState& fail() const { return std::get<FailState>(spec); }
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
