#pragma once

#include <array>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/task_error.h"

namespace sagaflow::engine {

// Seata's status codes, for state executions and for whole instances.
enum class RunStatus { kRunning, kSucceeded, kFailed, kUnknown, kSkipped };  // RU SU FA UN SK

std::string_view RunStatusCode(RunStatus s);
std::optional<RunStatus> ParseRunStatus(std::string_view code);

// A small set of execution ids (a step changes two or three), kept inline so that recording
// what changed costs no allocation. Iterates in insertion order.
//
// Why it stays a hand-written small vector: every step of every instance builds one (the
// interpreter records what it changed, the store writes exactly those), and a std::vector here
// was one allocation and one free per step, about 4% of the in-memory fulfilment benchmark.
class ExecutionIds {
 public:
  using value_type = int;
  using const_iterator = const int*;
  using iterator = const int*;
  using size_type = std::size_t;

  ExecutionIds() = default;
  ExecutionIds(std::initializer_list<int> ids) {
    for (int id : ids) Add(id);
  }

  // Adds `id` unless it is already there.
  void Add(int id) {
    for (int x : *this) {
      if (x == id) return;
    }
    if (!heap_.empty() || size_ == kInline) {
      if (heap_.empty()) heap_.assign(inline_.begin(), inline_.end());
      heap_.push_back(id);
    } else {
      inline_[size_] = id;
    }
    ++size_;
  }
  const int* begin() const { return heap_.empty() ? inline_.data() : heap_.data(); }
  const int* end() const { return begin() + size_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  static constexpr std::size_t kInline = 6;
  std::array<int, kInline> inline_{};
  std::size_t size_ = 0;
  std::vector<int> heap_;  // all ids, once there are more than kInline
};

enum class ExecutionKind { kForward, kCompensation };
std::string_view ExecutionKindName(ExecutionKind k);

// One execution of a task state: the first attempt and its retries share one record.
struct StateExecution {
  int id = 0;  // position in InstanceRecord::executions
  StateName state;
  statelang::StateIndex state_index = statelang::kNoState;
  ExecutionKind kind = ExecutionKind::kForward;
  int compensates = -1;  // for a compensation: the forward execution it undoes
  int retried_for = -1;  // the execution this one replaces (operator forward or skip)
  int epoch = 0;
  int attempts = 0;  // invocations started so far
  RunStatus status = RunStatus::kRunning;
  // For forward executions: the status of the latest compensation of this execution.
  std::optional<RunStatus> compensation_status;
  // Replaced by a later execution (forward re-run or skip): left out of status decisions and
  // of compensation.
  bool superseded = false;
  bool for_update = false;
  std::vector<int> retry_counts;      // retries used, per Retry rule of the state
  std::optional<TimePoint> retry_at;  // set while waiting in backoff
  // While an attempt runs with TimeoutSeconds: when it fails with a TimeoutError if its result
  // has not arrived.
  std::optional<TimePoint> deadline_at;
  std::string idempotency_key;
  SharedJson input;   // the argument list
  SharedJson output;  // the task's result (null until it returned)
  std::optional<TaskFailure> error;
  TimePoint started_at{};
  std::optional<TimePoint> ended_at;
};

// The context keys a task's Output sets, as its state defines them (the flow's definition
// outlives every instance of it).
using ContextKeys = std::vector<std::pair<std::string, statelang::ValueTemplate>>;

enum class Phase { kForward, kCompensating, kFinished };

// Where the interpreter is in an instance; persisted with it so that a run can resume.
struct Cursor {
  Phase phase = Phase::kForward;
  statelang::StateIndex current = statelang::kNoState;  // forward: the state to act on
  // The task execution the run waits on: in flight (invoked, dispatched) or waiting to retry.
  // Executions in flight are those whose status is kRunning; events name the one they answer.
  int active_execution = -1;
  // A Wait state (cursor.current) sleeping until this time.
  std::optional<TimePoint> wake_at;
  std::vector<int> compensation_stack;  // forward executions still to compensate; back is next
  std::vector<int> compensations_run;   // compensation executions of the current compensation
  statelang::StateIndex compensation_trigger = statelang::kNoState;  // kNoState: an operation
  bool compensated_in_run = false;  // compensation happened in the current run or operation
  bool reached_fail = false;
  std::optional<TaskFailure> caught;  // the error a Catch routed on, for `$Exception{}`
  int epoch = 0;
  int run_first_execution = 0;        // first execution of the current run or operation
  int idle_transitions = 0;           // routing steps since the last task (guards Choice loops)
  std::int64_t sequences_issued = 0;  // `$Sequence` values this instance has produced
};

// An instance as the store keeps it.
struct InstanceRecord {
  InstanceId id;
  std::string flow_name;
  std::string flow_version;
  std::string flow_hash;
  std::string business_key;  // "" when none
  RunStatus status = RunStatus::kRunning;
  std::optional<RunStatus> compensation_status;
  SharedJson input;                  // as started
  SharedJson context;                // current (shares the input until the first change)
  std::optional<TaskFailure> error;  // the error that ended the latest run, if any
  std::string error_code;            // of the Fail state reached, if any
  std::string error_message;
  TimePoint started_at{};
  TimePoint updated_at{};
  std::optional<TimePoint> ended_at;
  // The engine process running the instance ("" when none yet) and when its lease expires.
  // An owner renews its leases while it lives; an unfinished instance whose lease expired is
  // claimed by the next process that recovers (see StateStore::ClaimDue).
  std::string owner;
  TimePoint lease_until{};
  std::vector<StateExecution> executions;
  Cursor cursor;

  bool finished() const { return cursor.phase == Phase::kFinished; }
};

// One attempt of an async step (`IsAsync: true`), handed to a worker.
struct TaskDelivery {
  InstanceId instance;
  int execution = -1;  // the StateExecution's id within the instance
  int attempt = 0;     // 1-based; a retry is a new attempt, a redelivery is not
  StateName state;
  TaskName task;  // "ServiceName.ServiceMethod"
  // Stable for the logical step across attempts, redeliveries and recovery: what the task uses
  // to recognise a repeat (see TaskContext::idempotency_key).
  std::string idempotency_key;
  SharedJson input;                   // the rendered argument list
  std::optional<TimePoint> deadline;  // TimeoutSeconds: a result after it is ignored
};

}  // namespace sagaflow::engine
