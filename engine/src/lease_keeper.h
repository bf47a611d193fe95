#pragma once

// Keeps an executor's leases alive and claims what is due. Internal to engine/.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "sagaflow/common/clock.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::engine {

// One thread that, every sixth of a lease, renews the leases of this owner expiring within
// two thirds of one (a lease is renewed while a third of it is left at least, the slack for a
// late pass; an instance that ends within its first third, as most do, is never renewed), and,
// every `poll_every` when it is not zero, calls `poll` (the executor claims what is due: timers
// of parked instances and leases of processes that died). Only instances this process steps
// hold a lease: a parked instance has no owner, so it is never renewed. Thread-safe.
class LeaseKeeper {
 public:
  LeaseKeeper(StateStore& store, const Clock& clock, std::string owner, Duration lease_ttl,
              Duration poll_every, std::function<void()> poll);
  ~LeaseKeeper();  // Stop()
  void Start();
  void Stop() noexcept;

  // One renewal pass now (what the thread does); returns how many leases it extended.
  Result<std::size_t> RenewOnce();
  // For `poll`, on the thread: the renewal pass when one is due (a sixth of a lease after the
  // last), else nothing (0). A long poll (a million timers claimed batch after batch) keeps the
  // leases alive with it, without a write between every two batches.
  Result<std::size_t> RenewIfDue();
  // Has the thread call `poll` as soon as it can (once for many calls made meanwhile), besides
  // every `poll_every`.
  void ClaimDueSoon();

 private:
  void Loop(std::stop_token stop);

  StateStore& store_;
  const Clock& clock_;
  const std::string owner_;
  const Duration lease_ttl_;
  const Duration poll_every_;
  const std::function<void()> poll_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool poll_soon_ = false;  // guarded by mu_
  // When the next renewal is due; the thread's alone (its loop and `poll`).
  std::chrono::steady_clock::time_point next_renew_{};
  std::jthread thread_;
};

}  // namespace sagaflow::engine
