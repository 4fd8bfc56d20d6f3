// The harness the emulation's self-tests share (pg25_emu_selftest, pg25_emu_cudnn_selftest): failures
// are collected per check (the first few with their line, in the file that holds the check), so one run
// shows everything that is wrong instead of stopping at the first. selftest_harness.cc holds the state.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "../include/cuda_runtime.h"
#include "../runtime.h"

namespace selftest {

using pg25::emu::report;

void note_failure(int line, const std::string& what);
// Marks the running check as skipped (only where the machine lacks what it needs).
void skip(const std::string& why);
std::string join(const std::vector<std::string>& v);
// Takes (and clears) the misuse the emulation recorded; requires one message containing every part.
void expect_misuse(int line, std::initializer_list<const char*> parts);

// Starts a check afresh: no failures, not skipped.
void begin_check();
// Prints `ok NAME`, `skip NAME: why` or `FAIL NAME: details`; true unless the check failed.
bool print_outcome(const char* name);

struct Check {
  const char* name;
  void (*fn)();
};

#define EXPECT(cond, msg)                           \
  do {                                              \
    if (!(cond)) {                                  \
      std::ostringstream o_;                        \
      o_ << msg;                                    \
      ::selftest::note_failure(__LINE__, o_.str()); \
    }                                               \
  } while (0)
#define CUDA_IS(expr, want)                                                                                         \
  do {                                                                                                              \
    cudaError_t e_ = (expr);                                                                                        \
    EXPECT(e_ == (want), #expr << " returned " << cudaGetErrorName(e_) << ", expected " << cudaGetErrorName(want)); \
  } while (0)
#define CUDA_OK(expr) CUDA_IS(expr, cudaSuccess)
#define EXPECT_MISUSE(...) ::selftest::expect_misuse(__LINE__, {__VA_ARGS__})
#define EXPECT_NO_MISUSE()                                                              \
  do {                                                                                  \
    pg25::emu::Report r_ = ::selftest::report(true);                                    \
    EXPECT(r_.misuse_count == 0, "unexpected misuse: " << ::selftest::join(r_.misuse)); \
  } while (0)

// Device buffers for the checks: freed at scope exit (cudaFree synchronises, as on a GPU).
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), count * sizeof(T))); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() {
    if (p) cudaFree(p);
  }
  void upload(const std::vector<T>& h) { CUDA_OK(cudaMemcpy(p, h.data(), std::min(n, h.size()) * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
  operator cudaStream_t() const { return s; }
};

// Bit views of a float, and hex for messages.
inline uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

// fp16 through the emulated cuda_fp16.h, and the true value of a pattern (selftest_numbers.cc): the
// cuBLASLt checks build their operands and reference with them.
uint16_t emu_half(float x);
double half_value(uint16_t p);

// p[i] += v and p[i] *= f for i < n: the plain kernels most checks launch (selftest_cudart.cc).
void add_kernel(int* p, int n, int v);
void scale_kernel(int* p, int n, int f);

// The checks of each file, in the order they run; selftest_main.cc runs them one after another.
std::vector<Check> number_checks();  // selftest_numbers.cc: fp16 and bf16 conversions
std::vector<Check> simt_checks();    // selftest_simt.cc: kernel semantics and failure detection
std::vector<Check> tile_checks();    // selftest_tiles.cc: ldmatrix and cp.async
// Runs a failing launch on a fresh stream: the failure must surface at the next synchronisation with a
// misuse message holding every part, and the stream must run kernels again after (selftest_simt.cc).
void expect_kernel_failure(const std::function<void(cudaStream_t)>& launch, std::initializer_list<const char*> misuse_parts, int line);
std::vector<Check> cudart_checks();    // selftest_cudart.cc: the cudart stand-in
std::vector<Check> cublaslt_checks();  // selftest_cublaslt.cc: the cuBLASLt stand-in

}  // namespace selftest
