#include "sagaflow/statelang/value_template.h"

namespace sagaflow::statelang {
namespace {

// Seata drops null entries of maps in parameters; constants follow the same rule as rendered
// values so that writing a value out or computing it gives the same result.
void DropNullMembers(Json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it->is_null()) {
        it = j.erase(it);
      } else {
        DropNullMembers(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (auto& e : j) DropNullMembers(e);
  }
}

}  // namespace

Result<ValueTemplate> ValueTemplate::Compile(const OrderedJson& value, std::string* bad_pointer) {
  std::string pointer;
  auto t = CompileAt(value, pointer);
  if (t.ok()) return t;
  if (bad_pointer) *bad_pointer = pointer;
  std::string message = std::move(pointer);
  message += ": ";
  message += t.status().message();
  return InvalidArgument(std::move(message));
}

Result<ValueTemplate> ValueTemplate::CompileAt(const OrderedJson& value, std::string& pointer) {
  ValueTemplate t;
  if (value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    if (!s.empty() && s[0] == '$') {
      auto e = Expression::CompileDollar(s);
      if (!e.ok()) {
        std::string message = e.status().message();
        message += " in '";
        message += s;
        message += "'";
        return InvalidArgument(std::move(message));
      }
      t.kind_ = Kind::kExpression;
      t.expression_ = std::move(e).value();
      return t;
    }
  }
  if (value.is_object()) {
    bool constant = true;
    for (const auto& [k, v] : value.items()) {
      auto child = CompileAt(v, pointer);
      if (!child.ok()) {
        pointer.insert(0, "/" + JsonPointerToken(k));
        return child.status();
      }
      constant = constant && child->is_constant();
      t.members_.emplace_back(k, std::move(child).value());
    }
    if (!constant) {
      t.kind_ = Kind::kObject;
      return t;
    }
    t.members_.clear();
  } else if (value.is_array()) {
    bool constant = true;
    std::size_t i = 0;
    for (const auto& v : value) {
      auto child = CompileAt(v, pointer);
      if (!child.ok()) {
        pointer.insert(0, "/" + std::to_string(i));
        return child.status();
      }
      constant = constant && child->is_constant();
      t.elements_.push_back(std::move(child).value());
      ++i;
    }
    if (!constant) {
      t.kind_ = Kind::kArray;
      return t;
    }
    t.elements_.clear();
  }
  t.kind_ = Kind::kConstant;
  t.constant_ = ToRuntimeJson(value);
  DropNullMembers(t.constant_);
  return t;
}

Result<Json> ValueTemplate::Render(const EvalEnv& env) const {
  switch (kind_) {
    case Kind::kConstant:
      return constant_;
    case Kind::kExpression: {
      auto v = expression_.Evaluate(env);
      if (!v.ok()) {
        return InvalidArgument("'" + expression_.source() + "': " + v.status().message());
      }
      return v;
    }
    case Kind::kObject: {
      Json out = Json::object();
      for (const auto& [k, child] : members_) {
        SAGAFLOW_ASSIGN_OR_RETURN(Json v, child.Render(env));
        if (!v.is_null()) out[k] = std::move(v);
      }
      return out;
    }
    case Kind::kArray: {
      Json out = Json::array();
      out.get_ref<Json::array_t&>().reserve(elements_.size());
      for (const auto& child : elements_) {
        SAGAFLOW_ASSIGN_OR_RETURN(Json v, child.Render(env));
        out.push_back(std::move(v));
      }
      return out;
    }
  }
  return Json();
}

}  // namespace sagaflow::statelang
