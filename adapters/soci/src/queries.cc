#include "queries.h"

#include <soci/sqlite3/soci-sqlite3.h>

#include <exception>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace sagaflow::adapters::sql {

using engine::InstanceRecord;
using engine::StateExecution;

namespace {

// Columns in the order the Into/Use helpers bind them.
constexpr const char* kInstanceColumns =
    "id, flow_name, flow_version, flow_hash, business_key, status, compensation_status, input, "
    "context, error, error_code, error_message, owner, lease_until, started_at, updated_at, "
    "ended_at, cursor, unfinished";
constexpr const char* kExecutionColumns =
    "seq, state, state_index, kind, compensates, retried_for, epoch, attempts, status, "
    "compensation_status, superseded, for_update, retry_counts, retry_at, idempotency_key, "
    "input, output, error, started_at, ended_at, deadline_at";

void IntoInstance(soci::statement& st, InstanceColumns& c) {
  st.exchange(soci::into(c.id));
  st.exchange(soci::into(c.flow_name));
  st.exchange(soci::into(c.flow_version));
  st.exchange(soci::into(c.flow_hash));
  st.exchange(soci::into(c.business_key));
  st.exchange(soci::into(c.status));
  st.exchange(soci::into(c.compensation_status, c.compensation_status_ind));
  st.exchange(soci::into(c.input));
  st.exchange(soci::into(c.context));
  st.exchange(soci::into(c.error, c.error_ind));
  st.exchange(soci::into(c.error_code));
  st.exchange(soci::into(c.error_message));
  st.exchange(soci::into(c.owner));
  st.exchange(soci::into(c.lease_until));
  st.exchange(soci::into(c.started_at));
  st.exchange(soci::into(c.updated_at));
  st.exchange(soci::into(c.ended_at, c.ended_at_ind));
  st.exchange(soci::into(c.cursor));
  st.exchange(soci::into(c.unfinished));
}

void IntoExecution(soci::statement& st, ExecutionColumns& c) {
  st.exchange(soci::into(c.seq));
  st.exchange(soci::into(c.state));
  st.exchange(soci::into(c.state_index));
  st.exchange(soci::into(c.kind));
  st.exchange(soci::into(c.compensates));
  st.exchange(soci::into(c.retried_for));
  st.exchange(soci::into(c.epoch));
  st.exchange(soci::into(c.attempts));
  st.exchange(soci::into(c.status));
  st.exchange(soci::into(c.compensation_status, c.compensation_status_ind));
  st.exchange(soci::into(c.superseded));
  st.exchange(soci::into(c.for_update));
  st.exchange(soci::into(c.retry_counts));
  st.exchange(soci::into(c.retry_at, c.retry_at_ind));
  st.exchange(soci::into(c.idempotency_key));
  st.exchange(soci::into(c.input));
  st.exchange(soci::into(c.output));
  st.exchange(soci::into(c.error, c.error_ind));
  st.exchange(soci::into(c.started_at));
  st.exchange(soci::into(c.ended_at, c.ended_at_ind));
  st.exchange(soci::into(c.deadline_at, c.deadline_at_ind));
}

// Prepares `st` (its into/use elements exchanged already) for repeated execution.
void Prepare(soci::statement& st, const std::string& sql) {
  st.alloc();
  st.prepare(sql);
  st.define_and_bind();
}

// What every write stores (the cursor, and what moves with it), bound by PutStepColumns...
// (`unfinished` changes only when a run or an operation begins or ends, which are writes with
// `header`: leaving it out of a step's write leaves the claim and owner indexes alone.)
constexpr const char* kProgressAssignments = "compensation_status = ?, updated_at = ?, cursor = ?";
// ... and what a write with `header` stores besides, bound by PutHeaderColumns.
constexpr const char* kHeaderAssignments =
    "status = ?, error = ?, error_code = ?, error_message = ?, lease_until = ?, ended_at = ?, "
    "unfinished = ?, owner = ?";

}  // namespace

std::vector<Result<InstanceRecord>> ReadInstances(Connection& conn,
                                                  std::span<const InstanceId> ids) {
  std::vector<Result<InstanceRecord>> out;
  out.reserve(ids.size());
  // Where each key's record goes: its first position in `ids` (a repeated id is copied after).
  std::unordered_map<std::string_view, std::size_t> slot;
  std::string in = "(";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out.emplace_back(NotFound("no instance " + ids[i].str()));
    if (!slot.emplace(ids[i].str(), i).second) continue;
    if (slot.size() > 1) in += ", ";
    in += ":k" + std::to_string(i);
  }
  in += ")";
  if (slot.empty()) return out;
  auto use_keys = [&](soci::statement& st) {
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (slot.at(ids[i].str()) == i) st.exchange(soci::use(ids[i].str()));
    }
  };
  {
    InstanceColumns columns;
    soci::statement st(conn.session());
    IntoInstance(st, columns);
    use_keys(st);
    Prepare(st, std::string("SELECT ") + kInstanceColumns + " FROM instances WHERE id IN " + in);
    st.execute();
    while (st.fetch()) {
      auto it = slot.find(columns.id);
      if (it == slot.end()) continue;  // cannot happen: the query selects only these keys
      InstanceRecord record;
      Status s = columns.ToRecord(record);
      out[it->second] = s.ok() ? Result<InstanceRecord>(std::move(record)) : std::move(s);
    }
  }
  std::string instance_id;
  ExecutionColumns row;
  soci::statement st(conn.session());
  st.exchange(soci::into(instance_id));
  IntoExecution(st, row);
  use_keys(st);
  Prepare(st, std::string("SELECT instance_id, ") + kExecutionColumns +
                  " FROM state_executions WHERE instance_id IN " + in +
                  " ORDER BY instance_id, seq");
  st.execute();
  while (st.fetch()) {
    auto it = slot.find(instance_id);
    if (it == slot.end()) continue;
    Result<InstanceRecord>& record = out[it->second];
    if (!record.ok()) continue;  // not found (written meanwhile: not in this snapshot) or corrupt
    if (row.seq < 0 || row.seq > 1'000'000) {
      record = Internal("instance " + instance_id + ": stored execution seq " +
                        std::to_string(row.seq) + " is corrupt");
      continue;
    }
    const auto seq = static_cast<std::size_t>(row.seq);
    std::vector<StateExecution>& executions = record->executions;
    while (executions.size() <= seq) {
      executions.emplace_back();
      executions.back().id = static_cast<int>(executions.size() - 1);
    }
    if (Status s = row.ToExecution(ids[it->second], executions[seq]); !s.ok()) {
      record = std::move(s);
    }
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::size_t first = slot.at(ids[i].str());
    if (first != i) out[i] = out[first];
  }
  return out;
}

Result<InstanceRecord> ReadInstance(Connection& conn, const InstanceId& id) {
  return std::move(ReadInstances(conn, std::span<const InstanceId>(&id, 1)).front());
}

// ---------------------------------------------------------------------------------------------
// The committer's writer, on SQLite's own API: every value bound in place from the encoded
// columns (no copy), the statements prepared once per connection. (SOCI serves everything
// else; its per-statement binding copied every value of every row the committer wrote.)

namespace {

[[noreturn]] void ThrowSqlite(sqlite3* db, int rc, const char* what) {
  throw soci::sqlite3_soci_error(
      std::string(what) + ": " + sqlite_api::sqlite3_errmsg(db), rc);
}

}  // namespace

InstanceWriter::Statement::Statement(sqlite3* db, const std::string& sql) : db_(db) {
  const int rc = sqlite_api::sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size() + 1),
                                                SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) ThrowSqlite(db, rc, ("preparing " + sql).c_str());
}

InstanceWriter::Statement::~Statement() { sqlite_api::sqlite3_finalize(stmt_); }

void InstanceWriter::Statement::Text(const std::string& value) {
  Check(sqlite_api::sqlite3_bind_text(stmt_, ++next_, value.data(),
                                      static_cast<int>(value.size()),
                                      static_cast<sqlite_api::sqlite3_destructor_type>(nullptr)));
}

void InstanceWriter::Statement::Text(const std::string& value, soci::indicator ind) {
  if (ind == soci::i_null) return Null();
  Text(value);
}

void InstanceWriter::Statement::Int(long long value) {
  Check(sqlite_api::sqlite3_bind_int64(stmt_, ++next_, value));
}

void InstanceWriter::Statement::Int(long long value, soci::indicator ind) {
  if (ind == soci::i_null) return Null();
  Int(value);
}

void InstanceWriter::Statement::Null() { Check(sqlite_api::sqlite3_bind_null(stmt_, ++next_)); }

void InstanceWriter::Statement::Check(int rc) {
  if (rc != SQLITE_OK) ThrowSqlite(db_, rc, "binding a value");
}

int InstanceWriter::Statement::Run() {
  const int rc = sqlite_api::sqlite3_step(stmt_);
  next_ = 0;
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    const int code = sqlite_api::sqlite3_extended_errcode(db_);
    std::string message = sqlite_api::sqlite3_errmsg(db_);
    sqlite_api::sqlite3_reset(stmt_);
    throw soci::sqlite3_soci_error(message, code);
  }
  sqlite_api::sqlite3_reset(stmt_);
  // The bound values point into columns the caller owns: no statement keeps them.
  sqlite_api::sqlite3_clear_bindings(stmt_);
  return sqlite_api::sqlite3_changes(db_);
}

namespace {

sqlite3* NativeHandle(Connection& conn) {
  return static_cast<soci::sqlite3_session_backend*>(conn.session().get_backend())->conn_;
}

std::string Questions(const char* list) {
  std::string out = "?";
  for (const char* c = list; *c != '\0'; ++c) {
    if (*c == ',') out += ", ?";
  }
  return out;
}

}  // namespace

InstanceWriter::InstanceWriter(Connection& conn) : conn_(conn) {
  sqlite3* db = NativeHandle(conn);
  // On a duplicate id or business key nothing happens and no error aborts the transaction;
  // ResolveCreateConflict then tells which.
  insert_instance_ = std::make_unique<Statement>(
      db, std::string("INSERT INTO instances (") + kInstanceColumns + ") VALUES (" +
              Questions(kInstanceColumns) + ") ON CONFLICT DO NOTHING");
  // The lease check is the WHERE clause: nothing of an instance another owner took over is
  // written, atomically with the check. One statement per combination of `header` and
  // `context_changed`, so that a step's write names only the columns it changes (and leaves
  // the indexed ones alone).
  for (int header = 0; header < 2; ++header) {
    for (int context = 0; context < 2; ++context) {
      std::string sql = std::string("UPDATE instances SET ") + kProgressAssignments;
      if (header) sql += std::string(", ") + kHeaderAssignments;
      if (context) sql += ", context = ?";
      sql += " WHERE id = ? AND owner = ?";
      updates_[static_cast<std::size_t>(header * 2 + context)] =
          std::make_unique<Statement>(db, sql);
    }
  }
  // The INSERT part carries the identity and input; on a later write only the progress
  // columns change.
  upsert_execution_ = std::make_unique<Statement>(
      db, std::string("INSERT INTO state_executions (instance_id, ") + kExecutionColumns +
              ") VALUES (?, " + Questions(kExecutionColumns) + ") " + kUpsertExecutionProgress);
  update_execution_ = std::make_unique<Statement>(
      db,
      "UPDATE state_executions SET attempts = ?, status = ?, compensation_status = ?, "
      "superseded = ?, retry_counts = ?, retry_at = ?, output = ?, error = ?, ended_at = ?, "
      "deadline_at = ? WHERE instance_id = ? AND seq = ?");
  // A row stored already (the batch applied again) is kept as stored.
  insert_dispatch_ = std::make_unique<Statement>(
      db, std::string("INSERT INTO dispatches (") + kDispatchColumns + ") VALUES (" +
              Questions(kDispatchColumns) + ") ON CONFLICT DO NOTHING");
}

InstanceWriter::~InstanceWriter() = default;

void InstanceWriter::InsertInstance(const InstanceColumns& c) {
  PutInstanceColumns(c, *insert_instance_);
}

int InstanceWriter::UpdateInstance(const InstanceColumns& c, bool header, bool context) {
  Statement& st = *updates_[(header ? 2 : 0) + (context ? 1 : 0)];
  PutStepColumns(c, st);
  if (header) PutHeaderColumns(c, st);
  if (context) st.Text(c.context);
  st.Text(c.id);
  st.Text(c.owner);
  return st.Run();
}

void InstanceWriter::UpsertExecution(const std::string& instance_id, const ExecutionColumns& c) {
  PutExecutionColumns(instance_id, c, *upsert_execution_);
  upsert_execution_->Run();
}

bool InstanceWriter::UpdateExecutionProgress(const std::string& instance_id,
                                             const ExecutionColumns& c) {
  Statement& st = *update_execution_;
  PutProgressColumns(c, st);
  st.Text(instance_id);
  st.Int(c.seq);
  return st.Run() > 0;
}

void InstanceWriter::InsertDispatches(const EncodedItem& encoded) {
  for (const DispatchColumns& d : encoded.dispatches) {
    PutDispatchColumns(d, *insert_dispatch_);
    insert_dispatch_->Run();
  }
}

void InstanceWriter::Apply(const std::vector<const WriteItem*>& items, std::vector<ItemOutcome>& out) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    const WriteItem& item = *items[i];
    if (item.create) {
      Result<InstanceId> created = Create(item);
      out[i] = created.ok() ? ItemOutcome{Status::Ok(), std::move(*created)}
                            : ItemOutcome{created.status(), {}};
    } else {
      out[i] = ItemOutcome{Write(item), {}};
    }
  }
}

namespace {
// Refuses `item` when one of `dispatches` is not of its instance; else encodes them.
bool EncodeDispatches(WriteItem& item, std::span<const engine::DispatchRecord> dispatches,
                      EncodedItem& out) {
  for (const engine::DispatchRecord& d : dispatches) {
    if (d.delivery.instance != item.id) {
      item.refused = InvalidArgument("instance " + item.id.str() +
                                     ": the write stores a dispatch of instance " +
                                     d.delivery.instance.str());
      return false;
    }
  }
  out.dispatches.resize(dispatches.size());
  for (std::size_t i = 0; i < dispatches.size(); ++i) out.dispatches[i].Set(dispatches[i]);
  return true;
}
}  // namespace

WriteItem EncodeCreate(const InstanceRecord& r, std::span<const engine::DispatchRecord> dispatches) {
  WriteItem item;
  item.id = r.id;
  item.create = true;
  item.flow_name = r.flow_name;
  item.business_key = r.business_key;
  item.input = r.input;
  for (std::size_t i = 0; i < r.executions.size(); ++i) {
    if (r.executions[i].id != static_cast<int>(i)) {
      item.refused = InvalidArgument("instance " + r.id.str() + ": execution at position " +
                                     std::to_string(i) + " has id " +
                                     std::to_string(r.executions[i].id));
      return item;
    }
  }
  auto out = std::make_shared<EncodedItem>();
  out->instance.SetIdentity(r);
  out->instance.SetHeader(r);
  if (&r.context.get() == &r.input.get()) {
    out->instance.context = out->instance.input;  // still the input itself: dumped once
  } else {
    out->instance.SetContext(r);
  }
  out->executions.resize(r.executions.size());
  for (std::size_t i = 0; i < r.executions.size(); ++i) {
    out->executions[i].Set(r.executions[i]);
    out->executions[i].seq = static_cast<int>(i);
  }
  if (!EncodeDispatches(item, dispatches, *out)) return item;
  item.encoded = std::move(out);
  return item;
}

WriteItem EncodeBatch(const engine::WriteBatch& b) {
  WriteItem item;
  item.id = b.instance;
  item.header = b.header.has_value();
  item.context_changed = b.context.has_value();
  for (const engine::StateExecution& e : b.new_executions) {
    if (e.id < 0 || e.state.empty()) {
      item.refused = InvalidArgument("instance " + b.instance.str() +
                                     ": the batch writes execution " + std::to_string(e.id) +
                                     ", which has no state");
      return item;
    }
  }
  for (const engine::ExecutionProgress& p : b.progress) {
    if (p.id < 0) {
      item.refused = InvalidArgument("instance " + b.instance.str() +
                                     ": the batch changes execution " + std::to_string(p.id) +
                                     ", which is not stored");
      return item;
    }
  }
  auto out = std::make_shared<EncodedItem>();
  out->instance.SetBatch(b);
  out->executions.reserve(b.new_executions.size() + b.progress.size());
  for (const engine::StateExecution& e : b.new_executions) {
    out->executions.emplace_back().Set(e);
    out->executions.back().seq = e.id;
  }
  for (const engine::ExecutionProgress& p : b.progress) {
    out->executions.emplace_back().SetProgress(p);
  }
  if (!EncodeDispatches(item, b.dispatches, *out)) return item;
  for (const InstanceRecord& child : b.children) {
    if (child.id == b.instance) {
      item.refused = InvalidArgument("instance " + b.instance.str() +
                                     ": the batch creates the instance itself as its child");
      return item;
    }
    WriteItem encoded = EncodeCreate(child, {});
    if (!encoded.refused.ok()) {
      item.refused = encoded.refused;
      return item;
    }
    item.children.push_back(std::move(encoded));
  }
  item.encoded = std::move(out);
  return item;
}

Result<InstanceId> InstanceWriter::Create(const WriteItem& item) {
  if (!item.refused.ok()) return item.refused;
  const EncodedItem& encoded = *item.encoded;
  InsertInstance(encoded.instance);
  if (insert_instance_->Run() == 0) return ResolveCreateConflict(conn_, item);
  for (const ExecutionColumns& e : encoded.executions) UpsertExecution(encoded.instance.id, e);
  InsertDispatches(encoded);
  return item.id;
}

Result<InstanceId> ResolveCreateConflict(Connection& conn, const WriteItem& r) {
  soci::session& session = conn.session();
  if (!r.business_key.empty()) {
    std::string existing_id;
    std::string existing_input;
    session << "SELECT id, input FROM instances WHERE flow_name = :flow AND business_key = :key",
        soci::use(r.flow_name), soci::use(r.business_key), soci::into(existing_id),
        soci::into(existing_input);
    if (session.got_data()) {
      Json stored;
      try {
        stored = Json::parse(existing_input);
      } catch (const std::exception& e) {
        return Internal("instance " + existing_id +
                        ": stored input is corrupt: " + JsonErrorMessage(e));
      }
      if (stored != r.input.get()) {
        return Conflict("business key '" + r.business_key + "' of flow '" + r.flow_name +
                        "' is already used by instance " + existing_id + " with a different input");
      }
      return InstanceId(existing_id);
    }
  }
  // The id is taken. A create whose commit was reported lost and is retried finds its own
  // instance: same flow, business key and input.
  const std::string id = r.id.str();
  std::string flow_name;
  std::string business_key;
  std::string existing_input;
  session << "SELECT flow_name, business_key, input FROM instances WHERE id = :id", soci::use(id),
      soci::into(flow_name), soci::into(business_key), soci::into(existing_input);
  if (!session.got_data()) {
    return Unavailable("instance " + id + " was neither created nor found; retry");
  }
  bool same = flow_name == r.flow_name && business_key == r.business_key;
  if (same) {
    try {
      same = Json::parse(existing_input) == r.input.get();
    } catch (const std::exception&) {
      same = false;
    }
  }
  if (same) return r.id;
  return AlreadyExists("instance " + id + " already exists");
}

Status InstanceWriter::Write(const WriteItem& item) {
  if (!item.refused.ok()) return item.refused;
  const EncodedItem& encoded = *item.encoded;
  if (UpdateInstance(encoded.instance, item.header, item.context_changed) == 0) {
    return WhyNotWritten(conn_, item.id);
  }
  const std::string& id = encoded.instance.id;
  for (const ExecutionColumns& e : encoded.executions) {
    if (!e.progress_only) {
      UpsertExecution(id, e);
    } else if (!UpdateExecutionProgress(id, e)) {
      throw ItemRefused(InvalidArgument("instance " + id + ": the batch changes execution " +
                                        std::to_string(e.seq) + ", which is not stored"));
    }
  }
  InsertDispatches(encoded);
  for (const WriteItem& child : item.children) RequireChildCreated(item.id, child, Create(child));
  return Status::Ok();
}

void RequireChildCreated(const InstanceId& parent, const WriteItem& child,
                         const Result<InstanceId>& outcome) {
  if (!outcome.ok()) throw ItemRefused(outcome.status());
  if (*outcome == child.id) return;  // created, or stored already by this batch
  // Its business key resolved to another instance (the same input): not this batch's child.
  throw ItemRefused(Conflict("instance " + parent.str() + ": its child " + child.id.str() +
                             " has business key '" + child.business_key + "' of flow '" +
                             child.flow_name + "', already used by instance " + outcome->str()));
}

Status WhyNotWritten(Connection& conn, const InstanceId& instance) {
  const std::string id = instance.str();
  std::string owner;
  conn.session() << "SELECT owner FROM instances WHERE id = :id", soci::use(id), soci::into(owner);
  if (!conn.session().got_data()) return NotFound("instance " + id + " not found");
  return FailedPrecondition("lease lost: instance " + id + " is now owned by '" + owner + "'");
}

}  // namespace sagaflow::adapters::sql
