#include "queries.h"

#include <exception>
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
    "input, output, error, started_at, ended_at";

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

void UseInstance(soci::statement& st, InstanceColumns& c) {
  st.exchange(soci::use(c.id));
  st.exchange(soci::use(c.flow_name));
  st.exchange(soci::use(c.flow_version));
  st.exchange(soci::use(c.flow_hash));
  st.exchange(soci::use(c.business_key));
  st.exchange(soci::use(c.status));
  st.exchange(soci::use(c.compensation_status, c.compensation_status_ind));
  st.exchange(soci::use(c.input));
  st.exchange(soci::use(c.context));
  st.exchange(soci::use(c.error, c.error_ind));
  st.exchange(soci::use(c.error_code));
  st.exchange(soci::use(c.error_message));
  st.exchange(soci::use(c.owner));
  st.exchange(soci::use(c.lease_until));
  st.exchange(soci::use(c.started_at));
  st.exchange(soci::use(c.updated_at));
  st.exchange(soci::use(c.ended_at, c.ended_at_ind));
  st.exchange(soci::use(c.cursor));
  st.exchange(soci::use(c.unfinished));
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
}

void UseExecution(soci::statement& st, ExecutionColumns& c) {
  st.exchange(soci::use(c.seq));
  st.exchange(soci::use(c.state));
  st.exchange(soci::use(c.state_index));
  st.exchange(soci::use(c.kind));
  st.exchange(soci::use(c.compensates));
  st.exchange(soci::use(c.retried_for));
  st.exchange(soci::use(c.epoch));
  st.exchange(soci::use(c.attempts));
  st.exchange(soci::use(c.status));
  st.exchange(soci::use(c.compensation_status, c.compensation_status_ind));
  st.exchange(soci::use(c.superseded));
  st.exchange(soci::use(c.for_update));
  st.exchange(soci::use(c.retry_counts));
  st.exchange(soci::use(c.retry_at, c.retry_at_ind));
  st.exchange(soci::use(c.idempotency_key));
  st.exchange(soci::use(c.input));
  st.exchange(soci::use(c.output));
  st.exchange(soci::use(c.error, c.error_ind));
  st.exchange(soci::use(c.started_at));
  st.exchange(soci::use(c.ended_at, c.ended_at_ind));
}

// Prepares `st` (its into/use elements exchanged already) for repeated execution.
void Prepare(soci::statement& st, const std::string& sql) {
  st.alloc();
  st.prepare(sql);
  st.define_and_bind();
}

// ":name, :name, ..." for the columns of `list`, in order.
std::string Placeholders(const char* list) {
  std::string out;
  std::string name;
  auto flush = [&] {
    if (name.empty()) return;
    if (!out.empty()) out += ", ";
    out += ":" + name;
    name.clear();
  };
  for (const char* p = list; *p; ++p) {
    if (*p == ',') {
      flush();
    } else if (*p != ' ') {
      name += *p;
    }
  }
  flush();
  return out;
}

// What every write stores (the cursor, and what moves with it)...
// (`unfinished` changes only when a run or an operation begins or ends, which are writes with
// `header`: leaving it out of a step's write leaves the claim and owner indexes alone.)
const std::string kProgressAssignments =
    "compensation_status = :compensation_status, updated_at = :updated_at, cursor = :cursor";
// ... and what a write with `header` stores besides.
const std::string kHeaderAssignments =
    "status = :status, error = :error, error_code = :error_code, "
    "error_message = :error_message, lease_until = :lease_until, started_at = :started_at, "
    "ended_at = :ended_at, unfinished = :unfinished";

void UseProgress(soci::statement& st, InstanceColumns& c) {
  st.exchange(soci::use(c.compensation_status, c.compensation_status_ind));
  st.exchange(soci::use(c.updated_at));
  st.exchange(soci::use(c.cursor));
}

void UseHeader(soci::statement& st, InstanceColumns& c) {
  st.exchange(soci::use(c.status));
  st.exchange(soci::use(c.error, c.error_ind));
  st.exchange(soci::use(c.error_code));
  st.exchange(soci::use(c.error_message));
  st.exchange(soci::use(c.lease_until));
  st.exchange(soci::use(c.started_at));
  st.exchange(soci::use(c.ended_at, c.ended_at_ind));
  st.exchange(soci::use(c.unfinished));
}

}  // namespace

Result<InstanceRecord> ReadInstance(Connection& conn, const InstanceId& id) {
  const std::string key = id.str();
  InstanceColumns columns;
  {
    soci::statement st(conn.session());
    IntoInstance(st, columns);
    st.exchange(soci::use(key));
    Prepare(st, std::string("SELECT ") + kInstanceColumns + " FROM instances WHERE id = :id");
    if (!st.execute(true)) return NotFound("no instance " + key);
  }
  InstanceRecord record;
  SAGAFLOW_RETURN_IF_ERROR(columns.ToRecord(record));

  ExecutionColumns row;
  soci::statement st(conn.session());
  IntoExecution(st, row);
  st.exchange(soci::use(key));
  Prepare(st, std::string("SELECT ") + kExecutionColumns +
                  " FROM state_executions WHERE instance_id = :id ORDER BY seq");
  st.execute();
  while (st.fetch()) {
    if (row.seq < 0 || row.seq > 1'000'000) {
      return Internal("instance " + key + ": stored execution seq " + std::to_string(row.seq) +
                      " is corrupt");
    }
    const auto seq = static_cast<std::size_t>(row.seq);
    while (record.executions.size() <= seq) {
      record.executions.emplace_back();
      record.executions.back().id = static_cast<int>(record.executions.size() - 1);
    }
    SAGAFLOW_RETURN_IF_ERROR(row.ToExecution(id, record.executions[seq]));
  }
  return record;
}

namespace {

// Lends encoded columns to the members the statements are bound to, by swapping them in (the
// members keep their addresses; only their contents move) and back out when it goes out of
// scope, even when the statement throws: a batch that fails is retried from the same columns.
template <typename Columns>
class Lent {
 public:
  Lent(Columns& bound, Columns& encoded) : bound_(bound), encoded_(encoded) {
    std::swap(bound_, encoded_);
  }
  ~Lent() { std::swap(bound_, encoded_); }
  Lent(const Lent&) = delete;
  Lent& operator=(const Lent&) = delete;

 private:
  Columns& bound_;
  Columns& encoded_;
};

}  // namespace

InstanceWriter::InstanceWriter(Connection& conn)
    : conn_(conn),
      insert_instance_(conn.session()),
      upsert_execution_(conn.session()),
      update_execution_(conn.session()) {
  UseInstance(insert_instance_, instance_);
  // On a duplicate id or business key nothing happens and no error aborts the transaction;
  // ResolveCreateConflict then tells which.
  Prepare(insert_instance_, std::string("INSERT INTO instances (") + kInstanceColumns +
                                ") VALUES (" + Placeholders(kInstanceColumns) +
                                ") ON CONFLICT DO NOTHING");

  // The lease check is the WHERE clause: nothing of an instance another owner took over is
  // written, atomically with the check. One statement per combination of `header` and
  // `context_changed`, so that a step's write names only the columns it changes (and leaves
  // the indexed ones alone).
  updates_.reserve(4);
  for (int header = 0; header < 2; ++header) {
    for (int context = 0; context < 2; ++context) {
      soci::statement& st = updates_.emplace_back(conn.session());
      std::string sql = "UPDATE instances SET " + kProgressAssignments;
      UseProgress(st, instance_);
      if (header) {
        sql += ", " + kHeaderAssignments;
        UseHeader(st, instance_);
      }
      if (context) {
        sql += ", context = :context";
        st.exchange(soci::use(instance_.context));
      }
      sql += " WHERE id = :id AND owner = :owner";
      st.exchange(soci::use(instance_.id));
      st.exchange(soci::use(instance_.owner));
      Prepare(st, sql);
    }
  }

  // The INSERT part carries the identity and input; on a later write only the progress
  // columns change.
  upsert_execution_.exchange(soci::use(execution_instance_id_));
  UseExecution(upsert_execution_, execution_);
  Prepare(upsert_execution_,
          std::string("INSERT INTO state_executions (instance_id, ") + kExecutionColumns +
              ") VALUES (:instance_id, " + Placeholders(kExecutionColumns) +
              ") ON CONFLICT (instance_id, seq) DO UPDATE SET "
              "attempts = excluded.attempts, status = excluded.status, "
              "compensation_status = excluded.compensation_status, "
              "superseded = excluded.superseded, retry_counts = excluded.retry_counts, "
              "retry_at = excluded.retry_at, output = excluded.output, error = excluded.error, "
              "ended_at = excluded.ended_at");

  update_execution_.exchange(soci::use(execution_.attempts));
  update_execution_.exchange(soci::use(execution_.status));
  update_execution_.exchange(
      soci::use(execution_.compensation_status, execution_.compensation_status_ind));
  update_execution_.exchange(soci::use(execution_.superseded));
  update_execution_.exchange(soci::use(execution_.retry_counts));
  update_execution_.exchange(soci::use(execution_.retry_at, execution_.retry_at_ind));
  update_execution_.exchange(soci::use(execution_.output));
  update_execution_.exchange(soci::use(execution_.error, execution_.error_ind));
  update_execution_.exchange(soci::use(execution_.ended_at, execution_.ended_at_ind));
  update_execution_.exchange(soci::use(execution_instance_id_));
  update_execution_.exchange(soci::use(execution_.seq));
  Prepare(update_execution_,
          "UPDATE state_executions SET attempts = :attempts, status = :status, "
          "compensation_status = :compensation_status, superseded = :superseded, "
          "retry_counts = :retry_counts, retry_at = :retry_at, output = :output, "
          "error = :error, ended_at = :ended_at WHERE instance_id = :instance_id AND seq = :seq");
}

bool InstanceWriter::UpdateExecutionProgress() {
  update_execution_.execute(true);
  return update_execution_.get_affected_rows() > 0;
}

void InstanceWriter::UpsertExecution(const StateExecution& e, int seq) {
  execution_.Set(e);
  execution_.seq = seq;
  upsert_execution_.execute(true);
}

void InstanceWriter::Apply(const std::vector<WriteItem>& items, std::vector<ItemOutcome>& out) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    const WriteItem& item = items[i];
    if (item.create) {
      Result<InstanceId> created = Create(*item.record, item.encoded.get());
      out[i] = created.ok() ? ItemOutcome{Status::Ok(), std::move(*created)}
                            : ItemOutcome{created.status(), {}};
    } else {
      out[i] = ItemOutcome{Write(*item.record, *item.executions, item.context_changed,
                                 item.header, item.encoded.get(), item.stored_executions),
                           {}};
    }
  }
}

Status CheckCreate(const InstanceRecord& r) {
  for (std::size_t i = 0; i < r.executions.size(); ++i) {
    if (r.executions[i].id != static_cast<int>(i)) {
      return InvalidArgument("instance " + r.id.str() + ": execution at position " +
                             std::to_string(i) + " has id " + std::to_string(r.executions[i].id));
    }
  }
  return Status::Ok();
}

Status CheckWrite(const InstanceRecord& r, const engine::ExecutionIds& executions) {
  for (int seq : executions) {
    if (seq < 0 || static_cast<std::size_t>(seq) >= r.executions.size()) {
      return InvalidArgument("instance " + r.id.str() + ": the write lists execution " +
                             std::to_string(seq) + ", which the record does not have");
    }
  }
  return Status::Ok();
}

std::shared_ptr<EncodedItem> EncodeItem(const WriteItem& item) {
  const InstanceRecord& r = *item.record;
  auto out = std::make_shared<EncodedItem>();
  if (item.create) {
    if (!CheckCreate(r).ok()) return nullptr;
    out->instance.SetIdentity(r);
    out->instance.SetHeader(r);
    out->instance.SetContext(r);
    out->executions.resize(r.executions.size());
    for (std::size_t i = 0; i < r.executions.size(); ++i) {
      out->executions[i].Set(r.executions[i]);
      out->executions[i].seq = static_cast<int>(i);
    }
    return out;
  }
  if (!CheckWrite(r, *item.executions).ok()) return nullptr;
  out->instance.SetHeader(r);
  if (item.context_changed) out->instance.SetContext(r);
  out->executions.reserve(item.executions->size());
  for (int seq : *item.executions) {
    const engine::StateExecution& e = r.executions[static_cast<std::size_t>(seq)];
    if (seq < item.stored_executions) {
      out->executions.emplace_back().SetProgress(e);
    } else {
      out->executions.emplace_back().Set(e);
    }
    out->executions.back().seq = seq;
  }
  return out;
}

Result<InstanceId> InstanceWriter::Create(const InstanceRecord& r, EncodedItem* encoded) {
  SAGAFLOW_RETURN_IF_ERROR(CheckCreate(r));
  if (encoded != nullptr) {
    Lent lent(instance_, encoded->instance);
    insert_instance_.execute(true);
  } else {
    instance_.SetIdentity(r);
    instance_.SetHeader(r);
    instance_.SetContext(r);
    insert_instance_.execute(true);
  }
  if (insert_instance_.get_affected_rows() == 0) return ResolveCreateConflict(conn_, r);
  execution_instance_id_ = r.id.str();
  for (std::size_t i = 0; i < r.executions.size(); ++i) {
    if (encoded != nullptr) {
      Lent lent(execution_, encoded->executions[i]);
      upsert_execution_.execute(true);
    } else {
      UpsertExecution(r.executions[i], static_cast<int>(i));
    }
  }
  return r.id;
}

Result<InstanceId> ResolveCreateConflict(Connection& conn, const InstanceRecord& r) {
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

Status InstanceWriter::Write(const InstanceRecord& r, const engine::ExecutionIds& executions,
                             bool context_changed, bool header, EncodedItem* encoded,
                             int stored_executions) {
  SAGAFLOW_RETURN_IF_ERROR(CheckWrite(r, executions));
  soci::statement& update = updates_[(header ? 2 : 0) + (context_changed ? 1 : 0)];
  if (encoded != nullptr) {
    Lent lent(instance_, encoded->instance);
    update.execute(true);
  } else {
    instance_.SetHeader(r);
    if (context_changed) instance_.SetContext(r);
    update.execute(true);
  }
  if (update.get_affected_rows() == 0) return WhyNotWritten(conn_, r);
  execution_instance_id_ = r.id.str();
  if (encoded != nullptr) {
    for (ExecutionColumns& e : encoded->executions) {
      const bool progress_only = e.progress_only;  // read before the columns are lent
      bool done = true;
      {
        Lent lent(execution_, e);
        if (progress_only) {
          done = UpdateExecutionProgress();
        } else {
          upsert_execution_.execute(true);
        }
      }
      // Said to be stored but not found: insert it whole.
      if (!done) UpsertExecution(r.executions[static_cast<std::size_t>(e.seq)], e.seq);
    }
  } else {
    for (int seq : executions) {
      const engine::StateExecution& e = r.executions[static_cast<std::size_t>(seq)];
      if (seq < stored_executions) {
        execution_.SetProgress(e);
        execution_.seq = seq;
        if (UpdateExecutionProgress()) continue;
      }
      UpsertExecution(e, seq);
    }
  }
  return Status::Ok();
}

Status WhyNotWritten(Connection& conn, const InstanceRecord& r) {
  const std::string id = r.id.str();
  std::string owner;
  conn.session() << "SELECT owner FROM instances WHERE id = :id", soci::use(id), soci::into(owner);
  if (!conn.session().got_data()) return NotFound("instance " + id + " not found");
  return FailedPrecondition("lease lost: instance " + id + " is now owned by '" + owner + "'");
}

}  // namespace sagaflow::adapters::sql
