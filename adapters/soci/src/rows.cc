#include "rows.h"

#include <exception>
#include <optional>
#include <utility>

#include "sagaflow/engine/record_codec.h"

namespace sagaflow::adapters::sql {

using engine::InstanceRecord;
using engine::RunStatus;
using engine::StateExecution;

namespace {

std::string StatusText(RunStatus s) { return std::string(engine::RunStatusCode(s)); }

void SetOptionalStatus(const std::optional<RunStatus>& s, std::string& value,
                       soci::indicator& ind) {
  if (s) {
    value = StatusText(*s);
    ind = soci::i_ok;
  } else {
    value.clear();
    ind = soci::i_null;
  }
}

void SetOptionalFailure(const std::optional<TaskFailure>& f, std::string& value,
                        soci::indicator& ind) {
  if (f) {
    value = DumpJson(engine::TaskFailureToJson(*f));
    ind = soci::i_ok;
  } else {
    value.clear();
    ind = soci::i_null;
  }
}

void SetOptionalTime(const std::optional<TimePoint>& t, long long& value, soci::indicator& ind) {
  if (t) {
    value = ToNanos(*t);
    ind = soci::i_ok;
  } else {
    value = 0;
    ind = soci::i_null;
  }
}

// Reads stored values, collecting the first error with the place it was found.
class Decoder {
 public:
  explicit Decoder(std::string where) : where_(std::move(where)) {}

  RunStatus Code(const std::string& column, const std::string& value) {
    if (std::optional<RunStatus> s = engine::ParseRunStatus(value)) return *s;
    Fail(column, "'" + value + "' is not a status code (RU SU FA UN SK)");
    return RunStatus::kUnknown;
  }
  std::optional<RunStatus> OptionalStatus(const std::string& column, const std::string& value,
                                          soci::indicator ind) {
    if (ind != soci::i_ok) return std::nullopt;
    return Code(column, value);
  }
  Json ParseJson(const std::string& column, const std::string& text) {
    try {
      return Json::parse(text);
    } catch (const std::exception& e) {
      Fail(column, "not JSON: " + JsonErrorMessage(e));
      return Json();
    }
  }
  std::optional<TaskFailure> OptionalFailure(const std::string& column, const std::string& text,
                                             soci::indicator ind) {
    if (ind != soci::i_ok) return std::nullopt;
    Json json = ParseJson(column, text);
    if (!ok()) return std::nullopt;
    Result<TaskFailure> failure = engine::TaskFailureFromJson(json);
    if (!failure.ok()) {
      Fail(column, failure.status().message());
      return std::nullopt;
    }
    return *failure;
  }
  static std::optional<TimePoint> OptionalTime(long long value, soci::indicator ind) {
    if (ind != soci::i_ok) return std::nullopt;
    return FromNanos(value);
  }
  void Fail(const std::string& column, const std::string& what) {
    if (status_.ok()) status_ = Internal(where_ + ": stored " + column + " is corrupt: " + what);
  }
  bool ok() const { return status_.ok(); }
  const sagaflow::Status& status() const { return status_; }

 private:
  std::string where_;
  sagaflow::Status status_;
};

// Most executions have used no retry: "[]" without building and dumping an array.
std::string RetryCountsText(const std::vector<int>& counts) {
  return counts.empty() ? std::string("[]") : DumpJson(engine::RetryCountsToJson(counts));
}

// An execution still running has no output: "null" without dumping.
std::string OutputText(const SharedJson& output) {
  return output->is_null() ? std::string("null") : DumpJson(output);
}

}  // namespace

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void InstanceColumns::SetIdentity(const InstanceRecord& r) {
  id = r.id.str();
  flow_name = r.flow_name;
  flow_version = r.flow_version;
  flow_hash = r.flow_hash;
  business_key = r.business_key;
  input = DumpJson(r.input);
  owner = r.owner;
}

void InstanceColumns::SetContext(const InstanceRecord& r) { context = DumpJson(r.context); }

void InstanceColumns::SetHeader(const InstanceRecord& r) {
  id = r.id.str();
  owner = r.owner;
  status = StatusText(r.status);
  SetOptionalStatus(r.compensation_status, compensation_status, compensation_status_ind);
  SetOptionalFailure(r.error, error, error_ind);
  error_code = r.error_code;
  error_message = r.error_message;
  lease_until = ToNanos(r.lease_until);
  started_at = ToNanos(r.started_at);
  updated_at = ToNanos(r.updated_at);
  SetOptionalTime(r.ended_at, ended_at, ended_at_ind);
  cursor = engine::CursorToText(r.cursor);
  unfinished = r.finished() ? 0 : 1;
  new_owner = r.owner;
}

void InstanceColumns::SetBatch(const engine::WriteBatch& b) {
  id = b.instance.str();
  owner = b.owner;
  SetOptionalStatus(b.compensation_status, compensation_status, compensation_status_ind);
  updated_at = ToNanos(b.updated_at);
  cursor = engine::CursorToText(b.cursor);
  if (b.header) {
    const engine::InstanceHeader& h = *b.header;
    status = StatusText(h.status);
    SetOptionalFailure(h.error, error, error_ind);
    error_code = h.error_code;
    error_message = h.error_message;
    lease_until = ToNanos(h.lease_until);
    SetOptionalTime(h.ended_at, ended_at, ended_at_ind);
    unfinished = b.cursor.phase == engine::Phase::kFinished ? 0 : 1;
    new_owner = h.release_owner ? std::string() : b.owner;
  }
  if (b.context) context = DumpJson(b.context->get());
}

Status InstanceColumns::ToRecord(InstanceRecord& r) const {
  Decoder d("instance " + id);
  r.id = InstanceId(id);
  r.flow_name = flow_name;
  r.flow_version = flow_version;
  r.flow_hash = flow_hash;
  r.business_key = business_key;
  r.status = d.Code("status", status);
  r.compensation_status =
      d.OptionalStatus("compensation_status", compensation_status, compensation_status_ind);
  r.input = d.ParseJson("input", input);
  r.context = d.ParseJson("context", context);
  r.error = d.OptionalFailure("error", error, error_ind);
  r.error_code = error_code;
  r.error_message = error_message;
  r.owner = owner;
  r.lease_until = FromNanos(lease_until);
  r.started_at = FromNanos(started_at);
  r.updated_at = FromNanos(updated_at);
  r.ended_at = Decoder::OptionalTime(ended_at, ended_at_ind);
  Json cursor_json = d.ParseJson("cursor", cursor);
  if (d.ok()) {
    Result<engine::Cursor> c = engine::CursorFromJson(cursor_json);
    if (c.ok()) {
      r.cursor = std::move(*c);
    } else {
      d.Fail("cursor", c.status().message());
    }
  }
  return d.status();
}

void ExecutionColumns::Set(const StateExecution& e) {
  progress_only = false;
  seq = e.id;
  state = e.state.str();
  state_index = e.state_index;
  kind = std::string(engine::ExecutionKindName(e.kind));
  compensates = e.compensates;
  retried_for = e.retried_for;
  epoch = e.epoch;
  attempts = e.attempts;
  status = StatusText(e.status);
  SetOptionalStatus(e.compensation_status, compensation_status, compensation_status_ind);
  superseded = e.superseded ? 1 : 0;
  for_update = e.for_update ? 1 : 0;
  retry_counts = RetryCountsText(e.retry_counts);
  SetOptionalTime(e.retry_at, retry_at, retry_at_ind);
  SetOptionalTime(e.deadline_at, deadline_at, deadline_at_ind);
  idempotency_key = e.idempotency_key;
  input = DumpJson(e.input);
  output = OutputText(e.output);
  SetOptionalFailure(e.error, error, error_ind);
  started_at = ToNanos(e.started_at);
  SetOptionalTime(e.ended_at, ended_at, ended_at_ind);
}

void ExecutionColumns::SetProgress(const engine::ExecutionProgress& p) {
  progress_only = true;
  seq = p.id;
  attempts = p.attempts;
  status = StatusText(p.status);
  SetOptionalStatus(p.compensation_status, compensation_status, compensation_status_ind);
  superseded = p.superseded ? 1 : 0;
  retry_counts = RetryCountsText(p.retry_counts);
  SetOptionalTime(p.retry_at, retry_at, retry_at_ind);
  SetOptionalTime(p.deadline_at, deadline_at, deadline_at_ind);
  output = OutputText(p.output);
  SetOptionalFailure(p.error, error, error_ind);
  SetOptionalTime(p.ended_at, ended_at, ended_at_ind);
}

Status ExecutionColumns::ToExecution(const InstanceId& instance, StateExecution& e) const {
  Decoder d("instance " + instance.str() + " execution " + std::to_string(seq));
  e.id = seq;
  e.state = StateName(state);
  e.state_index = state_index;
  if (std::optional<engine::ExecutionKind> k = engine::ParseExecutionKind(kind)) {
    e.kind = *k;
  } else {
    d.Fail("kind", "'" + kind + "' is not forward or compensation");
  }
  e.compensates = compensates;
  e.retried_for = retried_for;
  e.epoch = epoch;
  e.attempts = attempts;
  e.status = d.Code("status", status);
  e.compensation_status =
      d.OptionalStatus("compensation_status", compensation_status, compensation_status_ind);
  e.superseded = superseded != 0;
  e.for_update = for_update != 0;
  Json counts = d.ParseJson("retry_counts", retry_counts);
  if (d.ok()) {
    Result<std::vector<int>> parsed = engine::RetryCountsFromJson(counts);
    if (parsed.ok()) {
      e.retry_counts = std::move(*parsed);
    } else {
      d.Fail("retry_counts", parsed.status().message());
    }
  }
  e.retry_at = Decoder::OptionalTime(retry_at, retry_at_ind);
  e.deadline_at = Decoder::OptionalTime(deadline_at, deadline_at_ind);
  e.idempotency_key = idempotency_key;
  e.input = d.ParseJson("input", input);
  e.output = d.ParseJson("output", output);
  e.error = d.OptionalFailure("error", error, error_ind);
  e.started_at = FromNanos(started_at);
  e.ended_at = Decoder::OptionalTime(ended_at, ended_at_ind);
  return d.status();
}

void DispatchColumns::Set(const engine::DispatchRecord& d) {
  instance_id = d.delivery.instance.str();
  seq = d.delivery.execution;
  attempt = d.delivery.attempt;
  state = d.delivery.state.str();
  task = d.delivery.task.str();
  idempotency_key = d.delivery.idempotency_key;
  input = DumpJson(d.delivery.input);
  SetOptionalTime(d.delivery.deadline, deadline_at, deadline_at_ind);
  due_at = ToNanos(d.due_at);
}

Status DispatchColumns::ToRecord(engine::DispatchRecord& d) const {
  Decoder decoder("instance " + instance_id + " dispatch of execution " + std::to_string(seq) +
                  " attempt " + std::to_string(attempt));
  d.delivery.instance = InstanceId(instance_id);
  d.delivery.execution = seq;
  d.delivery.attempt = attempt;
  d.delivery.state = StateName(state);
  d.delivery.task = TaskName(task);
  d.delivery.idempotency_key = idempotency_key;
  d.delivery.input = decoder.ParseJson("input", input);
  d.delivery.deadline = Decoder::OptionalTime(deadline_at, deadline_at_ind);
  d.due_at = FromNanos(due_at);
  return decoder.status();
}

}  // namespace sagaflow::adapters::sql
