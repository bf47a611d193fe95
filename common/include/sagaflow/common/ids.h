#pragma once

#include <compare>
#include <functional>
#include <string>
#include <utility>

namespace sagaflow {

// A string that means one thing in the domain. Distinct instantiations do not convert into each
// other, so an instance id cannot be passed where a state name is expected.
template <typename Tag>
class StrongString {
 public:
  StrongString() = default;
  explicit StrongString(std::string value) : value_(std::move(value)) {}

  const std::string& str() const { return value_; }
  bool empty() const { return value_.empty(); }
  auto operator<=>(const StrongString&) const = default;

 private:
  std::string value_;
};

struct InstanceIdTag {};
struct StateNameTag {};
struct TaskNameTag {};

using InstanceId = StrongString<InstanceIdTag>;
using StateName = StrongString<StateNameTag>;
// "serviceName.serviceMethod", the key under which a task is registered.
using TaskName = StrongString<TaskNameTag>;

// A new instance id: 26 characters of Crockford base32 (a ULID: 48 bits of milliseconds, then 80
// random bits), so ids sort by creation time and are unique across processes. Thread-safe.
InstanceId NewInstanceId();

// A new unique token in the same format, for `$Sequence` expressions.
std::string NewUniqueToken();

}  // namespace sagaflow

template <typename Tag>
struct std::hash<sagaflow::StrongString<Tag>> {
  std::size_t operator()(const sagaflow::StrongString<Tag>& s) const noexcept {
    return std::hash<std::string>{}(s.str());
  }
};
