#pragma once

// The statements that read and write instances. Internal to adapters/soci. Every value is a
// bound parameter; no value is ever part of the SQL text.

#include <soci/soci.h>

#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "database.h"
#include "rows.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"

namespace sqlite_api {
struct sqlite3;
struct sqlite3_stmt;
}  // namespace sqlite_api

namespace sagaflow::adapters::sql {

using sqlite_api::sqlite3;
using sqlite_api::sqlite3_stmt;

// Reads instance `id` and its executions (in seq order) on `conn`, inside the caller's
// transaction. kNotFound when there is none; kInternal naming the column when a stored value is
// corrupt. Database errors are thrown (soci::soci_error).
Result<engine::InstanceRecord> ReadInstance(Connection& conn, const InstanceId& id);

// Reads the instances `ids` and their executions with two queries, inside the caller's
// transaction: out[i] is ReadInstance's answer for ids[i] (the record, kNotFound, or kInternal
// for a corrupt column, which fails that record alone). Database errors are thrown.
std::vector<Result<engine::InstanceRecord>> ReadInstances(Connection& conn,
                                                         std::span<const InstanceId> ids);

// One create or write of a batch, and what became of it.
struct WriteItem {
  const engine::InstanceRecord* record = nullptr;
  bool create = false;
  const engine::ExecutionIds* executions = nullptr;  // a write's
  bool context_changed = false;
  bool header = true;  // InstanceWrite::header
  int stored_executions = -1;  // InstanceWrite::stored_executions
  bool release_owner = false;  // InstanceWrite::release_owner
  // The item's columns when they were encoded ahead (EncodeItem); null: encoded when applied.
  std::shared_ptr<const EncodedItem> encoded;
};

// Encodes what applying `item` writes. Null when the item will be refused anyway (CheckCreate,
// CheckWrite): the writer refuses it.
std::shared_ptr<const EncodedItem> EncodeItem(const WriteItem& item);
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
  ~InstanceWriter();
  InstanceWriter(const InstanceWriter&) = delete;
  InstanceWriter& operator=(const InstanceWriter&) = delete;

  // Applies `items` in order: out[i] is item i's outcome (OK or its refusal).
  void Apply(const std::vector<WriteItem>& items, std::vector<ItemOutcome>& out);

  // The instance with all its executions. Business key and duplicate id rules of
  // SociStateStore::CreateInstance.
  Result<InstanceId> Create(const engine::InstanceRecord& r, const EncodedItem* encoded = nullptr);

  // The cursor, updated_at and compensation status; with `header` also status, error, error
  // code and message, ended_at and lease_until (and the owner: "" with `release_owner`); the listed executions (identity
  // and input by their first write, progress always); the context when `context_changed`.
  // Refused with kNotFound or lease lost (kFailedPrecondition) when the stored owner is not
  // r.owner. Executions with a seq below `stored_executions` are stored already: only their
  // progress is updated (an execution found missing after all is inserted whole).
  Status Write(const engine::InstanceRecord& r, const engine::ExecutionIds& executions,
               bool context_changed, bool header, const EncodedItem* encoded = nullptr,
               int stored_executions = -1, bool release_owner = false);

 private:
  // A statement prepared on the connection's sqlite3 handle. Values are bound in order, in
  // place (the caller's strings must outlive Run); Run steps it, resets it and returns the
  // rows changed. SQLite errors are thrown as soci::sqlite3_soci_error, as SOCI would.
  class Statement {
   public:
    Statement(sqlite3* db, const std::string& sql);
    ~Statement();
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    void Text(const std::string& value);
    void Text(const std::string& value, soci::indicator ind);
    void Int(long long value);
    void Int(long long value, soci::indicator ind);
    void Null();
    int Run();

   private:
    void Check(int rc);
    sqlite3* db_;
    sqlite3_stmt* stmt_ = nullptr;
    int next_ = 0;
  };

  void InsertInstance(const InstanceColumns& c);  // binds; the caller runs
  int UpdateInstance(const InstanceColumns& c, bool header, bool context);
  void UpsertExecution(const std::string& instance_id, const ExecutionColumns& c);
  bool UpdateExecutionProgress(const std::string& instance_id, const ExecutionColumns& c);

  Connection& conn_;
  std::unique_ptr<Statement> insert_instance_;
  std::array<std::unique_ptr<Statement>, 4> updates_;  // [2 * header + context_changed]
  std::unique_ptr<Statement> upsert_execution_;
  std::unique_ptr<Statement> update_execution_;  // progress only
};

}  // namespace sagaflow::adapters::sql
