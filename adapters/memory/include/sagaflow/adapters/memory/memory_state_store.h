#pragma once

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters {

// A StateStore in process memory: the embedded store of `simulate` and `bench`, and the
// reference the durable adapters are tested against. Nothing survives the process. Thread-safe;
// instances are spread over shards so that writers of different instances rarely contend.
class MemoryStateStore final : public engine::StateStore {
 public:
  MemoryStateStore();

  Status SaveDefinition(const engine::DefinitionRecord& def) override;
  Result<engine::DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) override;
  Result<InstanceId> CreateInstance(const engine::InstanceRecord& record) override;
  Status WriteInstance(const engine::InstanceWrite& write) override;
  Result<engine::InstanceRecord> LoadInstance(const InstanceId& id) override;
  Result<std::vector<engine::InstanceSummary>> ListInstances(
      const engine::InstanceFilter& filter) override;
  Result<std::vector<InstanceId>> ClaimExpired(const std::string& owner, TimePoint now,
                                               TimePoint lease_until, std::size_t limit) override;
  Result<engine::InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until) override;
  Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                  TimePoint lease_until) override;
  Result<engine::UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) override;

  std::size_t instance_count() const;

 private:
  static constexpr std::size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<InstanceId, engine::InstanceRecord> instances;
  };
  Shard& ShardFor(const InstanceId& id);
  const Shard& ShardFor(const InstanceId& id) const;
  // Adds `record` to its shard; kAlreadyExists when the id is taken.
  Result<InstanceId> Insert(const engine::InstanceRecord& record);
  // The stored record of `id` and its shard, or nulls. Remembers the last record each thread
  // wrote, since an instance's steps are written one after another by the same thread.
  std::pair<Shard*, engine::InstanceRecord*> Locate(const InstanceId& id);

  // Distinguishes this store from any other that lived at the same address (for the cache).
  const std::uint64_t generation_;

  std::array<Shard, kShards> shards_;

  mutable std::mutex meta_mu_;
  std::map<std::pair<std::string, std::string>, engine::DefinitionRecord> definitions_;
  std::map<std::pair<std::string, std::string>, InstanceId> business_keys_;  // (flow, key)
};

}  // namespace sagaflow::adapters
