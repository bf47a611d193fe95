#pragma once

// The statements that read and write instances. Internal to adapters/soci. Every value is a
// bound parameter; no value is ever part of the SQL text.

#include <soci/soci.h>

#include <array>
#include <stdexcept>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "database.h"
#include "rows.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"

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

// One create or write of a commit, encoded on the submitting thread: it holds everything the
// writers need, so that nothing of the caller's is read after the submit.
struct WriteItem {
  InstanceId id;
  bool create = false;
  // A create's: what a conflict with a stored instance is resolved on (ResolveCreateConflict).
  std::string flow_name;
  std::string business_key;
  SharedJson input;
  bool header = true;            // a write's: it assigns the header columns
  bool context_changed = false;  // a write's: it assigns the context
  // Not OK: the item is refused with this before anything of it is written.
  Status refused;
  std::shared_ptr<const EncodedItem> encoded;  // null when refused
  // A write's: the instances it creates (each a create's item), after the write went through.
  std::vector<WriteItem> children;
};

// The item that creates `r` with its outbox rows `dispatches` (refused when its executions are
// not numbered by position, or a row is another instance's).
WriteItem EncodeCreate(const engine::InstanceRecord& r,
                       std::span<const engine::DispatchRecord> dispatches);
// The item that applies `b` (refused when it writes an execution it cannot: a new one without a
// state or with a negative id, progress with a negative id; or a dispatch of another instance).
WriteItem EncodeBatch(const engine::WriteBatch& b);

struct ItemOutcome {
  Status status;
  InstanceId id;  // a create's
};

// Thrown inside the writer's transaction when an item turns out to be refused after some of it
// was written (progress of an execution that is not stored): the transaction rolls back and the
// committer applies the items one by one, so that this one fails alone, with `status`.
class ItemRefused : public std::runtime_error {
 public:
  explicit ItemRefused(Status status)
      : std::runtime_error(status.message()), status_(std::move(status)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

// Why an insert of `item` inserted nothing (inside the writer's transaction): the existing
// instance's id for a repeated business key or a repeated create of the same instance,
// kConflict or kAlreadyExists otherwise. Throws database errors.
Result<InstanceId> ResolveCreateConflict(Connection& conn, const WriteItem& item);

// Throws ItemRefused unless `outcome`, the create of `child` (a child of `parent`), created it
// or found it stored already.
void RequireChildCreated(const InstanceId& parent, const WriteItem& child,
                         const Result<InstanceId>& outcome);

// Why an update of instance `id` matched no row: kNotFound, or lease lost (kFailedPrecondition
// naming the owner). Throws database errors.
Status WhyNotWritten(Connection& conn, const InstanceId& id);

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
  void Apply(const std::vector<const WriteItem*>& items, std::vector<ItemOutcome>& out);

  // The instance with all its executions. Business key and duplicate id rules of
  // SociStateStore::Create.
  Result<InstanceId> Create(const WriteItem& item);

  // The cursor, updated_at and compensation status; with a header also status, error, error
  // code and message, ended_at and lease_until (and the owner: "" when it parks); the new
  // executions (identity and input by their first write, progress always) and the progress of
  // stored ones; the context when the batch carries it. Refused with kNotFound or lease lost
  // (kFailedPrecondition) when the stored owner is not the batch's; throws ItemRefused for
  // progress of an execution that is not stored. The batch's outbox rows are inserted (one
  // stored already is kept), and its children created (throws ItemRefused when a child's id or
  // business key is another instance's).
  Status Write(const WriteItem& item);

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
  void InsertDispatches(const EncodedItem& encoded);

  Connection& conn_;
  std::unique_ptr<Statement> insert_instance_;
  std::array<std::unique_ptr<Statement>, 4> updates_;  // [2 * header + context_changed]
  std::unique_ptr<Statement> upsert_execution_;
  std::unique_ptr<Statement> update_execution_;  // progress only
  std::unique_ptr<Statement> insert_dispatch_;
};


}  // namespace sagaflow::adapters::sql
