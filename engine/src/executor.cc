#include "sagaflow/engine/executor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <future>

#include "sagaflow/statelang/loader.h"

namespace sagaflow::engine {

using statelang::StateMachine;

std::string_view OperationName(Operation op) {
  switch (op) {
    case Operation::kForward:
      return "forward";
    case Operation::kCompensate:
      return "compensate";
    case Operation::kSkip:
      return "skip";
  }
  return "?";
}

// A flow the executor can run: the compiled machine and its tasks, resolved once per state.
struct Executor::Flow {
  std::shared_ptr<const StateMachine> machine;
  std::vector<const TaskFn*> tasks;  // by state index; nullptr for non-task or unregistered
};

struct Executor::Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Result<InstanceRecord> result = Internal("not finished");
};

// An instance this executor is running. Only the thread driving it touches `record`.
struct Executor::Live {
  const Flow* flow = nullptr;  // owned by the executor, which never drops a flow
  InstanceRecord record;
  // A step computed but not acted on yet: the first step of an operation or a resume, one the
  // store refused, or one being stored asynchronously.
  std::optional<Step> pending;
  Duration write_backoff{};
  // The next write must store the whole header: a run, an operation or a resume began.
  bool header_dirty = true;
  // How many of record.executions the store has (the first ones: executions are appended).
  int stored_executions = 0;
  std::vector<std::shared_ptr<Waiter>> waiters;  // guarded by the shard's mutex
};

namespace {

// Executors, numbered so that a thread's cached flow lookup never outlives its executor.
std::atomic<std::uint64_t> next_executor_generation{1};

// A lease owner name unique to this process: host, pid and a random part.
std::string DefaultOwner() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "engine") + ":" + std::to_string(getpid()) + ":" +
         NewUniqueToken().substr(16);
}

}  // namespace

Executor::Executor(ExecutorOptions options, const TaskRegistry& registry, StateStore& store,
                   const Clock& clock)
    : options_(std::move(options)),
      registry_(registry),
      store_(store),
      clock_(clock),
      interpreter_(registry.errors()),
      stop_token_(stop_source_.get_token()),
      generation_(next_executor_generation.fetch_add(1)),
      async_store_(store.asynchronous()) {
  if (options_.owner.empty()) options_.owner = DefaultOwner();
}

Executor::~Executor() { Stop(); }

Status Executor::Start() {
  if (started_) return FailedPrecondition("executor already started");
  if (options_.workers < 0) return InvalidArgument("workers must be 0 or more");
  started_ = true;
  if (options_.workers == 0) return Status::Ok();
  for (int i = 0; i < options_.workers; ++i) {
    worker_queues_.push_back(std::make_unique<WorkerQueue>());
  }
  for (int i = 0; i < options_.workers; ++i) {
    auto worker = static_cast<std::size_t>(i);
    threads_.emplace_back([this, worker](std::stop_token st) { WorkerLoop(st, worker); });
  }
  threads_.emplace_back([this](std::stop_token st) { TimerLoop(st); });
  threads_.emplace_back([this](std::stop_token st) { MaintenanceLoop(st); });
  return Status::Ok();
}

void Executor::Stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  stop_source_.request_stop();
  for (auto& t : threads_) t.request_stop();
  {
    std::lock_guard lock(ready_mu_);
    ready_cv_.notify_all();
  }
  {
    std::lock_guard lock(timer_mu_);
    timer_cv_.notify_all();
  }
  {
    std::lock_guard lock(maintenance_mu_);
    maintenance_cv_.notify_all();
  }
  threads_.clear();  // joins
  {
    // The store's callbacks refer to this executor: wait for those still to come.
    std::unique_lock lock(async_mu_);
    async_cv_.wait(lock, [&] { return async_calls_.load() == 0; });
  }
  // Wake whoever still waits: their instances stay RU in the store.
  std::vector<std::shared_ptr<Waiter>> waiters;
  for (LiveShard& shard : live_) {
    std::lock_guard lock(shard.mu);
    for (auto& [id, live] : shard.instances) {
      for (auto& w : live->waiters) waiters.push_back(w);
      live->waiters.clear();
    }
  }
  for (auto& w : waiters) {
    std::lock_guard lock(w->mu);
    w->result = Cancelled("the executor stopped before the instance finished");
    w->done = true;
    w->cv.notify_all();
  }
}

Executor::LiveShard& Executor::ShardFor(const InstanceId& id) {
  return live_[InstanceIdLane(id) % kLiveShards];
}

Status Executor::AddFlow(const std::shared_ptr<const StateMachine>& machine) {
  auto flow = FlowFor(machine);
  return flow.ok() ? Status::Ok() : flow.status();
}

namespace {

// The flow a thread looked up last, by machine address: starts of one flow from many threads
// then share no lock and no reference count.
struct LastFlow {
  std::uint64_t generation = 0;
  const StateMachine* machine = nullptr;
  const void* flow = nullptr;
};
thread_local LastFlow last_flow;

}  // namespace

Result<const Executor::Flow*> Executor::FlowFor(
    const std::shared_ptr<const StateMachine>& machine) {
  if (!machine) return InvalidArgument("no flow given");
  if (last_flow.generation == generation_ && last_flow.machine == machine.get()) {
    return static_cast<const Flow*>(last_flow.flow);
  }
  std::string key;
  {
    std::lock_guard lock(flows_mu_);
    auto known = flows_by_machine_.find(machine.get());
    if (known != flows_by_machine_.end()) {
      last_flow = LastFlow{generation_, machine.get(), known->second};
      return known->second;
    }
    key = machine->name() + "\n" + machine->content_hash();
    auto it = flows_.find(key);
    if (it != flows_.end()) {
      // The same definition compiled again: keep using the first compilation (and keep this
      // machine alive, since its address is the key).
      flows_by_machine_.emplace(machine.get(), it->second.get());
      machines_.push_back(machine);
      return it->second.get();
    }
  }
  auto flow = std::make_unique<Flow>();
  flow->machine = machine;
  flow->tasks.resize(machine->states().size(), nullptr);
  std::vector<std::string> missing;
  for (std::size_t i = 0; i < machine->states().size(); ++i) {
    const auto& s = machine->states()[i];
    if (!s.is_task()) continue;
    flow->tasks[i] = registry_.Find(s.service_task().task);
    if (!flow->tasks[i] &&
        std::find(missing.begin(), missing.end(), s.service_task().task.str()) == missing.end()) {
      missing.push_back(s.service_task().task.str());
    }
  }
  if (!missing.empty() && options_.require_registered_tasks) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    return InvalidArgument("flow '" + machine->name() +
                           "' calls tasks that are not registered: " + list);
  }
  SAGAFLOW_RETURN_IF_ERROR(store_.SaveDefinition(
      DefinitionRecord{machine->name(), machine->version(), machine->content_hash(),
                       machine->content(), clock_.Now()}));
  std::lock_guard lock(flows_mu_);
  auto [it, inserted] = flows_.emplace(key, std::move(flow));
  flows_by_machine_.emplace(machine.get(), it->second.get());
  if (!inserted) machines_.push_back(machine);  // compiled twice, added concurrently
  return it->second.get();
}

Result<const Executor::Flow*> Executor::FlowForRecord(const InstanceRecord& r) {
  {
    std::lock_guard lock(flows_mu_);
    auto it = flows_.find(r.flow_name + "\n" + r.flow_hash);
    if (it != flows_.end()) return it->second.get();
  }
  // An instance runs on the definition it started with, even after the flow changed.
  SAGAFLOW_ASSIGN_OR_RETURN(DefinitionRecord def, store_.LoadDefinition(r.flow_name, r.flow_hash));
  auto loaded = statelang::LoadStateMachine(def.content);
  if (!loaded.ok()) {
    return Internal("stored definition of flow '" + r.flow_name + "' (" + r.flow_hash +
                    ") no longer loads: " + loaded.Describe(r.flow_name));
  }
  return FlowFor(loaded.machine);
}

Result<InstanceId> Executor::StartInstance(const std::shared_ptr<const StateMachine>& machine,
                                           Json input, const StartOptions& options) {
  return StartInstance(machine, SharedJson(std::move(input)), options);
}

Result<std::shared_ptr<Executor::Live>> Executor::NewLive(
    const std::shared_ptr<const StateMachine>& machine, SharedJson input,
    const StartOptions& options) {
  if (!started_) return FailedPrecondition("executor not started");
  if (stop_source_.stop_requested()) return Cancelled("executor is stopping");
  if (input.is_null()) input = Json::object();
  if (!input->is_object()) {
    return InvalidArgument("the input of an instance must be a JSON object, found " +
                           std::string(input->type_name()));
  }
  SAGAFLOW_ASSIGN_OR_RETURN(const Flow* flow, FlowFor(machine));
  auto live = std::make_shared<Live>();
  live->flow = flow;
  InstanceRecord& r = live->record;
  r.id = NewInstanceId();
  r.flow_name = machine->name();
  r.flow_version = machine->version();
  r.flow_hash = machine->content_hash();
  r.business_key = options.business_key;
  r.input = std::move(input);
  r.context = r.input;
  r.started_at = r.updated_at = clock_.Now();
  r.owner = options_.owner;
  r.lease_until = r.started_at + options_.lease_ttl;
  r.cursor.current = machine->start();
  r.executions.reserve(machine->states().size());
  return live;
}

void Executor::DecideFirstStep(Live& live) {
  const TimePoint now = clock_.Now();
  Step first = interpreter_.Start(live.record, *live.flow->machine, now);
  PrepareWrite(live, first, now);
  live.header_dirty = false;
  live.pending = std::move(first);
}

void Executor::Launch(std::shared_ptr<Live> live) {
  live->stored_executions = static_cast<int>(live->record.executions.size());
  {
    LiveShard& shard = ShardFor(live->record.id);
    std::lock_guard lock(shard.mu);
    shard.instances.emplace(live->record.id, live);
  }
  // Its first step was stored with it.
  Enqueue(Work{std::move(live), Event::kStored});
}

Result<InstanceId> Executor::StartInstance(const std::shared_ptr<const StateMachine>& machine,
                                           SharedJson input, const StartOptions& options) {
  if (async_store_) {
    std::promise<Result<InstanceId>> done;
    auto result = done.get_future();
    StartInstanceAsync(machine, std::move(input), options,
                       [&done](Result<InstanceId> id) { done.set_value(std::move(id)); });
    return result.get();
  }
  SAGAFLOW_ASSIGN_OR_RETURN(std::shared_ptr<Live> live,
                            NewLive(machine, std::move(input), options));
  DecideFirstStep(*live);
  SAGAFLOW_ASSIGN_OR_RETURN(InstanceId stored_id, store_.CreateInstance(live->record));
  if (stored_id != live->record.id) return stored_id;  // a repeat with the same business key
  Launch(std::move(live));
  return stored_id;
}

void Executor::StartInstanceAsync(const std::shared_ptr<const StateMachine>& machine,
                                  SharedJson input, const StartOptions& options,
                                  StartDone started) {
  auto live = NewLive(machine, std::move(input), options);
  if (!live.ok()) return started(live.status());
  DecideFirstStep(**live);
  if (!async_store_) {
    Result<InstanceId> id = store_.CreateInstance((*live)->record);
    if (id.ok() && *id == (*live)->record.id) Launch(std::move(live).value());
    return started(std::move(id));
  }
  BeginAsync();
  const InstanceRecord& record = (*live)->record;
  store_.CreateInstanceAsync(
      record, [this, live = std::move(live).value(),
               started = std::move(started)](Result<InstanceId> id) mutable {
        if (id.ok() && *id == live->record.id) Launch(std::move(live));
        started(std::move(id));
        EndAsync();
      });
}

Result<InstanceRecord> Executor::Await(const InstanceId& id, Duration timeout) {
  auto waiter = std::make_shared<Waiter>();
  {
    LiveShard& shard = ShardFor(id);
    std::lock_guard lock(shard.mu);
    auto it = shard.instances.find(id);
    if (it == shard.instances.end()) return store_.LoadInstance(id);
    it->second->waiters.push_back(waiter);
  }
  if (options_.workers == 0) SAGAFLOW_RETURN_IF_ERROR(RunUntilIdle());
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, timeout, [&] { return waiter->done; })) {
    return DeadlineExceeded("instance " + id.str() + " did not finish within " +
                            Json(DurationToSeconds(timeout)).dump() + " s");
  }
  return waiter->result;
}

Result<InstanceRecord> Executor::Run(const std::shared_ptr<const StateMachine>& machine, Json input,
                                     const StartOptions& options, Duration timeout) {
  SAGAFLOW_ASSIGN_OR_RETURN(InstanceId id, StartInstance(machine, std::move(input), options));
  return Await(id, timeout);
}

Result<InstanceRecord> Executor::Operate(Operation op, const InstanceId& id, const Json& patch,
                                         Duration timeout) {
  if (!started_) return FailedPrecondition("executor not started");
  auto live = std::make_shared<Live>();
  auto waiter = std::make_shared<Waiter>();
  live->waiters.push_back(waiter);
  // Reserve the instance in this engine first: two operations here never claim it together.
  LiveShard& shard = ShardFor(id);
  {
    std::lock_guard lock(shard.mu);
    if (!shard.instances.emplace(id, live).second) {
      return FailedPrecondition("instance " + id.str() + " is running in this engine; " +
                                std::string(OperationName(op)) + " applies to finished instances");
    }
  }
  auto unreserve = [&] {
    std::lock_guard lock(shard.mu);
    shard.instances.erase(id);
  };
  TimePoint now = clock_.Now();
  auto decide = [&](InstanceRecord& record, const StateMachine& machine) -> Result<Step> {
    switch (op) {
      case Operation::kForward:
        return interpreter_.Forward(record, machine, patch, now);
      case Operation::kCompensate:
        return interpreter_.Compensate(record, machine, patch, now);
      case Operation::kSkip:
        return interpreter_.Skip(record, machine, patch, now);
    }
    return Internal("unknown operation");
  };
  // First decide on what is stored, without taking the lease: a refusal or a repeat that has
  // nothing to do leaves the instance untouched (its owner and times included).
  {
    auto stored = store_.LoadInstance(id);
    if (!stored.ok()) {
      unreserve();
      return stored.status();
    }
    if (stored->owner != options_.owner && stored->lease_until > now) {
      unreserve();
      return FailedPrecondition("instance " + id.str() + " is leased by '" + stored->owner +
                                "' until " + FormatTime(stored->lease_until) + "; " +
                                std::string(OperationName(op)) + " waits until it is released");
    }
    auto flow = FlowForRecord(*stored);
    if (!flow.ok()) {
      unreserve();
      return flow.status();
    }
    InstanceRecord copy = *stored;
    Result<Step> first = decide(copy, *(*flow)->machine);
    if (!first.ok()) {
      unreserve();
      return first.status();
    }
    if (first->decision.kind == Decision::Kind::kFinished && first->changed_executions.empty() &&
        !first->context_changed && copy.finished() &&
        copy.compensation_status == stored->compensation_status) {
      unreserve();
      return *stored;  // an idempotent repeat
    }
  }
  // Then take the lease and decide again on the claimed record (it may have changed since).
  auto claimed = store_.ClaimInstance(id, options_.owner, now, now + options_.lease_ttl);
  if (!claimed.ok()) {
    unreserve();
    return claimed.status();
  }
  live->record = std::move(claimed).value();
  live->stored_executions = static_cast<int>(live->record.executions.size());
  auto flow = FlowForRecord(live->record);
  Result<Step> first = flow.status();
  if (flow.ok()) {
    live->flow = *flow;
    first = decide(live->record, *live->flow->machine);
  }
  if (!first.ok() || (first->decision.kind == Decision::Kind::kFinished &&
                      first->changed_executions.empty() && !first->context_changed &&
                      live->record.finished())) {
    // Refused, or only the header changed (a trivial compensate): store the header, which
    // gives the lease back.
    unreserve();
    live->record.lease_until = now;
    live->record.updated_at = now;
    Status released = store_.WriteInstance(InstanceWrite{&live->record, {}, false});
    if (!first.ok()) return first.status();
    SAGAFLOW_RETURN_IF_ERROR(released);
    return live->record;
  }
  live->pending = std::move(first).value();
  Enqueue(Work{live, Event::kPending});
  if (options_.workers == 0) SAGAFLOW_RETURN_IF_ERROR(RunUntilIdle());
  std::unique_lock lock(waiter->mu);
  if (!waiter->cv.wait_for(lock, timeout, [&] { return waiter->done; })) {
    return DeadlineExceeded("operation " + std::string(OperationName(op)) + " on instance " +
                            id.str() + " did not finish within " +
                            Json(DurationToSeconds(timeout)).dump() + " s");
  }
  return waiter->result;
}

Status Executor::Resume(const InstanceId& id) {
  if (!started_) return FailedPrecondition("executor not started");
  const TimePoint now = clock_.Now();
  return ResumeWith(id, [&] {
    return store_.ClaimInstance(id, options_.owner, now, now + options_.lease_ttl);
  });
}

Status Executor::ResumeWith(const InstanceId& id,
                            const std::function<Result<InstanceRecord>()>& load) {
  auto live = std::make_shared<Live>();
  LiveShard& shard = ShardFor(id);
  {
    std::lock_guard lock(shard.mu);
    if (!shard.instances.emplace(id, live).second) {
      return FailedPrecondition("instance " + id.str() + " is already running in this engine");
    }
  }
  auto unreserve = [&] {
    std::lock_guard lock(shard.mu);
    shard.instances.erase(id);
  };
  auto loaded = load();
  if (!loaded.ok()) {
    unreserve();
    return loaded.status();
  }
  live->record = std::move(loaded).value();
  live->stored_executions = static_cast<int>(live->record.executions.size());
  if (live->record.owner != options_.owner) {
    unreserve();
    return FailedPrecondition("instance " + id.str() + " is now owned by '" +
                              live->record.owner + "'");
  }
  const TimePoint now = clock_.Now();
  auto flow = FlowForRecord(live->record);
  Result<Step> first = flow.status();
  if (flow.ok()) {
    live->flow = *flow;
    first = interpreter_.Resume(live->record, *live->flow->machine, now);
  }
  if (!first.ok() || live->record.finished()) {
    unreserve();
    ReleaseLease(live->record);
    return first.ok() ? Status::Ok() : first.status();
  }
  spdlog::debug("instance {}: resumed (owner {})", id.str(), options_.owner);
  live->pending = std::move(first).value();
  Enqueue(Work{std::move(live), Event::kPending});
  return Status::Ok();
}

Result<RecoverReport> Executor::RecoverExpired(std::size_t limit) {
  if (!started_) return FailedPrecondition("executor not started");
  TimePoint now = clock_.Now();
  // One claim for the lot; then each is only read (it is ours until its lease expires).
  SAGAFLOW_ASSIGN_OR_RETURN(
      std::vector<InstanceId> ids,
      store_.ClaimExpired(options_.owner, now, now + options_.lease_ttl, limit));
  RecoverReport report;
  // Loaded a chunk at a time, each chunk resumed before the next is read: the workers start on
  // the first instances while the rest load.
  constexpr std::size_t kLoadChunk = 256;
  for (std::size_t begin = 0; begin < ids.size(); begin += kLoadChunk) {
    const std::vector<InstanceId> chunk(ids.begin() + static_cast<std::ptrdiff_t>(begin),
                                        ids.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                          ids.size(), begin + kLoadChunk)));
    auto loaded = store_.LoadInstances(chunk);
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      const InstanceId& id = chunk[i];
      Status s = loaded.ok() ? ResumeWith(id, [&] { return std::move((*loaded)[i]); })
                             : loaded.status();
      if (s.ok()) {
        report.resumed.push_back(id);
      } else {
        report.failed.emplace_back(id, std::move(s));
      }
    }
  }
  return report;
}

void Executor::ReleaseLease(const InstanceRecord& record) {
  TimePoint now = clock_.Now();
  auto released = store_.ClaimInstance(record.id, options_.owner, now, now);
  if (!released.ok() && released.status().code() != StatusCode::kNotFound) {
    spdlog::warn("instance {}: could not release its lease ({}); it expires at {}",
                 record.id.str(), released.status().ToString(), FormatTime(record.lease_until));
  }
}

std::size_t Executor::live_instances() const {
  std::size_t n = 0;
  for (const LiveShard& shard : live_) {
    std::lock_guard lock(shard.mu);
    n += shard.instances.size();
  }
  return n;
}

namespace {
// The worker the current thread is, for the executor it belongs to.
thread_local const void* current_executor = nullptr;
thread_local std::size_t current_worker = 0;
}  // namespace

void Executor::Enqueue(Work work) {
  if (current_executor == this) {
    WorkerQueue& q = *worker_queues_[current_worker];
    {
      std::lock_guard lock(q.mu);
      q.work.push_back(std::move(work));
      q.size.store(q.work.size());
    }
    // Wake an idle worker to take it. Both sides are seq_cst (this store, then the load of
    // idle_workers_; the sleeper's increment, then its load of the sizes): no lost wakeup.
    if (idle_workers_.load() > 0) {
      std::lock_guard lock(ready_mu_);
      ready_cv_.notify_one();
    }
    return;
  }
  {
    std::lock_guard lock(ready_mu_);
    ready_.push_back(std::move(work));
    ready_size_.store(ready_.size());
  }
  // Only a sleeping worker needs waking (a sleeper counts itself idle under ready_mu_ before it
  // checks the queues, so it either sees this work or is counted here). A store's thread
  // completing a thousand writes in a row thus wakes a worker once, not a thousand times.
  // Manual mode's RunUntilIdle waits on the same variable without counting itself.
  if (options_.workers == 0 || idle_workers_.load() > 0) ready_cv_.notify_one();
}

bool Executor::AnyQueued() const {
  if (ready_size_.load() > 0) return true;
  for (const auto& q : worker_queues_) {
    if (q->size.load() > 0) return true;
  }
  return false;
}

bool Executor::TakeWork(std::size_t worker, Work& out) {
  auto take_from = [&](WorkerQueue& q) {
    if (q.size.load(std::memory_order_relaxed) == 0) return false;
    std::lock_guard lock(q.mu);
    if (q.work.empty()) return false;
    out = std::move(q.work.front());
    q.work.pop_front();
    q.size.store(q.work.size(), std::memory_order_relaxed);
    return true;
  };
  if (take_from(*worker_queues_[worker])) return true;
  if (ready_size_.load(std::memory_order_relaxed) > 0) {
    std::lock_guard lock(ready_mu_);
    if (!ready_.empty()) {
      out = std::move(ready_.front());
      ready_.pop_front();
      ready_size_.store(ready_.size(), std::memory_order_relaxed);
      return true;
    }
  }
  for (std::size_t i = 1; i < worker_queues_.size(); ++i) {
    if (take_from(*worker_queues_[(worker + i) % worker_queues_.size()])) return true;
  }
  return false;
}

void Executor::AddTimer(TimePoint due, Work work) {
  {
    std::lock_guard lock(timer_mu_);
    timers_.push(Timer{due, timer_seq_++, std::move(work)});
  }
  timer_cv_.notify_one();
}

std::optional<TimePoint> Executor::ReleaseDueTimers() {
  std::vector<Work> due;
  std::optional<TimePoint> next;
  {
    std::lock_guard lock(timer_mu_);
    TimePoint now = clock_.Now();
    while (!timers_.empty() && timers_.top().due <= now) {
      due.push_back(timers_.top().work);
      timers_.pop();
    }
    if (!timers_.empty()) next = timers_.top().due;
  }
  for (auto& w : due) Enqueue(std::move(w));
  return next;
}

void Executor::WorkerLoop(std::stop_token stop, std::size_t worker) {
  current_executor = this;
  current_worker = worker;
  while (!stop.stop_requested()) {
    Work work;
    if (TakeWork(worker, work)) {
      Drive(std::move(work));
      continue;
    }
    std::unique_lock lock(ready_mu_);
    idle_workers_.fetch_add(1);
    ready_cv_.wait(lock, [&] { return stop.stop_requested() || AnyQueued(); });
    idle_workers_.fetch_sub(1);
  }
}

void Executor::TimerLoop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    ReleaseDueTimers();
    std::unique_lock lock(timer_mu_);
    if (stop.stop_requested()) return;
    if (!timers_.empty() && timers_.top().due <= clock_.Now()) continue;
    if (timers_.empty()) {
      timer_cv_.wait(lock);
    } else {
      // The clock may be virtual: wait in real time for the remaining duration, re-checking.
      Duration left = timers_.top().due - clock_.Now();
      timer_cv_.wait_for(lock, std::min<Duration>(left, std::chrono::seconds(1)));
    }
  }
}

Status Executor::RunUntilIdle() {
  if (options_.workers != 0) return FailedPrecondition("RunUntilIdle is for manual mode");
  while (true) {
    Work work;
    bool have = false;
    {
      std::lock_guard lock(ready_mu_);
      if (!ready_.empty()) {
        work = std::move(ready_.front());
        ready_.pop_front();
        ready_size_.store(ready_.size(), std::memory_order_relaxed);
        have = true;
      }
    }
    if (have) {
      Drive(std::move(work));
      continue;
    }
    std::optional<TimePoint> next = ReleaseDueTimers();
    bool writing;
    {
      // Callbacks queue their work before they count as done, so once none is in flight,
      // everything they queued is visible below.
      writing = async_calls_.load() > 0;
    }
    {
      std::unique_lock lock(ready_mu_);
      if (!ready_.empty()) continue;
      if (writing) {
        // An asynchronous store is still writing: its callback queues the next step.
        ready_cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return !ready_.empty(); });
        continue;
      }
    }
    if (!next) return Status::Ok();
    if (options_.virtual_clock) {
      options_.virtual_clock->AdvanceTo(*next);
    } else {
      std::unique_lock lock(timer_mu_);
      timer_cv_.wait_for(lock, *next - clock_.Now());
    }
  }
}

bool Executor::PrepareWrite(Live& live, const Step& step, TimePoint now) const {
  live.record.updated_at = now;
  const bool finished = step.decision.kind == Decision::Kind::kFinished;
  if (!finished && !live.header_dirty) return false;  // a step: the header did not change
  // The first write of a run renews the lease; the last one gives it back. In between,
  // RenewLeases keeps it (the stored lease may be later than this record's).
  live.record.lease_until = finished ? now : now + options_.lease_ttl;
  return true;
}

Status Executor::Persist(Live& live, const Step& step, TimePoint now) {
  const bool header = PrepareWrite(live, step, now);
  Status s = store_.WriteInstance(InstanceWrite{&live.record, step.changed_executions,
                                                step.context_changed, header, step.context_keys,
                                                live.stored_executions});
  if (s.ok()) {
    live.write_backoff = Duration::zero();
    live.header_dirty = false;
    live.stored_executions = static_cast<int>(live.record.executions.size());
  }
  return s;
}

Executor::Stored Executor::Refused(Live& live, const Status& status) {
  if (status.code() == StatusCode::kFailedPrecondition ||
      status.code() == StatusCode::kNotFound) {
    // The lease is lost (another process took the instance over) or the instance is gone:
    // nothing of this step may be acted on, and writing again cannot help.
    spdlog::error("instance {}: stopped running it here: {}", live.record.id.str(),
                  status.ToString());
    return Stored::kLost;
  }
  // Nothing is acted on until it is stored: keep the step and try again after a backoff.
  // When the database is down every instance in flight lands here: one line a second, with
  // how many refusals it stands for.
  const std::uint64_t refused = refused_writes_.fetch_add(1) + 1;
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  auto last = last_refusal_log_ms_.load();
  if (now_ms - last >= 1000 && last_refusal_log_ms_.compare_exchange_strong(last, now_ms)) {
    const std::uint64_t since = refused - logged_refusals_.exchange(refused);
    spdlog::warn("the store refused {} write(s) (latest: instance {}: {}); retrying with backoff",
                 since, live.record.id.str(), status.ToString());
  }
  live.write_backoff = live.write_backoff == Duration::zero()
                           ? options_.store_retry_initial
                           : std::min(live.write_backoff * 2, options_.store_retry_max);
  return Stored::kRetry;
}

void Executor::Submit(std::shared_ptr<Live> live, Step step, TimePoint now) {
  Live& l = *live;
  const bool header = PrepareWrite(l, step, now);
  l.pending = std::move(step);
  BeginAsync();
  store_.WriteInstanceAsync(
      InstanceWrite{&l.record, l.pending->changed_executions, l.pending->context_changed, header,
                    l.pending->context_keys, l.stored_executions},
      [this, live = std::move(live)](Status status) mutable {
        OnWritten(std::move(live), std::move(status));
        EndAsync();
      });
}

void Executor::OnWritten(std::shared_ptr<Live> live, Status status) {
  if (status.ok()) {
    live->write_backoff = Duration::zero();
    live->header_dirty = false;
    live->stored_executions = static_cast<int>(live->record.executions.size());
    return Enqueue(Work{std::move(live), Event::kStored});
  }
  switch (Refused(*live, status)) {
    case Stored::kLost:
      return Finish(live, std::move(status));
    case Stored::kRetry:
      if (stop_source_.stop_requested()) return;
      AddTimer(clock_.Now() + live->write_backoff, Work{live, Event::kPending});
      return;
  }
}

void Executor::BeginAsync() {
  async_calls_.fetch_add(1);
}

void Executor::EndAsync() {
  if (async_calls_.fetch_sub(1) == 1) {
    std::lock_guard lock(async_mu_);  // Stop() checks the count under it, then waits
    async_cv_.notify_all();
  }
}

void Executor::MaintenanceLoop(std::stop_token stop) {
  // Every sixth of a lease, the leases expiring within two thirds of one are renewed: a lease
  // is renewed while it has a third left at least (the slack for a late pass), and an instance
  // that ends within its first third of a lease (most do) is never renewed at all.
  const Duration renew_every = std::max<Duration>(options_.lease_ttl / 6,
                                                  std::chrono::milliseconds(10));
  const Duration renew_within = options_.lease_ttl * 2 / 3;
  TimePoint next_recover = clock_.Now() + options_.recover_every;
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(maintenance_mu_);
      maintenance_cv_.wait_for(lock, renew_every, [&] { return stop.stop_requested(); });
    }
    if (stop.stop_requested()) return;
    TimePoint now = clock_.Now();
    auto renewed =
        store_.RenewLeases(options_.owner, now, now + renew_within, now + options_.lease_ttl);
    if (!renewed.ok()) {
      spdlog::warn("could not renew the leases of owner {}: {}", options_.owner,
                   renewed.status().ToString());
    }
    if (options_.recover_every > Duration::zero() && now >= next_recover) {
      next_recover = now + options_.recover_every;
      auto report = RecoverExpired();
      if (!report.ok()) {
        spdlog::warn("recovery pass failed: {}", report.status().ToString());
      } else {
        if (!report->resumed.empty()) {
          spdlog::info("recovered {} instances whose engine stopped", report->resumed.size());
        }
        if (!report->failed.empty()) {
          spdlog::warn("could not resume {} instance(s) whose engine stopped (first: {}: {})",
                       report->failed.size(), report->failed.front().first.str(),
                       report->failed.front().second.ToString());
        }
      }
    }
  }
}

TaskOutcome Executor::Invoke(Live& live, const TaskFn& fn, int execution) {
  const StateExecution& e = live.record.executions[static_cast<std::size_t>(execution)];
  const auto& timeout = live.flow->machine->state(e.state_index).service_task().timeout_seconds;
  std::optional<TimePoint> deadline;
  if (timeout) deadline = clock_.Now() + SecondsToDuration(*timeout);
  TaskContext ctx(live.record.id, e.state, e.attempts, e.idempotency_key, deadline, stop_token_);
  TaskOutcome out;
  out.ok = InvokeTask(fn, ctx, e.input, out.result, out.failure);
  if (deadline && clock_.Now() > *deadline) {
    // The result came too late to be trusted as the step's outcome (the task may still have
    // acted: a for-update state ends UN, as for any error).
    out.ok = false;
    out.result = nullptr;
    out.failure = TaskFailure{
        std::string(ErrorTypes::kTimeoutError),
        "the task did not return within TimeoutSeconds (" + Json(*timeout).dump() + " s)"};
  }
  return out;
}

void Executor::Drive(Work work) {
  std::shared_ptr<Live> live = std::move(work.live);
  Live& l = *live;
  const StateMachine& machine = *l.flow->machine;
  Step step;
  bool stored = false;
  TimePoint now = clock_.Now();  // one reading per decision, shared by the step and its write
  switch (work.event) {
    case Event::kRetryDue:
      step = interpreter_.OnRetryDue(l.record, machine, now);
      break;
    case Event::kPending:
      step = std::move(*l.pending);
      l.pending.reset();
      break;
    case Event::kStored:
      step = std::move(*l.pending);
      l.pending.reset();
      stored = true;
      break;
  }
  while (true) {
    if (!stored) {
      if (async_store_) return Submit(std::move(live), std::move(step), now);
      Status written = Persist(l, step, now);
      if (!written.ok()) {
        if (Refused(l, written) == Stored::kLost) return Finish(live, std::move(written));
        l.pending = std::move(step);
        if (stop_source_.stop_requested()) return;
        AddTimer(now + l.write_backoff, Work{live, Event::kPending});
        return;
      }
    }
    stored = false;
    switch (step.decision.kind) {
      case Decision::Kind::kInvoke: {
        const StateExecution& e =
            l.record.executions[static_cast<std::size_t>(step.decision.execution)];
        const TaskFn* fn = l.flow->tasks[static_cast<std::size_t>(e.state_index)];
        if (fn == nullptr) fn = registry_.Find(machine.state(e.state_index).service_task().task);
        if (fn == nullptr) {
          const auto& task = machine.state(e.state_index).service_task().task;
          return Finish(live, NotFound("no task is registered for service '" + task.str() +
                                       "' (state '" + e.state.str() + "')"));
        }
        if (stop_source_.stop_requested()) return;  // left RU in the store; recovery resumes
        TaskOutcome outcome = Invoke(l, *fn, step.decision.execution);
        now = clock_.Now();
        step = interpreter_.OnTaskDone(l.record, machine, std::move(outcome), now);
        continue;
      }
      case Decision::Kind::kWait:
        AddTimer(step.decision.wake_at, Work{live, Event::kRetryDue});
        return;
      case Decision::Kind::kFinished:
        return Finish(live, Status::Ok());
    }
  }
}

void Executor::Finish(const std::shared_ptr<Live>& live, Status status) {
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    LiveShard& shard = ShardFor(live->record.id);
    std::lock_guard lock(shard.mu);
    shard.instances.erase(live->record.id);
    waiters.swap(live->waiters);
  }
  if (status.ok() && options_.on_finished) options_.on_finished(live->record);
  for (auto& w : waiters) {
    std::lock_guard lock(w->mu);
    if (status.ok()) {
      w->result = live->record;
    } else {
      w->result = status;
    }
    w->done = true;
    w->cv.notify_all();
  }
}

}  // namespace sagaflow::engine
