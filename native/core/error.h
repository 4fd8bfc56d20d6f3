// Errors raised by native code. Every failure a user can cause becomes a pg25::Error with a stable
// code; the binding turns it into a JS Pg25Error instead of letting it reach the process.
#pragma once
#include <stdexcept>
#include <string>

namespace pg25 {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

inline Error bad_weights(const std::string& file, const std::string& what) {
  return Error("PG25_BAD_WEIGHTS", file + ": " + what);
}
inline Error bad_config(const std::string& file, const std::string& what) {
  return Error("PG25_BAD_CONFIG", file + ": " + what);
}
inline Error unsupported(const std::string& file, const std::string& what) {
  return Error("PG25_UNSUPPORTED", file + ": " + what);
}

}  // namespace pg25
