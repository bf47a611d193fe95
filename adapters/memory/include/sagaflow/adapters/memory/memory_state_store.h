#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters {

struct MemoryStoreOptions {
  // How many finished instances to keep, the most recently finished ones; nullopt keeps them
  // all. Unfinished instances are always kept. An engine embedded in a long-running service
  // would otherwise grow without end; the durable stores are where history is kept.
  std::optional<std::size_t> max_finished = kDefaultMaxFinished;
  static constexpr std::size_t kDefaultMaxFinished = 10'000;
};

// A StateStore in process memory: the embedded store of `simulate` and `bench`, and the
// reference the durable adapters are tested against. Nothing survives the process. Thread-safe;
// instances are spread over shards so that writers of different instances rarely contend.
//
// Retention: once more than options.max_finished instances are finished, the oldest finished
// ones are dropped: each shard drops its own oldest, so the order is the finishing order within
// a shard (instances are sharded by the thread that created them, see InstanceIdLane). A
// dropped instance is gone for every method (LoadInstance says kNotFound) and its business key
// is free again.
class MemoryStateStore final : public engine::StateStore {
 public:
  explicit MemoryStateStore(MemoryStoreOptions options = {});

  Status SaveDefinition(const engine::DefinitionRecord& def) override;
  Result<engine::DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) override;
  // Both complete before they return, on the calling thread.
  using engine::StateStore::Create;
  void Create(const engine::InstanceRecord& record,
              std::span<const engine::DispatchRecord> dispatches, CreateDone done) override;
  using StateStore::Apply;
  void Apply(engine::WriteBatch& batch, WriteDone done) override;
  Result<engine::InstanceRecord> LoadInstance(const InstanceId& id) override;
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
  Result<engine::ClaimedDispatches> ClaimDispatches(
      TimePoint now, TimePoint next_due, std::size_t limit) override;
  Status RemoveDispatches(std::span<const engine::DispatchKey> keys) override;
  Result<std::vector<engine::DispatchRecord>> ListDispatches(const InstanceId& instance) override;

  // Instances held, finished or not.
  std::size_t instance_count() const;

 private:
  static constexpr std::size_t kShards = 16;
  struct Entry {
    engine::InstanceRecord record;
    std::uint64_t finished_seq = 0;  // its entry in Shard::finished, 0 while unfinished
    // Context keys written since record.context was (an object, or null for none): a step's
    // Output is kept as its keys, so that the record's context stays shared with the engine's
    // copy rather than copied whole at every step.
    Json overlay;
    // The record as a reader sees it: the overlay applied to its context.
    engine::InstanceRecord Read() const;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<InstanceId, Entry> instances;
    // Finished instances, oldest first, with the finished_seq they had then (an instance an
    // operation ran again is finished anew, with a new number; its old entry is stale).
    std::deque<std::pair<InstanceId, std::uint64_t>> finished;
    std::uint64_t next_seq = 1;
  };
  Shard& ShardFor(const InstanceId& id);
  const Shard& ShardFor(const InstanceId& id) const;
  Result<engine::InstanceRecord> Claim(const InstanceId& id, const std::string& owner,
                                       TimePoint now, TimePoint lease_until, bool idle_only);
  // Adds `record` to its shard; kAlreadyExists when the id is taken.
  Result<InstanceId> Insert(const engine::InstanceRecord& record,
                           std::span<const engine::DispatchRecord> dispatches);
  // The business keys of dropped instances, to free once the shard's lock is released.
  struct DroppedKey {
    std::string flow;
    std::string key;
    InstanceId id;
  };
  // Records that `entry` (in `shard`, locked) may have finished, and drops the oldest finished
  // instances beyond the shard's share of max_finished (`entry` itself, when none is kept: do
  // not use it afterwards).
  std::vector<DroppedKey> AfterWrite(Shard& shard, Entry& entry);
  void FreeKeys(const std::vector<DroppedKey>& keys);
  Result<InstanceId> CreateNow(const engine::InstanceRecord& record,
                               std::span<const engine::DispatchRecord> dispatches);
  // Stores outbox rows (a row stored already is kept); called with the instance's shard locked.
  void AddDispatches(std::span<const engine::DispatchRecord> dispatches);
  Status ApplyNow(engine::WriteBatch& batch);
  // Applies `batch` to the stored entry (its shard locked), taking what it holds:
  // kFailedPrecondition when the lease is lost, kInvalidArgument for executions it cannot
  // write; nothing of a refused batch is applied.
  static Status ApplyTo(engine::WriteBatch& batch, Entry& entry);
  // Why `batch` would be refused (ApplyTo's refusals), without applying anything.
  static Status Check(const engine::WriteBatch& batch, const Entry& entry);
  // A batch that creates children: with meta_mu_ held throughout (so that no other call holds
  // two shards at once), the children are checked, then the batch and the children applied.
  Status ApplyWithChildren(engine::WriteBatch& batch);
  // Whether `child` is to be inserted (false: stored already, the same), or why it cannot be;
  // meta_mu_ and `held` (the parent's shard) locked.
  Result<bool> ChildIsNew(const engine::InstanceRecord& child, const Shard& held);

  const MemoryStoreOptions options_;
  // Entries in the shards' `finished` queues (stale ones included): at most max_finished once
  // a write has dropped what it could.
  std::atomic<std::size_t> finished_held_{0};

  std::array<Shard, kShards> shards_;

  mutable std::mutex meta_mu_;
  std::map<std::pair<std::string, std::string>, engine::DefinitionRecord> definitions_;
  std::map<std::pair<std::string, std::string>, InstanceId> business_keys_;  // (flow, key)

  // The outbox. Locked after a shard's lock, never before.
  mutable std::mutex outbox_mu_;
  std::map<engine::DispatchKey, engine::DispatchRecord> dispatches_;
};

}  // namespace sagaflow::adapters
