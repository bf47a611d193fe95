#include "outbox.h"

#include <spdlog/spdlog.h>

#include <string>
#include <utility>

namespace sagaflow::engine {

Outbox::Outbox(StateStore& store, TaskDispatcher& dispatcher, const Clock& clock, Duration retry)
    : store_(store), dispatcher_(dispatcher), clock_(clock), retry_(retry) {}

void Outbox::Handed(DispatchKey key) {
  bool full = false;
  {
    std::lock_guard lock(mu_);
    handed_.push_back(std::move(key));
    full = handed_.size() >= kBatch;
  }
  if (full) {
    if (Status s = Flush(); !s.ok()) {
      spdlog::warn("could not remove {}+ dispatches handed over: {}; trying again later", kBatch,
                   s.ToString());
    }
  }
}

Status Outbox::Flush() {
  std::vector<DispatchKey> keys;
  {
    std::lock_guard lock(mu_);
    keys.swap(handed_);
  }
  if (keys.empty()) return Status::Ok();
  Status s = store_.RemoveDispatches(keys);
  if (!s.ok()) {
    std::lock_guard lock(mu_);
    handed_.insert(handed_.end(), std::make_move_iterator(keys.begin()),
                   std::make_move_iterator(keys.end()));
  }
  return s;
}

Result<std::size_t> Outbox::Relay(std::size_t limit) {
  std::lock_guard pass(relay_mu_);
  if (Status s = Flush(); !s.ok()) {
    spdlog::warn("could not remove dispatches handed over: {}", s.ToString());
  }
  const TimePoint now = clock_.Now();
  SAGAFLOW_ASSIGN_OR_RETURN(ClaimedDispatches due,
                            store_.ClaimDispatches(now, now + retry_, limit));
  for (const auto& [key, error] : due.corrupt) {
    spdlog::error("instance {}: the stored dispatch of execution {} attempt {} cannot be read: "
                  "{}",
                  key.instance.str(), key.execution, key.attempt, error.ToString());
  }
  std::size_t handed = 0;
  for (const DispatchRecord& row : due.rows) {
    const TaskDelivery& d = row.delivery;
    Status s = dispatcher_.Dispatch(d, clock_.Now() + std::chrono::seconds(5));
    if (!s.ok()) {
      // The dispatcher is away: the rest of the pass would wait on it row by row (on the thread
      // that renews leases). They are claimed until next_due and come due again then.
      spdlog::warn("instance {}: the dispatcher refused execution {} attempt {} again ({}); "
                   "this row and {} more claimed are handed over at {}",
                   d.instance.str(), d.execution, d.attempt, s.ToString(),
                   due.rows.size() - handed - 1, FormatTime(row.due_at));
      break;
    }
    ++handed;
    Handed(DispatchKey{d.instance, d.execution, d.attempt});
  }
  if (handed > 0) {
    spdlog::info("handed over {} stored dispatch(es) left behind", handed);
    if (Status s = Flush(); !s.ok()) {
      spdlog::warn("could not remove dispatches handed over: {}", s.ToString());
    }
  }
  return handed;
}

}  // namespace sagaflow::engine
