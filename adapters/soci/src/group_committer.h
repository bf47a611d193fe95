#pragma once

// The committer thread of SociStateStore: group commit of instance creates and writes.
// Internal to adapters/soci.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "bulk_writer.h"
#include "database.h"
#include "queries.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters::sql {

// One queued create or write. `record` is the caller's: valid and unchanged until the callback.
struct WriteRequest {
  const engine::InstanceRecord* record = nullptr;
  bool create = false;
  engine::ExecutionIds executions;
  bool context_changed = false;
  bool header = true;
  int stored_executions = -1;  // InstanceWrite::stored_executions
  std::shared_ptr<const EncodedItem> encoded;  // encoded by the submitting thread, if at all
  engine::StateStore::WriteDone write_done;    // for a write
  engine::StateStore::CreateDone create_done;  // for a create
};

// Owns the writer connection and one thread. The thread takes everything queued (up to
// max_batch requests), applies it in one transaction with statements prepared once per
// connection, commits once, then runs each request's callback, outside any lock. A request
// refused on its own (lease lost, conflict...) fails alone; a statement error the database
// raises for one request rolls the batch back and retries its requests one per transaction,
// so that only the bad one fails; a failed commit or a lost connection fails the whole batch
// with kUnavailable, and the next batch reconnects. Thread-safe.
class GroupCommitter {
 public:
  // Starts the thread. `writer` may be null: the first batch connects.
  GroupCommitter(DatabaseConfig config, std::unique_ptr<Connection> writer);
  ~GroupCommitter();  // Stop()

  // Queues `request`; its callback runs later on the committer thread. When called from the
  // committer thread itself (a callback writing synchronously) with `inline_if_committer`, the
  // request is applied at once in its own transaction instead, since waiting for the queue
  // there would never end. After Stop(): the callback runs at once with kFailedPrecondition.
  void Submit(WriteRequest request, bool inline_if_committer);

  // The committer whose thread this is (running a batch or its callbacks), or null.
  static GroupCommitter* Current();

  // Applies everything queued, then ends the thread. Idempotent; not from a callback.
  void Stop() noexcept;

  GroupCommitStats stats() const;

 private:
  void Run();
  void Process(std::vector<WriteRequest>& batch);
  // Applies `batch` in one transaction. OK: committed, with per-request outcomes in `out`.
  // Otherwise nothing was committed; `retry_alone` tells whether retrying requests one by one
  // may help (a statement error specific to one request).
  Status ApplyInOneTransaction(std::vector<WriteRequest*>& batch, std::vector<ItemOutcome>& out,
                               bool& retry_alone);
  Status EnsureConnected();
  void Disconnect() noexcept;

  const DatabaseConfig config_;
  const std::size_t max_batch_;

  // Used by the committer thread only (or inline by a callback on it).
  std::unique_ptr<Connection> writer_;
  // The prepared statements on writer_: a statement per row on SQLite (no round trips to
  // save), a few statements per batch on PostgreSQL.
  std::unique_ptr<InstanceWriter> rows_;
  std::unique_ptr<BulkInstanceWriter> bulk_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<WriteRequest> queue_;
  bool stopping_ = false;
  GroupCommitStats stats_;

  std::thread::id committer_id_;
  std::once_flag joined_;
  std::thread thread_;
};

}  // namespace sagaflow::adapters::sql
