#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/statelang/expression.h"
#include "sagaflow/tasks/task_registry.h"

namespace sagaflow::server {

// One mock behaviour: return a value, echo an argument, throw, or choose by a condition over
// the argument list.
struct MockRule {
  enum class Kind { kReturn, kEcho, kThrow, kIf };
  Kind kind = Kind::kReturn;
  Json value;                  // kReturn
  std::size_t echo_index = 0;  // kEcho
  std::string error_type;      // kThrow
  std::string error_message;   // kThrow
  statelang::Expression condition;  // kIf: #root is the argument list
  std::shared_ptr<MockRule> then_rule;
  std::shared_ptr<MockRule> else_rule;
};

// A mocked service: call k uses rule k, the last rule repeats. Thread-safe.
class MockService {
 public:
  explicit MockService(std::vector<MockRule> rules) : rules_(std::move(rules)) {}
  // Runs the next rule. Throws TaskError for throw rules.
  Json Call(const Json& args);
  std::uint64_t calls() const;

 private:
  std::vector<MockRule> rules_;
  // Calls so far. A service with one rule counts on a stripe picked by the calling thread, so
  // that threads calling it at once share no cache line; one with several needs one order of
  // calls and counts on stripe 0 alone.
  struct alignas(64) Stripe {
    std::atomic<std::uint64_t> calls{0};
  };
  static constexpr std::size_t kStripes = 8;
  std::array<Stripe, kStripes> stripes_;
};

struct ScenarioOperation {
  engine::Operation op;
  Json input;  // null or an object
  std::map<std::string, Json> mocks;  // service -> mock definition (replacing)
};

// A `simulate` scenario file (DESIGN §8): the flow to start, its input, error types, mocks and
// follow-up operations.
struct Scenario {
  std::string flow;  // "" for the first flow given
  Json input = Json::object();
  std::vector<std::pair<std::string, std::string>> errors;  // name -> parent
  std::map<std::string, Json> mocks;                          // service -> mock definition
  std::vector<ScenarioOperation> then;
};

// Parses a scenario; errors name the JSON pointer of the bad part.
Result<Scenario> ParseScenario(const std::string& text);
Result<Scenario> LoadScenarioFile(const std::string& path);

// Checks a mock definition (a rule or a list of rules) and compiles it.
Result<std::vector<MockRule>> CompileMock(const Json& definition, const std::string& pointer);

// The mocks of a scenario as tasks: owns the MockServices, registers them in a registry, and
// counts calls per service over the whole scenario (replaced mocks keep their counts).
class MockSet {
 public:
  // Registers every mock of `mocks` in `registry` (replacing earlier ones of the same name).
  Status Install(const std::map<std::string, Json>& mocks, TaskRegistry& registry);
  // Calls per service, including replaced mocks.
  std::map<std::string, std::uint64_t> Calls() const;

 private:
  std::vector<std::pair<std::string, std::shared_ptr<MockService>>> all_;
};

// Defines a scenario's error types, each after its parent whatever their order in the file.
// Errors name /errors/<type> (an unknown parent, a conflicting redefinition).
Status DefineErrors(const Scenario& scenario, ErrorTypes& errors);

}  // namespace sagaflow::server
