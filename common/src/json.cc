#include "sagaflow/common/json.h"

namespace sagaflow {

namespace {
struct TooDeep {};
}  // namespace

std::string JsonPointerToken(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string JsonErrorMessage(const std::exception& e) {
  std::string what = e.what();
  auto bracket = what.find("] ");
  if (what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) {
    what.erase(0, bracket + 2);
  }
  return what;
}

Result<Json> ParseJson(std::string_view text, std::size_t max_depth) {
  try {
    std::size_t depth = 0;
    Json doc = Json::parse(
        text.begin(), text.end(),
        [&depth, max_depth](int, Json::parse_event_t event, Json&) {
          if (event == Json::parse_event_t::object_start ||
              event == Json::parse_event_t::array_start) {
            if (++depth > max_depth) throw TooDeep{};
          } else if (event == Json::parse_event_t::object_end ||
                     event == Json::parse_event_t::array_end) {
            --depth;
          }
          return true;
        },
        /*allow_exceptions=*/true, /*ignore_comments=*/true);
    return doc;
  } catch (const TooDeep&) {
    return InvalidArgument("the document is nested deeper than " + std::to_string(max_depth) +
                           " levels");
  } catch (const Json::exception& e) {
    return InvalidArgument("invalid JSON: " + JsonErrorMessage(e));
  }
}

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
    case OrderedJson::value_t::string:
      return value.get<std::string>();
    case OrderedJson::value_t::boolean:
      return value.get<bool>();
    case OrderedJson::value_t::number_integer:
      return value.get<std::int64_t>();
    case OrderedJson::value_t::number_unsigned:
      return value.get<std::uint64_t>();
    case OrderedJson::value_t::number_float:
      return value.get<double>();
    case OrderedJson::value_t::binary:
      return Json::binary(value.get_binary());
    case OrderedJson::value_t::null:
    case OrderedJson::value_t::discarded:
      return nullptr;
  }
  return nullptr;
}

namespace {

void ReleaseAt(Json& value, int depth) {
  if (depth >= kReleaseDepth) return;
  if (value.is_object()) {
    auto& members = value.get_ref<Json::object_t&>();
    for (auto& [key, member] : members) ReleaseAt(member, depth + 1);
    members.clear();
  } else if (value.is_array()) {
    auto& elements = value.get_ref<Json::array_t&>();
    for (auto& element : elements) ReleaseAt(element, depth + 1);
    elements.clear();
  }
}

}  // namespace

void ReleaseJson(Json& value) { ReleaseAt(value, 0); }

}  // namespace sagaflow
