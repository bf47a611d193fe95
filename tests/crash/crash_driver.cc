// The engine process of the crash test (tests/crash/crash_test.py), and its checker.
//
//   crash_driver load   --db URL --flow FILE --first K --count N [--window W] [--log FILE]
//                       [--lease-ms L] [--wait-ms W] [--calls FILE]
//     Starts instances K..K+N-1 of the flow (business keys "order-<i>") on a durable store and
//     runs them until all finished or the process is killed. Each start the store acknowledged
//     is appended to --log (one business key per line) before anything else happens to it, so
//     the checker knows which instances must exist. The tasks take a little time (so that kills
//     land in the middle of steps) and the carrier fails for every fifth order (so that
//     compensations are in flight too). Every 500 ms it also claims and resumes instances whose
//     lease expired (those of earlier, killed rounds), as a long-running engine does. With
//     --wait-ms, each order's input also carries "pickNotBefore", a time up to W ms after its
//     start, for the Wait of tests/crash/order_fulfill_wait.json; async steps run on the
//     in-process dispatcher. With --calls, every task invocation appends "pid key attempt" to
//     FILE.
//
//   crash_driver verify --db URL --log FILE [--expect-at-least N]
//     Checks the store after recovery: every acknowledged start has its instance; every
//     instance is finished, and either succeeded or was compensated; no state execution appears
//     twice (an idempotency key is recorded once per instance), and every execution that is
//     not running has an end time. With --after-wait STATE: no execution of STATE started before
//     its instance's "pickNotBefore" (no Wait fired early). With --calls FILE: no engine process
//     invoked the same attempt of a step twice (a repeat is allowed only after a kill). Prints a JSON summary; exits 1 on the first violation class
//     found (after printing them all).

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "sagaflow/adapters/memory/in_process_dispatcher.h"
#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/common/clock.h"
#include "sagaflow/engine/executor.h"
#include "sagaflow/statelang/loader.h"
#include "sagaflow/tasks/task_registry.h"

namespace {

using namespace sagaflow;

std::map<std::string, std::string> ParseFlags(int argc, char** argv, int from) {
  std::map<std::string, std::string> flags;
  for (int i = from; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc) {
      std::cerr << "error: expected --flag value, found '" << key << "'\n";
      std::exit(2);
    }
    flags[key.substr(2)] = argv[++i];
  }
  return flags;
}

std::string Need(const std::map<std::string, std::string>& flags, const std::string& key) {
  auto it = flags.find(key);
  if (it == flags.end()) {
    std::cerr << "error: --" << key << " is required\n";
    std::exit(2);
  }
  return it->second;
}

long Number(const std::map<std::string, std::string>& flags, const std::string& key, long dflt) {
  auto it = flags.find(key);
  return it == flags.end() ? dflt : std::stol(it->second);
}

int calls_log = -1;  // --calls: one line per task invocation

// Busy for a random 0-400 µs (a service call), without sleeping the worker for long.
void Work(const TaskContext& ctx) {
  const std::string& key = ctx.idempotency_key();
  if (calls_log >= 0) {
    const std::string line = std::to_string(::getpid()) + " " + key + " " +
                             std::to_string(ctx.attempt()) + "\n";
    if (::write(calls_log, line.data(), line.size()) < 0) std::_Exit(1);
  }
  std::size_t h = std::hash<std::string>{}(key);
  std::this_thread::sleep_for(std::chrono::microseconds(h % 400));
}

void RegisterTasks(TaskRegistry& registry) {
  if (!registry.errors().Define("CarrierUnavailable", "Error").ok()) std::abort();
  for (const char* name : {"fulfillSagaService.createFulfillOrder", "wmsSageService.pickGoods",
                           "fulfillSagaService.createFulfillOrderCompensate",
                           "wmsSageService.pickGoodsCompensate",
                           "tmsSagaService.sendOutCompensate"}) {
    registry.add(name, [](TaskContext& ctx, const Json&) -> Json {
      Work(ctx);
      return true;
    });
  }
  registry.add("tmsSagaService.sendOut", [](TaskContext& ctx, const Json& args) -> Json {
    Work(ctx);
    const std::string order = args.at(0).value("orderId", "");
    if (!order.empty() && std::stol(order) % 5 == 0) {
      throw TaskError("CarrierUnavailable", "carrier down for order " + order);
    }
    return true;
  });
}

int Load(const std::map<std::string, std::string>& flags) {
  const std::string url = Need(flags, "db");
  const long first = Number(flags, "first", 0);
  const long count = Number(flags, "count", 1000);
  const long window = Number(flags, "window", 256);
  const long lease_ms = Number(flags, "lease-ms", 2000);
  const long wait_ms = Number(flags, "wait-ms", 0);
  auto loaded = statelang::LoadStateMachineFile(Need(flags, "flow"));
  if (!loaded.ok()) {
    std::cerr << loaded.Describe(Need(flags, "flow"));
    return 2;
  }
  if (auto it = flags.find("calls"); it != flags.end()) {
    calls_log = ::open(it->second.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (calls_log < 0) {
      std::perror("open --calls");
      return 2;
    }
  }
  int log = -1;
  if (auto it = flags.find("log"); it != flags.end()) {
    log = ::open(it->second.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log < 0) {
      std::perror("open --log");
      return 2;
    }
  }

  auto store = adapters::OpenSociStore(url);
  if (!store.ok()) {
    std::cerr << "error: " << store.status().ToString() << "\n";
    return 1;
  }
  TaskRegistry registry;
  RegisterTasks(registry);
  SystemClock clock;
  std::atomic<long> next{first};
  std::atomic<long> done{0};
  std::mutex mu;
  std::condition_variable cv;
  engine::Executor* exec = nullptr;
  std::function<void()> start_next;
  adapters::InProcessDispatcher dispatcher(registry, clock, {.threads = 2});
  engine::ExecutorOptions options;
  options.workers = 2;
  options.dispatcher = &dispatcher;
  options.lease_ttl = std::chrono::milliseconds(lease_ms);
  // Like a long-running engine: also take over what earlier (killed) rounds left behind.
  options.recover_every = std::chrono::milliseconds(500);
  options.on_finished = [&](const engine::InstanceRecord&) {
    done.fetch_add(1);
    start_next();
    std::lock_guard lock(mu);
    cv.notify_all();
  };
  engine::Executor executor(options, registry, **store, clock);
  exec = &executor;
  if (Status s = executor.Start(); !s.ok()) return 1;
  if (Status s = executor.AddFlow(loaded.machine); !s.ok()) {
    std::cerr << "error: " << s.ToString() << "\n";
    return 1;
  }
  // Starts order `i`; like a client, retries a start the store could not take (the business
  // key makes the retry idempotent).
  std::function<void(long)> start_order = [&](long i) {
    Json input = {{"receiveFulfillRequest", {{"orderId", std::to_string(i)}, {"userId", "u"}}}};
    if (wait_ms > 0) {
      const auto after = std::chrono::milliseconds(
          static_cast<long>(std::hash<long>{}(i * 7919) % static_cast<std::size_t>(wait_ms)));
      input["pickNotBefore"] = FormatTime(clock.Now() + after);
    }
    engine::StartOptions start;
    start.business_key = "order-" + std::to_string(i);
    exec->StartInstanceAsync(
        loaded.machine, SharedJson(std::move(input)), start,
        [&, i, key = start.business_key](Result<InstanceId> id) {
          if (!id.ok()) {
            if (id.status().code() != StatusCode::kUnavailable) {
              std::cerr << "start " << key << ": " << id.status().ToString() << "\n";
              std::_Exit(1);
            }
            std::thread([&, i] {
              std::this_thread::sleep_for(std::chrono::milliseconds(100));
              start_order(i);
            }).detach();
            return;
          }
          if (log >= 0) {
            std::string line = key + "\n";
            if (::write(log, line.data(), line.size()) < 0) std::_Exit(1);
          }
        });
  };
  start_next = [&] {
    long i = next.fetch_add(1);
    if (i < first + count) start_order(i);
  };
  for (long i = 0; i < window && i < count; ++i) start_next();
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done.load() >= count; });
  lock.unlock();
  executor.Stop();
  std::cout << "{\"finished\": " << done.load() << "}\n";
  std::_Exit(0);  // start retries may still sleep on detached threads
}

int Verify(const std::map<std::string, std::string>& flags) {
  auto store = adapters::OpenSociStore(Need(flags, "db"));
  if (!store.ok()) {
    std::cerr << "error: " << store.status().ToString() << "\n";
    return 1;
  }
  std::set<std::string> acknowledged;
  {
    std::ifstream in(Need(flags, "log"));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) acknowledged.insert(line);
    }
  }
  engine::InstanceFilter all;
  all.limit = std::numeric_limits<std::size_t>::max();
  auto list = (*store)->ListInstances(all);
  if (!list.ok()) {
    std::cerr << "error: " << list.status().ToString() << "\n";
    return 1;
  }
  const std::string after_wait = flags.count("after-wait") ? flags.at("after-wait") : "";
  long waited = 0;
  std::map<std::string, std::vector<std::string>> problems;
  std::map<std::string, long> outcomes;
  std::set<std::string> keys;
  long executions = 0;
  for (const engine::InstanceSummary& s : *list) {
    keys.insert(s.business_key);
    auto r = (*store)->LoadInstance(s.id);
    if (!r.ok()) {
      problems["unreadable"].push_back(s.id.str() + ": " + r.status().ToString());
      continue;
    }
    if (!r->finished()) {
      problems["not finished"].push_back(s.id.str());
      continue;
    }
    std::string outcome = std::string(engine::RunStatusCode(r->status));
    if (r->compensation_status) {
      outcome += "/" + std::string(engine::RunStatusCode(*r->compensation_status));
    }
    ++outcomes[outcome];
    if (r->status != engine::RunStatus::kSucceeded &&
        r->compensation_status != engine::RunStatus::kSucceeded) {
      problems["neither succeeded nor compensated"].push_back(s.id.str() + " " + outcome);
    }
    std::optional<TimePoint> not_before;
    if (!after_wait.empty() && r->input->contains("pickNotBefore")) {
      std::optional<TimePoint> t = ParseTime(r->input->at("pickNotBefore").get<std::string>());
      if (!t) {
        problems["unreadable pickNotBefore"].push_back(s.id.str());
      } else {
        not_before = *t;
      }
    }
    std::set<std::string> seen;
    for (const engine::StateExecution& e : r->executions) {
      ++executions;
      if (not_before && e.state.str() == after_wait) {
        ++waited;
        if (e.started_at < *not_before) {
          problems["Wait fired early"].push_back(s.id.str() + " " + e.state.str() + " at " +
                                                 FormatTime(e.started_at) + " < " +
                                                 FormatTime(*not_before));
        }
      }
      if (!seen.insert(e.idempotency_key).second) {
        problems["execution recorded twice"].push_back(s.id.str() + " " + e.idempotency_key);
      }
      if (e.status != engine::RunStatus::kRunning && !e.ended_at) {
        problems["finished execution without an end"].push_back(s.id.str() + " " +
                                                                e.state.str());
      }
      if (e.status == engine::RunStatus::kRunning) {
        problems["execution left running"].push_back(s.id.str() + " " + e.state.str());
      }
    }
  }
  long calls = 0;
  if (auto it = flags.find("calls"); it != flags.end()) {
    std::ifstream in(it->second);
    std::set<std::string> seen_calls;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      ++calls;
      if (!seen_calls.insert(line).second) {
        problems["step invoked twice by one engine"].push_back(line);
      }
    }
  }
  for (const std::string& key : acknowledged) {
    if (!keys.count(key)) problems["acknowledged start missing"].push_back(key);
  }
  const long expect_at_least = Number(flags, "expect-at-least", 0);
  if (static_cast<long>(list->size()) < expect_at_least) {
    problems["too few instances"].push_back(std::to_string(list->size()) + " < " +
                                            std::to_string(expect_at_least));
  }
  Json summary = {{"instances", list->size()},
                  {"acknowledged", acknowledged.size()},
                  {"executions", executions},
                  {"after_wait", waited},
                  {"calls", calls},
                  {"outcomes", outcomes}};
  Json bad = Json::object();
  for (const auto& [kind, list_of] : problems) {
    Json sample = Json::array();
    for (std::size_t i = 0; i < list_of.size() && i < 10; ++i) sample.push_back(list_of[i]);
    bad[kind] = {{"count", list_of.size()}, {"examples", sample}};
  }
  summary["problems"] = bad;
  std::cout << summary.dump(2) << "\n";
  return problems.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: crash_driver load|verify --db URL ...\n";
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("crash_driver"));
  const std::string mode = argv[1];
  auto flags = ParseFlags(argc, argv, 2);
  if (mode == "load") return Load(flags);
  if (mode == "verify") return Verify(flags);
  std::cerr << "error: unknown mode '" << mode << "'\n";
  return 2;
}
