// metagrad/io/detail/json.hpp — a small, strict JSON reader and writer for file headers (safetensors):
// objects, arrays, strings with every escape, integers, true/false/null. No floating-point numbers (no
// header needs them), nesting limited to 64 levels, duplicate object keys rejected, and every error an
// io_error carrying the byte offset in the file. Internal; include <metagrad/io.hpp> instead.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

METAGRAD_NAMESPACE_BEGIN

namespace detail::json {

enum class Kind { null, boolean, integer, string, array, object };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::null:
      return "null";
    case Kind::boolean:
      return "a boolean";
    case Kind::integer:
      return "an integer";
    case Kind::string:
      return "a string";
    case Kind::array:
      return "an array";
    case Kind::object:
      return "an object";
  }
  return "?";
}

/// One JSON value. Objects keep their members in file order; `offset` is where the value starts in the
/// file, for messages about values that parse but mean something invalid.
struct Value {
  Kind kind = Kind::null;
  bool boolean = false;
  std::int64_t integer = 0;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;
  std::size_t offset = 0;

  /// The member named `key`, or nullptr. @pre kind == Kind::object.
  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : object)
      if (k == key) return &v;
    return nullptr;
  }
};

class Parser {
 public:
  /// `base` is the file offset of text[0]; `where` starts every message ("SafeTensors: 'model.st'").
  Parser(std::string_view text, std::size_t base, std::string where)
      : s_(text), base_(base), where_(std::move(where)) {}

  /// The document: one value, then only whitespace. @throws io_error with the byte offset otherwise.
  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected " + describe_here() + " after the JSON value");
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const { fail_at(i_, what); }
  [[noreturn]] void fail_at(std::size_t pos, const std::string& what) const {
    throw io_error(where_ + ": malformed JSON header at byte " + std::to_string(base_ + pos) + ": " + what);
  }

 private:
  static constexpr int max_depth = 64;

  std::string describe_here() const {
    if (i_ >= s_.size()) return "end of header";
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + s_[i_] + "'";
    return "byte " + std::to_string(c);
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  void expect(char c) {
    if (i_ >= s_.size() || s_[i_] != c) fail(std::string("expected '") + c + "', found " + describe_here());
    ++i_;
  }

  Value parse_value(int depth) {
    if (depth > max_depth) fail("nesting deeper than " + std::to_string(max_depth) + " levels");
    Value v;
    v.offset = base_ + i_;
    if (i_ >= s_.size()) fail("expected a value, found end of header");
    const char c = s_[i_];
    if (c == '{') {
      v.kind = Kind::object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        const std::size_t key_pos = i_;
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key, found " + describe_here());
        std::string key = parse_string();
        if (v.find(key)) fail_at(key_pos, "duplicate key \"" + key + "\"");
        skip_ws();
        expect(':');
        skip_ws();
        Value member = parse_value(depth + 1);
        v.object.emplace_back(std::move(key), std::move(member));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          return v;
        }
        fail("expected ',' or '}' in an object, found " + describe_here());
      }
    }
    if (c == '[') {
      v.kind = Kind::array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') {
        ++i_;
        return v;
      }
      for (;;) {
        skip_ws();
        v.array.push_back(parse_value(depth + 1));
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') {
          ++i_;
          continue;
        }
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return v;
        }
        fail("expected ',' or ']' in an array, found " + describe_here());
      }
    }
    if (c == '"') {
      v.kind = Kind::string;
      v.string = parse_string();
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v.kind = Kind::integer;
      v.integer = parse_integer();
      return v;
    }
    if (s_.substr(i_, 4) == "true") {
      i_ += 4;
      v.kind = Kind::boolean;
      v.boolean = true;
      return v;
    }
    if (s_.substr(i_, 5) == "false") {
      i_ += 5;
      v.kind = Kind::boolean;
      return v;
    }
    if (s_.substr(i_, 4) == "null") {
      i_ += 4;
      return v;
    }
    fail("expected a value, found " + describe_here());
  }

  std::int64_t parse_integer() {
    const std::size_t start = i_;
    const bool neg = s_[i_] == '-';
    if (neg) ++i_;
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') fail("expected a digit after '-'");
    if (s_[i_] == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9')
      fail("leading zeros are not allowed in JSON numbers");
    // Accumulate negatively so INT64_MIN parses without overflow.
    std::int64_t v = 0;
    constexpr std::int64_t lo = std::numeric_limits<std::int64_t>::min();
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      const int d = s_[i_] - '0';
      if (v < (lo + d) / 10) fail_at(start, "integer out of the 64-bit range");
      v = v * 10 - d;
      ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == '.' || s_[i_] == 'e' || s_[i_] == 'E'))
      fail_at(start, "only integers are expected here, found a fractional or exponent number");
    if (!neg) {
      if (v == lo) fail_at(start, "integer out of the 64-bit range");
      v = -v;
    }
    return v;
  }

  unsigned hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s_[i_++];
      u <<= 4;
      if (h >= '0' && h <= '9')
        u |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f')
        u |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        u |= static_cast<unsigned>(h - 'A' + 10);
      else
        fail_at(i_ - 1, "invalid hex digit in a \\u escape");
    }
    return u;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string parse_string() {
    const std::size_t start = i_;
    expect('"');
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail_at(start, "unterminated string");
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("unescaped control character in a string");
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (++i_ >= s_.size()) fail_at(start, "unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const std::size_t esc = i_ - 2;
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            // A UTF-16 high surrogate must be followed by an escaped low surrogate.
            if (s_.substr(i_, 2) != "\\u") fail_at(esc, "unpaired UTF-16 surrogate in a \\u escape");
            i_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail_at(esc, "unpaired UTF-16 surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            fail_at(esc, "unpaired UTF-16 surrogate in a \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          fail_at(i_ - 2, std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
  std::size_t base_;
  std::string where_;
};

/// `s` as a JSON string literal: quotes, backslashes and control characters escaped, other bytes (UTF-8)
/// copied as they are — the output of serde_json and Python's json with ensure_ascii=False.
inline std::string quote(std::string_view s) {
  static constexpr const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += hex[u >> 4];
          out += hex[u & 15];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace detail::json

METAGRAD_NAMESPACE_END
