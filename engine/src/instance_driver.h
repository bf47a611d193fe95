#pragma once

// Steps the instances an executor holds. Internal to engine/.

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>

#include "flow_catalog.h"
#include "live.h"
#include "outbox.h"
#include "scheduler.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/engine/task_dispatcher.h"
#include "task_runner.h"
#include "timer_service.h"

namespace sagaflow::engine {

// What the driver works with; owned by the executor.
struct DriverParts {
  const ExecutorOptions& options;
  const TaskRegistry& registry;
  StateStore& store;
  const Clock& clock;
  const Interpreter& interpreter;
  FlowCatalog& catalog;
  LiveTable& table;
  Scheduler& scheduler;
  TimerService& timers;
  TaskRunner& runner;
  TaskDispatcher* dispatcher;
  Outbox* outbox;  // with a durable dispatcher, else null
  std::stop_token stop;  // requested when the executor stops; lent to every task
  // Claims what is due soon, on the thread that claims what is due periodically (null when
  // nothing claims periodically: then a parked instance's local timer claims it alone).
  std::function<void()> claim_due_soon;
};

// Drives one instance at a time per work item: applies its events to the interpreter, makes
// each step durable, then acts on the decision (invokes the task, hands it to the dispatcher,
// parks the instance, finishes it). An instance is driven by one thread at a time: events that
// arrive meanwhile wait in its inbox and are taken, in order, when it would otherwise rest.
//
// Parking. An instance that sleeps (a Wait, a retry's backoff), or waits for a result only an
// event brings, is written with its wake time as its lease and no owner, and leaves memory:
// it holds no thread, no executor slot and no lease. Its timer fires from memory (a local
// timer, when due within the horizon) or from the store (the next claim of due instances, by
// any process); the event that wakes it claims it first, so that it fires once.
//
// Thread-safe.
class InstanceDriver {
 public:
  explicit InstanceDriver(DriverParts parts);

  // The scheduler's handler.
  void Run(Work work);

  // A reply of the dispatcher.
  void OnReply(TaskReply reply);

  // Decides a new instance's first step before it is stored: the create stores the instance
  // with that step (the first task's "started" record), so a start costs one write, not two.
  // Returns the outbox rows to create with it (its first step's dispatches).
  std::vector<DispatchRecord> DecideFirstStep(Live& live);
  // Registers a stored new instance and queues the action of its first step.
  void Launch(std::shared_ptr<Live> live);

  // Reserves `id` here, reads it with `load` (which claims it, or reads what this engine
  // claimed), and queues its first step: `event` applied to it, or, without one, its
  // resumption (Interpreter::Resume). An instance found finished is left alone (its lease
  // given back). Errors: kFailedPrecondition when it is already held here or owned by another
  // process; the load's, the flow's or the interpreter's errors (the lease is given back).
  Status ResumeWith(const InstanceId& id, const std::function<Result<InstanceRecord>()>& load,
                    std::optional<Event> event = std::nullopt);

  // Queues `live` (reserved in the table, with a pending step) to store and act on its step.
  void QueuePending(std::shared_ptr<Live> live);

  // Gives up the lease of a claimed instance this executor will not run (so that another
  // process can take it at once).
  void ReleaseLease(const InstanceRecord& record);

  // Store calls whose callback has not come yet (Stop waits for them), and tasks or
  // deliveries whose result has not come back (manual mode waits for them too).
  std::size_t store_calls() const;
  std::size_t tasks_out() const { return tasks_out_.load(); }
  void WaitForStoreCalls();
  // Around a store call made for the executor whose callback refers to it: Begin returns the
  // slot that End, given it, counts down (on whichever thread the callback comes).
  std::size_t BeginStoreCall();
  void EndStoreCall(std::size_t slot);

  ExecutorStats stats() const;

 private:
  // Applies `event` to the record, counting what no longer applied.
  Step Apply(Live& live, Event event, TimePoint now);
  void Drive(std::shared_ptr<Live> live, Step step, bool stored, TimePoint now);
  // Hands an event to an instance held here; routes it by id when the instance left.
  // `from_here`: the result of a task this executor ran for it.
  void DeliverTo(const std::shared_ptr<Live>& live, Event event, bool from_here);
  // An event for an instance that is not held here: claims it, then applies the event.
  void ClaimFor(const InstanceId& id, Event event);
  // The next event of the inbox, or none (the instance rests: busy is cleared).
  std::optional<Event> NextEvent(Live& live);

  // What the write of `step` carries besides the step's changes (time, lease); returns whether
  // it must store the whole header, and sets live.parking.
  bool PrepareWrite(Live& live, const Step& step, TimePoint now);
  // The batch that stores `step`'s changes to live.record, written over `batch` (the
  // instance's previous one).
  void FillBatch(const Live& live, const Step& step, bool header, WriteBatch& batch) const;
  // The outbox rows of the dispatches `step` decides (none without an outbox).
  std::vector<DispatchRecord> DispatchesOf(const Live& live, const Step& step) const;
  // Stores `step`. True when it is stored already (the store completed at once): the caller
  // acts on it. False when the write completes later (OnWritten acts on it then) or was
  // refused (retried after a backoff, or the instance lost): the caller lets go of `live`.
  bool Store(std::shared_ptr<Live>& live, Step& step, TimePoint now);
  // A write that completed on the store's thread.
  void OnWritten(std::shared_ptr<Live> live, Status status);
  void Stored(Live& live);
  enum class Refusal { kRetry, kLost };
  Refusal Refused(Live& live, const Status& status);

  // Runs a task with a deadline on the task runner (its result comes back as an event).
  void InvokeApart(const std::shared_ptr<Live>& live, const Decision& decision, const TaskFn& fn);
  // Hands a task to the dispatcher. False when it refused (the caller dispatches it again).
  bool Dispatch(const std::shared_ptr<Live>& live, const Decision& decision);
  TaskDelivery DeliveryFor(const Live& live, const Decision& decision) const;
  TaskOutcome Invoke(const TaskDelivery& delivery, const TaskFn& fn);
  // Invokes the task of `decision` on this thread, from the record (nothing copied).
  TaskOutcome InvokeHere(const Live& live, const Decision& decision, const TaskFn& fn);
  const TaskFn* TaskFor(const Live& live, int execution) const;
  // The instance was written parked: it leaves memory (unless an event came meanwhile: then it
  // is claimed again and driving goes on, with true returned).
  bool Parked(const std::shared_ptr<Live>& live, const Decision& decision, TimePoint now);
  void Finish(const std::shared_ptr<Live>& live, Status status);

  DriverParts p_;

  // Store calls in flight, counted in one slot per thread (each in its cache line): a step's
  // write, which the memory store completes on the same thread, counts up and down a line no
  // other thread touches, rather than one all workers contend for at every step. Their sum is
  // what is in flight.
  static constexpr std::size_t kCallSlots = 16;
  struct alignas(64) CallSlot {
    std::atomic<std::int64_t> n{0};
  };
  std::array<CallSlot, kCallSlots> store_calls_{};
  alignas(64) std::atomic<std::size_t> tasks_out_{0};

  // Refused writes, for a rate-limited warning.
  std::atomic<std::uint64_t> refused_writes_{0};
  std::atomic<std::uint64_t> logged_refusals_{0};
  std::atomic<std::int64_t> last_refusal_log_ms_{-1000000};

  std::atomic<std::uint64_t> events_ignored_{0};
  std::atomic<std::uint64_t> late_results_{0};
  std::atomic<std::uint64_t> dispatched_{0};
  std::atomic<std::uint64_t> parked_{0};
  std::atomic<std::uint64_t> woken_{0};

  // Times at which a claim of what is due is scheduled for parked instances' local timers:
  // instances parked until the same time share one timer and one claim.
  std::mutex claim_times_mu_;
  std::set<TimePoint> claim_times_;
};

}  // namespace sagaflow::engine
