#pragma once

// The executor's view of the instances it holds in memory. Internal to engine/.

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "flow_catalog.h"
#include "sagaflow/common/ids.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::engine {

// An instance this executor is stepping (or whose task runs here). Only the thread driving it
// touches `record` and the fields above `mu`; events from other threads go through `inbox`.
struct Live {
  const Flow* flow = nullptr;  // owned by the FlowCatalog, which never drops a flow
  InstanceRecord record;
  // A step computed but not acted on yet: the first step of an operation or a resume, one the
  // store refused, one being stored asynchronously, a dispatch to hand over again.
  std::optional<Step> pending;
  Duration write_backoff{};
  // The next write must store the whole header: a run, an operation or a resume began, or the
  // instance was claimed for an event.
  bool header_dirty = true;
  // How many of record.executions the store has (the first ones: executions are appended).
  int stored_executions = 0;
  // The pending write parks the instance (gives its owner up).
  bool parking = false;
  // The instance's write batch, filled again for each step (the store takes what it keeps
  // during Apply), so that its buffers are reused rather than allocated per step.
  WriteBatch batch;
  // Held while a write of the instance is with the store, so that a completion that comes later
  // finds it alive (the completion holds only a pointer).
  std::shared_ptr<Live> writing;
  std::size_t store_slot = 0;  // the write's InstanceDriver::BeginStoreCall slot
  // Tasks of this instance running in this process (timed invocations, in-process dispatches):
  // while there are any, the instance stays leased here.
  int running_here = 0;

  // Events that arrived for the instance, taken in order by the thread that drives it.
  std::mutex mu;
  std::deque<Event> inbox;
  // A thread drives the instance or a work item for it is queued: a new event waits in the
  // inbox. False while it rests (waiting for an event, with nothing queued).
  bool busy = true;
  // The instance left this executor (finished, parked, lost): events for it are dropped here.
  std::atomic<bool> gone{false};
};

// Someone waiting (Await, Operate) for an instance's run or operation to end.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Result<InstanceRecord> result = Internal("not finished");
};

enum class WorkKind {
  kPending,  // store Live::pending, then act on it
  kStored,   // Live::pending is stored: act on it
  kEvent,    // the instance has events in its inbox: take the next
  kTimer,    // a timer of `id` is due: deliver TimerDue{execution, attempt} (by id when parked)
  kPollDue,  // timers of parked instances are due: claim what is due, in one claim for many
};

struct Work {
  std::shared_ptr<Live> live;  // null for a timer of a parked instance
  WorkKind kind = WorkKind::kEvent;
  InstanceId id;      // kTimer of a parked instance
  int execution = -1;  // kTimer
  int attempt = 0;     // kTimer
};

// The instances this executor holds, and who waits for which, spread over shards (by the id's
// lane, see InstanceIdLane) so that threads starting and finishing different instances rarely
// contend. Thread-safe.
class LiveTable {
 public:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<InstanceId, std::shared_ptr<Live>> instances;
    std::unordered_map<InstanceId, std::vector<std::shared_ptr<Waiter>>> waiters;
  };
  static constexpr std::size_t kShards = 16;

  Shard& For(const InstanceId& id) { return shards_[InstanceIdLane(id) % kShards]; }
  std::array<Shard, kShards>& shards() { return shards_; }

  // Reserves `id` for `live`; false when the instance is already held here.
  bool Reserve(const InstanceId& id, std::shared_ptr<Live> live);
  void Erase(const InstanceId& id);
  std::shared_ptr<Live> Find(const InstanceId& id);
  std::size_t size() const;

 private:
  std::array<Shard, kShards> shards_;
};

}  // namespace sagaflow::engine
