#include "sagaflow/statelang/value_template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

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

class SequenceHost : public ExpressionHost {
 public:
  bool CurrentErrorMatches(std::string_view) const override { return false; }
  std::string NextSequence(std::string_view entity, std::string_view rule) const override {
    return std::string(entity) + ":" + std::string(rule);
  }
};

const Json& Context() {
  static const Json kContext = Json::parse(R"({
    "order": {"id": "o-1", "items": [{"sku": "A"}, {"sku": "B"}], "note": null},
    "qty": 3,
    "flag": false
  })");
  return kContext;
}

ValueTemplate MustCompile(const char* json) {
  auto t = ValueTemplate::Compile(OrderedJson::parse(json));
  EXPECT_THAT(t, IsOk()) << json;
  return t.ok() ? std::move(t).value() : ValueTemplate();
}

Result<Json> Render(const ValueTemplate& t, const ExpressionHost* host = nullptr) {
  return t.Render(EvalEnv{.root = &Context(), .host = host});
}

MATCHER_P(Renders, expected_json, "renders " + std::string(expected_json)) {
  const Json expected = Json::parse(expected_json);
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  *result_listener << "rendered " << arg.value().dump();
  return arg.value() == expected;
}

TEST(ValueTemplateTest, ScalarsAreConstants) {
  for (const char* json : {"5", "2.5", "true", "null", "\"text\"", "[]", "{}"}) {
    ValueTemplate t = MustCompile(json);
    EXPECT_TRUE(t.is_constant()) << json;
    EXPECT_THAT(Render(t), Renders(json));
  }
}

TEST(ValueTemplateTest, StringsNotStartingWithDollarStayLiteral) {
  for (const char* json : {R"("literal text stays literal")", R"(" $.[qty]")", R"("a$.[qty]")",
                           R"("[qty] == 3")", R"("#root")", R"("")"}) {
    ValueTemplate t = MustCompile(json);
    EXPECT_TRUE(t.is_constant()) << json;
    EXPECT_THAT(Render(t), Renders(json));
  }
}

TEST(ValueTemplateTest, DollarStringIsAnExpression) {
  ValueTemplate t = MustCompile(R"("$.[order].id")");
  EXPECT_FALSE(t.is_constant());
  EXPECT_THAT(Render(t), Renders(R"("o-1")"));
  EXPECT_THAT(Render(MustCompile(R"("$.#root.qty")")), Renders("3"));
  EXPECT_THAT(Render(MustCompile(R"("$.[order].items")")),
              Renders(R"([{"sku": "A"}, {"sku": "B"}])"));
}

TEST(ValueTemplateTest, SequenceLeafAsksTheHost) {
  SequenceHost host;
  EXPECT_THAT(Render(MustCompile(R"({"key": "$Sequence.BUSINESS_KEY|SIMPLE"})"), &host),
              Renders(R"({"key": "BUSINESS_KEY:SIMPLE"})"));
}

TEST(ValueTemplateTest, NestedMapsAndListsRenderTheirLeaves) {
  ValueTemplate t = MustCompile(R"({
    "id": "$.[order].id",
    "lines": ["$.[order].items[1].sku", 7, {"n": "$.[qty] * 2", "fixed": "x"}],
    "static": {"a": [1, 2], "b": "c"}
  })");
  EXPECT_FALSE(t.is_constant());
  EXPECT_THAT(Render(t), Renders(R"({
    "id": "o-1",
    "lines": ["B", 7, {"n": 6, "fixed": "x"}],
    "static": {"a": [1, 2], "b": "c"}
  })"));
}

TEST(ValueTemplateTest, SubtreesWithoutExpressionsAreConstant) {
  EXPECT_TRUE(MustCompile(R"({"a": [1, {"b": "c"}], "d": "x$"})").is_constant());
  EXPECT_FALSE(MustCompile(R"([[["$.[qty]"]]])").is_constant());
  EXPECT_FALSE(MustCompile(R"({"a": 1, "b": {"c": "$.[qty]"}})").is_constant());
}

TEST(ValueTemplateTest, RenderingTwiceGivesTheSameValue) {
  ValueTemplate t = MustCompile(R"({"a": "$.[qty]", "b": ["$.[flag]"]})");
  auto first = Render(t);
  auto second = Render(t);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(first.value(), second.value());
}

TEST(ValueTemplateTest, NullMapEntriesAreDropped) {
  EXPECT_THAT(Render(MustCompile(R"({"id": "$.[order].id", "gone": "$.[missing]",
                                     "note": "$.[order].note", "flag": "$.[flag]"})")),
              Renders(R"({"id": "o-1", "flag": false})"));
  EXPECT_THAT(Render(MustCompile(R"({"outer": {"inner": "$.[missing]", "k": "$.[qty]"}})")),
              Renders(R"({"outer": {"k": 3}})"));
}

TEST(ValueTemplateTest, NullMapEntriesInConstantsAreDropped) {
  ValueTemplate t = MustCompile(R"({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]})");
  EXPECT_TRUE(t.is_constant());
  EXPECT_THAT(Render(t), Renders(R"({"b": {"d": 1}, "e": [{}]})"));
  // The same rule in a template that also has expressions.
  EXPECT_THAT(Render(MustCompile(R"({"a": null, "q": "$.[qty]"})")), Renders(R"({"q": 3})"));
}

TEST(ValueTemplateTest, ListNullsAreKept) {
  EXPECT_THAT(Render(MustCompile(R"(["$.[missing]", "$.[qty]", null])")),
              Renders("[null, 3, null]"));
  EXPECT_THAT(Render(MustCompile("[null, 1, null]")), Renders("[null, 1, null]"));
}

TEST(ValueTemplateTest, TopLevelNullExpressionRendersNull) {
  EXPECT_THAT(Render(MustCompile(R"("$.[missing]")")), Renders("null"));
}

TEST(ValueTemplateTest, BadLeafErrorStartsWithItsPointer) {
  auto nested =
      ValueTemplate::Compile(OrderedJson::parse(R"({"a": {"b": ["ok", "$.[x] == == 1"]}})"));
  EXPECT_THAT(nested, StatusIs(StatusCode::kInvalidArgument,
                               AllOf(StartsWith("/a/b/1: "), HasSubstr("column 10"),
                                     HasSubstr("'$.[x] == == 1'"))));

  auto top = ValueTemplate::Compile(OrderedJson("$.[x] =="));
  EXPECT_THAT(top, StatusIs(StatusCode::kInvalidArgument, StartsWith(": column 9")));

  auto in_list = ValueTemplate::Compile(OrderedJson::parse(R"([1, 2, "$Foo.bar"])"));
  EXPECT_THAT(in_list, StatusIs(StatusCode::kInvalidArgument,
                                AllOf(StartsWith("/2: "), HasSubstr("unknown expression form"))));
}

TEST(ValueTemplateTest, BadLeafPointerEscapesSlashAndTilde) {
  auto t = ValueTemplate::Compile(OrderedJson::parse(R"({"a/b~c": {"d": "$Exception{}"}})"));
  EXPECT_THAT(t, StatusIs(StatusCode::kInvalidArgument, StartsWith("/a~1b~0c/d: ")));
}

TEST(ValueTemplateTest, EvaluationErrorNamesTheExpression) {
  ValueTemplate t = MustCompile(R"({"x": ["$.[missing].id"]})");
  EXPECT_THAT(Render(t), StatusIs(StatusCode::kInvalidArgument,
                                  AllOf(HasSubstr("'$.[missing].id'"), HasSubstr("column 13"),
                                        HasSubstr("of null"))));
}

TEST(ValueTemplateTest, DefaultTemplateIsNull) {
  ValueTemplate t;
  EXPECT_TRUE(t.is_constant());
  EXPECT_THAT(Render(t), Renders("null"));
}

}  // namespace
}  // namespace sagaflow::statelang
