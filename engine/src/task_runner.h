#pragma once

// Threads for the tasks whose deadline must hold while they run. Internal to engine/.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

namespace sagaflow::engine {

// Runs the invocations of tasks with TimeoutSeconds apart from the executor's workers, so that
// a task that hangs holds one of these threads, never a worker: the worker goes on, and the
// deadline's timer is served while the task still runs. With no threads, Submit runs the job
// on the calling thread. Stop lets running jobs finish and drops queued ones. Thread-safe.
class TaskRunner {
 public:
  explicit TaskRunner(int threads);
  ~TaskRunner();  // Stop()
  void Start();
  void Stop() noexcept;
  void Submit(std::function<void()> job);

 private:
  void Loop(std::stop_token stop);
  const int threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::jthread> pool_;
};

}  // namespace sagaflow::engine
