#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sagaflow {

// The outcome of an operation that can fail for infrastructure reasons. Cheap to copy when OK.
// Business failures of tasks are not Statuses: they are TaskFailure values that drive Retry,
// Catch and compensation.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller's input is wrong (definition, scenario, argument)
  kNotFound,
  kAlreadyExists,
  kConflict,            // the request contradicts stored state (e.g. business key reused)
  kFailedPrecondition,  // the object is not in a state that allows the operation
  kUnavailable,         // a dependency (store, broker) refused or went away; retryable
  kDeadlineExceeded,
  kCancelled,
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "NOT_FOUND: message", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status Conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
inline Status FailedPrecondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result built from OK");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace sagaflow

#define SAGAFLOW_CONCAT_INNER_(a, b) a##b
#define SAGAFLOW_CONCAT_(a, b) SAGAFLOW_CONCAT_INNER_(a, b)

#define SAGAFLOW_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::sagaflow::Status sagaflow_status_ = (expr);        \
    if (!sagaflow_status_.ok()) return sagaflow_status_; \
  } while (0)

#define SAGAFLOW_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()

#define SAGAFLOW_ASSIGN_OR_RETURN(lhs, expr) \
  SAGAFLOW_ASSIGN_OR_RETURN_IMPL_(SAGAFLOW_CONCAT_(sagaflow_result_, __LINE__), lhs, expr)
