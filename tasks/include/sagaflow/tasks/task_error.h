#pragma once

#include <stdexcept>
#include <string>

namespace sagaflow {

// Thrown by a task to report a business failure of a named type (see ErrorTypes). Any other
// std::exception a task throws is reported as type "Error" with its what() as the message.
class TaskError : public std::runtime_error {
 public:
  TaskError(std::string type, std::string message)
      : std::runtime_error(message), type_(std::move(type)), message_(std::move(message)) {}

  const std::string& type() const { return type_; }
  const std::string& message() const { return message_; }

 private:
  std::string type_;
  std::string message_;
};

// A failure as the engine records it: the error type and a message.
struct TaskFailure {
  std::string type;
  std::string message;

  bool operator==(const TaskFailure&) const = default;
};

}  // namespace sagaflow
