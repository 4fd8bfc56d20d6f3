// Reading an environment variable so that a value Node set after start (process.env.X = ...) is seen.
// On Windows, Node writes the process's environment block (SetEnvironmentVariableW) and the C runtime's
// getenv reads its own copy, taken at start: read the block instead. POSIX getenv sees setenv's values.
#pragma once
#ifdef _WIN32
#include <mutex>
#include <set>
#include <string>

#include "wide.h"
#endif
#include <cstdlib>

namespace pg25::platform {

// The value (UTF-8), or nullptr when unset. The pointer stays valid for the life of the process.
inline const char* env(const char* name) {
#ifdef _WIN32
  std::wstring wname = widen(name);
  DWORD n = GetEnvironmentVariableW(wname.c_str(), nullptr, 0);
  if (n == 0) return nullptr;
  std::wstring value(size_t(n), L'\0');
  n = GetEnvironmentVariableW(wname.c_str(), value.data(), n);
  value.resize(size_t(n));
  // Each distinct value is kept once, so callers may hold the pointer as they would getenv's.
  static std::mutex mu;
  static std::set<std::string> values;
  std::lock_guard<std::mutex> g(mu);
  return values.insert(narrow(value)).first->c_str();
#else
  return std::getenv(name);
#endif
}

}  // namespace pg25::platform
