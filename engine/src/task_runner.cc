#include "task_runner.h"

#include <utility>

namespace sagaflow::engine {

TaskRunner::TaskRunner(int threads) : threads_(threads) {}

TaskRunner::~TaskRunner() { Stop(); }

void TaskRunner::Start() {
  for (int i = 0; i < threads_; ++i) {
    pool_.emplace_back([this](std::stop_token stop) { Loop(stop); });
  }
}

void TaskRunner::Stop() noexcept {
  for (auto& t : pool_) t.request_stop();
  {
    std::lock_guard lock(mu_);
    jobs_.clear();
    cv_.notify_all();
  }
  pool_.clear();  // joins
}

void TaskRunner::Submit(std::function<void()> job) {
  if (threads_ == 0) return job();
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void TaskRunner::Loop(std::stop_token stop) {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop.stop_requested() || !jobs_.empty(); });
      if (stop.stop_requested()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace sagaflow::engine
