#pragma once

#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sagaflow/common/status.h"

namespace sagaflow {

// The named hierarchy of error types that Retry, Catch and `$Exception{}` match against.
//
// Built in: Error (the root) > NetworkError > {ConnectError, TimeoutError}. The Java names found
// in Seata definitions are aliases: java.lang.Throwable, java.lang.Exception and
// java.lang.RuntimeException are Error; java.net.ConnectException is ConnectError;
// java.net.SocketTimeoutException is TimeoutError. A type nobody defined counts as a direct
// child of Error, so a task may throw any name and a Catch on that name still matches it.
//
// Thread-safe: Define takes a writer lock, lookups a reader lock.
class ErrorTypes {
 public:
  static constexpr std::string_view kError = "Error";
  static constexpr std::string_view kNetworkError = "NetworkError";
  static constexpr std::string_view kConnectError = "ConnectError";
  static constexpr std::string_view kTimeoutError = "TimeoutError";
  // Raised by the engine when an expression fails at run time (a child of Error).
  static constexpr std::string_view kExpressionError = "ExpressionError";

  ErrorTypes();

  // Adds `name` as a child of `parent` (which must be known). Redefining a type (built-in or
  // not) with the parent it has is a no-op; with a different parent it is kAlreadyExists, as is
  // defining a Java alias.
  Status Define(std::string_view name, std::string_view parent);

  // True when `type` is `ancestor` or descends from it (aliases resolved on both sides).
  bool IsA(std::string_view type, std::string_view ancestor) const;

  // The canonical name (aliases resolved).
  std::string Canonical(std::string_view name) const;

  // `type` and its ancestors, nearest first, ending with Error.
  std::vector<std::string> Lineage(std::string_view type) const;

  // The types defined with Define, parents before children, as (name, parent).
  std::vector<std::pair<std::string, std::string>> UserDefined() const;

 private:
  std::string_view ResolveLocked(std::string_view name) const;

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::string> parent_;  // type -> parent ("" for Error)
  std::unordered_map<std::string, std::string> alias_;
  std::vector<std::pair<std::string, std::string>> defined_;  // in definition order
};

}  // namespace sagaflow
