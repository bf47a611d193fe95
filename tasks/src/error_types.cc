#include "sagaflow/tasks/error_types.h"

#include <mutex>

namespace sagaflow {

ErrorTypes::ErrorTypes() {
  parent_.emplace(std::string(kError), "");
  parent_.emplace(std::string(kNetworkError), std::string(kError));
  parent_.emplace(std::string(kConnectError), std::string(kNetworkError));
  parent_.emplace(std::string(kTimeoutError), std::string(kNetworkError));
  parent_.emplace(std::string(kExpressionError), std::string(kError));
  alias_.emplace("java.lang.Throwable", kError);
  alias_.emplace("java.lang.Exception", kError);
  alias_.emplace("java.lang.RuntimeException", kError);
  alias_.emplace("java.net.ConnectException", kConnectError);
  alias_.emplace("java.net.SocketTimeoutException", kTimeoutError);
}

std::string_view ErrorTypes::ResolveLocked(std::string_view name) const {
  auto it = alias_.find(std::string(name));
  return it == alias_.end() ? name : std::string_view(it->second);
}

Status ErrorTypes::Define(std::string_view name, std::string_view parent) {
  if (name.empty()) return InvalidArgument("an error type needs a name");
  std::unique_lock lock(mu_);
  std::string p(ResolveLocked(parent));
  if (!parent_.count(p)) {
    return InvalidArgument("cannot define error type '" + std::string(name) +
                           "': its parent '" + std::string(parent) + "' is not defined");
  }
  if (alias_.count(std::string(name))) {
    return AlreadyExists("'" + std::string(name) + "' is a built-in alias of '" +
                         alias_.at(std::string(name)) + "'");
  }
  auto it = parent_.find(std::string(name));
  if (it != parent_.end()) {
    if (it->second == p) return Status::Ok();
    return AlreadyExists("error type '" + std::string(name) + "' is already defined with parent '" +
                         (it->second.empty() ? std::string("(none)") : it->second) + "'");
  }
  defined_.emplace_back(std::string(name), p);
  parent_.emplace(std::string(name), std::move(p));
  return Status::Ok();
}

bool ErrorTypes::IsA(std::string_view type, std::string_view ancestor) const {
  std::shared_lock lock(mu_);
  std::string_view want = ResolveLocked(ancestor);
  std::string_view cur = ResolveLocked(type);
  // Bounded by the number of types: parents always exist before their children.
  for (std::size_t guard = 0; guard <= parent_.size() + 1; ++guard) {
    if (cur == want) return true;
    auto it = parent_.find(std::string(cur));
    if (it == parent_.end()) {
      cur = kError;  // an undefined type is a child of Error
      continue;
    }
    if (it->second.empty()) return false;
    cur = it->second;
  }
  return false;
}

std::string ErrorTypes::Canonical(std::string_view name) const {
  std::shared_lock lock(mu_);
  return std::string(ResolveLocked(name));
}

std::vector<std::pair<std::string, std::string>> ErrorTypes::UserDefined() const {
  std::shared_lock lock(mu_);
  return defined_;
}

std::vector<std::string> ErrorTypes::Lineage(std::string_view type) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  std::string cur(ResolveLocked(type));
  while (!cur.empty() && out.size() <= parent_.size()) {
    out.push_back(cur);
    auto it = parent_.find(cur);
    cur = it == parent_.end() ? std::string(kError) : it->second;
  }
  return out;
}

}  // namespace sagaflow
