#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/engine/task_dispatcher.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::engine {

struct ExecutorOptions {
  // Threads that run instances. 0: no threads; the caller drives with RunUntilIdle().
  int workers = 2;
  // Refuse to start an instance of a flow that calls a task nobody registered. When false, an
  // instance that reaches such a task stops (it stays RU) and its waiters get kNotFound.
  bool require_registered_tasks = true;
  // With workers == 0: when nothing is ready, jump this clock to the next timer instead of
  // waiting (the virtual time of `simulate`). Must be the executor's clock.
  ManualClock* virtual_clock = nullptr;
  // Backoff when the store refuses a write (or the dispatcher a delivery): doubles from the
  // first value up to the second.
  Duration store_retry_initial = std::chrono::milliseconds(50);
  Duration store_retry_max = std::chrono::seconds(5);
  // Called on an executor thread after an instance's run or operation has finished and been
  // stored. Must be thread-safe and quick.
  std::function<void(const InstanceRecord&)> on_finished;
  // This process's name in the leases of the instances it runs; "" picks a unique one.
  std::string owner;
  // How long a lease lasts unless renewed. With threads, the executor renews its leases every
  // sixth of it; the first write of a run or operation renews that instance's, the last gives
  // it back. Only instances this executor steps are leased: a parked one has no owner.
  Duration lease_ttl = std::chrono::seconds(5);
  // With threads: claim and resume the instances that are due this often: parked instances
  // whose timer came (a Wait, a retry's backoff, a deadline) and instances whose engine
  // process stopped (their lease expired). Zero: only the timers of the instances this
  // executor parked itself fire (from memory), and the rest only when RecoverExpired() is
  // called. A long-running engine sets it (about a second).
  Duration recover_every = Duration::zero();
  // With recover_every set, a timer of an instance this executor parks fires from memory when
  // it is due within this horizon (as a claim of everything due then, shared by the timers due
  // together), else from the store by the next claim after it is due (so that a million
  // instances sleeping for days hold no memory here).
  Duration local_timer_horizon = std::chrono::seconds(60);
  // Such a timer fires at its wake time rounded up to a multiple of this tick, so that the
  // Waits of instances started one after another share claims: at most one claim per tick,
  // however many instances are due in it. A Wait ends up to one tick late, never early.
  // Zero: each distinct wake time has its own claim.
  Duration local_timer_tick = std::chrono::milliseconds(10);
  // Where async steps (IsAsync) go. Without one, a flow with async steps is refused by AddFlow.
  // Must outlive the executor; the executor starts it (Start) and stops it (Stop).
  TaskDispatcher* dispatcher = nullptr;
  // With a durable dispatcher, each dispatch is stored with the step that decides it (the
  // store's outbox) and handed over once that is stored. A stored dispatch not reported taken
  // this long after it was written (its process died, or the dispatcher refused it) is handed
  // over by the next claim of what is due, in any process, and again this long after each
  // try.
  Duration dispatch_retry = std::chrono::seconds(30);
  // Threads for tasks with TimeoutSeconds, apart from `workers`, so that a task that hangs
  // holds one of these and never a worker, and its deadline holds while it runs. With
  // workers == 0 such tasks run on the calling thread (a late result still counts as a
  // TimeoutError).
  int task_threads = 4;
};

// What the executor has seen; for tests, benchmarks and metrics.
struct ExecutorStats {
  std::uint64_t events_ignored = 0;  // events that no longer applied (stale, duplicate, early)
  std::uint64_t late_results = 0;    // results that came after their attempt's deadline or end
  std::uint64_t dispatched = 0;      // deliveries handed to the dispatcher
  std::uint64_t parked = 0;          // times an instance parked (gave its lease up to sleep)
  std::uint64_t woken = 0;           // parked instances claimed again for a timer or an event
};

// What one pass of recovery did.
struct RecoverReport {
  std::vector<InstanceId> resumed;
  // Claimed but not resumable (not loaded, their flow no longer loads, a task is not
  // registered, ...): their lease is released for a later pass, here or elsewhere, to try.
  std::vector<std::pair<InstanceId, Status>> failed;
  // Stored dispatches left behind (see ExecutorOptions::dispatch_retry) this pass handed over.
  std::size_t redispatched = 0;
};

struct StartOptions {
  std::string business_key;  // "" for none; else unique per flow (a repeat start is idempotent)
};

enum class Operation { kForward, kCompensate, kSkip };
std::string_view OperationName(Operation op);

// Runs instances: drives the Interpreter on the events of each instance (task results, timers,
// operator operations), invokes tasks or hands async ones to the TaskDispatcher, keeps every
// timer in one queue (and in the store, so that any process fires a parked instance's timer),
// and makes every step durable in the StateStore before acting on it ("started" before a task
// is invoked, "finished" before the next step acts).
//
// Built from parts with one job each (engine/src): FlowCatalog (the flows it runs), Scheduler
// (worker threads and queues), TimerService (wake-up times), InstanceDriver (steps one
// instance: interpreter, store, tasks), LeaseKeeper (renews leases, claims what is due) and
// Recovery (resumes what was claimed).
//
// Thread-safe. Start() before use (except in manual mode), Stop() before destruction (the
// destructor calls it). Instances in flight when Stop() is called stay RU in the store.
class Executor {
 public:
  Executor(ExecutorOptions options, const TaskRegistry& registry, StateStore& store,
           const Clock& clock);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  Status Start();
  void Stop() noexcept;

  // Stores the definition and makes the flow startable. Errors: kInvalidArgument when a task
  // it calls is not registered (and require_registered_tasks), or it has async steps and there
  // is no dispatcher; or the store's error.
  Status AddFlow(const std::shared_ptr<const statelang::StateMachine>& machine);

  // Starts an instance and returns its id without waiting. `input` must be a JSON object (or
  // null for {}). With a business key already used by the flow: the existing instance's id
  // when the input is the same, kConflict when it differs.
  Result<InstanceId> StartInstance(const std::shared_ptr<const statelang::StateMachine>& machine,
                                   Json input, const StartOptions& options = {});
  // The same with an input shared with the caller (not copied: many instances may start from
  // one input).
  Result<InstanceId> StartInstance(const std::shared_ptr<const statelang::StateMachine>& machine,
                                   SharedJson input, const StartOptions& options = {});
  // StartInstance without blocking: `started` is called once the instance is stored (with its
  // id, or the existing instance's for a repeated business key) or refused, on an executor or
  // store thread (or on this one, for an error found before storing or a synchronous store).
  // `started` must not block on the store (no StartInstance, Run or Await in it: on a
  // group-committing store it runs on the thread that would have to serve them); starting
  // more instances with StartInstanceAsync is fine.
  using StartDone = std::function<void(Result<InstanceId>)>;
  void StartInstanceAsync(const std::shared_ptr<const statelang::StateMachine>& machine,
                          SharedJson input, const StartOptions& options, StartDone started);

  // Waits until the instance's current run or operation finishes, or `timeout` passes
  // (kDeadlineExceeded). Returns the stored record. An instance that runs in another process
  // is returned as stored at once; one that is parked (sleeping, waiting for a result) is
  // waited for while this executor is the one to wake it.
  Result<InstanceRecord> Await(const InstanceId& id, Duration timeout);

  // StartInstance, then Await.
  Result<InstanceRecord> Run(const std::shared_ptr<const statelang::StateMachine>& machine,
                             Json input, const StartOptions& options, Duration timeout);

  // Applies an operator operation to a finished instance and waits for it to finish.
  // Errors: kNotFound, kFailedPrecondition (running, or the operation does not apply),
  // kInvalidArgument (patch not an object), kDeadlineExceeded.
  Result<InstanceRecord> Operate(Operation op, const InstanceId& id, const Json& patch,
                                 Duration timeout);

  // Takes over one unfinished instance and resumes it where the store says it is (see
  // Interpreter::Resume). Errors: kNotFound, kFailedPrecondition while another process holds a
  // live lease on it or it is already running here, the flow's or the store's errors.
  Status Resume(const InstanceId& id);

  // Claims up to `limit` instances that are due (timers of parked instances, leases that
  // expired) and resumes them.
  Result<RecoverReport> RecoverExpired(std::size_t limit = 1000);

  // Manual mode only: runs ready work and due timers on this thread until nothing is left.
  Status RunUntilIdle();

  // Instances this executor holds: running, waiting for a task that runs here, or in
  // between steps. Parked instances are not counted.
  std::size_t live_instances() const;

  ExecutorStats stats() const;

  const std::string& owner() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sagaflow::engine
