// End-to-end tests of the operator commands (run, instances, replay, compensate, skip,
// recover, db migrate) on a SQLite store in the test's directory.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cli_fixture.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/records.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/testing/matchers.h"

namespace sagaflow::cli {
namespace {

using ::sagaflow::testing::IsOk;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::EndsWith;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using std::chrono::seconds;

// Every fulfilment step answers true, except pickGoods when told to answer false.
std::string Mocks(bool pick_goods) {
  return std::string(R"({"flow": "order_fulfill", "mocks": {
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": )") +
         (pick_goods ? "true" : "false") + R"(},
    "tmsSagaService.sendOut": {"return": true},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "wmsSageService.pickGoodsCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}}})";
}

const char* const kInput = R"({"receiveFulfillRequest": {"orderId": "1001", "userId": "u-7"}})";

// The payment example of docs/statelang.md: a Wait of 30 minutes after the first task.
const std::string kOrderPayment = kSourceDir + "/docs/examples/order_payment.json";
const std::string kOrderPaid = kSourceDir + "/docs/examples/scenarios/order_paid.json";

class OperatorCliTest : public CliTest {
 protected:
  void SetUp() override {
    CliTest::SetUp();
    db_ = "sqlite:" + (dir_ / "sagaflow.db").string();
    ok_ = Write("ok.json", Mocks(true));
    pick_fails_ = Write("pick_fails.json", Mocks(false));
  }

  // Runs a command with `--db` added; parses stdout as JSON when `--json` is among the args.
  CliRun Db(std::vector<std::string> args) {
    args.push_back("--db");
    args.push_back(db_);
    return Sagaflow(args);
  }

  static Json Parse(const CliRun& r) {
    Json out = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(out.is_discarded()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return out;
  }

  // Starts one fulfilment instance; returns its JSON.
  Json RunFulfil(const std::string& mocks, const std::string& input = kInput,
                 const std::string& business_key = "") {
    std::vector<std::string> args = {"run", "--flow", kFulfillFlow, "--mocks", mocks,
                                     "--input", input, "--json"};
    if (!business_key.empty()) {
      args.push_back("--business-key");
      args.push_back(business_key);
    }
    CliRun r = Db(args);
    EXPECT_EQ(r.exit_code, kExitOk) << r.err;
    return Parse(r);
  }

  std::unique_ptr<adapters::SociStateStore> OpenDirectly() {
    auto store = adapters::OpenSociStore(db_);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? std::move(store).value() : nullptr;
  }

  static std::vector<std::string> Trace(const Json& instance) {
    std::vector<std::string> out;
    for (const Json& e : instance["executions"]) {
      out.push_back(e["state"].get<std::string>() + "/" + e["kind"].get<std::string>() + "/" +
                    e["status"].get<std::string>());
    }
    return out;
  }

  // Runs the payment example with --timeout 1: its Wait outlasts it, and the instance stays
  // parked in the store. Returns what `run` printed.
  CliRun RunOrderPaymentUntilParked() {
    CliRun r = Db({"run", "--flow", kOrderPayment, "--mocks", kOrderPaid, "--timeout", "1"});
    EXPECT_EQ(r.exit_code, kExitFailure) << r.err;
    return r;
  }

  // The line of `instances list` (human form) that starts with `id`; "" when none does.
  static std::string ListLine(const std::string& out, const std::string& id) {
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(id, 0) == 0) return line;
    }
    return "";
  }

  std::string db_;
  std::string ok_;
  std::string pick_fails_;
};

TEST_F(OperatorCliTest, RunStoresTheInstanceAndListAndShowReadItBack) {
  Json run = RunFulfil(ok_);
  EXPECT_EQ(run["status"], "SU");
  EXPECT_THAT(Trace(run), ElementsAre("FulfillService/forward/SU", "WmsService/forward/SU",
                                      "TmsService/forward/SU"));

  CliRun listed = Db({"instances", "list", "--json"});
  ASSERT_EQ(listed.exit_code, kExitOk) << listed.err;
  Json list = Parse(listed);
  ASSERT_EQ(list.size(), 1u);
  for (const char* key : {"id", "flow", "version", "businessKey", "status", "compensationStatus",
                          "startedAt", "endedAt"}) {
    EXPECT_TRUE(list[0].contains(key)) << key;
  }
  EXPECT_EQ(list[0]["id"], run["id"]);
  EXPECT_EQ(list[0]["flow"], "order_fulfill");
  EXPECT_EQ(list[0]["version"], "1.0.0");
  EXPECT_EQ(list[0]["status"], "SU");
  EXPECT_TRUE(list[0]["compensationStatus"].is_null());

  CliRun shown = Db({"instances", "show", run["id"].get<std::string>(), "--json"});
  ASSERT_EQ(shown.exit_code, kExitOk) << shown.err;
  Json show = Parse(shown);
  EXPECT_EQ(Trace(show), Trace(run));
  for (const char* key : {"state", "kind", "status", "attempts", "startedAt", "endedAt", "error"}) {
    EXPECT_TRUE(show["executions"][0].contains(key)) << key;
  }
  EXPECT_EQ(show["context"]["WmsPickGoodsResult"], true);

  CliRun human = Db({"instances", "show", run["id"].get<std::string>()});
  EXPECT_THAT(human.out, AllOf(HasSubstr("status        SU"), HasSubstr("TmsService")));
}

TEST_F(OperatorCliTest, InstancesSayWhenAParkedInstanceWakes) {
  const std::string done = RunFulfil(ok_)["id"];
  const TimePoint before = SystemClock().Now();
  RunOrderPaymentUntilParked();
  const TimePoint after = SystemClock().Now();

  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 2u);
  const Json& parked = list[0];  // newest first
  ASSERT_EQ(parked["flow"], "orderPayment");
  EXPECT_EQ(parked["status"], "RU");
  EXPECT_TRUE(parked["owner"].is_null());
  EXPECT_EQ(parked["parked"], true);
  ASSERT_TRUE(parked["wakeAt"].is_string()) << parked.dump();
  const std::string wake = parked["wakeAt"];
  // The end of the 30 minutes, counted from when the Wait began.
  std::optional<TimePoint> wake_time = ParseTime(wake);
  ASSERT_TRUE(wake_time.has_value()) << wake;
  EXPECT_GE(*wake_time, before + seconds(1800) - std::chrono::milliseconds(1));
  EXPECT_LE(*wake_time, after + seconds(1800));
  EXPECT_EQ(list[1]["id"], done);
  EXPECT_EQ(list[1]["parked"], false);
  EXPECT_TRUE(list[1]["wakeAt"].is_null());

  EXPECT_EQ(parked["version"], "1");
  const std::string id = parked["id"];
  Json shown = Parse(Db({"instances", "show", id, "--json"}));
  EXPECT_EQ(shown["parked"], true);
  EXPECT_EQ(shown["wakeAt"], wake);
  EXPECT_EQ(shown["leaseUntil"], wake);  // the wake time is the lease of a parked instance
  Json finished = Parse(Db({"instances", "show", done, "--json"}));
  EXPECT_EQ(finished["parked"], false);
  EXPECT_TRUE(finished["wakeAt"].is_null());

  CliRun human = Db({"instances", "show", id});
  ASSERT_EQ(human.exit_code, kExitOk) << human.err;
  EXPECT_THAT(human.out, StartsWith("instance " + id + "  flow orderPayment 1\n"));
  EXPECT_THAT(human.out, HasSubstr("\n  ended         -\n  wakes         " + wake + "\n"));
  EXPECT_THAT(human.out, Not(HasSubstr("owner")));
  EXPECT_THAT(Db({"instances", "show", done}).out, Not(HasSubstr("wakes")));

  CliRun table = Db({"instances", "list"});
  ASSERT_EQ(table.exit_code, kExitOk) << table.err;
  EXPECT_THAT(table.out, StartsWith("ID                         FLOW                  VERSION  "
                                    "BUSINESS KEY        STATUS COMP  STARTED                  "
                                    "ENDED                    WAKES\n"));
  const std::string started = parked["startedAt"];
  EXPECT_THAT(ListLine(table.out, id),
              EndsWith(" RU     -     " + started + " -                        " + wake));
  EXPECT_THAT(ListLine(table.out, done), EndsWith(" -"));
}

TEST_F(OperatorCliTest, AnInstanceParkedUntilAnEventWakesOnEvent) {
  RunFulfil(ok_);  // stores the definition
  auto machine = statelang::LoadStateMachineFile(kFulfillFlow).machine;
  ASSERT_NE(machine, nullptr);
  engine::InstanceRecord r;
  r.id = NewInstanceId();
  r.flow_name = machine->name();
  r.flow_version = machine->version();
  r.flow_hash = machine->content_hash();
  r.input = Json::parse(kInput);
  r.context = r.input;
  r.started_at = r.updated_at = SystemClock().Now();
  r.lease_until = TimePoint::max();  // no owner, no wake time: only an event takes it up
  r.cursor.current = machine->start();
  {
    auto store = OpenDirectly();
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->CreateInstance(r), IsOk());
  }
  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["id"], r.id.str());
  EXPECT_EQ(list[0]["parked"], true);
  EXPECT_TRUE(list[0]["wakeAt"].is_null());
  Json shown = Parse(Db({"instances", "show", r.id.str(), "--json"}));
  EXPECT_EQ(shown["parked"], true);
  EXPECT_TRUE(shown["wakeAt"].is_null());
  // Its lease has no end: no time, not the largest one (2262-04-11T23:47:16.854Z).
  ASSERT_TRUE(shown.contains("leaseUntil"));
  EXPECT_TRUE(shown["leaseUntil"].is_null()) << shown["leaseUntil"];
  CliRun human = Db({"instances", "show", r.id.str()});
  EXPECT_THAT(human.out, HasSubstr("\n  wakes         on event\n"));
  EXPECT_THAT(human.out, Not(HasSubstr("2262")));
  CliRun table = Db({"instances", "list"});
  EXPECT_THAT(ListLine(table.out, r.id.str()), EndsWith(" -                        on event"));
  EXPECT_THAT(table.out, Not(HasSubstr("2262")));
  EXPECT_THAT(list.dump(), Not(HasSubstr("2262")));

  // Held by a process with that lease: the owner is shown without a lease time.
  {
    auto store = OpenDirectly();
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->ClaimInstance(r.id, "engine-on-host-b", SystemClock().Now(),
                                     TimePoint::max()),
                IsOk());
  }
  Json held = Parse(Db({"instances", "show", r.id.str(), "--json"}));
  EXPECT_EQ(held["owner"], "engine-on-host-b");
  EXPECT_TRUE(held["leaseUntil"].is_null()) << held["leaseUntil"];
  EXPECT_THAT(Db({"instances", "show", r.id.str()}).out,
              HasSubstr("\n  owner         engine-on-host-b\n"));
}

TEST_F(OperatorCliTest, RunGivingUpOnAWaitSaysInWhichStateAndUntilWhenTheInstanceSleeps) {
  CliRun run = RunOrderPaymentUntilParked();
  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 1u);
  const std::string id = list[0]["id"];
  ASSERT_TRUE(list[0]["wakeAt"].is_string()) << list.dump();
  EXPECT_THAT(run.err, HasSubstr("error: instance " + id + " did not finish within 1.0 s\n"));
  EXPECT_THAT(run.err, HasSubstr("\ninstance " + id + " is stored, waiting in state " +
                                 "'PaymentWindow' until " + list[0]["wakeAt"].get<std::string>() +
                                 "; `sagaflow recover` (or any engine on this database) takes " +
                                 "it up then\n"));
  EXPECT_THAT(run.err, Not(HasSubstr("lease")));
}

TEST_F(OperatorCliTest, RunGivingUpOnARetrysBackoffSaysWhichStateItRetriesAndWhen) {
  // The charge times out, always: its first retry waits 2 s, longer than --timeout.
  CliRun run = Db({"run", "--flow", kSourceDir + "/docs/examples/retry.json", "--mocks",
                   kSourceDir + "/docs/examples/scenarios/retry_exhausted.json", "--timeout",
                   "0.5"});
  ASSERT_EQ(run.exit_code, kExitFailure) << run.err;
  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 1u);
  const std::string id = list[0]["id"];
  Json shown = Parse(Db({"instances", "show", id, "--json"}));
  ASSERT_EQ(shown["executions"].size(), 1u);
  const std::string retry_at = shown["executions"][0]["retryAt"];
  EXPECT_EQ(shown["wakeAt"], retry_at);
  EXPECT_THAT(run.err, HasSubstr("\ninstance " + id + " is stored, waiting to retry state " +
                                 "'Charge' until " + retry_at + "; `sagaflow recover` (or any " +
                                 "engine on this database) takes it up then\n"));
}

// The operations give up on a parked instance as `run` does: they say where it waits.
TEST_F(OperatorCliTest, ReplayAndSkipGivingUpOnAWaitSayInWhichStateAndUntilWhenItSleeps) {
  // The reservation fails, uncaught: the instance ends before its payment window.
  const std::string reserve_fails = Write("reserve_fails.json", R"({"flow": "orderPayment",
    "input": {"orderId": "o-1"},
    "mocks": {"stock.reserve": {"throw": "StockDown", "message": "stock service down"},
              "stock.release": {"return": true}, "payment.status": {"return": {"paid": true}},
              "shipping.send": {"return": true}}})");
  for (const char* op : {"replay", "skip"}) {
    CliRun run = Db({"run", "--flow", kOrderPayment, "--mocks", reserve_fails, "--json"});
    ASSERT_EQ(run.exit_code, kExitOk) << run.err;
    Json failed = Parse(run);
    ASSERT_EQ(failed["finished"], true) << failed.dump();
    ASSERT_NE(failed["status"], "SU") << failed.dump();
    const std::string id = failed["id"];
    // Reserve runs again (replay) or is skipped (skip); either way the 30 minutes' Wait follows.
    CliRun r = Db({op, id, "--mocks", kOrderPaid, "--timeout", "1"});
    EXPECT_EQ(r.exit_code, kExitFailure) << op << ": " << r.err;
    EXPECT_THAT(r.out, IsEmpty()) << op;
    Json shown = Parse(Db({"instances", "show", id, "--json"}));
    ASSERT_TRUE(shown["wakeAt"].is_string()) << op << ": " << shown.dump();
    EXPECT_THAT(r.err, HasSubstr("on instance " + id + " did not finish within 1.0 s\n")) << op;
    EXPECT_THAT(r.err, HasSubstr("\ninstance " + id + " is stored, waiting in state " +
                                 "'PaymentWindow' until " + shown["wakeAt"].get<std::string>() +
                                 "; `sagaflow recover` (or any engine on this database) takes " +
                                 "it up then\n"))
        << op;
    EXPECT_THAT(r.err, Not(HasSubstr("lease"))) << op;
  }
}

TEST_F(OperatorCliTest, CompensateGivingUpOnARetrysBackoffSaysWhichStateItRetriesAndWhen) {
  // Charge fails uncaught after Hold; undoing Hold meets a busy lock, retried after 30 s.
  const std::string flow = Write("undo_retry.json", R"({
    "Name": "undoRetry", "Version": "1", "StartState": "Hold",
    "States": {
      "Hold": {"Type": "ServiceTask", "ServiceName": "stock", "ServiceMethod": "hold",
               "CompensateState": "Unhold", "Next": "Charge"},
      "Charge": {"Type": "ServiceTask", "ServiceName": "payment", "ServiceMethod": "charge",
                 "Next": "Done"},
      "Unhold": {"Type": "ServiceTask", "ServiceName": "stock", "ServiceMethod": "unhold",
                 "Retry": [{"Exceptions": ["LockBusy"], "IntervalSeconds": 30}]},
      "Done": {"Type": "Succeed"}}})");
  const std::string mocks = Write("lock_busy.json", R"({"flow": "undoRetry",
    "errors": {"LockBusy": "Error"},
    "mocks": {"stock.hold": {"return": true},
              "payment.charge": {"throw": "CardDeclined", "message": "declined"},
              "stock.unhold": {"throw": "LockBusy", "message": "the lock is held"}}})");
  CliRun run = Db({"run", "--flow", flow, "--mocks", mocks, "--json"});
  ASSERT_EQ(run.exit_code, kExitOk) << run.err;
  const std::string id = Parse(run)["id"];

  CliRun r = Db({"compensate", id, "--mocks", mocks, "--timeout", "0.5"});
  EXPECT_EQ(r.exit_code, kExitFailure) << r.err;
  EXPECT_THAT(r.out, IsEmpty());
  Json shown = Parse(Db({"instances", "show", id, "--json"}));
  ASSERT_TRUE(shown["wakeAt"].is_string()) << shown.dump();
  const Json& undo = shown["executions"].back();
  ASSERT_EQ(undo["state"], "Unhold") << shown.dump();
  ASSERT_TRUE(undo["retryAt"].is_string()) << shown.dump();
  EXPECT_EQ(shown["wakeAt"], undo["retryAt"]);
  EXPECT_THAT(r.err, HasSubstr("error: operation compensate on instance " + id +
                               " did not finish within 0.5 s\n"));
  EXPECT_THAT(r.err, HasSubstr("\ninstance " + id + " is stored, waiting to retry state " +
                               "'Unhold' until " + undo["retryAt"].get<std::string>() +
                               "; `sagaflow recover` (or any engine on this database) takes " +
                               "it up then\n"));
}

TEST_F(OperatorCliTest, AFlowWithoutAVersionIsNamedAloneWithNoTrailingSpace) {
  const std::string flow = Write("unversioned.json", R"({"Name": "unversioned",
    "StartState": "Done", "States": {"Done": {"Type": "Succeed"}}})");
  CliRun run = Db({"run", "--flow", flow});
  ASSERT_EQ(run.exit_code, kExitOk) << run.err;
  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["version"], "");
  const std::string id = list[0]["id"];
  EXPECT_THAT(run.out, StartsWith("instance " + id + "  flow unversioned\n"));
  EXPECT_THAT(Db({"instances", "show", id}).out,
              StartsWith("instance " + id + "  flow unversioned\n"));
  EXPECT_THAT(Db({"replay", id, "--plan"}).out,
              StartsWith("replay plan for instance " + id + " (flow unversioned, status SU);"));
}

TEST_F(OperatorCliTest, AFailStateWithoutAMessageIsPrintedWithoutATrailingSpace) {
  // The charge is declined and caught: the flow ends in Declined, whose ErrorCode has no Message.
  CliRun run = Db({"run", "--flow", kSourceDir + "/docs/examples/retry.json", "--mocks",
                   kSourceDir + "/docs/examples/scenarios/retry_declined.json"});
  ASSERT_EQ(run.exit_code, kExitOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("\n  fail          PAYMENT_FAILED\n"));
}

TEST_F(OperatorCliTest, ABusinessKeyMakesRunIdempotentAndRefusesADifferentInput) {
  Json first = RunFulfil(ok_, kInput, "order-1001");
  Json again = RunFulfil(ok_, kInput, "order-1001");
  EXPECT_EQ(again["id"], first["id"]);
  CliRun other = Db({"run", "--flow", kFulfillFlow, "--mocks", ok_, "--input",
                     R"({"receiveFulfillRequest": {"orderId": "9"}})", "--business-key",
                     "order-1001"});
  EXPECT_EQ(other.exit_code, kExitRefused);
  EXPECT_THAT(other.err, AllOf(HasSubstr("order-1001"), HasSubstr("different input")));
  EXPECT_EQ(Parse(Db({"instances", "list", "--json"})).size(), 1u);
}

TEST_F(OperatorCliTest, BadArgumentsAreNamed) {
  CliRun bad_input = Db({"run", "--flow", kFulfillFlow, "--mocks", ok_, "--input", "[1"});
  EXPECT_EQ(bad_input.exit_code, kExitInvalid);
  EXPECT_THAT(bad_input.err, HasSubstr("--input"));
  CliRun not_object = Db({"run", "--flow", kFulfillFlow, "--mocks", ok_, "--input", "[1]"});
  EXPECT_EQ(not_object.exit_code, kExitInvalid);
  EXPECT_THAT(not_object.err, HasSubstr("must be a JSON object"));

  CliRun bad_url = Sagaflow({"instances", "list", "--db", "mysql://x"});
  EXPECT_EQ(bad_url.exit_code, kExitInvalid);
  EXPECT_THAT(bad_url.err, AllOf(HasSubstr("sqlite:"), HasSubstr("postgresql://")));
  CliRun no_dir = Sagaflow({"instances", "list", "--db", "sqlite:/nonexistent/dir/x.db"});
  EXPECT_EQ(no_dir.exit_code, kExitInvalid);
  EXPECT_THAT(no_dir.err, HasSubstr("/nonexistent/dir"));

  CliRun bad_status = Db({"instances", "list", "--status", "DONE"});
  EXPECT_EQ(bad_status.exit_code, kExitInvalid);
  EXPECT_THAT(bad_status.err, HasSubstr("RU, SU, FA, UN or SK"));
  ASSERT_EQ(Db({"db", "migrate"}).exit_code, kExitOk);
  CliRun unknown = Db({"instances", "show", "01M80000000000000000000000"});
  EXPECT_EQ(unknown.exit_code, kExitInvalid);
  EXPECT_THAT(unknown.err, HasSubstr("01M80000000000000000000000"));
  CliRun no_id = Db({"compensate"});
  EXPECT_EQ(no_id.exit_code, kExitInvalid);
}

TEST_F(OperatorCliTest, ReplayPlanChangesNothingThenReplayForwardsFromTheFailedState) {
  Json failed = RunFulfil(pick_fails_);
  ASSERT_NE(failed["status"], "SU");
  const std::string id = failed["id"];

  CliRun planned = Db({"replay", id, "--plan", "--json"});
  ASSERT_EQ(planned.exit_code, kExitOk) << planned.err;
  Json plan = Parse(planned);
  ASSERT_EQ(plan["keep"].size(), 1u);
  EXPECT_EQ(plan["keep"][0]["state"], "FulfillService");
  ASSERT_EQ(plan["replace"].size(), 1u);
  EXPECT_EQ(plan["replace"][0]["state"], "WmsService");
  EXPECT_EQ(plan["rerun"]["state"], "WmsService");
  EXPECT_EQ(plan["rerun"]["idempotencyKey"], id + ":WmsService:1");
  EXPECT_EQ(plan["compensateOnFailure"], Json::array({"FulfillService"}));
  CliRun human_plan = Db({"replay", id, "--plan"});
  EXPECT_THAT(human_plan.out, AllOf(HasSubstr("nothing has been changed"),
                                    HasSubstr("re-run    WmsService")));
  // Nothing changed.
  EXPECT_EQ(Trace(Parse(Db({"instances", "show", id, "--json"}))), Trace(failed));

  CliRun replayed = Db({"replay", id, "--mocks", ok_, "--json"});
  ASSERT_EQ(replayed.exit_code, kExitOk) << replayed.err;
  Json after = Parse(replayed);
  EXPECT_EQ(after["status"], "SU");
  EXPECT_THAT(Trace(after),
              ElementsAre("FulfillService/forward/SU", "WmsService/forward/FA",
                          "WmsService/forward/SU", "TmsService/forward/SU"));
  // Again: nothing to do, nothing changes.
  CliRun again = Db({"replay", id, "--mocks", ok_, "--json"});
  ASSERT_EQ(again.exit_code, kExitOk) << again.err;
  EXPECT_EQ(Trace(Parse(again)), Trace(after));
}

TEST_F(OperatorCliTest, CompensateIsIdempotentAndSkipIsRefusedAfterIt) {
  Json failed = RunFulfil(pick_fails_);
  const std::string id = failed["id"];
  CliRun compensated = Db({"compensate", id, "--mocks", ok_, "--json"});
  ASSERT_EQ(compensated.exit_code, kExitOk) << compensated.err;
  Json after = Parse(compensated);
  EXPECT_EQ(after["compensationStatus"], "SU");
  EXPECT_THAT(Trace(after), ElementsAre("FulfillService/forward/SU", "WmsService/forward/FA",
                                        "CreateFulfillOrderCompensate/compensation/SU"));
  CliRun again = Db({"compensate", id, "--mocks", ok_, "--json"});
  ASSERT_EQ(again.exit_code, kExitOk) << again.err;
  EXPECT_EQ(Trace(Parse(again)), Trace(after));
  CliRun skip = Db({"skip", id, "--mocks", ok_});
  EXPECT_EQ(skip.exit_code, kExitRefused);
  EXPECT_THAT(skip.err, HasSubstr("compensated"));
}

TEST_F(OperatorCliTest, SkipGoesOnFromTheFailedStatesNext) {
  Json failed = RunFulfil(pick_fails_);
  // The Choice after WmsService reads its Output: the operator corrects it while skipping.
  CliRun skipped = Db({"skip", failed["id"].get<std::string>(), "--mocks", ok_, "--input",
                       R"({"WmsPickGoodsResult": true})", "--json"});
  ASSERT_EQ(skipped.exit_code, kExitOk) << skipped.err;
  Json after = Parse(skipped);
  EXPECT_THAT(Trace(after),
              ElementsAre("FulfillService/forward/SU", "WmsService/forward/FA",
                          "WmsService/forward/SK", "TmsService/forward/SU"));
  EXPECT_EQ(after["status"], "SU");
}

TEST_F(OperatorCliTest, ReplayAllFailedForwardsEveryFailedInstanceWithAProgressBar) {
  for (int i = 0; i < 3; ++i) RunFulfil(pick_fails_);
  RunFulfil(ok_);
  CliRun r = Db({"replay", "--all-failed", "--flow", "order_fulfill", "--mocks", ok_});
  ASSERT_EQ(r.exit_code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3 failed instance(s): SU 3\n"));
  EXPECT_THAT(r.err, HasSubstr("] 3/3"));
  Json list = Parse(Db({"instances", "list", "--json"}));
  ASSERT_EQ(list.size(), 4u);
  for (const Json& s : list) EXPECT_EQ(s["status"], "SU");
}

TEST_F(OperatorCliTest, OperationsAreRefusedWhileAnotherEngineHoldsTheLease) {
  Json failed = RunFulfil(pick_fails_);
  const InstanceId id(failed["id"].get<std::string>());
  {
    auto store = OpenDirectly();
    ASSERT_NE(store, nullptr);
    TimePoint now = SystemClock().Now();
    ASSERT_THAT(store->ClaimInstance(id, "engine-on-host-b", now, now + seconds(60)), IsOk());
  }
  for (const char* op : {"replay", "compensate", "skip"}) {
    CliRun r = Db({op, id.str(), "--mocks", ok_});
    EXPECT_EQ(r.exit_code, kExitRefused) << op;
    EXPECT_THAT(r.err, HasSubstr("engine-on-host-b")) << op;
  }
  EXPECT_EQ(Trace(Parse(Db({"instances", "show", id.str(), "--json"}))), Trace(failed));
}

TEST_F(OperatorCliTest, RecoverResumesInstancesWhoseLeaseExpiredAndWaitsForLiveOnes) {
  RunFulfil(ok_);  // stores the definition
  auto machine = statelang::LoadStateMachineFile(kFulfillFlow).machine;
  ASSERT_NE(machine, nullptr);
  const TimePoint now = SystemClock().Now();
  auto orphan = [&](TimePoint lease_until) {
    engine::InstanceRecord r;
    r.id = NewInstanceId();
    r.flow_name = machine->name();
    r.flow_version = machine->version();
    r.flow_hash = machine->content_hash();
    r.input = Json::parse(kInput);
    r.context = r.input;
    r.started_at = r.updated_at = now;
    r.owner = "dead-engine";
    r.lease_until = lease_until;
    r.cursor.current = machine->start();
    return r;
  };
  engine::InstanceRecord expired = orphan(now - seconds(1));
  engine::InstanceRecord live = orphan(now + std::chrono::milliseconds(1500));
  {
    auto store = OpenDirectly();
    ASSERT_NE(store, nullptr);
    ASSERT_THAT(store->CreateInstance(expired), IsOk());
    ASSERT_THAT(store->CreateInstance(live), IsOk());
  }
  CliRun impatient = Db({"recover", "--mocks", ok_, "--wait", "0", "--json"});
  EXPECT_EQ(impatient.exit_code, kExitRefused) << impatient.err;
  Json first = Parse(impatient);
  EXPECT_EQ(first["resumed"], 1);
  EXPECT_EQ(first["outcomes"], (Json{{"SU", 1}}));
  EXPECT_EQ(first["stillLeasedElsewhere"], 1);

  CliRun patient = Db({"recover", "--mocks", ok_, "--json"});
  ASSERT_EQ(patient.exit_code, kExitOk) << patient.err;
  Json second = Parse(patient);
  EXPECT_EQ(second["resumed"], 1);
  EXPECT_EQ(second["outcomes"], (Json{{"SU", 1}}));
  for (const auto& r : {expired, live}) {
    Json shown = Parse(Db({"instances", "show", r.id.str(), "--json"}));
    EXPECT_EQ(shown["status"], "SU") << r.id.str();
    EXPECT_TRUE(shown["finished"].get<bool>());
  }
}

TEST_F(OperatorCliTest, CommandsOnStoredInstancesDoNotCreateAStore) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"instances", "list"}, {"instances", "show", "X"},
        {"compensate", "X"}, {"recover"}}) {
    CliRun r = Db(args);
    EXPECT_EQ(r.exit_code, kExitInvalid) << args[0];
    EXPECT_THAT(r.err, HasSubstr("no store at")) << args[0];
  }
  EXPECT_FALSE(fs::exists(dir_ / "sagaflow.db"));
  CliRun memory = Sagaflow({"run", "--flow", kFulfillFlow, "--mocks", ok_, "--db", "memory"});
  EXPECT_EQ(memory.exit_code, kExitInvalid);
  EXPECT_THAT(memory.err, HasSubstr("bench only"));
}

TEST_F(OperatorCliTest, RefusedAndRepeatedOperationsLeaveTheInstanceUntouched) {
  Json failed = RunFulfil(pick_fails_);
  const std::string id = failed["id"];
  ASSERT_EQ(Db({"compensate", id, "--mocks", ok_}).exit_code, kExitOk);
  Json before = Parse(Db({"instances", "show", id, "--json"}));
  EXPECT_EQ(Db({"skip", id, "--mocks", ok_}).exit_code, kExitRefused);
  EXPECT_EQ(Db({"compensate", id, "--mocks", ok_}).exit_code, kExitOk);
  Json after = Parse(Db({"instances", "show", id, "--json"}));
  EXPECT_EQ(after["owner"], before["owner"]);
  EXPECT_EQ(after["updatedAt"], before["updatedAt"]);
  EXPECT_EQ(after["leaseUntil"], before["leaseUntil"]);
}

TEST_F(OperatorCliTest, AFlowCallingUnregisteredTasksIsInvalidInput) {
  CliRun r = Db({"run", "--flow", kFulfillFlow});
  EXPECT_EQ(r.exit_code, kExitInvalid);
  EXPECT_THAT(r.err, HasSubstr("not registered"));
  CliRun name = Db({"run", "--flow", kFulfillFlow, "--mocks", ok_, "--name", "nope"});
  EXPECT_EQ(name.exit_code, kExitInvalid);
  EXPECT_THAT(name.err, HasSubstr("--name nope"));
}

TEST_F(OperatorCliTest, DbMigrateAppliesTheSchemaOnce) {
  CliRun first = Db({"db", "migrate"});
  ASSERT_EQ(first.exit_code, kExitOk) << first.err;
  EXPECT_THAT(first.out, HasSubstr("applied migration(s) 1"));
  CliRun second = Db({"db", "migrate"});
  ASSERT_EQ(second.exit_code, kExitOk) << second.err;
  EXPECT_THAT(second.out, HasSubstr("schema up to date"));
}

}  // namespace
}  // namespace sagaflow::cli
