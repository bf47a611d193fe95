// Randomized robustness tests for the loader and the expression language. Deterministic (fixed
// seeds), bounded (a few thousand inputs each) and quick enough for ASan+UBSan builds. They check
// only what must hold for every input: no crash, no exception, and every failure explains itself.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "printers.h"
#include "sagaflow/common/json.h"
#include "sagaflow/statelang/expression.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/statelang/state_machine.h"
#include "sagaflow/statelang/value_template.h"

namespace sagaflow::statelang {
namespace {

// Stop reporting after this many failures of one test: one reproducer is enough.
constexpr int kMaxReports = 5;

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}

  // Uniform in [lo, hi].
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }
  std::size_t Index(std::size_t size) {
    return std::uniform_int_distribution<std::size_t>(0, size - 1)(gen_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(gen_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Index(v.size())];
  }

 private:
  std::mt19937_64 gen_;
};

// Printable form of an input for a failure message: escapes control bytes, cuts long text.
std::string Show(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 600)) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > 600) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Random values

const std::vector<std::string>& Keys() {
  static const std::vector<std::string> kKeys = {"a",     "b",     "n",  "s",   "x", "items",
                                                 "order", "price", "ok", "a b", "0", ""};
  return kKeys;
}

Json RandomScalar(Rng& rng) {
  switch (rng.Int(0, 15)) {
    case 0:
      return nullptr;
    case 1:
      return true;
    case 2:
      return false;
    case 3:
      return rng.Int(-3, 3);
    case 4:
      return static_cast<std::uint64_t>(rng.Int(0, 100));
    case 5:
      return std::numeric_limits<std::int64_t>::max();
    case 6:
      return std::numeric_limits<std::int64_t>::min();
    case 7:
      return std::numeric_limits<std::uint64_t>::max();
    case 8:
      return 0.0;
    case 9:
      return -0.0;
    case 10:
      return 1.5;
    case 11:
      return 1e308;
    case 12:
      return "";
    case 13:
      return "text";
    case 14:
      return rng.Pick(Keys());
    default:
      return rng.Int(0, 1000);
  }
}

Json RandomJson(Rng& rng, int depth) {
  int kind = depth <= 0 ? 0 : rng.Int(0, 4);
  if (kind <= 2) return RandomScalar(rng);
  if (kind == 3) {
    Json a = Json::array();
    for (int i = rng.Int(0, 4); i > 0; --i) a.push_back(RandomJson(rng, depth - 1));
    return a;
  }
  Json o = Json::object();
  for (int i = rng.Int(0, 5); i > 0; --i) o[rng.Pick(Keys())] = RandomJson(rng, depth - 1);
  return o;
}

// A context: usually a map with the keys expressions ask for, sometimes any value.
Json RandomContext(Rng& rng) {
  if (rng.Chance(0.15)) return RandomJson(rng, 3);
  Json o = Json::object();
  for (const std::string& k : Keys()) {
    if (rng.Chance(0.7)) o[k] = RandomJson(rng, 3);
  }
  return o;
}

class FuzzHost : public ExpressionHost {
 public:
  explicit FuzzHost(bool matches) : matches_(matches) {}
  bool CurrentErrorMatches(std::string_view) const override { return matches_; }
  std::string NextSequence(std::string_view entity, std::string_view rule) const override {
    return std::string(entity) + "-" + std::string(rule);
  }

 private:
  bool matches_;
};

// ---------------------------------------------------------------------------------------------
// Checks shared by both fuzzers

// A failure's message says what went wrong; a "column N:" prefix points into the source.
::testing::AssertionResult ExplainsItself(const Status& status, std::string_view source,
                                          bool column_may_be_past_end) {
  if (status.ok()) return ::testing::AssertionSuccess();
  const std::string& m = status.message();
  if (m.empty()) return ::testing::AssertionFailure() << "empty error message";
  if (m.rfind("column ", 0) == 0) {
    int column = std::atoi(m.c_str() + 7);
    int last = static_cast<int>(source.size()) + (column_may_be_past_end ? 1 : 0);
    if (column < 1 || column > std::max(last, 1)) {
      return ::testing::AssertionFailure() << "column " << column << " is outside the source of "
                                           << source.size() << " characters: " << m;
    }
  }
  return ::testing::AssertionSuccess();
}

// Evaluates `e` every way the engine does and checks that the two entry points agree.
::testing::AssertionResult EvaluatesSanely(const Expression& e, const Json& context, bool matches) {
  FuzzHost host(matches);
  EvalEnv env{.root = &context, .host = &host};
  Result<Json> value = e.Evaluate(env);
  Result<bool> condition = e.EvaluateCondition(env);
  auto v = ExplainsItself(value.status(), e.source(), false);
  if (!v) return v << " (Evaluate)";
  auto c = ExplainsItself(condition.status(), e.source(), false);
  if (!c) return c << " (EvaluateCondition)";
  if (e.form() != Expression::Form::kSpel || !value.ok()) return ::testing::AssertionSuccess();
  const Json& j = value.value();
  if (j.is_boolean() || j.is_null()) {
    bool want = j.is_boolean() && j.get<bool>();
    if (!condition.ok() || condition.value() != want) {
      return ::testing::AssertionFailure()
             << "Evaluate gave " << j.dump() << " but EvaluateCondition gave "
             << ::testing::PrintToString(condition);
    }
  } else if (condition.ok()) {
    return ::testing::AssertionFailure()
           << "EvaluateCondition accepted the non-boolean value " << j.dump();
  }
  return ::testing::AssertionSuccess();
}

// A syntactically valid expression within the length and depth limits.
std::string Generate(Rng& rng, int depth) {
  static const std::vector<std::string> kBinary = {
      "+",  "-",  "*",  "/",  "%",  "div", "mod", "==", "!=", "<",   "<=", ">",
      ">=", "eq", "ne", "lt", "le", "gt",  "ge",  "&&", "||", "and", "or"};
  static const std::vector<std::string> kLeaves = {
      "0",    "1",       "-2",    "7",   "2.5",     "9223372036854775807",
      "'a'",  "'it''s'", "\"b\"", "''",  "true",    "false",
      "null", "#root",   "#this", "a",   "n",       "items",
      "[a]",  "['a b']", "[0]",   "[n]", "[items]", "s"};
  if (depth <= 0 || rng.Chance(0.25)) return rng.Pick(kLeaves);
  switch (rng.Int(0, 5)) {
    case 0:
      return "(" + Generate(rng, depth - 1) + " " + rng.Pick(kBinary) + " " +
             Generate(rng, depth - 1) + ")";
    case 1:
      return std::string(rng.Pick(std::vector<std::string>{"!", "not ", "-"})) + "(" +
             Generate(rng, depth - 1) + ")";
    case 2:
      return Generate(rng, depth - 1) +
             rng.Pick(std::vector<std::string>{".a", "?.a", ".price", "?.items", ".size()",
                                               ".isEmpty()", "?.size()", "[0]", "[1]", "[a]",
                                               "['0']"});
    case 3:
      return Generate(rng, depth - 1) + ".?[" + Generate(rng, depth - 1) + "]";
    case 4:
      return Generate(rng, depth - 1) + "[" + Generate(rng, depth - 1) + "]";
    default:
      return "(" + Generate(rng, depth - 1) + ")";
  }
}

// ---------------------------------------------------------------------------------------------
// Loader fuzzing

std::vector<std::string> SeedFlows() {
  std::vector<std::string> seeds;
  const std::string dir = std::string(SAGAFLOW_CONFORMANCE_DIR) + "/flows";
  std::vector<std::filesystem::path> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".json") paths.push_back(entry.path());
  }
  std::sort(paths.begin(), paths.end());  // directory order is not deterministic
  for (const auto& p : paths) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    seeds.push_back(buf.str());
  }
  // Every feature in one flow, so that mutations reach every validation rule.
  seeds.push_back(R"json({
  // comment
  "Name": "all", "Comment": "c", "Version": "1", "RecoverStrategy": "Forward", "IsPersist": true,
  "StartState": "A",
  "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "a",
          "CompensateState": "UndoA", "IsForUpdate": true, "IsPersist": "false",
          "Input": [{"id": "$.[order].id", "n": "$.[n] * 2 + 1", "l": ["$.#root", null, 1]},
                    "$Sequence.BUSINESS_KEY|SIMPLE", "literal"],
          "Output": {"r": "$.#root", "ok": "$.#root?.ok == true",
                     "c": "$.[items].?[price > 1].size()"},
          "Status": {"$Exception{NetworkError}": "UN", "#root.ok == true": "SU",
                     "#root == null": "FA"},
          "Retry": [{"Exceptions": ["TimeoutError"], "IntervalSeconds": 0.5, "MaxAttempts": 2,
                     "BackoffRate": 1.5, "MaxDelaySeconds": 3, "JitterStrategy": "FULL"}, {}],
          "Catch": [{"Exceptions": ["java.lang.Throwable"], "Next": "T"}],
          "Next": "C"},
    "C": {"Type": "Choice",
          "Choices": [{"Expression": "[r] != null && [r].ok", "Next": "B"},
                      {"Expression": "$Exception{Error}", "Next": "T"},
                      {"Expression": "[n] > 3 or not [x]", "Next": "A"}],
          "Default": "F"},
    "B": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "b", "Next": "S"},
    "UndoA": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "undoA",
              "Input": ["$.[order]"]},
    /* block comment */
    "T": {"Type": "CompensationTrigger", "Next": "F"},
    "S": {"Type": "Succeed"},
    "F": {"Type": "Fail", "ErrorCode": "E1", "Message": "failed"}
  }
})json");
  return seeds;
}

const std::vector<std::string>& JsonTokens() {
  static const std::vector<std::string> kTokens = {"{",
                                                   "}",
                                                   "[",
                                                   "]",
                                                   ",",
                                                   ":",
                                                   "\"",
                                                   "null",
                                                   "true",
                                                   "false",
                                                   "0",
                                                   "-1",
                                                   "1.5",
                                                   "1e999",
                                                   "-0",
                                                   "18446744073709551616",
                                                   "\"\"",
                                                   "\"A\"",
                                                   "\"Next\"",
                                                   "\"States\"",
                                                   "\"Type\"",
                                                   "\"ServiceTask\"",
                                                   "\"Choice\"",
                                                   "\"Wait\"",
                                                   "\"$.[a] == == 1\"",
                                                   "\"$Exception{\"",
                                                   "\"$Sequence.\"",
                                                   "\"$.\"",
                                                   "//",
                                                   "/*",
                                                   "*/",
                                                   "\n",
                                                   "\\",
                                                   "\\u0000",
                                                   "\\ud800",
                                                   "\xff",
                                                   "\xc3\xa9",
                                                   "{\"Next\": \"A\"}",
                                                   "[[[[",
                                                   "]]]]",
                                                   "\"IsAsync\": true,",
                                                   "\"Loop\": 1,"};
  return kTokens;
}

// Replacement contents for a string literal: names, types and expressions the loader reads.
const std::vector<std::string>& StringContents() {
  static const std::vector<std::string> kContents = {"",
                                                     "A",
                                                     "C",
                                                     "B",
                                                     "S",
                                                     "F",
                                                     "T",
                                                     "UndoA",
                                                     "Missing",
                                                     "ServiceTask",
                                                     "Choice",
                                                     "Succeed",
                                                     "Fail",
                                                     "CompensationTrigger",
                                                     "SubStateMachine",
                                                     "Wait",
                                                     "SU",
                                                     "FA",
                                                     "UN",
                                                     "XX",
                                                     "FULL",
                                                     "NONE",
                                                     "Forward",
                                                     "Compensate",
                                                     "$.[a]",
                                                     "$.#root",
                                                     "$.",
                                                     "$",
                                                     "$Foo.bar",
                                                     "$Exception{}",
                                                     "$Exception{Error}",
                                                     "$Sequence.X|Y",
                                                     "$Sequence.",
                                                     "[a] == == 1",
                                                     "1 < 2 < 3",
                                                     "#root",
                                                     "#this.?[true]",
                                                     "(((((((1)))))))",
                                                     "[a].size()",
                                                     "'unterminated",
                                                     "a/b~c",
                                                     "x: y",
                                                     "true",
                                                     "null"};
  return kContents;
}

// Replaces `$.` values, Status keys and Choice expressions with generated expressions; the flow
// stays valid, so the generated expressions reach the compiled machine.
std::string SwapExpressions(std::string text, Rng& rng) {
  for (std::size_t open = text.find('"'); open != std::string::npos;) {
    std::size_t close = text.find('"', open + 1);
    if (close == std::string::npos) break;
    std::string_view content(text.data() + open + 1, close - open - 1);
    bool dollar = content.rfind("$.", 0) == 0;
    bool condition = !dollar && (content.find("==") != std::string_view::npos ||
                                 content.find("#root") != std::string_view::npos);
    if ((dollar || condition) && rng.Chance(0.7)) {
      std::string quoted = Json((dollar ? "$." : "") + Generate(rng, rng.Int(0, 4))).dump();
      text.replace(open, close - open + 1, quoted);
      close = open + quoted.size() - 1;
    }
    open = text.find('"', close + 1);
  }
  return text;
}

std::string Mutate(std::string text, Rng& rng) {
  for (int round = rng.Int(1, 3); round > 0; --round) {
    std::size_t pos = text.empty() ? 0 : rng.Index(text.size() + 1);
    switch (rng.Int(0, 10)) {
      case 0:  // flip a byte
        if (!text.empty()) {
          text[rng.Index(text.size())] = static_cast<char>(rng.Int(0, 255));
        }
        break;
      case 1:  // truncate
        text.resize(pos);
        break;
      case 2:  // insert a JSON token
        text.insert(pos, rng.Pick(JsonTokens()));
        break;
      case 3:  // delete a range
        text.erase(pos, static_cast<std::size_t>(rng.Int(1, 40)));
        break;
      case 4: {  // copy a range elsewhere
        std::size_t len = static_cast<std::size_t>(rng.Int(1, 80));
        std::string piece = text.substr(pos, len);
        text.insert(text.empty() ? 0 : rng.Index(text.size() + 1), piece);
        break;
      }
      case 5:
      case 6:
      case 7:
      case 8: {  // replace the contents of a string literal (keeps the JSON valid)
        std::size_t open = text.find('"', pos);
        if (open == std::string::npos) open = text.find('"');
        if (open == std::string::npos) break;
        std::size_t close = text.find('"', open + 1);
        if (close == std::string::npos) break;
        text.replace(open + 1, close - open - 1, rng.Pick(StringContents()));
        break;
      }
      case 9:
        text = SwapExpressions(std::move(text), rng);
        break;
      default: {  // nest a value moderately deep where a value may start
        std::size_t colon = text.find(':', pos);
        if (colon == std::string::npos) break;
        int depth = rng.Int(1, 100);
        bool arrays = rng.Chance(0.5);
        std::string open, close;
        for (int i = 0; i < depth; ++i) {
          open += arrays ? "[" : "{\"k\": ";
          close += arrays ? "]" : "}";
        }
        std::size_t end = text.find_first_of(",}", colon + 1);
        if (end == std::string::npos) break;
        text.insert(end, close);
        text.insert(colon + 1, open);
        break;
      }
    }
  }
  return text;
}

// Everything a caller of LoadStateMachine relies on, for any text.
// `loaded`, when given, counts the texts that loaded.
::testing::AssertionResult LoadsSanely(const std::string& text, Rng& rng, int* loaded = nullptr) {
  LoadResult r;
  try {
    r = LoadStateMachine(text);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw " << e.what();
  } catch (...) {
    return ::testing::AssertionFailure() << "threw a non-std exception";
  }
  bool any_error = false;
  for (const Issue& i : r.issues) {
    if (i.message.empty()) return ::testing::AssertionFailure() << "issue without a message";
    if (!i.pointer.empty() && i.pointer[0] != '/') {
      return ::testing::AssertionFailure() << "issue pointer '" << i.pointer << "' is not a "
                                           << "JSON pointer";
    }
    any_error = any_error || i.severity == Issue::Severity::kError;
  }
  if (r.ok() == any_error) {
    return ::testing::AssertionFailure() << "ok() is " << r.ok() << " with issues:\n"
                                         << r.Describe("flow");
  }
  if (!r.ok()) return ::testing::AssertionSuccess();
  if (loaded != nullptr) ++*loaded;

  const StateMachine& m = *r.machine;
  const int n = static_cast<int>(m.states().size());
  auto in_range = [n](StateIndex i) { return i == kNoState || (i >= 0 && i < n); };
  if (n == 0 || m.start() < 0 || m.start() >= n) {
    return ::testing::AssertionFailure() << "start " << m.start() << " of " << n << " states";
  }
  Json context = RandomContext(rng);
  bool matches = rng.Chance(0.5);
  FuzzHost host(matches);
  EvalEnv env{.root = &context, .host = &host};
  for (int i = 0; i < n; ++i) {
    const State& s = m.state(i);
    if (m.Find(s.name) != i) return ::testing::AssertionFailure() << "Find(" << s.name << ")";
    if (!in_range(s.next)) return ::testing::AssertionFailure() << s.name << ": bad next";
    if (s.type == StateType::kServiceTask) {
      const ServiceTaskState& t = s.service_task();
      if (!in_range(t.compensate_state)) return ::testing::AssertionFailure() << "compensate";
      if (t.compensate_state != kNoState && !t.for_update) {
        return ::testing::AssertionFailure() << s.name << ": compensable but not for update";
      }
      for (const CatchRule& c : t.catches) {
        if (c.next == kNoState || !in_range(c.next)) {
          return ::testing::AssertionFailure() << s.name << ": bad catch target";
        }
      }
      for (const ValueTemplate& input : t.input) {
        if (auto v = input.Render(env); !v.ok() && v.status().message().empty()) {
          return ::testing::AssertionFailure() << s.name << ": input error without message";
        }
      }
      for (const auto& [key, output] : t.output) {
        if (auto v = output.Render(env); !v.ok() && v.status().message().empty()) {
          return ::testing::AssertionFailure() << s.name << ": output error without message";
        }
      }
      for (const StatusRule& rule : t.status) {
        if (auto ok = EvaluatesSanely(rule.condition, context, matches); !ok) return ok;
      }
    } else if (s.type == StateType::kChoice) {
      const ChoiceState& c = s.choice();
      if (c.choices.empty()) return ::testing::AssertionFailure() << s.name << ": no choices";
      if (!in_range(c.default_next)) return ::testing::AssertionFailure() << "bad default";
      for (const Choice& choice : c.choices) {
        if (choice.next == kNoState || !in_range(choice.next)) {
          return ::testing::AssertionFailure() << s.name << ": bad choice target";
        }
        if (auto ok = EvaluatesSanely(choice.condition, context, matches); !ok) return ok;
      }
    }
  }
  (void)m.TaskNames();
  return ::testing::AssertionSuccess();
}

TEST(LoaderTest, SurvivesMutatedFlows) {
  const std::vector<std::string> seeds = SeedFlows();
  ASSERT_GE(seeds.size(), 2u);
  Rng rng(0x5a6af10e);
  int reports = 0;
  int loaded = 0;
  for (int i = 0; i < 1200 && reports < kMaxReports; ++i) {
    std::string text =
        rng.Chance(0.25) ? SwapExpressions(rng.Pick(seeds), rng) : Mutate(rng.Pick(seeds), rng);
    auto ok = LoadsSanely(text, rng, &loaded);
    if (!ok) {
      ++reports;
      ADD_FAILURE() << "iteration " << i << ": " << ok.message() << "\ninput: " << Show(text);
    }
  }
  // The mutations must keep some flows valid, or the validator's later stages go untested.
  EXPECT_GT(loaded, 200) << "of 1200 mutated flows";
}

TEST(LoaderTest, SurvivesRandomBytes) {
  Rng rng(0xb17e5);
  int reports = 0;
  for (int i = 0; i < 1000 && reports < kMaxReports; ++i) {
    std::string text;
    for (int n = rng.Int(0, 120); n > 0; --n) text += static_cast<char>(rng.Int(0, 255));
    if (rng.Chance(0.5)) text.insert(0, "{");
    auto ok = LoadsSanely(text, rng);
    if (!ok) {
      ++reports;
      ADD_FAILURE() << "iteration " << i << ": " << ok.message() << "\ninput: " << Show(text);
    }
  }
}

// Runs the load in a child process, so that a stack overflow is reported as this test's
// failure instead of ending the test binary.
void ExpectDeepLoadReturns(std::string_view where, const std::string& text) {
  SCOPED_TRACE(where);
  EXPECT_EXIT(
      {
        Rng rng(1);
        auto ok = LoadsSanely(text, rng);
        if (!ok) std::fputs(ok.message(), stderr);
        std::exit(ok ? 0 : 3);
      },
      ::testing::ExitedWithCode(0), "");
}

std::string Nest(int depth, std::string_view inner) {
  std::string s(static_cast<std::size_t>(depth), '[');
  s += inner;
  s.append(static_cast<std::size_t>(depth), ']');
  return s;
}

TEST(LoaderDeathTest, DeeplyNestedDefinitionsDoNotCrash) {
  // About 40 KB of text: small enough for any request body or definition file.
  const std::string deep = Nest(20000, "1");
  const std::string head = R"({"Name": "deep", "StartState": "A", )";
  const std::string task =
      R"("A": {"Type": "ServiceTask", "ServiceName": "s", "ServiceMethod": "m", )";
  // An ignored key: only the parser sees it.
  ExpectDeepLoadReturns("X",
                        head + R"("X": )" + deep + R"(, "States": {"A": {"Type": "Succeed"}}})");
  // Values the loader reports by printing them.
  ExpectDeepLoadReturns("Status",
                        head + R"("States": {)" + task + R"("Status": {"true": )" + deep + "}}}}");
  ExpectDeepLoadReturns(
      "IsPersist", head + R"("IsPersist": )" + deep + R"(, "States": {"A": {"Type": "Succeed"}}})");
  // Values the loader compiles into templates.
  ExpectDeepLoadReturns("Input", head + R"("States": {)" + task + R"("Input": [)" + deep + "]}}}");
  ExpectDeepLoadReturns("Output",
                        head + R"("States": {)" + task + R"("Output": {"r": )" + deep + "}}}}");
}

// ---------------------------------------------------------------------------------------------
// Expression fuzzing

const std::vector<std::string>& ExpressionTokens() {
  static const std::vector<std::string> kTokens = {"[",
                                                   "]",
                                                   "(",
                                                   ")",
                                                   ".",
                                                   "?.",
                                                   ".?[",
                                                   ",",
                                                   "+",
                                                   "-",
                                                   "*",
                                                   "/",
                                                   "%",
                                                   "==",
                                                   "!=",
                                                   "<",
                                                   "<=",
                                                   ">",
                                                   ">=",
                                                   "&&",
                                                   "||",
                                                   "!",
                                                   "=",
                                                   "and",
                                                   "or",
                                                   "not",
                                                   "eq",
                                                   "ne",
                                                   "lt",
                                                   "le",
                                                   "gt",
                                                   "ge",
                                                   "div",
                                                   "mod",
                                                   "#root",
                                                   "#this",
                                                   "#other",
                                                   "#",
                                                   "true",
                                                   "false",
                                                   "null",
                                                   "TRUE",
                                                   "0",
                                                   "1",
                                                   "2",
                                                   "-1",
                                                   "1.5",
                                                   "1e3",
                                                   "1e",
                                                   "10L",
                                                   "2d",
                                                   "9223372036854775807",
                                                   "9223372036854775808",
                                                   "1e308",
                                                   "'a'",
                                                   "\"b\"",
                                                   "'it''s'",
                                                   "''",
                                                   "'",
                                                   "\"",
                                                   "a",
                                                   "b",
                                                   "n",
                                                   "s",
                                                   "x",
                                                   "items",
                                                   "price",
                                                   "size()",
                                                   "isEmpty()",
                                                   "size",
                                                   "foo()",
                                                   "$",
                                                   "@",
                                                   "?",
                                                   "{",
                                                   "}",
                                                   "\\",
                                                   "\t",
                                                   "\xc3\xa9",
                                                   "\xff"};
  return kTokens;
}

std::string TokenSoup(Rng& rng) {
  std::string s;
  for (int n = rng.Int(1, 30); n > 0; --n) {
    s += rng.Pick(ExpressionTokens());
    if (rng.Chance(0.4)) s += ' ';
  }
  return s;
}

// Compiles `source` with `compile`, then evaluates it against a few random contexts.
template <typename CompileFn>
::testing::AssertionResult CompilesAndRunsSanely(const std::string& source, CompileFn compile,
                                                 Rng& rng, bool must_compile) {
  Result<Expression> e = Status(StatusCode::kInternal, "not compiled");
  try {
    e = compile(source);
  } catch (...) {
    return ::testing::AssertionFailure() << "compiling threw";
  }
  if (!e.ok()) {
    if (must_compile) {
      return ::testing::AssertionFailure()
             << "a valid expression failed to compile: " << e.status().ToString();
    }
    return ExplainsItself(e.status(), source, true);
  }
  for (int i = 0; i < 3; ++i) {
    Json context = RandomContext(rng);
    try {
      auto ok = EvaluatesSanely(*e, context, rng.Chance(0.5));
      if (!ok) return ok << " in context " << context.dump();
    } catch (...) {
      return ::testing::AssertionFailure() << "evaluating threw in context " << context.dump();
    }
  }
  return ::testing::AssertionSuccess();
}

Result<Expression> CompilePlain(const std::string& s) { return Expression::Compile(s); }
Result<Expression> CompileStatus(const std::string& s) { return Expression::CompileStatusKey(s); }
Result<Expression> CompileDollar(const std::string& s) { return Expression::CompileDollar(s); }

TEST(ExpressionTest, SurvivesTokenSoup) {
  Rng rng(0x70c3);
  int reports = 0;
  for (int i = 0; i < 3000 && reports < kMaxReports; ++i) {
    const std::string source = TokenSoup(rng);
    for (auto& [text, fn] :
         std::vector<std::pair<std::string, Result<Expression> (*)(const std::string&)>>{
             {source, CompilePlain}, {source, CompileStatus}, {"$." + source, CompileDollar}}) {
      auto ok = CompilesAndRunsSanely(text, fn, rng, /*must_compile=*/false);
      if (!ok) {
        ++reports;
        ADD_FAILURE() << "iteration " << i << ": " << ok.message() << "\nsource: " << Show(text);
      }
    }
  }
}

TEST(ExpressionTest, SurvivesRandomBytes) {
  Rng rng(0xbad5eed);
  static const std::vector<std::string> kPrefixes = {"",           "$",    "$.", "$Exception{",
                                                     "$Sequence.", "$Foo."};
  int reports = 0;
  for (int i = 0; i < 2000 && reports < kMaxReports; ++i) {
    std::string text = rng.Pick(kPrefixes);
    for (int n = rng.Int(0, 40); n > 0; --n) text += static_cast<char>(rng.Int(0, 255));
    if (rng.Chance(0.2)) text += '}';
    auto ok = text.empty() || text[0] != '$'
                  ? CompilesAndRunsSanely(text, CompilePlain, rng, false)
                  : CompilesAndRunsSanely(text, CompileDollar, rng, false);
    if (!ok) {
      ++reports;
      ADD_FAILURE() << "iteration " << i << ": " << ok.message() << "\nsource: " << Show(text);
    }
  }
}

TEST(ExpressionTest, GeneratedExpressionsCompileAndEvaluate) {
  Rng rng(0x6e6e);
  int reports = 0;
  for (int i = 0; i < 1500 && reports < kMaxReports; ++i) {
    const std::string source = Generate(rng, rng.Int(0, 6));
    auto ok = CompilesAndRunsSanely(source, CompilePlain, rng, /*must_compile=*/true);
    if (ok) ok = CompilesAndRunsSanely("$." + source, CompileDollar, rng, true);
    if (!ok) {
      ++reports;
      ADD_FAILURE() << "iteration " << i << ": " << ok.message() << "\nsource: " << Show(source);
    }
  }
}

TEST(ExpressionTest, GeneratedTemplatesRender) {
  Rng rng(0x7e3);
  int reports = 0;
  for (int i = 0; i < 1000 && reports < kMaxReports; ++i) {
    // A random value whose string leaves are sometimes expressions.
    OrderedJson value = OrderedJson::object();
    for (int k = rng.Int(0, 4); k > 0; --k) {
      OrderedJson leaf = rng.Chance(0.6) ? OrderedJson("$." + Generate(rng, rng.Int(0, 3)))
                                         : OrderedJson(rng.Chance(0.5) ? "lit" : "$Bad");
      if (rng.Chance(0.3)) leaf = OrderedJson::array({leaf, nullptr});
      value[rng.Pick(Keys())] = leaf;
    }
    auto t = ValueTemplate::Compile(value);
    if (!t.ok()) {
      const std::string& m = t.status().message();
      if (m.empty() || (m[0] != '/' && m[0] != ':')) {
        ++reports;
        ADD_FAILURE() << "message without a pointer: " << m << "\nvalue: " << value.dump();
      }
      continue;
    }
    Json context = RandomContext(rng);
    FuzzHost host(false);
    auto rendered = t->Render(EvalEnv{.root = &context, .host = &host});
    if (!rendered.ok() && rendered.status().message().empty()) {
      ++reports;
      ADD_FAILURE() << "render error without a message\nvalue: " << value.dump();
    }
    if (rendered.ok() && rendered->is_object()) {
      for (const auto& [k, v] : rendered->items()) {
        if (v.is_null()) {
          ++reports;
          ADD_FAILURE() << "null entry '" << k << "' kept\nvalue: " << value.dump();
        }
      }
    }
  }
}

}  // namespace
}  // namespace sagaflow::statelang
