#include "sagaflow/statelang/state_machine.h"

#include <cstdio>
#include <unordered_set>

namespace sagaflow::statelang {

std::string_view StateTypeName(StateType type) {
  switch (type) {
    case StateType::kServiceTask:
      return "ServiceTask";
    case StateType::kChoice:
      return "Choice";
    case StateType::kSucceed:
      return "Succeed";
    case StateType::kFail:
      return "Fail";
    case StateType::kCompensationTrigger:
      return "CompensationTrigger";
    case StateType::kWait:
      return "Wait";
  }
  return "?";
}

namespace {

std::string Fnv1a64Hex(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace

StateMachine::StateMachine(std::string name, std::string version, std::string comment,
                           StateIndex start, RecoverStrategy recover_strategy,
                           std::vector<State> states, std::string content)
    : name_(std::move(name)),
      version_(std::move(version)),
      comment_(std::move(comment)),
      start_(start),
      recover_strategy_(recover_strategy),
      states_(std::move(states)),
      content_(std::move(content)),
      hash_(Fnv1a64Hex(content_)) {
  for (std::size_t i = 0; i < states_.size(); ++i) {
    index_.emplace(states_[i].name, static_cast<StateIndex>(i));
  }
}

StateIndex StateMachine::Find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? kNoState : it->second;
}

std::vector<TaskName> StateMachine::TaskNames() const {
  std::vector<TaskName> out;
  std::unordered_set<std::string> seen;
  for (const State& s : states_) {
    if (!s.is_task()) continue;
    const TaskName& t = s.service_task().task;
    if (seen.insert(t.str()).second) out.push_back(t);
  }
  return out;
}

}  // namespace sagaflow::statelang
