#include "bulk_writer.h"

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "rows.h"

namespace sagaflow::adapters::sql {

using engine::InstanceRecord;
using engine::StateExecution;

namespace {

using Type = PgArray::Type;
constexpr Type kText = Type::kText;
constexpr Type kInt4 = Type::kInt4;
constexpr Type kInt8 = Type::kInt8;

struct Column {
  const char* name;
  Type type;  // the array parameter's element type
};

const std::vector<Column> kInstanceColumns = {
    {"id", kText},
    {"flow_name", kText},
    {"flow_version", kText},
    {"flow_hash", kText},
    {"business_key", kText},
    {"status", kText},
    {"compensation_status", kText},
    {"input", kText},
    {"context", kText},
    {"error", kText},
    {"error_code", kText},
    {"error_message", kText},
    {"owner", kText},
    {"lease_until", kInt8},
    {"started_at", kInt8},
    {"updated_at", kInt8},
    {"ended_at", kInt8},
    {"cursor", kText},
    {"unfinished", kInt4},
};

// A write with `header`: the key and lease check first, then the assigned columns in the order
// PutStepColumns and PutHeaderColumns give them. A NULL context keeps the stored one (writes
// that do not change it).
const std::vector<Column> kHeaderColumns = {
    {"id", kText},
    {"owner", kText},
    {"compensation_status", kText},
    {"updated_at", kInt8},
    {"cursor", kText},
    {"status", kText},
    {"error", kText},
    {"error_code", kText},
    {"error_message", kText},
    {"lease_until", kInt8},
    {"ended_at", kInt8},
    {"unfinished", kInt4},
    {"new_owner", kText},
    {"context", kText},
};

// A step's write (without `header`, most of them): what every write stores (PutStepColumns).
const std::vector<Column> kStepColumns = {
    {"id", kText},
    {"owner", kText},
    {"compensation_status", kText},
    {"updated_at", kInt8},
    {"cursor", kText},
    {"context", kText},
};

// "UPDATE instances SET ... FROM unnest(...) AS v(...)" assigning columns[2...], with the lease
// check in the WHERE clause, atomic with the write.
std::string UpdateInstances(const std::vector<Column>& columns);

const std::vector<Column> kExecutionColumns = {
    {"instance_id", kText},
    {"seq", kInt4},
    {"state", kText},
    {"state_index", kInt4},
    {"kind", kText},
    {"compensates", kInt4},
    {"retried_for", kInt4},
    {"epoch", kInt4},
    {"attempts", kInt4},
    {"status", kText},
    {"compensation_status", kText},
    {"superseded", kInt4},
    {"for_update", kInt4},
    {"retry_counts", kText},
    {"retry_at", kInt8},
    {"idempotency_key", kText},
    {"input", kText},
    {"output", kText},
    {"error", kText},
    {"started_at", kInt8},
    {"ended_at", kInt8},
    {"deadline_at", kInt8},
};

// An execution stored already: its key, then the progress columns a later write changes
// (PutProgressColumns).
const std::vector<Column> kProgressColumns = {
    {"instance_id", kText},
    {"seq", kInt4},
    {"attempts", kInt4},
    {"status", kText},
    {"compensation_status", kText},
    {"superseded", kInt4},
    {"retry_counts", kText},
    {"retry_at", kInt8},
    {"output", kText},
    {"error", kText},
    {"ended_at", kInt8},
    {"deadline_at", kInt8},
};

// The outbox's rows (PutDispatchColumns).
const std::vector<Column> kDispatchColumnTypes = {
    {"instance_id", kText},  {"seq", kInt4},   {"attempt", kInt4},
    {"state", kText},        {"task", kText},  {"idempotency_key", kText},
    {"input", kText},        {"deadline_at", kInt8}, {"due_at", kInt8},
};

std::string Names(const std::vector<Column>& columns, const char* prefix = "");
std::string Unnest(const std::vector<Column>& columns);

std::string UpdateInstances(const std::vector<Column>& columns) {
  std::string assignments;
  for (std::size_t i = 2; i < columns.size(); ++i) {
    const std::string name = columns[i].name;
    if (!assignments.empty()) assignments += ", ";
    if (name == "context") {
      assignments += "context = COALESCE(v.context, instances.context)";
    } else if (name == "new_owner") {
      assignments += "owner = v.new_owner";
    } else {
      assignments += name + " = v." + name;
    }
  }
  return "UPDATE instances SET " + assignments + " FROM " + Unnest(columns) + " AS v(" +
         Names(columns) +
         ") WHERE instances.id = v.id AND instances.owner = v.owner RETURNING instances.id";
}

std::string Names(const std::vector<Column>& columns, const char* prefix) {
  std::string out;
  for (const Column& c : columns) {
    if (!out.empty()) out += ", ";
    out += prefix;
    out += c.name;
  }
  return out;
}

// "(SELECT unnest(CAST($1 AS text[])), ...)": one array parameter per column, the rows in
// step. Set-returning functions in the select list stream their rows; unnest of several arrays
// in FROM would gather them in a tuplestore first.
std::string Unnest(const std::vector<Column>& columns) {
  std::string out = "(SELECT ";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += ", ";
    const char* type = columns[i].type == kText ? "text[]"
                       : columns[i].type == kInt4 ? "integer[]"
                                                  : "bigint[]";
    out += "unnest(CAST($" + std::to_string(i + 1) + " AS " + type + "))";
  }
  return out + ")";
}

// One empty array per column, of the column's type.
std::vector<PgArray> ArraysFor(const std::vector<Column>& columns) {
  std::vector<PgArray> arrays;
  for (const Column& c : columns) arrays.emplace_back(c.type);
  return arrays;
}

void Clear(std::vector<PgArray>& arrays) {
  for (PgArray& a : arrays) a.Clear();
}

void Finish(std::vector<PgArray>& arrays) {
  for (PgArray& a : arrays) a.Finish();
}

// Appends a row's values to one array per column, in order (PutInstanceColumns and the like).
class ArraySink {
 public:
  explicit ArraySink(std::vector<PgArray>& arrays) : arrays_(arrays) {}
  void Text(const std::string& value) { arrays_[next_++].Add(value); }
  void Text(const std::string& value, soci::indicator ind) {
    if (ind == soci::i_ok) return Text(value);
    Null();
  }
  void Int(long long value) { arrays_[next_++].Add(value); }
  void Int(long long value, soci::indicator ind) {
    if (ind == soci::i_ok) return Int(value);
    Null();
  }
  void Null() { arrays_[next_++].AddNull(); }

 private:
  std::vector<PgArray>& arrays_;
  std::size_t next_ = 0;
};


// PostgreSQL's type oids (pg_type.dat), fixed since the first releases.
constexpr std::uint32_t kTextOid = 25;
constexpr std::uint32_t kInt4Oid = 23;
constexpr std::uint32_t kInt8Oid = 20;
constexpr std::size_t kHeaderBytes = 20;  // ndim, flags, element type, length, lower bound

void PutBigEndian(char* at, std::uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    at[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
}

void AppendBigEndian(std::string& out, std::uint64_t value, int bytes) {
  char buf[8];
  PutBigEndian(buf, value, bytes);
  out.append(buf, static_cast<std::size_t>(bytes));
}

}  // namespace

void PgArray::Clear() {
  bytes_.assign(kHeaderBytes, '\0');
  count_ = 0;
  has_null_ = false;
}

void PgArray::Length(std::int32_t n) {
  AppendBigEndian(bytes_, static_cast<std::uint32_t>(n), 4);
  ++count_;
}

void PgArray::Add(const std::string& value) {
  if (value.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max())) {
    throw soci::soci_error("a value of " + std::to_string(value.size()) +
                           " bytes is too long for PostgreSQL");
  }
  Length(static_cast<std::int32_t>(value.size()));
  bytes_ += value;
}

void PgArray::Add(long long value) {
  if (type_ == Type::kInt4) {
    if (value < std::numeric_limits<std::int32_t>::min() ||
        value > std::numeric_limits<std::int32_t>::max()) {
      throw soci::soci_error("value " + std::to_string(value) + " is out of range for integer");
    }
    Length(4);
    AppendBigEndian(bytes_, static_cast<std::uint32_t>(static_cast<std::int32_t>(value)), 4);
    return;
  }
  Length(8);
  AppendBigEndian(bytes_, static_cast<std::uint64_t>(value), 8);
}

void PgArray::AddNull() {
  Length(-1);
  has_null_ = true;
}

void PgArray::Finish() {
  // One dimension of count_ elements, numbered from 1.
  char* h = bytes_.data();
  PutBigEndian(h, 1, 4);
  PutBigEndian(h + 4, has_null_ ? 1 : 0, 4);
  PutBigEndian(h + 8,
               type_ == Type::kText   ? kTextOid
               : type_ == Type::kInt4 ? kInt4Oid
                                      : kInt8Oid,
               4);
  PutBigEndian(h + 12, static_cast<std::uint32_t>(count_), 4);
  PutBigEndian(h + 16, 1, 4);
}

struct PgStatement::Impl {
  PGconn* conn = nullptr;
  std::string name;
  PGresult* result = nullptr;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;

  ~Impl() {
    if (result != nullptr) PQclear(result);
  }

  // Throws the error `r` reports (null: the connection's), unless it succeeded.
  void Check(PGresult* r) const {
    const ExecStatusType status = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return;
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string message = r != nullptr ? PQresultErrorMessage(r) : PQerrorMessage(conn);
    // No SQLSTATE: the connection was lost before the server answered.
    throw soci::postgresql_soci_error(message, state != nullptr ? state : "08006");
  }
};

PgStatement::PgStatement(Connection& conn, const std::string& sql, std::size_t params)
    : impl_(std::make_unique<Impl>()) {
  auto* backend = static_cast<soci::postgresql_session_backend*>(conn.session().get_backend());
  impl_->conn = backend->conn_;
  // Unique in the process, so that a connection never sees one name prepared twice.
  static std::atomic<unsigned> next{0};
  impl_->name = "sagaflow_bulk_" + std::to_string(next.fetch_add(1));
  impl_->values.resize(params);
  impl_->lengths.resize(params);
  impl_->formats.assign(params, 1);
  PGresult* r = PQprepare(impl_->conn, impl_->name.c_str(), sql.c_str(), 0, nullptr);
  try {
    impl_->Check(r);
  } catch (...) {
    if (r != nullptr) PQclear(r);
    throw;
  }
  PQclear(r);
}

PgStatement::~PgStatement() = default;

long long PgStatement::Execute(const std::vector<PgArray>& arrays) {
  Impl& s = *impl_;
  if (s.result != nullptr) {
    PQclear(s.result);
    s.result = nullptr;
  }
  for (std::size_t i = 0; i < s.values.size(); ++i) {
    s.values[i] = arrays[i].bytes().data();
    s.lengths[i] = static_cast<int>(arrays[i].bytes().size());
  }
  PGresult* r = PQexecPrepared(s.conn, s.name.c_str(), static_cast<int>(s.values.size()),
                               s.values.data(), s.lengths.data(), s.formats.data(), 0);
  try {
    s.Check(r);
  } catch (...) {
    if (r != nullptr) PQclear(r);
    throw;
  }
  s.result = r;
  const char* changed = PQcmdTuples(r);
  return changed[0] == '\0' ? 0 : std::atoll(changed);
}

int PgStatement::rows() const { return impl_->result != nullptr ? PQntuples(impl_->result) : 0; }

std::string PgStatement::Text(int row, int column) const {
  return std::string(PQgetvalue(impl_->result, row, column),
                     static_cast<std::size_t>(PQgetlength(impl_->result, row, column)));
}

int PgStatement::Int(int row, int column) const {
  return std::atoi(PQgetvalue(impl_->result, row, column));
}

BulkInstanceWriter::BulkInstanceWriter(Connection& conn)
    : conn_(conn),
      insert_columns_(ArraysFor(kInstanceColumns)),
      header_columns_(ArraysFor(kHeaderColumns)),
      step_columns_(ArraysFor(kStepColumns)),
      execution_columns_(ArraysFor(kExecutionColumns)),
      progress_columns_(ArraysFor(kProgressColumns)),
      dispatch_columns_(ArraysFor(kDispatchColumnTypes)) {
  // Rows whose id or business key exists already are skipped, without an error that would
  // abort the transaction; RETURNING tells which were inserted.
  insert_instances_ = std::make_unique<PgStatement>(
      conn,
      "INSERT INTO instances (" + Names(kInstanceColumns) + ") SELECT * FROM " +
          Unnest(kInstanceColumns) + " AS v ON CONFLICT DO NOTHING RETURNING id",
      kInstanceColumns.size());

  // The lease check is in the WHERE clause, atomic with the write. Steps have a statement of
  // their own, with a third of the columns to send and assign.
  update_headers_ =
      std::make_unique<PgStatement>(conn, UpdateInstances(kHeaderColumns), kHeaderColumns.size());
  update_steps_ =
      std::make_unique<PgStatement>(conn, UpdateInstances(kStepColumns), kStepColumns.size());

  // Identity and input by the first write; progress always.
  upsert_executions_ = std::make_unique<PgStatement>(
      conn,
      "INSERT INTO state_executions (" + Names(kExecutionColumns) + ") SELECT * FROM " +
          Unnest(kExecutionColumns) + " AS v " + kUpsertExecutionProgress,
      kExecutionColumns.size());

  // Executions the engine knows are stored: progress only, without the identity and input an
  // upsert would carry and check. RETURNING names the rows found; one missing refuses its batch
  // (ItemRefused), which is then applied alone and refused, so that the others commit.
  std::string progress;
  for (std::size_t i = 2; i < kProgressColumns.size(); ++i) {
    if (!progress.empty()) progress += ", ";
    progress += std::string(kProgressColumns[i].name) + " = v." + kProgressColumns[i].name;
  }
  update_progress_ = std::make_unique<PgStatement>(
      conn,
      "UPDATE state_executions SET " + progress + " FROM " + Unnest(kProgressColumns) + " AS v(" +
          Names(kProgressColumns) +
          ") WHERE state_executions.instance_id = v.instance_id AND "
          "state_executions.seq = v.seq "
          "RETURNING state_executions.instance_id, state_executions.seq",
      kProgressColumns.size());

  // A row stored already (the batch applied again) is kept as stored.
  insert_dispatches_ = std::make_unique<PgStatement>(
      conn,
      "INSERT INTO dispatches (" + Names(kDispatchColumnTypes) + ") SELECT * FROM " +
          Unnest(kDispatchColumnTypes) + " AS v ON CONFLICT DO NOTHING",
      kDispatchColumnTypes.size());
}

void BulkInstanceWriter::Apply(const std::vector<const WriteItem*>& items, std::vector<ItemOutcome>& out) {
  // A statement may touch an instance once (and its executions once), and requests of one
  // instance must apply in order: a request naming an instance already in the segment starts
  // the next segment.
  std::unordered_set<std::string_view> in_segment;
  in_segment.reserve(items.size());
  std::size_t first = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!in_segment.insert(items[i]->id.str()).second) {
      ApplySegment(items, first, i, out);
      first = i;
      in_segment.clear();
      in_segment.insert(items[i]->id.str());
    }
  }
  ApplySegment(items, first, items.size(), out);
}

void BulkInstanceWriter::AddExecution(const std::string& instance_id, const ExecutionColumns& c) {
  ArraySink sink(execution_columns_);
  PutExecutionColumns(instance_id, c, sink);
}

void BulkInstanceWriter::AddProgress(const std::string& instance_id, const ExecutionColumns& c) {
  ArraySink sink(progress_columns_);
  sink.Text(instance_id);
  sink.Int(c.seq);
  PutProgressColumns(c, sink);
}

void BulkInstanceWriter::AddDispatches(const EncodedItem& item) {
  for (const DispatchColumns& d : item.dispatches) {
    ArraySink sink(dispatch_columns_);
    PutDispatchColumns(d, sink);
  }
}

bool BulkInstanceWriter::InsertInstances(std::size_t given,
                                         std::unordered_set<std::string>& inserted) {
  Finish(insert_columns_);
  // Usually every row was inserted: the count says so, without reading the ids back.
  if (insert_instances_->Execute(insert_columns_) == static_cast<long long>(given)) return true;
  for (int row = 0; row < insert_instances_->rows(); ++row) {
    inserted.insert(insert_instances_->Text(row, 0));
  }
  return false;
}

void BulkInstanceWriter::ApplySegment(const std::vector<const WriteItem*>& items, std::size_t first,
                                      std::size_t last, std::vector<ItemOutcome>& out) {
  if (first == last) return;
  Clear(execution_columns_);
  Clear(progress_columns_);
  Clear(dispatch_columns_);

  // Rows go to the statements in key order, so that two writers holding overlapping rows lock
  // them in the same order (no deadlock). Within a segment each instance appears once, and the
  // sort is stable: of two creates with one business key, the first still wins.
  std::vector<std::size_t> order(last - first);
  for (std::size_t i = first; i < last; ++i) order[i - first] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const WriteItem& x = *items[a];
    const WriteItem& y = *items[b];
    if (items[a]->create != items[b]->create) return items[a]->create;  // creates first
    if (items[a]->create) {
      return std::tie(x.flow_name, x.business_key) < std::tie(y.flow_name, y.business_key);
    }
    return x.id < y.id;
  });

  // 1. Creates.
  std::vector<std::size_t> creates;
  Clear(insert_columns_);
  for (std::size_t i : order) {
    if (!items[i]->create) continue;
    if (!items[i]->refused.ok()) {
      out[i] = ItemOutcome{items[i]->refused, {}};
      continue;
    }
    ArraySink sink(insert_columns_);
    PutInstanceColumns(items[i]->encoded->instance, sink);
    creates.push_back(i);
  }
  if (!creates.empty()) {
    std::unordered_set<std::string> inserted;
    const bool all = InsertInstances(creates.size(), inserted);
    for (std::size_t i : creates) {
      const WriteItem& r = *items[i];
      if (all || inserted.count(r.id.str())) {
        out[i] = ItemOutcome{Status::Ok(), r.id};
        const EncodedItem& e = *r.encoded;
        for (const ExecutionColumns& x : e.executions) AddExecution(e.instance.id, x);
        AddDispatches(e);
      } else {
        Result<InstanceId> resolved = ResolveCreateConflict(conn_, r);
        out[i] = resolved.ok() ? ItemOutcome{Status::Ok(), std::move(*resolved)}
                               : ItemOutcome{resolved.status(), {}};
      }
    }
  }

  // 2. Writes: headers and steps, with the lease check.
  std::vector<std::size_t> writes;
  Clear(header_columns_);
  Clear(step_columns_);
  for (std::size_t i : order) {
    if (items[i]->create) continue;
    if (!items[i]->refused.ok()) {
      out[i] = ItemOutcome{items[i]->refused, {}};
      continue;
    }
    const InstanceColumns& c = items[i]->encoded->instance;
    const bool header = items[i]->header;
    ArraySink sink(header ? header_columns_ : step_columns_);
    sink.Text(c.id);
    sink.Text(c.owner);
    PutStepColumns(c, sink);
    if (header) PutHeaderColumns(c, sink);
    if (items[i]->context_changed) {
      sink.Text(c.context);
    } else {
      sink.Null();
    }
    writes.push_back(i);
  }
  // Executions said to be stored, (instance, seq) -> where, to find the ones missing after all.
  std::vector<std::pair<std::size_t, const ExecutionColumns*>> progress;
  if (!writes.empty()) {
    // As for the creates: the ids are read back only when a statement updated fewer rows than
    // it was given (a lease lost, an instance gone).
    std::size_t header_writes = 0;
    for (std::size_t i : writes) header_writes += items[i]->header ? 1 : 0;
    bool all_updated[2] = {true, true};  // [header]
    std::unordered_set<std::string> updated;
    for (bool header : {true, false}) {
      std::vector<PgArray>& columns = header ? header_columns_ : step_columns_;
      PgStatement& statement = header ? *update_headers_ : *update_steps_;
      if (columns.front().empty()) continue;
      const std::size_t given = header ? header_writes : writes.size() - header_writes;
      Finish(columns);
      all_updated[header] = statement.Execute(columns) == static_cast<long long>(given);
      for (int row = 0; !all_updated[header] && row < statement.rows(); ++row) {
        updated.insert(statement.Text(row, 0));
      }
    }
    for (std::size_t i : writes) {
      const WriteItem& r = *items[i];
      if (all_updated[items[i]->header] || updated.count(r.id.str())) {
        out[i] = ItemOutcome{Status::Ok(), {}};
        const EncodedItem& e = *r.encoded;
        for (const ExecutionColumns& x : e.executions) {
          if (x.progress_only) {
            AddProgress(e.instance.id, x);
            progress.emplace_back(i, &x);
          } else {
            AddExecution(e.instance.id, x);
          }
        }
        AddDispatches(e);
      } else {
        out[i] = ItemOutcome{WhyNotWritten(conn_, r.id), {}};
      }
    }
  }

  // 2b. The children of the writes that went through, created as the creates are; one whose
  // id or business key is another instance's refuses its batch (ItemRefused).
  std::vector<std::pair<std::size_t, const WriteItem*>> children;  // (parent item, child)
  for (std::size_t i : writes) {
    if (!out[i].status.ok()) continue;
    for (const WriteItem& child : items[i]->children) children.emplace_back(i, &child);
  }
  if (!children.empty()) {
    std::stable_sort(children.begin(), children.end(), [](const auto& a, const auto& b) {
      return std::tie(a.second->flow_name, a.second->business_key) <
             std::tie(b.second->flow_name, b.second->business_key);
    });
    Clear(insert_columns_);
    for (const auto& [i, child] : children) {
      ArraySink sink(insert_columns_);
      PutInstanceColumns(child->encoded->instance, sink);
    }
    std::unordered_set<std::string> inserted;
    const bool all = InsertInstances(children.size(), inserted);
    for (const auto& [i, child] : children) {
      if (all || inserted.count(child->id.str())) {
        const EncodedItem& e = *child->encoded;
        for (const ExecutionColumns& x : e.executions) AddExecution(e.instance.id, x);
      } else {
        RequireChildCreated(items[i]->id, *child, ResolveCreateConflict(conn_, *child));
      }
    }
  }

  // 3. Progress of the stored executions; one not found refuses its batch (ItemRefused).
  if (!progress.empty()) {
    Finish(progress_columns_);
    std::set<std::pair<std::string, int>> found;
    update_progress_->Execute(progress_columns_);
    for (int row = 0; row < update_progress_->rows(); ++row) {
      found.emplace(update_progress_->Text(row, 0), update_progress_->Int(row, 1));
    }
    for (const auto& [i, x] : progress) {
      const std::string id = items[i]->id.str();
      if (found.count({id, x->seq})) continue;
      throw ItemRefused(InvalidArgument("instance " + id + ": the batch changes execution " +
                                        std::to_string(x->seq) + ", which is not stored"));
    }
  }

  // 4. The executions of every create and write that went through.
  if (!execution_columns_.front().empty()) {
    Finish(execution_columns_);
    upsert_executions_->Execute(execution_columns_);
  }

  // 5. The outbox rows of every create and write that went through.
  if (!dispatch_columns_.front().empty()) {
    Finish(dispatch_columns_);
    insert_dispatches_->Execute(dispatch_columns_);
  }
}

}  // namespace sagaflow::adapters::sql
