#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/statelang/expression.h"

namespace sagaflow::statelang {

// A value written in a definition (`Input` element, `Output` value) whose string leaves starting
// with '$' are expressions. Compiled once; a subtree without expressions is kept as a constant.
// Immutable and thread-safe.
class ValueTemplate {
 public:
  // Compiles `value`. On error the Status message starts with the JSON pointer of the bad leaf
  // relative to `value` ("" for the value itself), then ": ". When `bad_pointer` is given, it
  // also receives that pointer alone (keys may themselves contain ": ").
  static Result<ValueTemplate> Compile(const OrderedJson& value,
                                       std::string* bad_pointer = nullptr);

  // Builds the value against `env`. Map entries whose value is null are dropped, as Seata
  // does for Input maps; list elements are kept.
  Result<Json> Render(const EvalEnv& env) const;

  bool is_constant() const { return kind_ == Kind::kConstant; }

 private:
  // Compiles `value`; on error `pointer` holds the bad leaf's pointer and the Status its message.
  static Result<ValueTemplate> CompileAt(const OrderedJson& value, std::string& pointer);

  enum class Kind { kConstant, kExpression, kObject, kArray };
  Kind kind_ = Kind::kConstant;
  Json constant_;
  Expression expression_;
  std::vector<std::pair<std::string, ValueTemplate>> members_;  // kObject
  std::vector<ValueTemplate> elements_;                           // kArray
};

}  // namespace sagaflow::statelang
