#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sagaflow/common/ids.h"
#include "sagaflow/common/json.h"
#include "sagaflow/common/status.h"
#include "sagaflow/tasks/error_types.h"
#include "sagaflow/tasks/task_context.h"
#include "sagaflow/tasks/task_error.h"

namespace sagaflow {

// A task: gets the state's `Input` list as a JSON array, returns the result that `Output` and
// `Status` see. Reports failure by throwing TaskError (or any std::exception). Must be safe to
// call from several threads at once, and idempotent on ctx.idempotency_key().
using TaskFn = std::function<Json(TaskContext& ctx, const Json& args)>;

namespace task_detail {

template <typename T>
using Bare = std::remove_cvref_t<T>;

template <typename T>
Bare<T> Arg(const Json& args, std::size_t i) {
  if (i >= args.size()) {
    if constexpr (std::is_default_constructible_v<Bare<T>>) {
      // A missing trailing argument is null, as a shorter Input list would give.
      return Json(nullptr).template get<Bare<T>>();
    }
  }
  return args.at(i).template get<Bare<T>>();
}

template <typename R, typename F, typename Tuple>
Json CallAndWrap(F& f, Tuple&& t) {
  if constexpr (std::is_void_v<R>) {
    std::apply(f, std::forward<Tuple>(t));
    return Json(nullptr);
  } else {
    return Json(std::apply(f, std::forward<Tuple>(t)));
  }
}

template <typename Sig>
struct Adapter;

// R(const A&...)
template <typename R, typename... A>
struct Adapter<R(A...)> {
  template <typename F>
  static TaskFn Wrap(F f) {
    return [f = std::move(f)](TaskContext&, const Json& args) mutable -> Json {
      return Convert(f, args, std::index_sequence_for<A...>{});
    };
  }
  template <typename F, std::size_t... I>
  static Json Convert(F& f, const Json& args, std::index_sequence<I...>) {
    return CallAndWrap<R>(f, std::tuple<Bare<A>...>(Arg<A>(args, I)...));
  }
};

// R(TaskContext&, const A&...)
template <typename R, typename... A>
struct Adapter<R(TaskContext&, A...)> {
  template <typename F>
  static TaskFn Wrap(F f) {
    return [f = std::move(f)](TaskContext& ctx, const Json& args) mutable -> Json {
      return Convert(f, ctx, args, std::index_sequence_for<A...>{});
    };
  }
  template <typename F, std::size_t... I>
  static Json Convert(F& f, TaskContext& ctx, const Json& args, std::index_sequence<I...>) {
    auto bound = [&f, &ctx](auto&&... a) -> decltype(auto) {
      return f(ctx, std::forward<decltype(a)>(a)...);
    };
    return CallAndWrap<R>(bound, std::tuple<Bare<A>...>(Arg<A>(args, I)...));
  }
};

// R(TaskContext&, const Json&): the plain form, passed through.
template <typename R>
struct Adapter<R(TaskContext&, const Json&)> {
  template <typename F>
  static TaskFn Wrap(F f) {
    return [f = std::move(f)](TaskContext& ctx, const Json& args) mutable -> Json {
      if constexpr (std::is_void_v<R>) {
        f(ctx, args);
        return Json(nullptr);
      } else {
        return Json(f(ctx, args));
      }
    };
  }
};

template <typename T>
struct Signature : Signature<decltype(&T::operator())> {};
template <typename C, typename R, typename... A>
struct Signature<R (C::*)(A...) const> {
  using type = R(A...);
};
template <typename C, typename R, typename... A>
struct Signature<R (C::*)(A...)> {
  using type = R(A...);
};
template <typename R, typename... A>
struct Signature<R (*)(A...)> {
  using type = R(A...);
};
template <typename R, typename... A>
struct Signature<R(A...)> {
  using type = R(A...);
};

template <typename F, typename = void>
struct HasSignature : std::false_type {};
template <typename F>
struct HasSignature<F, std::void_t<typename Signature<F>::type>> : std::true_type {};

}  // namespace task_detail

// The tasks a flow can call, by "serviceName.serviceMethod", and the error types they throw.
//
// Register everything before the engine starts; after that the registry is read-only and
// thread-safe to read.
class TaskRegistry {
 public:
  TaskRegistry() = default;
  TaskRegistry(const TaskRegistry&) = delete;
  TaskRegistry& operator=(const TaskRegistry&) = delete;

  // Registers `fn` under `name` ("serviceName.serviceMethod"), replacing an earlier
  // registration.
  //
  // The plain form is `Json(TaskContext& ctx, const Json& args)` with args the Input list.
  // The typed form: each parameter is converted from the matching Input argument with
  // nlohmann's from_json, the result back with to_json (void gives null). An optional first
  // parameter `TaskContext&` receives the context. A conversion failure is a TaskError of type
  // "Error" naming the task. Examples: `bool(const FulfillRequest&)`,
  // `Receipt(TaskContext&, const Order&, int)`.
  template <typename F>
  void add(std::string_view name, F fn) {
    using D = std::decay_t<F>;
    if constexpr (task_detail::HasSignature<D>::value) {
      // Chosen by the declared parameter types: a (TaskContext&, int) task must not be taken
      // for the plain form just because a Json converts to int.
      using Sig = typename task_detail::Signature<D>::type;
      Insert(name, task_detail::Adapter<Sig>::Wrap(std::move(fn)));
    } else {
      // A generic callable (auto parameters) is called in the plain form.
      static_assert(std::is_invocable_v<F&, TaskContext&, const Json&>,
                    "a task is callable as (TaskContext&, const Json&) or has typed parameters");
      Insert(name, task_detail::Adapter<Json(TaskContext&, const Json&)>::Wrap(std::move(fn)));
    }
  }

  // nullptr when nothing is registered under `name`. The pointer stays valid for the
  // registry's lifetime (registrations are never removed; a replacement happens in place).
  const TaskFn* Find(const TaskName& name) const;

  // Names of the tasks in `wanted` that are not registered.
  std::vector<TaskName> Missing(const std::vector<TaskName>& wanted) const;

  // Every registered name, sorted.
  std::vector<TaskName> Names() const;

  ErrorTypes& errors() { return errors_; }
  const ErrorTypes& errors() const { return errors_; }

 private:
  void Insert(std::string_view name, TaskFn fn);

  std::unordered_map<std::string, std::unique_ptr<TaskFn>> tasks_;
  ErrorTypes errors_;
};

// Runs `fn` and turns whatever it throws into a TaskFailure. Never throws.
// Returns true with `result` set on success, false with `failure` set otherwise.
bool InvokeTask(const TaskFn& fn, TaskContext& ctx, const Json& args, Json& result,
                TaskFailure& failure) noexcept;

}  // namespace sagaflow
