#include "sagaflow/common/json.h"

namespace sagaflow {

Json ToRuntimeJson(const OrderedJson& value) {
  switch (value.type()) {
    case OrderedJson::value_t::object: {
      Json out = Json::object();
      for (const auto& [k, v] : value.items()) out[k] = ToRuntimeJson(v);
      return out;
    }
    case OrderedJson::value_t::array: {
      Json out = Json::array();
      for (const auto& v : value) out.push_back(ToRuntimeJson(v));
      return out;
    }
    case OrderedJson::value_t::string: return value.get<std::string>();
    case OrderedJson::value_t::boolean: return value.get<bool>();
    case OrderedJson::value_t::number_integer: return value.get<std::int64_t>();
    case OrderedJson::value_t::number_unsigned: return value.get<std::uint64_t>();
    case OrderedJson::value_t::number_float: return value.get<double>();
    case OrderedJson::value_t::binary: return Json::binary(value.get_binary());
    case OrderedJson::value_t::null:
    case OrderedJson::value_t::discarded: return nullptr;
  }
  return nullptr;
}

const Json& SharedJson::Null() {
  static const Json kNull;
  return kNull;
}

}  // namespace sagaflow
