#include "sagaflow/engine/record_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "sagaflow/testing/matchers.h"

namespace sagaflow::engine {
namespace {

using ::sagaflow::testing::IsOk;
using ::sagaflow::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

Cursor FullCursor() {
  Cursor c;
  c.phase = Phase::kCompensating;
  c.current = 4;
  c.active_execution = 2;
  c.compensation_stack = {0, 1, 3};
  c.compensations_run = {5, 6};
  c.compensation_trigger = 7;
  c.compensated_in_run = true;
  c.reached_fail = true;
  c.caught = TaskFailure{"NetworkError", "timeout after 3s"};
  c.epoch = 2;
  c.run_first_execution = 4;
  c.idle_transitions = 11;
  c.sequences_issued = std::numeric_limits<std::int64_t>::max();
  return c;
}

void ExpectSameCursor(const Cursor& got, const Cursor& want) {
  EXPECT_EQ(got.phase, want.phase);
  EXPECT_EQ(got.current, want.current);
  EXPECT_EQ(got.active_execution, want.active_execution);
  EXPECT_EQ(got.compensation_stack, want.compensation_stack);
  EXPECT_EQ(got.compensations_run, want.compensations_run);
  EXPECT_EQ(got.compensation_trigger, want.compensation_trigger);
  EXPECT_EQ(got.compensated_in_run, want.compensated_in_run);
  EXPECT_EQ(got.reached_fail, want.reached_fail);
  EXPECT_EQ(got.caught, want.caught);
  EXPECT_EQ(got.epoch, want.epoch);
  EXPECT_EQ(got.run_first_execution, want.run_first_execution);
  EXPECT_EQ(got.idle_transitions, want.idle_transitions);
  EXPECT_EQ(got.sequences_issued, want.sequences_issued);
}

// Through text, as a store keeps it.
Json ThroughText(const Json& j) { return Json::parse(j.dump()); }

TEST(RecordCodecTest, CursorRoundTripsEveryField) {
  const Cursor full = FullCursor();
  Result<Cursor> decoded = CursorFromJson(ThroughText(CursorToJson(full)));
  ASSERT_THAT(decoded, IsOk());
  ExpectSameCursor(*decoded, full);
}

TEST(RecordCodecTest, DefaultCursorRoundTrips) {
  const Cursor none;
  Result<Cursor> decoded = CursorFromJson(ThroughText(CursorToJson(none)));
  ASSERT_THAT(decoded, IsOk());
  ExpectSameCursor(*decoded, none);
  EXPECT_FALSE(decoded->caught.has_value());
  EXPECT_EQ(decoded->current, statelang::kNoState);
}

TEST(RecordCodecTest, EveryPhaseRoundTrips) {
  for (Phase phase : {Phase::kForward, Phase::kCompensating, Phase::kFinished}) {
    Cursor c;
    c.phase = phase;
    Result<Cursor> decoded = CursorFromJson(CursorToJson(c));
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(decoded->phase, phase);
    EXPECT_THAT(ParsePhase(PhaseName(phase)), Optional(phase));
  }
  EXPECT_EQ(ParsePhase("sideways"), std::nullopt);
}

TEST(RecordCodecTest, CursorKeysAreTheFieldNames) {
  const Json j = CursorToJson(FullCursor());
  EXPECT_EQ(j.at("phase"), "compensating");
  EXPECT_EQ(j.at("compensation_stack"), Json::array({0, 1, 3}));
  EXPECT_EQ(j.at("caught"), (Json{{"type", "NetworkError"}, {"message", "timeout after 3s"}}));
  EXPECT_EQ(j.at("caught"), TaskFailureToJson(*FullCursor().caught));
  EXPECT_EQ(j.size(), 13u);
}

TEST(RecordCodecTest, CursorDecodingNamesTheBadField) {
  const Json good = CursorToJson(FullCursor());
  auto with = [&](const std::string& key, Json value) {
    Json j = good;
    j[key] = std::move(value);
    return CursorFromJson(j);
  };
  auto without = [&](const std::string& key) {
    Json j = good;
    j.erase(key);
    return CursorFromJson(j);
  };
  EXPECT_THAT(CursorFromJson(Json::array()),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor: expected an object")));
  EXPECT_THAT(without("phase"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.phase: missing")));
  EXPECT_THAT(without("current"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.current: missing")));
  EXPECT_THAT(with("phase", "sideways"),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.phase: 'sideways'")));
  EXPECT_THAT(with("phase", 1),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("cursor.phase: expected a string, found number")));
  EXPECT_THAT(with("current", "3"),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("cursor.current: expected an integer, found string")));
  EXPECT_THAT(with("current", 2.5), StatusIs(StatusCode::kInvalidArgument,
                                             HasSubstr("cursor.current: expected an integer")));
  EXPECT_THAT(with("epoch", -1),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.epoch: integer -1")));
  EXPECT_THAT(with("active_execution", 1LL << 40),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.active_execution")));
  EXPECT_THAT(with("compensation_stack", Json::array({0, "x"})),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("cursor.compensation_stack[1]: expected an integer")));
  EXPECT_THAT(with("compensations_run", Json::object()),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("cursor.compensations_run: expected an array")));
  EXPECT_THAT(
      with("reached_fail", 1),
      StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.reached_fail: expected a boolean")));
  EXPECT_THAT(with("compensated_in_run", nullptr),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.compensated_in_run")));
  EXPECT_THAT(with("caught", Json{{"type", "E"}}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.caught.message: missing")));
  EXPECT_THAT(with("caught", "E"), StatusIs(StatusCode::kInvalidArgument,
                                            HasSubstr("cursor.caught: expected an object")));
  EXPECT_THAT(with("sequences_issued", std::numeric_limits<std::uint64_t>::max()),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("cursor.sequences_issued: integer 18446744073709551615")));
  EXPECT_THAT(with("sequences_issued", -5),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("cursor.sequences_issued")));
}

TEST(RecordCodecTest, ACursorStoresOnlyWhatDiffersFromTheDefaults) {
  EXPECT_EQ(CursorToJson(Cursor{}), (Json{{"phase", "forward"}, {"current", -1}}));
  Cursor c;
  c.current = 3;
  c.epoch = 1;
  c.caught = TaskFailure{"E", "m"};
  EXPECT_EQ(CursorToJson(c), (Json{{"phase", "forward"},
                                   {"current", 3},
                                   {"epoch", 1},
                                   {"caught", {{"type", "E"}, {"message", "m"}}}}));
}

// The stored text is canonical compact JSON (what dumping its parse gives: sorted keys, no
// spaces, strings escaped) and decodes to the cursor.
TEST(RecordCodecTest, CursorTextIsCompactJsonThatDecodesToTheCursor) {
  std::vector<Cursor> cursors = {Cursor{}, FullCursor()};
  Cursor odd;
  odd.phase = Phase::kFinished;
  odd.current = 0;
  odd.caught = TaskFailure{"E\"\\", "订单 \n\x01 \xff"};  // escapes, and a byte that is not UTF-8
  odd.reached_fail = true;
  odd.compensations_run = {7};
  cursors.push_back(odd);
  for (const Cursor& c : cursors) {
    EXPECT_EQ(CursorToText(c),
              CursorToJson(c).dump(-1, ' ', false, Json::error_handler_t::replace));
    Result<Cursor> decoded = CursorFromJson(Json::parse(CursorToText(c)));
    ASSERT_THAT(decoded, IsOk());
    if (c.caught == odd.caught) {  // the bad byte comes back as U+FFFD
      EXPECT_EQ(decoded->caught->type, "E\"\\");
      EXPECT_EQ(decoded->compensations_run, std::vector<int>{7});
      continue;
    }
    ExpectSameCursor(*decoded, c);
  }
}

TEST(RecordCodecTest, MissingOptionalCursorFieldsTakeTheirDefaults) {
  // Each field but the phase and the current state, left out alone: the rest still decodes.
  const Json full = CursorToJson(FullCursor());
  const Cursor defaults;
  for (const auto& [key, value] : full.items()) {
    if (key == "phase" || key == "current") continue;
    Json j = full;
    j.erase(key);
    Result<Cursor> decoded = CursorFromJson(j);
    ASSERT_THAT(decoded, IsOk()) << key;
    Cursor want = FullCursor();
    if (key == "active_execution") want.active_execution = defaults.active_execution;
    if (key == "compensation_stack") want.compensation_stack.clear();
    if (key == "compensations_run") want.compensations_run.clear();
    if (key == "compensation_trigger") want.compensation_trigger = defaults.compensation_trigger;
    if (key == "compensated_in_run") want.compensated_in_run = false;
    if (key == "reached_fail") want.reached_fail = false;
    if (key == "caught") want.caught.reset();
    if (key == "epoch") want.epoch = 0;
    if (key == "run_first_execution") want.run_first_execution = 0;
    if (key == "idle_transitions") want.idle_transitions = 0;
    if (key == "sequences_issued") want.sequences_issued = 0;
    ExpectSameCursor(*decoded, want);
  }
}

TEST(RecordCodecTest, CursorsWrittenWithEveryFieldStillDecode) {
  // The form earlier versions stored: every field, defaults included.
  const Json old = Json::parse(
      R"({"active_execution":-1,"caught":null,"compensated_in_run":false,)"
      R"("compensation_stack":[],"compensation_trigger":-1,"compensations_run":[],"current":-1,)"
      R"("epoch":0,"idle_transitions":1,"phase":"finished","reached_fail":false,)"
      R"("run_first_execution":0,"sequences_issued":0})");
  Result<Cursor> decoded = CursorFromJson(old);
  ASSERT_THAT(decoded, IsOk());
  Cursor want;
  want.phase = Phase::kFinished;
  want.idle_transitions = 1;
  ExpectSameCursor(*decoded, want);
}

TEST(RecordCodecTest, UnknownCursorFieldsAreIgnored) {
  Json j = CursorToJson(FullCursor());
  j["added_by_a_later_version"] = 1;
  Result<Cursor> decoded = CursorFromJson(j);
  ASSERT_THAT(decoded, IsOk());
  ExpectSameCursor(*decoded, FullCursor());
}

TEST(RecordCodecTest, TaskFailureRoundTrips) {
  for (const TaskFailure& f :
       {TaskFailure{"CarrierRefused", "订单 refused: \"quoted\""}, TaskFailure{"", ""}}) {
    Result<TaskFailure> decoded = TaskFailureFromJson(ThroughText(TaskFailureToJson(f)));
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(*decoded, f);
  }
}

TEST(RecordCodecTest, TaskFailureDecodingNamesTheBadField) {
  EXPECT_THAT(TaskFailureFromJson(Json{{"message", "m"}}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("error.type: missing")));
  EXPECT_THAT(TaskFailureFromJson(Json{{"type", "T"}, {"message", 3}}),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("error.message: expected a string, found number")));
  EXPECT_THAT(TaskFailureFromJson(Json("T")),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("error: expected an object")));
}

TEST(RecordCodecTest, RetryCountsRoundTrip) {
  for (const std::vector<int>& counts :
       {std::vector<int>{}, std::vector<int>{0}, std::vector<int>{3, 0, 2147483647}}) {
    Result<std::vector<int>> decoded = RetryCountsFromJson(ThroughText(RetryCountsToJson(counts)));
    ASSERT_THAT(decoded, IsOk());
    EXPECT_EQ(*decoded, counts);
  }
  EXPECT_EQ(RetryCountsToJson({1, 2}), Json::array({1, 2}));
}

TEST(RecordCodecTest, RetryCountsDecodingNamesTheBadElement) {
  EXPECT_THAT(RetryCountsFromJson(Json{{"a", 1}}),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("retry_counts: expected an array")));
  EXPECT_THAT(RetryCountsFromJson(Json::array({1, -2})),
              StatusIs(StatusCode::kInvalidArgument, HasSubstr("retry_counts[1]: integer -2")));
  EXPECT_THAT(RetryCountsFromJson(Json::array({1, 2, true})),
              StatusIs(StatusCode::kInvalidArgument,
                       HasSubstr("retry_counts[2]: expected an integer, found boolean")));
}

TEST(RecordCodecTest, ExecutionKindNames) {
  EXPECT_THAT(ParseExecutionKind(ExecutionKindName(ExecutionKind::kForward)),
              Optional(ExecutionKind::kForward));
  EXPECT_THAT(ParseExecutionKind(ExecutionKindName(ExecutionKind::kCompensation)),
              Optional(ExecutionKind::kCompensation));
  EXPECT_EQ(ParseExecutionKind("backward"), std::nullopt);
}

}  // namespace
}  // namespace sagaflow::engine
