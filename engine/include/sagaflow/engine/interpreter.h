#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/error_types.h"
#include "sagaflow/tasks/task_error.h"

namespace sagaflow::engine {

// What the interpreter wants done next with an instance.
struct Decision {
  enum class Kind {
    // Invoke the task of `execution` (attempt `attempt`) in this engine; its result comes back
    // as a TaskResult event. With `deadline`, a TimerDue event for (execution, attempt) at that
    // time fails the attempt with a TimeoutError if the result has not come first.
    kInvoke,
    // Hand the task of `execution` (attempt `attempt`) to the TaskDispatcher and park: nothing
    // runs for the instance until its TaskResult (or the TimerDue of its `deadline`) arrives.
    kDispatch,
    // Create the child instance of `execution` and park until its ChildFinished event.
    kStartChild,
    // Park until `wake_at` (a Wait state, a retry's backoff); then deliver TimerDue for
    // (execution, attempt), or Resume the instance as stored.
    kSleep,
    // Nothing to do until an event arrives: executions are in flight (an ignored event leaves
    // the instance where it was).
    kPark,
    // The run (or operation) is over; the record holds the outcome.
    kFinished,
  };
  Kind kind = Kind::kFinished;
  int execution = -1;  // kInvoke, kDispatch, kStartChild; for kSleep the retrying one or -1
  int attempt = 0;     // the attempt the event answering this decision must name
  TimePoint wake_at{};                 // kSleep
  std::optional<TimePoint> deadline;  // kInvoke, kDispatch: the attempt's TimeoutSeconds
};

// A decision and what the step changed in the record: the executor makes those changes
// durable before it acts on the decision. Every Step is a persistence point.
struct Step {
  Decision decision;
  // Further invocations or dispatches decided in the same step (several executions in flight);
  // acted on after `decision`, in order. Empty in the common case, so it costs no allocation.
  std::vector<Decision> more;
  ExecutionIds changed_executions;
  // The context must be written: a task's Output or an operation changed it, or the run or
  // operation ended.
  bool context_changed = false;
  // When set (with context_changed), the context differs from the one written last in these
  // keys only (one task's Output); null when any part of it may differ.
  const ContextKeys* context_keys = nullptr;
  // Not empty when the event no longer applied (a stale or duplicate result, a timer that is not
  // due or whose attempt is over): says why. Such a step changed nothing.
  std::string ignored;
};

// How a task invocation ended.
struct TaskOutcome {
  bool ok = false;
  Json result;          // when ok
  TaskFailure failure;  // when !ok
};

// Events: what happened to an instance, each naming what it answers.

// The task of (execution, attempt) returned or failed.
struct TaskResult {
  int execution = -1;
  int attempt = 0;
  TaskOutcome outcome;
};
// A timer of the instance is due: the backoff of (execution, attempt) is over, the deadline of
// (execution, attempt) has passed, or, with execution -1, the Wait state it sleeps in is over.
struct TimerDue {
  int execution = -1;
  int attempt = 0;
};
// The child instance started for `execution` has finished.
struct ChildFinished {
  int execution = -1;
  InstanceId child;
  RunStatus status = RunStatus::kUnknown;
  std::optional<RunStatus> compensation_status;
  SharedJson context;
};
using Event = std::variant<TaskResult, TimerDue, ChildFinished>;

// The statelang semantics as a pure step function: (definition, instance, event) -> decision.
// No I/O, no clock, no threads: everything the interpreter knows comes in through its
// arguments, so every rule (status decisions, routing, compensation order, retry arithmetic) is
// testable with plain values. Thread-safe (const); one instance must not be stepped from two
// threads at once.
class Interpreter {
 public:
  explicit Interpreter(const ErrorTypes& errors) : errors_(errors) {}

  // Begins a run. `record` has its id, input and context set; its cursor is fresh.
  Step Start(InstanceRecord& record, const statelang::StateMachine& machine, TimePoint now) const;

  // Applies an event. One that no longer applies (the execution ended or moved to another
  // attempt, the timer is not due yet, a second delivery of the same result) changes nothing:
  // the step says why in `ignored`, and its decision is kPark, or kSleep until the instance's
  // next timer.
  //
  // A TaskResult that arrives after its attempt's deadline counts as that attempt's
  // TimeoutError, whichever of the two events comes first.
  Step OnEvent(InstanceRecord& record, const statelang::StateMachine& machine, Event event,
               TimePoint now) const;

  // The earliest time the instance waits for (a Wait, a retry's backoff, a deadline), if any.
  static std::optional<TimePoint> NextWake(const InstanceRecord& record);

  // Operator operations on a finished instance. `patch` (an object, or null) is merged into the
  // context first, as Seata's replaceParams. Each is idempotent: on an instance where there is
  // nothing left to do it returns a kFinished step that changes nothing.
  // Errors: kFailedPrecondition when the instance is running or the operation does not apply.
  //
  // forward: re-runs the failed state (a new execution with a new epoch), or, when the last
  // state succeeded, routes on from its Next.
  Result<Step> Forward(InstanceRecord& record, const statelang::StateMachine& machine,
                       const Json& patch, TimePoint now) const;
  // compensate: compensates every executed, not yet compensated state, newest first.
  Result<Step> Compensate(InstanceRecord& record, const statelang::StateMachine& machine,
                          const Json& patch, TimePoint now) const;
  // skip: marks the failed state skipped and continues at its Next.
  Result<Step> Skip(InstanceRecord& record, const statelang::StateMachine& machine,
                    const Json& patch, TimePoint now) const;

  // Resumes an unfinished instance as stored: one taken over from an engine process that
  // stopped, or a parked one whose timer came due (any engine may claim it):
  // - created but never stepped: the run begins;
  // - sleeping in a Wait: goes on at its Next once due, else sleeps until then;
  // - a retry waiting in backoff: invokes again once due, else sleeps until then (attempt
  //   counters as stored);
  // - an attempt whose deadline has passed: fails it with a TimeoutError (Retry and Catch see it);
  // - a task execution started but never finished (in doubt): with the flow's RecoverStrategy
  //   Forward, or for a compensation, invokes it again with the same idempotency key; with
  //   Compensate (the default) marks it UN, ends the run and compensates everything executed,
  //   the in-doubt step included (Seata treats UN states as compensable).
  // Errors: kInternal when the stored cursor is inconsistent.
  Result<Step> Resume(InstanceRecord& record, const statelang::StateMachine& machine,
                      TimePoint now) const;

  // The forward executions a compensation would undo now, in the order it would undo them
  // (newest first): executed, not FA or skipped or superseded, with a CompensateState, and not
  // compensated successfully yet.
  std::vector<int> Compensable(const InstanceRecord& record,
                               const statelang::StateMachine& machine) const;

  // The delay before retry number `retry` (1-based) under `rule`, before jitter:
  // IntervalSeconds x BackoffRate^(retry-1), capped by MaxDelaySeconds.
  static Duration BackoffDelay(const statelang::RetryRule& rule, int retry);

 private:
  class Run;
  const ErrorTypes& errors_;
};

}  // namespace sagaflow::engine
