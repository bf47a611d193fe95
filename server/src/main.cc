#include "sagaflow/server/cli.h"

// The stock binary: no tasks of its own; flows run against mocks (simulate, bench, and --mocks
// on run, replay, compensate, skip and recover).
int main(int argc, char** argv) {
  sagaflow::TaskRegistry registry;
  return sagaflow::cli::run(argc, argv, registry);
}
