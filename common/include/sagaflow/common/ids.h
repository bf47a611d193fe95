#pragma once

#include <compare>
#include <cstdint>
#include <cstring>
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

// Ids made on one thread share their last character (75 of the 80 bits stay random): the id's
// *lane*, one of kIdLanes. Maps of instances sharded by lane keep the instances one thread
// creates (and, in the executor, usually drives to the end) apart from another thread's, so
// that two cores running instances do not pass the same shard's cache lines back and forth at
// every step. Ids made elsewhere (any string is accepted) spread over the lanes by hash.
// Keep the lane: the executor's LiveTable (engine/src/live.h) and the MemoryStateStore shard by
// it, and the memory store's retention (each shard drops its own oldest finished instances)
// and its tests count on one thread's instances sharing a shard. 75 random bits per
// millisecond is still far from any collision.
inline constexpr std::size_t kIdLanes = 32;
std::size_t InstanceIdLane(const InstanceId& id);

}  // namespace sagaflow

template <typename Tag>
struct std::hash<sagaflow::StrongString<Tag>> {
  std::size_t operator()(const sagaflow::StrongString<Tag>& s) const noexcept {
    return std::hash<std::string>{}(s.str());
  }
};

// Instance ids are hashed on every store write: the last 8 characters of a ULID are random,
// so they make a good hash at the cost of one load. Other ids (any string is accepted) use the
// general string hash.
template <>
struct std::hash<sagaflow::InstanceId> {
  std::size_t operator()(const sagaflow::InstanceId& id) const noexcept {
    const std::string& s = id.str();
    if (s.size() != 26) return std::hash<std::string>{}(s);
    std::uint64_t tail;
    std::memcpy(&tail, s.data() + 18, sizeof tail);
    tail ^= tail >> 29;
    tail *= 0xbf58476d1ce4e5b9ULL;
    return static_cast<std::size_t>(tail ^ (tail >> 32));
  }
};
