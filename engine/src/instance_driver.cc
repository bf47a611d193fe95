#include "instance_driver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

namespace sagaflow::engine {

using statelang::StateMachine;

namespace {
// The first multiple of tick not before t (t itself for a zero tick).
TimePoint RoundUpToTick(TimePoint t, Duration tick) {
  if (tick <= Duration::zero()) return t;
  Duration rest = t.time_since_epoch() % tick;
  if (rest < Duration::zero()) rest += tick;
  if (rest == Duration::zero()) return t;
  if (TimePoint::max() - t < tick - rest) return TimePoint::max();
  return t + (tick - rest);
}

// Whether a write of `after` would leave the stored header as `before` was, apart from the
// lease (which the lease keeper renews).
bool SameStoredHeader(const InstanceHeader& before, const InstanceHeader& after) {
  return before.status == after.status && before.error == after.error &&
         before.error_code == after.error_code && before.error_message == after.error_message &&
         before.ended_at == after.ended_at;
}
}  // namespace

// --- The live table ----------------------------------------------------------------------------

bool LiveTable::Reserve(const InstanceId& id, std::shared_ptr<Live> live) {
  Shard& shard = For(id);
  std::lock_guard lock(shard.mu);
  return shard.instances.emplace(id, std::move(live)).second;
}

void LiveTable::Erase(const InstanceId& id) {
  Shard& shard = For(id);
  std::lock_guard lock(shard.mu);
  shard.instances.erase(id);
}

std::shared_ptr<Live> LiveTable::Find(const InstanceId& id) {
  Shard& shard = For(id);
  std::lock_guard lock(shard.mu);
  auto it = shard.instances.find(id);
  return it == shard.instances.end() ? nullptr : it->second;
}

std::size_t LiveTable::size() const {
  std::size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    n += shard.instances.size();
  }
  return n;
}

// --- The driver --------------------------------------------------------------------------------

InstanceDriver::InstanceDriver(DriverParts parts)
    : p_(std::move(parts)) {}

ExecutorStats InstanceDriver::stats() const {
  return ExecutorStats{events_ignored_.load(), late_results_.load(), dispatched_.load(),
                       parked_.load(), woken_.load()};
}

std::size_t InstanceDriver::BeginStoreCall() {
  static std::atomic<std::size_t> next_slot{0};
  thread_local const std::size_t mine = next_slot.fetch_add(1) % kCallSlots;
  store_calls_[mine].n.fetch_add(1, std::memory_order_acq_rel);
  return mine;
}

void InstanceDriver::EndStoreCall(std::size_t slot) {
  store_calls_[slot].n.fetch_sub(1, std::memory_order_acq_rel);
}

std::size_t InstanceDriver::store_calls() const {
  // A call counts up before it starts and down after its callback: one in flight while every
  // slot is read has its slot above zero.
  std::int64_t n = 0;
  for (const CallSlot& s : store_calls_) n += s.n.load(std::memory_order_acquire);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

void InstanceDriver::WaitForStoreCalls() {
  // Only Stop waits, once: polled rather than signalled, so that a callback costs no lock.
  while (store_calls() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void InstanceDriver::Run(Work work) {
  switch (work.kind) {
    case WorkKind::kPending:
    case WorkKind::kStored: {
      std::shared_ptr<Live> live = std::move(work.live);
      Step step = std::move(*live->pending);
      live->pending.reset();
      return Drive(std::move(live), std::move(step), work.kind == WorkKind::kStored,
                   p_.clock.Now());
    }
    case WorkKind::kEvent: {
      std::shared_ptr<Live> live = std::move(work.live);
      std::optional<Event> event = NextEvent(*live);
      if (!event) return;
      const TimePoint now = p_.clock.Now();
      Step step = Apply(*live, std::move(*event), now);
      return Drive(std::move(live), std::move(step), false, now);
    }
    case WorkKind::kTimer: {
      Event due = TimerDue{work.execution, work.attempt};
      if (work.live) {
        // A deadline (or a dispatch to hand over again) of an instance held here; one that left
        // no longer waits for it.
        if (work.live->gone) return;
        return DeliverTo(work.live, std::move(due), false);
      }
      if (std::shared_ptr<Live> live = p_.table.Find(work.id)) {
        return DeliverTo(live, std::move(due), false);
      }
      return ClaimFor(work.id, std::move(due));
    }
    case WorkKind::kPollDue: {
      {
        std::lock_guard lock(claim_times_mu_);
        claim_times_.erase(claim_times_.begin(), claim_times_.upper_bound(p_.clock.Now()));
      }
      if (p_.claim_due_soon) p_.claim_due_soon();
      return;
    }
  }
}

Step InstanceDriver::Apply(Live& live, Event event, TimePoint now) {
  bool late = false;
  if (const auto* result = std::get_if<TaskResult>(&event)) {
    const auto& executions = live.record.executions;
    if (result->execution >= 0 && static_cast<std::size_t>(result->execution) < executions.size()) {
      const StateExecution& e = executions[static_cast<std::size_t>(result->execution)];
      late = e.deadline_at && now > *e.deadline_at;
    }
  }
  const bool is_result = std::holds_alternative<TaskResult>(event);
  Step step = p_.interpreter.OnEvent(live.record, *live.flow->machine, std::move(event), now);
  if (!step.ignored.empty()) {
    events_ignored_.fetch_add(1);
    late = late || is_result;
    spdlog::debug("instance {}: event ignored: {}", live.record.id.str(), step.ignored);
  }
  if (late) late_results_.fetch_add(1);
  return step;
}

std::optional<Event> InstanceDriver::NextEvent(Live& live) {
  std::lock_guard lock(live.mu);
  if (live.inbox.empty() || live.gone) {
    live.busy = false;
    return std::nullopt;
  }
  Event e = std::move(live.inbox.front());
  live.inbox.pop_front();
  return e;
}

void InstanceDriver::DeliverTo(const std::shared_ptr<Live>& live, Event event, bool from_here) {
  std::unique_lock lock(live->mu);
  if (from_here) {
    --live->running_here;
    tasks_out_.fetch_sub(1);
  }
  if (live->gone) {
    lock.unlock();
    if (from_here) {
      // The instance moved on without this result (its deadline passed, it finished).
      events_ignored_.fetch_add(1);
      late_results_.fetch_add(1);
      return;
    }
    return ClaimFor(live->record.id, std::move(event));
  }
  live->inbox.push_back(std::move(event));
  if (live->busy) return;
  live->busy = true;
  lock.unlock();
  p_.scheduler.Post(Work{live, WorkKind::kEvent, {}, -1, 0});
}

void InstanceDriver::OnReply(TaskReply reply) {
  const bool from_here = p_.dispatcher != nullptr && !p_.dispatcher->durable();
  Event event = TaskResult{reply.execution, reply.attempt, std::move(reply.outcome)};
  if (std::shared_ptr<Live> live = p_.table.Find(reply.instance)) {
    return DeliverTo(live, std::move(event), from_here);
  }
  if (from_here) {
    // A task run here whose instance no longer is: it moved on (or this reply repeats one).
    tasks_out_.fetch_sub(1);
    events_ignored_.fetch_add(1);
    late_results_.fetch_add(1);
    return;
  }
  ClaimFor(reply.instance, std::move(event));
}

void InstanceDriver::ClaimFor(const InstanceId& id, Event event) {
  if (p_.stop.stop_requested()) return;
  const TimePoint now = p_.clock.Now();
  const bool timer = std::holds_alternative<TimerDue>(event);
  const TimerDue due = timer ? std::get<TimerDue>(event) : TimerDue{};
  Status s = ResumeWith(
      id,
      [&] { return p_.store.ClaimIdle(id, p_.options.owner, now, now + p_.options.lease_ttl); },
      std::move(event));
  if (s.ok()) return;
  if (s.code() == StatusCode::kUnavailable && timer) {
    // The store is away: try the timer again later (it is also in the store, for any claimer).
    p_.timers.Add(now + p_.options.store_retry_initial,
                  Work{nullptr, WorkKind::kTimer, id, due.execution, due.attempt});
    return;
  }
  // Another process took it (its claim fired the timer), a recovery pass of this one holds it
  // (and fires what is due itself), or it is gone.
  spdlog::debug("instance {}: not claimed for an event: {}", id.str(), s.ToString());
}

Status InstanceDriver::ResumeWith(const InstanceId& id,
                                  const std::function<Result<InstanceRecord>()>& load,
                                  std::optional<Event> event) {
  auto live = std::make_shared<Live>();
  bool reserved = p_.table.Reserve(id, live);
  for (int i = 0; !reserved && i < 10000; ++i) {
    // An instance that is leaving this executor (parked, finished) is still in the table for
    // a moment: wait for it to go rather than take it for one that is held.
    std::shared_ptr<Live> held = p_.table.Find(id);
    if (held && !held->gone) break;
    std::this_thread::yield();
    reserved = p_.table.Reserve(id, live);
  }
  if (!reserved) {
    if (event) {
      // Claimed back meanwhile by this executor: hand it the event.
      if (std::shared_ptr<Live> held = p_.table.Find(id)) {
        DeliverTo(held, std::move(*event), false);
        return Status::Ok();
      }
    }
    return FailedPrecondition("instance " + id.str() + " is already running in this engine");
  }
  auto unreserve = [&] { p_.table.Erase(id); };
  auto loaded = load();
  if (!loaded.ok()) {
    unreserve();
    return loaded.status();
  }
  live->record = std::move(loaded).value();
  live->stored_executions = static_cast<int>(live->record.executions.size());
  if (live->record.owner != p_.options.owner) {
    unreserve();
    return FailedPrecondition("instance " + id.str() + " is now owned by '" +
                              live->record.owner + "'");
  }
  if (live->record.finished()) {
    unreserve();
    ReleaseLease(live->record);
    if (event) {
      events_ignored_.fetch_add(1);
      if (std::holds_alternative<TaskResult>(*event)) late_results_.fetch_add(1);
    }
    return Status::Ok();
  }
  const TimePoint now = p_.clock.Now();
  // Taken up by a claim of what is due with a timer due: a parked instance woken.
  const std::optional<TimePoint> wake = Interpreter::NextWake(live->record);
  const bool timer_due = !event && wake && *wake <= now;
  // As claimed: its owner and lease are this engine's already.
  const InstanceHeader claimed = HeaderOf(live->record);
  auto flow = p_.catalog.ForRecord(live->record);
  Result<Step> first = flow.status();
  if (flow.ok()) {
    live->flow = *flow;
    if (event) {
      first = Apply(*live, std::move(*event), now);
    } else {
      first = p_.interpreter.Resume(live->record, *live->flow->machine, now);
    }
  }
  if (!first.ok()) {
    unreserve();
    ReleaseLease(live->record);
    return first.status();
  }
  if (event || timer_due) woken_.fetch_add(1);
  spdlog::debug("instance {}: taken up (owner {})", id.str(), p_.options.owner);
  // The claim wrote the owner and the lease: the first write carries the header only when
  // the step changed it (a Wait that ends and runs its next state does not). Leaving the
  // indexed columns alone spares the store moving the instance in its indexes once more.
  live->header_dirty = !SameStoredHeader(claimed, HeaderOf(live->record));
  live->pending = std::move(first).value();
  QueuePending(std::move(live));
  return Status::Ok();
}

void InstanceDriver::QueuePending(std::shared_ptr<Live> live) {
  p_.scheduler.Post(Work{std::move(live), WorkKind::kPending, {}, -1, 0});
}

void InstanceDriver::ReleaseLease(const InstanceRecord& record) {
  const TimePoint now = p_.clock.Now();
  auto released = p_.store.ClaimInstance(record.id, p_.options.owner, now, now);
  if (!released.ok() && released.status().code() != StatusCode::kNotFound) {
    spdlog::warn("instance {}: could not release its lease ({}); it expires at {}",
                 record.id.str(), released.status().ToString(), FormatTime(record.lease_until));
  }
}

std::vector<DispatchRecord> InstanceDriver::DecideFirstStep(Live& live) {
  const TimePoint now = p_.clock.Now();
  Step first = p_.interpreter.Start(live.record, *live.flow->machine, now);
  PrepareWrite(live, first, now);
  if (live.parking) live.record.owner.clear();  // created parked: stored without an owner
  live.header_dirty = false;
  std::vector<DispatchRecord> rows = DispatchesOf(live, first);
  live.pending = std::move(first);
  return rows;
}

void InstanceDriver::Launch(std::shared_ptr<Live> live) {
  live->stored_executions = static_cast<int>(live->record.executions.size());
  p_.table.Reserve(live->record.id, live);
  // Its first step was stored with it.
  p_.scheduler.Post(Work{std::move(live), WorkKind::kStored, {}, -1, 0});
}

bool InstanceDriver::PrepareWrite(Live& live, const Step& step, TimePoint now) {
  live.record.updated_at = now;
  const Decision& d = step.decision;
  bool park = false;
  switch (d.kind) {
    case Decision::Kind::kSleep:
      park = true;
      break;
    case Decision::Kind::kDispatch:
      park = p_.dispatcher != nullptr && p_.dispatcher->durable() && step.more.empty();
      break;
    case Decision::Kind::kPark: {
      std::lock_guard lock(live.mu);
      park = live.running_here == 0;
      break;
    }
    default:
      break;
  }
  live.parking = park;
  const bool finished = d.kind == Decision::Kind::kFinished;
  if (!finished && !park && !live.header_dirty) return false;  // a step: the header is as stored
  if (finished) {
    // The last write of a run gives the lease back.
    live.record.lease_until = now;
  } else if (park) {
    // Parked: no owner, and its wake time is when any process may claim it.
    live.record.lease_until = d.kind == Decision::Kind::kSleep ? d.wake_at
                              : d.deadline                      ? *d.deadline
                                                                : TimePoint::max();
  } else {
    // The first write of a run renews the lease; in between, the lease keeper keeps it.
    live.record.lease_until = now + p_.options.lease_ttl;
  }
  return true;
}

void InstanceDriver::Stored(Live& live) {
  live.write_backoff = Duration::zero();
  live.header_dirty = false;
  live.stored_executions = static_cast<int>(live.record.executions.size());
  if (live.parking) live.record.owner.clear();
}

InstanceDriver::Refusal InstanceDriver::Refused(Live& live, const Status& status) {
  if (status.code() == StatusCode::kFailedPrecondition ||
      status.code() == StatusCode::kNotFound || status.code() == StatusCode::kInvalidArgument) {
    // The lease is lost (another process took the instance over), the instance is gone, or the
    // store refused the batch as malformed (nothing of it was applied): nothing of this step
    // may be acted on, and writing it again cannot help. The instance leaves this engine; one
    // still leased here is taken up from what is stored when its lease expires.
    spdlog::error("instance {}: stopped running it here: {}", live.record.id.str(),
                  status.ToString());
    return Refusal::kLost;
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
                           ? p_.options.store_retry_initial
                           : std::min(live.write_backoff * 2, p_.options.store_retry_max);
  return Refusal::kRetry;
}

void InstanceDriver::FillBatch(const Live& live, const Step& step, bool header,
                               WriteBatch& batch) const {
  const InstanceRecord& r = live.record;
  // Assigned over the previous batch: its strings and vectors keep their buffers.
  batch.instance = r.id;
  batch.owner = r.owner;
  batch.updated_at = r.updated_at;
  batch.compensation_status = r.compensation_status;
  batch.cursor = r.cursor;
  if (header) {
    batch.header = HeaderOf(r);
    batch.header->release_owner = live.parking;
  } else {
    batch.header.reset();
  }
  batch.new_executions.clear();
  batch.progress.clear();
  for (int id : step.changed_executions) {
    const StateExecution& e = r.executions[static_cast<std::size_t>(id)];
    if (id < live.stored_executions) {
      batch.progress.push_back(ExecutionProgress::Of(e));
    } else {
      batch.new_executions.push_back(e);
    }
  }
  if (step.context_changed) {
    batch.context = r.context;
    batch.changed_keys = step.context_keys;
  } else {
    batch.changed_keys = nullptr;  // the context itself was dropped after the last Apply
  }
  batch.dispatches = DispatchesOf(live, step);
  batch.children.clear();
}

std::vector<DispatchRecord> InstanceDriver::DispatchesOf(const Live& live, const Step& step) const {
  std::vector<DispatchRecord> rows;
  if (p_.outbox == nullptr) return rows;
  auto add = [&](const Decision& d) {
    if (d.kind != Decision::Kind::kDispatch) return;
    rows.push_back(p_.outbox->RowFor(DeliveryFor(live, d), live.record.updated_at));
  };
  add(step.decision);
  for (const Decision& d : step.more) add(d);
  return rows;
}

namespace {
// The write a thread is making, so that a completion called inside Apply (a store that
// completes at once) is told from one called later on another thread.
struct InlineWrite {
  const Live* live = nullptr;
  bool completed = false;
  Status status;
};
thread_local InlineWrite* t_inline_write = nullptr;
}  // namespace

bool InstanceDriver::Store(std::shared_ptr<Live>& live, Step& step, TimePoint now) {
  Live& l = *live;
  const bool header = PrepareWrite(l, step, now);
  FillBatch(l, step, header, l.batch);
  // Kept for the completion, which acts on it when it comes later.
  l.pending = std::move(step);
  InlineWrite here{&l, false, Status::Ok()};
  InlineWrite* const outer = t_inline_write;
  t_inline_write = &here;
  l.store_slot = BeginStoreCall();
  l.writing = live;
  // Two pointers: the completion fits in std::function without an allocation.
  Live* const raw = &l;
  p_.store.Apply(l.batch, [this, raw](Status status) {
    const std::size_t slot = raw->store_slot;  // `raw` may be gone once OnWritten has it
    if (t_inline_write != nullptr && t_inline_write->live == raw) {
      // Completed within Apply, on the driving thread: the caller goes on in place.
      t_inline_write->completed = true;
      t_inline_write->status = std::move(status);
      raw->writing.reset();
    } else {
      OnWritten(std::move(raw->writing), std::move(status));
    }
    EndStoreCall(slot);
  });
  t_inline_write = outer;
  // The store took what it keeps during the call. A reference the batch kept to the context
  // would make the next step's change of the context copy it whole.
  l.batch.context.reset();
  // Completing later, on the store's thread: `live` is no longer this thread's to touch.
  if (!here.completed) return false;
  step = std::move(*l.pending);
  l.pending.reset();
  if (here.status.ok()) {
    Stored(l);
    return true;
  }
  if (Refused(l, here.status) == Refusal::kLost) {
    Finish(live, std::move(here.status));
    return false;
  }
  l.pending = std::move(step);
  if (p_.stop.stop_requested()) return false;
  p_.timers.Add(now + l.write_backoff, Work{live, WorkKind::kPending, {}, -1, 0});
  return false;
}

void InstanceDriver::OnWritten(std::shared_ptr<Live> live, Status status) {
  if (status.ok()) {
    Stored(*live);
    return p_.scheduler.Post(Work{std::move(live), WorkKind::kStored, {}, -1, 0});
  }
  switch (Refused(*live, status)) {
    case Refusal::kLost:
      return Finish(live, std::move(status));
    case Refusal::kRetry:
      if (p_.stop.stop_requested()) return;
      p_.timers.Add(p_.clock.Now() + live->write_backoff,
                    Work{live, WorkKind::kPending, {}, -1, 0});
      return;
  }
}

const TaskFn* InstanceDriver::TaskFor(const Live& live, int execution) const {
  const StateExecution& e = live.record.executions[static_cast<std::size_t>(execution)];
  const TaskFn* fn = live.flow->tasks[static_cast<std::size_t>(e.state_index)];
  if (fn == nullptr) {
    fn = p_.registry.Find(live.flow->machine->state(e.state_index).service_task().task);
  }
  return fn;
}

TaskDelivery InstanceDriver::DeliveryFor(const Live& live, const Decision& d) const {
  const StateExecution& e = live.record.executions[static_cast<std::size_t>(d.execution)];
  return TaskDelivery{live.record.id,
                      d.execution,
                      d.attempt,
                      e.state,
                      live.flow->machine->state(e.state_index).service_task().task,
                      e.idempotency_key,
                      e.input,
                      d.deadline};
}

TaskOutcome InstanceDriver::InvokeHere(const Live& live, const Decision& d, const TaskFn& fn) {
  const StateExecution& e = live.record.executions[static_cast<std::size_t>(d.execution)];
  TaskContext ctx(live.record.id, e.state, d.attempt, e.idempotency_key, d.deadline, p_.stop);
  TaskOutcome out;
  out.ok = InvokeTask(fn, ctx, e.input.get(), out.result, out.failure);
  return out;
}

TaskOutcome InstanceDriver::Invoke(const TaskDelivery& d, const TaskFn& fn) {
  TaskContext ctx(d.instance, d.state, d.attempt, d.idempotency_key, d.deadline, p_.stop);
  TaskOutcome out;
  out.ok = InvokeTask(fn, ctx, d.input.get(), out.result, out.failure);
  return out;
}

void InstanceDriver::InvokeApart(const std::shared_ptr<Live>& live, const Decision& d,
                                 const TaskFn& fn) {
  TaskDelivery delivery = DeliveryFor(*live, d);
  {
    std::lock_guard lock(live->mu);
    ++live->running_here;
  }
  tasks_out_.fetch_add(1);
  p_.runner.Submit([this, live, delivery = std::move(delivery), &fn]() mutable {
    TaskOutcome outcome;
    if (delivery.deadline && p_.clock.Now() > *delivery.deadline) {
      // It waited for a thread past its deadline: the attempt has timed out already.
      outcome.ok = false;
      outcome.failure = TaskFailure{std::string(ErrorTypes::kTimeoutError),
                                    "the task did not start before its deadline"};
    } else {
      outcome = Invoke(delivery, fn);
    }
    DeliverTo(live, TaskResult{delivery.execution, delivery.attempt, std::move(outcome)},
              /*from_here=*/true);
  });
  bool running;
  {
    std::lock_guard lock(live->mu);
    running = live->running_here > 0;
  }
  // The deadline holds while the task runs: a timer fails the attempt when it is due (unless
  // the task ran on this thread and its result is in already).
  if (d.deadline && running) {
    p_.timers.Add(*d.deadline, Work{live, WorkKind::kTimer, {}, d.execution, d.attempt});
  }
}

bool InstanceDriver::Dispatch(const std::shared_ptr<Live>& live, const Decision& d) {
  const bool here = !p_.dispatcher->durable();
  if (here) {
    std::lock_guard lock(live->mu);
    ++live->running_here;
    tasks_out_.fetch_add(1);
  }
  const TimePoint now = p_.clock.Now();
  Status s = p_.dispatcher->Dispatch(DeliveryFor(*live, d), now + std::chrono::seconds(5));
  if (!s.ok()) {
    if (here) {
      std::lock_guard lock(live->mu);
      --live->running_here;
      tasks_out_.fetch_sub(1);
    }
    spdlog::warn("instance {}: the dispatcher refused execution {} ({}); dispatching it again",
                 live->record.id.str(), d.execution, s.ToString());
    return false;
  }
  dispatched_.fetch_add(1);
  if (p_.outbox != nullptr) p_.outbox->Handed(DispatchKey{live->record.id, d.execution, d.attempt});
  bool running = !here;
  if (here) {
    std::lock_guard lock(live->mu);
    running = live->running_here > 0;
  }
  if (d.deadline && running && !p_.dispatcher->durable()) {
    p_.timers.Add(*d.deadline, Work{live, WorkKind::kTimer, {}, d.execution, d.attempt});
  }
  return true;
}

bool InstanceDriver::Parked(const std::shared_ptr<Live>& live, const Decision& d, TimePoint now) {
  Live& l = *live;
  const InstanceId id = l.record.id;
  parked_.fetch_add(1);
  // A sleep fires from memory when near (or when nothing else would fire it), else by the
  // store's next claim of what is due, in whichever process makes it.
  const bool sleeps = d.kind == Decision::Kind::kSleep;
  const bool polled = p_.claim_due_soon != nullptr;
  const bool near = !polled || d.wake_at - now <= p_.options.local_timer_horizon;
  {
    std::lock_guard lock(l.mu);
    if (l.inbox.empty()) {
      l.gone = true;
      l.busy = false;
    }
  }
  if (l.gone) {
    // Out of the table before its timer may fire: the claim it makes then finds it gone.
    p_.table.Erase(id);
    if (sleeps && near) {
      if (polled) {
        // Its timer asks for a claim of what is due at its wake time, which takes every
        // instance due by then in one claim (one transaction for a thousand Waits ending
        // together) rather than one claim each; rounded up to the tick, so that instances
        // started one after another share it too.
        const TimePoint claim_at = RoundUpToTick(d.wake_at, p_.options.local_timer_tick);
        bool first;
        {
          std::lock_guard lock(claim_times_mu_);
          first = claim_times_.insert(claim_at).second;
        }
        if (first) p_.timers.Add(claim_at, Work{nullptr, WorkKind::kPollDue, {}, -1, 0});
      } else {
        p_.timers.Add(d.wake_at, Work{nullptr, WorkKind::kTimer, id, d.execution, d.attempt});
      }
    }
    return false;
  }
  if (sleeps && near) {
    // Claimed back below and held here: its own timer delivers the wake to it.
    p_.timers.Add(d.wake_at, Work{nullptr, WorkKind::kTimer, id, d.execution, d.attempt});
  }
  // An event came while it was being parked: take the instance back and go on.
  auto claimed = p_.store.ClaimIdle(id, p_.options.owner, now, now + p_.options.lease_ttl);
  if (!claimed.ok()) {
    spdlog::warn("instance {}: could not take it back for an event that came as it parked: {}",
                 id.str(), claimed.status().ToString());
    {
      std::lock_guard lock(l.mu);
      l.gone = true;
      l.busy = false;
      l.inbox.clear();
    }
    p_.table.Erase(id);
    return false;
  }
  l.record = std::move(claimed).value();
  l.stored_executions = static_cast<int>(l.record.executions.size());
  l.header_dirty = true;
  woken_.fetch_add(1);
  return true;
}

void InstanceDriver::Drive(std::shared_ptr<Live> live, Step step, bool stored, TimePoint now) {
  Live& l = *live;
  // Takes the next event, if any, into `step`; false when the instance rests.
  auto next_event = [&]() -> bool {
    std::optional<Event> event = NextEvent(l);
    if (!event) return false;
    now = p_.clock.Now();
    step = Apply(l, std::move(*event), now);
    stored = false;
    return true;
  };
  while (true) {
    if (!stored && !step.ignored.empty() && !l.header_dirty) {
      // Nothing changed, and the instance is where it was: held here, waiting.
      if (step.decision.kind == Decision::Kind::kFinished) return;
      if (!next_event()) return;
      continue;
    }
    // Nothing is acted on until it is stored; a write that completes later goes on from
    // OnWritten.
    if (!stored && !Store(live, step, now)) return;
    stored = false;
    const Decision& d = step.decision;
    // Further invocations decided in the same step run apart (several in flight).
    for (const Decision& extra : step.more) {
      if (extra.kind == Decision::Kind::kInvoke) {
        const TaskFn* fn = TaskFor(l, extra.execution);
        if (fn == nullptr) {
          return Finish(live, NotFound("no task is registered for state '" +
                                       l.record.executions[extra.execution].state.str() + "'"));
        }
        InvokeApart(live, extra, *fn);
      } else if (extra.kind == Decision::Kind::kDispatch && p_.dispatcher != nullptr) {
        Dispatch(live, extra);
      }
    }
    switch (d.kind) {
      case Decision::Kind::kInvoke: {
        const TaskFn* fn = TaskFor(l, d.execution);
        if (fn == nullptr) {
          const StateExecution& e = l.record.executions[static_cast<std::size_t>(d.execution)];
          const auto& task = l.flow->machine->state(e.state_index).service_task().task;
          return Finish(live, NotFound("no task is registered for service '" + task.str() +
                                       "' (state '" + e.state.str() + "')"));
        }
        if (p_.stop.stop_requested()) return;  // left RU in the store; recovery resumes it
        if (!d.deadline && step.more.empty()) {
          // No deadline to hold: the task runs on this thread, and the instance goes on.
          TaskOutcome outcome = InvokeHere(l, d, *fn);
          now = p_.clock.Now();
          step = Apply(l, TaskResult{d.execution, d.attempt, std::move(outcome)}, now);
          continue;
        }
        InvokeApart(live, d, *fn);
        if (!next_event()) return;
        continue;
      }
      case Decision::Kind::kDispatch: {
        if (p_.dispatcher == nullptr) {
          return Finish(live, FailedPrecondition("state '" +
                                                 l.record.executions[d.execution].state.str() +
                                                 "' is async and this engine has no dispatcher"));
        }
        if (p_.stop.stop_requested()) return;
        if (!Dispatch(live, d)) {
          // Handed over again after a backoff, from the stored step.
          l.write_backoff = l.write_backoff == Duration::zero()
                                ? p_.options.store_retry_initial
                                : std::min(l.write_backoff * 2, p_.options.store_retry_max);
          l.pending = std::move(step);
          p_.timers.Add(p_.clock.Now() + l.write_backoff,
                        Work{live, WorkKind::kStored, {}, -1, 0});
          return;
        }
        if (l.parking) {
          if (!Parked(live, d, now)) return;
        }
        if (!next_event()) return;
        continue;
      }
      case Decision::Kind::kSleep:
      case Decision::Kind::kPark:
        if (l.parking && !Parked(live, d, now)) return;
        if (!next_event()) return;
        continue;
      case Decision::Kind::kStartChild:
        return Finish(live, Internal("instance " + l.record.id.str() +
                                     ": the interpreter asked for a child instance, which this "
                                     "engine cannot start"));
      case Decision::Kind::kFinished:
        return Finish(live, Status::Ok());
    }
  }
}

void InstanceDriver::Finish(const std::shared_ptr<Live>& live, Status status) {
  {
    std::lock_guard lock(live->mu);
    live->gone = true;
    live->busy = false;
    live->inbox.clear();
  }
  std::vector<std::shared_ptr<Waiter>> waiters;
  {
    LiveTable::Shard& shard = p_.table.For(live->record.id);
    std::lock_guard lock(shard.mu);
    auto it = shard.instances.find(live->record.id);
    if (it != shard.instances.end() && it->second == live) shard.instances.erase(it);
    auto w = shard.waiters.find(live->record.id);
    if (w != shard.waiters.end()) {
      waiters.swap(w->second);
      shard.waiters.erase(w);
    }
  }
  if (status.ok() && p_.options.on_finished) p_.options.on_finished(live->record);
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
