#pragma once

// PostgreSQL's writer for the committer: a batch in a handful of statements. Internal to
// adapters/soci.

#include <soci/soci.h>

#include <string>
#include <vector>

#include "database.h"
#include "queries.h"

namespace sagaflow::adapters::sql {

// A PostgreSQL array literal ('{"a","b",NULL}') built element by element: one bound parameter
// carrying a column's values for every row of a statement.
class PgArray {
 public:
  void Clear() { text_ = "{"; }
  void Add(const std::string& value);
  void Add(long long value);
  void AddNull();
  // Closes the literal; text() is what the statement binds.
  void Finish() { text_ += '}'; }
  std::string& text() { return text_; }
  bool empty() const { return text_.size() <= 1; }

 private:
  void Separate() {
    if (text_.size() > 1) text_ += ',';
  }
  std::string text_ = "{";
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
  void Apply(const std::vector<WriteItem>& items, std::vector<ItemOutcome>& out);

 private:
  // Items [first, last) of which none names the same instance as another.
  void ApplySegment(const std::vector<WriteItem>& items, std::size_t first, std::size_t last,
                    std::vector<ItemOutcome>& out);
  void AddExecution(const std::string& instance_id, const ExecutionColumns& c);
  void AddProgress(const std::string& instance_id, const ExecutionColumns& c);

  Connection& conn_;
  std::vector<PgArray> insert_columns_;     // instances, in kInstanceColumns order
  std::vector<PgArray> header_columns_;     // see kHeaderColumns
  std::vector<PgArray> step_columns_;       // see kStepColumns
  std::vector<PgArray> execution_columns_;  // instance_id, then kExecutionColumns order
  std::vector<PgArray> progress_columns_;   // see kProgressColumns
  std::string returned_id_;
  int returned_seq_ = 0;
  soci::statement insert_instances_;
  soci::statement update_headers_;
  soci::statement update_steps_;
  soci::statement upsert_executions_;
  soci::statement update_progress_;
};

}  // namespace sagaflow::adapters::sql
