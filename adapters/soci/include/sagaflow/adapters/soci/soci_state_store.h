#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters {

struct SociStoreOptions {
  // SQLite only: how far a commit is pushed to disk before a write is reported durable.
  //   kFull:   synchronous=FULL; a committed write survives a power loss or an OS crash.
  //   kNormal: synchronous=NORMAL; it survives a crash of the process; the last commits before a
  //            power loss may be lost (never half of one: the database stays consistent).
  // PostgreSQL: durability is the server's (synchronous_commit); this field is ignored.
  enum class Durability { kFull, kNormal };
  Durability durability = Durability::kFull;
  // Connections for reads, claims and definitions (the writes of instances have their own).
  std::size_t pool_size = 4;
  // The most instance writes applied in one transaction (one group commit).
  std::size_t max_batch = 1024;
  // PostgreSQL: committer threads, each with its own connection, applying their batches in
  // parallel (an instance's writes always go to the same one). SQLite has one writer: 1.
  std::size_t committers = 2;
  // PostgreSQL: the schema to create (if missing) and use through search_path; "" for the
  // server's default (usually `public`). A plain identifier: letters, digits and '_'.
  std::string schema;
  // PostgreSQL: how long connecting may take before the server counts as unreachable (libpq's
  // connect_timeout, unless the URL sets one).
  std::chrono::seconds connect_timeout{5};
  // SQLite: how long a statement waits for another connection's write lock before giving up
  // with kUnavailable.
  std::chrono::milliseconds busy_timeout{5000};
};

// What the group committer has done so far; for tests and benchmarks.
struct GroupCommitStats {
  std::uint64_t batches = 0;        // batches taken from the queue
  std::uint64_t commits = 0;        // transactions committed (more than batches when a batch
                                    // was retried one item per transaction)
  std::uint64_t items_written = 0;  // creates and writes that committed (OK)
  std::uint64_t items_refused = 0;  // refused one by one (lease lost, conflict, not found...)
  std::uint64_t items_failed = 0;   // not applied: their batch failed (kUnavailable), or the
                                    // database rejected them alone (kInternal)
  std::uint64_t largest_batch = 0;  // the most items taken in one batch
};

// A StateStore over SOCI: SQLite (one file, WAL) or PostgreSQL (several engine processes share
// one database). Instance creates and writes go through a committer thread that applies
// everything queued in one transaction (group commit), so that the writes of many instances
// share one commit (on PostgreSQL, `committers` of them in parallel, each instance always on the
// same one); reads, claims and definitions use a pool of other connections.
//
// Thread-safe. Every method blocks on the database (there is no per-call deadline: a lost
// PostgreSQL server is detected by libpq's timeouts, a locked SQLite file after busy_timeout).
// Exceptions from SOCI never escape: they become kUnavailable (connection, I/O, lock: retry)
// or kInternal (corrupt stored data, a statement the database rejects), naming the operation.
class SociStateStore final : public engine::StateStore {
 public:
  // Drains: every write queued before is applied and its callback called, then the committer
  // thread stops (Stop()).
  ~SociStateStore() override;

  SociStateStore(const SociStateStore&) = delete;
  SociStateStore& operator=(const SociStateStore&) = delete;

  Status SaveDefinition(const engine::DefinitionRecord& def) override;
  Result<engine::DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) override;

  // Encoded on the calling thread, then queued to the committer: `done` runs on a thread of
  // the store once the commit holding the call is durable (or failed), outside any lock of the
  // store; the next commit waits for it. Called from a committer's own thread (a callback that
  // writes), the call is applied there at once and `done` runs before it returns. After Stop():
  // `done` runs at once with kFailedPrecondition. Besides the contract: creating an instance
  // whose id exists already completes with the id when the stored instance has the same flow
  // and input (a retry after a commit whose outcome was lost), kAlreadyExists otherwise.
  using engine::StateStore::Create;
  void Create(const engine::InstanceRecord& record,
              std::span<const engine::DispatchRecord> dispatches, CreateDone done) override;
  using StateStore::Apply;
  void Apply(engine::WriteBatch& batch, WriteDone done) override;

  Result<engine::InstanceRecord> LoadInstance(const InstanceId& id) override;
  // 256 instances per pair of queries, each pair in a read transaction of its own.
  Result<std::vector<Result<engine::InstanceRecord>>> LoadInstances(
      const std::vector<InstanceId>& ids) override;
  Result<std::vector<engine::InstanceSummary>> ListInstances(
      const engine::InstanceFilter& filter) override;

  Result<std::vector<InstanceId>> ClaimDue(const std::string& owner, TimePoint now,
                                               TimePoint lease_until, std::size_t limit) override;
  Result<engine::InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until) override;
  Result<engine::InstanceRecord> ClaimIdle(const InstanceId& id, const std::string& owner,
                                           TimePoint now, TimePoint lease_until) override;
  Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                  TimePoint renew_before, TimePoint lease_until) override;
  Result<engine::UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) override;

  // On PostgreSQL one statement (rows another claimer has locked are skipped); on SQLite one
  // write transaction. Removals are one transaction.
  Result<engine::ClaimedDispatches> ClaimDispatches(
      TimePoint now, TimePoint next_due, std::size_t limit) override;
  Status RemoveDispatches(std::span<const engine::DispatchKey> keys) override;
  Result<std::vector<engine::DispatchRecord>> ListDispatches(const InstanceId& instance) override;

  // Applies what is queued, then stops the committer thread; later creates and writes fail
  // with kFailedPrecondition (reads still work). Idempotent.
  void Stop() noexcept;

  GroupCommitStats stats() const;

  // The URL the store was opened with, without its password.
  const std::string& display_url() const;

  // The store's state (connections, committer); opaque to users, built by OpenSociStore.
  struct Impl;
  explicit SociStateStore(std::unique_ptr<Impl> impl);

 private:
  Result<engine::InstanceRecord> Claim(const InstanceId& id, const std::string& owner,
                                       TimePoint now, TimePoint lease_until, bool idle_only);
  std::unique_ptr<Impl> impl_;
};

// Opens the database at `url` and applies the schema migrations it lacks:
//   sqlite:PATH                  a SQLite file (created if missing; its directory must exist);
//                                sqlite:///abs/path.db is accepted too
//   postgresql://user:pw@host:port/db?param=value   (or postgres://): handed to libpq
// Errors: kInvalidArgument for a URL of another form, a missing directory or a file that is
// not a SQLite database; kUnavailable when the server cannot be reached (the message names the
// host and libpq's error); kFailedPrecondition when the database's schema is newer than this
// binary knows.
Result<std::unique_ptr<SociStateStore>> OpenSociStore(const std::string& url,
                                                      const SociStoreOptions& options = {});

// Applies the pending schema migrations of the database at `url` (`sagaflow db migrate`) and
// returns the versions applied now, in order (empty when the schema was up to date). Safe to
// run from several processes at once. Errors as OpenSociStore.
Result<std::vector<int>> MigrateDatabase(const std::string& url,
                                         const SociStoreOptions& options = {});

// The latest schema version this binary knows.
int LatestSchemaVersion();

}  // namespace sagaflow::adapters
