#pragma once

#include <atomic>
#include <string>
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

  // The next `n` WriteInstance / CreateInstance / LoadInstance calls fail with kUnavailable.
  void FailNextWrites(int n) { fail_writes_.store(n); }
  void FailNextCreates(int n) { fail_creates_.store(n); }
  void FailNextLoads(int n) { fail_loads_.store(n); }

  // WriteInstance calls seen (refused ones included), and how many were refused.
  int write_calls() const { return write_calls_.load(); }
  int failed_writes() const { return failed_writes_.load(); }

  engine::StateStore& base() { return base_; }

  Status SaveDefinition(const engine::DefinitionRecord& def) override {
    return base_.SaveDefinition(def);
  }
  Result<engine::DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) override {
    return base_.LoadDefinition(name, hash);
  }
  Result<InstanceId> CreateInstance(const engine::InstanceRecord& record) override {
    if (TakeFault(fail_creates_)) return Unavailable("injected: CreateInstance refused");
    return base_.CreateInstance(record);
  }
  Status WriteInstance(const engine::InstanceWrite& write) override {
    write_calls_.fetch_add(1);
    if (TakeFault(fail_writes_)) {
      failed_writes_.fetch_add(1);
      return Unavailable("injected: WriteInstance refused");
    }
    return base_.WriteInstance(write);
  }
  Result<engine::InstanceRecord> LoadInstance(const InstanceId& id) override {
    if (TakeFault(fail_loads_)) return Unavailable("injected: LoadInstance refused");
    return base_.LoadInstance(id);
  }
  Result<std::vector<engine::InstanceSummary>> ListInstances(
      const engine::InstanceFilter& filter) override {
    return base_.ListInstances(filter);
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

  engine::StateStore& base_;
  std::atomic<int> fail_writes_{0};
  std::atomic<int> fail_creates_{0};
  std::atomic<int> fail_loads_{0};
  std::atomic<int> write_calls_{0};
  std::atomic<int> failed_writes_{0};
};

}  // namespace sagaflow::testing
