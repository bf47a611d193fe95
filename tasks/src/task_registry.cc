#include "sagaflow/tasks/task_registry.h"

#include <algorithm>

namespace sagaflow {

void TaskRegistry::Insert(std::string_view name, TaskFn fn) {
  auto& slot = tasks_[std::string(name)];
  if (slot) {
    *slot = std::move(fn);  // in place: pointers handed out by Find stay valid
  } else {
    slot = std::make_unique<TaskFn>(std::move(fn));
  }
}

const TaskFn* TaskRegistry::Find(const TaskName& name) const {
  auto it = tasks_.find(name.str());
  return it == tasks_.end() ? nullptr : it->second.get();
}

std::vector<TaskName> TaskRegistry::Missing(const std::vector<TaskName>& wanted) const {
  std::vector<TaskName> out;
  for (const TaskName& n : wanted) {
    if (!Find(n)) out.push_back(n);
  }
  return out;
}

std::vector<TaskName> TaskRegistry::Names() const {
  std::vector<TaskName> out;
  out.reserve(tasks_.size());
  for (const auto& [name, fn] : tasks_) out.emplace_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

bool InvokeTask(const TaskFn& fn, TaskContext& ctx, const Json& args, Json& result,
                TaskFailure& failure) noexcept {
  try {
    result = fn(ctx, args);
    return true;
  } catch (const TaskError& e) {
    failure = TaskFailure{e.type().empty() ? std::string(ErrorTypes::kError) : e.type(),
                          e.message()};
  } catch (const nlohmann::json::exception& e) {
    failure = TaskFailure{std::string(ErrorTypes::kError),
                          "state '" + ctx.state_name().str() +
                              "': the task's arguments or result do not convert: " + e.what()};
  } catch (const std::exception& e) {
    failure = TaskFailure{std::string(ErrorTypes::kError), e.what()};
  } catch (...) {
    failure = TaskFailure{std::string(ErrorTypes::kError), "the task threw a non-standard exception"};
  }
  return false;
}

}  // namespace sagaflow
