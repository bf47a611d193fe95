#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::testing {

// A StateStore that forwards everything to a real one and, when told to, refuses calls with
// kUnavailable the way a database that went away does (nothing of a refused call is applied).
// As leveldb's EnvWrapper: the real store stays the source of truth, so a test can look at what
// was durable at any moment. Thread-safe.
class FaultInjectingStateStore final : public engine::StateStore {
 public:
  explicit FaultInjectingStateStore(engine::StateStore& base) : base_(base) {}
  ~FaultInjectingStateStore() override {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (committer_.joinable()) committer_.join();
  }

  // Makes the store complete later, the way a group-committing store does: Create and Apply
  // are queued and completed in batches on a thread of the store. Call before use.
  void SetAsynchronous() {
    asynchronous_ = true;
    committer_ = std::thread([this] { Commit(); });
  }
  // Batches completed by the asynchronous thread, and the calls they held.
  int batches() const { return batches_.load(); }
  int batched_calls() const { return batched_calls_.load(); }

  // The next `n` Apply / Create / LoadInstance calls fail with kUnavailable.
  void FailNextWrites(int n) { fail_writes_.store(n); }
  void FailNextCreates(int n) { fail_creates_.store(n); }
  void FailNextLoads(int n) { fail_loads_.store(n); }
  // The next `n` ClaimInstance calls fail with kUnavailable.
  void FailNextClaims(int n) { fail_claims_.store(n); }
  // The next `n` ClaimDispatches / RemoveDispatches calls fail with kUnavailable.
  void FailNextDispatchClaims(int n) { fail_dispatch_claims_.store(n); }
  void FailNextDispatchRemovals(int n) { fail_dispatch_removals_.store(n); }

  // Apply calls seen (refused ones included), and how many were refused.
  int write_calls() const { return write_calls_.load(); }
  int failed_writes() const { return failed_writes_.load(); }
  // ClaimDue and ClaimIdle calls seen.
  int claim_due_calls() const { return claim_due_calls_.load(); }
  int claim_idle_calls() const { return claim_idle_calls_.load(); }

  engine::StateStore& base() { return base_; }

  // Calls `hook` after each write the base store accepted (to look at what is durable at that
  // moment). Set before use.
  void AfterWrite(std::function<void(const engine::WriteBatch&)> hook) {
    after_write_ = std::move(hook);
  }

  Status SaveDefinition(const engine::DefinitionRecord& def) override {
    return base_.SaveDefinition(def);
  }
  Result<engine::DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) override {
    return base_.LoadDefinition(name, hash);
  }
  using engine::StateStore::Create;
  void Create(const engine::InstanceRecord& record,
              std::span<const engine::DispatchRecord> dispatches, CreateDone done) override {
    if (!asynchronous_) return CreateNow(record, dispatches, std::move(done));
    // Read during the call only: the queued call keeps a copy.
    Queue([this, record, rows = std::vector<engine::DispatchRecord>(dispatches.begin(),
                                                                     dispatches.end()),
           done = std::move(done)]() mutable { CreateNow(record, rows, std::move(done)); });
  }
  using StateStore::Apply;
  void Apply(engine::WriteBatch& batch, WriteDone done) override {
    if (!asynchronous_) return ApplyNow(std::move(batch), std::move(done));
    Queue([this, batch = std::move(batch), done = std::move(done)]() mutable {
      ApplyNow(std::move(batch), std::move(done));
    });
  }
  Result<engine::InstanceRecord> LoadInstance(const InstanceId& id) override {
    if (TakeFault(fail_loads_)) return Unavailable("injected: LoadInstance refused");
    return base_.LoadInstance(id);
  }
  // Injected load faults fail single ids; the others are loaded through the base store's own
  // LoadInstances.
  Result<std::vector<Result<engine::InstanceRecord>>> LoadInstances(
      const std::vector<InstanceId>& ids) override {
    std::vector<bool> refused;
    std::vector<InstanceId> rest;
    for (const InstanceId& id : ids) {
      refused.push_back(TakeFault(fail_loads_));
      if (!refused.back()) rest.push_back(id);
    }
    auto loaded = base_.LoadInstances(rest);
    if (!loaded.ok()) return loaded.status();
    std::vector<Result<engine::InstanceRecord>> out;
    std::size_t next = 0;
    for (bool r : refused) {
      if (r) {
        out.emplace_back(Unavailable("injected: LoadInstance refused"));
      } else {
        out.push_back(std::move((*loaded)[next++]));
      }
    }
    return out;
  }
  Result<std::vector<engine::InstanceSummary>> ListInstances(
      const engine::InstanceFilter& filter) override {
    return base_.ListInstances(filter);
  }
  Result<std::vector<InstanceId>> ClaimDue(const std::string& owner, TimePoint now,
                                               TimePoint lease_until, std::size_t limit) override {
    claim_due_calls_.fetch_add(1);
    return base_.ClaimDue(owner, now, lease_until, limit);
  }
  Result<engine::InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until) override {
    if (TakeFault(fail_claims_)) return Unavailable("injected: ClaimInstance refused");
    return base_.ClaimInstance(id, owner, now, lease_until);
  }
  Result<engine::InstanceRecord> ClaimIdle(const InstanceId& id, const std::string& owner,
                                           TimePoint now, TimePoint lease_until) override {
    claim_idle_calls_.fetch_add(1);
    return base_.ClaimIdle(id, owner, now, lease_until);
  }
  Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                  TimePoint renew_before, TimePoint lease_until) override {
    return base_.RenewLeases(owner, now, renew_before, lease_until);
  }
  Result<engine::UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) override {
    return base_.Unfinished(owner, now);
  }
  Result<engine::ClaimedDispatches> ClaimDispatches(
      TimePoint now, TimePoint next_due, std::size_t limit) override {
    if (TakeFault(fail_dispatch_claims_)) return Unavailable("injected: ClaimDispatches refused");
    return base_.ClaimDispatches(now, next_due, limit);
  }
  Status RemoveDispatches(std::span<const engine::DispatchKey> keys) override {
    if (TakeFault(fail_dispatch_removals_)) {
      return Unavailable("injected: RemoveDispatches refused");
    }
    return base_.RemoveDispatches(keys);
  }
  Result<std::vector<engine::DispatchRecord>> ListDispatches(const InstanceId& instance) override {
    return base_.ListDispatches(instance);
  }

 private:
  // Consumes one injected fault if any is left.
  static bool TakeFault(std::atomic<int>& left) {
    int n = left.load();
    while (n > 0) {
      if (left.compare_exchange_weak(n, n - 1)) return true;
    }
    return false;
  }

  void CreateNow(const engine::InstanceRecord& record,
                 std::span<const engine::DispatchRecord> dispatches, CreateDone done) {
    if (TakeFault(fail_creates_)) return done(Unavailable("injected: Create refused"));
    base_.Create(record, dispatches, std::move(done));
  }
  void ApplyNow(engine::WriteBatch batch, WriteDone done) {
    write_calls_.fetch_add(1);
    if (TakeFault(fail_writes_)) {
      failed_writes_.fetch_add(1);
      return done(Unavailable("injected: Apply refused"));
    }
    if (!after_write_) return base_.Apply(std::move(batch), std::move(done));
    // The hook sees the batch as the base store accepted it.
    auto seen = std::make_shared<engine::WriteBatch>(batch);
    base_.Apply(std::move(batch), [this, seen, done = std::move(done)](Status s) {
      if (s.ok()) after_write_(*seen);
      done(std::move(s));
    });
  }

  void Queue(std::function<void()> call) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(call));
    }
    cv_.notify_one();
  }
  // Completes queued calls in batches until destruction (draining what is queued).
  void Commit() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      std::deque<std::function<void()>> batch;
      batch.swap(queue_);
      lock.unlock();
      batches_.fetch_add(1);
      batched_calls_.fetch_add(static_cast<int>(batch.size()));
      for (auto& call : batch) call();
      lock.lock();
    }
  }

  engine::StateStore& base_;
  std::function<void(const engine::WriteBatch&)> after_write_;
  bool asynchronous_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread committer_;
  std::atomic<int> batches_{0};
  std::atomic<int> batched_calls_{0};
  std::atomic<int> fail_writes_{0};
  std::atomic<int> fail_creates_{0};
  std::atomic<int> fail_loads_{0};
  std::atomic<int> fail_claims_{0};
  std::atomic<int> fail_dispatch_claims_{0};
  std::atomic<int> fail_dispatch_removals_{0};
  std::atomic<int> write_calls_{0};
  std::atomic<int> claim_due_calls_{0};
  std::atomic<int> claim_idle_calls_{0};
  std::atomic<int> failed_writes_{0};
};

}  // namespace sagaflow::testing
