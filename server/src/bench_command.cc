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

namespace {

std::atomic<std::uint64_t> next_run_generation{1};

// What the threads of one bench run count, one slot per thread, so that threads finishing
// instances share no cache line: at hundreds of thousands of instances a second, one shared
// counter bouncing between the cores costs more than the work it counts.
class PerThread {
 public:
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> done{0};
    std::array<std::atomic<std::uint64_t>, 5> by_status{};
    SharedJson input;  // this thread's copy of the input
  };

  // The calling thread's slot, created at its first call in this run.
  Slot& Mine() {
    thread_local std::uint64_t generation = 0;
    thread_local Slot* slot = nullptr;
    if (generation != generation_) {
      std::lock_guard lock(mu_);
      slots_.push_back(std::make_unique<Slot>());
      slot = slots_.back().get();
      generation = generation_;
    }
    return *slot;
  }

  std::uint64_t done() const {
    std::lock_guard lock(mu_);
    std::uint64_t n = 0;
    for (const auto& s : slots_) n += s->done.load(std::memory_order_relaxed);
    return n;
  }
  std::uint64_t by_status(std::size_t status) const {
    std::lock_guard lock(mu_);
    std::uint64_t n = 0;
    for (const auto& s : slots_) n += s->by_status[status].load(std::memory_order_relaxed);
    return n;
  }

 private:
  const std::uint64_t generation_ = next_run_generation.fetch_add(1);
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace

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
  PerThread counts;
  std::mutex mu;
  std::condition_variable cv;
  Status start_error;  // guarded by mu
  engine::Executor* exec = nullptr;

  auto start_next = [&]() {
    std::size_t i = started.fetch_add(1);
    if (i >= args.instances) return;
    // Every instance starts from the scenario's input, shared with the others started on the
    // same thread (as requests arriving on one connection would each bring their own).
    PerThread::Slot& mine = counts.Mine();
    if (mine.input.is_null()) mine.input = scenario.input;
    // Without blocking: on a durable store, the start shares a commit with other writes.
    exec->StartInstanceAsync(machine, mine.input, {}, [&, i](Result<InstanceId> id) {
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
  // The flow's async steps (IsAsync) run on as many threads of the in-process dispatcher.
  adapters::InProcessDispatcher dispatcher(registry, clock, {.threads = threads});
  engine::Executor executor(
      engine::ExecutorOptions{.workers = threads,
                              .on_finished =
                                  [&](const engine::InstanceRecord& r) {
                                    PerThread::Slot& mine = counts.Mine();
                                    mine.by_status[static_cast<std::size_t>(r.status)].fetch_add(
                                        1, std::memory_order_relaxed);
                                    mine.done.fetch_add(1, std::memory_order_release);
                                    start_next();
                                  },
                              .dispatcher = &dispatcher},
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
    // The count is spread over the threads' slots: look every millisecond (a run lasts seconds).
    std::unique_lock lock(mu);
    while (start_error.ok() && counts.done() < args.instances) {
      cv.wait_for(lock, std::chrono::milliseconds(1));
    }
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
    std::uint64_t n = counts.by_status(static_cast<std::size_t>(s));
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
  if (StoreUrl(args.store) == "memory") out["retain"] = args.store.retain;
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
