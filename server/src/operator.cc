#include "operator.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "commands.h"
#include "sagaflow/adapters/memory/memory_state_store.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/server/cli.h"

namespace sagaflow::cli {

namespace {

Result<adapters::SociStoreOptions> SociOptions(const StoreArgs& args) {
  adapters::SociStoreOptions options;
  if (args.durability == "full") {
    options.durability = adapters::SociStoreOptions::Durability::kFull;
  } else if (args.durability == "normal") {
    options.durability = adapters::SociStoreOptions::Durability::kNormal;
  } else {
    return InvalidArgument("--durability must be full or normal, found '" + args.durability +
                           "'");
  }
  return options;
}

std::string Time(const std::optional<TimePoint>& t) { return t ? FormatTime(*t) : "-"; }

Json TimeJson(const std::optional<TimePoint>& t) { return t ? Json(FormatTime(*t)) : Json(); }

std::string Code(const std::optional<engine::RunStatus>& s) {
  return s ? std::string(engine::RunStatusCode(*s)) : "-";
}

Json FailureJson(const std::optional<TaskFailure>& f) {
  if (!f) return nullptr;
  return Json{{"type", f->type}, {"message", f->message}};
}

// When a parked instance wakes, for a person: its wake time, "on event" when only an event
// wakes it, "-" when it is not parked (a process holds it, or it has finished).
std::string WakeText(bool finished, const std::string& owner, TimePoint lease_until) {
  if (!IsParked(finished, owner)) return "-";
  const std::optional<TimePoint> at = WakeTime(lease_until);
  return at ? FormatTime(*at) : "on event";
}

// "parked" and "wakeAt" (null unless parked until a time), added to an instance's JSON.
void AddWake(Json& out, bool finished, const std::string& owner, TimePoint lease_until) {
  const bool parked = IsParked(finished, owner);
  const std::optional<TimePoint> at = WakeTime(lease_until);
  out["parked"] = parked;
  out["wakeAt"] = parked && at ? Json(FormatTime(*at)) : Json();
}

}  // namespace

bool IsParked(bool finished, const std::string& owner) { return !finished && owner.empty(); }

std::optional<TimePoint> WakeTime(TimePoint lease_until) {
  if (lease_until == TimePoint::max()) return std::nullopt;
  return lease_until;
}

std::string FlowLabel(const std::string& name, const std::string& version) {
  return version.empty() ? name : name + " " + version;
}

std::string StoreUrl(const StoreArgs& args) {
  if (!args.url.empty()) return args.url;
  if (const char* env = std::getenv("SAGAFLOW_DB"); env != nullptr && *env != '\0') return env;
  return "sqlite:sagaflow.db";
}

Result<std::unique_ptr<engine::StateStore>> OpenStore(const StoreArgs& args, StoreUse use,
                                                      bool allow_memory) {
  const std::string url = StoreUrl(args);
  SAGAFLOW_ASSIGN_OR_RETURN(adapters::SociStoreOptions options, SociOptions(args));
  if (url == "memory") {
    if (!allow_memory) {
      return InvalidArgument(
          "the memory store keeps nothing after the command ends; it is for bench only (use "
          "sqlite:PATH or postgresql://...)");
    }
    adapters::MemoryStoreOptions memory;
    if (args.retain == "all") {
      memory.max_finished.reset();
    } else {
      std::size_t used = 0;
      unsigned long long n = 0;
      try {
        n = std::stoull(args.retain, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != args.retain.size() || args.retain[0] == '-') {
        return InvalidArgument("--retain must be a count of finished instances or 'all', got '" +
                               args.retain + "'");
      }
      memory.max_finished = static_cast<std::size_t>(n);
    }
    return std::unique_ptr<engine::StateStore>(new adapters::MemoryStateStore(memory));
  }
  if (use == StoreUse::kExisting && url.rfind("sqlite:", 0) == 0) {
    std::string path = url.substr(7);
    if (path.rfind("//", 0) == 0) path = path.substr(2);
    std::error_code ec;
    if (!path.empty() && !std::filesystem::exists(path, ec)) {
      return InvalidArgument("no store at " + path +
                             " (sagaflow run or sagaflow db migrate creates one)");
    }
  }
  SAGAFLOW_ASSIGN_OR_RETURN(std::unique_ptr<adapters::SociStateStore> store,
                            adapters::OpenSociStore(url, options));
  return std::unique_ptr<engine::StateStore>(std::move(store));
}

std::string StoreDisplayName(engine::StateStore& store) {
  if (auto* durable = dynamic_cast<adapters::SociStateStore*>(&store)) {
    return durable->display_url();
  }
  return "memory";
}

Result<std::vector<int>> MigrateStore(const StoreArgs& args) {
  const std::string url = StoreUrl(args);
  if (url == "memory") return InvalidArgument("the memory store has no schema to migrate");
  if (url.rfind("sqlite:", 0) != 0 && url.rfind("postgresql://", 0) != 0 &&
      url.rfind("postgres://", 0) != 0) {
    // Let the adapter name the accepted forms.
    return adapters::MigrateDatabase(url, adapters::SociStoreOptions{});
  }
  SAGAFLOW_ASSIGN_OR_RETURN(adapters::SociStoreOptions options, SociOptions(args));
  return adapters::MigrateDatabase(url, options);
}

Status Tasks::Load(const TaskRegistry& base, const std::string& mocks_file) {
  for (const auto& [name, parent] : base.errors().UserDefined()) {
    if (Status s = registry_.errors().Define(name, parent); !s.ok()) {
      return Internal("the binary's error types: " + s.message());
    }
  }
  for (const TaskName& name : base.Names()) {
    const TaskFn* fn = base.Find(name);
    registry_.add(name.str(), [fn](TaskContext& ctx, const Json& args) { return (*fn)(ctx, args); });
  }
  if (mocks_file.empty()) return Status::Ok();
  auto scenario = server::LoadScenarioFile(mocks_file);
  if (!scenario.ok()) return InvalidArgument(mocks_file + ": " + scenario.status().message());
  if (Status s = server::DefineErrors(*scenario, registry_.errors()); !s.ok()) {
    return InvalidArgument(mocks_file + ": " + s.message());
  }
  if (Status s = mocks_.Install(scenario->mocks, registry_); !s.ok()) {
    return InvalidArgument(mocks_file + ": " + s.message());
  }
  scenario_ = std::move(scenario).value();
  return Status::Ok();
}

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
      return kExitInvalid;
    case StatusCode::kFailedPrecondition:
    case StatusCode::kConflict:
      return kExitRefused;
    default:
      return kExitFailure;
  }
}

int OpenEngine(const StoreArgs& store_args, const TaskRegistry& base,
               const std::string& mocks_file, OperatorEngine& out, StoreUse use, int workers,
               std::function<void(const engine::InstanceRecord&)> on_finished) {
  if (Status s = out.tasks.Load(base, mocks_file); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return ExitCodeFor(s);
  }
  auto store = OpenStore(store_args, use);
  if (!store.ok()) {
    std::cerr << "error: " << store.status().message() << "\n";
    return ExitCodeFor(store.status());
  }
  out.store = std::move(store).value();
  engine::ExecutorOptions options;
  options.workers =
      workers > 0 ? workers : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  options.on_finished = std::move(on_finished);
  out.dispatcher =
      std::make_unique<adapters::InProcessDispatcher>(out.tasks.registry(), out.clock);
  options.dispatcher = out.dispatcher.get();
  out.executor = std::make_unique<engine::Executor>(std::move(options), out.tasks.registry(),
                                                    *out.store, out.clock);
  if (Status s = out.executor->Start(); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

Json SummaryJson(const engine::InstanceSummary& s) {
  Json out = {{"id", s.id.str()},
              {"flow", s.flow_name},
              {"version", s.flow_version},
              {"businessKey", s.business_key.empty() ? Json() : Json(s.business_key)},
              {"status", std::string(engine::RunStatusCode(s.status))},
              {"compensationStatus", NullableStatus(s.compensation_status)},
              {"startedAt", FormatTime(s.started_at)},
              {"endedAt", s.ended_at ? Json(FormatTime(*s.ended_at)) : Json()},
              {"owner", s.owner.empty() ? Json() : Json(s.owner)}};
  AddWake(out, s.finished, s.owner, s.lease_until);
  return out;
}

Json InstanceJson(const engine::InstanceRecord& r, bool with_executions) {
  Json out = {{"id", r.id.str()},
              {"flow", r.flow_name},
              {"version", r.flow_version},
              {"businessKey", r.business_key.empty() ? Json() : Json(r.business_key)},
              {"status", std::string(engine::RunStatusCode(r.status))},
              {"compensationStatus", NullableStatus(r.compensation_status)},
              {"finished", r.finished()},
              {"startedAt", FormatTime(r.started_at)},
              {"updatedAt", FormatTime(r.updated_at)},
              {"endedAt", r.ended_at ? Json(FormatTime(*r.ended_at)) : Json()},
              {"owner", r.owner.empty() ? Json() : Json(r.owner)},
              // TimePoint::max(), the lease of an instance only an event wakes, is no time.
              {"leaseUntil", TimeJson(WakeTime(r.lease_until))},
              {"error", FailureJson(r.error)},
              {"errorCode", r.error_code.empty() ? Json() : Json(r.error_code)},
              {"errorMessage", r.error_message.empty() ? Json() : Json(r.error_message)},
              {"input", r.input.get()},
              {"context", r.context.get()}};
  AddWake(out, r.finished(), r.owner, r.lease_until);
  if (!with_executions) return out;
  Json executions = Json::array();
  for (const engine::StateExecution& e : r.executions) {
    Json x = {{"id", e.id},
              {"state", e.state.str()},
              {"kind", std::string(engine::ExecutionKindName(e.kind))},
              {"status", std::string(engine::RunStatusCode(e.status))},
              {"attempts", e.attempts},
              {"epoch", e.epoch},
              {"startedAt", FormatTime(e.started_at)},
              {"endedAt", e.ended_at ? Json(FormatTime(*e.ended_at)) : Json()},
              {"idempotencyKey", e.idempotency_key},
              {"input", e.input.get()},
              {"output", e.output.get()},
              {"error", FailureJson(e.error)}};
    if (e.kind == engine::ExecutionKind::kCompensation && e.compensates >= 0) {
      x["compensates"] = r.executions[static_cast<std::size_t>(e.compensates)].state.str();
    }
    if (e.compensation_status) x["compensationStatus"] = NullableStatus(e.compensation_status);
    if (e.retried_for >= 0) x["retriedFor"] = e.retried_for;
    if (e.superseded) x["superseded"] = true;
    if (e.retry_at) x["retryAt"] = FormatTime(*e.retry_at);
    executions.push_back(std::move(x));
  }
  out["executions"] = std::move(executions);
  return out;
}

void PrintInstance(std::ostream& out, const engine::InstanceRecord& r) {
  out << "instance " << r.id.str() << "  flow " << FlowLabel(r.flow_name, r.flow_version) << "\n";
  if (!r.business_key.empty()) out << "  business key  " << r.business_key << "\n";
  out << "  status        " << engine::RunStatusCode(r.status)
      << (r.finished() ? "" : " (running)") << "\n";
  out << "  compensation  " << Code(r.compensation_status) << "\n";
  out << "  started       " << FormatTime(r.started_at) << "\n";
  out << "  ended         " << Time(r.ended_at) << "\n";
  if (!r.owner.empty()) {
    if (r.finished()) {
      out << "  last run by   " << r.owner << "\n";
    } else {
      out << "  owner         " << r.owner;
      if (const std::optional<TimePoint> until = WakeTime(r.lease_until)) {
        out << " (lease until " << FormatTime(*until) << ")";
      }
      out << "\n";
    }
  } else if (IsParked(r.finished(), r.owner)) {
    out << "  wakes         " << WakeText(r.finished(), r.owner, r.lease_until) << "\n";
  }
  if (r.error) out << "  error         " << r.error->type << ": " << r.error->message << "\n";
  if (!r.error_code.empty() || !r.error_message.empty()) {
    out << "  fail          " << r.error_code
        << (r.error_code.empty() || r.error_message.empty() ? "" : " ") << r.error_message
        << "\n";
  }
  if (r.executions.empty()) return;
  auto label = [&r](const engine::StateExecution& e) {
    std::string state = e.state.str();
    if (e.kind == engine::ExecutionKind::kCompensation && e.compensates >= 0) {
      state += " (undoes " + r.executions[static_cast<std::size_t>(e.compensates)].state.str() +
               ")";
    }
    if (e.superseded) state += " (replaced)";
    return state;
  };
  std::size_t width = 5;
  for (const engine::StateExecution& e : r.executions) width = std::max(width, label(e).size());
  out << "  " << std::left << std::setw(3) << "#"
      << " " << std::setw(static_cast<int>(width)) << "state"
      << " kind          status  attempts  started                   ended\n";
  for (const engine::StateExecution& e : r.executions) {
    out << "  " << std::left << std::setw(3) << e.id << " " << std::setw(static_cast<int>(width))
        << label(e) << " " << std::setw(13) << engine::ExecutionKindName(e.kind) << " "
        << std::setw(7)
        << engine::RunStatusCode(e.status) << " " << std::setw(9) << e.attempts << " "
        << std::setw(25) << FormatTime(e.started_at) << " " << Time(e.ended_at) << std::right
        << "\n";
    if (e.error) out << "      error: " << e.error->type << ": " << e.error->message << "\n";
    if (e.retry_at) out << "      retry at " << FormatTime(*e.retry_at) << "\n";
  }
}

void PrintSummaries(std::ostream& out, const std::vector<engine::InstanceSummary>& list) {
  out << std::left << std::setw(27) << "ID" << std::setw(22) << "FLOW" << std::setw(9)
      << "VERSION" << std::setw(20) << "BUSINESS KEY" << std::setw(7) << "STATUS" << std::setw(6)
      << "COMP" << std::setw(25) << "STARTED" << std::setw(25) << "ENDED"
      << "WAKES\n";
  for (const engine::InstanceSummary& s : list) {
    out << std::setw(27) << s.id.str() << std::setw(22) << s.flow_name << std::setw(9)
        << s.flow_version << std::setw(20) << (s.business_key.empty() ? "-" : s.business_key)
        << std::setw(7) << engine::RunStatusCode(s.status) << std::setw(6)
        << Code(s.compensation_status) << std::setw(25) << FormatTime(s.started_at)
        << std::setw(25) << Time(s.ended_at) << WakeText(s.finished, s.owner, s.lease_until)
        << "\n";
  }
  out << std::right;
}

Result<Json> ParseObjectArgument(const std::string& text, const std::string& what) {
  auto parsed = ParseJson(text);
  if (!parsed.ok()) return InvalidArgument(what + " is not valid JSON: " + parsed.status().message());
  if (!parsed->is_object()) {
    return InvalidArgument(what + " must be a JSON object, found " +
                           std::string(parsed->type_name()));
  }
  return std::move(parsed).value();
}

}  // namespace sagaflow::cli
