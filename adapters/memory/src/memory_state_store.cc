#include "sagaflow/adapters/memory/memory_state_store.h"

#include <algorithm>
#include <atomic>

namespace sagaflow::adapters {

using engine::DefinitionRecord;
using engine::InstanceRecord;

MemoryStateStore::MemoryStateStore(MemoryStoreOptions options) : options_(options) {}

MemoryStateStore::Shard& MemoryStateStore::ShardFor(const InstanceId& id) {
  return shards_[InstanceIdLane(id) % kShards];
}
const MemoryStateStore::Shard& MemoryStateStore::ShardFor(const InstanceId& id) const {
  return shards_[InstanceIdLane(id) % kShards];
}

std::vector<MemoryStateStore::DroppedKey> MemoryStateStore::AfterWrite(Shard& shard,
                                                                       Entry& entry) {
  std::vector<DroppedKey> dropped;
  if (!entry.record.finished()) {
    entry.finished_seq = 0;  // running again (an operation): its old entry is stale
    return dropped;
  }
  if (entry.finished_seq != 0) return dropped;  // already counted
  entry.finished_seq = shard.next_seq++;
  if (!options_.max_finished) return dropped;  // keeping them all: no queue to keep
  if (*options_.max_finished == 0) {
    if (!entry.record.business_key.empty()) {
      dropped.push_back({entry.record.flow_name, entry.record.business_key, entry.record.id});
    }
    shard.instances.erase(shard.instances.find(entry.record.id));  // `entry` is gone now
    return dropped;
  }
  // The bound is on the whole store; each shard drops its own oldest: the shards of the
  // threads that finish instances are the ones that fill up.
  shard.finished.emplace_back(entry.record.id, entry.finished_seq);
  finished_held_.fetch_add(1, std::memory_order_relaxed);
  while (finished_held_.load(std::memory_order_relaxed) > *options_.max_finished &&
         !shard.finished.empty()) {
    auto [id, seq] = std::move(shard.finished.front());
    shard.finished.pop_front();
    finished_held_.fetch_sub(1, std::memory_order_relaxed);
    auto it = shard.instances.find(id);
    if (it == shard.instances.end() || it->second.finished_seq != seq) continue;  // stale
    const InstanceRecord& r = it->second.record;
    if (!r.business_key.empty()) dropped.push_back({r.flow_name, r.business_key, r.id});
    shard.instances.erase(it);
  }
  return dropped;
}

void MemoryStateStore::FreeKeys(const std::vector<DroppedKey>& keys) {
  if (keys.empty()) return;
  std::lock_guard lock(meta_mu_);
  for (const DroppedKey& k : keys) {
    auto it = business_keys_.find({k.flow, k.key});
    if (it != business_keys_.end() && it->second == k.id) business_keys_.erase(it);
  }
}

Status MemoryStateStore::SaveDefinition(const DefinitionRecord& def) {
  std::lock_guard lock(meta_mu_);
  definitions_.try_emplace({def.name, def.hash}, def);
  return Status::Ok();
}

Result<DefinitionRecord> MemoryStateStore::LoadDefinition(const std::string& name,
                                                          const std::string& hash) {
  std::lock_guard lock(meta_mu_);
  auto it = definitions_.find({name, hash});
  if (it == definitions_.end()) {
    return NotFound("no definition of flow '" + name + "' with hash " + hash);
  }
  return it->second;
}

void MemoryStateStore::Create(const InstanceRecord& record,
                              std::span<const engine::DispatchRecord> dispatches,
                              CreateDone done) {
  done(CreateNow(record, dispatches));
}

Result<InstanceId> MemoryStateStore::CreateNow(const InstanceRecord& record,
                                               std::span<const engine::DispatchRecord> dispatches) {
  if (!record.business_key.empty()) {
    std::lock_guard lock(meta_mu_);
    auto [it, inserted] =
        business_keys_.try_emplace({record.flow_name, record.business_key}, record.id);
    if (!inserted) {
      InstanceId existing = it->second;
      auto found = LoadInstance(existing);
      if (!found.ok() && found.status().code() == StatusCode::kNotFound) {
        // Dropped by retention a moment ago, its key not freed yet: the key is free.
        it->second = record.id;
        return Insert(record, dispatches);
      }
      if (!found.ok()) return found.status();
      if (found->input != record.input) {
        return Conflict("business key '" + record.business_key + "' of flow '" + record.flow_name +
                        "' is already used by instance " + existing.str() +
                        " with a different input");
      }
      return existing;
    }
    // Insert the instance before the key lock is released, so a concurrent repeat finds it.
    return Insert(record, dispatches);
  }
  return Insert(record, dispatches);
}

void MemoryStateStore::AddDispatches(std::span<const engine::DispatchRecord> dispatches) {
  if (dispatches.empty()) return;
  std::lock_guard lock(outbox_mu_);
  for (const engine::DispatchRecord& d : dispatches) {
    const engine::DispatchKey key{d.delivery.instance, d.delivery.execution, d.delivery.attempt};
    dispatches_.try_emplace(key, d);
  }
}

Result<InstanceId> MemoryStateStore::Insert(const InstanceRecord& record,
                                            std::span<const engine::DispatchRecord> dispatches) {
  for (const engine::DispatchRecord& d : dispatches) {
    if (d.delivery.instance != record.id) {
      return InvalidArgument("instance " + record.id.str() + ": its create stores a dispatch of instance " +
                             d.delivery.instance.str());
    }
  }
  Shard& shard = ShardFor(record.id);
  std::vector<DroppedKey> dropped;
  {
    std::lock_guard lock(shard.mu);
    auto [it, inserted] = shard.instances.try_emplace(record.id, Entry{record, 0});
    if (!inserted) return AlreadyExists("instance " + record.id.str() + " already exists");
    AddDispatches(dispatches);
    dropped = AfterWrite(shard, it->second);  // a flow may finish in its first step
  }
  FreeKeys(dropped);
  return record.id;
}

void MemoryStateStore::Apply(engine::WriteBatch& batch, WriteDone done) {
  done(ApplyNow(batch));
}

Status MemoryStateStore::ApplyNow(engine::WriteBatch& batch) {
  if (!batch.children.empty()) return ApplyWithChildren(batch);
  Shard& shard = ShardFor(batch.instance);
  std::vector<DroppedKey> dropped;
  {
    std::lock_guard lock(shard.mu);
    auto found = shard.instances.find(batch.instance);
    if (found == shard.instances.end()) {
      return NotFound("instance " + batch.instance.str() + " not found");
    }
    const bool header = batch.header.has_value();
    SAGAFLOW_RETURN_IF_ERROR(ApplyTo(batch, found->second));
    AddDispatches(batch.dispatches);
    if (header) dropped = AfterWrite(shard, found->second);
  }
  FreeKeys(dropped);
  return Status::Ok();
}

InstanceRecord MemoryStateStore::Entry::Read() const {
  InstanceRecord out = record;
  if (overlay.is_object()) {
    Json& context = out.context.Mutable();
    for (auto it = overlay.begin(); it != overlay.end(); ++it) context[it.key()] = it.value();
  }
  return out;
}

Result<bool> MemoryStateStore::ChildIsNew(const InstanceRecord& child, const Shard& held) {
  auto stored = [&](const InstanceId& id) -> std::optional<InstanceRecord> {
    const Shard& shard = ShardFor(id);
    std::unique_lock lock(shard.mu, std::defer_lock);
    if (&shard != &held) lock.lock();
    auto it = shard.instances.find(id);
    if (it == shard.instances.end()) return std::nullopt;
    return it->second.record;
  };
  if (std::optional<InstanceRecord> same_id = stored(child.id)) {
    if (same_id->flow_name == child.flow_name && same_id->input == child.input) return false;
    return AlreadyExists("instance " + child.id.str() + " already exists");
  }
  if (!child.business_key.empty()) {
    auto it = business_keys_.find({child.flow_name, child.business_key});
    if (it != business_keys_.end() && it->second != child.id && stored(it->second)) {
      return Conflict("business key '" + child.business_key + "' of flow '" + child.flow_name +
                      "' is already used by instance " + it->second.str());
    }
  }
  return true;
}

Status MemoryStateStore::ApplyWithChildren(engine::WriteBatch& batch) {
  std::vector<DroppedKey> dropped;
  {
    std::lock_guard meta(meta_mu_);
    Shard& shard = ShardFor(batch.instance);
    std::lock_guard lock(shard.mu);
    auto found = shard.instances.find(batch.instance);
    if (found == shard.instances.end()) {
      return NotFound("instance " + batch.instance.str() + " not found");
    }
    SAGAFLOW_RETURN_IF_ERROR(Check(batch, found->second));
    std::vector<bool> insert;
    for (const InstanceRecord& child : batch.children) {
      if (child.id == batch.instance) {
        return InvalidArgument("instance " + batch.instance.str() +
                               ": the batch creates the instance itself as its child");
      }
      SAGAFLOW_ASSIGN_OR_RETURN(bool fresh, ChildIsNew(child, shard));
      insert.push_back(fresh);
    }
    const bool header = batch.header.has_value();
    std::vector<InstanceRecord> children = std::move(batch.children);
    SAGAFLOW_RETURN_IF_ERROR(ApplyTo(batch, found->second));  // checked: it applies
    AddDispatches(batch.dispatches);
    if (header) dropped = AfterWrite(shard, found->second);  // `found` may be gone now
    for (std::size_t i = 0; i < children.size(); ++i) {
      if (!insert[i]) continue;
      InstanceRecord& child = children[i];
      if (!child.business_key.empty()) {
        business_keys_[{child.flow_name, child.business_key}] = child.id;
      }
      Shard& child_shard = ShardFor(child.id);
      std::unique_lock child_lock(child_shard.mu, std::defer_lock);
      if (&child_shard != &shard) child_lock.lock();
      const InstanceId id = child.id;
      auto [it, inserted] = child_shard.instances.try_emplace(id, Entry{std::move(child), 0});
      if (inserted) {
        std::vector<DroppedKey> more = AfterWrite(child_shard, it->second);
        dropped.insert(dropped.end(), more.begin(), more.end());
      }
    }
  }
  FreeKeys(dropped);
  return Status::Ok();
}

Status MemoryStateStore::Check(const engine::WriteBatch& batch, const Entry& entry) {
  const InstanceRecord& dst = entry.record;
  if (dst.owner != batch.owner) {
    return FailedPrecondition("lease lost: instance " + batch.instance.str() +
                              " is now owned by '" + dst.owner + "'");
  }
  for (const engine::StateExecution& e : batch.new_executions) {
    if (e.id < 0 || e.state.empty()) {  // every state has a name
      return InvalidArgument("instance " + batch.instance.str() + ": the batch writes execution " +
                             std::to_string(e.id) + ", which has no state");
    }
  }
  for (const engine::DispatchRecord& d : batch.dispatches) {
    if (d.delivery.instance != batch.instance) {
      return InvalidArgument("instance " + batch.instance.str() +
                             ": the batch stores a dispatch of instance " +
                             d.delivery.instance.str());
    }
  }
  for (const engine::ExecutionProgress& p : batch.progress) {
    if (p.id < 0 || static_cast<std::size_t>(p.id) >= dst.executions.size() ||
        dst.executions[static_cast<std::size_t>(p.id)].state.empty()) {
      return InvalidArgument("instance " + batch.instance.str() +
                             ": the batch changes execution " + std::to_string(p.id) +
                             ", which is not stored");
    }
  }
  return Status::Ok();
}

Status MemoryStateStore::ApplyTo(engine::WriteBatch& batch, Entry& entry) {
  // Refusals first: nothing of a refused batch is applied.
  SAGAFLOW_RETURN_IF_ERROR(Check(batch, entry));
  InstanceRecord& dst = entry.record;
  if (batch.header) {
    engine::InstanceHeader& h = *batch.header;
    dst.lease_until = h.lease_until;
    dst.status = h.status;
    dst.error = std::move(h.error);
    dst.error_code = std::move(h.error_code);
    dst.error_message = std::move(h.error_message);
    dst.ended_at = h.ended_at;
    if (h.release_owner) dst.owner.clear();
  }
  dst.compensation_status = batch.compensation_status;
  dst.updated_at = batch.updated_at;
  // Swapped: the batch takes the stored cursor's buffers back to its writer, who reuses them.
  std::swap(dst.cursor, batch.cursor);
  if (batch.context) {
    const Json& context = batch.context->get();
    if (batch.changed_keys != nullptr && context.is_object()) {
      for (const auto& [key, value] : *batch.changed_keys) {
        auto it = context.find(key);
        if (it != context.end()) entry.overlay[key] = *it;
      }
    } else {
      dst.context = std::move(*batch.context);  // shared, not copied
      entry.overlay = nullptr;
    }
  }
  for (engine::StateExecution& e : batch.new_executions) {
    const auto i = static_cast<std::size_t>(e.id);
    if (i == dst.executions.size()) {
      // Most instances run a handful of executions: room for them at once, not 1, 2, 4.
      if (dst.executions.capacity() == 0) dst.executions.reserve(8);
      dst.executions.push_back(std::move(e));
    } else if (i > dst.executions.size() || dst.executions[i].state.empty()) {
      // Ahead of an execution not written yet (a batch applied out of order): the gap is held
      // by empty executions, filled by the first batch that writes them.
      if (i >= dst.executions.size()) dst.executions.resize(i + 1);
      dst.executions[i] = std::move(e);
    } else {
      // Stored already: its identity and input never change once written.
      engine::ExecutionProgress::Of(e).ApplyTo(dst.executions[i]);
    }
  }
  for (engine::ExecutionProgress& p : batch.progress) {
    const auto i = static_cast<std::size_t>(p.id);
    std::move(p).ApplyTo(dst.executions[i]);
  }
  return Status::Ok();
}

Result<InstanceRecord> MemoryStateStore::LoadInstance(const InstanceId& id) {
  const Shard& shard = ShardFor(id);
  std::lock_guard lock(shard.mu);
  auto it = shard.instances.find(id);
  if (it == shard.instances.end()) return NotFound("no instance " + id.str());
  return it->second.Read();
}

Result<std::vector<engine::InstanceSummary>> MemoryStateStore::ListInstances(
    const engine::InstanceFilter& filter) {
  std::vector<engine::InstanceSummary> out;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (const auto& [id, entry] : shard.instances) {
      const InstanceRecord& r = entry.record;
      if (filter.status && r.status != *filter.status) continue;
      if (!filter.flow_name.empty() && r.flow_name != filter.flow_name) continue;
      out.push_back(engine::InstanceSummary{r.id, r.flow_name, r.flow_version, r.business_key,
                                            r.status, r.compensation_status, r.started_at,
                                            r.ended_at, r.owner, r.lease_until,
                                            r.finished()});
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.started_at != b.started_at ? a.started_at > b.started_at : a.id > b.id;
  });
  if (out.size() > filter.limit) out.resize(filter.limit);
  return out;
}

Result<std::vector<InstanceId>> MemoryStateStore::ClaimDue(const std::string& owner,
                                                                TimePoint now,
                                                                TimePoint lease_until,
                                                                std::size_t limit) {
  std::vector<std::pair<TimePoint, InstanceId>> expired;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (const auto& [id, entry] : shard.instances) {
      const InstanceRecord& r = entry.record;
      if (!r.finished() && r.lease_until <= now) expired.emplace_back(r.lease_until, id);
    }
  }
  std::sort(expired.begin(), expired.end());
  std::vector<InstanceId> claimed;
  for (const auto& [lease, id] : expired) {
    if (claimed.size() == limit) break;
    Shard& shard = ShardFor(id);
    std::lock_guard lock(shard.mu);
    InstanceRecord& r = shard.instances.at(id).record;
    // Another claimer may have taken it since it was listed.
    if (r.finished() || r.lease_until > now) continue;
    r.owner = owner;
    r.lease_until = lease_until;
    claimed.push_back(id);
  }
  return claimed;
}

Result<InstanceRecord> MemoryStateStore::ClaimInstance(const InstanceId& id,
                                                       const std::string& owner, TimePoint now,
                                                       TimePoint lease_until) {
  return Claim(id, owner, now, lease_until, /*idle_only=*/false);
}

Result<InstanceRecord> MemoryStateStore::ClaimIdle(const InstanceId& id, const std::string& owner,
                                                   TimePoint now, TimePoint lease_until) {
  return Claim(id, owner, now, lease_until, /*idle_only=*/true);
}

Result<InstanceRecord> MemoryStateStore::Claim(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until,
                                               bool idle_only) {
  Shard& shard = ShardFor(id);
  std::lock_guard lock(shard.mu);
  auto it = shard.instances.find(id);
  if (it == shard.instances.end()) return NotFound("no instance " + id.str());
  InstanceRecord& r = it->second.record;
  const bool may_hold = !idle_only && r.owner == owner;
  if (!may_hold && !r.owner.empty() && r.lease_until > now) {
    return FailedPrecondition("instance " + id.str() + " is leased by '" + r.owner +
                              "' until " + FormatTime(r.lease_until));
  }
  r.owner = owner;
  r.lease_until = lease_until;
  return it->second.Read();
}

Result<std::size_t> MemoryStateStore::RenewLeases(const std::string& owner, TimePoint now,
                                                  TimePoint renew_before,
                                                  TimePoint lease_until) {
  std::size_t n = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (auto& [id, entry] : shard.instances) {
      InstanceRecord& r = entry.record;
      if (!r.finished() && r.owner == owner && r.lease_until > now &&
          r.lease_until <= renew_before) {
        r.lease_until = lease_until;
        ++n;
      }
    }
  }
  return n;
}

Result<engine::UnfinishedSummary> MemoryStateStore::Unfinished(const std::string& owner,
                                                               TimePoint now) {
  engine::UnfinishedSummary out;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    for (const auto& [id, entry] : shard.instances) {
      const InstanceRecord& r = entry.record;
      if (r.finished()) continue;
      ++out.unfinished;
      if (r.owner.empty() && r.lease_until > now) {
        ++out.parked;
        if (r.lease_until != TimePoint::max() && (!out.next_wake || r.lease_until < *out.next_wake)) {
          out.next_wake = r.lease_until;
        }
      } else if (r.owner != owner && r.lease_until > now) {
        ++out.leased_elsewhere;
        if (!out.next_expiry || r.lease_until < *out.next_expiry) out.next_expiry = r.lease_until;
      }
    }
  }
  return out;
}

Result<engine::ClaimedDispatches> MemoryStateStore::ClaimDispatches(
    TimePoint now, TimePoint next_due, std::size_t limit) {
  std::lock_guard lock(outbox_mu_);
  std::vector<engine::DispatchRecord*> due;
  for (auto& [key, row] : dispatches_) {
    if (row.due_at <= now) due.push_back(&row);
  }
  std::stable_sort(due.begin(), due.end(),
                   [](const auto* a, const auto* b) { return a->due_at < b->due_at; });
  if (due.size() > limit) due.resize(limit);
  engine::ClaimedDispatches out;
  out.rows.reserve(due.size());
  for (engine::DispatchRecord* row : due) {
    row->due_at = next_due;
    out.rows.push_back(*row);
  }
  return out;
}

Status MemoryStateStore::RemoveDispatches(std::span<const engine::DispatchKey> keys) {
  std::lock_guard lock(outbox_mu_);
  for (const engine::DispatchKey& key : keys) dispatches_.erase(key);
  return Status::Ok();
}

Result<std::vector<engine::DispatchRecord>> MemoryStateStore::ListDispatches(
    const InstanceId& instance) {
  std::lock_guard lock(outbox_mu_);
  std::vector<engine::DispatchRecord> out;
  for (auto it = dispatches_.lower_bound(engine::DispatchKey{instance, -1, 0});
       it != dispatches_.end() && it->first.instance == instance; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::size_t MemoryStateStore::instance_count() const {
  std::size_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    n += shard.instances.size();
  }
  return n;
}

}  // namespace sagaflow::adapters
