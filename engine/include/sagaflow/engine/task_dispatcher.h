#pragma once

#include <functional>
#include <optional>
#include <string>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/interpreter.h"

namespace sagaflow::engine {

// The outcome of one delivery, as a worker reports it.
struct TaskReply {
  InstanceId instance;
  int execution = -1;
  int attempt = 0;
  TaskOutcome outcome;
};

// Where async steps go: the engine hands each attempt of an `IsAsync` step to a dispatcher and
// parks the instance; the dispatcher has a worker run the task and reports the outcome back.
//
// Delivery is AT LEAST ONCE. A delivery may reach a worker more than once (a redelivery after a
// crash or a lost acknowledgement) and its reply may arrive more than once, or after the
// engine gave the attempt up (its deadline passed). Tasks must therefore be idempotent on
// TaskDelivery::idempotency_key; the engine de-duplicates replies on (instance, execution,
// attempt): a reply for an attempt that is no longer in flight changes nothing.
//
// Thread-safe. Start() before the first Dispatch, Stop() before destruction.
class TaskDispatcher {
 public:
  using ReplyHandler = std::function<void(TaskReply)>;

  virtual ~TaskDispatcher() = default;

  // Begins delivering; replies go to `on_reply`, on a thread of the dispatcher (or on the
  // calling thread of Dispatch for a dispatcher without threads). `on_reply` must be
  // thread-safe and must not block for long.
  virtual Status Start(ReplyHandler on_reply) = 0;
  // Stops taking deliveries and waits for replies in progress (a task still running is not
  // waited for past `deadline`). Idempotent.
  virtual void Stop() noexcept = 0;

  // Hands `delivery` over; returns once the dispatcher has taken responsibility for it (for a
  // durable dispatcher: once the broker confirmed it), or `deadline` passes
  // (kDeadlineExceeded). kUnavailable when it could not be taken: the engine dispatches it
  // again later. The delivery may run before this returns.
  virtual Status Dispatch(const TaskDelivery& delivery, TimePoint deadline) = 0;

  // Whether a delivery taken survives the end of this process (a broker's durable queue). When
  // false (the in-process dispatcher), the engine keeps the instance leased while its task
  // runs, so that recovery treats an attempt lost with the process as in doubt; when true, the
  // instance parks without an owner until the reply arrives.
  virtual bool durable() const = 0;
};

}  // namespace sagaflow::engine
