#pragma once

// Claims what is due and resumes it. Internal to engine/.

#include <cstddef>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::engine {

// One pass of recovery: claims up to `limit` instances that are due (StateStore::ClaimDue:
// leases of processes that died, timers of parked instances), loads them a chunk of 256 at a
// time (LoadInstances) and hands each to `resume` before loading the next chunk, so that the
// workers start on the first while the rest load. The chunks are loaded on `loaders` threads
// (the caller's and loaders - 1 more for the pass), taken in claim order: when a million Waits
// end together, loading is most of a pass, and one thread leaves the engine's workers waiting
// for it. The report lists the instances in claim order. An instance whose load fails is
// handed to `resume` with the error and reported; its lease is given back (at the next pass
// when the store refuses that too), so that a later pass takes it again rather than the lease
// keeper renewing a lease nothing runs under. `resume` must be thread-safe when loaders > 1.
// Thread-safe.
class Recovery {
 public:
  using Resume = std::function<Status(const InstanceId&, Result<InstanceRecord>)>;
  Recovery(StateStore& store, const Clock& clock, std::string owner, Duration lease_ttl,
           std::size_t loaders = 1);
  Result<RecoverReport> Pass(std::size_t limit, const Resume& resume);

 private:
  void LoadAndResume(std::span<const InstanceId> chunk, const Resume& resume,
                     RecoverReport& report);
  void ReleaseUnloaded(TimePoint now);

  StateStore& store_;
  const Clock& clock_;
  const std::string owner_;
  const Duration lease_ttl_;
  const std::size_t loaders_;
  std::mutex mu_;
  std::vector<InstanceId> unreleased_;  // claimed, not loaded, lease not given back yet
};

}  // namespace sagaflow::engine
