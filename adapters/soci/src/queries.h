#pragma once

// The statements that read and write instances. Internal to adapters/soci. Every value is a
// bound parameter; no value is ever part of the SQL text.

#include <soci/soci.h>

#include <string>
#include <vector>

#include "database.h"
#include "rows.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"

namespace sagaflow::adapters::sql {

// Reads instance `id` and its executions (in seq order) on `conn`, inside the caller's
// transaction. kNotFound when there is none; kInternal naming the column when a stored value is
// corrupt. Database errors are thrown (soci::soci_error).
Result<engine::InstanceRecord> ReadInstance(Connection& conn, const InstanceId& id);

// One create or write of a batch, and what became of it.
struct WriteItem {
  const engine::InstanceRecord* record = nullptr;
  bool create = false;
  const engine::ExecutionIds* executions = nullptr;  // a write's
  bool context_changed = false;
  bool header = true;  // InstanceWrite::header
  int stored_executions = -1;  // InstanceWrite::stored_executions
  // The item's columns when they were encoded ahead (EncodeItem); null: encoded when applied.
  std::shared_ptr<EncodedItem> encoded;
};

// Encodes what applying `item` writes. Null when the item will be refused anyway (CheckCreate,
// CheckWrite): the writer refuses it.
std::shared_ptr<EncodedItem> EncodeItem(const WriteItem& item);
struct ItemOutcome {
  Status status;
  InstanceId id;  // a create's
};

// Refusals decided from the record alone, before anything is written: a created record's
// executions must be numbered by position; a write may list only executions the record has.
Status CheckCreate(const engine::InstanceRecord& r);
Status CheckWrite(const engine::InstanceRecord& r, const engine::ExecutionIds& executions);

// Why an insert of `r` inserted nothing (inside the writer's transaction): the existing
// instance's id for a repeated business key or a repeated create of the same instance,
// kConflict or kAlreadyExists otherwise. Throws database errors.
Result<InstanceId> ResolveCreateConflict(Connection& conn, const engine::InstanceRecord& r);

// Why a header update of `r` matched no row: kNotFound, or lease lost (kFailedPrecondition
// naming the owner). Throws database errors.
Status WhyNotWritten(Connection& conn, const engine::InstanceRecord& r);

// Writes instances on one connection with statements prepared once and reused (the committer's
// writer: on PostgreSQL they are server-side prepared statements). Every method runs inside the
// caller's write transaction. A refusal (kNotFound, kConflict, kAlreadyExists, lease lost,
// kInvalidArgument) is returned before anything of that item is written; database errors are
// thrown. Not thread-safe; must not outlive the connection.
class InstanceWriter {
 public:
  explicit InstanceWriter(Connection& conn);  // prepares the statements; throws

  // Applies `items` in order: out[i] is item i's outcome (OK or its refusal).
  void Apply(const std::vector<WriteItem>& items, std::vector<ItemOutcome>& out);

  // The instance with all its executions. Business key and duplicate id rules of
  // SociStateStore::CreateInstance.
  Result<InstanceId> Create(const engine::InstanceRecord& r,
                            EncodedItem* encoded = nullptr);

  // The cursor, updated_at and compensation status; with `header` also status, error, error
  // code and message, started_at, ended_at and lease_until; the listed executions (identity
  // and input by their first write, progress always); the context when `context_changed`.
  // Refused with kNotFound or lease lost (kFailedPrecondition) when the stored owner is not
  // r.owner.
  // Executions with a seq below `stored_executions` are stored already: only their progress is
  // updated (an execution found missing after all is inserted whole).
  Status Write(const engine::InstanceRecord& r, const engine::ExecutionIds& executions,
               bool context_changed, bool header, EncodedItem* encoded = nullptr,
               int stored_executions = -1);

 private:
  void UpsertExecution(const engine::StateExecution& e, int seq);
  // Executes the bound progress update; false when no row matched.
  bool UpdateExecutionProgress();

  Connection& conn_;
  // Bound to the statements below by address.
  InstanceColumns instance_;
  ExecutionColumns execution_;
  std::string execution_instance_id_;
  soci::statement insert_instance_;
  std::vector<soci::statement> updates_;  // [2 * header + context_changed]
  soci::statement upsert_execution_;
  soci::statement update_execution_;  // progress only
};

}  // namespace sagaflow::adapters::sql
