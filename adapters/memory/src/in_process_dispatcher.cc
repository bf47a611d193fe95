#include "sagaflow/adapters/memory/in_process_dispatcher.h"

#include <utility>

namespace sagaflow::adapters {

InProcessDispatcher::InProcessDispatcher(const TaskRegistry& registry, const Clock& clock,
                                         InProcessDispatcherOptions options)
    : registry_(registry), clock_(clock), options_(options) {}

InProcessDispatcher::~InProcessDispatcher() { Stop(); }

Status InProcessDispatcher::Start(ReplyHandler on_reply) {
  if (!on_reply) return InvalidArgument("the dispatcher needs a reply handler");
  if (options_.threads < 0) return InvalidArgument("threads must be 0 or more");
  std::lock_guard lock(mu_);
  if (started_) return FailedPrecondition("dispatcher already started");
  started_ = true;
  on_reply_ = std::move(on_reply);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
  }
  return Status::Ok();
}

void InProcessDispatcher::Stop() noexcept {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    queue_.clear();
  }
  stop_source_.request_stop();
  cv_.notify_all();
  threads_.clear();  // joins
}

Status InProcessDispatcher::Dispatch(const engine::TaskDelivery& delivery, TimePoint) {
  {
    std::lock_guard lock(mu_);
    if (!started_) return FailedPrecondition("dispatcher not started");
    if (stopped_) return Unavailable("dispatcher stopped");
    if (options_.threads > 0) {
      queue_.push_back(delivery);
      cv_.notify_one();
      return Status::Ok();
    }
  }
  Run(delivery);
  return Status::Ok();
}

void InProcessDispatcher::Run(const engine::TaskDelivery& d) {
  if (d.deadline && clock_.Now() > *d.deadline) {
    std::lock_guard lock(mu_);
    ++expired_;
    return;
  }
  engine::TaskReply reply{d.instance, d.execution, d.attempt, {}};
  engine::TaskOutcome& out = reply.outcome;
  if (const TaskFn* fn = registry_.Find(d.task)) {
    TaskContext ctx(d.instance, d.state, d.attempt, d.idempotency_key, d.deadline,
                    stop_source_.get_token());
    out.ok = InvokeTask(*fn, ctx, d.input.get(), out.result, out.failure);
  } else {
    out.ok = false;
    out.failure = TaskFailure{std::string(ErrorTypes::kError),
                              "no task is registered for service '" + d.task.str() + "'"};
  }
  {
    std::lock_guard lock(mu_);
    ++delivered_;
  }
  on_reply_(std::move(reply));
}

void InProcessDispatcher::WorkerLoop() {
  while (true) {
    engine::TaskDelivery d;
    {
      std::unique_lock lock(mu_);
      // stopped_ is set under mu_, so the wake-up of Stop cannot slip between the check and
      // the wait.
      cv_.wait(lock, [&] { return stopped_ || !queue_.empty(); });
      if (stopped_) return;
      d = std::move(queue_.front());
      queue_.pop_front();
    }
    Run(d);
  }
}

std::uint64_t InProcessDispatcher::delivered() const {
  std::lock_guard lock(mu_);
  return delivered_;
}

std::uint64_t InProcessDispatcher::expired() const {
  std::lock_guard lock(mu_);
  return expired_;
}

}  // namespace sagaflow::adapters
