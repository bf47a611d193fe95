#include "sagaflow/server/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "commands.h"

namespace sagaflow::cli {

namespace {

constexpr const char* kFooter = R"(Exit codes:
  0  done (for simulate: the scenario was carried out, whatever the flow's outcome)
  1  the command could not finish (engine or I/O error)
  2  invalid input: arguments, flow definition, scenario, or a service with no mock

Run 'sagaflow COMMAND --help' for a command's options.)";

}  // namespace

int run(int argc, char** argv, TaskRegistry& registry) {
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
      "bench", "Run many instances of a scenario's flow in memory and report the throughput");
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

  auto is_command = [&app](const char* word) {
    for (const CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->check_name(word)) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::cerr << "error: unknown command '" << argv[1]
              << "'; commands: validate, simulate, graph, bench (see sagaflow --help)\n";
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
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitFailure;
  }
  return kExitInvalid;
}

}  // namespace sagaflow::cli
