#include "sagaflow/statelang/expression.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

namespace sagaflow::statelang {
namespace detail {

enum class Op {
  kLiteral,   // value
  kRoot,      // #root
  kThis,      // #this
  kContext,   // the implicit active context (root at top level, the element inside ?[...])
  kProperty,  // a.name           (lhs, name, null_safe)
  kIndex,     // a[expr]          (lhs, rhs)
  kKeyIndex,  // a[name]          (lhs, name): an unquoted name inside brackets is a map key
  kSize,      // a.size()
  kIsEmpty,   // a.isEmpty()
  kSelect,    // a.?[pred]        (lhs, rhs)
  kNot,
  kNeg,
  kAnd,
  kOr,
  kEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
};

struct Node {
  Node(Op o, int col) : op(o), column(col) {}
  Op op;
  int column;  // 1-based, in the text given to Compile*
  int lhs = -1;
  int rhs = -1;
  bool null_safe = false;
  std::string name;
  Json value;
};

struct Program {
  std::string source;
  Expression::Form form = Expression::Form::kSpel;
  std::vector<Node> nodes;
  int root = -1;
  std::string exception_type;  // kExceptionMatch
  std::string seq_entity;      // kSequence
  std::string seq_rule;

  // The shapes most flows are made of, answered without the general evaluator: a path of map
  // keys from the root (`[order].id`, `#root`, `$.[request]`), and a path compared with a
  // literal (`#root == true`, `[result] != 'OK'`). Whatever the fast path cannot answer exactly
  // (a key missing in the middle of the path, a value that is not a map) goes to the general
  // evaluator, which gives the same result or the same error as it always does.
  enum class Shape { kGeneral, kPath, kPathEq, kPathNe };
  Shape shape = Shape::kGeneral;
  std::vector<std::string> path;  // map keys from the root, outermost first
  int literal = -1;               // kPathEq, kPathNe: the literal's node
};

}  // namespace detail

namespace {

using detail::Node;
using detail::Op;
using detail::Program;

// ---------------------------------------------------------------------------------------------
// Lexer

enum class Tok {
  kEnd,
  kNumber,
  kString,
  kIdent,
  kHashVar,  // #root, #this, #other
  kLBracket,
  kRBracket,
  kLParen,
  kRParen,
  kDot,
  kSafeDot,     // ?.
  kSelectOpen,  // .?[
  kComma,
  kPlus,
  kMinus,
  kStar,
  kSlash,
  kPercent,
  kEqEq,
  kNe,
  kLt,
  kLe,
  kGt,
  kGe,
  kAndAnd,
  kOrOr,
  kBang,
};

struct Token {
  Tok kind = Tok::kEnd;
  int column = 1;
  std::string text;  // identifier / string content / variable name
  Json number;
};

bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

Status ErrorAt(int column, std::string message) {
  return InvalidArgument("column " + std::to_string(column) + ": " + message);
}

class Lexer {
 public:
  Lexer(std::string_view text, int column_offset) : text_(text), offset_(column_offset) {}

  Result<std::vector<Token>> Run() {
    std::vector<Token> out;
    while (true) {
      while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                     text_[pos_] == '\n' || text_[pos_] == '\r')) {
        ++pos_;
      }
      Token t;
      t.column = Column();
      if (pos_ >= text_.size()) {
        t.kind = Tok::kEnd;
        out.push_back(std::move(t));
        return out;
      }
      char c = text_[pos_];
      char n = pos_ + 1 < text_.size() ? text_[pos_ + 1] : '\0';
      char n2 = pos_ + 2 < text_.size() ? text_[pos_ + 2] : '\0';
      if (c >= '0' && c <= '9') {
        SAGAFLOW_RETURN_IF_ERROR(LexNumber(t));
      } else if (c == '\'' || c == '"') {
        SAGAFLOW_RETURN_IF_ERROR(LexString(t, c));
      } else if (c == '#') {
        ++pos_;
        std::size_t start = pos_;
        while (pos_ < text_.size() && IsIdentChar(text_[pos_])) ++pos_;
        if (start == pos_) return ErrorAt(t.column, "expected a variable name after '#'");
        t.kind = Tok::kHashVar;
        t.text = std::string(text_.substr(start, pos_ - start));
      } else if (IsIdentStart(c)) {
        std::size_t start = pos_;
        while (pos_ < text_.size() && IsIdentChar(text_[pos_])) ++pos_;
        t.kind = Tok::kIdent;
        t.text = std::string(text_.substr(start, pos_ - start));
      } else if (c == '.' && n == '?' && n2 == '[') {
        t.kind = Tok::kSelectOpen;
        pos_ += 3;
      } else if (c == '?' && n == '.') {
        t.kind = Tok::kSafeDot;
        pos_ += 2;
      } else if (c == '=' && n == '=') {
        t.kind = Tok::kEqEq;
        pos_ += 2;
      } else if (c == '!' && n == '=') {
        t.kind = Tok::kNe;
        pos_ += 2;
      } else if (c == '<' && n == '=') {
        t.kind = Tok::kLe;
        pos_ += 2;
      } else if (c == '>' && n == '=') {
        t.kind = Tok::kGe;
        pos_ += 2;
      } else if (c == '&' && n == '&') {
        t.kind = Tok::kAndAnd;
        pos_ += 2;
      } else if (c == '|' && n == '|') {
        t.kind = Tok::kOrOr;
        pos_ += 2;
      } else {
        switch (c) {
          case '[':
            t.kind = Tok::kLBracket;
            break;
          case ']':
            t.kind = Tok::kRBracket;
            break;
          case '(':
            t.kind = Tok::kLParen;
            break;
          case ')':
            t.kind = Tok::kRParen;
            break;
          case '.':
            t.kind = Tok::kDot;
            break;
          case ',':
            t.kind = Tok::kComma;
            break;
          case '+':
            t.kind = Tok::kPlus;
            break;
          case '-':
            t.kind = Tok::kMinus;
            break;
          case '*':
            t.kind = Tok::kStar;
            break;
          case '/':
            t.kind = Tok::kSlash;
            break;
          case '%':
            t.kind = Tok::kPercent;
            break;
          case '<':
            t.kind = Tok::kLt;
            break;
          case '>':
            t.kind = Tok::kGt;
            break;
          case '!':
            t.kind = Tok::kBang;
            break;
          case '=':
            return ErrorAt(t.column, "'=' is assignment, which expressions cannot do; use '=='");
          default:
            return ErrorAt(t.column, std::string("unexpected character '") + c + "'");
        }
        ++pos_;
      }
      out.push_back(std::move(t));
    }
  }

 private:
  int Column() const { return offset_ + static_cast<int>(pos_) + 1; }

  Status LexNumber(Token& t) {
    std::size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    bool is_float = false;
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && text_[pos_ + 1] >= '0' &&
        text_[pos_ + 1] <= '9') {
      is_float = true;
      ++pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      std::size_t save = pos_;
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        is_float = true;
        while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      } else {
        pos_ = save;
      }
    }
    std::string digits(text_.substr(start, pos_ - start));
    // Java-style suffixes: 10L, 1.5d, 2f.
    if (pos_ < text_.size() && (text_[pos_] == 'L' || text_[pos_] == 'l')) {
      ++pos_;
    } else if (pos_ < text_.size() && (text_[pos_] == 'd' || text_[pos_] == 'D' ||
                                       text_[pos_] == 'f' || text_[pos_] == 'F')) {
      is_float = true;
      ++pos_;
    }
    if (pos_ < text_.size() && IsIdentChar(text_[pos_])) {
      return ErrorAt(Column(), "unexpected character '" + std::string(1, text_[pos_]) +
                                   "' after the number " + digits);
    }
    t.kind = Tok::kNumber;
    if (is_float) {
      t.number = std::strtod(digits.c_str(), nullptr);
    } else {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(digits.c_str(), &end, 10);
      if (errno == ERANGE) {
        t.number = std::strtod(digits.c_str(), nullptr);
      } else {
        t.number = static_cast<std::int64_t>(v);
      }
    }
    return Status::Ok();
  }

  Status LexString(Token& t, char quote) {
    int column = Column();
    ++pos_;
    std::string s;
    while (true) {
      if (pos_ >= text_.size()) return ErrorAt(column, "unterminated string literal");
      char c = text_[pos_++];
      if (c == quote) {
        // SpEL escapes a quote by doubling it: 'it''s'.
        if (pos_ < text_.size() && text_[pos_] == quote) {
          s.push_back(quote);
          ++pos_;
          continue;
        }
        break;
      }
      s.push_back(c);
    }
    t.kind = Tok::kString;
    t.text = std::move(s);
    return Status::Ok();
  }

  std::string_view text_;
  int offset_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Parser: precedence climbing over the token list, producing nodes in Program::nodes.

class Parser {
 public:
  Parser(std::vector<Token> tokens, Program& program) : toks_(std::move(tokens)), prog_(program) {}

  Result<int> ParseAll() {
    SAGAFLOW_ASSIGN_OR_RETURN(int root, ParseOr());
    if (Peek().kind != Tok::kEnd) return Unexpected(Peek(), "an operator or the end");
    return root;
  }

 private:
  const Token& Peek() const { return toks_[pos_]; }
  const Token& Take() { return toks_[pos_++]; }

  bool PeekWord(std::string_view w) const {
    return Peek().kind == Tok::kIdent && EqualsIgnoreCase(Peek().text, w);
  }

  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case Tok::kEnd:
        return "the end of the expression";
      case Tok::kNumber:
        return "number " + t.number.dump();
      case Tok::kString:
        return "string '" + t.text + "'";
      case Tok::kIdent:
        return "'" + t.text + "'";
      case Tok::kHashVar:
        return "'#" + t.text + "'";
      case Tok::kLBracket:
        return "'['";
      case Tok::kRBracket:
        return "']'";
      case Tok::kLParen:
        return "'('";
      case Tok::kRParen:
        return "')'";
      case Tok::kDot:
        return "'.'";
      case Tok::kSafeDot:
        return "'?.'";
      case Tok::kSelectOpen:
        return "'.?['";
      case Tok::kComma:
        return "','";
      case Tok::kPlus:
        return "'+'";
      case Tok::kMinus:
        return "'-'";
      case Tok::kStar:
        return "'*'";
      case Tok::kSlash:
        return "'/'";
      case Tok::kPercent:
        return "'%'";
      case Tok::kEqEq:
        return "'=='";
      case Tok::kNe:
        return "'!='";
      case Tok::kLt:
        return "'<'";
      case Tok::kLe:
        return "'<='";
      case Tok::kGt:
        return "'>'";
      case Tok::kGe:
        return "'>='";
      case Tok::kAndAnd:
        return "'&&'";
      case Tok::kOrOr:
        return "'||'";
      case Tok::kBang:
        return "'!'";
    }
    return "a token";
  }

  Status Unexpected(const Token& t, std::string_view wanted) {
    return ErrorAt(t.column, "expected " + std::string(wanted) + ", found " + Describe(t));
  }

  int Add(Node n) {
    prog_.nodes.push_back(std::move(n));
    return static_cast<int>(prog_.nodes.size()) - 1;
  }
  int AddBinary(Op op, int column, int lhs, int rhs) {
    Node n{op, column};
    n.lhs = lhs;
    n.rhs = rhs;
    return Add(std::move(n));
  }

  Status Enter(int column) {
    if (++depth_ > Expression::kMaxDepth) {
      return ErrorAt(column, "expression nested deeper than " +
                                 std::to_string(Expression::kMaxDepth) + " levels");
    }
    return Status::Ok();
  }

  Result<int> ParseOr() {
    SAGAFLOW_ASSIGN_OR_RETURN(int lhs, ParseAnd());
    while (Peek().kind == Tok::kOrOr || PeekWord("or")) {
      int col = Take().column;
      SAGAFLOW_ASSIGN_OR_RETURN(int rhs, ParseAnd());
      lhs = AddBinary(Op::kOr, col, lhs, rhs);
    }
    return lhs;
  }

  Result<int> ParseAnd() {
    SAGAFLOW_ASSIGN_OR_RETURN(int lhs, ParseRelational());
    while (Peek().kind == Tok::kAndAnd || PeekWord("and")) {
      int col = Take().column;
      SAGAFLOW_ASSIGN_OR_RETURN(int rhs, ParseRelational());
      lhs = AddBinary(Op::kAnd, col, lhs, rhs);
    }
    return lhs;
  }

  std::optional<Op> PeekRelational() const {
    switch (Peek().kind) {
      case Tok::kEqEq:
        return Op::kEq;
      case Tok::kNe:
        return Op::kNe;
      case Tok::kLt:
        return Op::kLt;
      case Tok::kLe:
        return Op::kLe;
      case Tok::kGt:
        return Op::kGt;
      case Tok::kGe:
        return Op::kGe;
      default:
        break;
    }
    if (PeekWord("eq")) return Op::kEq;
    if (PeekWord("ne")) return Op::kNe;
    if (PeekWord("lt")) return Op::kLt;
    if (PeekWord("le")) return Op::kLe;
    if (PeekWord("gt")) return Op::kGt;
    if (PeekWord("ge")) return Op::kGe;
    return std::nullopt;
  }

  // SpEL allows one relational operator per level: `a == b == c` is a syntax error.
  Result<int> ParseRelational() {
    SAGAFLOW_ASSIGN_OR_RETURN(int lhs, ParseAdditive());
    if (auto op = PeekRelational()) {
      int col = Take().column;
      SAGAFLOW_ASSIGN_OR_RETURN(int rhs, ParseAdditive());
      lhs = AddBinary(*op, col, lhs, rhs);
      if (PeekRelational()) {
        return ErrorAt(Peek().column, "comparisons cannot be chained; combine them with && or ||");
      }
    }
    return lhs;
  }

  Result<int> ParseAdditive() {
    SAGAFLOW_ASSIGN_OR_RETURN(int lhs, ParseMultiplicative());
    while (Peek().kind == Tok::kPlus || Peek().kind == Tok::kMinus) {
      const Token& t = Take();
      Op op = t.kind == Tok::kPlus ? Op::kAdd : Op::kSub;
      SAGAFLOW_ASSIGN_OR_RETURN(int rhs, ParseMultiplicative());
      lhs = AddBinary(op, t.column, lhs, rhs);
    }
    return lhs;
  }

  Result<int> ParseMultiplicative() {
    SAGAFLOW_ASSIGN_OR_RETURN(int lhs, ParseUnary());
    while (true) {
      Op op;
      if (Peek().kind == Tok::kStar) {
        op = Op::kMul;
      } else if (Peek().kind == Tok::kSlash || PeekWord("div")) {
        op = Op::kDiv;
      } else if (Peek().kind == Tok::kPercent || PeekWord("mod")) {
        op = Op::kMod;
      } else {
        break;
      }
      int col = Take().column;
      SAGAFLOW_ASSIGN_OR_RETURN(int rhs, ParseUnary());
      lhs = AddBinary(op, col, lhs, rhs);
    }
    return lhs;
  }

  Result<int> ParseUnary() {
    if (Peek().kind == Tok::kBang || PeekWord("not") || Peek().kind == Tok::kMinus) {
      const Token& t = Take();
      SAGAFLOW_RETURN_IF_ERROR(Enter(t.column));
      Op op = t.kind == Tok::kMinus ? Op::kNeg : Op::kNot;
      SAGAFLOW_ASSIGN_OR_RETURN(int operand, ParseUnary());
      --depth_;
      // Fold a negative literal so that `-5` is a constant.
      if (op == Op::kNeg && prog_.nodes[operand].op == Op::kLiteral &&
          prog_.nodes[operand].value.is_number()) {
        Json& v = prog_.nodes[operand].value;
        if (v.is_number_float()) {
          v = -v.get<double>();
        } else {
          v = -v.get<std::int64_t>();
        }
        prog_.nodes[operand].column = t.column;
        return operand;
      }
      Node n{op, t.column};
      n.lhs = operand;
      return Add(std::move(n));
    }
    return ParsePostfix();
  }

  Result<int> ParsePostfix() {
    SAGAFLOW_ASSIGN_OR_RETURN(int target, ParsePrimary());
    while (true) {
      const Token& t = Peek();
      if (t.kind == Tok::kDot || t.kind == Tok::kSafeDot) {
        bool null_safe = t.kind == Tok::kSafeDot;
        Take();
        const Token& name = Peek();
        if (name.kind != Tok::kIdent) return Unexpected(name, "a property name after '.'");
        Take();
        if (Peek().kind == Tok::kLParen) {
          Take();
          if (Peek().kind != Tok::kRParen) {
            return ErrorAt(Peek().column, "method " + name.text + "() takes no arguments");
          }
          Take();
          Op op;
          if (name.text == "size") {
            op = Op::kSize;
          } else if (name.text == "isEmpty") {
            op = Op::kIsEmpty;
          } else {
            return ErrorAt(name.column, "unsupported method '" + name.text +
                                            "()'; expressions support size() and isEmpty()");
          }
          Node n{op, name.column};
          n.lhs = target;
          n.null_safe = null_safe;
          target = Add(std::move(n));
        } else {
          Node n{Op::kProperty, name.column};
          n.lhs = target;
          n.name = name.text;
          n.null_safe = null_safe;
          target = Add(std::move(n));
        }
      } else if (t.kind == Tok::kLBracket) {
        SAGAFLOW_ASSIGN_OR_RETURN(target, ParseIndexer(target));
      } else if (t.kind == Tok::kSelectOpen) {
        int col = Take().column;
        SAGAFLOW_RETURN_IF_ERROR(Enter(col));
        SAGAFLOW_ASSIGN_OR_RETURN(int pred, ParseOr());
        --depth_;
        if (Peek().kind != Tok::kRBracket) return Unexpected(Peek(), "']' to close the selection");
        Take();
        target = AddBinary(Op::kSelect, col, target, pred);
      } else {
        return target;
      }
    }
  }

  // `[name]` is a map key (SpEL treats an unquoted name inside brackets as the key itself);
  // `['name']`, `[0]` and `[expr]` index by the value of the expression.
  Result<int> ParseIndexer(int target) {
    const Token& open = Take();
    SAGAFLOW_RETURN_IF_ERROR(Enter(open.column));
    int result;
    if (Peek().kind == Tok::kIdent && toks_[pos_ + 1].kind == Tok::kRBracket &&
        !IsKeywordLiteral(Peek().text)) {
      Node n{Op::kKeyIndex, open.column};
      n.lhs = target;
      n.name = Take().text;
      result = Add(std::move(n));
    } else {
      if (Peek().kind == Tok::kRBracket) return Unexpected(Peek(), "a key or an index inside '[]'");
      SAGAFLOW_ASSIGN_OR_RETURN(int index, ParseOr());
      result = AddBinary(Op::kIndex, open.column, target, index);
    }
    if (Peek().kind != Tok::kRBracket) return Unexpected(Peek(), "']'");
    Take();
    --depth_;
    return result;
  }

  static bool IsKeywordLiteral(std::string_view w) {
    return EqualsIgnoreCase(w, "true") || EqualsIgnoreCase(w, "false") ||
           EqualsIgnoreCase(w, "null");
  }

  static bool IsOperatorWord(std::string_view w) {
    for (std::string_view k :
         {"and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "div", "mod"}) {
      if (EqualsIgnoreCase(w, k)) return true;
    }
    return false;
  }

  Result<int> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case Tok::kNumber: {
        Take();
        Node n{Op::kLiteral, t.column};
        n.value = t.number;
        return Add(std::move(n));
      }
      case Tok::kString: {
        Take();
        Node n{Op::kLiteral, t.column};
        n.value = t.text;
        return Add(std::move(n));
      }
      case Tok::kHashVar: {
        Take();
        if (t.text == "root") return Add(Node{Op::kRoot, t.column});
        if (t.text == "this") return Add(Node{Op::kThis, t.column});
        return ErrorAt(t.column,
                       "unknown variable '#" + t.text + "'; expressions know #root and #this");
      }
      case Tok::kIdent: {
        if (IsKeywordLiteral(t.text)) {
          Take();
          Node n{Op::kLiteral, t.column};
          if (EqualsIgnoreCase(t.text, "true")) {
            n.value = true;
          } else if (EqualsIgnoreCase(t.text, "false")) {
            n.value = false;
          } else {
            n.value = nullptr;
          }
          return Add(std::move(n));
        }
        if (IsOperatorWord(t.text)) return Unexpected(t, "an operand");
        if (toks_[pos_ + 1].kind == Tok::kLParen) {
          return ErrorAt(t.column, "function calls such as '" + t.text +
                                       "(...)' are not supported; methods are size() and "
                                       "isEmpty() on a value");
        }
        Take();
        // A bare name is a property of the active context.
        int ctx = Add(Node{Op::kContext, t.column});
        Node n{Op::kProperty, t.column};
        n.lhs = ctx;
        n.name = t.text;
        return Add(std::move(n));
      }
      case Tok::kLBracket: {
        int ctx = Add(Node{Op::kContext, t.column});
        return ParseIndexer(ctx);
      }
      case Tok::kLParen: {
        Take();
        SAGAFLOW_RETURN_IF_ERROR(Enter(t.column));
        SAGAFLOW_ASSIGN_OR_RETURN(int inner, ParseOr());
        --depth_;
        if (Peek().kind != Tok::kRParen) return Unexpected(Peek(), "')'");
        Take();
        return inner;
      }
      default:
        return Unexpected(t, "an operand");
    }
  }

  std::vector<Token> toks_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  Program& prog_;
};

// Whether node `idx` is a path of map keys from the root (at the top level, `#root`, `#this`
// and the implicit context are all the root); if so, its keys, outermost first.
bool AsPath(const Program& p, int idx, std::vector<std::string>& keys) {
  keys.clear();
  while (idx >= 0) {
    const Node& n = p.nodes[static_cast<std::size_t>(idx)];
    switch (n.op) {
      case Op::kProperty:
      case Op::kKeyIndex:
        keys.push_back(n.name);
        idx = n.lhs;
        continue;
      case Op::kRoot:
      case Op::kThis:
      case Op::kContext:
        std::reverse(keys.begin(), keys.end());
        return true;
      default:
        return false;
    }
  }
  return false;
}

void ClassifyShape(Program& p) {
  const Node& top = p.nodes[static_cast<std::size_t>(p.root)];
  if (AsPath(p, p.root, p.path)) {
    p.shape = Program::Shape::kPath;
    return;
  }
  if (top.op != Op::kEq && top.op != Op::kNe) return;
  const Program::Shape shape = top.op == Op::kEq ? Program::Shape::kPathEq : Program::Shape::kPathNe;
  const Node& l = p.nodes[static_cast<std::size_t>(top.lhs)];
  const Node& r = p.nodes[static_cast<std::size_t>(top.rhs)];
  if (r.op == Op::kLiteral && AsPath(p, top.lhs, p.path)) {
    p.shape = shape;
    p.literal = top.rhs;
  } else if (l.op == Op::kLiteral && AsPath(p, top.rhs, p.path)) {
    p.shape = shape;
    p.literal = top.lhs;
  }
}

Result<std::shared_ptr<Program>> CompileSpel(std::string_view text, int column_offset,
                                             std::string full_source) {
  if (text.size() > Expression::kMaxLength) {
    return InvalidArgument("expression is " + std::to_string(text.size()) +
                           " characters long; the limit is " +
                           std::to_string(Expression::kMaxLength));
  }
  auto program = std::make_shared<Program>();
  program->source = std::move(full_source);
  Lexer lexer(text, column_offset);
  SAGAFLOW_ASSIGN_OR_RETURN(std::vector<Token> tokens, lexer.Run());
  if (tokens.size() == 1) return ErrorAt(tokens[0].column, "the expression is empty");
  Parser parser(std::move(tokens), *program);
  SAGAFLOW_ASSIGN_OR_RETURN(program->root, parser.ParseAll());
  ClassifyShape(*program);
  return program;
}

// ---------------------------------------------------------------------------------------------
// Evaluator. Intermediate values borrow from the environment where they can, so that
// `[order].items[0].price` copies one number, not the order.

const Json& NullJson() {
  static const Json kNull;
  return kNull;
}

class Value {
 public:
  Value() : ref_(&NullJson()) {}
  static Value Ref(const Json& j) {
    Value v;
    v.ref_ = &j;
    return v;
  }
  static Value Own(Json j) {
    Value v;
    v.ref_ = nullptr;
    v.own_ = std::move(j);
    return v;
  }
  Value(Value&& o) noexcept : ref_(o.ref_), own_(std::move(o.own_)) {}
  Value& operator=(Value&& o) noexcept {
    ref_ = o.ref_;
    own_ = std::move(o.own_);
    return *this;
  }
  const Json& get() const { return ref_ ? *ref_ : own_; }
  bool owned() const { return ref_ == nullptr; }
  Json Take() && { return ref_ ? *ref_ : std::move(own_); }

 private:
  const Json* ref_;
  Json own_;
};

std::string TypeName(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "a map";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "an integer";
    case Json::value_t::number_float:
      return "a number";
    default:
      return "a value";
  }
}

bool IsInteger(const Json& j) { return j.is_number_integer(); }  // signed or unsigned

// An integer as int64 when it fits (JSON parsing gives non-negative integers the unsigned type;
// they are the same integers as literals).
std::optional<std::int64_t> AsInt64(const Json& j) {
  if (j.is_number_unsigned()) {
    std::uint64_t u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<std::int64_t>();
  return std::nullopt;
}

double AsDouble(const Json& j) { return j.get<double>(); }

// Numeric equality across integer and float; deep equality for the rest.
bool ValuesEqual(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number()) {
    if (IsInteger(a) && IsInteger(b)) {
      if (a.is_number_unsigned() || b.is_number_unsigned()) {
        if (a.is_number_unsigned() && b.is_number_unsigned()) {
          return a.get<std::uint64_t>() == b.get<std::uint64_t>();
        }
        const Json& s = a.is_number_unsigned() ? b : a;
        const Json& u = a.is_number_unsigned() ? a : b;
        return s.get<std::int64_t>() >= 0 &&
               static_cast<std::uint64_t>(s.get<std::int64_t>()) == u.get<std::uint64_t>();
      }
      return a.get<std::int64_t>() == b.get<std::int64_t>();
    }
    return AsDouble(a) == AsDouble(b);
  }
  if (a.type() != b.type()) return false;
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (!ValuesEqual(a[i], b[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      if (other == b.end() || !ValuesEqual(it.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

class Evaluator {
 public:
  Evaluator(const Program& p, const EvalEnv& env) : p_(p) {
    root_ = env.root ? env.root : &NullJson();
  }

  Value Eval(int idx, const Json& context) {
    const Node& n = p_.nodes[idx];
    switch (n.op) {
      case Op::kLiteral:
        return Value::Ref(n.value);
      case Op::kRoot:
        return Value::Ref(*root_);
      case Op::kThis:
      case Op::kContext:
        return Value::Ref(context);
      case Op::kProperty: {
        Value target = Eval(n.lhs, context);
        if (error_) return Value();
        return Member(n, std::move(target), n.name);
      }
      case Op::kKeyIndex: {
        Value target = Eval(n.lhs, context);
        if (error_) return Value();
        return Member(n, std::move(target), n.name);
      }
      case Op::kIndex: {
        Value target = Eval(n.lhs, context);
        if (error_) return Value();
        // The index expression sees the same active context as its surroundings.
        Value index = Eval(n.rhs, context);
        if (error_) return Value();
        return Index(n, std::move(target), index.get());
      }
      case Op::kSize:
      case Op::kIsEmpty: {
        Value target = Eval(n.lhs, context);
        if (error_) return Value();
        const Json& t = target.get();
        std::size_t size;
        if (t.is_array() || t.is_object()) {
          size = t.size();
        } else if (t.is_string()) {
          size = t.get_ref<const std::string&>().size();
        } else if (t.is_null() && n.null_safe) {
          return Value();
        } else {
          return Fail(n, std::string("cannot call ") +
                             (n.op == Op::kSize ? "size()" : "isEmpty()") + " on " + TypeName(t));
        }
        if (n.op == Op::kSize) return Value::Own(static_cast<std::int64_t>(size));
        return Value::Own(size == 0);
      }
      case Op::kSelect: {
        Value target = Eval(n.lhs, context);
        if (error_) return Value();
        const Json& t = target.get();
        if (!t.is_array()) return Fail(n, "selection .?[...] needs a list, found " + TypeName(t));
        Json out = Json::array();
        for (const Json& element : t) {
          Value keep = Eval(n.rhs, element);
          if (error_) return Value();
          const Json& k = keep.get();
          if (k.is_boolean()) {
            if (k.get<bool>()) out.push_back(element);
          } else if (!k.is_null()) {
            return Fail(p_.nodes[n.rhs],
                        "a selection condition must be true or false, found " + TypeName(k));
          }
        }
        return Value::Own(std::move(out));
      }
      case Op::kNot: {
        bool b = Condition(n.lhs, context);
        if (error_) return Value();
        return Value::Own(!b);
      }
      case Op::kNeg: {
        Value v = Eval(n.lhs, context);
        if (error_) return Value();
        const Json& j = v.get();
        if (j.is_number_float()) return Value::Own(-j.get<double>());
        if (j.is_number_integer()) {
          std::optional<std::int64_t> x = AsInt64(j);
          if (!x || *x == std::numeric_limits<std::int64_t>::min()) {
            return Value::Own(-AsDouble(j));
          }
          return Value::Own(-*x);
        }
        return Fail(n, "cannot negate " + TypeName(j));
      }
      case Op::kAnd: {
        bool l = Condition(n.lhs, context);
        if (error_) return Value();
        if (!l) return Value::Own(false);
        bool r = Condition(n.rhs, context);
        if (error_) return Value();
        return Value::Own(r);
      }
      case Op::kOr: {
        bool l = Condition(n.lhs, context);
        if (error_) return Value();
        if (l) return Value::Own(true);
        bool r = Condition(n.rhs, context);
        if (error_) return Value();
        return Value::Own(r);
      }
      case Op::kEq:
      case Op::kNe: {
        Value l = Eval(n.lhs, context);
        if (error_) return Value();
        Value r = Eval(n.rhs, context);
        if (error_) return Value();
        bool eq = ValuesEqual(l.get(), r.get());
        return Value::Own(n.op == Op::kEq ? eq : !eq);
      }
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe: {
        Value l = Eval(n.lhs, context);
        if (error_) return Value();
        Value r = Eval(n.rhs, context);
        if (error_) return Value();
        int c = Compare(n, l.get(), r.get());
        if (error_) return Value();
        bool out = n.op == Op::kLt   ? c < 0
                   : n.op == Op::kLe ? c <= 0
                   : n.op == Op::kGt ? c > 0
                                     : c >= 0;
        return Value::Own(out);
      }
      case Op::kAdd:
      case Op::kSub:
      case Op::kMul:
      case Op::kDiv:
      case Op::kMod: {
        Value l = Eval(n.lhs, context);
        if (error_) return Value();
        Value r = Eval(n.rhs, context);
        if (error_) return Value();
        return Arithmetic(n, l.get(), r.get());
      }
    }
    return Fail(n, "unknown node");
  }

  // false (with error() set) when the value is neither a boolean nor null.
  bool Condition(int idx, const Json& context) {
    Value v = Eval(idx, context);
    if (error_) return false;
    const Json& j = v.get();
    if (j.is_boolean()) return j.get<bool>();
    if (j.is_null()) return false;
    Fail(p_.nodes[idx], "expected true or false, found " + TypeName(j));
    return false;
  }

  // The first evaluation error, if any; once set, evaluation unwinds returning null.
  const std::optional<Status>& error() const { return error_; }

  const Json& root() const { return *root_; }

 private:
  Value Fail(const Node& n, std::string message) {
    if (!error_) error_ = ErrorAt(n.column, std::move(message));
    return Value();
  }

  // A missing key on a map is null (as SpEL's map access is); a property of null is an error
  // unless reached with `?.`.
  Value Member(const Node& n, Value target, const std::string& name) {
    const Json& t = target.get();
    if (t.is_object()) {
      auto it = t.find(name);
      if (it == t.end()) return Value();
      return Borrow(std::move(target), *it);
    }
    if (t.is_null()) {
      if (n.null_safe) return Value();
      return Fail(n, "cannot read '" + name + "' of null");
    }
    return Fail(n, "cannot read '" + name + "' of " + TypeName(t));
  }

  Value Index(const Node& n, Value target, const Json& index) {
    const Json& t = target.get();
    if (t.is_array()) {
      if (!index.is_number_integer()) {
        return Fail(n, "a list index must be an integer, found " + TypeName(index));
      }
      std::int64_t i = index.get<std::int64_t>();
      if (i < 0 || static_cast<std::uint64_t>(i) >= t.size()) {
        return Fail(n, "index " + std::to_string(i) + " is outside the list of " +
                           std::to_string(t.size()) + " elements");
      }
      return Borrow(std::move(target), t[static_cast<std::size_t>(i)]);
    }
    if (t.is_object()) {
      std::string key;
      if (index.is_string()) {
        key = index.get<std::string>();
      } else if (index.is_number() || index.is_boolean()) {
        key = index.dump();
      } else {
        return Fail(n, "a map key must be a string or a number, found " + TypeName(index));
      }
      auto it = t.find(key);
      if (it == t.end()) return Value();
      return Borrow(std::move(target), *it);
    }
    if (t.is_string() && index.is_number_integer()) {
      const std::string& s = t.get_ref<const std::string&>();
      std::int64_t i = index.get<std::int64_t>();
      if (i < 0 || static_cast<std::uint64_t>(i) >= s.size()) {
        return Fail(n, "index " + std::to_string(i) + " is outside the string of " +
                           std::to_string(s.size()) + " characters");
      }
      return Value::Own(std::string(1, s[static_cast<std::size_t>(i)]));
    }
    if (t.is_null()) return Fail(n, "cannot index null");
    return Fail(n, "cannot index " + TypeName(t));
  }

  // A child of a borrowed value is borrowed too; a child of an owned temporary is copied out
  // before the temporary goes away.
  static Value Borrow(Value parent, const Json& child) {
    if (parent.owned()) return Value::Own(child);
    return Value::Ref(child);
  }

  // Orders numbers numerically and strings lexicographically; null sorts before everything (as
  // SpEL's standard comparator does).
  int Compare(const Node& n, const Json& a, const Json& b) {
    if (a.is_null() || b.is_null()) {
      if (a.is_null() && b.is_null()) return 0;
      return a.is_null() ? -1 : 1;
    }
    if (a.is_number() && b.is_number()) {
      std::optional<std::int64_t> ia = AsInt64(a), ib = AsInt64(b);
      if (ia && ib) return *ia < *ib ? -1 : (*ia > *ib ? 1 : 0);
      if (a.is_number_integer() && b.is_number_integer()) {
        // At least one is an unsigned beyond int64: exact without going through double.
        if (a.is_number_unsigned() && b.is_number_unsigned()) {
          std::uint64_t x = a.get<std::uint64_t>(), y = b.get<std::uint64_t>();
          return x < y ? -1 : (x > y ? 1 : 0);
        }
        return ia ? -1 : 1;  // the one that does not fit int64 is the larger
      }
      double x = AsDouble(a), y = AsDouble(b);
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    if (a.is_string() && b.is_string()) {
      int c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    if (a.is_boolean() && b.is_boolean()) {
      return static_cast<int>(a.get<bool>()) - static_cast<int>(b.get<bool>());
    }
    Fail(n, "cannot compare " + TypeName(a) + " with " + TypeName(b));
    return 0;
  }

  static std::string ToText(const Json& j) {
    if (j.is_string()) return j.get<std::string>();
    return j.dump();
  }

  Value Arithmetic(const Node& n, const Json& a, const Json& b) {
    if (n.op == Op::kAdd && (a.is_string() || b.is_string())) {
      return Value::Own(ToText(a) + ToText(b));
    }
    if (!a.is_number() || !b.is_number()) {
      static constexpr const char* kNames[] = {"+", "-", "*", "/", "%"};
      const char* sym = kNames[static_cast<int>(n.op) - static_cast<int>(Op::kAdd)];
      return Fail(n, std::string("operator '") + sym + "' needs numbers, found " + TypeName(a) +
                         " and " + TypeName(b));
    }
    std::optional<std::int64_t> ia = AsInt64(a), ib = AsInt64(b);
    if (ia && ib) {
      std::int64_t x = *ia, y = *ib, r = 0;
      bool overflow = false;
      switch (n.op) {
        case Op::kAdd:
          overflow = __builtin_add_overflow(x, y, &r);
          break;
        case Op::kSub:
          overflow = __builtin_sub_overflow(x, y, &r);
          break;
        case Op::kMul:
          overflow = __builtin_mul_overflow(x, y, &r);
          break;
        case Op::kDiv:
        case Op::kMod:
          if (y == 0) return Fail(n, "division by zero");
          if (x == std::numeric_limits<std::int64_t>::min() && y == -1) {
            overflow = true;
          } else {
            r = n.op == Op::kDiv ? x / y : x % y;
          }
          break;
        default:
          break;
      }
      if (!overflow) return Value::Own(r);
    }
    double x = AsDouble(a), y = AsDouble(b), r = 0;
    switch (n.op) {
      case Op::kAdd:
        r = x + y;
        break;
      case Op::kSub:
        r = x - y;
        break;
      case Op::kMul:
        r = x * y;
        break;
      case Op::kDiv:
        if (y == 0) return Fail(n, "division by zero");
        r = x / y;
        break;
      case Op::kMod:
        if (y == 0) return Fail(n, "division by zero");
        r = std::fmod(x, y);
        break;
      default:
        break;
    }
    if (!std::isfinite(r)) return Fail(n, "the result is not a finite number");
    return Value::Own(r);
  }

  const Program& p_;
  const Json* root_;
  std::optional<Status> error_;
};

}  // namespace
}  // namespace sagaflow::statelang

namespace sagaflow::statelang {

Expression::Expression() = default;
Expression::~Expression() = default;
Expression::Expression(const Expression&) = default;
Expression& Expression::operator=(const Expression&) = default;
Expression::Expression(Expression&&) noexcept = default;
Expression& Expression::operator=(Expression&&) noexcept = default;

Result<Expression> Expression::Compile(std::string_view source) {
  SAGAFLOW_ASSIGN_OR_RETURN(std::shared_ptr<detail::Program> program,
                            CompileSpel(source, 0, std::string(source)));
  Expression e;
  e.program_ = std::move(program);
  return e;
}

namespace {

bool IsTypeNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '$';
}

}  // namespace

Result<Expression> Expression::CompileDollar(std::string_view text) {
  if (text.empty() || text[0] != '$') return ErrorAt(1, "expected '$' to start the expression");
  if (text.size() > kMaxLength) {
    return InvalidArgument("expression is " + std::to_string(text.size()) +
                           " characters long; the limit is " + std::to_string(kMaxLength));
  }
  Expression e;
  if (text.size() >= 2 && text[1] == '.') {
    SAGAFLOW_ASSIGN_OR_RETURN(e.program_, CompileSpel(text.substr(2), 2, std::string(text)));
    return e;
  }
  constexpr std::string_view kException = "$Exception{";
  constexpr std::string_view kSequence = "$Sequence.";
  if (text.substr(0, kException.size()) == kException) {
    if (text.back() != '}') {
      return ErrorAt(static_cast<int>(text.size()), "expected '}' to close $Exception{...}");
    }
    std::string_view type = text.substr(kException.size(), text.size() - kException.size() - 1);
    auto b = type.find_first_not_of(' ');
    auto l = type.find_last_not_of(' ');
    type = b == std::string_view::npos ? std::string_view() : type.substr(b, l - b + 1);
    if (type.empty()) {
      return ErrorAt(static_cast<int>(kException.size()) + 1,
                     "$Exception{} needs an error type name");
    }
    for (std::size_t i = 0; i < type.size(); ++i) {
      if (!IsTypeNameChar(type[i])) {
        return ErrorAt(static_cast<int>(kException.size() + b + i) + 1,
                       std::string("unexpected character '") + type[i] + "' in an error type name");
      }
    }
    auto program = std::make_shared<detail::Program>();
    program->source = std::string(text);
    program->form = Form::kExceptionMatch;
    program->exception_type = std::string(type);
    e.program_ = std::move(program);
    return e;
  }
  if (text.substr(0, kSequence.size()) == kSequence) {
    std::string_view rest = text.substr(kSequence.size());
    auto bar = rest.find('|');
    std::string_view entity = rest.substr(0, bar);
    std::string_view rule =
        bar == std::string_view::npos ? std::string_view("SIMPLE") : rest.substr(bar + 1);
    if (entity.empty()) {
      return ErrorAt(static_cast<int>(kSequence.size()) + 1,
                     "$Sequence. needs an entity name, as in $Sequence.BUSINESS_KEY|SIMPLE");
    }
    for (std::size_t i = 0; i < rest.size(); ++i) {
      if (rest[i] != '|' && !IsTypeNameChar(rest[i]) && rest[i] != '-') {
        return ErrorAt(static_cast<int>(kSequence.size() + i) + 1,
                       std::string("unexpected character '") + rest[i] + "' in $Sequence");
      }
    }
    auto program = std::make_shared<detail::Program>();
    program->source = std::string(text);
    program->form = Form::kSequence;
    program->seq_entity = std::string(entity);
    program->seq_rule = std::string(rule);
    e.program_ = std::move(program);
    return e;
  }
  std::size_t end = 1;
  while (end < text.size() && text[end] != '.' && text[end] != '{') ++end;
  return ErrorAt(1, "unknown expression form '" + std::string(text.substr(0, end)) +
                        "'; a '$' value is $.expression, $Sequence.ENTITY|RULE or "
                        "$Exception{Type}");
}

Result<Expression> Expression::CompileStatusKey(std::string_view text) {
  if (!text.empty() && text[0] == '$') return CompileDollar(text);
  return Compile(text);
}

namespace {

// Follows `p.path` from `root` through maps. Returns the value reached (null for a missing last
// key), or nullptr when the general evaluator must decide (a missing key or a value other than
// a map before the end of the path).
const Json* WalkPath(const Program& p, const Json* root) {
  static const Json kNull;
  const Json* at = root ? root : &kNull;
  const std::size_t n = p.path.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (!at->is_object()) return nullptr;
    auto it = at->find(p.path[i]);
    if (it == at->end()) return i + 1 == n ? &kNull : nullptr;
    at = &*it;
  }
  return at;
}

// Evaluate and EvaluateCondition; `use_shapes` false skips the fast paths (for tests).
Result<Json> EvaluateProgram(const Program* program, const EvalEnv& env, bool use_shapes) {
  using Form = Expression::Form;
  if (!program) return FailedPrecondition("evaluating an empty expression");
  const Program& p = *program;
  switch (p.form) {
    case Form::kExceptionMatch:
      return Json(env.host != nullptr && env.host->CurrentErrorMatches(p.exception_type));
    case Form::kSequence:
      if (env.host == nullptr) return FailedPrecondition("no sequence source for " + p.source);
      return Json(env.host->NextSequence(p.seq_entity, p.seq_rule));
    case Form::kSpel:
      break;
  }
  if (use_shapes && p.shape == Program::Shape::kPath) {
    if (const Json* v = WalkPath(p, env.root)) return *v;
  }
  Evaluator evaluator(p, env);
  Value v = evaluator.Eval(p.root, evaluator.root());
  if (evaluator.error()) return *evaluator.error();
  return std::move(v).Take();
}

Result<bool> EvaluateProgramCondition(const Program* program, const EvalEnv& env, bool use_shapes) {
  using Form = Expression::Form;
  if (!program) return FailedPrecondition("evaluating an empty expression");
  const Program& p = *program;
  if (p.form == Form::kExceptionMatch) {
    return env.host != nullptr && env.host->CurrentErrorMatches(p.exception_type);
  }
  if (p.form == Form::kSequence) return InvalidArgument("a $Sequence value is not a condition");
  switch (use_shapes ? p.shape : Program::Shape::kGeneral) {
    case Program::Shape::kPathEq:
    case Program::Shape::kPathNe:
      if (const Json* v = WalkPath(p, env.root)) {
        bool eq = ValuesEqual(*v, p.nodes[static_cast<std::size_t>(p.literal)].value);
        return p.shape == Program::Shape::kPathEq ? eq : !eq;
      }
      break;
    case Program::Shape::kPath:
      if (const Json* v = WalkPath(p, env.root)) {
        if (v->is_boolean()) return v->get<bool>();
        if (v->is_null()) return false;
      }
      break;  // not a condition's value: the general evaluator says why
    case Program::Shape::kGeneral:
      break;
  }
  Evaluator evaluator(p, env);
  bool holds = evaluator.Condition(p.root, evaluator.root());
  if (evaluator.error()) return *evaluator.error();
  return holds;
}

}  // namespace

Result<Json> Expression::Evaluate(const EvalEnv& env) const {
  return EvaluateProgram(program_.get(), env, /*use_shapes=*/true);
}

Result<bool> Expression::EvaluateCondition(const EvalEnv& env) const {
  return EvaluateProgramCondition(program_.get(), env, /*use_shapes=*/true);
}

Result<Json> Expression::EvaluateGeneral(const EvalEnv& env) const {
  return EvaluateProgram(program_.get(), env, /*use_shapes=*/false);
}

Result<bool> Expression::EvaluateConditionGeneral(const EvalEnv& env) const {
  return EvaluateProgramCondition(program_.get(), env, /*use_shapes=*/false);
}

bool Expression::has_fast_path() const {
  return program_ && program_->form == Form::kSpel && program_->shape != Program::Shape::kGeneral;
}

Expression::Form Expression::form() const { return program_ ? program_->form : Form::kSpel; }

const std::string& Expression::source() const {
  static const std::string kEmpty;
  return program_ ? program_->source : kEmpty;
}

const std::string& Expression::exception_type() const {
  static const std::string kEmpty;
  return program_ ? program_->exception_type : kEmpty;
}

}  // namespace sagaflow::statelang
