#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"

namespace sagaflow::statelang {

// What an expression may ask of the running engine. Evaluation itself is pure: this is its only
// window on the world, and neither method touches files, processes or the network.
class ExpressionHost {
 public:
  virtual ~ExpressionHost() = default;
  // True when the error being handled is of type `type` or a descendant of it.
  // False when no error is being handled.
  virtual bool CurrentErrorMatches(std::string_view type) const = 0;
  // A new unique value for `$Sequence.ENTITY|RULE`.
  virtual std::string NextSequence(std::string_view entity, std::string_view rule) const = 0;
};

// Where an expression runs: `#root` and the implicit context of `[key]` and bare names.
struct EvalEnv {
  const Json* root = nullptr;
  const ExpressionHost* host = nullptr;
};

// An evaluation failure, with the 1-based column in the expression's source text.
struct ExpressionError {
  int column = 0;
  std::string message;
};

namespace detail {
struct Program;
}

// A compiled expression: the SpEL subset of Seata statelang, or one of the `$Exception{T}` and
// `$Sequence.E|R` forms. Immutable and thread-safe; compiled once at load, never re-parsed.
//
// Limits: source at most kMaxLength characters, nesting at most kMaxDepth levels. Evaluation
// visits each node at most once per element of a selected list, so it always terminates.
class Expression {
 public:
  static constexpr std::size_t kMaxLength = 4096;
  static constexpr int kMaxDepth = 64;

  enum class Form { kSpel, kExceptionMatch, kSequence };

  // Compiles a plain expression (a Choice `Expression`, a `Status` key without `$`).
  static Result<Expression> Compile(std::string_view source);
  // Compiles a `$`-prefixed value: `$.spel`, `$Sequence.ENTITY|RULE`, `$Exception{Type}`.
  // `text` must start with '$'. Columns in errors count from the '$'.
  static Result<Expression> CompileDollar(std::string_view text);
  // A Status key: `$Exception{T}` or a plain expression.
  static Result<Expression> CompileStatusKey(std::string_view text);

  Expression();
  ~Expression();
  Expression(const Expression&);
  Expression& operator=(const Expression&);
  Expression(Expression&&) noexcept;
  Expression& operator=(Expression&&) noexcept;

  // Evaluates; the result is a value, never a reference into `env.root`.
  // Errors: a message with the column of the failing node (null dereference, wrong operand
  // types, division by zero, index out of range).
  Result<Json> Evaluate(const EvalEnv& env) const;

  // Evaluates as a condition: true, false, or null (false). Any other value is an error.
  Result<bool> EvaluateCondition(const EvalEnv& env) const;

  // Evaluate and EvaluateCondition without the fast-path shapes (common forms such as
  // `[order].id` or `[result] == 'OK'`, answered without the general evaluator): always the
  // general evaluator. For tests that prove the shapes equal to it.
  Result<Json> EvaluateGeneral(const EvalEnv& env) const;
  Result<bool> EvaluateConditionGeneral(const EvalEnv& env) const;
  // Whether the expression has one of the fast-path shapes (which hand the general evaluator
  // what they cannot answer exactly, such as a path through a missing key).
  bool has_fast_path() const;

  Form form() const;
  const std::string& source() const;
  // For kExceptionMatch: the error type named.
  const std::string& exception_type() const;

 private:
  std::shared_ptr<const detail::Program> program_;
};

}  // namespace sagaflow::statelang
