#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include "sagaflow/common/status.h"

namespace sagaflow {

// Runtime values (instance context, task arguments and results). nlohmann::json, so that task
// authors' to_json/from_json and NLOHMANN_DEFINE_TYPE_* work unchanged.
using Json = nlohmann::json;

// Definitions as written: key order is meaningful (Status maps, States).
using OrderedJson = nlohmann::ordered_json;

// Parses a runtime document (a scenario, an input, a request body): comments allowed, nesting
// limited to `max_depth` levels so that no recursive walk of the value can exhaust the stack.
// Errors (kInvalidArgument) name the line and column, or the pointer of the too-deep value.
Result<Json> ParseJson(std::string_view text, std::size_t max_depth = 64);

// `key` as one token of a JSON pointer (RFC 6901: "~" as "~0", "/" as "~1").
std::string JsonPointerToken(std::string_view key);

// The message of an nlohmann::json exception without its "[json.exception.x.n] " prefix.
std::string JsonErrorMessage(const std::exception& e);

// Converts a definition value into a runtime value (key order is dropped).
Json ToRuntimeJson(const OrderedJson& value);

// Releases a JSON value's children from the leaves up, so that destroying it allocates nothing
// (nlohmann::json flattens a container onto a heap-allocated stack when it is destroyed, to
// bound recursion; values are destroyed at every step of every instance). Recursion is limited
// to kReleaseDepth levels; anything deeper is left to nlohmann's own destruction.
void ReleaseJson(Json& value);
inline constexpr int kReleaseDepth = 64;

// A JSON value shared by reference, copied on write: copying a SharedJson does not copy the
// value; Mutable() copies it first if anyone else shares it. Used for values that several owners
// read (an execution's arguments and result, an instance's input and context), so that a store
// keeping its own copy of a record does not deep-copy them. Scalars other than strings (null,
// booleans, numbers: most task results) are held inline, with no allocation.
//
// Thread-safe to copy and read. Mutable() must not race with reads of the same SharedJson
// object (other copies are unaffected: they keep the old value).
class SharedJson {
 public:
  SharedJson() = default;  // null
  SharedJson(Json value) {  // NOLINT(google-explicit-constructor): a value becomes shared
    if (IsInline(value)) {
      inline_ = std::move(value);
    } else {
      value_ = std::make_shared<Holder>(std::move(value));
    }
  }

  // The value for writing, unshared first when other copies refer to it.
  Json& Mutable() {
    if (!value_) {
      value_ = std::make_shared<Holder>(std::move(inline_));
      inline_ = nullptr;
    } else if (value_.use_count() > 1) {
      value_ = std::make_shared<Holder>(value_->value);
    }
    return value_->value;
  }

  const Json& get() const { return value_ ? value_->value : inline_; }
  operator const Json&() const { return get(); }  // NOLINT(google-explicit-constructor)
  const Json& operator*() const { return get(); }
  const Json* operator->() const { return &get(); }
  template <typename Key>
  const Json& operator[](Key&& key) const {
    return get()[std::forward<Key>(key)];
  }
  bool is_null() const { return get().is_null(); }
  std::string dump() const { return get().dump(); }

  friend bool operator==(const SharedJson& a, const SharedJson& b) { return a.get() == b.get(); }
  friend bool operator==(const SharedJson& a, const Json& b) { return a.get() == b; }
  friend std::ostream& operator<<(std::ostream& out, const SharedJson& v) { return out << v.get(); }

 private:
  struct Holder {
    explicit Holder(Json v) : value(std::move(v)) {}
    ~Holder() { ReleaseJson(value); }
    Holder(const Holder&) = delete;
    Holder& operator=(const Holder&) = delete;
    Json value;
  };
  static bool IsInline(const Json& v) {
    return v.is_null() || v.is_boolean() || v.is_number();
  }
  Json inline_;  // when value_ is null: a scalar other than a string (or null)
  std::shared_ptr<Holder> value_;
};

}  // namespace sagaflow
