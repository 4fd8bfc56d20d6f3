#include "config.h"

#include <cmath>

#include "error.h"

namespace pg25 {

Config::Config(std::string path, std::string_view text) : path_(std::move(path)) {
  try {
    root_ = json::parse(text);
  } catch (const std::exception& e) {
    throw bad_config(path_, e.what());
  }
  if (root_.type != json::Type::Object) throw bad_config(path_, "the top level is not a JSON object");
}

void Config::bad(const std::string& key, const std::string& what) const { throw bad_config(path_, "\"" + key + "\" " + what); }
void Config::refuse(const std::string& key, const std::string& what) const { throw unsupported(path_, "\"" + key + "\" " + what); }

bool Config::has(const std::string& key) const {
  const json::Value* v = root_.find(key);
  return v && !v->is_null();
}

const json::Value& Config::get(const std::string& key) const {
  const json::Value* v = root_.find(key);
  if (!v || v->is_null()) bad(key, "is missing");
  return *v;
}

int64_t Config::as_integer(const json::Value& v, const std::string& key, int64_t lo, int64_t hi) const {
  if (v.type != json::Type::Number) bad(key, std::string("must be an integer, not ") + json::Value::type_name(v.type));
  int64_t x;
  if (v.is_integer && !v.integer_overflow) x = v.integer;
  else if (std::isfinite(v.number) && v.number == std::floor(v.number) && std::fabs(v.number) < 9e15) x = int64_t(v.number);
  else bad(key, "must be an integer");
  if (x < lo || x > hi) bad(key, "is " + std::to_string(x) + ", outside the range " + std::to_string(lo) + ".." + std::to_string(hi));
  return x;
}

int64_t Config::integer(const std::string& key, int64_t lo, int64_t hi) const { return as_integer(get(key), key, lo, hi); }

int64_t Config::integer_or(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const {
  return has(key) ? integer(key, lo, hi) : fallback;
}

double Config::number(const std::string& key) const {
  const json::Value& v = get(key);
  if (v.type != json::Type::Number || !std::isfinite(v.number)) bad(key, "must be a finite number");
  return v.number;
}

double Config::number_or(const std::string& key, double fallback) const { return has(key) ? number(key) : fallback; }

bool Config::boolean_or(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const json::Value& v = get(key);
  if (v.type != json::Type::Bool) bad(key, "must be true or false");
  return v.boolean;
}

std::string Config::string(const std::string& key) const {
  const json::Value& v = get(key);
  if (v.type != json::Type::String) bad(key, std::string("must be a string, not ") + json::Value::type_name(v.type));
  return v.string;
}

std::string Config::string_or(const std::string& key, const std::string& fallback) const { return has(key) ? string(key) : fallback; }

std::vector<std::string> Config::strings(const std::string& key) const {
  const json::Value& v = get(key);
  if (v.type != json::Type::Array) bad(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v.array) {
    if (e.type != json::Type::String) bad(key, "must be a list of strings");
    out.push_back(e.string);
  }
  if (out.empty()) bad(key, "must not be empty");
  if (out.size() > 16) bad(key, "has " + std::to_string(out.size()) + " entries, more than 16");
  return out;
}

std::vector<int64_t> Config::integers(const std::string& key, int64_t lo, int64_t hi) const {
  const json::Value& v = get(key);
  if (v.type != json::Type::Array) bad(key, "must be a list of integers");
  if (v.array.empty()) bad(key, "must not be empty");
  if (v.array.size() > 16) bad(key, "has " + std::to_string(v.array.size()) + " entries, more than 16");
  std::vector<int64_t> out;
  for (const auto& e : v.array) out.push_back(as_integer(e, key, lo, hi));
  return out;
}

std::vector<double> Config::numbers(const std::string& key) const {
  const json::Value& v = get(key);
  if (v.type != json::Type::Array) bad(key, "must be a list of numbers");
  std::vector<double> out;
  for (const auto& e : v.array) {
    if (e.type != json::Type::Number || !std::isfinite(e.number)) bad(key, "must be a list of finite numbers");
    out.push_back(e.number);
  }
  return out;
}

std::vector<int64_t> Config::integer_or_list(const std::string& key, size_t n, int64_t lo, int64_t hi) const {
  const json::Value& v = get(key);
  if (v.type == json::Type::Number) return std::vector<int64_t>(n, as_integer(v, key, lo, hi));
  std::vector<int64_t> out = integers(key, lo, hi);
  if (out.size() != n) bad(key, "has " + std::to_string(out.size()) + " entries; expected " + std::to_string(n));
  return out;
}

void Config::require_string(const std::string& key, const std::string& supported, bool absent_ok) const {
  if (!has(key)) {
    if (absent_ok) return;
    bad(key, "is missing");
  }
  std::string s = string(key);
  if (s != supported) refuse(key, "is \"" + s + "\"; only \"" + supported + "\" is supported");
}

void Config::require_null(const std::string& key) const {
  if (has(key)) refuse(key, "is set; this graph supports only null");
}

void Config::require_bool(const std::string& key, bool supported) const {
  if (!has(key)) return;
  if (boolean_or(key, supported) != supported)
    refuse(key, std::string("is ") + (supported ? "false" : "true") + "; only " + (supported ? "true" : "false") + " is supported");
}

void Config::require_number(const std::string& key, double supported) const {
  if (!has(key)) return;
  double x = number(key);
  if (x != supported) refuse(key, "is " + std::to_string(x) + "; only " + std::to_string(supported) + " is supported");
}

}  // namespace pg25
