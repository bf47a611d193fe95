#pragma once

// The committer thread of SociStateStore: group commit of instance creates and writes.
// Internal to adapters/soci.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bulk_writer.h"
#include "database.h"
#include "queries.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters::sql {

// One queued create or write, encoded by the submitting thread.
struct WriteRequest {
  WriteItem item;
  engine::StateStore::WriteDone write_done;    // for a write
  engine::StateStore::CreateDone create_done;  // for a create
  // Completed by the committer thread itself rather than the completer: a synchronous write
  // from a callback, which the completer is running and so cannot complete.
  bool direct = false;
};

// The WAL file of a SQLite writer, opened by the committer to sync its commits (see
// GroupCommitter). Closed when the last batch that needs it is synced.
struct WalFile {
  WalFile(int fd, std::string path) : fd(fd), path(std::move(path)) {}
  ~WalFile();
  WalFile(const WalFile&) = delete;
  WalFile& operator=(const WalFile&) = delete;
  const int fd;
  const std::string path;
};

// Owns the writer connection and two threads. The committer thread takes everything queued (up
// to max_batch requests), applies it in one transaction with statements prepared once per
// connection, commits once, and hands the batch to the completer thread, which runs each
// request's callback, in submission order, outside any lock, while the committer goes on with
// the next batch. On SQLite with durability kFull, the writer commits with synchronous=NORMAL
// (the commit is written to the WAL but not flushed), and the completer flushes the WAL file
// (fdatasync) before it runs the callbacks: one flush for every batch committed meanwhile, and
// the next batch applied while the disk flushes. A write is reported done only once flushed,
// as synchronous=FULL would; a flush that fails reports the batches it covered kUnavailable.
// The committer runs at most one batch ahead of the completer. A request
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

  // The committer whose thread this is (its committer or completer thread), or null.
  static GroupCommitter* Current();

  // Applies everything queued, then ends the thread. Idempotent; not from a callback.
  void Stop() noexcept;

  GroupCommitStats stats() const;

 private:
  // A batch applied (or failed), waiting for its callbacks.
  struct Done {
    std::vector<WriteRequest> requests;
    std::vector<ItemOutcome> outcomes;
    std::shared_ptr<WalFile> wal;  // to flush before the callbacks; null: nothing to flush
  };

  void Run();
  void RunCompleter();
  void Process(std::vector<WriteRequest>& batch);
  // Waits while the completer has a batch it has not taken yet, then queues `done` for it.
  void Hand(Done done);
  // The WAL file the last commit wrote to (committer thread, after a commit); null when the
  // connection was closed since and took the WAL with it, checkpointed (nothing to flush).
  Result<std::shared_ptr<WalFile>> CurrentWal();
  Status Flush(const WalFile& wal) const;
  // Applies `batch` in one transaction. OK: committed, with per-request outcomes in `out`.
  // Otherwise nothing was committed; `retry_alone` tells whether retrying requests one by one
  // may help (a statement error specific to one request).
  Status ApplyInOneTransaction(std::vector<WriteRequest*>& batch, std::vector<ItemOutcome>& out,
                               bool& retry_alone);
  Status EnsureConnected();
  void Disconnect() noexcept;

  const DatabaseConfig config_;
  const std::size_t max_batch_;
  // SQLite with durability kFull: the completer flushes the WAL (see the class comment).
  const bool flush_wal_;

  // Used by the committer thread only (or inline by a callback on it).
  std::unique_ptr<Connection> writer_;
  // The prepared statements on writer_: a statement per row on SQLite (no round trips to
  // save), a few statements per batch on PostgreSQL.
  std::unique_ptr<InstanceWriter> rows_;
  std::unique_ptr<BulkInstanceWriter> bulk_;
  std::shared_ptr<WalFile> wal_;  // flush_wal_: the WAL file last written to

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<WriteRequest> queue_;
  bool stopping_ = false;
  GroupCommitStats stats_;

  // The completer's queue.
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::deque<Done> done_;
  bool completer_stopping_ = false;
  // Direct requests in queue_ (a committer waiting in Hand applies them).
  std::atomic<int> direct_queued_{0};

  std::thread::id committer_id_;
  std::thread::id completer_id_;
  std::once_flag joined_;
  std::thread completer_;
  std::thread thread_;
};

}  // namespace sagaflow::adapters::sql
