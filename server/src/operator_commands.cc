// The operator commands: run, instances list|show, replay, compensate, skip, recover,
// db migrate.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "commands.h"
#include "operator.h"
#include "sagaflow/engine/interpreter.h"
#include "sagaflow/server/cli.h"
#include "sagaflow/statelang/loader.h"

namespace sagaflow::cli {

namespace {

Duration Seconds(double s) { return SecondsToDuration(s); }

int Fail(const Status& s) {
  std::cerr << "error: " << s.message() << "\n";
  return ExitCodeFor(s);
}

void PrintResult(const engine::InstanceRecord& r, bool json) {
  if (json) {
    std::cout << InstanceJson(r, true).dump(2) << "\n";
  } else {
    PrintInstance(std::cout, r);
  }
}

Result<InstanceId> ParseId(const std::string& text) {
  if (text.empty()) return InvalidArgument("an instance id is required");
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return InvalidArgument("'" + text + "' is not an instance id");
    }
  }
  return InstanceId(text);
}

// A progress bar on stderr: "[#####.....] 50/100".
class Progress {
 public:
  explicit Progress(std::size_t total) : total_(total), tty_(isatty(STDERR_FILENO) != 0) {}
  void Step(std::size_t done) {
    std::lock_guard lock(mu_);
    const std::size_t width = 30;
    const std::size_t filled = total_ == 0 ? width : done * width / total_;
    // Without a terminal, print a line each tenth instead of redrawing.
    std::size_t tenth = total_ == 0 ? 10 : done * 10 / total_;
    if (!tty_ && tenth == last_tenth_ && done != total_) return;
    last_tenth_ = tenth;
    std::cerr << (tty_ ? "\r" : "") << "[" << std::string(filled, '#')
              << std::string(width - filled, '.') << "] " << done << "/" << total_
              << (tty_ ? "" : "\n") << std::flush;
    if (tty_ && done == total_) std::cerr << "\n";
  }

 private:
  std::mutex mu_;
  std::size_t total_;
  bool tty_;
  std::size_t last_tenth_ = static_cast<std::size_t>(-1);
};

// What `replay` (forward) would do, decided by the interpreter on a copy of the record.
int PrintReplayPlan(engine::StateStore& store, const TaskRegistry& registry,
                    const InstanceId& id, const Json& patch, bool json) {
  auto record = store.LoadInstance(id);
  if (!record.ok()) return Fail(record.status());
  auto def = store.LoadDefinition(record->flow_name, record->flow_hash);
  if (!def.ok()) return Fail(def.status());
  auto loaded = statelang::LoadStateMachine(def->content);
  if (!loaded.ok()) {
    return Fail(Internal("the stored definition of flow '" + record->flow_name +
                         "' no longer loads: " + loaded.Describe(record->flow_name)));
  }
  const statelang::StateMachine& machine = *loaded.machine;
  engine::Interpreter interpreter(registry.errors());
  engine::InstanceRecord copy = *record;
  const std::size_t before = copy.executions.size();
  auto step = interpreter.Forward(copy, machine, patch, SystemClock().Now());

  Json plan = {{"instance", id.str()},
               {"operation", "forward"},
               {"flow", record->flow_name},
               {"version", record->flow_version},
               {"status", std::string(engine::RunStatusCode(record->status))}};
  if (!step.ok()) {
    plan["refused"] = step.status().message();
  } else if (step->decision.kind == engine::Decision::Kind::kFinished &&
             copy.executions.size() == before && step->changed_executions.empty()) {
    plan["nothingToDo"] = true;
  } else {
    Json keep = Json::array();
    Json replaced = Json::array();
    for (std::size_t i = 0; i < before; ++i) {
      const engine::StateExecution& now = copy.executions[i];
      const engine::StateExecution& was = record->executions[i];
      if (now.kind != engine::ExecutionKind::kForward || was.superseded) continue;
      Json entry = {{"id", now.id},
                    {"state", now.state.str()},
                    {"status", std::string(engine::RunStatusCode(now.status))}};
      (now.superseded ? replaced : keep).push_back(std::move(entry));
    }
    plan["keep"] = std::move(keep);
    plan["replace"] = std::move(replaced);
    if (step->decision.kind == engine::Decision::Kind::kInvoke) {
      const engine::StateExecution& e =
          copy.executions[static_cast<std::size_t>(step->decision.execution)];
      plan["rerun"] = {{"state", e.state.str()},
                       {"epoch", e.epoch},
                       {"idempotencyKey", e.idempotency_key},
                       {"input", e.input.get()}};
    } else {
      plan["rerun"] = nullptr;
    }
    // What a compensation would undo if the replay fails into one (newest first).
    Json undo = Json::array();
    for (int i : interpreter.Compensable(*record, machine)) {
      undo.push_back(record->executions[static_cast<std::size_t>(i)].state.str());
    }
    plan["compensateOnFailure"] = std::move(undo);
  }

  if (json) {
    std::cout << plan.dump(2) << "\n";
    return step.ok() ? kExitOk : ExitCodeFor(step.status());
  }
  std::cout << "replay plan for instance " << id.str() << " (flow "
            << FlowLabel(record->flow_name, record->flow_version) << ", status "
            << engine::RunStatusCode(record->status) << "); nothing has been changed\n";
  if (!step.ok()) {
    std::cout << "  refused: " << step.status().message() << "\n";
    return ExitCodeFor(step.status());
  }
  if (plan.contains("nothingToDo")) {
    std::cout << "  nothing to do: the instance succeeded\n";
    return kExitOk;
  }
  auto names = [](const Json& list) {
    std::string out;
    for (const Json& e : list) {
      out += (out.empty() ? "" : ", ") + e["state"].get<std::string>() + " (" +
             e["status"].get<std::string>() + ")";
    }
    return out.empty() ? std::string("-") : out;
  };
  std::cout << "  keep      " << names(plan["keep"]) << "\n";
  std::cout << "  replace   " << names(plan["replace"]) << "\n";
  if (plan["rerun"].is_null()) {
    std::cout << "  re-run    - (the last state succeeded: the flow routes on from it)\n";
  } else {
    std::cout << "  re-run    " << plan["rerun"]["state"].get<std::string>() << " with key "
              << plan["rerun"]["idempotencyKey"].get<std::string>() << ", input "
              << plan["rerun"]["input"].dump() << ", then the flow goes on from there\n";
  }
  std::string undo;
  for (const Json& s : plan["compensateOnFailure"]) {
    undo += (undo.empty() ? "" : ", ") + s.get<std::string>();
  }
  std::cout << "  compensated if it fails into a compensation: " << (undo.empty() ? "-" : undo)
            << "\n";
  return kExitOk;
}

// The name of state `index` of the definition `r` started on, read from the store (a repeated
// business key may have started it on another definition than the one given to `run`); none
// when that definition cannot be read.
std::optional<std::string> StoredStateName(engine::StateStore& store,
                                           const engine::InstanceRecord& r, int index) {
  auto def = store.LoadDefinition(r.flow_name, r.flow_hash);
  if (!def.ok()) return std::nullopt;
  auto loaded = statelang::LoadStateMachine(def->content);
  if (!loaded.ok() || index < 0 ||
      static_cast<std::size_t>(index) >= loaded.machine->states().size()) {
    return std::nullopt;
  }
  return loaded.machine->state(index).name;
}

// What becomes of an instance a command (run, replay, compensate, skip) stopped waiting for,
// from the store: a parked one (sleeping in a Wait or a retry's backoff) is taken up by
// whichever engine claims it at its wake time; one this process holds once the lease of this
// process, which is exiting, expires.
std::string WhatBecomesOf(engine::StateStore& store, const InstanceId& id) {
  const std::string lease_held = "instance " + id.str() +
                                 " is stored; `sagaflow recover` finishes it once its lease "
                                 "expires";
  auto r = store.LoadInstance(id);
  if (!r.ok()) return lease_held;
  if (r->finished()) {
    return "instance " + id.str() + " ended meanwhile (status " +
           std::string(engine::RunStatusCode(r->status)) + "); `sagaflow instances show " +
           id.str() + "` prints it";
  }
  if (!IsParked(r->finished(), r->owner)) return lease_held;
  const engine::Cursor& c = r->cursor;
  std::string waiting = "parked";
  if (c.wake_at) {
    const std::optional<std::string> state = StoredStateName(store, *r, c.current);
    waiting = state ? "waiting in state '" + *state + "'" : std::string("waiting in a Wait");
  } else if (c.active_execution >= 0 &&
             static_cast<std::size_t>(c.active_execution) < r->executions.size()) {
    const engine::StateExecution& e = r->executions[static_cast<std::size_t>(c.active_execution)];
    waiting = (e.retry_at ? "waiting to retry state '" : "waiting in state '") + e.state.str() +
              "'";
  }
  const std::optional<TimePoint> wake = WakeTime(r->lease_until);
  if (!wake) {
    return "instance " + id.str() + " is stored, " + waiting +
           " for an event, with no wake time; it is taken up when the event comes";
  }
  return "instance " + id.str() + " is stored, " + waiting + " until " + FormatTime(*wake) +
         "; `sagaflow recover` (or any engine on this database) takes it up then";
}

int OperateAllFailed(OperatorEngine& eng, const OperateArgs& args, const Json& patch) {
  std::vector<InstanceId> ids;
  for (engine::RunStatus status : {engine::RunStatus::kFailed, engine::RunStatus::kUnknown}) {
    engine::InstanceFilter filter;
    filter.status = status;
    filter.flow_name = args.flow;
    filter.limit = std::numeric_limits<std::size_t>::max();
    auto list = eng.store->ListInstances(filter);
    if (!list.ok()) return Fail(list.status());
    for (const engine::InstanceSummary& s : *list) {
      if (!s.compensation_status) ids.push_back(s.id);  // forward does not apply after one
    }
  }
  if (ids.empty()) {
    if (args.json) {
      std::cout << Json{{"replayed", 0}, {"outcomes", Json::object()}, {"instances", Json::array()}}
                       .dump(2)
                << "\n";
    } else {
      std::cout << "no failed instance to replay\n";
    }
    return kExitOk;
  }
  Progress progress(ids.size());
  progress.Step(0);
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::mutex mu;
  Json results = Json::array();
  std::map<std::string, std::size_t> outcomes;
  std::vector<std::string> errors;
  bool all_refusals = true;
  auto worker = [&] {
    while (true) {
      std::size_t i = next.fetch_add(1);
      if (i >= ids.size()) return;
      auto r = eng.executor->Operate(engine::Operation::kForward, ids[i], patch,
                                     Seconds(args.timeout_s));
      {
        std::lock_guard lock(mu);
        if (r.ok()) {
          ++outcomes[std::string(engine::RunStatusCode(r->status))];
          results.push_back(InstanceJson(*r, false));
        } else {
          const bool refused = ExitCodeFor(r.status()) == kExitRefused;
          all_refusals = all_refusals && refused;
          ++outcomes[refused ? "refused" : "failed"];
          errors.push_back(ids[i].str() + ": " + r.status().message());
          results.push_back({{"id", ids[i].str()}, {"error", r.status().message()}});
        }
      }
      progress.Step(done.fetch_add(1) + 1);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  if (args.json) {
    std::cout << Json{{"replayed", ids.size()}, {"outcomes", outcomes}, {"instances", results}}
                     .dump(2)
              << "\n";
  } else {
    // "3 failed instance(s): SU 2, refused 1": the new statuses of those replayed, and how
    // many were refused (leased elsewhere, forward does not apply) or could not run.
    std::cout << ids.size() << " failed instance(s):";
    const char* sep = " ";
    for (const auto& [k, n] : outcomes) {
      std::cout << sep << k << " " << n;
      sep = ", ";
    }
    std::cout << "\n";
    for (const std::string& e : errors) std::cout << "  " << e << "\n";
  }
  if (errors.empty()) return kExitOk;
  return all_refusals ? kExitRefused : kExitFailure;
}

}  // namespace

int RunRun(const RunArgs& args, const TaskRegistry& base) {
  auto flows = LoadFlows(args.flows);
  if (!flows) return kExitInvalid;
  std::shared_ptr<const statelang::StateMachine> machine = flows->front();
  if (!args.flow_name.empty()) {
    machine = nullptr;
    std::string names;
    for (const auto& f : *flows) {
      if (f->name() == args.flow_name) machine = f;
      names += (names.empty() ? "" : ", ") + f->name();
    }
    if (!machine) {
      std::cerr << "error: --name " << args.flow_name
                << ": no flow of that name among the files given (" << names << ")\n";
      return kExitInvalid;
    }
  }
  Result<Json> input = Json::object();
  if (!args.input.empty()) {
    input = ParseObjectArgument(args.input, "--input");
    if (!input.ok()) return Fail(input.status());
  }
  OperatorEngine eng;
  if (int rc = OpenEngine(args.store, base, args.mocks, eng, StoreUse::kCreate); rc != kExitOk) {
    return rc;
  }
  if (args.input.empty() && eng.tasks.scenario() && eng.tasks.scenario()->input.is_object()) {
    input = eng.tasks.scenario()->input;
  }
  if (Status s = eng.executor->AddFlow(machine); !s.ok()) return Fail(s);
  engine::StartOptions start;
  start.business_key = args.business_key;
  auto id = eng.executor->StartInstance(machine, *input, start);
  if (!id.ok()) return Fail(id.status());
  auto r = eng.executor->Await(*id, Seconds(args.timeout_s));
  if (!r.ok()) {
    std::cerr << "error: " << r.status().message() << "\n"
              << WhatBecomesOf(*eng.store, *id) << "\n";
    return kExitFailure;
  }
  PrintResult(*r, args.json);
  return kExitOk;
}

int RunInstancesList(const ListArgs& args) {
  engine::InstanceFilter filter;
  if (!args.status.empty()) {
    filter.status = engine::ParseRunStatus(args.status);
    if (!filter.status) {
      std::cerr << "error: --status must be one of RU, SU, FA, UN or SK; found '" << args.status
                << "'\n";
      return kExitInvalid;
    }
  }
  filter.flow_name = args.flow;
  filter.limit = args.limit;
  auto store = OpenStore(args.store);
  if (!store.ok()) return Fail(store.status());
  auto list = (*store)->ListInstances(filter);
  if (!list.ok()) return Fail(list.status());
  if (args.json) {
    Json out = Json::array();
    for (const auto& s : *list) out.push_back(SummaryJson(s));
    std::cout << out.dump(2) << "\n";
  } else {
    PrintSummaries(std::cout, *list);
  }
  return kExitOk;
}

int RunInstancesShow(const ShowArgs& args) {
  auto id = ParseId(args.id);
  if (!id.ok()) return Fail(id.status());
  auto store = OpenStore(args.store);
  if (!store.ok()) return Fail(store.status());
  auto r = (*store)->LoadInstance(*id);
  if (!r.ok()) return Fail(r.status());
  PrintResult(*r, args.json);
  return kExitOk;
}

int RunOperate(const OperateArgs& args, const TaskRegistry& base) {
  Json patch;
  if (!args.patch.empty()) {
    auto parsed = ParseObjectArgument(args.patch, "--input");
    if (!parsed.ok()) return Fail(parsed.status());
    patch = std::move(parsed).value();
  }
  if (args.all_failed && !args.id.empty()) {
    std::cerr << "error: give an instance id or --all-failed, not both\n";
    return kExitInvalid;
  }
  if (!args.all_failed && args.id.empty()) {
    std::cerr << "error: an instance id is required (or --all-failed for replay)\n";
    return kExitInvalid;
  }
  if (!args.flow.empty() && !args.all_failed) {
    std::cerr << "error: --flow applies with --all-failed\n";
    return kExitInvalid;
  }
  if (args.plan && args.all_failed) {
    std::cerr << "error: --plan applies to one instance\n";
    return kExitInvalid;
  }
  if (args.plan) {
    auto id = ParseId(args.id);
    if (!id.ok()) return Fail(id.status());
    Tasks tasks;
    if (Status s = tasks.Load(base, args.mocks); !s.ok()) return Fail(s);
    auto store = OpenStore(args.store);
    if (!store.ok()) return Fail(store.status());
    return PrintReplayPlan(**store, tasks.registry(), *id, patch, args.json);
  }
  OperatorEngine eng;
  if (int rc = OpenEngine(args.store, base, args.mocks, eng); rc != kExitOk) return rc;
  if (args.all_failed) return OperateAllFailed(eng, args, patch);
  auto id = ParseId(args.id);
  if (!id.ok()) return Fail(id.status());
  auto r = eng.executor->Operate(args.operation, *id, patch, Seconds(args.timeout_s));
  if (!r.ok() && r.status().code() == StatusCode::kDeadlineExceeded) {
    // The operation ran and the instance went on: say where it is, as `run` does.
    std::cerr << "error: " << r.status().message() << "\n"
              << WhatBecomesOf(*eng.store, *id) << "\n";
    return kExitFailure;
  }
  if (!r.ok()) return Fail(r.status());
  PrintResult(*r, args.json);
  return kExitOk;
}

int RunRecover(const RecoverArgs& args, const TaskRegistry& base) {
  // Instances claimed in one statement. Large, because each claim is a write transaction that
  // waits for the committer's: few claims, and the resumed instances' writes start sooner.
  constexpr std::size_t kClaimBatch = 10000;
  // How each instance ended, as the engine finished it ("UN/SU": status and compensation
  // status): no read of the store, whose other instances may be millions.
  std::mutex ended_mu;
  std::unordered_map<InstanceId, std::string> ended;
  auto outcome = [](const engine::InstanceRecord& r) {
    std::string key(engine::RunStatusCode(r.status));
    if (r.compensation_status) key += "/" + std::string(engine::RunStatusCode(*r.compensation_status));
    return key;
  };
  OperatorEngine eng;
  if (int rc = OpenEngine(args.store, base, args.mocks, eng, StoreUse::kExisting, 0,
                          [&](const engine::InstanceRecord& r) {
                            std::string key = outcome(r);
                            std::lock_guard lock(ended_mu);
                            ended.insert_or_assign(r.id, std::move(key));
                          });
      rc != kExitOk) {
    return rc;
  }
  engine::StateStore& store = *eng.store;
  engine::Executor& executor = *eng.executor;
  const auto t0 = std::chrono::steady_clock::now();
  const auto give_up = t0 + Seconds(args.wait_s);
  std::set<InstanceId> resumed;
  std::map<InstanceId, Status> failed;
  bool waited_out = false;
  while (true) {
    auto report = executor.RecoverExpired(kClaimBatch);
    if (!report.ok()) return Fail(report.status());
    for (const InstanceId& id : report->resumed) {
      resumed.insert(id);
      failed.erase(id);
    }
    for (auto& [id, s] : report->failed) failed.insert_or_assign(id, s);
    if (report->resumed.size() + report->failed.size() == kClaimBatch) continue;  // more
    auto left = store.Unfinished(executor.owner(), eng.clock.Now());
    if (!left.ok()) return Fail(left.status());
    if (left->leased_elsewhere > 0 && std::chrono::steady_clock::now() < give_up) {
      // Live leases of another engine: claim again when the earliest expires (its owner may
      // also finish it meanwhile), while what was claimed runs. Not more often than every 50 ms
      // while ours run: each claim is a write, and larger claims are cheaper per instance.
      const Duration floor = executor.live_instances() > 0 ? std::chrono::milliseconds(50)
                                                           : std::chrono::milliseconds(5);
      Duration wait = std::min<Duration>(*left->next_expiry - eng.clock.Now(),
                                         std::chrono::milliseconds(250));
      std::this_thread::sleep_for(std::max<Duration>(wait, floor));
      continue;
    }
    // Everything expired is claimed (or the wait is over): let what was claimed finish.
    while (executor.live_instances() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    left = store.Unfinished(executor.owner(), eng.clock.Now());
    if (!left.ok()) return Fail(left.status());
    if (left->leased_elsewhere == 0) {
      // Done once only the unresumable ones and the parked ones remain; else some expired
      // meanwhile: claim them. A parked instance whose timer comes within --wait is waited
      // for and claimed when due; one parked beyond it stays parked, safe in the store.
      if (left->unfinished - std::min(left->unfinished, left->parked) <= failed.size()) {
        const auto now = std::chrono::steady_clock::now();
        if (!left->next_wake || now >= give_up ||
            *left->next_wake - eng.clock.Now() > give_up - now) {
          break;
        }
        Duration wait = std::min<Duration>(*left->next_wake - eng.clock.Now(),
                                           std::chrono::milliseconds(250));
        std::this_thread::sleep_for(std::max<Duration>(wait, std::chrono::milliseconds(1)));
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      waited_out = true;
      break;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto left = store.Unfinished(executor.owner(), eng.clock.Now());
  // How the resumed instances ended. Those the engine did not see finish (a resume that found
  // nothing left to do, a run stopped by an error) are read, a chunk at a time.
  std::map<std::string, std::size_t> outcomes;
  std::vector<InstanceId> unseen;
  {
    std::lock_guard lock(ended_mu);
    for (const InstanceId& id : resumed) {
      auto it = ended.find(id);
      if (it != ended.end()) {
        ++outcomes[it->second];
      } else {
        unseen.push_back(id);
      }
    }
  }
  auto read = store.LoadInstances(unseen);
  if (!read.ok()) return Fail(read.status());
  for (const Result<engine::InstanceRecord>& r : *read) {
    if (r.ok()) ++outcomes[outcome(*r)];
  }
  if (args.json) {
    Json failures = Json::array();
    for (const auto& [id, s] : failed) failures.push_back({{"id", id.str()}, {"error", s.message()}});
    std::cout << Json{{"resumed", resumed.size()},
                      {"outcomes", outcomes},
                      {"failed", failures},
                      {"stillLeasedElsewhere", left.ok() ? left->leased_elsewhere : 0},
                      {"parked", left.ok() ? left->parked : 0},
                      {"nextWake", left.ok() && left->next_wake ? Json(FormatTime(*left->next_wake))
                                                                : Json()},
                      {"seconds", seconds}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "recovered " << resumed.size() << " instance(s) in " << seconds << " s";
    for (const auto& [k, n] : outcomes) std::cout << "; " << k << ": " << n;
    std::cout << "\n";
    for (const auto& [id, s] : failed) {
      std::cout << "  cannot resume " << id.str() << ": " << s.message() << "\n";
    }
    if (left.ok() && left->parked > 0) {
      std::cout << "  " << left->parked << " instance(s) are parked";
      if (left->next_wake) std::cout << ", the first due " << FormatTime(*left->next_wake);
      std::cout << "; they stay in the store until their timer or event comes\n";
    }
    if (waited_out && left.ok()) {
      std::cout << "  " << left->leased_elsewhere
                << " instance(s) are still leased by running engines; not taken\n";
    }
  }
  if (!failed.empty()) return kExitFailure;
  return waited_out ? kExitRefused : kExitOk;
}

int RunDbMigrate(const StoreArgs& args) {
  auto applied = MigrateStore(args);
  if (!applied.ok()) return Fail(applied.status());
  if (applied->empty()) {
    std::cout << "schema up to date\n";
  } else {
    std::cout << "applied migration(s)";
    for (int v : *applied) std::cout << " " << v;
    std::cout << "\n";
  }
  return kExitOk;
}

}  // namespace sagaflow::cli
