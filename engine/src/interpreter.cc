#include "sagaflow/engine/interpreter.h"

#include <algorithm>
#include <cmath>

namespace sagaflow::engine {

using statelang::ChoiceState;
using statelang::EvalEnv;
using statelang::Expression;
using statelang::kNoState;
using statelang::RetryRule;
using statelang::ServiceTaskState;
using statelang::State;
using statelang::StateIndex;
using statelang::StateMachine;
using statelang::StateType;
using statelang::StepStatus;

namespace {

RunStatus FromStepStatus(StepStatus s) {
  switch (s) {
    case StepStatus::kSucceeded:
      return RunStatus::kSucceeded;
    case StepStatus::kFailed:
      return RunStatus::kFailed;
    case StepStatus::kUnknown:
      return RunStatus::kUnknown;
  }
  return RunStatus::kUnknown;
}

// What expressions see of the engine while one step is decided.
class StepHost final : public statelang::ExpressionHost {
 public:
  StepHost(const ErrorTypes& errors, const TaskFailure* error, InstanceRecord& record)
      : errors_(errors), error_(error), record_(record) {}

  bool CurrentErrorMatches(std::string_view type) const override {
    return error_ != nullptr && errors_.IsA(error_->type, type);
  }
  // "<instance id>-<n>", n counting the values this instance has issued (kept in its cursor).
  // Deterministic, so that the interpreter stays a pure function; unique because instance ids
  // are.
  std::string NextSequence(std::string_view, std::string_view) const override {
    return record_.id.str() + "-" + std::to_string(++record_.cursor.sequences_issued);
  }

 private:
  const ErrorTypes& errors_;
  const TaskFailure* error_;
  InstanceRecord& record_;
};

// splitmix64 finaliser: a deterministic hash for jitter.
std::uint64_t Mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Every executed forward state that may have acted (not FA, not skipped or superseded), has a
// CompensateState, and has not been compensated successfully yet.
bool NeedsUndoing(const StateExecution& e, const StateMachine& m) {
  if (e.kind != ExecutionKind::kForward || e.superseded) return false;
  if (e.status == RunStatus::kFailed || e.status == RunStatus::kSkipped) return false;
  if (e.compensation_status == RunStatus::kSucceeded) return false;
  const State& s = m.state(e.state_index);
  return s.is_task() && s.service_task().compensate_state != kNoState;
}

}  // namespace

Duration Interpreter::BackoffDelay(const RetryRule& rule, int retry) {
  double seconds = rule.interval_seconds * std::pow(rule.backoff_rate, std::max(0, retry - 1));
  if (rule.max_delay_seconds && seconds > *rule.max_delay_seconds) {
    seconds = *rule.max_delay_seconds;
  }
  return SecondsToDuration(seconds);
}

// The state of one call into the interpreter.
class Interpreter::Run {
 public:
  Run(const ErrorTypes& errors, InstanceRecord& r, const StateMachine& m, TimePoint now)
      : errors_(errors), r_(r), m_(m), now_(now) {}

  Step Take() { return std::move(step_); }

  // Routes from cursor.current until a task must be invoked or the run ends.
  void Advance() {
    Cursor& c = r_.cursor;
    while (true) {
      if (c.current == kNoState) return Finish(std::nullopt);
      // Without a task in between, the context cannot change, so a route longer than the
      // number of states is a loop that would never end.
      if (++c.idle_transitions > static_cast<int>(m_.states().size()) + 1) {
        return Finish(TaskFailure{std::string(ErrorTypes::kError),
                                  "routing passed " + std::to_string(c.idle_transitions) +
                                      " states without running a task (at state '" +
                                      m_.state(c.current).name + "'): the flow loops"});
      }
      const State& s = m_.state(c.current);
      switch (s.type) {
        case StateType::kServiceTask: {
          int e = NewExecution(c.current, ExecutionKind::kForward, -1);
          return Invoke(e);
        }
        case StateType::kChoice: {
          auto next = Choose(s);
          if (!next.ok()) {
            return Finish(
                TaskFailure{std::string(ErrorTypes::kExpressionError), next.status().message()});
          }
          if (*next == kNoState) {
            return Finish(
                TaskFailure{std::string(ErrorTypes::kError),
                            "no choice of state '" + s.name + "' matched and it has no Default"});
          }
          c.current = *next;
          continue;
        }
        case StateType::kSucceed:
          return Finish(std::nullopt);
        case StateType::kFail:
          c.reached_fail = true;
          r_.error_code = s.fail().error_code;
          r_.error_message = s.fail().message;
          return Finish(std::nullopt);
        case StateType::kCompensationTrigger:
          if (BeginCompensation(c.current)) return NextCompensation();
          // Nothing was executed that needs undoing: go on as if compensation had finished.
          c.current = s.next;
          continue;
        case StateType::kWait: {
          auto wake = WakeTime(s);
          if (!wake.ok()) {
            return Finish(
                TaskFailure{std::string(ErrorTypes::kExpressionError), wake.status().message()});
          }
          if (*wake <= now_) {  // a time already past: go on at once
            c.current = s.next;
            continue;
          }
          c.wake_at = *wake;
          step_.decision = Decision{Decision::Kind::kSleep, -1, 0, *wake, std::nullopt};
          return;
        }
      }
    }
  }

  // `seconds` from now, for the Wait `s`; an error when that falls after kLatestTime.
  Result<TimePoint> Later(const State& s, const char* key, double seconds) const {
    std::optional<TimePoint> at = AddSeconds(now_, seconds);
    if (!at) {
      return InvalidArgument("state '" + s.name + "', " + key + ": " + Json(seconds).dump() +
                             " seconds from " + FormatTime(now_) + " fall after " +
                             FormatTime(kLatestTime) + ", the latest time sagaflow stores");
    }
    return *at;
  }

  // When the Wait state `s` ends. Errors: a path whose value is missing or of the wrong type.
  Result<TimePoint> WakeTime(const State& s) {
    const statelang::WaitState& w = s.wait();
    switch (w.kind) {
      case statelang::WaitState::Kind::kSeconds:
        return Later(s, "Seconds", w.seconds);
      case statelang::WaitState::Kind::kTimestamp:
        return w.at;
      case statelang::WaitState::Kind::kSecondsPath:
      case statelang::WaitState::Kind::kTimestampPath:
        break;
    }
    const bool seconds = w.kind == statelang::WaitState::Kind::kSecondsPath;
    const char* key = seconds ? "SecondsPath" : "TimestampPath";
    StepHost host(errors_, nullptr, r_);
    EvalEnv env{&r_.context.get(), &host};
    auto v = w.path.Evaluate(env);
    const std::string where = "state '" + s.name + "', " + key + " '" + w.path.source() + "': ";
    if (!v.ok()) return InvalidArgument(where + v.status().message());
    if (seconds) {
      if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < 0) {
        return InvalidArgument(where + "expected a number of seconds, at least 0, found " +
                               (v->is_null() ? std::string("null") : v->dump()));
      }
      return Later(s, key, v->get<double>());
    }
    if (!v->is_string()) {
      return InvalidArgument(where + "expected an RFC 3339 time such as " +
                             "\"2026-12-24T18:00:00Z\", found " +
                             (v->is_null() ? std::string("null") : v->dump()));
    }
    std::optional<TimePoint> at = ParseTime(v->get<std::string>());
    if (!at) {
      return InvalidArgument(where + "expected an RFC 3339 time before 2262 such as " +
                             "\"2026-12-24T18:00:00Z\", found " + v->dump());
    }
    return *at;
  }

  // Why `event` does not apply to execution `id` at its attempt `attempt`, or "" when it does.
  std::string Stale(int id, int attempt, const char* what) const {
    if (id < 0 || static_cast<std::size_t>(id) >= r_.executions.size()) {
      return std::string(what) + " for execution " + std::to_string(id) +
             ", which does not exist";
    }
    const StateExecution& e = r_.executions[static_cast<std::size_t>(id)];
    const bool ended = e.status != RunStatus::kRunning || e.ended_at.has_value();
    if (!r_.finished() && !ended && attempt == e.attempts) return "";  // it applies
    const std::string name = "execution " + std::to_string(id) + " (state '" + e.state.str() +
                             "')";
    if (r_.finished()) return std::string(what) + " for " + name + ": the instance has finished";
    if (ended) {
      return std::string(what) + " for " + name + ", which has already ended (" +
             std::string(RunStatusCode(e.status)) + ")";
    }
    return std::string(what) + " for attempt " + std::to_string(attempt) + " of " + name +
           ", which is at attempt " + std::to_string(e.attempts);
  }

  // Leaves the instance as it was: the event changed nothing. The decision says where the
  // instance stands (finished; an attempt in flight; sleeping until its next timer).
  void Ignore(std::string why) {
    step_.ignored = std::move(why);
    if (r_.finished()) {
      step_.decision = Decision{Decision::Kind::kFinished, -1, 0, {}, std::nullopt};
      return;
    }
    const int a = r_.cursor.active_execution;
    if (a >= 0) {
      const StateExecution& e = r_.executions[static_cast<std::size_t>(a)];
      if (e.status == RunStatus::kRunning && !e.ended_at && !e.retry_at) {
        step_.decision = Decision{Decision::Kind::kPark, a, e.attempts, {}, e.deadline_at};
        return;
      }
    }
    if (std::optional<TimePoint> wake = NextWakeOf(r_)) {
      const int id = WakingExecution();
      const int attempt = id >= 0 ? r_.executions[static_cast<std::size_t>(id)].attempts : 0;
      step_.decision = Decision{Decision::Kind::kSleep, id, attempt, *wake, std::nullopt};
      return;
    }
    step_.decision = Decision{Decision::Kind::kPark, -1, 0, {}, std::nullopt};
  }

  // The execution whose retry the instance sleeps for, or -1.
  int WakingExecution() const {
    int a = r_.cursor.active_execution;
    if (a >= 0 && r_.executions[static_cast<std::size_t>(a)].retry_at) return a;
    return -1;
  }

  static std::optional<TimePoint> NextWakeOf(const InstanceRecord& r) {
    std::optional<TimePoint> wake = r.cursor.wake_at;
    auto consider = [&wake](const std::optional<TimePoint>& t) {
      if (t && (!wake || *t < *wake)) wake = t;
    };
    for (std::size_t i = static_cast<std::size_t>(std::max(0, r.cursor.run_first_execution));
         i < r.executions.size(); ++i) {
      const StateExecution& e = r.executions[i];
      if (e.status != RunStatus::kRunning || e.ended_at) continue;
      consider(e.retry_at);
      consider(e.deadline_at);
    }
    return wake;
  }

  // The outcome of attempt `attempt` of execution `id` arrived.
  void OnResult(int id, int attempt, TaskOutcome outcome) {
    std::string stale = Stale(id, attempt, "a result");
    if (stale.empty() && r_.executions[static_cast<std::size_t>(id)].retry_at) {
      stale = "a result for execution " + std::to_string(id) + ", which is waiting to retry";
    }
    if (!stale.empty()) return Ignore(std::move(stale));
    const StateExecution& e = r_.executions[static_cast<std::size_t>(id)];
    if (e.deadline_at && now_ > *e.deadline_at) return TimeOut(id);
    Complete(id, std::move(outcome), /*invoked=*/true);
  }

  void OnTimer(int id, int attempt) {
    if (id < 0) {
      const Cursor& c = r_.cursor;
      if (r_.finished() || !c.wake_at || c.current == kNoState ||
          m_.state(c.current).type != StateType::kWait) {
        return Ignore("a timer for a Wait, but the instance is not waiting in one");
      }
      if (now_ < *c.wake_at) {
        return Ignore("the Wait of state '" + m_.state(c.current).name + "' is not due until " +
                      FormatTime(*c.wake_at));
      }
      return EndWait();
    }
    std::string stale = Stale(id, attempt, "a timer");
    if (!stale.empty()) return Ignore(std::move(stale));
    StateExecution& e = r_.executions[static_cast<std::size_t>(id)];
    if (e.retry_at) {
      if (now_ < *e.retry_at) {
        return Ignore("the retry of execution " + std::to_string(id) + " is not due until " +
                      FormatTime(*e.retry_at));
      }
      return ArmInvocation(id);
    }
    if (!e.deadline_at) {
      return Ignore("a timer for execution " + std::to_string(id) +
                    ", which waits for neither a retry nor a deadline");
    }
    if (now_ < *e.deadline_at) {
      return Ignore("the deadline of execution " + std::to_string(id) + " is not until " +
                    FormatTime(*e.deadline_at));
    }
    TimeOut(id);
  }

  // The attempt in flight of execution `id` passed its deadline.
  void TimeOut(int id) {
    const StateExecution& e = r_.executions[static_cast<std::size_t>(id)];
    const auto& timeout = m_.state(e.state_index).service_task().timeout_seconds;
    Complete(id,
             TaskOutcome{false, nullptr,
                         TaskFailure{std::string(ErrorTypes::kTimeoutError),
                                     "the task did not return within TimeoutSeconds (" +
                                         Json(timeout ? *timeout : 0.0).dump() + " s)"}},
             /*invoked=*/true);
  }

  void EndWait() {
    Cursor& c = r_.cursor;
    c.wake_at.reset();
    c.current = m_.state(c.current).next;
    Advance();
  }

  void OnChild(const ChildFinished& event) {
    Ignore("a child finished for execution " + std::to_string(event.execution) +
           ", but this instance started no child");
  }

  // Creates the execution of state `s` and renders its input.
  int NewExecution(StateIndex s, ExecutionKind kind, int compensates) {
    const State& state = m_.state(s);
    const ServiceTaskState& t = state.service_task();
    StateExecution e;
    e.id = static_cast<int>(r_.executions.size());
    e.state = StateName(state.name);
    e.state_index = s;
    e.kind = kind;
    e.compensates = compensates;
    e.epoch = r_.cursor.epoch;
    e.for_update = t.for_update;
    e.retry_counts.assign(t.retry.size(), 0);
    e.started_at = now_;
    std::string& key = e.idempotency_key;
    if (kind == ExecutionKind::kCompensation) {
      // One logical undo per forward execution: re-running a failed compensation keeps the key.
      const std::string& forward =
          r_.executions[static_cast<std::size_t>(compensates)].idempotency_key;
      key.reserve(forward.size() + state.name.size() + 1);
      key.append(forward).append(1, '/').append(state.name);
    } else {
      int visit = 0;
      for (const StateExecution& prev : r_.executions) {
        if (prev.state_index == s && prev.epoch == e.epoch && prev.retried_for < 0) ++visit;
      }
      key.reserve(r_.id.str().size() + state.name.size() + 16);
      key.append(r_.id.str()).append(1, ':').append(state.name).append(1, ':');
      key.append(std::to_string(e.epoch));
      if (visit > 0) key.append(1, ':').append(std::to_string(visit));
    }
    r_.executions.push_back(std::move(e));
    return static_cast<int>(r_.executions.size()) - 1;
  }

  // Renders the input of execution `id` and asks for its invocation; an input that cannot be
  // rendered fails the execution with an ExpressionError without invoking anything.
  void Invoke(int id) {
    StateExecution& e = r_.executions[id];
    const ServiceTaskState& t = m_.state(e.state_index).service_task();
    r_.cursor.active_execution = id;
    r_.cursor.idle_transitions = 0;
    StepHost host(errors_, nullptr, r_);
    EvalEnv env{&r_.context.get(), &host};
    Json args = Json::array();
    for (std::size_t i = 0; i < t.input.size(); ++i) {
      auto v = t.input[i].Render(env);
      if (!v.ok()) {
        return Complete(
            id,
            TaskOutcome{false, nullptr,
                        TaskFailure{std::string(ErrorTypes::kExpressionError),
                                    "Input " + std::to_string(i) + ": " + v.status().message()}},
            /*invoked=*/false);
      }
      args.push_back(std::move(v).value());
    }
    e.input = std::move(args);
    ArmInvocation(id);
  }

  void ArmInvocation(int id) {
    StateExecution& e = r_.executions[id];
    const ServiceTaskState& t = m_.state(e.state_index).service_task();
    ++e.attempts;
    e.retry_at.reset();
    e.deadline_at.reset();
    if (t.timeout_seconds) {
      // A timeout beyond kLatestTime never comes: no deadline.
      e.deadline_at = AddSeconds(now_, *t.timeout_seconds);
    }
    MarkChanged(id);
    step_.decision = Decision{t.is_async ? Decision::Kind::kDispatch : Decision::Kind::kInvoke, id,
                              e.attempts, {}, e.deadline_at};
  }

  // The outcome of execution `id` is known (or its input could not be built).
  void Complete(int id, TaskOutcome outcome, bool invoked) {
    StateExecution& e = r_.executions[id];
    const ServiceTaskState& t = m_.state(e.state_index).service_task();
    MarkChanged(id);
    if (!outcome.ok && invoked) {
      if (auto wake = RetryAfter(e, t, outcome.failure)) {
        e.error = outcome.failure;
        e.retry_at = *wake;
        e.deadline_at.reset();
        step_.decision = Decision{Decision::Kind::kSleep, id, e.attempts, *wake, std::nullopt};
        return;
      }
    }
    std::optional<TaskFailure> failure;
    if (!outcome.ok) failure = std::move(outcome.failure);
    if (outcome.ok) {
      // Output first (Seata applies it whenever the task returned), then Status.
      StepHost host(errors_, nullptr, r_);
      EvalEnv env{&outcome.result, &host};
      bool set_any = false;
      for (const auto& [key, value] : t.output) {
        auto v = value.Render(env);
        if (!v.ok()) {
          failure = TaskFailure{std::string(ErrorTypes::kExpressionError),
                                "Output '" + key + "': " + v.status().message()};
          break;
        }
        r_.context.Mutable()[key] = std::move(v).value();
        set_any = true;
      }
      if (set_any) {
        // Only this Output's keys changed, unless something else already did in this step.
        step_.context_keys = step_.context_changed ? nullptr : &t.output;
        step_.context_changed = true;
      }
    }
    RunStatus status = DecideStatus(e, t, outcome.ok && !failure ? &outcome.result : nullptr,
                                    failure ? &*failure : nullptr, failure);
    e.status = status;
    e.output = outcome.ok ? std::move(outcome.result) : Json();
    e.error = failure;
    e.retry_at.reset();
    e.deadline_at.reset();
    e.ended_at = now_;
    r_.cursor.active_execution = -1;

    if (e.kind == ExecutionKind::kCompensation) return AfterCompensation(id);

    const State& s = m_.state(e.state_index);
    if (failure) {
      for (const statelang::CatchRule& c : t.catches) {
        for (const std::string& type : c.exceptions) {
          if (errors_.IsA(failure->type, type)) {
            r_.cursor.caught = failure;
            r_.cursor.current = c.next;
            return Advance();
          }
        }
      }
      return Finish(failure);
    }
    // A state that ends FA without an error goes on to Next like any other.
    r_.cursor.current = s.next;
    Advance();
  }

  // Decides SU/FA/UN for a finished execution (Seata's rules): the first Status rule that holds
  // wins; `$Exception{T}` rules look at the error, the others at the result. Without a match,
  // an error gives UN for states that may have acted (for update or for compensation) and FA
  // otherwise; a result gives UN for for-update states and FA otherwise. A Status expression
  // that cannot be evaluated on a result turns into an ExpressionError.
  RunStatus DecideStatus(const StateExecution& e, const ServiceTaskState& t, const Json* result,
                         const TaskFailure* error, std::optional<TaskFailure>& failure_out) {
    bool may_have_acted =
        t.for_update || e.kind == ExecutionKind::kCompensation || t.for_compensation;
    RunStatus on_error = may_have_acted ? RunStatus::kUnknown : RunStatus::kFailed;
    if (t.status.empty()) return error ? on_error : RunStatus::kSucceeded;
    StepHost host(errors_, error, r_);
    for (const statelang::StatusRule& rule : t.status) {
      if (rule.condition.form() == Expression::Form::kExceptionMatch) {
        if (error && errors_.IsA(error->type, rule.condition.exception_type())) {
          return FromStepStatus(rule.status);
        }
        continue;
      }
      if (!result) continue;
      EvalEnv env{result, &host};
      auto holds = rule.condition.EvaluateCondition(env);
      if (!holds.ok()) {
        failure_out =
            TaskFailure{std::string(ErrorTypes::kExpressionError),
                        "Status '" + rule.condition.source() + "': " + holds.status().message()};
        return on_error;
      }
      if (*holds) return FromStepStatus(rule.status);
    }
    if (error) return on_error;
    return t.for_update ? RunStatus::kUnknown : RunStatus::kFailed;
  }

  // When the failure matches a Retry rule with attempts left: when to invoke again.
  std::optional<TimePoint> RetryAfter(StateExecution& e, const ServiceTaskState& t,
                                      const TaskFailure& failure) {
    for (std::size_t i = 0; i < t.retry.size(); ++i) {
      const RetryRule& rule = t.retry[i];
      bool matches = false;
      if (rule.exceptions.empty()) {
        matches = errors_.IsA(failure.type, ErrorTypes::kNetworkError);
      } else {
        for (const std::string& type : rule.exceptions) {
          if (errors_.IsA(failure.type, type)) {
            matches = true;
            break;
          }
        }
      }
      if (!matches) continue;
      // The first matching rule decides, exhausted or not.
      if (e.retry_counts.size() < t.retry.size()) e.retry_counts.resize(t.retry.size(), 0);
      int used = e.retry_counts[i];
      if (used >= rule.max_attempts) return std::nullopt;
      e.retry_counts[i] = used + 1;
      Duration delay = BackoffDelay(rule, used + 1);
      if (rule.jitter == statelang::JitterStrategy::kFull) {
        std::uint64_t h = Mix(
            std::hash<std::string>{}(r_.id.str()) ^
            Mix(static_cast<std::uint64_t>(e.id) << 32 | static_cast<std::uint64_t>(e.attempts)));
        double u = static_cast<double>(h >> 11) / 9007199254740992.0;  // [0, 1)
        delay = Duration(static_cast<Duration::rep>(static_cast<double>(delay.count()) * u));
      }
      // Kept before kLatestTime, the latest time stored (a backoff that long never ends anyway).
      return delay < kLatestTime - now_ ? now_ + delay : kLatestTime;
    }
    return std::nullopt;
  }

  Result<StateIndex> Choose(const State& s) {
    const ChoiceState& c = s.choice();
    StepHost host(errors_, r_.cursor.caught ? &*r_.cursor.caught : nullptr, r_);
    EvalEnv env{&r_.context.get(), &host};
    for (std::size_t i = 0; i < c.choices.size(); ++i) {
      auto holds = c.choices[i].condition.EvaluateCondition(env);
      if (!holds.ok()) {
        return InvalidArgument("state '" + s.name + "', choice " + std::to_string(i) + " '" +
                               c.choices[i].condition.source() + "': " + holds.status().message());
      }
      if (*holds) return c.choices[i].next;
    }
    return c.default_next;
  }

  // Collects what must be compensated. Returns false when nothing needs it.
  bool BeginCompensation(StateIndex trigger) {
    Cursor& c = r_.cursor;
    c.compensation_stack.clear();
    c.compensations_run.clear();
    for (const StateExecution& e : r_.executions) {
      if (NeedsCompensation(e)) c.compensation_stack.push_back(e.id);
    }
    if (c.compensation_stack.empty()) return false;
    c.phase = Phase::kCompensating;
    c.compensation_trigger = trigger;
    c.compensated_in_run = true;
    r_.compensation_status = RunStatus::kRunning;
    return true;
  }

  bool NeedsCompensation(const StateExecution& e) const { return NeedsUndoing(e, m_); }

  void NextCompensation() {
    Cursor& c = r_.cursor;
    if (c.compensation_stack.empty()) return EndCompensation();
    int forward = c.compensation_stack.back();
    c.compensation_stack.pop_back();
    StateIndex comp = m_.state(r_.executions[forward].state_index).service_task().compensate_state;
    int id = NewExecution(comp, ExecutionKind::kCompensation, forward);
    Invoke(id);
  }

  void AfterCompensation(int id) {
    const StateExecution& e = r_.executions[id];
    StateExecution& forward = r_.executions[e.compensates];
    forward.compensation_status = e.status;
    MarkChanged(forward.id);
    r_.cursor.compensations_run.push_back(id);
    if (e.status != RunStatus::kSucceeded) {
      // Stop at the first compensation that did not succeed; the rest waits for an operator.
      r_.compensation_status = DecideCompensationStatus();
      return Finish(std::nullopt);
    }
    NextCompensation();
  }

  void EndCompensation() {
    Cursor& c = r_.cursor;
    r_.compensation_status = DecideCompensationStatus();
    c.phase = Phase::kForward;
    StateIndex trigger = c.compensation_trigger;
    c.compensation_trigger = kNoState;
    if (trigger == kNoState) return Finish(std::nullopt);  // an operator's compensate
    c.current = m_.state(trigger).next;
    Advance();
  }

  // Seata's decideMachineCompensateStatus.
  RunStatus DecideCompensationStatus() const {
    const Cursor& c = r_.cursor;
    if (!c.compensation_stack.empty()) {
      for (int id : c.compensations_run) {
        RunStatus s = r_.executions[id].status;
        if (s == RunStatus::kUnknown || s == RunStatus::kSucceeded) return RunStatus::kUnknown;
      }
      return RunStatus::kFailed;
    }
    for (int id : c.compensations_run) {
      if (r_.executions[id].status != RunStatus::kSucceeded) return RunStatus::kUnknown;
    }
    return RunStatus::kSucceeded;
  }

  // Ends the run and decides the instance's status.
  void Finish(std::optional<TaskFailure> error) {
    Cursor& c = r_.cursor;
    c.phase = Phase::kFinished;
    c.active_execution = -1;
    c.current = kNoState;
    c.wake_at.reset();
    r_.error = std::move(error);
    r_.ended_at = now_;
    // The end of a run stores the context (unchanged by ending, so an Output's keys still say
    // all that changed in this step).
    step_.context_changed = true;
    if (c.compensated_in_run) {
      // Seata: a machine that compensated is not SU; an operator's compensate keeps the
      // status the forward run decided.
      if (r_.status == RunStatus::kRunning) r_.status = RunStatus::kUnknown;
    } else {
      r_.status = DecideForwardStatus();
    }
    step_.decision = Decision{Decision::Kind::kFinished, -1, 0, {}, std::nullopt};
  }

  // Seata's setMachineStatusBasedOnStateListAndException, then the rule that a run reaching a
  // Fail state is never SU.
  RunStatus DecideForwardStatus() const {
    bool decided = false;
    RunStatus status = RunStatus::kSucceeded;
    bool success_update = false;
    bool unsuccessful = false;
    for (auto it = r_.executions.rbegin(); it != r_.executions.rend(); ++it) {
      const StateExecution& e = *it;
      if (e.superseded || e.kind == ExecutionKind::kCompensation) continue;
      switch (e.status) {
        case RunStatus::kUnknown:
          status = RunStatus::kUnknown;
          decided = true;
          break;
        case RunStatus::kSucceeded:
          if (e.for_update) success_update = true;
          break;
        case RunStatus::kSkipped:
          break;
        case RunStatus::kFailed:
        case RunStatus::kRunning:
          unsuccessful = true;
          break;
      }
    }
    if (!decided && unsuccessful) {
      status = success_update ? RunStatus::kUnknown : RunStatus::kFailed;
      decided = true;
    }
    if (!decided) {
      if (!r_.error) {
        status = RunStatus::kSucceeded;
      } else if (success_update || errors_.IsA(r_.error->type, ErrorTypes::kTimeoutError)) {
        status = RunStatus::kUnknown;
      } else {
        status = RunStatus::kFailed;
      }
    }
    if (r_.cursor.reached_fail && status == RunStatus::kSucceeded) {
      status = RunStatus::kFailed;
      for (const StateExecution& e : r_.executions) {
        if (!e.superseded && (e.for_update || e.kind == ExecutionKind::kCompensation)) {
          status = RunStatus::kUnknown;
          break;
        }
      }
    }
    return status;
  }

  void MarkChanged(int id) { step_.changed_executions.Add(id); }

  // Starts an operator's operation: a new run over the same record.
  void BeginOperation(const Json& patch) {
    Cursor& c = r_.cursor;
    c.run_first_execution = static_cast<int>(r_.executions.size());
    c.compensated_in_run = false;
    c.reached_fail = false;
    c.idle_transitions = 0;
    c.caught.reset();
    r_.ended_at.reset();
    r_.error.reset();
    if (patch.is_object() && !patch.empty()) {
      Json& context = r_.context.Mutable();
      for (auto it = patch.begin(); it != patch.end(); ++it) context[it.key()] = it.value();
      step_.context_changed = true;
      step_.context_keys = nullptr;
    }
  }

  // The last forward execution that counts, or -1.
  int LastForward() const {
    for (auto it = r_.executions.rbegin(); it != r_.executions.rend(); ++it) {
      if (it->kind == ExecutionKind::kForward && !it->superseded) return it->id;
    }
    return -1;
  }

  // Picks up an unfinished instance whose previous owner stopped (see Interpreter::Resume).
  Status Resume() {
    Cursor& c = r_.cursor;
    if (c.wake_at) {
      if (c.current == kNoState || m_.state(c.current).type != StateType::kWait) {
        return Internal("instance " + r_.id.str() + ": the cursor sleeps, but not in a Wait state");
      }
      if (now_ < *c.wake_at) {
        step_.decision = Decision{Decision::Kind::kSleep, -1, 0, *c.wake_at, std::nullopt};
      } else {
        EndWait();
      }
      return Status::Ok();
    }
    if (c.active_execution < 0) {
      if (c.phase == Phase::kCompensating) {
        NextCompensation();
      } else {
        // Only a created instance whose first step was never stored has no execution in flight.
        Advance();
      }
      return Status::Ok();
    }
    StateExecution& e = r_.executions[static_cast<std::size_t>(c.active_execution)];
    if (e.retry_at) {
      // Waiting in backoff: invoke again once due; the attempt counters are as stored.
      if (now_ < *e.retry_at) {
        step_.decision =
            Decision{Decision::Kind::kSleep, e.id, e.attempts, *e.retry_at, std::nullopt};
      } else {
        ArmInvocation(e.id);
      }
      return Status::Ok();
    }
    if (e.status != RunStatus::kRunning) {
      return Internal("instance " + r_.id.str() + ": the cursor points at execution " +
                      std::to_string(e.id) + " of state '" + e.state.str() +
                      "', which has already ended");
    }
    if (e.deadline_at && now_ >= *e.deadline_at) {
      // Its deadline passed while nobody ran the instance: the attempt timed out.
      TimeOut(e.id);
      return Status::Ok();
    }
    // In doubt: the task was invoked (or about to be) and its outcome was never stored.
    if (e.kind == ExecutionKind::kCompensation ||
        m_.recover_strategy() == statelang::RecoverStrategy::kForward) {
      // Invoke again with the same idempotency key: the task recognises a repeat.
      ArmInvocation(e.id);
      return Status::Ok();
    }
    // Compensate (the default): the step may have acted, so it counts as UN and is undone with
    // everything executed before it, as an operator's compensate would.
    e.status = RunStatus::kUnknown;
    e.error = TaskFailure{std::string(ErrorTypes::kError),
                          "in doubt: the engine running this step stopped before its outcome "
                          "was stored (RecoverStrategy Compensate)"};
    e.ended_at = now_;
    MarkChanged(e.id);
    Finish(e.error);
    BeginOperation(Json());
    if (!BeginCompensation(kNoState)) {
      r_.compensation_status = RunStatus::kSucceeded;
      return Status::Ok();  // the Finish decision stands
    }
    NextCompensation();
    return Status::Ok();
  }

  InstanceRecord& record() { return r_; }
  Step& step() { return step_; }

 private:
  const ErrorTypes& errors_;
  InstanceRecord& r_;
  const StateMachine& m_;
  TimePoint now_;
  Step step_;
};

Step Interpreter::Start(InstanceRecord& record, const StateMachine& machine, TimePoint now) const {
  Run run(errors_, record, machine, now);
  record.status = RunStatus::kRunning;
  record.cursor = Cursor{};
  record.cursor.current = machine.start();
  record.started_at = now;
  if (!record.context.get().is_object()) record.context = Json::object();
  run.Advance();
  return run.Take();
}

Step Interpreter::OnEvent(InstanceRecord& record, const StateMachine& machine, Event event,
                          TimePoint now) const {
  Run run(errors_, record, machine, now);
  if (auto* result = std::get_if<TaskResult>(&event)) {
    run.OnResult(result->execution, result->attempt, std::move(result->outcome));
  } else if (auto* timer = std::get_if<TimerDue>(&event)) {
    run.OnTimer(timer->execution, timer->attempt);
  } else {
    run.OnChild(std::get<ChildFinished>(event));
  }
  return run.Take();
}

std::optional<TimePoint> Interpreter::NextWake(const InstanceRecord& record) {
  return Run::NextWakeOf(record);
}

std::vector<int> Interpreter::Compensable(const InstanceRecord& record,
                                          const StateMachine& machine) const {
  std::vector<int> out;
  for (auto it = record.executions.rbegin(); it != record.executions.rend(); ++it) {
    if (NeedsUndoing(*it, machine)) out.push_back(it->id);
  }
  return out;
}

Result<Step> Interpreter::Resume(InstanceRecord& record, const StateMachine& machine,
                                 TimePoint now) const {
  if (record.finished()) return Step{Decision{Decision::Kind::kFinished, -1, 0, {}, std::nullopt}, {}, {}, false};
  if (record.executions.empty() && record.cursor.phase == Phase::kForward &&
      record.cursor.active_execution < 0 && record.cursor.epoch == 0 && !record.cursor.wake_at) {
    // Created, never stepped: begin the run (it started when it was created). One that sleeps
    // in a Wait before its first task has stepped already: its wake time is stored.
    const TimePoint created = record.started_at;
    Step step = Start(record, machine, now);
    record.started_at = created;
    return step;
  }
  Run run(errors_, record, machine, now);
  SAGAFLOW_RETURN_IF_ERROR(run.Resume());
  return run.Take();
}

namespace {

Status RequireFinished(const InstanceRecord& r, std::string_view op) {
  if (!r.finished()) {
    return FailedPrecondition("instance " + r.id.str() + " is still running; " + std::string(op) +
                              " applies to finished instances");
  }
  return Status::Ok();
}

Status RequireNotCompensated(const InstanceRecord& r, std::string_view op) {
  if (r.compensation_status) {
    return FailedPrecondition(
        "instance " + r.id.str() + " has been compensated (compensationStatus " +
        std::string(RunStatusCode(*r.compensation_status)) + "); " + std::string(op) +
        " is not possible after compensation; use compensate to finish undoing it");
  }
  return Status::Ok();
}

Status RequirePatchObject(const Json& patch) {
  if (!patch.is_null() && !patch.is_object()) {
    return InvalidArgument("the input of an operation must be a JSON object, found " +
                           std::string(patch.type_name()));
  }
  return Status::Ok();
}

Step NothingToDo() { return Step{Decision{Decision::Kind::kFinished, -1, 0, {}, std::nullopt}, {}, {}, false}; }

}  // namespace

Result<Step> Interpreter::Forward(InstanceRecord& record, const StateMachine& machine,
                                  const Json& patch, TimePoint now) const {
  SAGAFLOW_RETURN_IF_ERROR(RequireFinished(record, "forward"));
  SAGAFLOW_RETURN_IF_ERROR(RequirePatchObject(patch));
  if (record.status == RunStatus::kSucceeded) return NothingToDo();
  SAGAFLOW_RETURN_IF_ERROR(RequireNotCompensated(record, "forward"));
  Run run(errors_, record, machine, now);
  int last = run.LastForward();
  run.BeginOperation(patch);
  record.status = RunStatus::kRunning;
  record.error_code.clear();
  record.error_message.clear();
  Cursor& c = record.cursor;
  c.phase = Phase::kForward;
  ++c.epoch;
  if (last < 0) {
    c.current = machine.start();
    run.Advance();
    return run.Take();
  }
  const StateIndex state = record.executions[last].state_index;
  if (record.executions[last].status == RunStatus::kSucceeded) {
    // The last state succeeded and the run failed after it (a Choice, a Fail): route on.
    c.current = machine.state(state).next;
    run.Advance();
    return run.Take();
  }
  record.executions[last].superseded = true;
  run.MarkChanged(last);
  int id = run.NewExecution(state, ExecutionKind::kForward, -1);
  record.executions[id].retried_for = last;
  run.Invoke(id);
  return run.Take();
}

Result<Step> Interpreter::Compensate(InstanceRecord& record, const StateMachine& machine,
                                     const Json& patch, TimePoint now) const {
  SAGAFLOW_RETURN_IF_ERROR(RequireFinished(record, "compensate"));
  SAGAFLOW_RETURN_IF_ERROR(RequirePatchObject(patch));
  if (record.compensation_status == RunStatus::kSucceeded) return NothingToDo();
  Run run(errors_, record, machine, now);
  run.BeginOperation(patch);
  if (!run.BeginCompensation(kNoState)) {
    // Nothing executed needs undoing: compensation is trivially complete.
    record.compensation_status = RunStatus::kSucceeded;
    record.cursor.phase = Phase::kFinished;
    record.ended_at = now;
    Step s = run.Take();
    s.decision = Decision{Decision::Kind::kFinished, -1, 0, {}, std::nullopt};
    return s;
  }
  run.NextCompensation();
  return run.Take();
}

Result<Step> Interpreter::Skip(InstanceRecord& record, const StateMachine& machine,
                               const Json& patch, TimePoint now) const {
  SAGAFLOW_RETURN_IF_ERROR(RequireFinished(record, "skip"));
  SAGAFLOW_RETURN_IF_ERROR(RequirePatchObject(patch));
  if (record.status == RunStatus::kSucceeded) return NothingToDo();
  SAGAFLOW_RETURN_IF_ERROR(RequireNotCompensated(record, "skip"));
  Run run(errors_, record, machine, now);
  int last = run.LastForward();
  if (last < 0 || record.executions[last].status == RunStatus::kSucceeded) {
    return FailedPrecondition("instance " + record.id.str() + " has no failed state to skip" +
                              (last < 0
                                   ? std::string(" (no task state ran)")
                                   : " (the last state, '" + record.executions[last].state.str() +
                                         "', succeeded); use forward to route on from it"));
  }
  run.BeginOperation(patch);
  record.status = RunStatus::kRunning;
  record.error_code.clear();
  record.error_message.clear();
  Cursor& c = record.cursor;
  c.phase = Phase::kForward;
  ++c.epoch;
  record.executions[last].superseded = true;
  run.MarkChanged(last);
  const StateIndex state = record.executions[last].state_index;
  int id = run.NewExecution(state, ExecutionKind::kForward, -1);  // may reallocate executions
  StateExecution& skipped = record.executions[id];
  skipped.retried_for = last;
  skipped.status = RunStatus::kSkipped;
  skipped.input = record.executions[last].input;
  skipped.ended_at = now;
  run.MarkChanged(id);
  c.current = machine.state(state).next;
  run.Advance();
  return run.Take();
}

}  // namespace sagaflow::engine
