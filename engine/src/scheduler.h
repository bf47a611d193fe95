#pragma once

// The executor's worker threads and ready queues. Internal to engine/.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "live.h"
#include "sagaflow/common/clock.h"

namespace sagaflow::engine {

// Runs work items on a fixed pool of threads, or, with no threads (manual mode), on the thread
// that calls RunOne.
//
// Work posted from outside the workers (starts from other threads, timers, completions from
// the store or the dispatcher) goes to the shared queue; work a worker posts (the next
// instance an on_finished hook starts) stays on that worker's own queue, so that an instance is
// allocated, driven and freed on one thread. An idle worker takes from its own queue, then the
// shared one, then the others'. Each queue keeps its size in its own cache line, so that
// workers busy with their own queues share no counter. Thread-safe.
class Scheduler {
 public:
  using Run = std::function<void(Work)>;
  Scheduler(int workers, Run run);
  ~Scheduler();  // Stop()

  void Start();
  // Stops and joins the workers; work still queued is dropped. Idempotent.
  void Stop() noexcept;

  void Post(Work work);

  // Manual mode: runs one queued item on this thread; false when nothing is queued.
  bool RunOne();
  // Manual mode: waits until something is posted, or `max` passes.
  void WaitForWork(Duration max);
  bool AnyQueued() const;

 private:
  struct alignas(64) WorkerQueue {
    std::mutex mu;
    std::deque<Work> work;
    std::atomic<std::size_t> size{0};  // work.size(), readable without the mutex
  };
  bool TakeWork(std::size_t worker, Work& out);
  void WorkerLoop(std::stop_token stop, std::size_t worker);

  const int workers_;
  const Run run_;
  std::mutex ready_mu_;
  std::condition_variable ready_cv_;
  std::deque<Work> ready_;
  std::atomic<std::size_t> ready_size_{0};  // ready_.size(), readable without the mutex
  std::vector<std::unique_ptr<WorkerQueue>> queues_;
  alignas(64) std::atomic<int> idle_workers_{0};
  std::vector<std::jthread> threads_;
};

}  // namespace sagaflow::engine
