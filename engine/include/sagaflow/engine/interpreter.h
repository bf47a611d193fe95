#pragma once

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
    kInvoke,    // invoke the task of `execution` (its input and attempt are in the record)
    kWait,      // wake the instance at `wake_at` and call OnRetryDue
    kFinished,  // the run (or operation) is over; the record holds the outcome
  };
  Kind kind = Kind::kFinished;
  int execution = -1;
  TimePoint wake_at{};
};

// A decision and what the step changed in the record: the executor makes those changes
// durable before it acts on the decision. Every Step is a persistence point.
struct Step {
  Decision decision;
  ExecutionIds changed_executions;
  // The context must be written: a task's Output or an operation changed it, or the run or
  // operation ended.
  bool context_changed = false;
  // When set (with context_changed), the context differs from the one written last in these
  // keys only (one task's Output); null when any part of it may differ.
  const ContextKeys* context_keys = nullptr;
};

// How a task invocation ended.
struct TaskOutcome {
  bool ok = false;
  Json result;          // when ok
  TaskFailure failure;  // when !ok
};

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

  // The task of record.cursor.active_execution returned or failed.
  Step OnTaskDone(InstanceRecord& record, const statelang::StateMachine& machine,
                  TaskOutcome outcome, TimePoint now) const;

  // The backoff of record.cursor.active_execution is over: invoke again.
  Step OnRetryDue(InstanceRecord& record, const statelang::StateMachine& machine,
                  TimePoint now) const;

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

  // Resumes an unfinished instance taken over from an engine process that stopped, as stored:
  // - created but never stepped: the run begins;
  // - a retry waiting in backoff: waits until it was due (attempt counters as stored);
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
