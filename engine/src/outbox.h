#pragma once

// Hands over the async steps' attempts stored in the outbox. Internal to engine/.

#include <cstddef>
#include <mutex>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/engine/task_dispatcher.h"

namespace sagaflow::engine {

// The transactional outbox of a durable dispatcher (see DispatchRecord). The driver writes a
// row with each step that dispatches (RowFor), hands the delivery over once the step is
// stored, and reports it taken (Handed); the rows of deliveries taken are removed in batches.
// A row left behind, because this or another process died between the write and the hand-over
// or the dispatcher refused it, comes due `retry` after it was written and is handed over by
// the next Relay pass of any process, and again every `retry` until one is taken. Delivery is
// at least once: a row may be handed over twice (a removal lost with a process); replies are
// de-duplicated on (instance, execution, attempt). Thread-safe.
class Outbox {
 public:
  Outbox(StateStore& store, TaskDispatcher& dispatcher, const Clock& clock, Duration retry);

  // The row that stores `delivery` with its step, written at `now`.
  DispatchRecord RowFor(const TaskDelivery& delivery, TimePoint now) const {
    return DispatchRecord{delivery, now + retry_};
  }

  // The dispatcher took the delivery of `key`: its row is removed with the next batch (at once
  // when kBatch are waiting).
  void Handed(DispatchKey key);

  // Removes the rows of the deliveries taken so far. On an error they are kept for the next
  // flush (a row removed late is at most handed over once more).
  Status Flush();

  // One pass: removes what was taken, then claims up to `limit` due rows and hands each to the
  // dispatcher. At the first it refuses the pass ends: that row and the rest claimed come due
  // again `retry` later. Returns how many it handed over.
  Result<std::size_t> Relay(std::size_t limit);

  static constexpr std::size_t kBatch = 256;

 private:
  StateStore& store_;
  TaskDispatcher& dispatcher_;
  const Clock& clock_;
  const Duration retry_;
  std::mutex mu_;
  std::vector<DispatchKey> handed_;
  std::mutex relay_mu_;  // one pass at a time
};

}  // namespace sagaflow::engine
