#pragma once

#include <optional>
#include <stop_token>
#include <string>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"

namespace sagaflow {

// What a task knows about the step it is running. Valid only during the call; it refers to
// what it is built from (the stop token included) rather than copying it.
class TaskContext {
 public:
  TaskContext(const InstanceId& instance_id, const StateName& state_name, int attempt,
              const std::string& idempotency_key, std::optional<TimePoint> deadline,
              const std::stop_token& stop)
      : instance_id_(instance_id),
        state_name_(state_name),
        attempt_(attempt),
        idempotency_key_(idempotency_key),
        deadline_(deadline),
        stop_(stop) {}

  const InstanceId& instance_id() const { return instance_id_; }
  const StateName& state_name() const { return state_name_; }
  // 1 for the first invocation, 2 for the first retry, ...
  int attempt() const { return attempt_; }
  // Stable for this instance, state and forward epoch: the same across retries and across a
  // recovery that re-runs the step, different after an operator's `forward`. Use it as the
  // unique key of the side effect.
  const std::string& idempotency_key() const { return idempotency_key_; }
  // When set, a result returned after this time counts as a TimeoutError.
  const std::optional<TimePoint>& deadline() const { return deadline_; }
  // Requested when the engine is shutting down; long tasks should stop early.
  bool stop_requested() const { return stop_.stop_requested(); }
  const std::stop_token& stop_token() const { return stop_; }

 private:
  const InstanceId& instance_id_;
  const StateName& state_name_;
  int attempt_;
  const std::string& idempotency_key_;
  std::optional<TimePoint> deadline_;
  const std::stop_token& stop_;
};

}  // namespace sagaflow
