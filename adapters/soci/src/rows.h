#pragma once

// The columns of an instances row and of a state_executions row as statements bind them, and
// their conversion from and to records. Internal to adapters/soci.

#include <soci/soci.h>

#include <memory>
#include <string>
#include <vector>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/engine/state_store.h"

namespace sagaflow::adapters::sql {

// Stored times: int64 nanoseconds since the Unix epoch.
inline long long ToNanos(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint FromNanos(long long ns) { return TimePoint(Duration(ns)); }

// JSON as stored. Strings that are not valid UTF-8 are stored with U+FFFD in place of the bad
// bytes (JSON text cannot hold them).
std::string DumpJson(const Json& value);

// Every column of `instances`, in the order of kInstanceColumns.
struct InstanceColumns {
  std::string id;
  std::string flow_name;
  std::string flow_version;
  std::string flow_hash;
  std::string business_key;
  std::string status;
  std::string compensation_status;
  soci::indicator compensation_status_ind = soci::i_null;
  std::string input;
  std::string context;
  std::string error;
  soci::indicator error_ind = soci::i_null;
  std::string error_code;
  std::string error_message;
  std::string owner;
  long long lease_until = 0;
  long long started_at = 0;
  long long updated_at = 0;
  long long ended_at = 0;
  soci::indicator ended_at_ind = soci::i_null;
  std::string cursor;
  int unfinished = 0;
  // Not a column: the owner a write with `header` leaves (owner, or "" when it parks).
  std::string new_owner;

  // The header fields (everything but the executions); the input and context only when asked,
  // since encoding them is the costly part of a write.
  void SetHeader(const engine::InstanceRecord& r);
  void SetIdentity(const engine::InstanceRecord& r);  // id, flow, business key, input, owner
  void SetContext(const engine::InstanceRecord& r);
  // What a batch assigns: the step columns, the header ones when it has a header, the context
  // when it carries one.
  void SetBatch(const engine::WriteBatch& b);

  // The record these columns describe, without executions. kInternal naming the instance and
  // the column when a stored value is corrupt.
  Status ToRecord(engine::InstanceRecord& r) const;
};

// Every column of `state_executions` but instance_id.
struct ExecutionColumns {
  int seq = 0;
  std::string state;
  int state_index = 0;
  std::string kind;
  int compensates = -1;
  int retried_for = -1;
  int epoch = 0;
  int attempts = 0;
  std::string status;
  std::string compensation_status;
  soci::indicator compensation_status_ind = soci::i_null;
  int superseded = 0;
  int for_update = 0;
  std::string retry_counts;
  long long retry_at = 0;
  soci::indicator retry_at_ind = soci::i_null;
  long long deadline_at = 0;
  soci::indicator deadline_at_ind = soci::i_null;
  std::string idempotency_key;
  std::string input;
  std::string output;
  std::string error;
  soci::indicator error_ind = soci::i_null;
  long long started_at = 0;
  long long ended_at = 0;
  soci::indicator ended_at_ind = soci::i_null;

  // Set when encoded with SetProgress (not a column).
  bool progress_only = false;

  void Set(const engine::StateExecution& e);
  // The columns a later write changes (seq and progress), for an execution stored already.
  void SetProgress(const engine::ExecutionProgress& p);
  // kInternal naming the instance, the execution and the column when a value is corrupt.
  Status ToExecution(const InstanceId& instance, engine::StateExecution& e) const;
};

// Every column of `dispatches` (the outbox), in the order of PutDispatchColumns.
struct DispatchColumns {
  std::string instance_id;
  int seq = 0;  // the execution
  int attempt = 0;
  std::string state;
  std::string task;
  std::string idempotency_key;
  std::string input;
  long long deadline_at = 0;
  soci::indicator deadline_at_ind = soci::i_null;
  long long due_at = 0;

  void Set(const engine::DispatchRecord& d);
  // kInternal naming the instance, the execution and the column when a value is corrupt.
  Status ToRecord(engine::DispatchRecord& d) const;
};

// The columns of `dispatches`, in PutDispatchColumns' order.
inline constexpr const char* kDispatchColumns =
    "instance_id, seq, attempt, state, task, idempotency_key, input, deadline_at, due_at";

// A row's values in column order, for the writers: each calls sink.Text(value) or
// sink.Int(value), with the column's indicator when it is nullable. SQLite's writer binds them
// to a statement, PostgreSQL's appends them to one array per column.
template <typename Sink>
void PutInstanceColumns(const InstanceColumns& c, Sink& sink) {  // all of them (an INSERT)
  sink.Text(c.id);
  sink.Text(c.flow_name);
  sink.Text(c.flow_version);
  sink.Text(c.flow_hash);
  sink.Text(c.business_key);
  sink.Text(c.status);
  sink.Text(c.compensation_status, c.compensation_status_ind);
  sink.Text(c.input);
  sink.Text(c.context);
  sink.Text(c.error, c.error_ind);
  sink.Text(c.error_code);
  sink.Text(c.error_message);
  sink.Text(c.owner);
  sink.Int(c.lease_until);
  sink.Int(c.started_at);
  sink.Int(c.updated_at);
  sink.Int(c.ended_at, c.ended_at_ind);
  sink.Text(c.cursor);
  sink.Int(c.unfinished);
}
template <typename Sink>
void PutExecutionColumns(const std::string& instance_id, const ExecutionColumns& c, Sink& sink) {
  sink.Text(instance_id);
  sink.Int(c.seq);
  sink.Text(c.state);
  sink.Int(c.state_index);
  sink.Text(c.kind);
  sink.Int(c.compensates);
  sink.Int(c.retried_for);
  sink.Int(c.epoch);
  sink.Int(c.attempts);
  sink.Text(c.status);
  sink.Text(c.compensation_status, c.compensation_status_ind);
  sink.Int(c.superseded);
  sink.Int(c.for_update);
  sink.Text(c.retry_counts);
  sink.Int(c.retry_at, c.retry_at_ind);
  sink.Text(c.idempotency_key);
  sink.Text(c.input);
  sink.Text(c.output);
  sink.Text(c.error, c.error_ind);
  sink.Int(c.started_at);
  sink.Int(c.ended_at, c.ended_at_ind);
  sink.Int(c.deadline_at, c.deadline_at_ind);
}

template <typename Sink>
void PutDispatchColumns(const DispatchColumns& c, Sink& sink) {
  sink.Text(c.instance_id);
  sink.Int(c.seq);
  sink.Int(c.attempt);
  sink.Text(c.state);
  sink.Text(c.task);
  sink.Text(c.idempotency_key);
  sink.Text(c.input);
  sink.Int(c.deadline_at, c.deadline_at_ind);
  sink.Int(c.due_at);
}

// What every write of an instance assigns (a step's), in this order ...
template <typename Sink>
void PutStepColumns(const InstanceColumns& c, Sink& sink) {
  sink.Text(c.compensation_status, c.compensation_status_ind);
  sink.Int(c.updated_at);
  sink.Text(c.cursor);
}
// ... and what a write with `header` assigns besides.
template <typename Sink>
void PutHeaderColumns(const InstanceColumns& c, Sink& sink) {
  sink.Text(c.status);
  sink.Text(c.error, c.error_ind);
  sink.Text(c.error_code);
  sink.Text(c.error_message);
  sink.Int(c.lease_until);
  sink.Int(c.ended_at, c.ended_at_ind);
  sink.Int(c.unfinished);
  sink.Text(c.new_owner);
}
// What a later write of a stored execution assigns (its progress), in this order.
template <typename Sink>
void PutProgressColumns(const ExecutionColumns& c, Sink& sink) {
  sink.Int(c.attempts);
  sink.Text(c.status);
  sink.Text(c.compensation_status, c.compensation_status_ind);
  sink.Int(c.superseded);
  sink.Text(c.retry_counts);
  sink.Int(c.retry_at, c.retry_at_ind);
  sink.Text(c.output);
  sink.Text(c.error, c.error_ind);
  sink.Int(c.ended_at, c.ended_at_ind);
  sink.Int(c.deadline_at, c.deadline_at_ind);
}
// Both writers' upsert of executions: identity and input by the first write, progress always.
inline constexpr const char* kUpsertExecutionProgress =
    "ON CONFLICT (instance_id, seq) DO UPDATE SET "
    "attempts = excluded.attempts, status = excluded.status, "
    "compensation_status = excluded.compensation_status, "
    "superseded = excluded.superseded, retry_counts = excluded.retry_counts, "
    "retry_at = excluded.retry_at, output = excluded.output, error = excluded.error, "
    "ended_at = excluded.ended_at, deadline_at = excluded.deadline_at";

// The columns of one create or write, encoded from the record or the batch ahead of the commit: on the
// submitting thread, so that the committer thread (which every write of the process goes
// through) only binds and executes. `executions` follow the write's list (all, for a create).
struct EncodedItem {
  InstanceColumns instance;
  std::vector<ExecutionColumns> executions;
  std::vector<DispatchColumns> dispatches;
};

}  // namespace sagaflow::adapters::sql
