#pragma once

// The fixture of the command-line tests: each test runs the built `sagaflow` binary in a
// directory of its own.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "sagaflow/common/json.h"
#include "sagaflow/server/cli.h"

namespace sagaflow::cli {

namespace fs = std::filesystem;

struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

inline std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

inline std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

inline const std::string kSourceDir = SAGAFLOW_SOURCE_DIR;
inline const std::string kFulfillFlow = kSourceDir + "/flows/order_fulfill.json";
inline const std::string kHappyScenario = kSourceDir + "/flows/scenarios/fulfill_happy.json";
inline const std::string kSendOutFailsScenario =
    kSourceDir + "/flows/scenarios/fulfill_sendout_fails.json";

// The mocks of the fulfilment flow, every one answering true.
inline const char* const kFulfillMocks = R"({
    "fulfillSagaService.createFulfillOrder": {"return": true},
    "wmsSageService.pickGoods": {"return": true},
    "tmsSagaService.sendOut": {"return": true},
    "fulfillSagaService.createFulfillOrderCompensate": {"return": true},
    "wmsSageService.pickGoodsCompensate": {"return": true},
    "tmsSagaService.sendOutCompensate": {"return": true}
  })";

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("sagaflow_cli_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes `text` to a file in the test's directory; returns its path.
  std::string Write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  // Runs `sagaflow ARGS...`, capturing stdout and stderr.
  CliRun Sagaflow(const std::vector<std::string>& args) {
    const fs::path out = dir_ / "stdout.txt";
    const fs::path err = dir_ / "stderr.txt";
    std::string cmd = ShellQuote(SAGAFLOW_BINARY);
    for (const std::string& a : args) cmd += " " + ShellQuote(a);
    cmd += " >" + ShellQuote(out.string()) + " 2>" + ShellQuote(err.string()) + " </dev/null";
    int status = std::system(cmd.c_str());
    CliRun r;
    if (status != -1 && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    return r;
  }

  // Runs `sagaflow simulate --json` and parses its output; fails the test unless it exits 0
  // with exactly one JSON object on stdout.
  Json SimulateJson(const std::vector<std::string>& flows, const std::string& scenario) {
    std::vector<std::string> args = {"simulate"};
    for (const std::string& f : flows) {
      args.push_back("--flow");
      args.push_back(f);
    }
    args.push_back("--scenario");
    args.push_back(scenario);
    args.push_back("--json");
    CliRun r = Sagaflow(args);
    EXPECT_EQ(r.exit_code, kExitOk) << r.err;
    Json out = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_TRUE(out.is_object()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return out.is_object() ? out : Json::object();
  }

  // A scenario for the fulfilment flow with the given mocks and extra top-level keys.
  std::string FulfillScenario(const std::string& name, const std::string& mocks,
                              const std::string& extra = "") {
    return Write(name, R"({"flow": "order_fulfill",
      "input": {"receiveFulfillRequest": {"orderId": "1001", "userId": "u-7"}},
      "mocks": )" + mocks + extra +
                           "}");
  }

  fs::path dir_;
};

}  // namespace sagaflow::cli
