#include <iostream>

#include "commands.h"
#include "sagaflow/server/cli.h"

namespace sagaflow::cli {

int RunValidate(const std::vector<std::string>& files) {
  bool all_valid = true;
  for (const std::string& f : files) {
    auto loaded = statelang::LoadStateMachineFile(f);
    std::cerr << loaded.Describe(f);
    if (loaded.ok()) {
      std::cout << f << ": valid (flow '" << loaded.machine->name() << "', "
                << loaded.machine->states().size() << " states)\n";
    } else {
      all_valid = false;
    }
  }
  return all_valid ? kExitOk : kExitInvalid;
}

}  // namespace sagaflow::cli
