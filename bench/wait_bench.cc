// Many instances waiting on one durable timer (bench/wait_bench.sh; README "A million Waits").
//
//   sagaflow_wait_bench run    --db URL --instances N --due-in S [--window W]
//       starts N instances of bench/flows/wait_until.json, all waiting until now + S, and
//       reports the resident memory while they wait and the time from the due time until every
//       one has moved on (JSON on stdout).
//   sagaflow_wait_bench start  --db URL --instances N --due-in S [--window W] [--kill-after K]
//       starts them, then kills itself with SIGKILL K seconds after the last start (during the
//       wait); prints the due time first ("due <ns since epoch>").
// bench/wait_bench.sh checks the store afterwards with SQL: every instance SU, each with
// exactly one Remind execution of one attempt, started at or after the due time.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/common/json.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/engine/state_store.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"

// tcmalloc's call to hand its free memory back to the system, when it is the allocator linked.
extern "C" void MallocExtension_ReleaseFreeMemory() __attribute__((weak));

namespace sagaflow {
namespace {

using Steady = std::chrono::steady_clock;

std::map<std::string, std::string> Flags(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) break;
    out[k.substr(2)] = argv[i + 1];
  }
  return out;
}

std::string Need(const std::map<std::string, std::string>& f, const std::string& k) {
  auto it = f.find(k);
  if (it == f.end()) {
    std::cerr << "error: --" << k << " is required\n";
    std::exit(2);
  }
  return it->second;
}

// Resident memory from /proc/self/status, in MiB: all of it, its peak, and the part that is
// anonymous (the heap: the engine's own memory and SQLite's page cache) rather than file
// pages (the database file, memory-mapped by SQLite: the kernel drops them when it needs to).
struct Memory {
  double rss = 0, hwm = 0, anon = 0, file = 0;
};
Memory Rss() {
  std::ifstream in("/proc/self/status");
  std::string line;
  Memory m;
  auto mib = [&](std::size_t skip) { return std::stod(line.substr(skip)) / 1024; };
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) m.rss = mib(6);
    if (line.rfind("VmHWM:", 0) == 0) m.hwm = mib(6);
    if (line.rfind("RssAnon:", 0) == 0) m.anon = mib(8);
    if (line.rfind("RssFile:", 0) == 0) m.file = mib(8);
  }
  return m;
}

std::shared_ptr<const statelang::StateMachine> LoadFlow() {
  auto loaded = statelang::LoadStateMachineFile(SAGAFLOW_SOURCE_DIR "/bench/flows/wait_until.json");
  if (!loaded.ok()) {
    std::cerr << loaded.Describe("wait_until.json");
    std::exit(1);
  }
  return loaded.machine;
}

struct Engine {
  std::unique_ptr<adapters::SociStateStore> store;
  TaskRegistry registry;
  SystemClock clock;
  std::unique_ptr<engine::Executor> executor;
  std::atomic<std::uint64_t> reminders{0};
  std::atomic<std::uint64_t> early{0};
  std::atomic<std::uint64_t> finished{0};
  std::atomic<std::int64_t> last_reminder_ns{0};
  TimePoint due{};
};

void Open(Engine& e, const std::string& url) {
  auto store = adapters::OpenSociStore(url);
  if (!store.ok()) {
    std::cerr << "error: " << store.status().message() << "\n";
    std::exit(1);
  }
  e.store = std::move(store).value();
  e.registry.add("reminder.send", [&e](TaskContext&, const Json&) -> Json {
    const TimePoint now = e.clock.Now();
    if (now < e.due) e.early.fetch_add(1);
    e.reminders.fetch_add(1);
    std::int64_t ns = now.time_since_epoch().count();
    std::int64_t seen = e.last_reminder_ns.load();
    while (ns > seen && !e.last_reminder_ns.compare_exchange_weak(seen, ns)) {
    }
    return true;
  });
  engine::ExecutorOptions options;
  options.workers = static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  // A long-running engine: claims due timers from the store every second.
  options.recover_every = std::chrono::seconds(1);
  options.on_finished = [&e](const engine::InstanceRecord&) { e.finished.fetch_add(1); };
  e.executor = std::make_unique<engine::Executor>(options, e.registry, *e.store, e.clock);
  if (Status s = e.executor->Start(); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    std::exit(1);
  }
}

// Starts n instances waiting until e.due, `window` starts in flight at a time.
double StartAll(Engine& e, const std::shared_ptr<const statelang::StateMachine>& flow,
                std::size_t n, std::size_t window) {
  if (Status s = e.executor->AddFlow(flow); !s.ok()) {
    std::cerr << "error: " << s.message() << "\n";
    std::exit(1);
  }
  SharedJson input(Json{{"due", FormatTime(e.due)}});
  std::mutex mu;
  std::condition_variable cv;
  std::size_t in_flight = 0, done = 0;
  std::atomic<bool> failed{false};
  const auto t0 = Steady::now();
  for (std::size_t i = 0; i < n; ++i) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < window; });
      ++in_flight;
    }
    e.executor->StartInstanceAsync(flow, input, {}, [&](Result<InstanceId> id) {
      if (!id.ok()) {
        std::cerr << "error: start: " << id.status().message() << "\n";
        failed = true;
      }
      std::lock_guard lock(mu);
      --in_flight;
      ++done;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done == n; });
  if (failed) std::exit(1);
  return std::chrono::duration<double>(Steady::now() - t0).count();
}

int Run(const std::map<std::string, std::string>& f, bool kill_self) {
  const std::size_t n = std::stoull(Need(f, "instances"));
  const double due_in = std::stod(Need(f, "due-in"));
  const std::size_t window = f.count("window") ? std::stoull(f.at("window")) : 4096;
  Engine e;
  e.due = e.clock.Now() + SecondsToDuration(due_in);
  if (kill_self) std::cout << "due " << e.due.time_since_epoch().count() << std::endl;
  Open(e, Need(f, "db"));
  const double start_s = StartAll(e, LoadFlow(), n, window);
  // Wait until the instances are parked (the last starts' writes are done), then measure.
  while (e.executor->live_instances() > 0 && e.clock.Now() < e.due) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // What the engine holds, not what the allocator kept of the starts' garbage.
  ::malloc_trim(0);
  if (MallocExtension_ReleaseFreeMemory != nullptr) MallocExtension_ReleaseFreeMemory();
  const Memory waiting = Rss();
  const double rss_waiting = waiting.rss;
  const bool parked_before_due = e.clock.Now() < e.due;
  std::cerr << "started " << n << " in " << start_s << " s; waiting, RSS " << rss_waiting
            << " MiB\n";
  if (kill_self) {
    const double kill_after = f.count("kill-after") ? std::stod(f.at("kill-after")) : 1;
    std::this_thread::sleep_for(SecondsToDuration(kill_after));
    std::cerr << "killing myself (SIGKILL), " << e.reminders.load() << " reminders sent\n";
    ::kill(::getpid(), SIGKILL);
  }
  // Sample the memory while they wait, until the due time.
  double rss_max_waiting = rss_waiting;
  while (e.clock.Now() < e.due) {
    rss_max_waiting = std::max(rss_max_waiting, Rss().rss);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  while (e.finished.load() < n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double fire_s =
      DurationToSeconds(TimePoint(Duration(e.last_reminder_ns.load())) - e.due);
  const double all_done_s = DurationToSeconds(e.clock.Now() - e.due);
  const Memory end = Rss();
  e.executor->Stop();
  std::cout << Json{{"instances", n},
                    {"start_seconds", start_s},
                    {"starts_per_s", static_cast<double>(n) / start_s},
                    {"parked_before_due", parked_before_due},
                    {"rss_mib_waiting", rss_waiting},
                    {"rss_anon_mib_waiting", waiting.anon},
                    {"rss_file_mib_waiting", waiting.file},
                    {"rss_mib_max_waiting", rss_max_waiting},
                    {"rss_mib_peak_starting", waiting.hwm},
                    {"rss_mib_peak", end.hwm},
                    {"seconds_due_to_last_reminder", fire_s},
                    {"seconds_due_to_all_finished", all_done_s},
                    {"reminders", e.reminders.load()},
                    {"early", e.early.load()}}
                   .dump()
            << "\n";
  return e.reminders.load() == n && e.early.load() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sagaflow

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: sagaflow_wait_bench run|start --db URL ...\n";
    return 2;
  }
  const std::string cmd = argv[1];
  auto flags = sagaflow::Flags(argc, argv);
  if (cmd == "run") return sagaflow::Run(flags, false);
  if (cmd == "start") return sagaflow::Run(flags, true);
  std::cerr << "error: unknown command '" << cmd << "'\n";
  return 2;
}
