// Typed access to a model's config.json. Every missing key, wrong type or out-of-range value is a
// PG25_BAD_CONFIG naming the file and key; values the graph cannot run are PG25_UNSUPPORTED.
#pragma once
#include <string>
#include <vector>

#include "json.h"

namespace pg25 {

class Config {
 public:
  Config(std::string path, std::string_view text);

  const std::string& path() const { return path_; }
  bool has(const std::string& key) const;  // present and not null
  int64_t integer(const std::string& key, int64_t lo, int64_t hi) const;
  int64_t integer_or(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const;
  double number(const std::string& key) const;
  double number_or(const std::string& key, double fallback) const;
  bool boolean_or(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> strings(const std::string& key) const;
  std::vector<int64_t> integers(const std::string& key, int64_t lo, int64_t hi) const;
  std::vector<double> numbers(const std::string& key) const;
  // An int or a list of ints; a single int is repeated `n` times (diffusers' convention).
  std::vector<int64_t> integer_or_list(const std::string& key, size_t n, int64_t lo, int64_t hi) const;

  // Refuses a key whose value is set but differs from what the graph implements.
  void require_string(const std::string& key, const std::string& supported, bool absent_ok = true) const;
  void require_null(const std::string& key) const;
  void require_bool(const std::string& key, bool supported) const;
  void require_number(const std::string& key, double supported) const;

  [[noreturn]] void bad(const std::string& key, const std::string& what) const;
  [[noreturn]] void refuse(const std::string& key, const std::string& what) const;

 private:
  const json::Value& get(const std::string& key) const;
  int64_t as_integer(const json::Value& v, const std::string& key, int64_t lo, int64_t hi) const;
  std::string path_;
  json::Value root_;
};

}  // namespace pg25
