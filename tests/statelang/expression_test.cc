#include "sagaflow/statelang/expression.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "printers.h"
#include "sagaflow/common/json.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::statelang {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The current error matches the types in `matching`; sequences are "ENTITY|RULE#n".
class FakeHost : public ExpressionHost {
 public:
  explicit FakeHost(std::set<std::string> matching = {}) : matching_(std::move(matching)) {}

  bool CurrentErrorMatches(std::string_view type) const override {
    asked_.emplace_back(type);
    return matching_.count(std::string(type)) > 0;
  }
  std::string NextSequence(std::string_view entity, std::string_view rule) const override {
    return std::string(entity) + "|" + std::string(rule) + "#" + std::to_string(++sequence_);
  }

  const std::vector<std::string>& asked() const { return asked_; }

 private:
  std::set<std::string> matching_;
  mutable std::vector<std::string> asked_;
  mutable int sequence_ = 0;
};

// A context as the engine holds it after reading JSON: non-negative integers are unsigned.
const Json& Context() {
  static const Json kContext = Json::parse(R"({
    "a": 5,
    "neg": -3,
    "half": 2.5,
    "flag": true,
    "name": "sagaflow",
    "nothing": null,
    "a b": "spaced",
    "order": {"id": "o-1", "customer": {"name": "Ann", "vip": true}, "total": 120.5},
    "items": [
      {"sku": "A", "price": 5, "qty": 1},
      {"sku": "B", "price": 20, "qty": 2},
      {"sku": "C", "price": 50, "qty": 0}
    ],
    "nums": [1, 2, 3, 4],
    "empty_list": [],
    "empty_map": {},
    "min": 10
  })");
  return kContext;
}

Result<Json> Eval(std::string_view source, const Json& root = Context(),
                  const ExpressionHost* host = nullptr) {
  auto e = Expression::Compile(source);
  if (!e.ok()) return e.status();
  return e->Evaluate(EvalEnv{.root = &root, .host = host});
}

Result<Json> EvalDollar(std::string_view text, const Json& root = Context(),
                        const ExpressionHost* host = nullptr) {
  auto e = Expression::CompileDollar(text);
  if (!e.ok()) return e.status();
  return e->Evaluate(EvalEnv{.root = &root, .host = host});
}

Result<bool> Condition(std::string_view source, const Json& root = Context()) {
  auto e = Expression::Compile(source);
  if (!e.ok()) return e.status();
  return e->EvaluateCondition(EvalEnv{.root = &root});
}

// OK and equal to `expected`; numbers must also agree on integer versus floating point, since
// that is visible once the value is written back to the context.
MATCHER_P(HoldsValue, expected, "is OK and holds " + Json(expected).dump()) {
  const Json want(expected);
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  const Json& got = arg.value();
  *result_listener << "holds " << got.dump() << " (" << got.type_name()
                   << (got.is_number_float() ? ", floating" : "") << ")";
  if (got != want) return false;
  if (got.is_number() && got.is_number_float() != want.is_number_float()) return false;
  return true;
}

MATCHER_P(HoldsBool, expected, std::string("is OK and holds ") + (expected ? "true" : "false")) {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return arg.value() == expected;
}

auto FailsAtColumn(int column) {
  return StatusIs(StatusCode::kInvalidArgument,
                  StartsWith("column " + std::to_string(column) + ": "));
}

template <typename M>
auto FailsAtColumn(int column, M message) {
  return StatusIs(StatusCode::kInvalidArgument,
                  AllOf(StartsWith("column " + std::to_string(column) + ": "), message));
}

// ---------------------------------------------------------------------------------------------
// Access

TEST(ExpressionTest, BracketNameReadsMapKey) {
  EXPECT_THAT(Eval("[a]"), HoldsValue(5));
  EXPECT_THAT(Eval("[order][id]"), HoldsValue("o-1"));
}

TEST(ExpressionTest, QuotedKeyReadsMapKey) {
  EXPECT_THAT(Eval("['a b']"), HoldsValue("spaced"));
  EXPECT_THAT(Eval("[\"name\"]"), HoldsValue("sagaflow"));
  EXPECT_THAT(Eval("[order]['customer']['name']"), HoldsValue("Ann"));
}

TEST(ExpressionTest, BracketKeyWordsAreKeysNotOperators) {
  Json root = {{"and", 1}, {"size", 2}};
  EXPECT_THAT(Eval("[and]", root), HoldsValue(1));
  EXPECT_THAT(Eval("[size]", root), HoldsValue(2));
}

TEST(ExpressionTest, IntegerIndexReadsListElement) {
  EXPECT_THAT(Eval("[nums][0]"), HoldsValue(1));
  EXPECT_THAT(Eval("[nums][3]"), HoldsValue(4));
  EXPECT_THAT(Eval("[items][1].sku"), HoldsValue("B"));
  EXPECT_THAT(Eval("[items][1]['price']"), HoldsValue(20));
  EXPECT_THAT(Eval("[nums][1 + 1]"), HoldsValue(3));
}

TEST(ExpressionTest, IndexOnARootListReadsElement) {
  Json root = Json::array({10, 20, 30});
  EXPECT_THAT(Eval("[1]", root), HoldsValue(20));
  EXPECT_THAT(Eval("#root[2]", root), HoldsValue(30));
}

TEST(ExpressionTest, IndexOutsideListIsAnErrorAtTheBracket) {
  EXPECT_THAT(Eval("[nums][4]"), FailsAtColumn(7, HasSubstr("outside the list of 4")));
  EXPECT_THAT(Eval("[nums][-1]"), FailsAtColumn(7));
}

TEST(ExpressionTest, ListIndexMustBeAnInteger) {
  EXPECT_THAT(Eval("[nums]['x']"), FailsAtColumn(7, HasSubstr("must be an integer")));
  EXPECT_THAT(Eval("[nums][1.5]"), FailsAtColumn(7, HasSubstr("must be an integer")));
}

TEST(ExpressionTest, NumberIndexOnMapReadsTheKeySpelledAsNumber) {
  Json root = {{"m", {{"1", "one"}}}};
  EXPECT_THAT(Eval("[m][1]", root), HoldsValue("one"));
}

TEST(ExpressionTest, IntegerIndexOnStringReadsCharacter) {
  EXPECT_THAT(Eval("[name][0]"), HoldsValue("s"));
  EXPECT_THAT(Eval("'abc'[2]"), HoldsValue("c"));
  EXPECT_THAT(Eval("'abc'[3]"), FailsAtColumn(6, HasSubstr("outside the string")));
}

TEST(ExpressionTest, PropertyChainsFollowMaps) {
  EXPECT_THAT(Eval("[order].customer.name"), HoldsValue("Ann"));
  EXPECT_THAT(Eval("order.customer.vip"), HoldsValue(true));
  EXPECT_THAT(Eval("order.total"), HoldsValue(120.5));
}

TEST(ExpressionTest, MissingMapKeyIsNull) {
  EXPECT_THAT(Eval("[missing]"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("missing"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("[order].missing"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("[order]['missing']"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("[nothing]"), HoldsValue(nullptr));
}

TEST(ExpressionTest, PropertyOfNullIsAnErrorAtTheProperty) {
  EXPECT_THAT(Eval("[missing].x"), FailsAtColumn(11, HasSubstr("cannot read 'x' of null")));
  EXPECT_THAT(Eval("[order].missing.name"),
              FailsAtColumn(17, HasSubstr("cannot read 'name' of null")));
  EXPECT_THAT(Eval("[missing][x]"), FailsAtColumn(10, HasSubstr("of null")));
  EXPECT_THAT(Eval("[missing][0]"), FailsAtColumn(10, HasSubstr("cannot index null")));
}

TEST(ExpressionTest, PropertyOfAScalarOrListIsAnError) {
  EXPECT_THAT(Eval("[a].x"), FailsAtColumn(5, HasSubstr("of an integer")));
  EXPECT_THAT(Eval("[items].sku"), FailsAtColumn(9, HasSubstr("of a list")));
}

TEST(ExpressionTest, SafeNavigationYieldsNullOnNull) {
  EXPECT_THAT(Eval("[missing]?.x"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("[order]?.customer?.name"), HoldsValue("Ann"));
  EXPECT_THAT(Eval("[order].missing?.name"), HoldsValue(nullptr));
  EXPECT_THAT(Eval("[missing]?.size()"), HoldsValue(nullptr));
  // `?.` guards one step only, as in SpEL.
  EXPECT_THAT(Eval("[missing]?.x.y"), FailsAtColumn(14, HasSubstr("of null")));
}

TEST(ExpressionTest, RootIsTheWholeContext) {
  EXPECT_THAT(Eval("#root"), HoldsValue(Context()));
  EXPECT_THAT(Eval("#root.order.id"), HoldsValue("o-1"));
  EXPECT_THAT(Eval("#root[a]"), HoldsValue(5));
  EXPECT_THAT(Eval("#root == true", Json(true)), HoldsValue(true));
}

TEST(ExpressionTest, ThisOutsideSelectionIsTheRoot) {
  EXPECT_THAT(Eval("#this.a"), HoldsValue(5));
  EXPECT_THAT(Eval("#this", Json("x")), HoldsValue("x"));
}

TEST(ExpressionTest, NullRootReadsAsNull) {
  auto e = Expression::Compile("#root == null");
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT(e->Evaluate(EvalEnv{}), HoldsValue(true));
}

// ---------------------------------------------------------------------------------------------
// Literals

TEST(ExpressionTest, IntegerLiteralsAreIntegers) {
  EXPECT_THAT(Eval("42"), HoldsValue(42));
  EXPECT_THAT(Eval("0"), HoldsValue(0));
  EXPECT_THAT(Eval("-7"), HoldsValue(-7));
  EXPECT_THAT(Eval("10L"), HoldsValue(10));
  EXPECT_THAT(Eval("9223372036854775807"), HoldsValue(std::numeric_limits<std::int64_t>::max()));
}

TEST(ExpressionTest, FloatLiteralsAreFloats) {
  EXPECT_THAT(Eval("2.5"), HoldsValue(2.5));
  EXPECT_THAT(Eval("-0.5"), HoldsValue(-0.5));
  EXPECT_THAT(Eval("1e3"), HoldsValue(1000.0));
  EXPECT_THAT(Eval("2d"), HoldsValue(2.0));
  EXPECT_THAT(Eval("1.5f"), HoldsValue(1.5));
}

TEST(ExpressionTest, IntegerLiteralTooLargeForInt64IsAFloat) {
  EXPECT_THAT(Eval("9223372036854775808"), HoldsValue(9223372036854775808.0));
}

TEST(ExpressionTest, LetterAfterNumberIsAnError) {
  EXPECT_THAT(Eval("12abc"), FailsAtColumn(3, HasSubstr("after the number 12")));
}

TEST(ExpressionTest, StringLiteralsInEitherQuote) {
  EXPECT_THAT(Eval("'single'"), HoldsValue("single"));
  EXPECT_THAT(Eval("\"double\""), HoldsValue("double"));
  EXPECT_THAT(Eval("''"), HoldsValue(""));
  EXPECT_THAT(Eval("'say \"hi\"'"), HoldsValue("say \"hi\""));
}

TEST(ExpressionTest, DoubledQuoteEscapesTheQuote) {
  EXPECT_THAT(Eval("'it''s'"), HoldsValue("it's"));
  EXPECT_THAT(Eval("\"a\"\"b\""), HoldsValue("a\"b"));
  EXPECT_THAT(Eval("''''"), HoldsValue("'"));
}

TEST(ExpressionTest, UnterminatedStringIsAnErrorAtItsQuote) {
  EXPECT_THAT(Eval("[a] == 'abc"), FailsAtColumn(8, HasSubstr("unterminated string")));
  EXPECT_THAT(Eval("'it''s"), FailsAtColumn(1, HasSubstr("unterminated string")));
}

TEST(ExpressionTest, BooleanAndNullLiterals) {
  EXPECT_THAT(Eval("true"), HoldsValue(true));
  EXPECT_THAT(Eval("false"), HoldsValue(false));
  EXPECT_THAT(Eval("null"), HoldsValue(nullptr));
  // SpEL keywords are case-insensitive.
  EXPECT_THAT(Eval("TRUE"), HoldsValue(true));
  EXPECT_THAT(Eval("Null"), HoldsValue(nullptr));
}

// ---------------------------------------------------------------------------------------------
// Relational operators

struct Case {
  const char* source;
  Json expected;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.source << " -> " << c.expected.dump(); }

class ExpressionOperatorTest : public ::testing::TestWithParam<Case> {};

TEST_P(ExpressionOperatorTest, Evaluates) {
  EXPECT_THAT(Eval(GetParam().source), HoldsValue(GetParam().expected)) << GetParam().source;
}

INSTANTIATE_TEST_SUITE_P(
    Relational, ExpressionOperatorTest,
    ::testing::Values(
        Case{"1 == 1", true}, Case{"1 == 2", false}, Case{"1 != 2", true}, Case{"1 != 1", false},
        Case{"1 < 2", true}, Case{"2 < 2", false}, Case{"2 <= 2", true}, Case{"3 <= 2", false},
        Case{"3 > 2", true}, Case{"2 > 2", false}, Case{"2 >= 2", true}, Case{"1 >= 2", false},
        Case{"1 eq 1", true}, Case{"1 ne 1", false}, Case{"1 lt 2", true}, Case{"2 le 1", false},
        Case{"2 gt 1", true}, Case{"1 ge 2", false}, Case{"1 EQ 1", true}, Case{"2 Gt 1", true},
        Case{"[a] == 5", true}, Case{"[a] > [neg]", true}, Case{"[half] < [a]", true},
        Case{"'abc' < 'abd'", true}, Case{"'b' > 'abc'", true}, Case{"'x' == 'x'", true},
        Case{"'x' == \"x\"", true}, Case{"[name] == 'sagaflow'", true},
        Case{"[missing] == null", true}, Case{"[a] == null", false}, Case{"null < 1", true},
        Case{"1 > null", true}, Case{"null <= null", true}, Case{"false < true", true},
        Case{"'1' == 1", false}, Case{"true == 1", false}));

TEST(ExpressionTest, NumbersCompareEqualAcrossIntegerAndFloat) {
  EXPECT_THAT(Eval("1 == 1.0"), HoldsValue(true));
  EXPECT_THAT(Eval("[a] == 5.0"), HoldsValue(true));
  EXPECT_THAT(Eval("[a] != 5.0"), HoldsValue(false));
  EXPECT_THAT(Eval("[half] * 2 == [a]"), HoldsValue(true));
  EXPECT_THAT(Eval("[nums][0] == 1"), HoldsValue(true));
  Json signed_root = {{"n", -1}, {"u", 1u}};
  EXPECT_THAT(Eval("[u] == 1", signed_root), HoldsValue(true));
  EXPECT_THAT(Eval("[n] == -1", signed_root), HoldsValue(true));
  EXPECT_THAT(Eval("[n] == 18446744073709551615", signed_root), HoldsValue(false));
}

TEST(ExpressionTest, MapsAndListsCompareDeeply) {
  Json root = Json::parse(R"({
    "x": {"a": [1, {"b": 2.0}], "c": "s"},
    "y": {"c": "s", "a": [1.0, {"b": 2}]},
    "z": {"a": [{"b": 2}, 1], "c": "s"},
    "w": {"a": [1, {"b": 2}]},
    "l1": [1, 2], "l2": [1, 2], "l3": [1, 2, 3]
  })");
  EXPECT_THAT(Eval("[x] == [y]", root), HoldsValue(true));
  EXPECT_THAT(Eval("[x] == [z]", root), HoldsValue(false));  // list order matters
  EXPECT_THAT(Eval("[x] != [w]", root), HoldsValue(true));   // missing key
  EXPECT_THAT(Eval("[l1] == [l2]", root), HoldsValue(true));
  EXPECT_THAT(Eval("[l1] == [l3]", root), HoldsValue(false));
  EXPECT_THAT(Eval("[x] == [l1]", root), HoldsValue(false));
}

TEST(ExpressionTest, OrderingIncomparableValuesIsAnErrorAtTheOperator) {
  EXPECT_THAT(Eval("'a' < 1"), FailsAtColumn(5, HasSubstr("cannot compare a string with")));
  EXPECT_THAT(Eval("[items] > 1"), FailsAtColumn(9, HasSubstr("cannot compare a list")));
}

TEST(ExpressionTest, ChainedComparisonsAreRejected) {
  EXPECT_THAT(Expression::Compile("1 < 2 < 3"), FailsAtColumn(7, HasSubstr("cannot be chained")));
  EXPECT_THAT(Expression::Compile("[a] == 1 == true"),
              FailsAtColumn(10, HasSubstr("cannot be chained")));
  EXPECT_THAT(Expression::Compile("1 eq 1 ne 2"), FailsAtColumn(8, HasSubstr("cannot be chained")));
  // Parentheses make the intent explicit and are accepted.
  EXPECT_THAT(Eval("(1 < 2) == true"), HoldsValue(true));
}

// ---------------------------------------------------------------------------------------------
// Logical operators

INSTANTIATE_TEST_SUITE_P(
    Logical, ExpressionOperatorTest,
    ::testing::Values(Case{"true && true", true}, Case{"true && false", false},
                      Case{"false || true", true}, Case{"false || false", false},
                      Case{"!true", false}, Case{"!false", true}, Case{"!!true", true},
                      Case{"true and false", false}, Case{"true AND true", true},
                      Case{"false or true", true}, Case{"false OR false", false},
                      Case{"not true", false}, Case{"NOT false", true},
                      Case{"[a] == 5 && [name] == 'sagaflow'", true},
                      Case{"[a] == 1 || [a] == 5", true},
                      // && binds tighter than ||.
                      Case{"true || false && false", true}, Case{"(true || false) && false", false},
                      Case{"!([a] > 1) or [flag]", true}));

TEST(ExpressionTest, AndOrShortCircuit) {
  // The right operand would fail: reading a property of null.
  EXPECT_THAT(Eval("false && [missing].x"), HoldsValue(false));
  EXPECT_THAT(Eval("true || [missing].x"), HoldsValue(true));
  EXPECT_THAT(Eval("true && [missing].x"), FailsAtColumn(19, HasSubstr("of null")));
}

TEST(ExpressionTest, LogicalOperatorsNeedBooleans) {
  EXPECT_THAT(Eval("1 && true"), FailsAtColumn(1, HasSubstr("expected true or false")));
  EXPECT_THAT(Eval("false || 'x'"), FailsAtColumn(10, HasSubstr("expected true or false")));
  EXPECT_THAT(Eval("![a]"), FailsAtColumn(2, HasSubstr("found an integer")));
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

INSTANTIATE_TEST_SUITE_P(
    Arithmetic, ExpressionOperatorTest,
    ::testing::Values(Case{"2 + 3", 5}, Case{"2 - 3", -1}, Case{"2 * 3", 6}, Case{"7 / 2", 3},
                      Case{"7 div 2", 3}, Case{"7 DIV 2", 3}, Case{"-7 / 2", -3}, Case{"7 % 3", 1},
                      Case{"7 mod 3", 1}, Case{"-7 % 3", -1}, Case{"7.0 / 2", 3.5},
                      Case{"7 / 2.0", 3.5}, Case{"1.5 + 1", 2.5}, Case{"2 * 1.5", 3.0},
                      Case{"5.5 % 2", 1.5}, Case{"2 + 3 * 4", 14}, Case{"(2 + 3) * 4", 20},
                      Case{"10 - 2 - 3", 5}, Case{"2 * 3 % 4", 2}, Case{"-(2 + 3)", -5},
                      Case{"- [neg]", 3}, Case{"-[half]", -2.5}, Case{"[half] * 2", 5.0},
                      Case{"[order].total + 0.5", 121.0}, Case{"'a' + 'b'", "ab"},
                      Case{"'n=' + 5", "n=5"}, Case{"1 + 'x'", "1x"}, Case{"'v' + 1.5", "v1.5"},
                      Case{"'x' + null", "xnull"}, Case{"'t' + true", "ttrue"},
                      Case{"[name] + '-' + [order].id", "sagaflow-o-1"}, Case{"1 + 2 + 'x'", "3x"},
                      Case{"'x' + 1 + 2", "x12"}, Case{"2 + 3 > 4", true}));

TEST(ExpressionTest, ArithmeticOnContextIntegersStaysInteger) {
  // Non-negative integers read from JSON (task results, a reloaded context) are the same
  // integers as literals: SpEL computes int op int as int.
  Json root = Json::parse(R"({"n": 5, "m": 2})");
  EXPECT_THAT(Eval("[n] + 1", root), HoldsValue(6));
  EXPECT_THAT(Eval("[n] - [m]", root), HoldsValue(3));
  EXPECT_THAT(Eval("[n] * [m]", root), HoldsValue(10));
  EXPECT_THAT(Eval("[n] / [m]", root), HoldsValue(2));
  EXPECT_THAT(Eval("[n] % [m]", root), HoldsValue(1));
  EXPECT_THAT(Eval("[n] / 2 == 2", root), HoldsValue(true));
}

TEST(ExpressionTest, DivisionByZeroIsAnErrorAtTheOperator) {
  EXPECT_THAT(Eval("1 / 0"), FailsAtColumn(3, HasSubstr("division by zero")));
  EXPECT_THAT(Eval("1 div 0"), FailsAtColumn(3, HasSubstr("division by zero")));
  EXPECT_THAT(Eval("1 % 0"), FailsAtColumn(3, HasSubstr("division by zero")));
  EXPECT_THAT(Eval("1 mod 0"), FailsAtColumn(3, HasSubstr("division by zero")));
  EXPECT_THAT(Eval("[half] / 0.0"), FailsAtColumn(8, HasSubstr("division by zero")));
  EXPECT_THAT(Eval("[a] / ([a] - 5)"), FailsAtColumn(5, HasSubstr("division by zero")));
}

TEST(ExpressionTest, IntegerOverflowFallsBackToFloat) {
  EXPECT_THAT(Eval("9223372036854775807 + 1"), HoldsValue(9223372036854775808.0));
  EXPECT_THAT(Eval("-9223372036854775807 - 2"), HoldsValue(-9223372036854775809.0));
  EXPECT_THAT(Eval("9223372036854775807 * 2"), HoldsValue(18446744073709551614.0));
  EXPECT_THAT(Eval("(-9223372036854775807 - 1) / -1"), HoldsValue(9223372036854775808.0));
  EXPECT_THAT(Eval("-(-9223372036854775807 - 1)"), HoldsValue(9223372036854775808.0));
  EXPECT_THAT(Eval("9223372036854775806 + 1"),
              HoldsValue(std::numeric_limits<std::int64_t>::max()));
}

TEST(ExpressionTest, LargeIntegersCompareExactly) {
  Json root = {{"big", std::uint64_t{9223372036854775808u}},
               {"max", std::numeric_limits<std::int64_t>::max()}};
  EXPECT_THAT(Eval("[big] > [max]", root), HoldsValue(true));
  EXPECT_THAT(Eval("[max] < [big]", root), HoldsValue(true));
  EXPECT_THAT(Eval("[big] > 9223372036854775807", root), HoldsValue(true));
  EXPECT_THAT(Eval("[max] >= 9223372036854775807", root), HoldsValue(true));
}

TEST(ExpressionTest, NegatingALargeUnsignedContextValueKeepsItsMagnitude) {
  Json root = {{"u", std::numeric_limits<std::uint64_t>::max()}};
  EXPECT_THAT(Eval("-[u]", root), HoldsValue(-18446744073709551615.0));
}

TEST(ExpressionTest, NonFiniteResultIsAnError) {
  EXPECT_THAT(Eval("1e308 * 10"), FailsAtColumn(7, HasSubstr("not a finite number")));
}

TEST(ExpressionTest, ArithmeticNeedsNumbers) {
  EXPECT_THAT(Eval("[a] - 'x'"), FailsAtColumn(5, HasSubstr("'-' needs numbers")));
  EXPECT_THAT(Eval("true * 2"), FailsAtColumn(6, HasSubstr("'*' needs numbers")));
  EXPECT_THAT(Eval("[missing] + 1"), FailsAtColumn(11, HasSubstr("'+' needs numbers")));
  EXPECT_THAT(Eval("-'x'"), FailsAtColumn(1, HasSubstr("cannot negate a string")));
}

// ---------------------------------------------------------------------------------------------
// Methods and selection

TEST(ExpressionTest, SizeOfListsMapsAndStrings) {
  EXPECT_THAT(Eval("[items].size()"), HoldsValue(3));
  EXPECT_THAT(Eval("[order].size()"), HoldsValue(3));
  EXPECT_THAT(Eval("[name].size()"), HoldsValue(8));
  EXPECT_THAT(Eval("'abc'.size()"), HoldsValue(3));
  EXPECT_THAT(Eval("[empty_list].size() == 0"), HoldsValue(true));
}

TEST(ExpressionTest, IsEmptyOfListsMapsAndStrings) {
  EXPECT_THAT(Eval("[items].isEmpty()"), HoldsValue(false));
  EXPECT_THAT(Eval("[empty_list].isEmpty()"), HoldsValue(true));
  EXPECT_THAT(Eval("[empty_map].isEmpty()"), HoldsValue(true));
  EXPECT_THAT(Eval("''.isEmpty()"), HoldsValue(true));
  EXPECT_THAT(Eval("!'x'.isEmpty()"), HoldsValue(true));
}

TEST(ExpressionTest, SizeOfNullOrNumberIsAnError) {
  EXPECT_THAT(Eval("[missing].size()"), FailsAtColumn(11, HasSubstr("cannot call size() on null")));
  EXPECT_THAT(Eval("[a].isEmpty()"), FailsAtColumn(5, HasSubstr("isEmpty() on an integer")));
}

TEST(ExpressionTest, MethodsOtherThanSizeAndIsEmptyAreRejected) {
  EXPECT_THAT(Expression::Compile("[name].toUpperCase()"),
              FailsAtColumn(8, HasSubstr("unsupported method 'toUpperCase()'")));
  EXPECT_THAT(Expression::Compile("[items].size(1)"), FailsAtColumn(14, HasSubstr("no arguments")));
  EXPECT_THAT(Expression::Compile("max(1, 2)"), FailsAtColumn(1, HasSubstr("not supported")));
}

TEST(ExpressionTest, SelectionBareNamesResolveAgainstTheElement) {
  EXPECT_THAT(Eval("[items].?[price > 10]"), HoldsValue(Json::parse(R"([
      {"sku": "B", "price": 20, "qty": 2}, {"sku": "C", "price": 50, "qty": 0}])")));
  EXPECT_THAT(Eval("[items].?[[qty] == 0]"),
              HoldsValue(Json::parse(R"([{"sku": "C", "price": 50, "qty": 0}])")));
  EXPECT_THAT(Eval("[items].?[sku == 'A'][0].price"), HoldsValue(5));
}

TEST(ExpressionTest, SelectionThisIsTheElement) {
  EXPECT_THAT(Eval("[nums].?[#this > 2]"), HoldsValue(Json::array({3, 4})));
  EXPECT_THAT(Eval("[nums].?[#this % 2 == 0].size()"), HoldsValue(2));
  EXPECT_THAT(Eval("[items].?[#this.qty > 0].size()"), HoldsValue(2));
}

TEST(ExpressionTest, SelectionRootStaysTheRoot) {
  // `min` is 10 in the context and absent from the elements.
  EXPECT_THAT(Eval("[items].?[price > #root.min].size()"), HoldsValue(2));
  EXPECT_THAT(Eval("[items].?[price > #root[min]].size()"), HoldsValue(2));
  EXPECT_THAT(Eval("[items].?[min == null].size()"), HoldsValue(3));
}

TEST(ExpressionTest, NestedSelectionSeesItsOwnElement) {
  Json root = Json::parse(R"({"groups": [[1, 5], [2, 3], [7]]})");
  EXPECT_THAT(Eval("[groups].?[#this.?[#this > 4].size() > 0]", root),
              HoldsValue(Json::parse("[[1, 5], [7]]")));
}

TEST(ExpressionTest, SelectionOfNothingIsAnEmptyList) {
  EXPECT_THAT(Eval("[items].?[price > 1000]"), HoldsValue(Json::array()));
  EXPECT_THAT(Eval("[items].?[price > 1000].isEmpty()"), HoldsValue(true));
  EXPECT_THAT(Eval("[empty_list].?[true]"), HoldsValue(Json::array()));
}

TEST(ExpressionTest, SelectionNullConditionDropsTheElement) {
  EXPECT_THAT(Eval("[items].?[missing]"), HoldsValue(Json::array()));
}

TEST(ExpressionTest, SelectionNeedsAListAndABooleanCondition) {
  EXPECT_THAT(Eval("[order].?[true]"), FailsAtColumn(8, HasSubstr("needs a list, found a map")));
  EXPECT_THAT(Eval("[items].?[price]"), FailsAtColumn(11, HasSubstr("must be true or false")));
}

TEST(ExpressionTest, SelectionErrorsReportTheFailingNode) {
  EXPECT_THAT(Eval("[items].?[price / qty > 1]"), FailsAtColumn(17, HasSubstr("division by zero")));
}

// ---------------------------------------------------------------------------------------------
// Syntax errors and limits

TEST(ExpressionTest, SyntaxErrorsReportOneBasedColumns) {
  EXPECT_THAT(Expression::Compile("[a] == == 1"),
              FailsAtColumn(8, HasSubstr("expected an operand, found '=='")));
  EXPECT_THAT(Expression::Compile("[a] @ 1"),
              FailsAtColumn(5, HasSubstr("unexpected character '@'")));
  EXPECT_THAT(Expression::Compile("[a] = 1"), FailsAtColumn(5, HasSubstr("use '=='")));
  EXPECT_THAT(Expression::Compile("[a"), FailsAtColumn(3, HasSubstr("expected ']'")));
  EXPECT_THAT(Expression::Compile("(1 + 2"), FailsAtColumn(7, HasSubstr("expected ')'")));
  EXPECT_THAT(Expression::Compile("1 2"), FailsAtColumn(3, HasSubstr("an operator or the end")));
  EXPECT_THAT(Expression::Compile("[]"), FailsAtColumn(2, HasSubstr("a key or an index")));
  EXPECT_THAT(Expression::Compile("[a]."), FailsAtColumn(5, HasSubstr("a property name")));
  EXPECT_THAT(Expression::Compile("[a] &&"), FailsAtColumn(7, HasSubstr("an operand")));
  EXPECT_THAT(Expression::Compile("[a] and or"), FailsAtColumn(9, HasSubstr("an operand")));
  EXPECT_THAT(Expression::Compile("[items].?[true"),
              FailsAtColumn(15, HasSubstr("']' to close the selection")));
  EXPECT_THAT(Expression::Compile("  # == 1"), FailsAtColumn(3, HasSubstr("variable name")));
}

TEST(ExpressionTest, UnknownVariableIsRejected) {
  EXPECT_THAT(Expression::Compile("#other == 1"),
              FailsAtColumn(1, HasSubstr("unknown variable '#other'")));
}

TEST(ExpressionTest, EmptyExpressionIsRejected) {
  EXPECT_THAT(Expression::Compile(""), FailsAtColumn(1, HasSubstr("empty")));
  EXPECT_THAT(Expression::Compile("  "),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(ExpressionTest, SourceIsKept) {
  auto e = Expression::Compile("[a] == 5");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->source(), "[a] == 5");
  EXPECT_EQ(e->form(), Expression::Form::kSpel);
}

TEST(ExpressionTest, LengthLimitIsEnforced) {
  std::string at_limit(Expression::kMaxLength - 1, ' ');
  at_limit += '1';
  EXPECT_THAT(Expression::Compile(at_limit), IsOk());
  std::string over = " " + at_limit;
  EXPECT_THAT(Expression::Compile(over),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));

  std::string dollar_at_limit = "$." + std::string(Expression::kMaxLength - 3, ' ') + "1";
  ASSERT_EQ(dollar_at_limit.size(), Expression::kMaxLength);
  EXPECT_THAT(Expression::CompileDollar(dollar_at_limit), IsOk());
  EXPECT_THAT(Expression::CompileDollar(dollar_at_limit + " "),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));
  EXPECT_THAT(Expression::CompileDollar("$Exception{" + std::string(5000, 'E') + "}"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("the limit is 4096")));
}

TEST(ExpressionTest, LongestOperatorChainsEvaluate) {
  // The longest expressions a definition may hold still evaluate (no deep recursion crash).
  std::string sum = "1";
  while (sum.size() + 2 <= Expression::kMaxLength) sum += "+1";
  EXPECT_THAT(Eval(sum), HoldsValue(static_cast<std::int64_t>((sum.size() + 1) / 2)));

  Json root = {{"a", nullptr}};
  std::string chain = "[a]";
  while (chain.size() + 3 <= Expression::kMaxLength) chain += "?.a";
  EXPECT_THAT(Eval(chain, root), HoldsValue(nullptr));
}

std::string Nested(int depth, std::string_view open, std::string_view inner,
                   std::string_view close) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open;
  s += inner;
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

TEST(ExpressionTest, DepthLimitIsEnforced) {
  const int max = Expression::kMaxDepth;
  EXPECT_THAT(Eval(Nested(max, "(", "1", ")")), HoldsValue(1));
  EXPECT_THAT(Expression::Compile(Nested(max + 1, "(", "1", ")")),
              FailsAtColumn(max + 1, HasSubstr("nested deeper than 64 levels")));
  EXPECT_THAT(Eval(Nested(max, "!", "true", "")), HoldsValue(true));
  EXPECT_THAT(Expression::Compile(Nested(max + 1, "!", "true", "")),
              FailsAtColumn(max + 1, HasSubstr("nested deeper")));
  EXPECT_THAT(Expression::Compile(Nested(max + 1, "- ", "1", "")),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("nested deeper")));
  EXPECT_THAT(Expression::Compile(Nested(max + 1, "[", "a", "]")),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("nested deeper")));
  EXPECT_THAT(Expression::Compile(Nested(max + 1, "[l].?[", "true", "]")),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("nested deeper")));
}

// ---------------------------------------------------------------------------------------------
// Conditions

TEST(ExpressionTest, ConditionIsTrueOrFalse) {
  EXPECT_THAT(Condition("[a] == 5"), HoldsBool(true));
  EXPECT_THAT(Condition("[flag]"), HoldsBool(true));
  EXPECT_THAT(Condition("[a] > 5"), HoldsBool(false));
}

TEST(ExpressionTest, NullConditionIsFalse) {
  EXPECT_THAT(Condition("[missing]"), HoldsBool(false));
  EXPECT_THAT(Condition("null"), HoldsBool(false));
  EXPECT_THAT(Condition("[order]?.missing?.x"), HoldsBool(false));
}

TEST(ExpressionTest, NonBooleanConditionIsAnError) {
  EXPECT_THAT(Condition("[a]"),
              FailsAtColumn(1, HasSubstr("expected true or false, found an integer")));
  EXPECT_THAT(Condition("'true'"), FailsAtColumn(1, HasSubstr("found a string")));
  EXPECT_THAT(Condition("[items]"), FailsAtColumn(1, HasSubstr("found a list")));
}

// Paths of map keys, alone or compared with a literal, are answered by a fast path; these pin
// that it agrees with the general evaluator, errors included.
TEST(ExpressionTest, PathComparedWithALiteralAgreesWithTheGeneralRules) {
  EXPECT_THAT(Condition("[order].id == 'o-1'"), HoldsBool(true));
  EXPECT_THAT(Condition("'o-1' == [order].id"), HoldsBool(true));
  EXPECT_THAT(Condition("[order].id != 'o-1'"), HoldsBool(false));
  EXPECT_THAT(Condition("[a] == 5.0"), HoldsBool(true));  // numbers compare across types
  EXPECT_THAT(Condition("[missing] == null"), HoldsBool(true));
  EXPECT_THAT(Condition("[order].missing != null"), HoldsBool(false));
  EXPECT_THAT(Condition("[missing].x == 1"), FailsAtColumn(11, HasSubstr("of null")));
  EXPECT_THAT(Condition("[a].x == 1"), FailsAtColumn(5, HasSubstr("of an integer")));
  EXPECT_THAT(Condition("[missing]?.x == null"), HoldsBool(true));
  EXPECT_THAT(Eval("[order].customer.vip == true"), HoldsValue(true));
  EXPECT_THAT(Eval("[order].customer.vip != true"), HoldsValue(false));
}

TEST(ExpressionTest, RootComparedWithALiteral) {
  for (const auto& [root, holds] :
       std::vector<std::pair<Json, bool>>{{true, true}, {false, false}, {nullptr, false},
                                          {Json::object(), false}, {1, false}}) {
    EXPECT_THAT(Condition("#root == true", root), HoldsBool(holds)) << root.dump();
    EXPECT_THAT(Condition("#root != true", root), HoldsBool(!holds)) << root.dump();
  }
  auto e = Expression::Compile("#root == true");
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT(e->EvaluateCondition(EvalEnv{}), HoldsBool(false));  // no root: null
}

TEST(ExpressionTest, APathValueIsACopyOfWhatItReaches) {
  EXPECT_THAT(Eval("[order].customer"), HoldsValue(Json{{"name", "Ann"}, {"vip", true}}));
  EXPECT_THAT(EvalDollar("$.[order].total"), HoldsValue(120.5));
  EXPECT_THAT(EvalDollar("$.#root", Json(7)), HoldsValue(7));
  EXPECT_THAT(Condition("[order].customer.vip"), HoldsBool(true));
  EXPECT_THAT(Condition("[order].id"), FailsAtColumn(9, HasSubstr("found a string")));
}

TEST(ExpressionTest, EmptyExpressionCannotBeEvaluated) {
  Expression e;
  EXPECT_THAT(e.Evaluate(EvalEnv{}), StatusIs(StatusCode::kFailedPrecondition));
  EXPECT_THAT(e.EvaluateCondition(EvalEnv{}), StatusIs(StatusCode::kFailedPrecondition));
}

TEST(ExpressionTest, CopiesShareTheCompiledProgram) {
  auto e = Expression::Compile("[a] == 5");
  ASSERT_THAT(e, IsOk());
  Expression copy = *e;
  Expression moved = std::move(*e);
  EXPECT_EQ(copy.source(), "[a] == 5");
  EXPECT_THAT(copy.Evaluate(EvalEnv{.root = &Context()}), HoldsValue(true));
  EXPECT_THAT(moved.Evaluate(EvalEnv{.root = &Context()}), HoldsValue(true));
}

// ---------------------------------------------------------------------------------------------
// `$` forms

TEST(ExpressionTest, DollarDotIsAnExpression) {
  EXPECT_THAT(EvalDollar("$.[a]"), HoldsValue(5));
  EXPECT_THAT(EvalDollar("$.#root.order.id"), HoldsValue("o-1"));
  EXPECT_THAT(EvalDollar("$.[items][0]"),
              HoldsValue(Json::parse(R"({"sku": "A", "price": 5, "qty": 1})")));
  auto e = Expression::CompileDollar("$.[a]");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->form(), Expression::Form::kSpel);
  EXPECT_EQ(e->source(), "$.[a]");
}

TEST(ExpressionTest, DollarColumnsCountFromTheDollar) {
  EXPECT_THAT(Expression::CompileDollar("$.[a] == == 1"), FailsAtColumn(10));
  EXPECT_THAT(Expression::CompileDollar("$."), FailsAtColumn(3, HasSubstr("empty")));
  EXPECT_THAT(EvalDollar("$.[missing].x"), FailsAtColumn(13, HasSubstr("of null")));
  EXPECT_THAT(EvalDollar("$.1 / 0"), FailsAtColumn(5, HasSubstr("division by zero")));
}

TEST(ExpressionTest, DollarNeedsADollar) {
  EXPECT_THAT(Expression::CompileDollar(""), FailsAtColumn(1));
  EXPECT_THAT(Expression::CompileDollar("[a]"), FailsAtColumn(1, HasSubstr("expected '$'")));
}

TEST(ExpressionTest, UnknownDollarFormsAreRejected) {
  EXPECT_THAT(Expression::CompileDollar("$Foo.bar"),
              FailsAtColumn(1, HasSubstr("unknown expression form '$Foo'")));
  EXPECT_THAT(Expression::CompileDollar("$"),
              FailsAtColumn(1, HasSubstr("unknown expression form")));
  EXPECT_THAT(Expression::CompileDollar("$exception{X}"), FailsAtColumn(1));
  EXPECT_THAT(Expression::CompileDollar("$[a]"), FailsAtColumn(1));
}

TEST(ExpressionTest, ExceptionFormAsksTheHost) {
  auto e = Expression::CompileDollar("$Exception{NetworkError}");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->form(), Expression::Form::kExceptionMatch);
  EXPECT_EQ(e->exception_type(), "NetworkError");

  FakeHost matches({"NetworkError"});
  EXPECT_THAT(e->EvaluateCondition(EvalEnv{.root = &Context(), .host = &matches}), HoldsBool(true));
  EXPECT_THAT(e->Evaluate(EvalEnv{.root = &Context(), .host = &matches}), HoldsValue(true));
  EXPECT_THAT(matches.asked(), ::testing::Each(std::string("NetworkError")));

  FakeHost other({"ConnectError"});
  EXPECT_THAT(e->EvaluateCondition(EvalEnv{.root = &Context(), .host = &other}), HoldsBool(false));
}

TEST(ExpressionTest, ExceptionFormWithoutHostIsFalse) {
  auto e = Expression::CompileDollar("$Exception{Error}");
  ASSERT_THAT(e, IsOk());
  EXPECT_THAT(e->EvaluateCondition(EvalEnv{.root = &Context()}), HoldsBool(false));
}

TEST(ExpressionTest, ExceptionFormTrimsAndAcceptsJavaNames) {
  auto e = Expression::CompileDollar("$Exception{ java.lang.Throwable }");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->exception_type(), "java.lang.Throwable");
  EXPECT_EQ(e->source(), "$Exception{ java.lang.Throwable }");
}

TEST(ExpressionTest, MalformedExceptionFormsAreRejected) {
  EXPECT_THAT(Expression::CompileDollar("$Exception{}"),
              FailsAtColumn(12, HasSubstr("needs an error type")));
  EXPECT_THAT(Expression::CompileDollar("$Exception{  }"), FailsAtColumn(12));
  EXPECT_THAT(Expression::CompileDollar("$Exception{Foo"),
              FailsAtColumn(14, HasSubstr("expected '}'")));
  EXPECT_THAT(Expression::CompileDollar("$Exception{Foo Bar}"),
              FailsAtColumn(15, HasSubstr("unexpected character ' '")));
  EXPECT_THAT(Expression::CompileDollar("$Exception{ a-b}"), FailsAtColumn(14));
}

TEST(ExpressionTest, SequenceFormAsksTheHost) {
  auto e = Expression::CompileDollar("$Sequence.BUSINESS_KEY|SIMPLE");
  ASSERT_THAT(e, IsOk());
  EXPECT_EQ(e->form(), Expression::Form::kSequence);
  FakeHost host;
  EXPECT_THAT(e->Evaluate(EvalEnv{.root = &Context(), .host = &host}),
              HoldsValue("BUSINESS_KEY|SIMPLE#1"));
  EXPECT_THAT(e->Evaluate(EvalEnv{.root = &Context(), .host = &host}),
              HoldsValue("BUSINESS_KEY|SIMPLE#2"));
}

TEST(ExpressionTest, SequenceRuleDefaultsToSimple) {
  FakeHost host;
  EXPECT_THAT(EvalDollar("$Sequence.ORDER", Context(), &host), HoldsValue("ORDER|SIMPLE#1"));
  EXPECT_THAT(EvalDollar("$Sequence.ORDER|UUID", Context(), &host), HoldsValue("ORDER|UUID#2"));
}

TEST(ExpressionTest, SequenceWithoutHostFails) {
  EXPECT_THAT(EvalDollar("$Sequence.ORDER|SIMPLE"),
              StatusIs(StatusCode::kFailedPrecondition, HasSubstr("$Sequence.ORDER|SIMPLE")));
}

TEST(ExpressionTest, SequenceIsNotACondition) {
  auto e = Expression::CompileDollar("$Sequence.ORDER|SIMPLE");
  ASSERT_THAT(e, IsOk());
  FakeHost host;
  EXPECT_THAT(e->EvaluateCondition(EvalEnv{.root = &Context(), .host = &host}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("not a condition")));
}

TEST(ExpressionTest, MalformedSequenceFormsAreRejected) {
  EXPECT_THAT(Expression::CompileDollar("$Sequence."), FailsAtColumn(11, HasSubstr("entity name")));
  EXPECT_THAT(Expression::CompileDollar("$Sequence.|SIMPLE"), FailsAtColumn(11));
  EXPECT_THAT(Expression::CompileDollar("$Sequence.ORDER|SI MPLE"),
              FailsAtColumn(19, HasSubstr("unexpected character ' '")));
}

TEST(ExpressionTest, StatusKeyIsExceptionFormOrPlainExpression) {
  auto ex = Expression::CompileStatusKey("$Exception{TimeoutError}");
  ASSERT_THAT(ex, IsOk());
  EXPECT_EQ(ex->form(), Expression::Form::kExceptionMatch);
  auto plain = Expression::CompileStatusKey("#root == true");
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->form(), Expression::Form::kSpel);
  EXPECT_THAT(plain->EvaluateCondition(EvalEnv{.root = nullptr}), HoldsBool(false));
  Json t = true;
  EXPECT_THAT(plain->EvaluateCondition(EvalEnv{.root = &t}), HoldsBool(true));
  EXPECT_THAT(Expression::CompileStatusKey("$Bogus"), FailsAtColumn(1));
  EXPECT_THAT(Expression::CompileStatusKey("#root == == 1"), FailsAtColumn(10));
}

}  // namespace
}  // namespace sagaflow::statelang
