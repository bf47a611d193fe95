#include "scheduler.h"

#include <utility>

namespace sagaflow::engine {

namespace {
// The worker the current thread is, for the scheduler it belongs to.
thread_local const void* current_scheduler = nullptr;
thread_local std::size_t current_worker = 0;
}  // namespace

Scheduler::Scheduler(int workers, Run run) : workers_(workers), run_(std::move(run)) {
  for (int i = 0; i < workers_; ++i) queues_.push_back(std::make_unique<WorkerQueue>());
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  for (int i = 0; i < workers_; ++i) {
    auto worker = static_cast<std::size_t>(i);
    threads_.emplace_back([this, worker](std::stop_token st) { WorkerLoop(st, worker); });
  }
}

void Scheduler::Stop() noexcept {
  for (auto& t : threads_) t.request_stop();
  {
    std::lock_guard lock(ready_mu_);
    ready_cv_.notify_all();
  }
  threads_.clear();  // joins
}

void Scheduler::Post(Work work) {
  if (current_scheduler == this) {
    WorkerQueue& q = *queues_[current_worker];
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
  // Manual mode waits on the same variable without counting itself.
  if (workers_ == 0 || idle_workers_.load() > 0) ready_cv_.notify_one();
}

bool Scheduler::AnyQueued() const {
  if (ready_size_.load() > 0) return true;
  for (const auto& q : queues_) {
    if (q->size.load() > 0) return true;
  }
  return false;
}

bool Scheduler::TakeWork(std::size_t worker, Work& out) {
  auto take_from = [&](WorkerQueue& q) {
    if (q.size.load(std::memory_order_relaxed) == 0) return false;
    std::lock_guard lock(q.mu);
    if (q.work.empty()) return false;
    out = std::move(q.work.front());
    q.work.pop_front();
    q.size.store(q.work.size(), std::memory_order_relaxed);
    return true;
  };
  if (take_from(*queues_[worker])) return true;
  if (ready_size_.load(std::memory_order_relaxed) > 0) {
    std::lock_guard lock(ready_mu_);
    if (!ready_.empty()) {
      out = std::move(ready_.front());
      ready_.pop_front();
      ready_size_.store(ready_.size(), std::memory_order_relaxed);
      return true;
    }
  }
  for (std::size_t i = 1; i < queues_.size(); ++i) {
    if (take_from(*queues_[(worker + i) % queues_.size()])) return true;
  }
  return false;
}

void Scheduler::WorkerLoop(std::stop_token stop, std::size_t worker) {
  current_scheduler = this;
  current_worker = worker;
  while (!stop.stop_requested()) {
    Work work;
    if (TakeWork(worker, work)) {
      run_(std::move(work));
      continue;
    }
    std::unique_lock lock(ready_mu_);
    idle_workers_.fetch_add(1);
    ready_cv_.wait(lock, [&] { return stop.stop_requested() || AnyQueued(); });
    idle_workers_.fetch_sub(1);
  }
}

bool Scheduler::RunOne() {
  Work work;
  {
    std::lock_guard lock(ready_mu_);
    if (ready_.empty()) return false;
    work = std::move(ready_.front());
    ready_.pop_front();
    ready_size_.store(ready_.size(), std::memory_order_relaxed);
  }
  run_(std::move(work));
  return true;
}

void Scheduler::WaitForWork(Duration max) {
  std::unique_lock lock(ready_mu_);
  ready_cv_.wait_for(lock, max, [&] { return !ready_.empty(); });
}

}  // namespace sagaflow::engine
