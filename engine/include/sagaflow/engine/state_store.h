#pragma once

#include <optional>
#include <string>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"

namespace sagaflow::engine {

// A flow definition as stored: instances refer to it by (name, hash).
struct DefinitionRecord {
  std::string name;
  std::string version;
  std::string hash;
  std::string content;
  TimePoint created_at{};
};

// What changed in an instance since its last write.
//
// The header fields and cursor are always written. An execution's identity (state, kind,
// compensates, retried_for, epoch, idempotency key, for_update) and its input are fixed by the
// first write that lists it; later writes change only its progress (attempts, status,
// compensation status, superseded, retry counts and time, output, error, end time).
//
// The context is written when a run or an operation ends and when an operation changes it;
// in between, it is the stored context plus the Output of each execution after
// cursor.run_first_execution, which the stored outputs make derivable. This keeps a step's
// write independent of the size of the context.
struct InstanceWrite {
  const InstanceRecord* record = nullptr;
  ExecutionIds executions;  // ids of executions created or changed
  bool context_changed = false;
};

struct InstanceFilter {
  std::optional<RunStatus> status;
  std::string flow_name;  // "" for all
  std::size_t limit = 100;
};

struct InstanceSummary {
  InstanceId id;
  std::string flow_name;
  std::string flow_version;
  std::string business_key;
  RunStatus status = RunStatus::kRunning;
  std::optional<RunStatus> compensation_status;
  TimePoint started_at{};
  std::optional<TimePoint> ended_at;
};

// Where instances live. Every method is durable when it returns OK (as durable as the adapter
// promises), thread-safe, and turns the backend's exceptions into Statuses (kUnavailable when
// the backend refused or went away: the caller retries; nothing half-written is visible).
class StateStore {
 public:
  virtual ~StateStore() = default;

  // Stores a definition; storing the same (name, hash) again is OK and changes nothing.
  virtual Status SaveDefinition(const DefinitionRecord& def) = 0;
  virtual Result<DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) = 0;

  // Creates an instance. When `record.business_key` is not empty and an instance of the same
  // flow already uses it: returns that instance's id if its input equals record.input (the
  // start is a repeat), kConflict otherwise. Returns record.id when it created the instance.
  virtual Result<InstanceId> CreateInstance(const InstanceRecord& record) = 0;

  // Applies `write` (header fields, the listed executions, the context when flagged).
  virtual Status WriteInstance(const InstanceWrite& write) = 0;

  virtual Result<InstanceRecord> LoadInstance(const InstanceId& id) = 0;

  // Newest first.
  virtual Result<std::vector<InstanceSummary>> ListInstances(const InstanceFilter& filter) = 0;
};

}  // namespace sagaflow::engine
