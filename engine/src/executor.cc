#include "sagaflow/engine/executor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "flow_catalog.h"
#include "instance_driver.h"
#include "lease_keeper.h"
#include "live.h"
#include "recovery.h"
#include "scheduler.h"
#include "task_runner.h"
#include "timer_service.h"

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

namespace {

// A lease owner name unique to this process: host, pid and a random part.
std::string DefaultOwner() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return std::string(host[0] ? host : "engine") + ":" + std::to_string(getpid()) + ":" +
         NewUniqueToken().substr(16);
}

ExecutorOptions WithOwner(ExecutorOptions options) {
  if (options.owner.empty()) options.owner = DefaultOwner();
  return options;
}

// Threads a recovery pass loads on: one in manual mode (workers == 0, where tests step the
// engine deterministically), otherwise one a core, up to four.
std::size_t LoadersFor(const ExecutorOptions& options) {
  if (options.workers == 0) return 1;
  return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 4);
}

}  // namespace

// The parts, composed. Construction order is dependency order; Stop() undoes it.
struct Executor::Impl {
  Impl(ExecutorOptions o, const TaskRegistry& registry, StateStore& store, const Clock& clock)
      : options(WithOwner(std::move(o))),
        registry(registry),
        store(store),
        clock(clock),
        interpreter(registry.errors()),
        catalog(FlowCatalogOptions{.require_registered_tasks = options.require_registered_tasks,
                                   .refuse_async = options.dispatcher == nullptr},
                registry, store, clock),
        scheduler(options.workers, [this](Work w) { driver.Run(std::move(w)); }),
        timers(clock, [this](Work w) { scheduler.Post(std::move(w)); }),
        runner(options.workers == 0 ? 0 : options.task_threads),
        outbox(options.dispatcher != nullptr && options.dispatcher->durable()
                   ? std::make_unique<Outbox>(store, *options.dispatcher, clock,
                                              options.dispatch_retry)
                   : nullptr),
        driver(DriverParts{options, registry, store, clock, interpreter, catalog, table,
                           scheduler, timers, runner, options.dispatcher, outbox.get(),
                           stop_source.get_token(),
                           options.recover_every > Duration::zero() && options.workers > 0
                               ? std::function<void()>([this] { lease_keeper.ClaimDueSoon(); })
                               : nullptr}),
        recovery(store, clock, options.owner, options.lease_ttl, LoadersFor(options)),
        lease_keeper(store, clock, options.owner, options.lease_ttl, options.recover_every,
                     [this] { PollDue(); }) {}

  // Claims what is due and logs what happened (the lease keeper's periodic pass). A full
  // batch means more may be due (a million Waits ending at once): claims again as soon as the
  // instances in hand are down to one batch, so that claimed instances do not sit in the
  // queue while their leases run out.
  void PollDue() {
    constexpr std::size_t kBatch = 10000;
    while (!stop_source.stop_requested()) {
      auto report = RecoverExpired(kBatch);
      if (!report.ok()) {
        spdlog::warn("claiming due instances failed: {}", report.status().ToString());
        return;
      }
      if (!report->resumed.empty()) {
        spdlog::debug("took up {} due instance(s)", report->resumed.size());
      }
      if (!report->failed.empty()) {
        spdlog::warn("could not resume {} due instance(s) (first: {}: {})",
                     report->failed.size(), report->failed.front().first.str(),
                     report->failed.front().second.ToString());
      }
      if (report->resumed.size() + report->failed.size() < kBatch &&
          report->redispatched < kBatch) {
        return;
      }
      // This runs on the lease keeper's thread: renew between batches when a renewal is due.
      if (auto renewed = lease_keeper.RenewIfDue(); !renewed.ok()) {
        spdlog::warn("could not renew leases: {}", renewed.status().ToString());
      }
      while (table.size() > kBatch && !stop_source.stop_requested()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
  }

  Result<RecoverReport> RecoverExpired(std::size_t limit) {
    auto report =
        recovery.Pass(limit, [this](const InstanceId& id, Result<InstanceRecord> loaded) {
          return driver.ResumeWith(id, [&] { return std::move(loaded); });
        });
    if (outbox != nullptr) {
      // Dispatches stored and left behind: handed over from here (a claim of its own, made
      // even when the claim of instances failed).
      auto handed = outbox->Relay(limit);
      if (!handed.ok()) {
        spdlog::warn("claiming stored dispatches failed: {}", handed.status().ToString());
      } else if (report.ok()) {
        report->redispatched = *handed;
      }
    }
    return report;
  }

  Result<std::shared_ptr<Live>> NewLive(const std::shared_ptr<const StateMachine>& machine,
                                        SharedJson input, const StartOptions& start) {
    if (!started) return FailedPrecondition("executor not started");
    if (stop_source.stop_requested()) return Cancelled("executor is stopping");
    if (input.is_null()) input = Json::object();
    if (!input->is_object()) {
      return InvalidArgument("the input of an instance must be a JSON object, found " +
                             std::string(input->type_name()));
    }
    SAGAFLOW_ASSIGN_OR_RETURN(const Flow* flow, catalog.For(machine));
    auto live = std::make_shared<Live>();
    live->flow = flow;
    InstanceRecord& r = live->record;
    r.id = NewInstanceId();
    r.flow_name = machine->name();
    r.flow_version = machine->version();
    r.flow_hash = machine->content_hash();
    r.business_key = start.business_key;
    r.input = std::move(input);
    r.context = r.input;
    r.started_at = r.updated_at = clock.Now();
    r.owner = options.owner;
    r.lease_until = r.started_at + options.lease_ttl;
    r.cursor.current = machine->start();
    r.executions.reserve(machine->states().size());
    return live;
  }

  std::shared_ptr<Waiter> AddWaiter(const InstanceId& id) {
    auto waiter = std::make_shared<Waiter>();
    LiveTable::Shard& shard = table.For(id);
    std::lock_guard lock(shard.mu);
    shard.waiters[id].push_back(waiter);
    return waiter;
  }

  void RemoveWaiter(const InstanceId& id, const std::shared_ptr<Waiter>& waiter) {
    LiveTable::Shard& shard = table.For(id);
    std::lock_guard lock(shard.mu);
    auto it = shard.waiters.find(id);
    if (it == shard.waiters.end()) return;
    std::erase(it->second, waiter);
    if (it->second.empty()) shard.waiters.erase(it);
  }

  Result<InstanceRecord> Wait(const InstanceId& id, const std::shared_ptr<Waiter>& waiter,
                              Duration timeout, const std::string& what) {
    if (options.workers == 0) {
      Status idle = RunUntilIdle();
      if (!idle.ok()) {
        RemoveWaiter(id, waiter);
        return idle;
      }
    }
    std::unique_lock lock(waiter->mu);
    if (!waiter->cv.wait_for(lock, timeout, [&] { return waiter->done; })) {
      lock.unlock();
      RemoveWaiter(id, waiter);
      return DeadlineExceeded(what + " did not finish within " +
                              Json(DurationToSeconds(timeout)).dump() + " s");
    }
    return waiter->result;
  }

  Status RunUntilIdle() {
    if (options.workers != 0) return FailedPrecondition("RunUntilIdle is for manual mode");
    while (true) {
      if (scheduler.RunOne()) continue;
      std::optional<TimePoint> next = timers.ReleaseDue();
      if (scheduler.AnyQueued()) continue;
      if (driver.store_calls() > 0 || driver.tasks_out() > 0) {
        // A store's callback or a task's result is still to come, and queues what follows.
        scheduler.WaitForWork(std::chrono::milliseconds(1));
        continue;
      }
      if (!next) return Status::Ok();
      if (options.virtual_clock) {
        options.virtual_clock->AdvanceTo(*next);
      } else {
        scheduler.WaitForWork(*next - clock.Now());
      }
    }
  }

  ExecutorOptions options;
  const TaskRegistry& registry;
  StateStore& store;
  const Clock& clock;
  Interpreter interpreter;
  std::stop_source stop_source;
  FlowCatalog catalog;
  LiveTable table;
  Scheduler scheduler;
  TimerService timers;
  TaskRunner runner;
  std::unique_ptr<Outbox> outbox;  // with a durable dispatcher
  InstanceDriver driver;
  Recovery recovery;
  LeaseKeeper lease_keeper;
  bool started = false;
  bool stopped = false;
};

Executor::Executor(ExecutorOptions options, const TaskRegistry& registry, StateStore& store,
                   const Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), registry, store, clock)) {}

Executor::~Executor() { Stop(); }

const std::string& Executor::owner() const { return impl_->options.owner; }

ExecutorStats Executor::stats() const { return impl_->driver.stats(); }

Status Executor::Start() {
  Impl& m = *impl_;
  if (m.started) return FailedPrecondition("executor already started");
  if (m.options.workers < 0) return InvalidArgument("workers must be 0 or more");
  if (m.options.task_threads < 1) return InvalidArgument("task_threads must be 1 or more");
  if (m.options.dispatcher != nullptr) {
    SAGAFLOW_RETURN_IF_ERROR(
        m.options.dispatcher->Start([&m](TaskReply reply) { m.driver.OnReply(std::move(reply)); }));
  }
  m.started = true;
  if (m.options.workers == 0) return Status::Ok();
  m.runner.Start();
  m.scheduler.Start();
  m.timers.Start();
  m.lease_keeper.Start();
  return Status::Ok();
}

void Executor::Stop() noexcept {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.stop_source.request_stop();
  m.lease_keeper.Stop();
  if (m.options.dispatcher != nullptr && m.started) m.options.dispatcher->Stop();
  m.runner.Stop();
  m.timers.Stop();
  m.scheduler.Stop();
  // The store's callbacks refer to this executor: wait for those still to come.
  m.driver.WaitForStoreCalls();
  if (m.outbox != nullptr) {
    // Rows of deliveries taken: removed now, or handed over once more after dispatch_retry.
    if (Status s = m.outbox->Flush(); !s.ok()) {
      spdlog::warn("could not remove dispatches handed over: {}", s.ToString());
    }
  }
  // Wake whoever still waits: their instances stay as the store has them.
  std::vector<std::shared_ptr<Waiter>> waiters;
  for (LiveTable::Shard& shard : m.table.shards()) {
    std::lock_guard lock(shard.mu);
    for (auto& [id, list] : shard.waiters) {
      for (auto& w : list) waiters.push_back(w);
    }
    shard.waiters.clear();
  }
  for (auto& w : waiters) {
    std::lock_guard lock(w->mu);
    w->result = Cancelled("the executor stopped before the instance finished");
    w->done = true;
    w->cv.notify_all();
  }
}

Status Executor::AddFlow(const std::shared_ptr<const StateMachine>& machine) {
  auto flow = impl_->catalog.For(machine);
  return flow.ok() ? Status::Ok() : flow.status();
}

Result<InstanceId> Executor::StartInstance(const std::shared_ptr<const StateMachine>& machine,
                                           Json input, const StartOptions& options) {
  return StartInstance(machine, SharedJson(std::move(input)), options);
}

Result<InstanceId> Executor::StartInstance(const std::shared_ptr<const StateMachine>& machine,
                                           SharedJson input, const StartOptions& options) {
  // Waits on the caller's stack: with a store that completes at once, starting stays a call.
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<InstanceId>> outcome;
  StartInstanceAsync(machine, std::move(input), options, [&](Result<InstanceId> id) {
    std::lock_guard lock(mu);
    outcome = std::move(id);
    cv.notify_one();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return outcome.has_value(); });
  return std::move(*outcome);
}

void Executor::StartInstanceAsync(const std::shared_ptr<const StateMachine>& machine,
                                  SharedJson input, const StartOptions& options,
                                  StartDone started) {
  Impl& m = *impl_;
  auto live = m.NewLive(machine, std::move(input), options);
  if (!live.ok()) return started(live.status());
  const std::vector<DispatchRecord> dispatches = m.driver.DecideFirstStep(**live);
  const InstanceRecord& record = (*live)->record;
  const std::size_t slot = m.driver.BeginStoreCall();
  m.store.Create(record, dispatches, [&m, slot, live = std::move(live).value(),
                          started = std::move(started)](Result<InstanceId> id) mutable {
    if (id.ok() && *id == live->record.id) m.driver.Launch(std::move(live));
    started(std::move(id));
    m.driver.EndStoreCall(slot);
  });
}

Result<InstanceRecord> Executor::Await(const InstanceId& id, Duration timeout) {
  Impl& m = *impl_;
  // Registered first, then checked: a finish in between still reaches the waiter.
  std::shared_ptr<Waiter> waiter = m.AddWaiter(id);
  if (!m.table.Find(id)) {
    auto stored = m.store.LoadInstance(id);
    if (!stored.ok()) {
      m.RemoveWaiter(id, waiter);
      return stored.status();
    }
    // Parked (no owner), or claimed by this executor and about to be resumed here (a claim
    // of what is due takes it before it is in the table): this executor wakes it, so wait.
    const bool ours = !stored->finished() &&
                      (stored->owner.empty() || stored->owner == m.options.owner);
    if (!ours) {
      // Finished, or running in another process: as stored.
      m.RemoveWaiter(id, waiter);
      {
        std::lock_guard lock(waiter->mu);
        if (waiter->done && waiter->result.ok()) return waiter->result;
      }
      return stored;
    }
  }
  return m.Wait(id, waiter, timeout, "instance " + id.str());
}

Result<InstanceRecord> Executor::Run(const std::shared_ptr<const StateMachine>& machine, Json input,
                                     const StartOptions& options, Duration timeout) {
  SAGAFLOW_ASSIGN_OR_RETURN(InstanceId id, StartInstance(machine, std::move(input), options));
  return Await(id, timeout);
}

Result<InstanceRecord> Executor::Operate(Operation op, const InstanceId& id, const Json& patch,
                                         Duration timeout) {
  Impl& m = *impl_;
  if (!m.started) return FailedPrecondition("executor not started");
  auto live = std::make_shared<Live>();
  // Reserve the instance in this engine first: two operations here never claim it together.
  if (!m.table.Reserve(id, live)) {
    return FailedPrecondition("instance " + id.str() + " is running in this engine; " +
                              std::string(OperationName(op)) + " applies to finished instances");
  }
  auto unreserve = [&] { m.table.Erase(id); };
  const TimePoint now = m.clock.Now();
  auto decide = [&](InstanceRecord& record, const StateMachine& machine) -> Result<Step> {
    switch (op) {
      case Operation::kForward:
        return m.interpreter.Forward(record, machine, patch, now);
      case Operation::kCompensate:
        return m.interpreter.Compensate(record, machine, patch, now);
      case Operation::kSkip:
        return m.interpreter.Skip(record, machine, patch, now);
    }
    return Internal("unknown operation");
  };
  // First decide on what is stored, without taking the lease: a refusal or a repeat that has
  // nothing to do leaves the instance untouched (its owner and times included).
  {
    auto stored = m.store.LoadInstance(id);
    if (!stored.ok()) {
      unreserve();
      return stored.status();
    }
    if (!stored->owner.empty() && stored->owner != m.options.owner && stored->lease_until > now) {
      unreserve();
      return FailedPrecondition("instance " + id.str() + " is leased by '" + stored->owner +
                                "' until " + FormatTime(stored->lease_until) + "; " +
                                std::string(OperationName(op)) + " waits until it is released");
    }
    auto flow = m.catalog.ForRecord(*stored);
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
  auto claimed = m.store.ClaimInstance(id, m.options.owner, now, now + m.options.lease_ttl);
  if (!claimed.ok()) {
    unreserve();
    return claimed.status();
  }
  live->record = std::move(claimed).value();
  live->stored_executions = static_cast<int>(live->record.executions.size());
  auto flow = m.catalog.ForRecord(live->record);
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
    Status released = m.store.Write(WriteBatch::Of(live->record, {}, false));
    if (!first.ok()) return first.status();
    SAGAFLOW_RETURN_IF_ERROR(released);
    return live->record;
  }
  std::shared_ptr<Waiter> waiter = m.AddWaiter(id);
  live->pending = std::move(first).value();
  m.driver.QueuePending(live);
  return m.Wait(id, waiter, timeout,
                "operation " + std::string(OperationName(op)) + " on instance " + id.str());
}

Status Executor::Resume(const InstanceId& id) {
  Impl& m = *impl_;
  if (!m.started) return FailedPrecondition("executor not started");
  const TimePoint now = m.clock.Now();
  return m.driver.ResumeWith(id, [&] {
    return m.store.ClaimInstance(id, m.options.owner, now, now + m.options.lease_ttl);
  });
}

Result<RecoverReport> Executor::RecoverExpired(std::size_t limit) {
  if (!impl_->started) return FailedPrecondition("executor not started");
  return impl_->RecoverExpired(limit);
}

Status Executor::RunUntilIdle() { return impl_->RunUntilIdle(); }

std::size_t Executor::live_instances() const { return impl_->table.size(); }

}  // namespace sagaflow::engine
