// The expression evaluator answers common forms (a path of map keys from the root, alone or
// compared with a literal by == or !=) on a fast path. This test proves the fast path equal to
// the general evaluator: random expressions of exactly those forms, and of forms that only
// nearly are, evaluated in random contexts both ways, must give the same value or the same
// error. Deterministic (a fixed seed) and quick.

#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "printers.h"
#include "sagaflow/common/json.h"
#include "sagaflow/statelang/expression.h"

namespace sagaflow::statelang {
namespace {

constexpr int kIterations = 4000;
constexpr int kContextsPerExpression = 3;
// Stop reporting after this many mismatches: one reproducer is enough.
constexpr int kMaxReports = 5;

class Rng {
 public:
  explicit Rng(std::uint32_t seed) : gen_(seed) {}

  // Uniform in [lo, hi].
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(gen_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(gen_)];
  }

 private:
  std::mt19937 gen_;
};

// Keys of paths and of contexts. The first three are the most common, so that paths often
// reach something. `size` is a property name unless called.
const std::vector<std::string>& Keys() {
  static const std::vector<std::string> kKeys = {"a", "b",      "c",    "a",  "b",
                                                 "c", "status", "size", "x_1"};
  return kKeys;
}

// Literal spellings, including folded negatives, Java suffixes, integers beyond int64 and
// keyword literals in other cases.
const std::vector<std::string>& Literals() {
  static const std::vector<std::string> kLiterals = {"null",
                                                     "NULL",
                                                     "true",
                                                     "false",
                                                     "True",
                                                     "0",
                                                     "1",
                                                     "-1",
                                                     "5",
                                                     "5.0",
                                                     "2.5",
                                                     "-2.5",
                                                     "1e2",
                                                     "10L",
                                                     "1.5d",
                                                     "9223372036854775807",
                                                     "18446744073709551615",
                                                     "-9223372036854775808",
                                                     "'OK'",
                                                     "'ok'",
                                                     "''",
                                                     "'5'",
                                                     "'true'",
                                                     "\"a\"",
                                                     "'it''s'"};
  return kLiterals;
}

std::string EqualityOp(Rng& rng) {
  static const std::vector<std::string> kOps = {" == ", "==", " != ", "!=", " eq ", " ne ", " EQ "};
  return rng.Pick(kOps);
}

std::string RelationalOp(Rng& rng) {
  static const std::vector<std::string> kOps = {" < ", " <= ", " > ", " >= ", " lt ", " ge "};
  return rng.Pick(kOps);
}

std::string Literal(Rng& rng) {
  std::string lit = rng.Pick(Literals());
  return rng.Chance(0.1) ? "(" + lit + ")" : lit;
}

// A path of map keys from the root in one of its spellings (`#root`, `#this`, `[k]`, a bare
// name, then `.k`, `?.k` or `[k]`), sometimes in parentheses; its keys go to `keys`.
std::string Path(Rng& rng, std::vector<std::string>& keys) {
  keys.clear();
  int segments = rng.Pick(std::vector<int>{0, 1, 1, 2, 2, 2, 3, 3, 4});
  std::string s;
  const int head = segments == 0 ? rng.Int(0, 1) : rng.Int(0, 3);
  if (head == 0) {
    s = "#root";
  } else if (head == 1) {
    s = "#this";
  } else {
    keys.push_back(rng.Pick(Keys()));
    s = head == 2 ? "[" + keys.back() + "]" : keys.back();
    --segments;
  }
  for (; segments > 0; --segments) {
    keys.push_back(rng.Pick(Keys()));
    switch (rng.Int(0, 3)) {
      case 0:
        s += "?." + keys.back();
        break;
      case 1:
        s += "[" + keys.back() + "]";
        break;
      default:
        s += "." + keys.back();
        break;
    }
  }
  return rng.Chance(0.1) ? "(" + s + ")" : s;
}

std::string AnyPath(Rng& rng) {
  std::vector<std::string> ignored;
  return Path(rng, ignored);
}

struct Generated {
  std::string source;
  bool shape = false;             // one of the forms the fast path covers
  std::vector<std::string> keys;  // for a shape: the path's keys, outermost first
};

// Exactly the forms the shapes cover: a path; a path == or != a literal, either way round.
Generated ShapeForm(Rng& rng) {
  Generated g;
  g.shape = true;
  const std::string path = Path(rng, g.keys);
  switch (rng.Int(0, 2)) {
    case 0:
      g.source = path;
      break;
    case 1:
      g.source = path + EqualityOp(rng) + Literal(rng);
      break;
    default:
      g.source = Literal(rng) + EqualityOp(rng) + path;
      break;
  }
  return g;
}

// Forms one step away from a shape, which the general evaluator answers.
Generated NearMiss(Rng& rng) {
  Generated g;
  const std::string p = AnyPath(rng);
  switch (rng.Int(0, 14)) {
    case 0:  // two paths compared
      g.source = p + EqualityOp(rng) + AnyPath(rng);
      break;
    case 1:  // an order, not an equality
      g.source = p + RelationalOp(rng) + Literal(rng);
      break;
    case 2:  // an index by value, not a map key
      g.source = p +
                 rng.Pick(std::vector<std::string>{"['a']", "[0]", "[1]", "[true]", "[-1]",
                                                   "['b'].c", "[0].a"}) +
                 (rng.Chance(0.5) ? EqualityOp(rng) + Literal(rng) : "");
      break;
    case 3:
      g.source = rng.Pick(std::vector<std::string>{"!", "not ", "!!"}) + p;
      break;
    case 4:  // boolean combinations of shapes
      g.source = p + EqualityOp(rng) + Literal(rng) +
                 rng.Pick(std::vector<std::string>{" && ", " || ", " and ", " or "}) + AnyPath(rng);
      break;
    case 5:
      g.source = AnyPath(rng) + rng.Pick(std::vector<std::string>{" && ", " || "}) + p +
                 EqualityOp(rng) + Literal(rng);
      break;
    case 6:  // arithmetic on one side
      g.source = p + rng.Pick(std::vector<std::string>{" + 1", " - 1", " * 2", " + ''"}) +
                 EqualityOp(rng) + Literal(rng);
      break;
    case 7:
      g.source = p + EqualityOp(rng) + "-" + AnyPath(rng);
      break;
    case 8:  // methods
      g.source =
          p +
          rng.Pick(std::vector<std::string>{".size()", "?.size()", ".isEmpty()", "?.isEmpty()"}) +
          (rng.Chance(0.5) ? EqualityOp(rng) + Literal(rng) : "");
      break;
    case 9:  // selections
      g.source = p + ".?[#this" + EqualityOp(rng) + Literal(rng) + "]" +
                 (rng.Chance(0.5) ? ".size()" : "");
      break;
    case 10:
      g.source = p + ".?[a" + EqualityOp(rng) + Literal(rng) + "]";
      break;
    case 11:  // literals only
      g.source = Literal(rng) + EqualityOp(rng) + Literal(rng);
      break;
    case 12:
      g.source = rng.Chance(0.5) ? Literal(rng) : "-" + p;
      break;
    case 13:  // the root compared with itself
      g.source = rng.Pick(std::vector<std::string>{"#root == #this", "#this != #root",
                                                   "[a] == #root.a", "#root == [a]"});
      break;
    default:  // the comparison negated or inside parentheses with more
      g.source = "!(" + p + EqualityOp(rng) + Literal(rng) + ")";
      break;
  }
  return g;
}

Json RandomValue(Rng& rng, int depth);

Json RandomObject(Rng& rng, int depth) {
  Json o = Json::object();
  // The common keys are often there and often maps, so that long paths reach their end too.
  for (const char* k : {"a", "b", "c"}) {
    if (rng.Chance(0.85)) {
      o[k] = depth > 0 && rng.Chance(0.5) ? RandomObject(rng, depth - 1) : RandomValue(rng, depth);
    }
  }
  for (const char* k : {"status", "size", "x_1"}) {
    if (rng.Chance(0.3)) o[k] = RandomValue(rng, depth);
  }
  return o;
}

Json RandomValue(Rng& rng, int depth) {
  static const std::vector<Json> kScalars = {
      nullptr,
      true,
      false,
      0,
      1,
      -1,
      5,
      5.0,
      2.5,
      -2.5,
      100.0,
      10,
      std::numeric_limits<std::int64_t>::max(),
      std::numeric_limits<std::int64_t>::min(),
      std::numeric_limits<std::uint64_t>::max(),
      "OK",
      "ok",
      "",
      "5",
      "true",
      "a",
      "it's",
      Json::array(),
      Json::object(),
  };
  const int pick = rng.Int(0, depth > 0 ? 11 : 5);  // maps often, to give paths depth
  if (pick <= 5) return rng.Pick(kScalars);
  if (pick == 6) {
    Json a = Json::array();
    for (int n = rng.Int(0, 3); n > 0; --n) a.push_back(RandomValue(rng, depth - 1));
    return a;
  }
  return RandomObject(rng, depth - 1);
}

// A root as flows have them: mostly a map, sometimes any value; sometimes as JSON parsing gives
// it (non-negative integers unsigned).
Json RandomRoot(Rng& rng) {
  Json root = rng.Chance(0.85) ? RandomObject(rng, 3) : RandomValue(rng, 2);
  return rng.Chance(0.5) ? Json::parse(root.dump()) : root;
}

// Whether the fast path answers a path of `keys` in `root`: maps all the way, every key present
// but perhaps the last.
bool FastPathAnswers(const Json* root, const std::vector<std::string>& keys) {
  static const Json kNull;
  const Json* at = root ? root : &kNull;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!at->is_object()) return false;
    auto it = at->find(keys[i]);
    if (it == at->end()) return i + 1 == keys.size();
    at = &*it;
  }
  return true;
}

// Same value (same JSON type too: 5 is not 5.0 here), or the same error.
bool SameValue(const Json& a, const Json& b) {
  return a.type() == b.type() && a.dump() == b.dump();
}
bool SameValue(bool a, bool b) { return a == b; }

template <typename T>
bool Same(const Result<T>& fast, const Result<T>& general) {
  if (fast.ok() != general.ok()) return false;
  if (!fast.ok()) {
    return fast.status().code() == general.status().code() &&
           fast.status().ToString() == general.status().ToString();
  }
  return SameValue(fast.value(), general.value());
}

TEST(ExpressionShapesTest, FastPathEqualsTheGeneralEvaluator) {
  Rng rng(0x5a9e);
  int reports = 0;
  int shapes = 0;
  int near_misses_with_fast_path = 0;
  int evaluations = 0;
  int answered_fast = 0;
  int shape_fallbacks = 0;
  for (int i = 0; i < kIterations && reports < kMaxReports; ++i) {
    const Generated g = rng.Chance(0.55) ? ShapeForm(rng) : NearMiss(rng);
    const bool dollar = rng.Chance(0.2);
    const std::string source = dollar ? "$." + g.source : g.source;
    Result<Expression> e = dollar ? Expression::CompileDollar(source) : Expression::Compile(source);
    if (!e.ok()) {
      ++reports;
      ADD_FAILURE() << "iteration " << i
                    << ": a generated expression failed to compile: " << e.status().ToString()
                    << "\nsource: " << source;
      continue;
    }
    if (g.shape) {
      ++shapes;
      if (!e->has_fast_path()) {
        ++reports;
        ADD_FAILURE() << "iteration " << i << ": a shape has no fast path\nsource: " << source;
        continue;
      }
    } else if (e->has_fast_path()) {
      ++near_misses_with_fast_path;
    }
    for (int c = 0; c < kContextsPerExpression; ++c) {
      const Json root = RandomRoot(rng);
      const EvalEnv env{.root = rng.Chance(0.05) ? nullptr : &root};
      ++evaluations;
      if (g.shape) {
        if (FastPathAnswers(env.root, g.keys)) {
          ++answered_fast;
        } else {
          ++shape_fallbacks;
        }
      }
      const Result<Json> value = e->Evaluate(env);
      const Result<Json> value_general = e->EvaluateGeneral(env);
      const Result<bool> holds = e->EvaluateCondition(env);
      const Result<bool> holds_general = e->EvaluateConditionGeneral(env);
      const bool same_value = Same(value, value_general);
      const bool same_condition = Same(holds, holds_general);
      if (!same_value || !same_condition) {
        ++reports;
        ADD_FAILURE() << "iteration " << i << ": the fast path and the general evaluator differ"
                      << "\nsource: " << source
                      << "\ncontext: " << (env.root ? root.dump() : "(no root)")
                      << "\nEvaluate: " << ::testing::PrintToString(value)
                      << "\nEvaluateGeneral: " << ::testing::PrintToString(value_general)
                      << "\nEvaluateCondition: " << ::testing::PrintToString(holds)
                      << "\nEvaluateConditionGeneral: " << ::testing::PrintToString(holds_general);
        break;
      }
    }
  }
  // The comparison means something only if the fast path often answers, and the general
  // evaluator is exercised beside it (near misses, and shapes the fast path hands over).
  EXPECT_GE(shapes, kIterations * 2 / 5);
  EXPECT_GE(kIterations - shapes, kIterations / 3);
  const int shape_evaluations = answered_fast + shape_fallbacks;
  EXPECT_GE(answered_fast, shape_evaluations * 2 / 5);
  EXPECT_GE(shape_fallbacks, shape_evaluations / 10);
  std::cout << "[ shapes   ] " << shapes << " of " << kIterations << " expressions are shapes ("
            << near_misses_with_fast_path << " near misses too); the fast path answers "
            << answered_fast << " of " << evaluations << " evaluations, hands " << shape_fallbacks
            << " over\n";
}

}  // namespace
}  // namespace sagaflow::statelang
