#include "sagaflow/engine/state_store.h"

#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>

namespace sagaflow::engine {

ExecutionProgress ExecutionProgress::Of(const StateExecution& e) {
  return ExecutionProgress{e.id,        e.attempts,    e.status,      e.compensation_status,
                           e.superseded, e.retry_counts, e.retry_at,    e.deadline_at,
                           e.output,     e.error,        e.ended_at};
}

void ExecutionProgress::ApplyTo(StateExecution& e) && {
  e.attempts = attempts;
  e.status = status;
  e.compensation_status = compensation_status;
  e.superseded = superseded;
  e.retry_counts = std::move(retry_counts);
  e.retry_at = retry_at;
  e.deadline_at = deadline_at;
  e.output = std::move(output);
  e.error = std::move(error);
  e.ended_at = ended_at;
}

void ExecutionProgress::ApplyTo(StateExecution& e) const& {
  e.attempts = attempts;
  e.status = status;
  e.compensation_status = compensation_status;
  e.superseded = superseded;
  e.retry_counts = retry_counts;
  e.retry_at = retry_at;
  e.deadline_at = deadline_at;
  e.output = output;
  e.error = error;
  e.ended_at = ended_at;
}

InstanceHeader HeaderOf(const InstanceRecord& record) {
  return InstanceHeader{record.status,        record.error,    record.error_code,
                        record.error_message, record.ended_at, record.lease_until};
}

WriteBatch WriteBatch::Of(const InstanceRecord& record, const ExecutionIds& executions,
                          bool context_changed, bool header) {
  WriteBatch batch;
  batch.instance = record.id;
  batch.owner = record.owner;
  batch.updated_at = record.updated_at;
  batch.compensation_status = record.compensation_status;
  batch.cursor = record.cursor;
  if (header) batch.header = HeaderOf(record);
  batch.new_executions.reserve(executions.size());
  for (int id : executions) {
    if (id >= 0 && static_cast<std::size_t>(id) < record.executions.size()) {
      batch.new_executions.push_back(record.executions[static_cast<std::size_t>(id)]);
    } else {
      // Kept so that the store refuses it, naming the id.
      batch.new_executions.emplace_back().id = id;
    }
  }
  if (context_changed) batch.context = record.context;
  return batch;
}

WriteBatch& WriteBatch::Parking(const InstanceRecord& record) {
  if (!header) header = HeaderOf(record);
  header->release_owner = true;
  return *this;
}

namespace {
// An outcome waited for on the caller's stack (no shared state to allocate).
template <class T>
class Outcome {
 public:
  void Set(T value) {
    std::lock_guard lock(mu_);
    value_ = std::move(value);
    cv_.notify_one();  // under the lock: the waiter cannot return and destroy cv_ first
  }
  T Get() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return value_.has_value(); });
    return std::move(*value_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<T> value_;
};
}  // namespace

Result<InstanceId> StateStore::CreateInstance(const InstanceRecord& record,
                                              std::span<const DispatchRecord> dispatches) {
  Outcome<Result<InstanceId>> outcome;
  Create(record, dispatches, [&outcome](Result<InstanceId> id) { outcome.Set(std::move(id)); });
  return outcome.Get();
}

Status StateStore::Write(WriteBatch batch) {
  Outcome<Status> outcome;
  Apply(batch, [&outcome](Status s) { outcome.Set(std::move(s)); });
  return outcome.Get();
}

}  // namespace sagaflow::engine
