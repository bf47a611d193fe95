#pragma once

#include <nlohmann/json.hpp>

namespace sagaflow {

// Runtime values (instance context, task arguments and results). nlohmann::json, so that task
// authors' to_json/from_json and NLOHMANN_DEFINE_TYPE_* work unchanged.
using Json = nlohmann::json;

// Definitions as written: key order is meaningful (Status maps, States).
using OrderedJson = nlohmann::ordered_json;

// Converts a definition value into a runtime value (key order is dropped).
Json ToRuntimeJson(const OrderedJson& value);

}  // namespace sagaflow
