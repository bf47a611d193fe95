#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <stop_token>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"
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
  // Backoff when the store refuses a write: doubles from the first value up to the second.
  Duration store_retry_initial = std::chrono::milliseconds(50);
  Duration store_retry_max = std::chrono::seconds(5);
  // Called on an executor thread after an instance's run or operation has finished and been
  // stored. Must be thread-safe and quick.
  std::function<void(const InstanceRecord&)> on_finished;
  // This process's name in the leases of the instances it runs; "" picks a unique one.
  std::string owner;
  // How long a lease lasts unless renewed. With threads, the executor renews its leases every
  // third of it; the first write of a run or operation renews that instance's, the last gives
  // it back.
  Duration lease_ttl = std::chrono::seconds(5);
  // With threads: claim and resume instances whose lease expired (their engine process
  // stopped) this often. Zero: only when RecoverExpired() is called.
  Duration recover_every = Duration::zero();
};

// What one pass of recovery did.
struct RecoverReport {
  std::vector<InstanceId> resumed;
  // Claimed but not resumable (their flow no longer loads, a task is not registered, ...):
  // their lease is released for another process to try.
  std::vector<std::pair<InstanceId, Status>> failed;
};

struct StartOptions {
  std::string business_key;  // "" for none; else unique per flow (a repeat start is idempotent)
};

enum class Operation { kForward, kCompensate, kSkip };
std::string_view OperationName(Operation op);

// Runs instances: drives the Interpreter, invokes tasks, keeps retry timers in one timer queue
// and makes every step durable in the StateStore before acting on it ("started" before a task
// is invoked, "finished" before the next step acts).
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
  // it calls is not registered (and require_registered_tasks), or the store's error.
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
  // (kDeadlineExceeded). Returns the stored record.
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

  // Claims up to `limit` instances whose lease expired and resumes them.
  Result<RecoverReport> RecoverExpired(std::size_t limit = 1000);

  // Manual mode only: runs ready work and due timers on this thread until nothing is left.
  Status RunUntilIdle();

  // Instances currently running or waiting in this executor.
  std::size_t live_instances() const;

  const std::string& owner() const { return options_.owner; }

 private:
  struct Flow;
  struct Live;
  struct Waiter;
  enum class Event {
    kRetryDue,  // a retry's backoff is over
    kPending,   // store Live::pending, then act on it (an operation's first step, a retry)
    kStored,    // Live::pending is stored (asynchronously): act on it
  };
  struct Work {
    std::shared_ptr<Live> live;
    Event event;
  };
  struct Timer {
    TimePoint due;
    std::uint64_t seq;
    Work work;
    bool operator>(const Timer& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };

  Result<const Flow*> FlowFor(const std::shared_ptr<const statelang::StateMachine>& machine);
  Result<const Flow*> FlowForRecord(const InstanceRecord& record);
  void Enqueue(Work work);
  void AddTimer(TimePoint due, Work work);
  void WorkerLoop(std::stop_token stop, std::size_t worker);
  void TimerLoop(std::stop_token stop);
  // Moves due timers to the ready queue; returns the next due time, if any.
  std::optional<TimePoint> ReleaseDueTimers();
  Result<std::shared_ptr<Live>> NewLive(
      const std::shared_ptr<const statelang::StateMachine>& machine, SharedJson input,
      const StartOptions& options);
  // Decides a new instance's first step before it is stored: the create stores the instance
  // with that step (the first task's "started" record), so a start costs one write, not two.
  void DecideFirstStep(Live& live);
  // Registers a stored new instance and queues the action of its first step.
  void Launch(std::shared_ptr<Live> live);
  // Reserves `id` here, reads it with `load` (which claims it, or reads what this engine
  // claimed) and queues the first step of its resumption.
  Status ResumeWith(const InstanceId& id, const std::function<Result<InstanceRecord>()>& load);
  void Drive(Work work);
  // Sets what the write of `step` carries besides the step's changes (time, lease); returns
  // whether it must store the whole header.
  bool PrepareWrite(Live& live, const Step& step, TimePoint now) const;
  // Writes synchronously.
  Status Persist(Live& live, const Step& step, TimePoint now);
  // Writes asynchronously; the store's callback queues kStored (or a retry).
  void Submit(std::shared_ptr<Live> live, Step step, TimePoint now);
  void OnWritten(std::shared_ptr<Live> live, Status status);
  // What to do after a refused write: kRetry (with live.write_backoff set), or kLost when
  // writing again cannot help (the lease is lost).
  enum class Stored { kRetry, kLost };
  Stored Refused(Live& live, const Status& status);
  TaskOutcome Invoke(Live& live, const TaskFn& fn, int execution);
  void Finish(const std::shared_ptr<Live>& live, Status status);
  // Gives up the lease of a claimed instance this executor will not run (so that another
  // process can take it at once).
  void ReleaseLease(const InstanceRecord& record);
  void MaintenanceLoop(std::stop_token stop);
  // Asynchronous store calls whose callback has not returned yet (Stop waits for them).
  void BeginAsync();
  void EndAsync();

  ExecutorOptions options_;
  const TaskRegistry& registry_;
  StateStore& store_;
  const Clock& clock_;
  Interpreter interpreter_;
  std::stop_source stop_source_;
  const std::stop_token stop_token_;  // of stop_source_, lent to every task's context
  const std::uint64_t generation_;    // tells this executor from one that lived at its address

  // Flows live as long as the executor: instances refer to them by plain pointer.
  mutable std::mutex flows_mu_;
  std::unordered_map<std::string, std::unique_ptr<const Flow>> flows_;  // name + "\n" + hash
  // The same flows by the address of the machine callers pass, for the start path.
  std::unordered_map<const statelang::StateMachine*, const Flow*> flows_by_machine_;
  // Machines compiled again from a known definition: kept alive while their address is a key.
  std::vector<std::shared_ptr<const statelang::StateMachine>> machines_;

  // Instances in this executor, spread over shards so that threads starting and finishing
  // different instances rarely contend. A Live's waiters are guarded by its shard's mutex.
  struct LiveShard {
    mutable std::mutex mu;
    std::unordered_map<InstanceId, std::shared_ptr<Live>> instances;
  };
  static constexpr std::size_t kLiveShards = 16;
  LiveShard& ShardFor(const InstanceId& id);
  std::array<LiveShard, kLiveShards> live_;

  // Work from outside the workers (starts from other threads, timers) goes to the shared queue;
  // work a worker creates (the next instance an on_finished hook starts) stays on that worker's
  // own queue, so that an instance is allocated, driven and freed on one thread. An idle worker
  // takes from the shared queue, then from the others' queues.
  //
  // Each queue keeps its size in its own cache line, so that workers busy with their own
  // queues share no counter.
  struct alignas(64) WorkerQueue {
    std::mutex mu;
    std::deque<Work> work;
    std::atomic<std::size_t> size{0};  // work.size(), readable without the mutex
  };
  bool TakeWork(std::size_t worker, Work& out);
  bool AnyQueued() const;
  std::mutex ready_mu_;
  std::condition_variable ready_cv_;
  std::deque<Work> ready_;
  std::atomic<std::size_t> ready_size_{0};  // ready_.size(), readable without the mutex
  std::vector<std::unique_ptr<WorkerQueue>> worker_queues_;
  alignas(64) std::atomic<int> idle_workers_{0};

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::uint64_t timer_seq_ = 0;

  // Refused writes, for a rate-limited warning.
  std::atomic<std::uint64_t> refused_writes_{0};
  std::atomic<std::uint64_t> logged_refusals_{0};
  std::atomic<std::int64_t> last_refusal_log_ms_{-1000000};

  const bool async_store_;
  std::mutex async_mu_;
  std::condition_variable async_cv_;
  std::atomic<std::size_t> async_calls_{0};  // Stop() waits for 0 under async_mu_

  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;

  std::vector<std::jthread> threads_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace sagaflow::engine
