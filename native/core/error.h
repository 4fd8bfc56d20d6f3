// Errors raised by native code. Every failure a user can cause becomes a pg25::Error with a stable
// code from the one table below (the TypeScript side's is lib/errors.ts; test/binding-seam.test.ts checks
// they agree); the binding turns it into a JS Pg25Error instead of letting it reach the process.
#pragma once
#include <exception>
#include <stdexcept>
#include <string>

namespace pg25 {

// X(enumerator, the code JS sees)
#define PG25_ERROR_CODES(X)                   \
  X(NotFound, "PG25_NOT_FOUND")               \
  X(BadConfig, "PG25_BAD_CONFIG")             \
  X(BadWeights, "PG25_BAD_WEIGHTS")           \
  X(MissingWeights, "PG25_MISSING_WEIGHTS")   \
  X(Unsupported, "PG25_UNSUPPORTED")          \
  X(InvalidArgument, "PG25_INVALID_ARGUMENT") \
  X(Disposed, "PG25_DISPOSED")                \
  X(NoDevice, "PG25_NO_DEVICE")               \
  X(OutOfMemory, "PG25_OUT_OF_MEMORY")        \
  X(NonFinite, "PG25_NON_FINITE")             \
  X(Internal, "PG25_INTERNAL")                \
  X(Aborted, "ABORT_ERR")

enum class Code {
#define PG25_ENUMERATOR(e, name) e,
  PG25_ERROR_CODES(PG25_ENUMERATOR)
#undef PG25_ENUMERATOR
};

inline const char* code_name(Code c) {
  switch (c) {
#define PG25_NAME(e, name) \
  case Code::e: return name;
    PG25_ERROR_CODES(PG25_NAME)
#undef PG25_NAME
  }
  return "PG25_INTERNAL";
}

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const { return code_; }
  const char* code_name() const { return pg25::code_name(code_); }

 private:
  Code code_;
};

// The code and message any exception becomes at the seam to JS (the one mapping every path uses).
struct Failure {
  Code code;
  std::string message;
};
inline Failure failure_of(const std::exception_ptr& p) {
  try {
    std::rethrow_exception(p);
  } catch (const Error& e) {
    return {e.code(), e.what()};
  } catch (const std::bad_alloc&) {
    return {Code::OutOfMemory, "out of host memory"};
  } catch (const std::exception& e) {
    return {Code::Internal, e.what()};
  } catch (...) {
    return {Code::Internal, "unknown native error"};
  }
}

inline Error bad_weights(const std::string& file, const std::string& what) { return Error(Code::BadWeights, file + ": " + what); }
inline Error bad_config(const std::string& file, const std::string& what) { return Error(Code::BadConfig, file + ": " + what); }
inline Error unsupported(const std::string& file, const std::string& what) { return Error(Code::Unsupported, file + ": " + what); }

}  // namespace pg25
