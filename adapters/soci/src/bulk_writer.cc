#include "bulk_writer.h"

#include <algorithm>
#include <charconv>
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

struct Column {
  const char* name;
  const char* type;  // PostgreSQL element type of the array parameter
};

const std::vector<Column> kInstanceColumns = {
    {"id", "text"},
    {"flow_name", "text"},
    {"flow_version", "text"},
    {"flow_hash", "text"},
    {"business_key", "text"},
    {"status", "text"},
    {"compensation_status", "text"},
    {"input", "text"},
    {"context", "text"},
    {"error", "text"},
    {"error_code", "text"},
    {"error_message", "text"},
    {"owner", "text"},
    {"lease_until", "bigint"},
    {"started_at", "bigint"},
    {"updated_at", "bigint"},
    {"ended_at", "bigint"},
    {"cursor", "text"},
    {"unfinished", "integer"},
};

// A write with `header`: the key and lease check first, then the assigned columns. A NULL
// context keeps the stored one (writes that do not change it).
const std::vector<Column> kHeaderColumns = {
    {"id", "text"},
    {"owner", "text"},
    {"compensation_status", "text"},
    {"updated_at", "bigint"},
    {"cursor", "text"},
    {"unfinished", "integer"},
    {"status", "text"},
    {"error", "text"},
    {"error_code", "text"},
    {"error_message", "text"},
    {"lease_until", "bigint"},
    {"ended_at", "bigint"},
    {"context", "text"},
};

// A step's write (without `header`, most of them): what every write stores.
const std::vector<Column> kStepColumns = {
    {"id", "text"},
    {"owner", "text"},
    {"compensation_status", "text"},
    {"updated_at", "bigint"},
    {"cursor", "text"},
    {"context", "text"},
};

// "UPDATE instances SET ... FROM unnest(...) AS v(...)" assigning columns[2...], with the lease
// check in the WHERE clause, atomic with the write.
std::string UpdateInstances(const std::vector<Column>& columns);

const std::vector<Column> kExecutionColumns = {
    {"instance_id", "text"},
    {"seq", "integer"},
    {"state", "text"},
    {"state_index", "integer"},
    {"kind", "text"},
    {"compensates", "integer"},
    {"retried_for", "integer"},
    {"epoch", "integer"},
    {"attempts", "integer"},
    {"status", "text"},
    {"compensation_status", "text"},
    {"superseded", "integer"},
    {"for_update", "integer"},
    {"retry_counts", "text"},
    {"retry_at", "bigint"},
    {"idempotency_key", "text"},
    {"input", "text"},
    {"output", "text"},
    {"error", "text"},
    {"started_at", "bigint"},
    {"ended_at", "bigint"},
};

// An execution stored already: its key, then the progress columns a later write changes.
const std::vector<Column> kProgressColumns = {
    {"instance_id", "text"},
    {"seq", "integer"},
    {"attempts", "integer"},
    {"status", "text"},
    {"compensation_status", "text"},
    {"superseded", "integer"},
    {"retry_counts", "text"},
    {"retry_at", "bigint"},
    {"output", "text"},
    {"error", "text"},
    {"ended_at", "bigint"},
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

// "(SELECT unnest(CAST(:id AS text[])), ...)": one array parameter per column, the rows in
// step. Set-returning functions in the select list stream their rows; unnest of several arrays
// in FROM would gather them in a tuplestore first.
std::string Unnest(const std::vector<Column>& columns) {
  std::string out = "(SELECT ";
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += ", ";
    out += "unnest(CAST(:" + std::string(columns[i].name) + " AS " + columns[i].type + "[]))";
  }
  return out + ")";
}

void Bind(soci::statement& st, std::vector<PgArray>& arrays, std::size_t n) {
  arrays.resize(n);
  for (PgArray& a : arrays) st.exchange(soci::use(a.text()));
}

void Prepare(soci::statement& st, const std::string& sql) {
  st.alloc();
  st.prepare(sql);
  st.define_and_bind();
}

void Clear(std::vector<PgArray>& arrays) {
  for (PgArray& a : arrays) a.Clear();
}

void Finish(std::vector<PgArray>& arrays) {
  for (PgArray& a : arrays) a.Finish();
}

void AddOptional(PgArray& a, const std::string& value, soci::indicator ind) {
  if (ind == soci::i_ok) {
    a.Add(value);
  } else {
    a.AddNull();
  }
}

void AddOptional(PgArray& a, long long value, soci::indicator ind) {
  if (ind == soci::i_ok) {
    a.Add(value);
  } else {
    a.AddNull();
  }
}

// Appends a row's values to one array per column, in order (PutInstanceColumns and the like).
class ArraySink {
 public:
  explicit ArraySink(std::vector<PgArray>& arrays) : arrays_(arrays) {}
  void Text(const std::string& value) { arrays_[next_++].Add(value); }
  void Text(const std::string& value, soci::indicator ind) {
    AddOptional(arrays_[next_++], value, ind);
  }
  void Int(long long value) { arrays_[next_++].Add(value); }
  void Int(long long value, soci::indicator ind) { AddOptional(arrays_[next_++], value, ind); }

 private:
  std::vector<PgArray>& arrays_;
  std::size_t next_ = 0;
};

}  // namespace

void PgArray::Add(const std::string& value) {
  Separate();
  text_ += '"';
  // Runs without a quote or a backslash are copied whole; those two are escaped.
  const char* p = value.data();
  const char* const end = p + value.size();
  while (p < end) {
    const char* q = p;
    while (q < end && *q != '"' && *q != '\\') ++q;
    text_.append(p, static_cast<std::size_t>(q - p));
    if (q == end) break;
    text_ += '\\';
    text_ += *q;
    p = q + 1;
  }
  text_ += '"';
}

void PgArray::Add(long long value) {
  Separate();
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  text_.append(digits, static_cast<std::size_t>(end - digits));
}

void PgArray::AddNull() {
  Separate();
  text_ += "NULL";
}

BulkInstanceWriter::BulkInstanceWriter(Connection& conn)
    : conn_(conn),
      insert_instances_(conn.session()),
      update_headers_(conn.session()),
      update_steps_(conn.session()),
      upsert_executions_(conn.session()),
      update_progress_(conn.session()) {
  // Rows whose id or business key exists already are skipped, without an error that would
  // abort the transaction; RETURNING tells which were inserted.
  Bind(insert_instances_, insert_columns_, kInstanceColumns.size());
  insert_instances_.exchange(soci::into(returned_id_));
  Prepare(insert_instances_, "INSERT INTO instances (" + Names(kInstanceColumns) +
                                 ") SELECT * FROM " + Unnest(kInstanceColumns) +
                                 " AS v ON CONFLICT DO NOTHING RETURNING id");

  // The lease check is in the WHERE clause, atomic with the write. Steps have a statement of
  // their own, with a third of the columns to send and assign.
  Bind(update_headers_, header_columns_, kHeaderColumns.size());
  update_headers_.exchange(soci::into(returned_id_));
  Prepare(update_headers_, UpdateInstances(kHeaderColumns));
  Bind(update_steps_, step_columns_, kStepColumns.size());
  update_steps_.exchange(soci::into(returned_id_));
  Prepare(update_steps_, UpdateInstances(kStepColumns));

  // Identity and input by the first write; progress always.
  Bind(upsert_executions_, execution_columns_, kExecutionColumns.size());
  Prepare(upsert_executions_,
          "INSERT INTO state_executions (" + Names(kExecutionColumns) + ") SELECT * FROM " +
              Unnest(kExecutionColumns) +
              " AS v ON CONFLICT (instance_id, seq) DO UPDATE SET "
              "attempts = excluded.attempts, status = excluded.status, "
              "compensation_status = excluded.compensation_status, "
              "superseded = excluded.superseded, retry_counts = excluded.retry_counts, "
              "retry_at = excluded.retry_at, output = excluded.output, error = excluded.error, "
              "ended_at = excluded.ended_at");

  // Executions the engine knows are stored: progress only, without the identity and input an
  // upsert would carry and check. RETURNING names the rows found; one missing after all is
  // inserted whole by the upsert.
  Bind(update_progress_, progress_columns_, kProgressColumns.size());
  update_progress_.exchange(soci::into(returned_id_));
  update_progress_.exchange(soci::into(returned_seq_));
  std::string progress;
  for (std::size_t i = 2; i < kProgressColumns.size(); ++i) {
    if (!progress.empty()) progress += ", ";
    progress += std::string(kProgressColumns[i].name) + " = v." + kProgressColumns[i].name;
  }
  Prepare(update_progress_,
          "UPDATE state_executions SET " + progress + " FROM " + Unnest(kProgressColumns) +
              " AS v(" + Names(kProgressColumns) +
              ") WHERE state_executions.instance_id = v.instance_id AND "
              "state_executions.seq = v.seq "
              "RETURNING state_executions.instance_id, state_executions.seq");
}

void BulkInstanceWriter::Apply(const std::vector<WriteItem>& items, std::vector<ItemOutcome>& out) {
  // A statement may touch an instance once (and its executions once), and requests of one
  // instance must apply in order: a request naming an instance already in the segment starts
  // the next segment.
  std::unordered_set<std::string_view> in_segment;
  in_segment.reserve(items.size());
  std::size_t first = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!in_segment.insert(items[i].record->id.str()).second) {
      ApplySegment(items, first, i, out);
      first = i;
      in_segment.clear();
      in_segment.insert(items[i].record->id.str());
    }
  }
  ApplySegment(items, first, items.size(), out);
}

void BulkInstanceWriter::AddExecution(const std::string& instance_id, const ExecutionColumns& c) {
  ArraySink sink(execution_columns_);
  PutExecutionColumns(instance_id, c, sink);
}

void BulkInstanceWriter::AddProgress(const std::string& instance_id, const ExecutionColumns& c) {
  std::vector<PgArray>& a = progress_columns_;
  std::size_t k = 0;
  a[k++].Add(instance_id);
  a[k++].Add(static_cast<long long>(c.seq));
  a[k++].Add(static_cast<long long>(c.attempts));
  a[k++].Add(c.status);
  AddOptional(a[k++], c.compensation_status, c.compensation_status_ind);
  a[k++].Add(static_cast<long long>(c.superseded));
  a[k++].Add(c.retry_counts);
  AddOptional(a[k++], c.retry_at, c.retry_at_ind);
  a[k++].Add(c.output);
  AddOptional(a[k++], c.error, c.error_ind);
  AddOptional(a[k++], c.ended_at, c.ended_at_ind);
}

void BulkInstanceWriter::ApplySegment(const std::vector<WriteItem>& items, std::size_t first,
                                      std::size_t last, std::vector<ItemOutcome>& out) {
  if (first == last) return;
  Clear(execution_columns_);
  Clear(progress_columns_);

  // Each item's columns: encoded by the submitting thread, or here when it did not.
  std::vector<std::shared_ptr<const EncodedItem>> encoded(last - first);
  for (std::size_t i = first; i < last; ++i) {
    encoded[i - first] = items[i].encoded ? items[i].encoded : EncodeItem(items[i]);
  }

  // Rows go to the statements in key order, so that two writers holding overlapping rows lock
  // them in the same order (no deadlock). Within a segment each instance appears once, and the
  // sort is stable: of two creates with one business key, the first still wins.
  std::vector<std::size_t> order(last - first);
  for (std::size_t i = first; i < last; ++i) order[i - first] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const InstanceRecord& x = *items[a].record;
    const InstanceRecord& y = *items[b].record;
    if (items[a].create != items[b].create) return items[a].create;  // creates first
    if (items[a].create) {
      return std::tie(x.flow_name, x.business_key) < std::tie(y.flow_name, y.business_key);
    }
    return x.id < y.id;
  });

  // 1. Creates.
  std::vector<std::size_t> creates;
  Clear(insert_columns_);
  for (std::size_t i : order) {
    if (!items[i].create) continue;
    const InstanceRecord& r = *items[i].record;
    if (Status s = CheckCreate(r); !s.ok()) {
      out[i] = ItemOutcome{std::move(s), {}};
      continue;
    }
    ArraySink sink(insert_columns_);
    PutInstanceColumns(encoded[i - first]->instance, sink);
    creates.push_back(i);
  }
  if (!creates.empty()) {
    Finish(insert_columns_);
    // Usually every row was inserted: the count says so, without reading the ids back.
    insert_instances_.execute();
    const bool all = insert_instances_.get_affected_rows() == static_cast<long long>(creates.size());
    std::unordered_set<std::string> inserted;
    while (!all && insert_instances_.fetch()) inserted.insert(returned_id_);
    for (std::size_t i : creates) {
      const InstanceRecord& r = *items[i].record;
      if (all || inserted.count(r.id.str())) {
        out[i] = ItemOutcome{Status::Ok(), r.id};
        const EncodedItem& e = *encoded[i - first];
        for (const ExecutionColumns& x : e.executions) AddExecution(e.instance.id, x);
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
    if (items[i].create) continue;
    const InstanceRecord& r = *items[i].record;
    if (Status s = CheckWrite(r, *items[i].executions); !s.ok()) {
      out[i] = ItemOutcome{std::move(s), {}};
      continue;
    }
    const InstanceColumns& c = encoded[i - first]->instance;
    const bool header = items[i].header;
    std::vector<PgArray>& a = header ? header_columns_ : step_columns_;
    std::size_t k = 0;
    a[k++].Add(c.id);
    a[k++].Add(c.owner);
    AddOptional(a[k++], c.compensation_status, c.compensation_status_ind);
    a[k++].Add(c.updated_at);
    a[k++].Add(c.cursor);
    if (header) {
      a[k++].Add(static_cast<long long>(c.unfinished));
      a[k++].Add(c.status);
      AddOptional(a[k++], c.error, c.error_ind);
      a[k++].Add(c.error_code);
      a[k++].Add(c.error_message);
      a[k++].Add(c.lease_until);
      AddOptional(a[k++], c.ended_at, c.ended_at_ind);
    }
    if (items[i].context_changed) {
      a[k++].Add(c.context);
    } else {
      a[k++].AddNull();
    }
    writes.push_back(i);
  }
  // Executions said to be stored, (instance, seq) -> where, to find the ones missing after all.
  std::vector<std::pair<std::size_t, const ExecutionColumns*>> progress;
  if (!writes.empty()) {
    // As for the creates: the ids are read back only when a statement updated fewer rows than
    // it was given (a lease lost, an instance gone).
    std::size_t header_writes = 0;
    for (std::size_t i : writes) header_writes += items[i].header ? 1 : 0;
    bool all_updated[2] = {true, true};  // [header]
    std::unordered_set<std::string> updated;
    for (bool header : {true, false}) {
      std::vector<PgArray>& columns = header ? header_columns_ : step_columns_;
      soci::statement& statement = header ? update_headers_ : update_steps_;
      if (columns.front().empty()) continue;
      const std::size_t given = header ? header_writes : writes.size() - header_writes;
      Finish(columns);
      statement.execute();
      all_updated[header] = statement.get_affected_rows() == static_cast<long long>(given);
      while (!all_updated[header] && statement.fetch()) updated.insert(returned_id_);
    }
    for (std::size_t i : writes) {
      const InstanceRecord& r = *items[i].record;
      if (all_updated[items[i].header] || updated.count(r.id.str())) {
        out[i] = ItemOutcome{Status::Ok(), {}};
        const EncodedItem& e = *encoded[i - first];
        for (const ExecutionColumns& x : e.executions) {
          if (x.progress_only) {
            AddProgress(e.instance.id, x);
            progress.emplace_back(i, &x);
          } else {
            AddExecution(e.instance.id, x);
          }
        }
      } else {
        out[i] = ItemOutcome{WhyNotWritten(conn_, r), {}};
      }
    }
  }

  // 3. Progress of the stored executions; any not found is inserted whole with the rest.
  if (!progress.empty()) {
    Finish(progress_columns_);
    std::set<std::pair<std::string, int>> found;
    update_progress_.execute();
    while (update_progress_.fetch()) found.emplace(returned_id_, returned_seq_);
    for (const auto& [i, x] : progress) {
      const InstanceRecord& r = *items[i].record;
      if (found.count({r.id.str(), x->seq})) continue;
      ExecutionColumns whole;
      whole.Set(r.executions[static_cast<std::size_t>(x->seq)]);
      whole.seq = x->seq;
      AddExecution(r.id.str(), whole);
    }
  }

  // 4. The executions of every create and write that went through.
  if (!execution_columns_.front().empty()) {
    Finish(execution_columns_);
    upsert_executions_.execute(true);
  }
}

}  // namespace sagaflow::adapters::sql
