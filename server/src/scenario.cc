#include "sagaflow/server/scenario.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace sagaflow::server {

namespace {

// Rules evaluate their conditions with no engine behind them.
class NoHost final : public statelang::ExpressionHost {
 public:
  bool CurrentErrorMatches(std::string_view) const override { return false; }
  std::string NextSequence(std::string_view, std::string_view) const override {
    return NewUniqueToken();
  }
};

const MockRule& Resolve(const MockRule& rule, const Json& args, int depth = 0) {
  if (rule.kind != MockRule::Kind::kIf || depth > 32) return rule;
  static const NoHost host;
  statelang::EvalEnv env{&args, &host};
  auto holds = rule.condition.EvaluateCondition(env);
  if (!holds.ok()) {
    throw TaskError("Error", "mock condition '" + rule.condition.source() +
                                 "' failed: " + holds.status().message());
  }
  return Resolve(*holds ? *rule.then_rule : *rule.else_rule, args, depth + 1);
}

Result<MockRule> CompileRule(const Json& def, const std::string& ptr, int depth) {
  if (depth > 32) return InvalidArgument(ptr + ": mock rules nest too deeply");
  if (!def.is_object()) {
    return InvalidArgument(ptr +
                           ": a mock rule must be an object with one of return, echo, "
                           "throw or if; found " +
                           std::string(def.type_name()));
  }
  MockRule r;
  if (def.contains("return")) {
    r.kind = MockRule::Kind::kReturn;
    r.value = def["return"];
  } else if (def.contains("echo")) {
    const Json& n = def["echo"];
    if (!n.is_number_unsigned() && !(n.is_number_integer() && n.get<std::int64_t>() >= 0)) {
      return InvalidArgument(ptr + "/echo: must be the index of an argument (0, 1, ...)");
    }
    r.kind = MockRule::Kind::kEcho;
    r.echo_index = n.get<std::size_t>();
  } else if (def.contains("throw")) {
    if (!def["throw"].is_string() || def["throw"].get_ref<const std::string&>().empty()) {
      return InvalidArgument(ptr + "/throw: must be an error type name");
    }
    r.kind = MockRule::Kind::kThrow;
    r.error_type = def["throw"].get<std::string>();
    if (def.contains("message")) {
      if (!def["message"].is_string()) return InvalidArgument(ptr + "/message: must be a string");
      r.error_message = def["message"].get<std::string>();
    } else {
      r.error_message = "mock threw " + r.error_type;
    }
  } else if (def.contains("if")) {
    if (!def["if"].is_string()) return InvalidArgument(ptr + "/if: must be an expression");
    auto cond = statelang::Expression::Compile(def["if"].get<std::string>());
    if (!cond.ok()) return InvalidArgument(ptr + "/if: " + cond.status().message());
    if (!def.contains("then") || !def.contains("else")) {
      return InvalidArgument(ptr + ": an if rule needs both then and else");
    }
    r.kind = MockRule::Kind::kIf;
    r.condition = std::move(cond).value();
    SAGAFLOW_ASSIGN_OR_RETURN(MockRule t, CompileRule(def["then"], ptr + "/then", depth + 1));
    SAGAFLOW_ASSIGN_OR_RETURN(MockRule e, CompileRule(def["else"], ptr + "/else", depth + 1));
    r.then_rule = std::make_shared<MockRule>(std::move(t));
    r.else_rule = std::make_shared<MockRule>(std::move(e));
  } else {
    return InvalidArgument(ptr + ": a mock rule needs one of return, echo, throw or if");
  }
  return r;
}

Result<std::map<std::string, Json>> ParseMocks(const Json& mocks, const std::string& ptr) {
  if (!mocks.is_object()) {
    return InvalidArgument(ptr + ": must be an object of service name to mock");
  }
  std::map<std::string, Json> out;
  for (auto it = mocks.begin(); it != mocks.end(); ++it) {
    SAGAFLOW_RETURN_IF_ERROR(
        CompileMock(it.value(), ptr + "/" + JsonPointerToken(it.key())).status());
    out.emplace(it.key(), it.value());
  }
  return out;
}

}  // namespace

namespace {
std::atomic<std::size_t> next_stripe{0};
thread_local const std::size_t thread_stripe = next_stripe.fetch_add(1);
}  // namespace

std::uint64_t MockService::calls() const {
  std::uint64_t n = 0;
  for (const Stripe& s : stripes_) n += s.calls.load(std::memory_order_relaxed);
  return n;
}

Json MockService::Call(const Json& args) {
  std::size_t rule_index = 0;
  if (rules_.size() == 1) {
    stripes_[thread_stripe % kStripes].calls.fetch_add(1, std::memory_order_relaxed);
  } else {
    rule_index = std::min<std::size_t>(stripes_[0].calls.fetch_add(1), rules_.size() - 1);
  }
  const MockRule& rule = Resolve(rules_[rule_index], args);
  switch (rule.kind) {
    case MockRule::Kind::kReturn:
      return rule.value;
    case MockRule::Kind::kEcho:
      if (rule.echo_index >= args.size()) {
        throw TaskError("Error", "mock echo " + std::to_string(rule.echo_index) +
                                     " but the call has " + std::to_string(args.size()) +
                                     " arguments");
      }
      return args[rule.echo_index];
    case MockRule::Kind::kThrow:
      throw TaskError(rule.error_type, rule.error_message);
    case MockRule::Kind::kIf:
      break;
  }
  throw TaskError("Error", "mock rule did not resolve");
}

Result<std::vector<MockRule>> CompileMock(const Json& definition, const std::string& pointer) {
  std::vector<MockRule> rules;
  if (definition.is_array()) {
    if (definition.empty()) return InvalidArgument(pointer + ": a list of rules cannot be empty");
    for (std::size_t i = 0; i < definition.size(); ++i) {
      SAGAFLOW_ASSIGN_OR_RETURN(MockRule r,
                                CompileRule(definition[i], pointer + "/" + std::to_string(i), 0));
      rules.push_back(std::move(r));
    }
  } else {
    SAGAFLOW_ASSIGN_OR_RETURN(MockRule r, CompileRule(definition, pointer, 0));
    rules.push_back(std::move(r));
  }
  return rules;
}

Result<Scenario> ParseScenario(const std::string& text) {
  SAGAFLOW_ASSIGN_OR_RETURN(Json doc, ParseJson(text));
  if (!doc.is_object()) return InvalidArgument("a scenario must be a JSON object");
  static const std::set<std::string> kKeys = {"flow", "input", "errors",  "mocks",
                                              "then", "about", "comment", "Comment"};
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (!kKeys.count(it.key())) {
      return InvalidArgument("/" + JsonPointerToken(it.key()) +
                             ": unknown key; a scenario has flow, input, errors, mocks, then");
    }
  }
  Scenario s;
  if (doc.contains("flow")) {
    if (!doc["flow"].is_string()) return InvalidArgument("/flow: must be a flow name");
    s.flow = doc["flow"].get<std::string>();
  }
  if (doc.contains("input")) {
    if (!doc["input"].is_object()) return InvalidArgument("/input: must be a JSON object");
    s.input = doc["input"];
  }
  if (doc.contains("errors")) {
    const Json& e = doc["errors"];
    if (!e.is_object()) return InvalidArgument("/errors: must be an object of type to parent");
    for (auto it = e.begin(); it != e.end(); ++it) {
      if (!it.value().is_string()) {
        return InvalidArgument("/errors/" + JsonPointerToken(it.key()) +
                               ": must be a parent type name");
      }
      s.errors.emplace_back(it.key(), it.value().get<std::string>());
    }
  }
  if (doc.contains("mocks")) {
    SAGAFLOW_ASSIGN_OR_RETURN(s.mocks, ParseMocks(doc["mocks"], "/mocks"));
  }
  if (doc.contains("then")) {
    const Json& then = doc["then"];
    if (!then.is_array()) return InvalidArgument("/then: must be a list of operations");
    for (std::size_t i = 0; i < then.size(); ++i) {
      std::string p = "/then/" + std::to_string(i);
      const Json& op = then[i];
      if (!op.is_object() || !op.contains("op") || !op["op"].is_string()) {
        return InvalidArgument(p +
                               ": an operation is {\"op\": \"forward\"|\"compensate\"|\"skip\"}");
      }
      ScenarioOperation o;
      const std::string name = op["op"].get<std::string>();
      if (name == "forward") {
        o.op = engine::Operation::kForward;
      } else if (name == "compensate") {
        o.op = engine::Operation::kCompensate;
      } else if (name == "skip") {
        o.op = engine::Operation::kSkip;
      } else {
        return InvalidArgument(p + "/op: unknown operation '" + name +
                               "'; expected forward, compensate or skip");
      }
      for (auto it = op.begin(); it != op.end(); ++it) {
        if (it.key() != "op" && it.key() != "input" && it.key() != "mocks") {
          return InvalidArgument(p + "/" + JsonPointerToken(it.key()) +
                                 ": unknown key; an operation has op, input, mocks");
        }
      }
      if (op.contains("input")) {
        if (!op["input"].is_object()) return InvalidArgument(p + "/input: must be a JSON object");
        o.input = op["input"];
      }
      if (op.contains("mocks")) {
        SAGAFLOW_ASSIGN_OR_RETURN(o.mocks, ParseMocks(op["mocks"], p + "/mocks"));
      }
      s.then.push_back(std::move(o));
    }
  }
  return s;
}

Result<Scenario> LoadScenarioFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return InvalidArgument("is a directory, not a scenario file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("cannot read the file");
  std::ostringstream buf;
  buf << in.rdbuf();
  return ParseScenario(buf.str());
}

Status MockSet::Install(const std::map<std::string, Json>& mocks, TaskRegistry& registry) {
  for (const auto& [name, def] : mocks) {
    SAGAFLOW_ASSIGN_OR_RETURN(std::vector<MockRule> rules,
                              CompileMock(def, "/mocks/" + JsonPointerToken(name)));
    auto service = std::make_shared<MockService>(std::move(rules));
    registry.add(name,
                 [service](TaskContext&, const Json& args) -> Json { return service->Call(args); });
    all_.emplace_back(name, std::move(service));
  }
  return Status::Ok();
}

std::map<std::string, std::uint64_t> MockSet::Calls() const {
  std::map<std::string, std::uint64_t> out;
  for (const auto& [name, service] : all_) out[name] += service->calls();
  return out;
}

namespace {

// Explains why none of `stuck` can be defined: a type whose parent is nowhere, or a cycle.
Status Stuck(const std::vector<std::pair<std::string, std::string>>& stuck) {
  std::map<std::string, std::string> parent_of(stuck.begin(), stuck.end());
  for (const auto& [name, parent] : stuck) {
    if (!parent_of.count(parent)) {
      return InvalidArgument("/errors/" + JsonPointerToken(name) + ": the parent '" + parent +
                             "' of error type '" + name + "' is not defined");
    }
  }
  std::string cycle = stuck.front().first;
  std::string cur = parent_of[cycle];
  for (std::size_t i = 0; i < stuck.size() && cur != stuck.front().first; ++i) {
    cycle += " -> " + cur;
    cur = parent_of[cur];
  }
  cycle += " -> " + cur;
  return InvalidArgument("/errors/" + JsonPointerToken(stuck.front().first) +
                         ": error types form a cycle (" + cycle + ")");
}

}  // namespace

Status DefineErrors(const Scenario& scenario, ErrorTypes& errors) {
  // JSON objects have no order to rely on: define a type once its parent is known, in rounds.
  std::vector<std::pair<std::string, std::string>> pending = scenario.errors;
  while (!pending.empty()) {
    std::vector<std::pair<std::string, std::string>> later;
    for (const auto& [name, parent] : pending) {
      Status s = errors.Define(name, parent);
      if (s.ok()) continue;
      if (s.code() != StatusCode::kInvalidArgument) {
        return InvalidArgument("/errors/" + JsonPointerToken(name) + ": " + s.message());
      }
      later.emplace_back(name, parent);  // the parent is not defined (yet)
    }
    if (later.size() == pending.size()) return Stuck(later);
    pending = std::move(later);
  }
  return Status::Ok();
}

}  // namespace sagaflow::server
