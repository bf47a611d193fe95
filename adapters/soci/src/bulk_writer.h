#pragma once

// PostgreSQL's writer for the committer: a batch in a handful of statements. Internal to
// adapters/soci.

#include <soci/soci.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "database.h"
#include "queries.h"

namespace sagaflow::adapters::sql {

// One column's values for every row of a statement, bound as one array parameter in
// PostgreSQL's binary format (what array_recv reads: a header, then each element's length and
// bytes, -1 for NULL), which the server takes without parsing or unescaping text.
class PgArray {
 public:
  enum class Type { kText, kInt4, kInt8 };
  explicit PgArray(Type type = Type::kText) : type_(type) { Clear(); }
  void Clear();
  void Add(const std::string& value);  // a kText array's
  void Add(long long value);           // a kInt4 or kInt8 array's; kInt4 throws out of range
  void AddNull();
  // Completes the header; bytes() is what the statement binds.
  void Finish();
  const std::string& bytes() const { return bytes_; }
  bool empty() const { return count_ == 0; }

 private:
  void Length(std::int32_t n);
  Type type_;
  std::string bytes_;
  std::int32_t count_ = 0;
  bool has_null_ = false;
};

// A statement prepared on a PostgreSQL connection through libpq, whose parameters are all
// binary arrays. Errors are thrown as soci::postgresql_soci_error with their SQLSTATE, as SOCI
// throws them.
class PgStatement {
 public:
  PgStatement(Connection& conn, const std::string& sql, std::size_t params);  // throws
  ~PgStatement();
  PgStatement(const PgStatement&) = delete;
  PgStatement& operator=(const PgStatement&) = delete;
  // Runs it with arrays[i] as parameter $i+1 (Finish()ed); returns the rows it changed. The
  // rows it returned can be read until the next Execute.
  long long Execute(const std::vector<PgArray>& arrays);
  int rows() const;
  std::string Text(int row, int column) const;
  int Int(int row, int column) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Applies a batch of creates and writes on PostgreSQL, where every statement is a round trip:
// instead of a statement per row, one INSERT ... SELECT FROM unnest(arrays) for the created
// instances, an UPDATE ... FROM unnest(arrays) for the written ones (the lease check in its
// WHERE clause; one statement for the writes with `header`, one for steps), one UPDATE for the
// progress of executions stored already, and one UPSERT for every other execution of both. The
// statements are prepared once and reused; each column's values are one bound array parameter.
// Semantics are InstanceWriter's: requests apply in order, and a refusal is decided before
// anything of that request is written. Not thread-safe; must not outlive the connection.
class BulkInstanceWriter {
 public:
  explicit BulkInstanceWriter(Connection& conn);  // prepares the statements; throws

  // Inside the caller's write transaction. out[i] is item i's outcome; database errors are
  // thrown.
  void Apply(const std::vector<const WriteItem*>& items, std::vector<ItemOutcome>& out);

 private:
  // Items [first, last) of which none names the same instance as another.
  void ApplySegment(const std::vector<const WriteItem*>& items, std::size_t first, std::size_t last,
                    std::vector<ItemOutcome>& out);
  void AddExecution(const std::string& instance_id, const ExecutionColumns& c);
  void AddProgress(const std::string& instance_id, const ExecutionColumns& c);
  void AddDispatches(const EncodedItem& item);
  // Runs the insert of the `given` rows in insert_columns_: true when all were inserted, else
  // false with the ids inserted in `inserted`.
  bool InsertInstances(std::size_t given, std::unordered_set<std::string>& inserted);

  Connection& conn_;
  std::vector<PgArray> insert_columns_;     // instances, in kInstanceColumns order
  std::vector<PgArray> header_columns_;     // see kHeaderColumns
  std::vector<PgArray> step_columns_;       // see kStepColumns
  std::vector<PgArray> execution_columns_;  // instance_id, then kExecutionColumns order
  std::vector<PgArray> progress_columns_;   // see kProgressColumns
  std::vector<PgArray> dispatch_columns_;   // see kDispatchColumnTypes
  std::unique_ptr<PgStatement> insert_instances_;
  std::unique_ptr<PgStatement> update_headers_;
  std::unique_ptr<PgStatement> update_steps_;
  std::unique_ptr<PgStatement> upsert_executions_;
  std::unique_ptr<PgStatement> update_progress_;
  std::unique_ptr<PgStatement> insert_dispatches_;
};

}  // namespace sagaflow::adapters::sql
