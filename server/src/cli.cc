#include "sagaflow/server/cli.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.h"

namespace sagaflow::cli {

namespace {

constexpr const char* kFooter = R"(Exit codes:
  0  done (for simulate and run: the flow ran, whatever its outcome)
  1  the command could not finish (engine, store or I/O error)
  2  invalid input: arguments, flow definition, scenario, a service with no mock,
     an unknown instance
  3  refused: another engine process holds the instance's lease, the operation does
     not apply to the instance, or a business key is used with a different input

Stores (--db): sqlite:PATH (the default: sqlite:sagaflow.db, or $SAGAFLOW_DB),
postgresql://user:password@host:port/database, or memory (bench only).

Run 'sagaflow COMMAND --help' for a command's options.)";

void AddStoreOptions(CLI::App* cmd, StoreArgs& store) {
  cmd->add_option("--db", store.url,
                  "Store URL: sqlite:PATH or postgresql://... (default $SAGAFLOW_DB, else "
                  "sqlite:sagaflow.db)");
  cmd->add_option("--durability", store.durability,
                  "SQLite: full (survives power loss, the default) or normal (survives a crash "
                  "of the process)")
      ->check(CLI::IsMember({"full", "normal"}));
}

}  // namespace

int run(int argc, char** argv, TaskRegistry& registry) {
  // Logs go to stderr: stdout carries the commands' results (JSON for scripts).
  if (!spdlog::get("sagaflow")) spdlog::set_default_logger(spdlog::stderr_color_mt("sagaflow"));
  CLI::App app{"sagaflow: a durable saga engine for Seata statelang flows", "sagaflow"};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.set_version_flag("--version", "sagaflow 0.1.0");

  std::vector<std::string> validate_files;
  auto* validate = app.add_subcommand(
      "validate", "Check flow definitions; print every issue as FILE: /json/pointer: message");
  validate->add_option("files", validate_files, "Flow definition files")->required();

  SimulateArgs sim;
  auto* simulate = app.add_subcommand(
      "simulate", "Run a flow with mocked services and a virtual clock, as a scenario describes");
  simulate->add_option("--flow", sim.flows, "Flow definition file (repeatable)")->required();
  simulate->add_option("--scenario", sim.scenario, "Scenario file (input, mocks, operations)")
      ->required();
  simulate->add_flag("--json", sim.json, "Print one JSON object");

  GraphArgs graph_args;
  auto* graph = app.add_subcommand("graph", "Draw a flow (compensation edges dashed)");
  graph->add_option("--flow", graph_args.flow, "Flow definition file")->required();
  graph->add_option("--format", graph_args.format, "mermaid or dot")
      ->check(CLI::IsMember({"mermaid", "dot"}));

  BenchArgs bench_args;
  auto* bench = app.add_subcommand(
      "bench",
      "Run many instances of a scenario's flow (in memory, or durably with --store) and report "
      "the throughput");
  bench->add_option("--flow", bench_args.flows, "Flow definition file (repeatable)")->required();
  bench->add_option("--scenario", bench_args.scenario, "Scenario file (input and mocks)")
      ->required();
  bench->add_option("--instances", bench_args.instances, "Number of instances")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000000}));
  bench->add_option("--threads", bench_args.threads, "Executor threads (default: one per core)")
      ->check(CLI::Range(1, 1024));
  bench
      ->add_option("--window", bench_args.window,
                   "Instances in flight (concurrent clients, each starting a new instance when one "
                   "finishes)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000000}));
  bench->add_flag("--json", bench_args.json, "Print one JSON object");
  bench->add_option("--store", bench_args.store.url,
                    "memory (the default), sqlite:PATH or postgresql://...: run durably");
  bench->add_option("--durability", bench_args.store.durability, "SQLite: full or normal")
      ->check(CLI::IsMember({"full", "normal"}));
  bench->add_option("--retain", bench_args.store.retain,
                    "memory: finished instances to keep, the most recent ('all', or a count; "
                    "default 0: nothing reads them once the benchmark ends)");

  RunArgs run_args;
  auto* run_cmd = app.add_subcommand("run", "Start one instance of a flow, durably, and print it");
  run_cmd->add_option("--flow", run_args.flows, "Flow definition file (repeatable)")->required();
  run_cmd->add_option("--name", run_args.flow_name, "Which flow to start (default: the first)");
  run_cmd->add_option("--input", run_args.input,
                      "The instance's input, a JSON object (default: the --mocks scenario's "
                      "input, else {})");
  run_cmd->add_option("--business-key", run_args.business_key,
                      "Unique per flow: starting again with the same input returns the same "
                      "instance");
  run_cmd->add_option("--mocks", run_args.mocks,
                      "A simulate scenario whose mocks serve as the flow's tasks");
  run_cmd->add_option("--timeout", run_args.timeout_s, "Seconds to wait for the end")
      ->check(CLI::PositiveNumber);
  run_cmd->add_flag("--json", run_args.json, "Print the instance as JSON");
  AddStoreOptions(run_cmd, run_args.store);

  auto* instances = app.add_subcommand("instances", "Inspect stored instances");
  instances->require_subcommand(1);
  ListArgs list_args;
  auto* list = instances->add_subcommand("list", "List instances, newest first");
  list->add_option("--status", list_args.status, "Only this status: RU, SU, FA, UN or SK");
  list->add_option("--flow", list_args.flow, "Only this flow");
  list->add_option("--limit", list_args.limit, "At most this many")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1000000}));
  list->add_flag("--json", list_args.json, "Print a JSON array");
  AddStoreOptions(list, list_args.store);
  ShowArgs show_args;
  auto* show = instances->add_subcommand("show", "Show one instance with its state executions");
  show->add_option("id", show_args.id, "Instance id")->required();
  show->add_flag("--json", show_args.json, "Print JSON");
  AddStoreOptions(show, show_args.store);

  OperateArgs op_args;
  auto add_operation = [&](const char* name, const char* help) {
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("id", op_args.id, "Instance id");
    cmd->add_option("--mocks", op_args.mocks,
                    "A simulate scenario whose mocks serve as the flow's tasks");
    cmd->add_option("--input", op_args.patch,
                    "A JSON object merged into the instance's context first");
    cmd->add_option("--timeout", op_args.timeout_s, "Seconds to wait for the end")
        ->check(CLI::PositiveNumber);
    cmd->add_flag("--json", op_args.json, "Print JSON");
    AddStoreOptions(cmd, op_args.store);
    return cmd;
  };
  auto* replay = add_operation(
      "replay", "Forward a failed instance: run its failed state again and go on from there");
  replay->add_flag("--plan", op_args.plan,
                   "Print what would be kept, re-run and compensated; change nothing");
  replay->add_flag("--all-failed", op_args.all_failed,
                   "Replay every failed (FA or UN) instance that was not compensated");
  replay->add_option("--flow", op_args.flow, "With --all-failed: only this flow");
  auto* compensate = add_operation(
      "compensate", "Compensate a finished instance: undo its executed states, newest first");
  auto* skip =
      add_operation("skip", "Skip the failed state of an instance and go on from its Next");

  RecoverArgs recover_args;
  auto* recover = app.add_subcommand(
      "recover",
      "Resume every instance whose engine stopped (its lease expired), then exit when none is "
      "left running");
  recover->add_option("--mocks", recover_args.mocks,
                      "A simulate scenario whose mocks serve as the flows' tasks");
  recover->add_option("--wait", recover_args.wait_s,
                      "Seconds to wait for leases still held by running engines, and for the "
                      "timers of parked instances that come within it")
      ->check(CLI::NonNegativeNumber);
  recover->add_flag("--json", recover_args.json, "Print a JSON summary");
  AddStoreOptions(recover, recover_args.store);

  StoreArgs db_args;
  auto* db = app.add_subcommand("db", "Database maintenance");
  db->require_subcommand(1);
  auto* migrate = db->add_subcommand("migrate", "Apply the schema migrations the store lacks");
  AddStoreOptions(migrate, db_args);

  auto is_command = [&app](const char* word) {
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->check_name(word)) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::cerr << "error: unknown command '" << argv[1]
              << "'; commands: validate, simulate, graph, bench, run, instances, replay, "
                 "compensate, skip, recover, db (see sagaflow --help)\n";
    return kExitInvalid;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitInvalid;
  }

  try {
    if (validate->parsed()) return RunValidate(validate_files);
    if (simulate->parsed()) return RunSimulate(sim);
    if (graph->parsed()) return RunGraph(graph_args);
    if (bench->parsed()) return RunBench(bench_args, registry);
    if (run_cmd->parsed()) return RunRun(run_args, registry);
    if (list->parsed()) return RunInstancesList(list_args);
    if (show->parsed()) return RunInstancesShow(show_args);
    if (replay->parsed()) return RunOperate(op_args, registry);
    if (compensate->parsed()) {
      op_args.operation = engine::Operation::kCompensate;
      return RunOperate(op_args, registry);
    }
    if (skip->parsed()) {
      op_args.operation = engine::Operation::kSkip;
      return RunOperate(op_args, registry);
    }
    if (recover->parsed()) return RunRecover(recover_args, registry);
    if (migrate->parsed()) return RunDbMigrate(db_args);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitInvalid;
}

}  // namespace sagaflow::cli
