// A small, strict JSON reader for safetensors headers and model configs. Hostile input is expected
// (headers come from downloaded files), so nesting depth is bounded and every error is reported
// with its byte offset instead of crashing.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pg25::json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Value {
  Type type = Type::Null;
  bool boolean = false;
  double number = 0;
  bool is_integer = false;  // the literal had no fraction or exponent
  int64_t integer = 0;      // exact value when is_integer and it fits
  bool integer_overflow = false;
  std::string string;
  std::vector<Value> array;
  std::vector<std::pair<std::string, Value>> object;  // in file order; duplicates kept for the caller to judge

  const Value* find(std::string_view key) const;
  bool is_null() const { return type == Type::Null; }
  static const char* type_name(Type t);
};

// Parses `text` as one JSON value. Throws std::runtime_error with a message naming the byte offset.
Value parse(std::string_view text, int max_depth = 64);

}  // namespace pg25::json
