#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/engine/task_dispatcher.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::adapters {

struct InProcessDispatcherOptions {
  // Threads that run the async steps' tasks. 0: each delivery runs inside Dispatch, on the
  // calling thread, and its reply is handed back before Dispatch returns (simulate and the
  // engine's manual mode).
  int threads = 2;
};

// The embedded TaskDispatcher: the async steps of a flow run on a pool of this process's
// threads, from the same TaskRegistry the engine uses. Nothing survives the process
// (durable() is false): the engine keeps an instance leased while its async step runs here, so
// a step lost with the process is recovered as in doubt. A task that throws becomes its
// TaskFailure, as for a synchronous step; a delivery for a task nobody registered is answered
// with a failure of type Error naming it. A delivery whose deadline has passed before a thread
// takes it is not run (the engine has given the attempt up already).
//
// Thread-safe. Start() before the first Dispatch, Stop() before destruction (the destructor
// calls it): Stop lets the running tasks finish and answers nothing for queued deliveries.
class InProcessDispatcher final : public engine::TaskDispatcher {
 public:
  InProcessDispatcher(const TaskRegistry& registry, const Clock& clock,
                      InProcessDispatcherOptions options = {});
  ~InProcessDispatcher() override;
  InProcessDispatcher(const InProcessDispatcher&) = delete;
  InProcessDispatcher& operator=(const InProcessDispatcher&) = delete;

  Status Start(ReplyHandler on_reply) override;
  void Stop() noexcept override;
  Status Dispatch(const engine::TaskDelivery& delivery, TimePoint deadline) override;
  bool durable() const override { return false; }

  // Deliveries run so far, and those skipped because their deadline had passed.
  std::uint64_t delivered() const;
  std::uint64_t expired() const;

 private:
  void Run(const engine::TaskDelivery& delivery);
  void WorkerLoop();

  const TaskRegistry& registry_;
  const Clock& clock_;
  const InProcessDispatcherOptions options_;
  ReplyHandler on_reply_;
  std::stop_source stop_source_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<engine::TaskDelivery> queue_;
  bool started_ = false;
  bool stopped_ = false;
  std::uint64_t delivered_ = 0;
  std::uint64_t expired_ = 0;
  std::vector<std::jthread> threads_;
};

}  // namespace sagaflow::adapters
