#include <iostream>
#include <sstream>

#include "commands.h"
#include "sagaflow/server/cli.h"

namespace sagaflow::cli {
namespace {

using statelang::kNoState;
using statelang::State;
using statelang::StateMachine;
using statelang::StateType;

struct Edge {
  int from;
  int to;
  std::string label;
  bool compensation;
};

std::vector<Edge> Edges(const StateMachine& m) {
  std::vector<Edge> out;
  for (std::size_t i = 0; i < m.states().size(); ++i) {
    const State& s = m.states()[i];
    int from = static_cast<int>(i);
    switch (s.type) {
      case StateType::kServiceTask: {
        const auto& t = s.service_task();
        if (s.next != kNoState) out.push_back({from, s.next, "", false});
        for (const auto& c : t.catches) {
          std::string label = "catch";
          for (const auto& e : c.exceptions) label += " " + e;
          out.push_back({from, c.next, label, false});
        }
        if (t.compensate_state != kNoState) {
          out.push_back({from, t.compensate_state, "compensate", true});
        }
        break;
      }
      case StateType::kChoice:
        for (const auto& c : s.choice().choices) {
          out.push_back({from, c.next, c.condition.source(), false});
        }
        if (s.choice().default_next != kNoState) {
          out.push_back({from, s.choice().default_next, "default", false});
        }
        break;
      case StateType::kCompensationTrigger:
      case StateType::kWait:
        if (s.next != kNoState) out.push_back({from, s.next, "", false});
        break;
      case StateType::kSucceed:
      case StateType::kFail:
        break;
    }
  }
  return out;
}

// Mermaid labels are quoted; a quote inside is written as an entity.
std::string MermaidText(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"') {
      out += "#quot;";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string DotText(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// What a Wait waits for: "30s", "until 2026-12-24T18:00:00Z", "$.delay s", "until $.due".
std::string WaitLabel(const statelang::WaitState& w) {
  using Kind = statelang::WaitState::Kind;
  switch (w.kind) {
    case Kind::kSeconds: {
      std::ostringstream o;
      o << w.seconds << "s";
      return o.str();
    }
    case Kind::kSecondsPath:
      return w.path.source() + " s";
    case Kind::kTimestamp:
      return "until " + w.timestamp;
    case Kind::kTimestampPath:
      return "until " + w.path.source();
  }
  return "";
}

// `line_break` separates the state name from the task it calls.
std::string NodeLabel(const State& s, const std::string& line_break) {
  switch (s.type) {
    case StateType::kServiceTask:
      return s.name + line_break + s.service_task().task.str();
    case StateType::kFail:
      return s.fail().error_code.empty() ? s.name : s.name + " (" + s.fail().error_code + ")";
    case StateType::kWait:
      return s.name + line_break + "wait " + WaitLabel(s.wait());
    default:
      return s.name;
  }
}

std::string Mermaid(const StateMachine& m) {
  std::ostringstream o;
  o << "flowchart TD\n";
  o << "  start((start)) --> s" << m.start() << "\n";
  for (std::size_t i = 0; i < m.states().size(); ++i) {
    const State& s = m.states()[i];
    std::string label = MermaidText(NodeLabel(s, "<br/>"));
    o << "  s" << i;
    switch (s.type) {
      case StateType::kChoice:
        o << "{\"" << label << "\"}";
        break;
      case StateType::kSucceed:
      case StateType::kFail:
        o << "([\"" << label << "\"])";
        break;
      case StateType::kCompensationTrigger:
        o << "[/\"" << label << "\"/]";
        break;
      case StateType::kWait:
        o << "[[\"" << label << "\"]]";
        break;
      case StateType::kServiceTask:
        o << "[\"" << label << "\"]";
        break;
    }
    o << "\n";
  }
  for (const Edge& e : Edges(m)) {
    o << "  s" << e.from;
    if (e.compensation) {
      o << " -. \"" << MermaidText(e.label) << "\" .-> ";
    } else if (e.label.empty()) {
      o << " --> ";
    } else {
      o << " -- \"" << MermaidText(e.label) << "\" --> ";
    }
    o << "s" << e.to << "\n";
  }
  return o.str();
}

std::string Dot(const StateMachine& m) {
  std::ostringstream o;
  o << "digraph \"" << DotText(m.name())
    << "\" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n";
  o << "  start [shape=point];\n  start -> s" << m.start() << ";\n";
  for (std::size_t i = 0; i < m.states().size(); ++i) {
    const State& s = m.states()[i];
    const char* shape = "box";
    switch (s.type) {
      case StateType::kChoice:
        shape = "diamond";
        break;
      case StateType::kSucceed:
        shape = "doublecircle";
        break;
      case StateType::kFail:
        shape = "octagon";
        break;
      case StateType::kCompensationTrigger:
        shape = "parallelogram";
        break;
      case StateType::kWait:
        shape = "hexagon";
        break;
      case StateType::kServiceTask:
        shape = "box";
        break;
    }
    o << "  s" << i << " [shape=" << shape << ", label=\"" << DotText(NodeLabel(s, "\n"))
      << "\"];\n";
  }
  for (const Edge& e : Edges(m)) {
    o << "  s" << e.from << " -> s" << e.to;
    std::vector<std::string> attrs;
    if (!e.label.empty()) attrs.push_back("label=\"" + DotText(e.label) + "\"");
    if (e.compensation) attrs.push_back("style=dashed");
    if (!attrs.empty()) {
      o << " [";
      for (std::size_t k = 0; k < attrs.size(); ++k) o << (k ? ", " : "") << attrs[k];
      o << "]";
    }
    o << ";\n";
  }
  o << "}\n";
  return o.str();
}

}  // namespace

int RunGraph(const GraphArgs& args) {
  auto flows = LoadFlows({args.flow});
  if (!flows) return kExitInvalid;
  const StateMachine& m = *flows->front();
  if (args.format == "mermaid") {
    std::cout << Mermaid(m);
  } else if (args.format == "dot") {
    std::cout << Dot(m);
  } else {
    std::cerr << "error: --format must be mermaid or dot\n";
    return kExitInvalid;
  }
  return kExitOk;
}

}  // namespace sagaflow::cli
