#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "commands.h"
#include "operator.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/server/cli.h"
#include "sagaflow/server/scenario.h"

namespace sagaflow::cli {

int RunBench(const BenchArgs& args, const TaskRegistry& base) {
  if (args.instances == 0) {
    std::cerr << "error: --instances must be at least 1\n";
    return kExitInvalid;
  }
  auto flows = LoadFlows(args.flows);
  if (!flows) return kExitInvalid;
  // The scenario's mocks, and the binary's own tasks (and error types) for services the scenario
  // does not mock.
  Tasks tasks;
  if (Status s = tasks.Load(base, args.scenario); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return ExitCodeFor(s);
  }
  const server::Scenario& scenario = *tasks.scenario();
  auto machine = PickFlow(*flows, scenario.flow);
  if (!machine) return kExitInvalid;
  const TaskRegistry& registry = tasks.registry();

  const int threads = args.threads > 0
                          ? args.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::size_t window = std::max<std::size_t>(1, std::min(args.window, args.instances));
  // A closed loop, like `window` clients each starting a new instance when theirs finishes: the
  // start happens on the executor thread that finished the previous instance.
  std::atomic<std::size_t> started{0};
  std::atomic<std::size_t> done{0};
  std::array<std::atomic<std::size_t>, 5> by_status{};
  std::mutex mu;
  std::condition_variable cv;
  Status start_error;  // guarded by mu
  engine::Executor* exec = nullptr;
  const SharedJson input(scenario.input);  // every instance starts from the same input

  auto start_next = [&]() {
    std::size_t i = started.fetch_add(1);
    if (i >= args.instances) return;
    // Without blocking: on a durable store, the start shares a commit with other writes.
    exec->StartInstanceAsync(machine, input, {}, [&, i](Result<InstanceId> id) {
      if (id.ok()) return;
      std::lock_guard lock(mu);
      start_error = Status(id.status().code(),
                           "starting instance " + std::to_string(i) + ": " + id.status().message());
      cv.notify_all();
    });
  };

  SystemClock clock;
  auto opened = OpenStore(args.store, StoreUse::kCreate, /*allow_memory=*/true);
  if (!opened.ok()) {
    std::cerr << "error: " << opened.status().message() << "\n";
    return ExitCodeFor(opened.status());
  }
  engine::StateStore& store = **opened;
  engine::Executor executor(
      engine::ExecutorOptions{.workers = threads,
                              .on_finished =
                                  [&](const engine::InstanceRecord& r) {
                                    by_status[static_cast<std::size_t>(r.status)].fetch_add(1);
                                    if (done.fetch_add(1) + 1 == args.instances) {
                                      std::lock_guard lock(mu);
                                      cv.notify_all();
                                    }
                                    start_next();
                                  }},
      registry, store, clock);
  exec = &executor;
  if (Status s = executor.AddFlow(machine); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitInvalid;
  }
  if (Status s = executor.Start(); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    return kExitFailure;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < window; ++i) start_next();
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done.load() == args.instances || !start_error.ok(); });
    if (!start_error.ok()) {
      std::cerr << "error: " << start_error.message() << "\n";
      lock.unlock();
      executor.Stop();
      return kExitFailure;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  executor.Stop();

  Json statuses = Json::object();
  for (auto s :
       {engine::RunStatus::kRunning, engine::RunStatus::kSucceeded, engine::RunStatus::kFailed,
        engine::RunStatus::kUnknown, engine::RunStatus::kSkipped}) {
    std::size_t n = by_status[static_cast<std::size_t>(s)].load();
    if (n) statuses[std::string(engine::RunStatusCode(s))] = n;
  }
  std::uint64_t calls = 0;
  for (const auto& [name, n] : tasks.mocks().Calls()) calls += n;
  Json out = {{"flow", machine->name()},
              {"store", StoreUrl(args.store) == "memory" ? "memory" : StoreDisplayName(store)},
              {"instances", args.instances},
              {"threads", threads},
              {"window", window},
              {"seconds", seconds},
              {"instances_per_s", static_cast<double>(args.instances) / seconds},
              {"task_calls_per_s", static_cast<double>(calls) / seconds},
              {"statuses", statuses}};
  if (auto* durable = dynamic_cast<adapters::SociStateStore*>(&store)) {
    adapters::GroupCommitStats stats = durable->stats();
    if (StoreUrl(args.store).rfind("sqlite:", 0) == 0) out["durability"] = args.store.durability;
    out["commits"] = stats.commits;
    out["writes_per_commit"] =
        stats.commits ? static_cast<double>(stats.items_written) / static_cast<double>(stats.commits)
                      : 0.0;
    out["largest_batch"] = stats.largest_batch;
  }
  if (args.json) {
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "flow " << machine->name() << ": " << args.instances << " instances on " << threads
              << " threads in " << seconds
              << " s = " << static_cast<long long>(static_cast<double>(args.instances) / seconds)
              << " instances/s\nstatuses " << statuses.dump() << "\n";
    if (out.contains("commits")) {
      std::cout << "store " << out["store"].get<std::string>() << ": "
                << out["commits"].get<std::uint64_t>() << " commits, "
                << out["writes_per_commit"].get<double>() << " writes per commit\n";
    }
  }
  return kExitOk;
}

}  // namespace sagaflow::cli
