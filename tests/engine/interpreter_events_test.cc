// The interpreter on events: each event names the (execution, attempt) it answers, and one
// that no longer applies changes nothing and says why. Wait, async dispatch and deadlines.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>

#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/engine/record_codec.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/error_types.h"

namespace sagaflow::engine {
namespace {

using statelang::StateMachine;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Kind = Decision::Kind;

std::shared_ptr<const StateMachine> MustLoad(std::string_view text) {
  statelang::LoadResult loaded = statelang::LoadStateMachine(text);
  EXPECT_TRUE(loaded.ok()) << loaded.Describe("flow");
  return loaded.machine;
}

TaskOutcome Ok(Json v) { return TaskOutcome{true, std::move(v), {}}; }
TaskOutcome Throw(std::string type) {
  return TaskOutcome{false, nullptr, TaskFailure{std::move(type), "boom"}};
}

// A task A (options spliced in), then a Wait of `wait`, then task B.
std::string Flow(const std::string& a_options, const std::string& wait = R"("Seconds": 30)") {
  return R"({"Name": "events", "StartState": "A", "States": {
    "A": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "a",
          "Output": {"a": "$.#root"}, "Next": "Pause")" +
         a_options + R"(},
    "Pause": {"Type": "Wait", )" +
         wait + R"(, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b", "Next": "Done"},
    "Done": {"Type": "Succeed"}}})";
}

class InterpreterEventsTest : public ::testing::Test {
 protected:
  InstanceRecord NewRecord(Json input = Json::object()) {
    InstanceRecord r;
    r.id = InstanceId("01JTESTEVENTS0000000000000");
    r.flow_name = "events";
    r.input = input;
    r.context = std::move(input);
    return r;
  }
  Step Result(InstanceRecord& r, const StateMachine& m, int e, int attempt, TaskOutcome o) {
    return interp_.OnEvent(r, m, TaskResult{e, attempt, std::move(o)}, now_);
  }
  Step Timer(InstanceRecord& r, const StateMachine& m, int e, int attempt) {
    return interp_.OnEvent(r, m, TimerDue{e, attempt}, now_);
  }
  // An ignored event leaves the record exactly as it was: same encoding, byte for byte.
  void ExpectIgnored(InstanceRecord& r, const StateMachine& m, Event event,
                     const std::string& reason) {
    const std::string before = CursorToText(r.cursor) + Json(r.executions.size()).dump() +
                               r.context.get().dump();
    const std::size_t execs = r.executions.size();
    const int attempts = execs ? r.executions.back().attempts : 0;
    Step s = interp_.OnEvent(r, m, std::move(event), now_);
    EXPECT_THAT(s.ignored, HasSubstr(reason));
    EXPECT_THAT(s.changed_executions, IsEmpty());
    EXPECT_FALSE(s.context_changed);
    EXPECT_EQ(CursorToText(r.cursor) + Json(r.executions.size()).dump() + r.context.get().dump(),
              before);
    EXPECT_EQ(r.executions.size(), execs);
    if (execs) {
      EXPECT_EQ(r.executions.back().attempts, attempts);
    }
  }

  ErrorTypes errors_;
  Interpreter interp_{errors_};
  TimePoint now_ = *ParseTime("2026-12-06T10:00:00Z");
};

TEST_F(InterpreterEventsTest, AWaitSleepsUntilItsTimeThenGoesOn) {
  auto m = MustLoad(Flow(""));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok("x"));
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  EXPECT_EQ(s.decision.execution, -1);
  EXPECT_EQ(s.decision.wake_at, now_ + seconds(30));
  ASSERT_TRUE(r.cursor.wake_at.has_value());
  EXPECT_EQ(*r.cursor.wake_at, now_ + seconds(30));
  EXPECT_EQ(Interpreter::NextWake(r), now_ + seconds(30));

  // Early: ignored, and the instance still sleeps until the same time.
  now_ += seconds(29);
  ExpectIgnored(r, *m, TimerDue{-1, 0}, "not due until");
  Step early = Timer(r, *m, -1, 0);
  EXPECT_EQ(early.decision.kind, Kind::kSleep);
  EXPECT_EQ(early.decision.wake_at, now_ + seconds(1));

  now_ += seconds(1);
  s = Timer(r, *m, -1, 0);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  EXPECT_FALSE(r.cursor.wake_at.has_value());
  EXPECT_EQ(r.executions.at(static_cast<std::size_t>(s.decision.execution)).state,
            StateName("B"));
  // The Wait's timer again, now that the instance has moved on: ignored.
  ExpectIgnored(r, *m, TimerDue{-1, 0}, "not waiting in one");
  s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok(1));
  EXPECT_EQ(s.decision.kind, Kind::kFinished);
  EXPECT_EQ(r.status, RunStatus::kSucceeded);
}

// A flow that begins with a Wait sleeps before its first execution: resumed (its owner
// stopped), it keeps the stored wake time, and once due goes on, rather than start again.
TEST_F(InterpreterEventsTest, AResumedFirstWaitKeepsItsTimeAndFiresOnce) {
  auto m = MustLoad(R"({"Name": "first-wait", "StartState": "Pause", "States": {
    "Pause": {"Type": "Wait", "Seconds": 30, "Next": "B"},
    "B": {"Type": "ServiceTask", "ServiceName": "svc", "ServiceMethod": "b", "Next": "Done"},
    "Done": {"Type": "Succeed"}}})");
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  const TimePoint wake = now_ + seconds(30);
  EXPECT_EQ(s.decision.wake_at, wake);
  EXPECT_TRUE(r.executions.empty());

  now_ += seconds(10);
  ::sagaflow::Result<Step> resumed = interp_.Resume(r, *m, now_);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->decision.kind, Kind::kSleep);
  EXPECT_EQ(resumed->decision.wake_at, wake);  // not 30 s from the resume
  EXPECT_EQ(r.cursor.wake_at, wake);

  now_ += seconds(25);
  resumed = interp_.Resume(r, *m, now_);
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  ASSERT_EQ(resumed->decision.kind, Kind::kInvoke);
  EXPECT_FALSE(r.cursor.wake_at.has_value());
  ASSERT_EQ(r.executions.size(), 1u);
  EXPECT_EQ(r.executions[0].state, StateName("B"));
}

TEST_F(InterpreterEventsTest, AWaitWhoseTimeHasPassedGoesOnAtOnce) {
  auto m = MustLoad(Flow("", R"("Timestamp": "2020-01-01T00:00:00Z")"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok("x"));
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  EXPECT_FALSE(r.cursor.wake_at.has_value());
}

TEST_F(InterpreterEventsTest, WaitPathsReadTheContext) {
  auto by_seconds = MustLoad(Flow("", R"("SecondsPath": "$.delay")"));
  InstanceRecord r = NewRecord(Json{{"delay", 90}});
  Step s = interp_.Start(r, *by_seconds, now_);
  s = Result(r, *by_seconds, s.decision.execution, s.decision.attempt, Ok("x"));
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  EXPECT_EQ(s.decision.wake_at, now_ + seconds(90));

  auto by_time = MustLoad(Flow("", R"("TimestampPath": "$.payBy")"));
  InstanceRecord t = NewRecord(Json{{"payBy", "2026-12-06T18:30:00+08:00"}});
  s = interp_.Start(t, *by_time, now_);
  s = Result(t, *by_time, s.decision.execution, s.decision.attempt, Ok("x"));
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  EXPECT_EQ(s.decision.wake_at, now_ + std::chrono::minutes(30));
}

TEST_F(InterpreterEventsTest, ABadWaitPathFailsTheRunNamingTheState) {
  for (const char* bad : {R"({"delay": "soon"})", R"({"delay": -5})", R"({})"}) {
    auto m = MustLoad(Flow("", R"("SecondsPath": "$.delay")"));
    InstanceRecord r = NewRecord(Json::parse(bad));
    Step s = interp_.Start(r, *m, now_);
    s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok("x"));
    EXPECT_NE(s.decision.kind, Kind::kSleep) << bad;
    // The run does not sleep on a wrong time: it ends failed, saying which state and path.
    while (s.decision.kind == Kind::kInvoke) {
      s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok(nullptr));
    }
    EXPECT_EQ(s.decision.kind, Kind::kFinished) << bad;
    EXPECT_NE(r.status, RunStatus::kSucceeded) << bad;
    EXPECT_THAT(r.error_message + r.error.value_or(TaskFailure{}).message,
                HasSubstr("SecondsPath")) << bad;
  }
  auto m = MustLoad(Flow("", R"("TimestampPath": "$.payBy")"));
  InstanceRecord r = NewRecord(Json{{"payBy", "next tuesday"}});
  Step s = interp_.Start(r, *m, now_);
  s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok("x"));
  while (s.decision.kind == Kind::kInvoke) {
    s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok(nullptr));
  }
  EXPECT_EQ(s.decision.kind, Kind::kFinished);
  EXPECT_THAT(r.error_message + r.error.value_or(TaskFailure{}).message, HasSubstr("RFC 3339"));
}

// Times end in 2262 (nanoseconds since 1970): a wake time past it fails the run, saying so,
// instead of wrapping around into the past and firing at once.
TEST_F(InterpreterEventsTest, AWaitPastTheLatestTimeFailsTheRunInsteadOfWrapping) {
  struct Case {
    const char* wait;
    Json input;
    const char* says;
  };
  for (const Case& c : {Case{R"("SecondsPath": "$.delay")", Json{{"delay", 8.0e9}}, "2262"},
                        Case{R"("SecondsPath": "$.delay")", Json{{"delay", 1e300}}, "2262"},
                        Case{R"("TimestampPath": "$.payBy")",
                             Json{{"payBy", "9999-12-31T00:00:00Z"}}, "before 2262"}}) {
    auto m = MustLoad(Flow("", c.wait));
    InstanceRecord r = NewRecord(c.input);
    Step s = interp_.Start(r, *m, now_);
    s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok("x"));
    while (s.decision.kind == Kind::kInvoke) {
      s = Result(r, *m, s.decision.execution, s.decision.attempt, Ok(nullptr));
    }
    EXPECT_EQ(s.decision.kind, Kind::kFinished) << c.input.dump();
    EXPECT_NE(r.status, RunStatus::kSucceeded) << c.input.dump();
    EXPECT_THAT(r.error_message + r.error.value_or(TaskFailure{}).message, HasSubstr(c.says))
        << c.input.dump();
  }
  // Static Seconds within the loader's bound, entered late enough to pass the latest time.
  auto m = MustLoad(Flow("", R"("Seconds": 7000000000)"));
  InstanceRecord r = NewRecord();
  const TimePoint late = *ParseTime("2100-01-01T00:00:00Z");
  Step s = interp_.Start(r, *m, late);
  s = interp_.OnEvent(r, *m, TaskResult{s.decision.execution, s.decision.attempt, Ok("x")}, late);
  EXPECT_NE(s.decision.kind, Kind::kSleep);
  EXPECT_THAT(r.error_message + r.error.value_or(TaskFailure{}).message,
              HasSubstr("the latest time sagaflow stores"));
}

// A TimeoutSeconds that would end after the latest time is never reached: no deadline is armed.
TEST_F(InterpreterEventsTest, ATimeoutBeyondTheLatestTimeArmsNoDeadline) {
  auto m = MustLoad(Flow(R"(, "TimeoutSeconds": 1e15)"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  EXPECT_FALSE(s.decision.deadline.has_value());
  EXPECT_FALSE(r.executions.at(0).deadline_at.has_value());
  auto small = MustLoad(Flow(R"(, "TimeoutSeconds": 5)"));
  InstanceRecord t = NewRecord();
  s = interp_.Start(t, *small, now_);
  EXPECT_EQ(s.decision.deadline, now_ + seconds(5));
}

TEST_F(InterpreterEventsTest, StaleResultsChangeNothingAndSayWhy) {
  auto m = MustLoad(Flow(R"(, "Retry": [{"IntervalSeconds": 1, "MaxAttempts": 3}])"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  const int e = s.decision.execution;
  ASSERT_EQ(s.decision.attempt, 1);
  ExpectIgnored(r, *m, TaskResult{e + 7, 1, Ok(1)}, "does not exist");
  ExpectIgnored(r, *m, TaskResult{-1, 1, Ok(1)}, "does not exist");
  ExpectIgnored(r, *m, TaskResult{e, 2, Ok(1)}, "at attempt 1");
  // The attempt fails: the execution waits to retry; a result now is not for a live attempt.
  s = Result(r, *m, e, 1, Throw("ConnectError"));
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  ExpectIgnored(r, *m, TaskResult{e, 1, Ok(1)}, "waiting to retry");
  ExpectIgnored(r, *m, TimerDue{e, 1}, "not due until");
  now_ += seconds(1);
  s = Timer(r, *m, e, 1);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  EXPECT_EQ(s.decision.attempt, 2);
  // The first attempt's result, arriving late (a duplicate delivery): ignored.
  ExpectIgnored(r, *m, TaskResult{e, 1, Ok("late")}, "attempt 1");
  s = Result(r, *m, e, 2, Ok("second"));
  ASSERT_EQ(s.decision.kind, Kind::kSleep);
  EXPECT_EQ(r.context.get().at("a"), "second");
  // A duplicate of the result that ended the execution.
  ExpectIgnored(r, *m, TaskResult{e, 2, Ok("again")}, "already ended");
  ExpectIgnored(r, *m, TimerDue{e, 2}, "already ended");
  ExpectIgnored(r, *m, ChildFinished{e, InstanceId("01JCHILD000000000000000000"),
                                     RunStatus::kSucceeded, std::nullopt, {}},
                "started no child");
}

TEST_F(InterpreterEventsTest, EventsForAFinishedInstanceAreIgnored) {
  auto m = MustLoad(Flow("", R"("Seconds": 0)"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  const int a = s.decision.execution;
  s = Result(r, *m, a, 1, Ok("x"));
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  s = Result(r, *m, s.decision.execution, 1, Ok("y"));
  ASSERT_EQ(s.decision.kind, Kind::kFinished);
  Step again = interp_.OnEvent(r, *m, TaskResult{a, 1, Ok("z")}, now_);
  EXPECT_FALSE(again.ignored.empty());
  EXPECT_EQ(again.decision.kind, Kind::kFinished);
  ExpectIgnored(r, *m, TimerDue{-1, 0}, "not waiting");
}

TEST_F(InterpreterEventsTest, AnAsyncStepIsDispatched) {
  auto m = MustLoad(Flow(R"(, "IsAsync": true, "TimeoutSeconds": 5)"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  ASSERT_EQ(s.decision.kind, Kind::kDispatch);
  EXPECT_EQ(s.decision.attempt, 1);
  ASSERT_TRUE(s.decision.deadline.has_value());
  EXPECT_EQ(*s.decision.deadline, now_ + seconds(5));
  const StateExecution& e = r.executions.at(static_cast<std::size_t>(s.decision.execution));
  EXPECT_EQ(e.deadline_at, now_ + seconds(5));
  EXPECT_EQ(Interpreter::NextWake(r), now_ + seconds(5));
  s = Result(r, *m, s.decision.execution, 1, Ok("done"));
  EXPECT_EQ(s.decision.kind, Kind::kSleep);
  EXPECT_EQ(r.context.get().at("a"), "done");
}

TEST_F(InterpreterEventsTest, TheDeadlineFailsTheAttemptWithTimeoutErrorThatRetrySees) {
  auto m = MustLoad(Flow(
      R"(, "TimeoutSeconds": 2, "Retry": [{"Exceptions": ["TimeoutError"], "IntervalSeconds": 1, "MaxAttempts": 1}])"));
  InstanceRecord r = NewRecord();
  Step s = interp_.Start(r, *m, now_);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  const int e = s.decision.execution;
  ASSERT_EQ(s.decision.deadline, now_ + seconds(2));
  now_ += seconds(1);
  ExpectIgnored(r, *m, TimerDue{e, 1}, "is not until");
  now_ += seconds(1);
  s = Timer(r, *m, e, 1);
  ASSERT_EQ(s.decision.kind, Kind::kSleep);  // the retry's backoff
  EXPECT_EQ(r.executions.at(static_cast<std::size_t>(e)).attempts, 1);
  // The hung attempt's result finally comes: ignored, it was given up.
  ExpectIgnored(r, *m, TaskResult{e, 1, Ok("late")}, "waiting to retry");
  now_ += seconds(1);
  s = Timer(r, *m, e, 1);
  ASSERT_EQ(s.decision.kind, Kind::kInvoke);
  EXPECT_EQ(s.decision.attempt, 2);
  // The second attempt's result comes after its deadline but before the timer: still a timeout.
  now_ += seconds(3);
  s = Result(r, *m, e, 2, Ok("too late"));
  EXPECT_EQ(s.decision.kind, Kind::kFinished);
  EXPECT_NE(r.status, RunStatus::kSucceeded);
  const StateExecution& ex = r.executions.at(static_cast<std::size_t>(e));
  ASSERT_TRUE(ex.error.has_value());
  EXPECT_EQ(ex.error->type, "TimeoutError");
  EXPECT_FALSE(r.context.get().contains("a"));
}

}  // namespace
}  // namespace sagaflow::engine
