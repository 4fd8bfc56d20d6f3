// Self-test of the CUDA emulation itself (native/cuda/emu): fp16/bf16 rounding against independent
// references, SIMT semantics of kernels launched through PG25_LAUNCH, failure detection (a kernel that
// would hang or misbehave on a GPU is a reported failure here, never a hang), the cudart stand-in's
// stream, memory, event and graph semantics, and the cuBLASLt stand-in against a double-precision
// reference. The emulation is what our CUDA backend's tests trust, so it gets tests of its own.
//
// Each check prints `ok NAME`, `skip NAME: why` (only where the machine lacks what it needs) or
// `FAIL NAME: details`; the exit status is 1 if any check failed. `pg25_emu_selftest NAME...` runs only
// the checks named. test/cuda-emulation-selftest.test.ts runs it and expects every check by name.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PG25_SELFTEST_X86 1
#endif

#include "../../cpu/threadpool.h"
#include "../launch.h"
#include "include/cuda_bf16.h"
#include "include/cuda_fp16.h"
#include "include/cuda_runtime.h"
#include "libraries.h"
#include "runtime.h"

using pg25::emu::report;

// ---------------------------------------------------------------------------------------------------
// The harness: failures are collected per check (the first few with their line), so one run shows
// everything that is wrong instead of stopping at the first.

namespace {

const char* volatile g_check = "startup";
std::vector<std::string> g_failures;
int g_failure_count = 0;
std::string g_skip;

void note_failure(int line, const std::string& what) {
  g_failure_count++;
  if (g_failures.size() < 8) g_failures.push_back("line " + std::to_string(line) + ": " + what);
}

#define EXPECT(cond, msg)               \
  do {                                  \
    if (!(cond)) {                      \
      std::ostringstream o_;            \
      o_ << msg;                        \
      note_failure(__LINE__, o_.str()); \
    }                                   \
  } while (0)
#define CUDA_IS(expr, want)                                                                                       \
  do {                                                                                                            \
    cudaError_t e_ = (expr);                                                                                      \
    EXPECT(e_ == (want), #expr << " returned " << cudaGetErrorName(e_) << ", expected " << cudaGetErrorName(want)); \
  } while (0)
#define CUDA_OK(expr) CUDA_IS(expr, cudaSuccess)

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

// Takes (and clears) the misuse the emulation recorded; requires one message containing every part.
#define EXPECT_MISUSE(...) expect_misuse(__LINE__, {__VA_ARGS__})
void expect_misuse(int line, std::initializer_list<const char*> parts) {
  pg25::emu::Report r = report(true);
  for (const auto& m : r.misuse) {
    bool all = true;
    for (const char* p : parts) all = all && m.find(p) != std::string::npos;
    if (all) return;
  }
  std::string want;
  for (const char* p : parts) want += std::string(want.empty() ? "" : " + ") + "\"" + p + "\"";
  note_failure(line, "expected misuse naming " + want + ", got: " + (r.misuse.empty() ? "none" : join(r.misuse)));
}
#define EXPECT_NO_MISUSE()                                                  \
  do {                                                                      \
    pg25::emu::Report r_ = report(true);                                    \
    EXPECT(r_.misuse_count == 0, "unexpected misuse: " << join(r_.misuse)); \
  } while (0)

void on_alarm(int) {
  // A hang is a failure of the emulation's promise: say which check hung, then give up.
  const char* a = "FAIL ";
  const char* b = ": watchdog: no progress in 60 s (the emulation hung)\n";
  ssize_t rc = write(1, a, strlen(a));
  rc = write(1, g_check, strlen(g_check));
  rc = write(1, b, strlen(b));
  (void)rc;
  _exit(1);
}

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

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// 1-2. fp16 and bf16 conversions. The references decode every pattern from the format's definition in
// double precision and round by comparing 2x with the sum of the two neighbouring representable
// values (exact in double), ties to the even pattern; the first pattern past the largest finite value
// stands for 2^(emax+1), so overflow rounds to infinity exactly as IEEE 754 says.

struct Format {
  const char* name;
  int mant;       // stored mantissa bits
  int bias;       // exponent bias
  uint16_t top;   // the infinity pattern
  std::vector<double> table;  // value of every non-negative pattern 0..top (top = 2^(emax+1))

  Format(const char* n, int m, int b, uint16_t inf) : name(n), mant(m), bias(b), top(inf) {
    for (uint32_t p = 0; p <= top; p++) table.push_back(decode(uint16_t(p)));
  }
  // Sign, biased exponent, mantissa; exponent 0 is subnormal; the all-ones exponent is inf/NaN, except
  // that decode(top) gives 2^(emax+1) for the rounding table (callers check for infinity first).
  double decode(uint16_t p) const {
    int e = (p & 0x7fff) >> mant, m = p & ((1 << mant) - 1);
    double v = e == 0 ? std::ldexp(m, 1 - bias - mant) : std::ldexp((1 << mant) + m, e - bias - mant);
    return p & 0x8000 ? -v : v;
  }
  bool is_nan(uint16_t p) const { return (p & 0x7fff) > top; }
  double value(uint16_t p) const {  // the true value, infinities and NaN included
    if (is_nan(p)) return NAN;
    if ((p & 0x7fff) == top) return p & 0x8000 ? -INFINITY : INFINITY;
    return decode(p);
  }
  // Round-to-nearest-even of a float; NaN gives some NaN (callers compare NaN-ness only).
  uint16_t round(float x) const {
    if (std::isnan(x)) return uint16_t(top | 1);
    uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    double a = std::fabs(double(x));
    if (a >= table[top]) return sign | top;
    size_t lo = size_t(std::upper_bound(table.begin(), table.end(), a) - table.begin()) - 1, hi = lo + 1;
    if (table[lo] == a) return uint16_t(sign | lo);
    double twice = 2 * a, mid = table[lo] + table[hi];
    size_t pick = twice < mid ? lo : twice > mid ? hi : (lo % 2 == 0 ? lo : hi);
    return uint16_t(sign | pick);
  }
};

const Format& half_format() {
  static Format f("half", 10, 15, 0x7c00);
  return f;
}
const Format& bf16_format() {
  static Format f("bf16", 7, 127, 0x7f80);
  return f;
}

uint16_t emu_half(float x) { return __half_as_ushort(__float2half_rn(x)); }
float emu_half_to_float(uint16_t b) { return __half2float(__ushort_as_half(b)); }
uint16_t emu_bf16(float x) { return __float2bfloat16_rn(x).x; }
float emu_bf16_to_float(uint16_t b) {
  __nv_bfloat16 v;
  v.x = b;
  return __bfloat162float(v);
}

// Every pattern decodes to its defined value and converts back to itself (NaN stays NaN).
template <class ToFloat, class FromFloat>
void check_all_patterns(const Format& f, ToFloat to_float, FromFloat from_float) {
  for (uint32_t p = 0; p < 65536; p++) {
    float v = to_float(uint16_t(p));
    double want = f.value(uint16_t(p));
    if (f.is_nan(uint16_t(p))) {
      EXPECT(std::isnan(v), f.name << " " << hex(p) << " (NaN) decodes to " << v);
      EXPECT(f.is_nan(from_float(v)), f.name << " NaN " << hex(p) << " converts back to " << hex(from_float(v)));
      continue;
    }
    EXPECT(double(v) == want && std::signbit(v) == bool(p & 0x8000), f.name << " " << hex(p) << " decodes to " << v << ", want " << want);
    EXPECT(from_float(v) == p, f.name << " " << hex(p) << " -> " << v << " -> " << hex(from_float(v)));
  }
}

// The inputs rounding is checked on: every midpoint between neighbouring patterns and the floats on
// either side of it and of each pattern, both signs; random bit patterns; random values spread over
// the format's exponent range; the named edge cases.
std::vector<float> rounding_inputs(const Format& f, std::mt19937& rng, int random_count, int min_exp, int max_exp) {
  std::vector<float> xs;
  for (uint32_t p = 0; p < f.top; p++) {
    float v = float(f.table[p]), mid = float((f.table[p] + f.table[p + 1]) / 2);  // exact: a few more bits than the format
    for (float x : {v, std::nextafter(v, INFINITY), mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY)}) {
      xs.push_back(x);
      xs.push_back(-x);
    }
  }
  std::uniform_int_distribution<uint32_t> bits;
  std::uniform_int_distribution<int> exps(min_exp, max_exp);
  for (int i = 0; i < random_count / 2; i++) xs.push_back(bits_float(bits(rng)));
  for (int i = 0; i < random_count / 2; i++) {
    float m = 1.f + float(bits(rng) & 0x7fffff) / 8388608.f;
    xs.push_back(std::ldexp(bits(rng) & 1 ? -m : m, exps(rng)));
  }
  for (float x : {0.f, -0.f, INFINITY, -INFINITY, NAN, -NAN, bits_float(0x7f800001), bits_float(0xffc00000), bits_float(0x7fbfffff), FLT_MAX, -FLT_MAX,
                  FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN, bits_float(0x007fffff)})
    xs.push_back(x);
  return xs;
}

template <class FromFloat>
void check_rounding(const Format& f, const std::vector<float>& xs, FromFloat from_float) {
  int bad = 0;
  for (float x : xs) {
    uint16_t got = from_float(x), want = f.round(x);
    bool ok = std::isnan(x) ? f.is_nan(got) : got == want;
    if (!ok && bad++ < 6) EXPECT(false, f.name << "(" << x << " = " << hex(float_bits(x)) << ") = " << hex(got) << ", want " << hex(want));
  }
  EXPECT(bad == 0, bad << " of " << xs.size() << " " << f.name << " conversions rounded wrongly");
}

void check_half_patterns() { check_all_patterns(half_format(), emu_half_to_float, emu_half); }

void check_half_rounding() {
  const Format& f = half_format();
  std::mt19937 rng(2025);
  std::vector<float> xs = rounding_inputs(f, rng, 1000000, -27, 16);
  check_rounding(f, xs, emu_half);
  check_rounding(f, xs, [](float x) { return __half(x).x; });  // the constructor path kernels use
  // The cases named in the brief, with the answer stated by hand as a third opinion.
  struct Case {
    float x;
    uint16_t want;
  };
  const Case cases[] = {
      {65504.f, 0x7bff},                   // the largest finite half
      {65519.99f, 0x7bff},                 // just below the midpoint to 65536
      {65520.f, 0x7c00},                   // the midpoint: ties to the even pattern, which is infinity
      {std::ldexp(1.f, -24), 0x0001},      // the smallest subnormal
      {std::ldexp(1.f, -25), 0x0000},      // half of it: a tie, to even zero
      {std::ldexp(3.f, -26), 0x0001},      // 0.75 of it: nearer the subnormal
      {std::nextafter(std::ldexp(1.f, -25), 1.f), 0x0001},
      {std::ldexp(2047.f, -25), 0x0400},   // between the largest subnormal and 2^-14: tie, to even 0x400
      {std::ldexp(2045.f, -25), 0x03fe},   // tie between 0x3fe and 0x3ff: to even
      {1.f + std::ldexp(1.f, -11), 0x3c00},  // tie between 1 and 1 + 2^-10: to even
      {1.f + std::ldexp(3.f, -11), 0x3c02},
      {2049.f, 0x6800},                    // ulp 2: tie between 2048 and 2050
      {2051.f, 0x6802},
      {-0.f, 0x8000},
      {INFINITY, 0x7c00},
      {-INFINITY, 0xfc00},
      {FLT_TRUE_MIN, 0x0000},
      {-FLT_TRUE_MIN, 0x8000},
      {-65520.f, 0xfc00},
  };
  for (const Case& c : cases) EXPECT(emu_half(c.x) == c.want, "half(" << c.x << ") = " << hex(emu_half(c.x)) << ", want " << hex(c.want));
  EXPECT(f.is_nan(emu_half(NAN)) && f.is_nan(emu_half(-NAN)) && f.is_nan(emu_half(bits_float(0x7f800001))), "NaN did not stay NaN");
}

#ifdef PG25_SELFTEST_X86
__attribute__((target("f16c"))) uint16_t f16c_to_half(float x) { return uint16_t(_cvtss_sh(x, 0)); }  // 0: round to nearest even
__attribute__((target("f16c"))) float f16c_to_float(uint16_t h) { return _cvtsh_ss(h); }
#endif

// The CPU's own converter as a second, hardware reference.
void check_half_f16c() {
#ifdef PG25_SELFTEST_X86
  if (!__builtin_cpu_supports("f16c")) {
    g_skip = "this CPU has no F16C";
    return;
  }
  const Format& f = half_format();
  std::mt19937 rng(16);
  std::vector<float> xs = rounding_inputs(f, rng, 1000000, -27, 16);
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 4099) xs.push_back(bits_float(uint32_t(b)));  // a sweep of all floats
  int bad = 0;
  for (float x : xs) {
    uint16_t got = emu_half(x), hw = f16c_to_half(x);
    bool ok = std::isnan(x) ? f.is_nan(got) && f.is_nan(hw) : got == hw;
    if (!ok && bad++ < 6) EXPECT(false, "half(" << hex(float_bits(x)) << ") = " << hex(got) << ", F16C says " << hex(hw));
  }
  EXPECT(bad == 0, bad << " of " << xs.size() << " conversions differ from F16C");
  for (uint32_t p = 0; p < 65536; p++) {
    float got = emu_half_to_float(uint16_t(p)), hw = f16c_to_float(uint16_t(p));
    EXPECT(f.is_nan(uint16_t(p)) ? std::isnan(got) : float_bits(got) == float_bits(hw),
           "half " << hex(p) << " decodes to " << hex(float_bits(got)) << ", F16C says " << hex(float_bits(hw)));
  }
#else
  g_skip = "not an x86 CPU";
#endif
}

void check_bf16_patterns() { check_all_patterns(bf16_format(), emu_bf16_to_float, emu_bf16); }

void check_bf16_rounding() {
  const Format& f = bf16_format();
  std::mt19937 rng(1607);
  std::vector<float> xs = rounding_inputs(f, rng, 1000000, -140, 127);
  check_rounding(f, xs, emu_bf16);
  check_rounding(f, xs, [](float x) { return __nv_bfloat16(x).x; });
  struct Case {
    float x;
    uint16_t want;
  };
  const Case cases[] = {
      {1.f, 0x3f80},
      {1.f + std::ldexp(1.f, -8), 0x3f80},  // tie between 1 and 1 + 2^-7: to even
      {1.f + std::ldexp(3.f, -8), 0x3f82},
      {std::nextafter(1.f + std::ldexp(1.f, -8), 2.f), 0x3f81},
      {FLT_MAX, 0x7f80},                    // past the midpoint to 2^128: infinity
      {bits_float(0x7f7f7fff), 0x7f7f},     // just below it
      {bits_float(0x7f7f8000), 0x7f80},     // the midpoint: ties to the even pattern, infinity
      {-0.f, 0x8000},
      {INFINITY, 0x7f80},
      {-INFINITY, 0xff80},
      {FLT_TRUE_MIN, 0x0000},
      {bits_float(0x00008000), 0x0000},     // half the smallest bf16 subnormal: tie, to even zero
      {bits_float(0x00018000), 0x0002},     // 1.5 subnormal ulps: tie, to even
      {std::ldexp(1.f, -133), 0x0001},      // the smallest bf16 subnormal
  };
  for (const Case& c : cases) EXPECT(emu_bf16(c.x) == c.want, "bf16(" << c.x << ") = " << hex(emu_bf16(c.x)) << ", want " << hex(c.want));
  // A NaN whose payload lies only in the dropped bits must not round to infinity.
  for (uint32_t b : {0x7f800001u, 0x7f80ffffu, 0xff800001u, 0x7fc00000u, 0xffffffffu})
    EXPECT(f.is_nan(emu_bf16(bits_float(b))), "bf16 of NaN " << hex(b) << " = " << hex(emu_bf16(bits_float(b))));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// 3. Kernels on the SIMT layer, launched through PG25_LAUNCH exactly as the backend launches its own.

namespace {

unsigned flat_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
unsigned flat_block() { return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z); }

// A tree reduction in shared memory with a barrier per level; every thread also records the
// coordinates it saw, so the mapping of threads and blocks to threadIdx/blockIdx is checked too.
__global__ void block_sum_kernel(const int* in, int* block_sums, int* coords) {
  __shared__ int partial[1024];
  unsigned t = flat_thread(), n = blockDim.x * blockDim.y * blockDim.z, g = flat_block() * n + t;
  partial[t] = in[g];
  int* c = coords + size_t(g) * 6;
  c[0] = int(threadIdx.x), c[1] = int(threadIdx.y), c[2] = int(threadIdx.z);
  c[3] = int(blockIdx.x), c[4] = int(blockIdx.y), c[5] = int(blockIdx.z);
  __syncthreads();
  unsigned span = 1;
  while (span < n) span <<= 1;
  for (unsigned s = span / 2; s > 0; s >>= 1) {
    if (t < s && t + s < n) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) block_sums[flat_block()] = partial[0];
}

void check_block_reduce() {
  Stream s;
  struct Shape {
    dim3 grid, block;
  };
  // 2-D and 3-D blocks and grids, a block that is not a whole number of warps, the largest block.
  const Shape shapes[] = {{dim3(3, 2, 2), dim3(16, 8, 1)}, {dim3(2, 3, 1), dim3(5, 3, 2)}, {dim3(4, 1, 1), dim3(4, 4, 4)}, {dim3(2, 1, 1), dim3(32, 32, 1)},
                          {dim3(1, 1, 3), dim3(1, 1, 7)}};
  for (const Shape& sh : shapes) {
    unsigned n = sh.block.x * sh.block.y * sh.block.z, blocks = sh.grid.x * sh.grid.y * sh.grid.z;
    std::vector<int> in(size_t(n) * blocks);
    for (size_t i = 0; i < in.size(); i++) in[i] = int((i * 2654435761u) % 2001) - 1000;
    Dev<int> din(in.size()), dsums(blocks), dcoords(in.size() * 6);
    din.upload(in);
    PG25_LAUNCH(block_sum_kernel, sh.grid, sh.block, 0, s)(din.p, dsums.p, dcoords.p);
    CUDA_OK(cudaStreamSynchronize(s));
    std::vector<int> sums = dsums.download(), coords = dcoords.download();
    for (unsigned b = 0; b < blocks; b++) {
      long want = 0;
      for (unsigned t = 0; t < n; t++) want += in[size_t(b) * n + t];
      EXPECT(sums[b] == want, "block " << b << " of block (" << sh.block.x << "," << sh.block.y << "," << sh.block.z << "): sum " << sums[b] << ", want " << want);
      for (unsigned t = 0; t < n; t++) {
        const int* c = &coords[(size_t(b) * n + t) * 6];
        int want_c[6] = {int(t % sh.block.x), int(t / sh.block.x % sh.block.y), int(t / (sh.block.x * sh.block.y)),
                         int(b % sh.grid.x),  int(b / sh.grid.x % sh.grid.y),  int(b / (sh.grid.x * sh.grid.y))};
        EXPECT(std::equal(c, c + 6, want_c), "thread " << t << " of block " << b << " saw threadIdx (" << c[0] << "," << c[1] << "," << c[2] << ") blockIdx (" << c[3]
                                                       << "," << c[4] << "," << c[5] << ")");
      }
    }
  }
  EXPECT_NO_MISUSE();
}

// Shuffles: each case is run by every lane of two warps; the expected source lane follows the CUDA
// programming guide's wording, written here independently of simt.cc.
enum class Shfl { Idx, Up, Down, Xor };
struct ShflCase {
  Shfl op;
  int arg, width;
};
std::vector<ShflCase> shfl_cases() {
  std::vector<ShflCase> v;
  for (int w : {32, 16, 8}) {
    for (int src : {0, 3, w - 1, w + 5, -1, 37}) v.push_back({Shfl::Idx, src, w});
    for (int d : {1, 3, w - 1, w}) v.push_back({Shfl::Up, d, w});
    for (int d : {1, 5, w - 1, w}) v.push_back({Shfl::Down, d, w});
    for (int m : {1, 2, 5, w / 2, w - 1, 8, 16, 24, 31}) v.push_back({Shfl::Xor, m, w});
  }
  return v;
}
const std::vector<ShflCase>& kShflCases() {
  static std::vector<ShflCase> v = shfl_cases();
  return v;
}

int expected_source(const ShflCase& c, int lane) {
  int seg = lane / c.width * c.width;
  switch (c.op) {
    case Shfl::Idx: return seg + ((c.arg % c.width) + c.width) % c.width;  // srcLane modulo width, within the segment
    case Shfl::Up: return lane - c.arg >= seg ? lane - c.arg : lane;          // below the segment: the caller's own value
    case Shfl::Down: return lane + c.arg < seg + c.width ? lane + c.arg : lane;
    case Shfl::Xor: {
      int src = lane ^ c.arg;  // earlier segments may be read; a later one gives the caller's own value
      return src / c.width > lane / c.width ? lane : src;
    }
  }
  return -1;
}

__global__ void shuffle_kernel(const ShflCase* cases, int ncases, int* out, double* dsum, float* fsum, unsigned long long* wide) {
  unsigned t = threadIdx.x, lane = t % 32;
  int v = int(1000 * t + 7);
  for (int i = 0; i < ncases; i++) {
    const ShflCase& c = cases[i];
    int r = 0;
    switch (c.op) {
      case Shfl::Idx: r = __shfl_sync(0xffffffffu, v, c.arg, c.width); break;
      case Shfl::Up: r = __shfl_up_sync(0xffffffffu, v, unsigned(c.arg), c.width); break;
      case Shfl::Down: r = __shfl_down_sync(0xffffffffu, v, unsigned(c.arg), c.width); break;
      case Shfl::Xor: r = __shfl_xor_sync(0xffffffffu, v, c.arg, c.width); break;
    }
    out[size_t(i) * blockDim.x + t] = r;
  }
  // A butterfly sum of doubles (8-byte values) leaves the warp total in every lane; a shfl_down tree
  // of floats leaves it in lane 0.
  double d = 0.25 * (lane + 1);
  for (int m = 16; m > 0; m >>= 1) d += __shfl_xor_sync(0xffffffffu, d, m);
  dsum[t] = d;
  float f = float(lane);
  for (int m = 16; m > 0; m >>= 1) f += __shfl_down_sync(0xffffffffu, f, unsigned(m));
  fsum[t] = f;
  unsigned long long w = (static_cast<unsigned long long>(lane) << 40) | 0xabcdu;
  wide[t] = __shfl_sync(0xffffffffu, w, int(31 - lane));
}

void check_shuffles() {
  Stream s;
  const auto& cases = kShflCases();
  const unsigned threads = 64;  // two warps
  Dev<ShflCase> dcases(cases.size());
  Dev<int> out(cases.size() * threads);
  Dev<double> dsum(threads);
  Dev<float> fsum(threads);
  Dev<unsigned long long> wide(threads);
  dcases.upload(cases);
  PG25_LAUNCH(shuffle_kernel, 1, threads, 0, s)(dcases.p, int(cases.size()), out.p, dsum.p, fsum.p, wide.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> got = out.download();
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
  for (size_t i = 0; i < cases.size(); i++) {
    const ShflCase& c = cases[i];
    for (unsigned t = 0; t < threads; t++) {
      int lane = int(t % 32), warp = int(t / 32);
      int want = 1000 * (warp * 32 + expected_source(c, lane)) + 7;
      EXPECT(got[i * threads + t] == want, names[int(c.op)] << "(arg " << c.arg << ", width " << c.width << ") in lane " << lane << " of warp " << warp << ": got lane "
                                                          << (got[i * threads + t] - 7) / 1000 % 32 << ", want lane " << expected_source(c, lane));
    }
  }
  std::vector<double> d = dsum.download();
  std::vector<float> f = fsum.download();
  std::vector<unsigned long long> w = wide.download();
  for (unsigned t = 0; t < threads; t++) {
    unsigned lane = t % 32;
    EXPECT(d[t] == 0.25 * 528, "double butterfly sum in lane " << lane << " = " << d[t] << ", want 132");
    if (lane == 0) EXPECT(f[t] == 496.f, "float shfl_down sum in lane 0 = " << f[t] << ", want 496");
    EXPECT(w[t] == ((static_cast<unsigned long long>(31 - lane) << 40) | 0xabcdu), "64-bit __shfl_sync in lane " << lane << " = " << hex(unsigned(w[t] >> 32)));
  }
  EXPECT_NO_MISUSE();
}

// Votes over the whole warp, and collectives on disjoint half-warp masks (legal divergence since Volta).
__global__ void vote_kernel(unsigned* out) {
  unsigned t = threadIdx.x, lane = t % 32;
  unsigned* o = out + size_t(t) * 10;
  o[0] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  o[1] = __ballot_sync(0xffffffffu, t >= 40);
  o[2] = unsigned(__all_sync(0xffffffffu, 1));
  o[3] = unsigned(__all_sync(0xffffffffu, lane != 7));
  o[4] = unsigned(__any_sync(0xffffffffu, lane == 7));
  o[5] = unsigned(__any_sync(0xffffffffu, 0));
  if (lane < 16) {
    o[6] = __ballot_sync(0x0000ffffu, lane & 1);
    o[7] = unsigned(__all_sync(0x0000ffffu, lane < 16));
  } else {
    o[6] = unsigned(__any_sync(0xffff0000u, lane == 20));
    o[7] = __ballot_sync(0xffff0000u, lane >= 24);
  }
  // A shuffle among lanes 8..15 only; the other lanes take no part.
  o[8] = (lane >= 8 && lane < 16) ? unsigned(__shfl_sync(0x0000ff00u, int(100 + lane), 9)) : 0u;
  o[9] = __ballot_sync(0xffffffffu, 1);
}

void check_votes() {
  Stream s;
  Dev<unsigned> out(64 * 10);
  PG25_LAUNCH(vote_kernel, 1, 64, 0, s)(out.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<unsigned> o = out.download();
  for (unsigned t = 0; t < 64; t++) {
    unsigned lane = t % 32, warp = t / 32, mod3 = 0, ge40 = 0, odd = 0, ge24 = 0;
    for (unsigned j = 0; j < 32; j++) {
      mod3 |= unsigned(j % 3 == 0) << j;
      ge40 |= unsigned(warp * 32 + j >= 40) << j;
      odd |= unsigned(j < 16 && (j & 1)) << j;
      ge24 |= unsigned(j >= 24) << j;
    }
    const unsigned want[10] = {mod3, ge40, 1, 0, 1, 0, lane < 16 ? odd : 1u, lane < 16 ? 1u : ge24, (lane >= 8 && lane < 16) ? 109u : 0u, 0xffffffffu};
    for (int k = 0; k < 10; k++) EXPECT(o[t * 10 + k] == want[k], "vote " << k << " in thread " << t << " = " << hex(o[t * 10 + k]) << ", want " << hex(want[k]));
  }
  EXPECT_NO_MISUSE();
}

// Lanes of a warp run one after another on the CPU: a value another lane writes before __syncwarp is
// visible after it only if __syncwarp really waits for the lanes of its mask.
__global__ void syncwarp_kernel(int* out) {
  __shared__ int slot[64];
  __shared__ int half_slot[64];
  unsigned t = threadIdx.x, lane = t % 32, base = t - lane;
  slot[t] = int(3 * t + 1);
  __syncwarp();
  out[t] = slot[base + (lane + 1) % 32];
  // The two halves of each warp synchronise separately.
  half_slot[t] = int(5 * t);
  unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u, hbase = t - lane % 16;
  __syncwarp(mask);
  out[64 + t] = half_slot[hbase + (lane % 16 + 15) % 16];
}

void check_syncwarp() {
  Stream s;
  Dev<int> out(128);
  PG25_LAUNCH(syncwarp_kernel, 1, 64, 0, s)(out.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> o = out.download();
  for (unsigned t = 0; t < 64; t++) {
    unsigned lane = t % 32, base = t - lane, hbase = t - lane % 16;
    EXPECT(o[t] == int(3 * (base + (lane + 1) % 32) + 1), "thread " << t << " read " << o[t] << " after __syncwarp()");
    EXPECT(o[64 + t] == int(5 * (hbase + (lane % 16 + 15) % 16)), "thread " << t << " read " << o[64 + t] << " after __syncwarp(half mask)");
  }
  EXPECT_NO_MISUSE();
}

// Atomics from blocks that run at the same time on different CPU threads. The first blocks wait (a
// bounded time) until two blocks overlap, so the check always exercises real concurrency.
std::mutex g_cpu_mu;
std::set<std::thread::id> g_cpu_threads;
std::atomic<int> g_active_blocks{0}, g_max_active{0};
std::atomic<bool> g_wait_for_overlap{false};  // until two blocks have overlapped, or waiting timed out once

__global__ void atomics_kernel(int* count, float* fsum, long long* tsum, int* maxv, unsigned* cas_hits) {
  unsigned t = flat_thread(), n = blockDim.x * blockDim.y * blockDim.z, g = flat_block() * n + t;
  if (t == 0) {
    {
      std::lock_guard<std::mutex> lock(g_cpu_mu);
      g_cpu_threads.insert(std::this_thread::get_id());
    }
    int now = ++g_active_blocks, seen = g_max_active.load();
    while (now > seen && !g_max_active.compare_exchange_weak(seen, now)) {
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (g_wait_for_overlap.load() && g_max_active.load() < 2) {
      if (std::chrono::steady_clock::now() > until) g_wait_for_overlap = false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  __syncthreads();
  atomicAdd(count, 1);
  atomicAdd(fsum, 0.5f);
  atomicAdd(tsum, static_cast<long long>(t));
  atomicMax(maxv, int(g));
  // Exactly one thread of the grid wins each CAS slot.
  if (atomicCAS(&cas_hits[g % 16], 0u, g + 1) == 0u) atomicAdd(&cas_hits[16], 1u);
  __syncthreads();
  if (t == 0) --g_active_blocks;
}

void check_atomics() {
  Stream s;
  const dim3 grid(16, 8, 2), block(8, 8, 2);  // 256 blocks of 128 threads
  const long blocks = 256, n = 128, total = blocks * n;
  Dev<int> count(1), maxv(1);
  Dev<float> fsum(1);
  Dev<long long> tsum(1);
  Dev<unsigned> cas(17);
  CUDA_OK(cudaMemsetAsync(count.p, 0, sizeof(int), s));
  CUDA_OK(cudaMemsetAsync(maxv.p, 0, sizeof(int), s));
  CUDA_OK(cudaMemsetAsync(fsum.p, 0, sizeof(float), s));
  CUDA_OK(cudaMemsetAsync(tsum.p, 0, sizeof(long long), s));
  CUDA_OK(cudaMemsetAsync(cas.p, 0, 17 * sizeof(unsigned), s));
  g_cpu_threads.clear();
  g_max_active = 0;
  g_wait_for_overlap = pg25::cpu::thread_count() > 1;
  for (int rep = 0; rep < 3; rep++) PG25_LAUNCH(atomics_kernel, grid, block, 0, s)(count.p, fsum.p, tsum.p, maxv.p, cas.p);
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(count.download()[0] == 3 * total, "atomicAdd(int) count " << count.download()[0] << ", want " << 3 * total);
  EXPECT(fsum.download()[0] == 0.5f * 3 * total, "atomicAdd(float) sum " << fsum.download()[0] << ", want " << 0.5 * 3 * total);
  EXPECT(tsum.download()[0] == 3 * blocks * (n * (n - 1) / 2), "atomicAdd(long long) sum " << tsum.download()[0]);
  EXPECT(maxv.download()[0] == total - 1, "atomicMax " << maxv.download()[0] << ", want " << total - 1);
  std::vector<unsigned> c = cas.download();
  EXPECT(c[16] == 16, c[16] << " atomicCAS winners for 16 slots");
  if (pg25::cpu::thread_count() > 1) {
    EXPECT(g_max_active.load() >= 2, "blocks never ran at the same time (at most " << g_max_active.load() << " at once)");
    EXPECT(g_cpu_threads.size() >= 2, "all blocks ran on " << g_cpu_threads.size() << " CPU thread(s)");
  }
  EXPECT_NO_MISUSE();
}

// Dynamic shared memory: the layer offers pg25::emu::dynamic_shared() (no `extern __shared__`
// spelling): it holds the launch's byte count, poisoned afresh for every block.
__global__ void dynamic_shared_kernel(int* out, int* stale) {
  int* dyn = static_cast<int*>(pg25::emu::dynamic_shared());
  unsigned t = threadIdx.x, n = blockDim.x;
  if (dyn[t] != -1) atomicAdd(stale, 1);  // 0xff bytes: nothing left over from the block before
  __syncthreads();
  dyn[t] = int(blockIdx.x * 1000 + t);
  __syncthreads();
  out[blockIdx.x * n + t] = dyn[n - 1 - t];
}

void check_dynamic_shared() {
  Stream s;
  const unsigned blocks = 8, threads = 256;
  Dev<int> out(blocks * threads), stale(1);
  CUDA_OK(cudaMemsetAsync(stale.p, 0, sizeof(int), s));
  PG25_LAUNCH(dynamic_shared_kernel, blocks, threads, threads * sizeof(int), s)(out.p, stale.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> o = out.download();
  for (unsigned b = 0; b < blocks; b++)
    for (unsigned t = 0; t < threads; t++)
      EXPECT(o[b * threads + t] == int(b * 1000 + threads - 1 - t), "block " << b << " thread " << t << " read " << o[b * threads + t]);
  EXPECT(stale.download()[0] == 0, stale.download()[0] << " threads found dynamic shared memory not freshly poisoned");
  EXPECT_NO_MISUSE();
  // More than the 227 KiB a block can have is a launch error.
  PG25_LAUNCH(dynamic_shared_kernel, 1, 32, (227u << 10) + 1, s)(out.p, stale.p);
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_MISUSE("dynamic_shared_kernel", "shared memory");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// 4. Kernels that would hang or be undefined on a GPU: each must end as a reported kernel failure
// (cudaErrorLaunchFailure at the next synchronisation, a misuse message naming the kernel), never a
// hang, and the stream and the CPU threads must be usable afterwards.

namespace {

__global__ void add_kernel(int* p, int n, int v) {
  int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] += v;
}
__global__ void scale_kernel(int* p, int n, int f) {
  int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] *= f;
}

// Runs a failing launch on a fresh stream and checks how the failure surfaces.
template <class Launch>
void expect_kernel_failure(Launch launch, std::initializer_list<const char*> misuse_parts, int line) {
  Stream s;
  launch(s.s);
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaErrorLaunchFailure) note_failure(line, std::string("cudaStreamSynchronize after the failing kernel returned ") + cudaGetErrorName(e));
  expect_misuse(line, misuse_parts);
  cudaGetLastError();
  // Reported once, as a GPU reports a fault; then the same stream runs kernels again.
  CUDA_OK(cudaStreamSynchronize(s));
  Dev<int> d(64);
  CUDA_OK(cudaMemsetAsync(d.p, 0, 64 * sizeof(int), s));
  PG25_LAUNCH(add_kernel, 2, 32, 0, s)(d.p, 64, 3);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> h = d.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 3; }), "a kernel after the failure did not run correctly");
  EXPECT_NO_MISUSE();
}

// Threads 40.. of block (1,2,0) return before a barrier the others wait at.
__global__ void skip_barrier_kernel(int* out) {
  bool culprit = blockIdx.x == 1 && blockIdx.y == 2;
  if (culprit && threadIdx.x >= 40) return;
  out[flat_block() * blockDim.x + threadIdx.x] = 1;
  __syncthreads();
  out[flat_block() * blockDim.x + threadIdx.x] = 2;
}

void check_fail_syncthreads() {
  Dev<int> out(6 * 64);
  expect_kernel_failure([&](cudaStream_t s) { PG25_LAUNCH(skip_barrier_kernel, dim3(2, 3), 64, 0, s)(out.p); },
                        {"skip_barrier_kernel", "block (1,2,0)", "__syncthreads", "exited"}, __LINE__);
}

__global__ void shfl_omits_caller_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(~(1u << 5), int(threadIdx.x), 0);  // lane 5 calls with a mask without lane 5
}

void check_fail_mask_omits_caller() {
  Dev<int> out(32);
  expect_kernel_failure([&](cudaStream_t s) { PG25_LAUNCH(shfl_omits_caller_kernel, 1, 32, 0, s)(out.p); },
                        {"shfl_omits_caller_kernel", "__shfl_sync", "leaves out the calling lane 5"}, __LINE__);
}

__global__ void shfl_exited_lane_kernel(int* out) {
  if (threadIdx.x == 31) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
}

void check_fail_exited_lane() {
  Dev<int> out(32);
  expect_kernel_failure([&](cudaStream_t s) { PG25_LAUNCH(shfl_exited_lane_kernel, 1, 32, 0, s)(out.p); },
                        {"shfl_exited_lane_kernel", "__shfl_sync", "lane 31", "has exited"}, __LINE__);
}

// Odd lanes vote while even lanes shuffle, with the same full mask.
__global__ void divergent_collectives_kernel(unsigned* out) {
  unsigned lane = threadIdx.x % 32;
  if (lane & 1) out[threadIdx.x] = __ballot_sync(0xffffffffu, 1);
  else out[threadIdx.x] = unsigned(__shfl_xor_sync(0xffffffffu, int(lane), 1));
}
// Half a warp at __syncwarp, the other half at __syncthreads.
__global__ void warp_vs_barrier_kernel(unsigned* out) {
  if (threadIdx.x < 16) __syncwarp();
  else __syncthreads();
  out[threadIdx.x] = 1;
}

void check_fail_divergence() {
  Dev<unsigned> out(64);
  expect_kernel_failure([&](cudaStream_t s) { PG25_LAUNCH(divergent_collectives_kernel, 1, 64, 0, s)(out.p); },
                        {"divergent_collectives_kernel", "warp divergence", "__ballot_sync", "__shfl_xor_sync"}, __LINE__);
  expect_kernel_failure([&](cudaStream_t s) { PG25_LAUNCH(warp_vs_barrier_kernel, 1, 32, 0, s)(out.p); },
                        {"warp_vs_barrier_kernel", "__syncwarp", "waits at __syncthreads instead"}, __LINE__);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// 5. The cudart stand-in.

namespace {

std::vector<int> iota_vec(size_t n, int first) {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; i++) v[i] = first + int(i);
  return v;
}

// Streams run only at synchronisation points; host sources are read when a copy is queued.
void check_stream_deferred() {
  Stream s;
  const int n = 1000;
  Dev<int> d(n);
  std::vector<int> src = iota_vec(n, 1), host(n, -7);
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), n * sizeof(int), cudaMemcpyHostToDevice, s));
  std::fill(src.begin(), src.end(), 0);  // too late: the copy took its snapshot when queued
  PG25_LAUNCH(add_kernel, (n + 255) / 256, 256, 0, s)(d.p, n, 10);
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT(report(false).queued == 3, report(false).queued << " ops queued, want 3");
  EXPECT(std::all_of(host.begin(), host.end(), [](int v) { return v == -7; }), "a device-to-host copy wrote the host buffer before any synchronisation");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(host == iota_vec(n, 11), "after cudaStreamSynchronize the host buffer does not hold the device data (first " << host[0] << ")");
  EXPECT(report(false).queued == 0, "work left queued after cudaStreamSynchronize");
  // The legacy NULL stream is deferred the same way, until cudaDeviceSynchronize.
  std::vector<int> host2(n, -1);
  CUDA_OK(cudaMemcpyAsync(host2.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, nullptr));
  EXPECT(host2[0] == -1, "a copy on the NULL stream ran before any synchronisation");
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT(host2 == iota_vec(n, 11), "cudaDeviceSynchronize did not run the NULL stream's copy");
  EXPECT_NO_MISUSE();
}

void check_memcpy2d() {
  Stream s;
  const size_t rows = 4, width = 6 * sizeof(float), spitch = 10 * sizeof(float), dpitch = 8 * sizeof(float), hpitch = 7 * sizeof(float);
  std::vector<float> src(10 * rows);
  for (size_t i = 0; i < src.size(); i++) src[i] = float(i);
  Dev<float> d(8 * rows);
  CUDA_OK(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, width, rows, cudaMemcpyHostToDevice, s));
  std::vector<float> back(7 * rows, -1.f);
  CUDA_OK(cudaMemcpy2DAsync(back.data(), hpitch, d.p, dpitch, width, rows, cudaMemcpyDeviceToHost, s));
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<float> dev = d.download();
  for (size_t r = 0; r < rows; r++)
    for (size_t c = 0; c < 8; c++) {
      if (c < 6) {
        EXPECT(dev[r * 8 + c] == src[r * 10 + c], "device row " << r << " col " << c << " = " << dev[r * 8 + c]);
        EXPECT(back[r * 7 + c] == src[r * 10 + c], "host row " << r << " col " << c << " = " << back[r * 7 + c]);
      } else {
        EXPECT(std::isnan(dev[r * 8 + c]), "device padding row " << r << " col " << c << " was written");  // still the 0xff poison
        if (c < 7) EXPECT(back[r * 7 + c] == -1.f, "host padding row " << r << " col " << c << " was written");
      }
    }
  EXPECT_NO_MISUSE();
  // A width wider than a pitch, and rows that run past the allocation, are refused.
  CUDA_IS(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, dpitch + 4, rows, cudaMemcpyHostToDevice, s), cudaErrorInvalidPitchValue);
  EXPECT_MISUSE("cudaMemcpy2DAsync", "exceeds a pitch");
  CUDA_IS(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, width, rows + 1, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpy2DAsync", "runs past the end");
  cudaGetLastError();
  EXPECT(report(false).queued == 0, "a refused copy was queued");
}

// Every copy is checked against its kind and the allocations, and refused with cudaErrorInvalidValue.
void check_copy_validation() {
  Stream s;
  Dev<float> d(64), d2(64);
  std::vector<float> h(128, 1.f), h2(128, 0.f);
  CUDA_IS(cudaMemcpyAsync(h2.data(), h.data(), 256, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "destination", "is not device memory");
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidValue);
  CUDA_IS(cudaMemcpyAsync(d.p, h.data(), 260, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "runs past the end of its device allocation");
  CUDA_IS(cudaMemcpyAsync(d.p + 32, h.data(), 132, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);  // from inside it, too
  EXPECT_MISUSE("cudaMemcpyAsync", "runs past the end");
  CUDA_IS(cudaMemcpyAsync(h2.data(), h.data(), 256, cudaMemcpyDeviceToHost, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "source", "is not device memory");
  CUDA_IS(cudaMemcpyAsync(d2.p, d.p, 256, cudaMemcpyDeviceToHost, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "destination", "the copy kind says host");
  CUDA_IS(cudaMemcpyAsync(d.p, h.data(), 256, cudaMemcpyDeviceToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "source", "is not device memory");
  CUDA_IS(cudaMemcpy(h2.data(), h.data(), 256, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpy", "is not device memory");
  CUDA_IS(cudaMemsetAsync(d.p, 0, 257, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemsetAsync", "not device memory");
  cudaGetLastError();
  EXPECT(report(false).queued == 0, "a refused copy was queued");
  EXPECT(std::all_of(h2.begin(), h2.end(), [](float v) { return v == 0.f; }), "a refused copy wrote host memory");
  // The valid kinds, cudaMemcpyDefault inferring them, still work.
  CUDA_OK(cudaMemcpyAsync(d.p, h.data(), 256, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(d2.p, d.p, 256, cudaMemcpyDeviceToDevice, s));
  CUDA_OK(cudaMemcpyAsync(h2.data(), d2.p, 256, cudaMemcpyDefault, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(std::all_of(h2.begin(), h2.begin() + 64, [](float v) { return v == 1.f; }), "valid copies did not arrive");
  EXPECT_NO_MISUSE();
}

// Allocations are 256-byte aligned and poisoned with 0xff bytes (NaN in fp16, bf16 and fp32).
void check_alloc_align_poison() {
  Stream s;
  for (size_t size : {size_t(1), size_t(3), size_t(255), size_t(1000), size_t(4097), size_t(65536)}) {
    for (bool async : {false, true}) {
      unsigned char* p = nullptr;
      if (async) CUDA_OK(cudaMallocAsync(reinterpret_cast<void**>(&p), size, s));
      else CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), size));
      EXPECT(reinterpret_cast<uintptr_t>(p) % 256 == 0, "a " << size << "-byte allocation at " << static_cast<void*>(p) << " is not 256-byte aligned");
      std::vector<unsigned char> h(size, 0);
      CUDA_OK(cudaMemcpy(h.data(), p, size, cudaMemcpyDeviceToHost));
      EXPECT(std::all_of(h.begin(), h.end(), [](unsigned char b) { return b == 0xff; }), "a fresh " << size << "-byte allocation is not 0xff-poisoned");
      // Written, freed and allocated again: poisoned again, never the old contents.
      CUDA_OK(cudaMemsetAsync(p, 0, size, s));
      CUDA_OK(cudaStreamSynchronize(s));
      CUDA_OK(cudaFree(p));
      CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), size));
      CUDA_OK(cudaMemcpy(h.data(), p, size, cudaMemcpyDeviceToHost));
      EXPECT(std::all_of(h.begin(), h.end(), [](unsigned char b) { return b == 0xff; }), "a reallocated " << size << "-byte allocation is not poisoned");
      CUDA_OK(cudaFree(p));
    }
  }
  void* z = reinterpret_cast<void*>(1);
  CUDA_OK(cudaMalloc(&z, 0));
  EXPECT(z == nullptr, "cudaMalloc(0) gave " << z);
  EXPECT(std::isnan(float(__ushort_as_half(0xffff))) && std::isnan(bits_float(0xffffffffu)), "the poison is not NaN");
  EXPECT_NO_MISUSE();
}

// cudaFreeAsync releases in stream order; a second free of one allocation is reported.
void check_free_async() {
  Stream s;
  Dev<int> q(64);
  int* p = nullptr;
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), 64 * sizeof(int)));
  uint64_t live = report(false).live_allocations;
  std::vector<int> src(64, 5);
  CUDA_OK(cudaMemcpyAsync(p, src.data(), 256, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(q.p, p, 256, cudaMemcpyDeviceToDevice, s));
  PG25_LAUNCH(add_kernel, 1, 64, 0, s)(q.p, 64, 1);
  CUDA_OK(cudaFreeAsync(p, s));
  EXPECT(pg25::emu::is_device_range(p, 256) && report(false).live_allocations == live, "cudaFreeAsync released the memory before the work queued ahead of it ran");
  CUDA_IS(cudaFreeAsync(p, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaFreeAsync", "already being freed");
  cudaGetLastError();
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(!pg25::emu::is_device_range(p, 1) && report(false).live_allocations == live - 1, "cudaFreeAsync did not release at its place in the stream");
  std::vector<int> h = q.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 6; }), "the work before cudaFreeAsync saw " << h[0] << ", want 6");
  CUDA_IS(cudaFree(p), cudaErrorInvalidValue);  // a double free
  EXPECT_MISUSE("cudaFree", "is not the start of a device allocation");
  CUDA_IS(cudaFree(q.p + 4), cudaErrorInvalidValue);  // not the start of one
  EXPECT_MISUSE("cudaFree", "is not the start of a device allocation");
  CUDA_OK(cudaFree(nullptr));
  cudaGetLastError();
  EXPECT_NO_MISUSE();
}

void check_events() {
  Stream s1, s2;
  cudaEvent_t e0, e1, e2, unused;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  CUDA_OK(cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
  CUDA_OK(cudaEventCreate(&unused));
  const int n = 256;
  Dev<int> d(n);
  std::vector<int> src(n, 1), host(n, 0), host_after(n, -1), host2(n, -1);
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), n * sizeof(int), cudaMemcpyHostToDevice, s1));
  CUDA_OK(cudaEventRecord(e0, s1));
  pg25::emu::enqueue(s1, [] {  // device work that takes a known time
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return std::string();
  });
  PG25_LAUNCH(add_kernel, 1, n, 0, s1)(d.p, n, 1);
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s1));
  CUDA_OK(cudaEventRecord(e1, s1));
  PG25_LAUNCH(add_kernel, 1, n, 0, s1)(d.p, n, 100);
  CUDA_OK(cudaMemcpyAsync(host_after.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s1));
  float ms = -1.f;
  CUDA_IS(cudaEventElapsedTime(&ms, e0, e1), cudaErrorNotReady);
  cudaGetLastError();
  EXPECT(host[0] == 0, "work ran before any synchronisation");
  // Synchronising on e1 runs the stream up to e1 and no further.
  CUDA_OK(cudaEventSynchronize(e1));
  EXPECT(host[0] == 2 && host[n - 1] == 2, "after cudaEventSynchronize the copy before the event gave " << host[0]);
  EXPECT(host_after[0] == -1, "cudaEventSynchronize ran work queued after the event");
  EXPECT(report(false).queued == 2, report(false).queued << " ops queued after the event, want 2");
  CUDA_OK(cudaEventQuery(e1));
  CUDA_OK(cudaEventQuery(unused));  // never recorded: nothing to wait for
  CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
  EXPECT(ms >= 19.f && ms < 60000.f, "cudaEventElapsedTime over 20 ms of work = " << ms << " ms");
  // s2 waits for e2, recorded on s1 after the rest of s1's work; synchronising s2 alone runs both in order.
  CUDA_OK(cudaEventRecord(e2, s1));
  CUDA_OK(cudaStreamWaitEvent(s2, e2, 0));
  PG25_LAUNCH(scale_kernel, 1, n, 0, s2)(d.p, n, 3);
  CUDA_OK(cudaMemcpyAsync(host2.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s2));
  CUDA_OK(cudaStreamSynchronize(s2));
  EXPECT(host_after[0] == 102, "s1's work before the event gave " << host_after[0] << ", want 102");
  EXPECT(host2[0] == 306 && host2[n - 1] == 306, "s2's work after cudaStreamWaitEvent gave " << host2[0] << ", want (2 + 100) * 3 = 306");
  CUDA_OK(cudaStreamSynchronize(s1));
  for (cudaEvent_t e : {e0, e1, e2, unused}) CUDA_OK(cudaEventDestroy(e));
  EXPECT_NO_MISUSE();
}

// Capture records launches and copies without running them; each graph launch replays them.
void check_graph_capture() {
  Stream s;
  Dev<int> d(1);
  d.upload({5});
  int host = -1;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_OK(cudaStreamIsCapturing(s, &st));
  EXPECT(st == cudaStreamCaptureStatusActive, "cudaStreamIsCapturing during capture gave " << int(st));
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_OK(cudaMemcpyAsync(&host, d.p, sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT(report(false).queued == 0, "captured work was queued on the stream");
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  EXPECT(graph != nullptr, "cudaStreamEndCapture gave no graph");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(host == -1 && d.download()[0] == 5, "captured work ran during capture (host " << host << ", device " << d.download()[0] << ")");
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphLaunch(exec, s));
  EXPECT(host == -1, "a graph launch ran before synchronisation");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 7 && host == 7, "two graph launches gave device " << d.download()[0] << ", host " << host << "; want 7 (+2)");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  // A host-to-device copy in a graph reads the host memory at each replay, not at capture.
  int value = 1;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CUDA_OK(cudaMemcpyAsync(d.p, &value, sizeof(int), cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  value = 42;
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 42, "a captured host-to-device copy delivered " << d.download()[0] << ", want the value at replay, 42");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  EXPECT_NO_MISUSE();
}

// Synchronising a capturing stream is refused and invalidates the capture.
// Memory nodes: allocations a capture makes belong to the graph. One freed within the graph can be
// replayed any number of times, its contents undefined (poisoned) after its free node; one that is
// not freed makes a relaunch fail; an executable graph destroyed while a launch is queued keeps its
// memory until the launch has run (under ASan a use after free would show here).
void check_graph_memory_nodes() {
  Stream s;
  Dev<int> out(2);
  out.upload({0, 0});
  auto record = [&](bool free_inside) {
    int* tmp = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CUDA_OK(cudaMallocAsync(reinterpret_cast<void**>(&tmp), 2 * sizeof(int), s));
    CUDA_OK(cudaMemsetAsync(tmp, 0, 2 * sizeof(int), s));
    PG25_LAUNCH(add_kernel, 1, 2, 0, s)(tmp, 2, 3);
    CUDA_OK(cudaMemcpyAsync(out.p, tmp, sizeof(int), cudaMemcpyDeviceToDevice, s));
    if (free_inside) CUDA_OK(cudaFreeAsync(tmp, s));
    // Read after the free node: poisoned at each replay, so out[1] cannot hold the 3 written above.
    CUDA_OK(cudaMemcpyAsync(out.p + 1, tmp, sizeof(int), cudaMemcpyDeviceToDevice, s));
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    return std::make_pair(graph, exec);
  };
  auto [graph, exec] = record(true);
  for (int i = 0; i < 3; i++) CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphDestroy(graph));  // the executable graph keeps the memory
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphExecDestroy(exec));  // in flight: freed once the launch has run
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> got = out.download();
  EXPECT(got[0] == 3, "a replayed graph gave " << got[0] << ", want 3 at every replay");
  EXPECT(got[1] == -1, "a read after the graph's free node gave " << got[1] << ", not the poison");
  auto [held, held_exec] = record(false);
  CUDA_OK(cudaGraphLaunch(held_exec, s));
  CUDA_IS(cudaGraphLaunch(held_exec, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaGraphLaunch", "not freed within the graph");
  cudaGetLastError();
  CUDA_OK(cudaStreamSynchronize(s));
  CUDA_OK(cudaGraphExecDestroy(held_exec));
  CUDA_OK(cudaGraphDestroy(held));
  CUDA_OK(cudaDeviceGraphMemTrim(0));
  EXPECT(report(false).live_allocations == 1, "graph memory outlived its graphs: " << report(false).live_allocations << " allocations live, want 1");
  EXPECT_NO_MISUSE();
}

void check_capture_sync_invalidates() {
  Stream s;
  Dev<int> d(1);
  d.upload({10});
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_IS(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  EXPECT_MISUSE("cudaStreamSynchronize", "during stream capture");
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_OK(cudaStreamIsCapturing(s, &st));
  EXPECT(st == cudaStreamCaptureStatusInvalidated, "capture status after the synchronise: " << int(st) << ", want invalidated");
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(1);
  CUDA_IS(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT(graph == nullptr, "an invalidated capture gave a graph");
  cudaGetLastError();
  // The stream works normally afterwards; the captured launch never ran.
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 11, "after the invalidated capture the value is " << d.download()[0] << ", want 11");
  EXPECT_NO_MISUSE();
}

// PG25_EMU_DEVICE_MEMORY sets the capacity; running out is an error the caller handles, not misuse.
void check_out_of_memory() {
  EXPECT(report(false).live_bytes == 0, "allocations left over before the check: " << report(false).live_bytes << " bytes");
  setenv("PG25_EMU_DEVICE_MEMORY", "1048576", 1);
  size_t free_b = 0, total = 0;
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(total == 1048576 && free_b == 1048576, "cudaMemGetInfo: free " << free_b << ", total " << total << "; want 1048576 both");
  void* p = reinterpret_cast<void*>(1);
  CUDA_IS(cudaMalloc(&p, 2 << 20), cudaErrorMemoryAllocation);
  EXPECT(p == nullptr, "a failed cudaMalloc left " << p);
  CUDA_IS(cudaGetLastError(), cudaErrorMemoryAllocation);
  void* a = nullptr;
  CUDA_OK(cudaMalloc(&a, 768 << 10));
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(free_b == 256u << 10, "cudaMemGetInfo free after 768 KiB: " << free_b);
  void* b = nullptr;
  CUDA_IS(cudaMalloc(&b, 512 << 10), cudaErrorMemoryAllocation);
  {
    Stream s;
    CUDA_IS(cudaMallocAsync(&b, 512 << 10, s), cudaErrorMemoryAllocation);
  }
  CUDA_OK(cudaFree(a));
  CUDA_OK(cudaMalloc(&b, 1 << 20));  // exactly the capacity
  CUDA_OK(cudaFree(b));
  cudaGetLastError();
  unsetenv("PG25_EMU_DEVICE_MEMORY");
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(total == size_t(80) << 30, "without PG25_EMU_DEVICE_MEMORY the capacity is " << total);
  EXPECT_NO_MISUSE();
}

void check_destroyed_stream() {
  Dev<int> d(4);
  std::vector<int> src{1, 2, 3, 4}, host(4, 0);
  cudaStream_t s = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), 16, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, 16, cudaMemcpyDeviceToHost, s));
  CUDA_OK(cudaStreamDestroy(s));
  EXPECT(host == src, "work queued before cudaStreamDestroy did not complete");
  // No stream is created from here on, so the handle cannot name a new one.
  CUDA_IS(cudaMemcpyAsync(d.p, src.data(), 16, cudaMemcpyHostToDevice, s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaMemcpyAsync", "not a live stream");
  PG25_LAUNCH(add_kernel, 1, 4, 0, s)(d.p, 4, 1);
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("add_kernel", "not a live stream");
  CUDA_IS(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaStreamSynchronize", "not a live stream");
  CUDA_IS(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaStreamDestroy", "not a live stream");
  cudaGetLastError();
  EXPECT(d.download() == src, "a launch or copy on the destroyed stream ran");
  EXPECT_NO_MISUSE();
}

// CUDA keeps the current device per host thread, and work for a stream must be issued with the
// stream's device current: the multi-GPU backend relies on the emulation reporting it otherwise.
void check_devices_per_thread() {
  setenv("PG25_EMU_DEVICES", "2", 1);
  int count = 0, dev = -1;
  CUDA_OK(cudaGetDeviceCount(&count));
  EXPECT(count == 2, "PG25_EMU_DEVICES=2 gave " << count << " devices");
  CUDA_IS(cudaSetDevice(2), cudaErrorInvalidDevice);
  EXPECT_MISUSE("cudaSetDevice(2)");
  cudaGetLastError();
  CUDA_OK(cudaSetDevice(1));
  std::thread([&] { cudaGetDevice(&dev); }).join();
  EXPECT(dev == 0, "a new thread starts on device " << dev << ", not 0");
  cudaStream_t s1 = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));  // a stream of device 1
  Dev<int> d(4);
  std::vector<int> zeros(4, 0);
  CUDA_OK(cudaMemcpy(d.p, zeros.data(), 16, cudaMemcpyHostToDevice));
  PG25_LAUNCH(add_kernel, 1, 4, 0, s1)(d.p, 4, 1);
  CUDA_OK(cudaGetLastError());
  std::thread([&] {
    PG25_LAUNCH(add_kernel, 1, 4, 0, s1)(d.p, 4, 10);  // device 0 current here
    dev = int(cudaGetLastError());
  }).join();
  EXPECT(dev == int(cudaErrorInvalidResourceHandle), "a launch on another device's stream returned " << cudaGetErrorName(cudaError_t(dev)));
  EXPECT_MISUSE("add_kernel", "stream of device 1", "device 0 is current");
  CUDA_OK(cudaStreamSynchronize(s1));
  EXPECT(d.download() == std::vector<int>(4, 1), "the wrong-device launch ran, or the right one did not");
  CUDA_OK(cudaStreamDestroy(s1));
  CUDA_OK(cudaSetDevice(0));
  unsetenv("PG25_EMU_DEVICES");
  EXPECT_NO_MISUSE();
}

void check_old_driver() {
  setenv("PG25_EMU_DRIVER_VERSION", "12080", 1);
  int count = -1, version = 0;
  CUDA_IS(cudaGetDeviceCount(&count), cudaErrorInsufficientDriver);
  EXPECT(count == 0, "with an old driver cudaGetDeviceCount gave " << count << " devices");
  CUDA_OK(cudaDriverGetVersion(&version));
  EXPECT(version == 12080, "cudaDriverGetVersion gave " << version);
  unsetenv("PG25_EMU_DRIVER_VERSION");
  CUDA_OK(cudaGetDeviceCount(&count));
  EXPECT(count == 1, "cudaGetDeviceCount gave " << count);
  setenv("PG25_EMU_DEVICES", "0", 1);
  CUDA_IS(cudaGetDeviceCount(&count), cudaErrorNoDevice);
  unsetenv("PG25_EMU_DEVICES");
  cudaGetLastError();
  EXPECT_NO_MISUSE();
}

// An invalid launch configuration is a launch error read with cudaGetLastError; nothing runs.
void check_launch_config() {
  Stream s;
  Dev<int> d(32);
  CUDA_OK(cudaMemsetAsync(d.p, 0, 32 * sizeof(int), s));
  struct Bad {
    dim3 grid, block;
  };
  const Bad bad[] = {{dim3(1), dim3(1025)}, {dim3(1), dim3(32, 32, 2)}, {dim3(1), dim3(1, 1, 65)}, {dim3(1), dim3(0)}, {dim3(0), dim3(32)}, {dim3(1, 65536), dim3(32)}};
  for (const Bad& b : bad) {
    PG25_LAUNCH(add_kernel, b.grid, b.block, 0, s)(d.p, 32, 1000);
    CUDA_IS(cudaGetLastError(), cudaErrorInvalidConfiguration);
    CUDA_OK(cudaGetLastError());  // read once, then cleared
    EXPECT_MISUSE("launch of add_kernel");
  }
  EXPECT(report(false).queued == 1, "an invalid launch was queued");  // only the memset
  PG25_LAUNCH(add_kernel, 1, 1024, 0, s)(d.p, 32, 1);  // the largest block is fine
  PG25_LAUNCH(add_kernel, dim3(2, 1, 1), dim3(16, 1, 1), 0, s)(d.p, 32, 1);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> h = d.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 2; }), "after the valid launches d[0] = " << h[0] << ", want 2");
  EXPECT_NO_MISUSE();
}

// The report is read while other threads use streams (the addon's tests read it between jobs that
// run on libuv's threads): reading it while a capturing stream is misused must not deadlock.
void check_report_concurrent() {
  Stream s;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) report(false);
  });
  const uint64_t rounds = 50000;  // report() taking the locks in the opposite order hung within 20000 of these
  for (uint64_t i = 0; i < rounds; i++) {
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    cudaStreamSynchronize(s);  // refused during capture: noted as misuse with the stream's lock held
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(s, &g);
  }
  stop = true;
  reader.join();
  pg25::emu::Report r = report(true);
  EXPECT(r.misuse_count == rounds, r.misuse_count << " misuse notes, want " << rounds);
  cudaGetLastError();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// 6. The cuBLASLt stand-in, called through the symbols the loader resolves, declared here from the
// documented cublasLt.h signatures (CUDA 13) with opaque handle types.

namespace {

struct LtContext;
struct LtDesc;
struct LtLayout;
struct LtPref;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {
  LtAlgo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};

// The documented enum values we use.
constexpr int kOk = 0, kInvalidValue = 7;
constexpr int kR16F = 2, kR32F = 0, kCompute32F = 68;
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kLayoutRows = 2, kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
constexpr int kPrefMaxWorkspace = 1, kPrefAlignA = 5, kPrefAlignB = 6, kPrefAlignC = 7, kPrefAlignD = 8;
constexpr uint32_t kEpiDefault = 1, kEpiRelu = 2, kEpiBias = 4, kEpiReluBias = 6;

struct Lt {
  int (*create)(LtContext**);
  int (*destroy)(LtContext*);
  int (*desc_create)(LtDesc**, int compute, int scale);
  int (*desc_destroy)(LtDesc*);
  int (*desc_set)(LtDesc*, int attr, const void* buf, size_t size);
  int (*layout_create)(LtLayout**, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*layout_destroy)(LtLayout*);
  int (*layout_set)(LtLayout*, int attr, const void* buf, size_t size);
  int (*pref_create)(LtPref**);
  int (*pref_destroy)(LtPref*);
  int (*pref_set)(LtPref*, int attr, const void* buf, size_t size);
  int (*heuristic)(LtContext*, LtDesc*, LtLayout*, LtLayout*, LtLayout*, LtLayout*, LtPref*, int requested, LtHeuristic* results, int* found);
  int (*matmul)(LtContext*, LtDesc*, const void* alpha, const void* A, LtLayout*, const void* B, LtLayout*, const void* beta, const void* C, LtLayout*, void* D,
                LtLayout*, const LtAlgo* algo, void* workspace, size_t workspace_bytes, cudaStream_t stream);
  LtContext* handle = nullptr;
};

template <class F>
bool resolve(F& fn, const char* name) {
  fn = reinterpret_cast<F>(pg25::emu::library_symbol("cublasLt", name));
  EXPECT(fn != nullptr, "the emulated cublasLt does not export " << name);
  return fn != nullptr;
}

bool load_lt(Lt& lt) {
  bool ok = resolve(lt.create, "cublasLtCreate") & resolve(lt.destroy, "cublasLtDestroy") & resolve(lt.desc_create, "cublasLtMatmulDescCreate") &
            resolve(lt.desc_destroy, "cublasLtMatmulDescDestroy") & resolve(lt.desc_set, "cublasLtMatmulDescSetAttribute") &
            resolve(lt.layout_create, "cublasLtMatrixLayoutCreate") & resolve(lt.layout_destroy, "cublasLtMatrixLayoutDestroy") &
            resolve(lt.layout_set, "cublasLtMatrixLayoutSetAttribute") & resolve(lt.pref_create, "cublasLtMatmulPreferenceCreate") &
            resolve(lt.pref_destroy, "cublasLtMatmulPreferenceDestroy") & resolve(lt.pref_set, "cublasLtMatmulPreferenceSetAttribute") &
            resolve(lt.heuristic, "cublasLtMatmulAlgoGetHeuristic") & resolve(lt.matmul, "cublasLtMatmul");
  EXPECT(pg25::emu::library_symbol("cublasLt", "cublasLtNoSuchFunction") == nullptr, "an unknown symbol resolved");
  if (ok) EXPECT(lt.create(&lt.handle) == kOk && lt.handle, "cublasLtCreate failed");
  return ok && lt.handle;
}

#define LT_OK(expr)                                          \
  do {                                                       \
    int st_ = (expr);                                        \
    EXPECT(st_ == kOk, #expr << " returned status " << st_); \
  } while (0)

// One column-major fp16 problem: D = epilogue(alpha op(A) op(B) + beta C + bias), batched.
struct Gemm {
  bool ta = false, tb = false;
  int64_t m = 5, n = 7, k = 9, pad = 3, batch = 1;  // leading dimension = rows + pad
  float alpha = 1.f, beta = 0.f;
  uint32_t epilogue = kEpiDefault;
  uint32_t align = 0;  // the preference's minimum alignment for A-D (0: the default, 256)
};

// The matrices of a problem, held on the host (fp16 patterns) and on the device.
struct GemmData {
  const Gemm& g;
  int64_t arows, acols, brows, bcols, lda, ldb, ldc, sa, sb, sc;
  std::vector<uint16_t> a, b, c, bias;
  Dev<uint16_t> da, db, dc, dd, dbias;
  LtDesc* desc = nullptr;
  LtLayout *la = nullptr, *lb = nullptr, *lc = nullptr, *ld = nullptr;
  LtPref* pref = nullptr;
  LtHeuristic heur{};

  static int64_t size_of(int64_t ld, int64_t cols, int64_t stride, int64_t batch) { return (batch - 1) * stride + ld * cols; }

  GemmData(const Gemm& gm, std::mt19937& rng)
      : g(gm),
        arows(gm.ta ? gm.k : gm.m), acols(gm.ta ? gm.m : gm.k), brows(gm.tb ? gm.n : gm.k), bcols(gm.tb ? gm.k : gm.n),
        lda(arows + gm.pad), ldb(brows + gm.pad + 1), ldc(gm.m + gm.pad + 2),
        sa(lda * acols + 8), sb(ldb * bcols + 16), sc(ldc * gm.n + 24),
        a(fill(size_of(lda, acols, sa, gm.batch), rng, 1.f)), b(fill(size_of(ldb, bcols, sb, gm.batch), rng, 1.f)),
        c(fill(size_of(ldc, gm.n, sc, gm.batch), rng, 2.f)), bias(fill(gm.m, rng, 1.5f)),
        da(a.size()), db(b.size()), dc(c.size()), dd(c.size()), dbias(bias.size()) {
    da.upload(a), db.upload(b), dc.upload(c), dbias.upload(bias);
  }
  static std::vector<uint16_t> fill(int64_t count, std::mt19937& rng, float scale) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<uint16_t> v(static_cast<size_t>(count));
    for (auto& x : v) x = emu_half(u(rng));
    return v;
  }

  // Descriptors, layouts, preference and heuristic, as our backend sets them up.
  // A descriptor already made (by the caller) is used as it is: its transposes and epilogue are the defaults.
  bool plan(Lt& lt, const void* bias_ptr) {
    if (!desc) {
      int32_t ta = g.ta, tb = g.tb;
      LT_OK(lt.desc_create(&desc, kCompute32F, kR32F));
      LT_OK(lt.desc_set(desc, kDescTransA, &ta, sizeof ta));
      LT_OK(lt.desc_set(desc, kDescTransB, &tb, sizeof tb));
      LT_OK(lt.desc_set(desc, kDescEpilogue, &g.epilogue, sizeof g.epilogue));
      if (g.epilogue & kEpiBias) LT_OK(lt.desc_set(desc, kDescBiasPointer, &bias_ptr, sizeof bias_ptr));
    }
    layout(lt, &la, arows, acols, lda, sa);
    layout(lt, &lb, brows, bcols, ldb, sb);
    layout(lt, &lc, g.m, g.n, ldc, sc);
    layout(lt, &ld, g.m, g.n, ldc, sc);
    LT_OK(lt.pref_create(&pref));
    uint64_t workspace = 0;
    LT_OK(lt.pref_set(pref, kPrefMaxWorkspace, &workspace, sizeof workspace));
    if (g.align)
      for (int attr : {kPrefAlignA, kPrefAlignB, kPrefAlignC, kPrefAlignD}) LT_OK(lt.pref_set(pref, attr, &g.align, sizeof g.align));
    int found = 0;
    int st = lt.heuristic(lt.handle, desc, la, lb, lc, ld, pref, 1, &heur, &found);
    EXPECT(st == kOk && found == 1 && heur.state == kOk, "cublasLtMatmulAlgoGetHeuristic: status " << st << ", found " << found);
    return st == kOk && found == 1;
  }
  void layout(Lt& lt, LtLayout** l, int64_t rows, int64_t cols, int64_t ldim, int64_t stride) {
    LT_OK(lt.layout_create(l, kR16F, uint64_t(rows), uint64_t(cols), ldim));
    int32_t batch = int32_t(g.batch);
    LT_OK(lt.layout_set(*l, kLayoutBatchCount, &batch, sizeof batch));
    LT_OK(lt.layout_set(*l, kLayoutStridedBatchOffset, &stride, sizeof stride));
  }
  int matmul(Lt& lt, const void* A, const void* B, const void* C, void* D, cudaStream_t s) {
    return lt.matmul(lt.handle, desc, &g.alpha, A, la, B, lb, &g.beta, C, lc, D, ld, &heur.algo, nullptr, 0, s);
  }
  void release(Lt& lt) {
    LT_OK(lt.desc_destroy(desc));
    for (LtLayout* l : {la, lb, lc, ld}) LT_OK(lt.layout_destroy(l));
    LT_OK(lt.pref_destroy(pref));
  }

  // Compares D with a double-precision reference; C may be ignored (beta = 0). Elements outside the
  // matrices (padding rows, gaps between batches) must still hold the allocation's poison.
  void verify(const char* what) {
    std::vector<uint16_t> d = dd.download();
    const Format& f = half_format();
    int bad = 0, relu_zeros = 0;
    std::vector<bool> inside(d.size(), false);
    for (int64_t bt = 0; bt < g.batch; bt++)
      for (int64_t j = 0; j < g.n; j++)
        for (int64_t i = 0; i < g.m; i++) {
          double acc = 0, mag = 0;
          for (int64_t q = 0; q < g.k; q++) {
            double x = f.value(a[size_t(bt * sa + (g.ta ? i * lda + q : q * lda + i))]);
            double y = f.value(b[size_t(bt * sb + (g.tb ? q * ldb + j : j * ldb + q))]);
            acc += x * y;
            mag += std::fabs(x * y);
          }
          size_t ci = size_t(bt * sc + j * ldc + i);
          double ref = double(g.alpha) * acc, scale = std::fabs(double(g.alpha)) * mag;
          if (g.beta != 0.f) ref += double(g.beta) * f.value(c[ci]), scale += std::fabs(double(g.beta) * f.value(c[ci]));
          if (g.epilogue & kEpiBias) ref += f.value(bias[size_t(i)]), scale += std::fabs(f.value(bias[size_t(i)]));
          if (g.epilogue & kEpiRelu) ref = std::max(ref, 0.0);
          // fp16 rounding of the output (half an ulp, 2^-11 relative) plus fp32 accumulation error.
          double tol = std::ldexp(std::fabs(ref), -10) + double(g.k + 8) * std::ldexp(scale, -22) + std::ldexp(1.0, -24);
          double got = f.value(d[ci]);
          inside[ci] = true;
          relu_zeros += got == 0.0;
          if (!(std::fabs(got - ref) <= tol) && bad++ < 4)
            EXPECT(false, what << ": D[" << bt << "][" << i << "," << j << "] = " << got << ", reference " << ref << " (tolerance " << tol << ")");
        }
    EXPECT(bad == 0, what << ": " << bad << " elements of D differ from the reference");
    if (g.epilogue & kEpiRelu) EXPECT(relu_zeros > 0, what << ": RELU produced no zeros (the test data should have negative sums)");
    int touched = 0;
    for (size_t i = 0; i < d.size(); i++) touched += !inside[i] && d[i] != 0xffff;
    EXPECT(touched == 0, what << ": " << touched << " elements outside D were written");
  }
};

struct LtSession {
  Lt lt{};
  bool ok = false;
  LtSession() { ok = load_lt(lt); }
  ~LtSession() {
    if (lt.handle) lt.destroy(lt.handle);
  }
};

// Runs one problem end to end and checks D.
void run_gemm(Lt& lt, const Gemm& g, const char* what, std::mt19937& rng) {
  Stream s;
  GemmData m(g, rng);
  if (!m.plan(lt, m.dbias.p)) return m.release(lt);
  int st = m.matmul(lt, m.da.p, m.db.p, m.dc.p, m.dd.p, s);
  EXPECT(st == kOk, what << ": cublasLtMatmul returned " << st);
  CUDA_OK(cudaStreamSynchronize(s));
  m.release(lt);
  if (st == kOk) m.verify(what);
}

void check_lt_gemm() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(7);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Gemm g;
      g.ta = ta, g.tb = tb, g.batch = 3, g.alpha = 0.5f, g.beta = 2.f;
      std::string what = std::string(ta ? "T" : "N") + "/" + (tb ? "T" : "N") + " batch 3, alpha 0.5, beta 2";
      run_gemm(lt.lt, g, what.c_str(), rng);
      g.batch = 1, g.m = 17, g.n = 3, g.k = 33, g.alpha = 1.f, g.beta = 1.f;  // another shape, accumulating into C
      what = std::string(ta ? "T" : "N") + "/" + (tb ? "T" : "N") + " 17x3x33, beta 1";
      run_gemm(lt.lt, g, what.c_str(), rng);
    }
  EXPECT(report(false).matmuls == 8, report(false).matmuls << " matmuls counted, want 8");
  EXPECT_NO_MISUSE();
}

void check_lt_epilogues() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(11);
  for (uint32_t epi : {kEpiBias, kEpiReluBias, kEpiRelu})
    for (bool ta : {false, true}) {
      Gemm g;
      g.ta = ta, g.tb = !ta, g.batch = 3, g.alpha = 0.5f, g.beta = 2.f, g.epilogue = epi;
      std::string what = std::string(epi == kEpiBias ? "BIAS" : epi == kEpiRelu ? "RELU" : "RELU_BIAS") + (ta ? " T/N" : " N/T");
      run_gemm(lt.lt, g, what.c_str(), rng);
    }
  EXPECT_NO_MISUSE();
}

// beta = 0: C is not read, so a C full of NaN (the allocation's poison, never written) gives finite D.
void check_lt_beta0() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(13);
  Stream s;
  Gemm g;
  g.batch = 3, g.alpha = 1.5f, g.beta = 0.f;
  GemmData m(g, rng);
  Dev<uint16_t> nan_c(m.c.size());  // poisoned: 0xffff is NaN
  if (m.plan(lt.lt, nullptr)) {
    LT_OK(m.matmul(lt.lt, m.da.p, m.db.p, nan_c.p, m.dd.p, s));
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("beta 0 with a NaN C");
  }
  m.release(lt.lt);
  EXPECT_NO_MISUSE();
}

// A plan made for 16-byte alignment refuses an operand only 2-byte aligned (and one made for the
// default 256 bytes refuses a 16-byte aligned one); 16-byte aligned operands are fine for the first.
void check_lt_alignment() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(17);
  Stream s;
  Gemm g;
  g.align = 16;
  GemmData m(g, rng);
  Dev<uint16_t> a_room(m.a.size() + 64);  // room for the offset operands
  CUDA_OK(cudaMemcpy(a_room.p + 8, m.a.data(), m.a.size() * 2, cudaMemcpyHostToDevice));
  if (m.plan(lt.lt, nullptr)) {
    int st = m.matmul(lt.lt, a_room.p + 1, m.db.p, m.dc.p, m.dd.p, s);  // 2 bytes past a 256-byte boundary
    EXPECT(st != kOk, "a 2-byte aligned A was accepted by a plan for 16-byte alignment");
    EXPECT_MISUSE("cublasLtMatmul", "A at", "2-byte aligned", "chosen for 16");
    EXPECT(report(false).queued == 0, "the refused matmul was queued");
    LT_OK(m.matmul(lt.lt, a_room.p + 8, m.db.p, m.dc.p, m.dd.p, s));  // 16 bytes past: what the plan allows
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("16-byte aligned A");
    EXPECT_NO_MISUSE();
  }
  m.release(lt.lt);
  Gemm g256 = g;
  g256.align = 0;
  GemmData m2(g256, rng);
  if (m2.plan(lt.lt, nullptr)) {
    EXPECT(m2.matmul(lt.lt, m2.da.p, m2.db.p, m2.dc.p, a_room.p + 8, s) != kOk, "a 16-byte aligned D was accepted by a plan for 256-byte alignment");
    EXPECT_MISUSE("cublasLtMatmul", "D at", "16-byte aligned", "chosen for 256");
  }
  m2.release(lt.lt);
}

// An operand whose layout reaches past the end of its allocation is refused before anything runs.
void check_lt_extent() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(19);
  Stream s;
  Gemm g;
  g.batch = 2;
  GemmData m(g, rng);
  // B's last element lies (batch - 1) strides, (cols - 1) leading dimensions and rows - 1 elements in.
  int64_t need = (g.batch - 1) * m.sb + (m.bcols - 1) * m.ldb + m.brows;
  Dev<uint16_t> short_b(static_cast<size_t>(need - 1)), exact_b(static_cast<size_t>(need));
  if (m.plan(lt.lt, nullptr)) {
    EXPECT(m.matmul(lt.lt, m.da.p, short_b.p, m.dc.p, m.dd.p, s) != kOk, "a B extending one element past its allocation was accepted");
    EXPECT_MISUSE("cublasLtMatmul", "B spans", "not inside one device allocation");
    LT_OK(m.matmul(lt.lt, m.da.p, exact_b.p, m.dc.p, m.dd.p, s));  // exactly the extent: fine
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT_NO_MISUSE();
    std::vector<uint16_t> host_d(m.c.size() + 128);
    auto* aligned = reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(host_d.data()) + 255) & ~uintptr_t(255));  // only the range is wrong
    EXPECT(m.matmul(lt.lt, m.da.p, m.db.p, m.dc.p, aligned, s) != kOk, "a host pointer was accepted for D");
    EXPECT_MISUSE("cublasLtMatmul", "D spans", "not inside one device allocation");
    EXPECT(report(false).queued == 0, "a refused matmul was queued");
  }
  m.release(lt.lt);
}

// Attributes of the wrong size are refused with CUBLAS_STATUS_INVALID_VALUE and change nothing.
void check_lt_attribute_size() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(23);
  Gemm g;  // N/N, m 5, k 9: a transposed A would not fit
  GemmData m(g, rng);
  LT_OK(lt.lt.desc_create(&m.desc, kCompute32F, kR32F));
  int64_t wide = 1;
  EXPECT(lt.lt.desc_set(m.desc, kDescTransA, &wide, sizeof wide) == kInvalidValue, "an 8-byte CUBLASLT_MATMUL_DESC_TRANSA was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_TRANSA", "takes 4 bytes, got 8");
  uint16_t narrow = 1;
  EXPECT(lt.lt.desc_set(m.desc, kDescEpilogue, &narrow, sizeof narrow) == kInvalidValue, "a 2-byte CUBLASLT_MATMUL_DESC_EPILOGUE was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_EPILOGUE", "takes 4 bytes");
  EXPECT(lt.lt.desc_set(m.desc, kDescTransA, nullptr, 4) == kInvalidValue, "a null attribute buffer was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_TRANSA");
  LtLayout* l = nullptr;
  LT_OK(lt.lt.layout_create(&l, kR16F, 5, 9, 8));
  uint32_t rows32 = 9;
  EXPECT(lt.lt.layout_set(l, kLayoutRows, &rows32, sizeof rows32) == kInvalidValue, "a 4-byte CUBLASLT_MATRIX_LAYOUT_ROWS was accepted");
  EXPECT_MISUSE("CUBLASLT_MATRIX_LAYOUT_ROWS", "takes 8 bytes, got 4");
  LT_OK(lt.lt.layout_destroy(l));
  LtPref* p = nullptr;
  LT_OK(lt.lt.pref_create(&p));
  uint64_t align64 = 16;
  EXPECT(lt.lt.pref_set(p, kPrefAlignA, &align64, sizeof align64) == kInvalidValue, "an 8-byte CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", "takes 4 bytes, got 8");
  LT_OK(lt.lt.pref_destroy(p));
  // The refused TRANSA (value 1) left A untransposed: the N/N problem still plans and computes correctly.
  Stream s;
  if (m.plan(lt.lt, nullptr)) {
    LT_OK(m.matmul(lt.lt, m.da.p, m.db.p, m.dc.p, m.dd.p, s));
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("after refused attributes");
  }
  m.release(lt.lt);
  EXPECT_NO_MISUSE();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

namespace {

struct Check {
  const char* name;
  void (*fn)();
};
const Check kChecks[] = {
    {"half_all_patterns", check_half_patterns},
    {"half_round_nearest_even", check_half_rounding},
    {"half_matches_f16c", check_half_f16c},
    {"bf16_all_patterns", check_bf16_patterns},
    {"bf16_round_nearest_even", check_bf16_rounding},
    {"simt_block_reduce", check_block_reduce},
    {"simt_shuffles", check_shuffles},
    {"simt_votes", check_votes},
    {"simt_syncwarp", check_syncwarp},
    {"simt_atomics", check_atomics},
    {"simt_dynamic_shared", check_dynamic_shared},
    {"fail_syncthreads_skipped", check_fail_syncthreads},
    {"fail_shuffle_mask_omits_caller", check_fail_mask_omits_caller},
    {"fail_shuffle_exited_lane", check_fail_exited_lane},
    {"fail_warp_divergence", check_fail_divergence},
    {"cudart_streams_deferred", check_stream_deferred},
    {"cudart_memcpy2d", check_memcpy2d},
    {"cudart_copy_validation", check_copy_validation},
    {"cudart_alloc_align_poison", check_alloc_align_poison},
    {"cudart_free_async", check_free_async},
    {"cudart_events", check_events},
    {"cudart_graph_capture", check_graph_capture},
    {"cudart_graph_memory_nodes", check_graph_memory_nodes},
    {"cudart_capture_sync_invalidates", check_capture_sync_invalidates},
    {"cudart_out_of_memory", check_out_of_memory},
    {"cudart_destroyed_stream", check_destroyed_stream},
    {"cudart_old_driver", check_old_driver},
    {"cudart_devices_per_thread", check_devices_per_thread},
    {"cudart_invalid_launch_config", check_launch_config},
    {"cudart_report_concurrent", check_report_concurrent},
    {"cublaslt_gemm", check_lt_gemm},
    {"cublaslt_epilogues", check_lt_epilogues},
    {"cublaslt_beta0_ignores_c", check_lt_beta0},
    {"cublaslt_unaligned_refused", check_lt_alignment},
    {"cublaslt_extent_refused", check_lt_extent},
    {"cublaslt_attribute_size_refused", check_lt_attribute_size},
};

// Runs one check between clean states: the report reset before, and after it no unexpected misuse,
// no work left queued, no allocation leaked.
bool run_check(const Check& c) {
  g_check = c.name;
  g_failures.clear();
  g_failure_count = 0;
  g_skip.clear();
  cudaGetLastError();
  pg25::emu::Report before = report(true);
  alarm(60);
  try {
    c.fn();
  } catch (const std::exception& e) {
    note_failure(0, std::string("exception: ") + e.what());
  }
  cudaDeviceSynchronize();
  pg25::emu::Report after = report(true);
  alarm(0);
  if (after.misuse_count) note_failure(0, "misuse left unexamined: " + join(after.misuse));
  if (after.queued) note_failure(0, std::to_string(after.queued) + " ops left queued");
  if (after.live_allocations != before.live_allocations)
    note_failure(0, "live allocations went from " + std::to_string(before.live_allocations) + " to " + std::to_string(after.live_allocations));
  if (g_failure_count) {
    std::string msg = "FAIL " + std::string(c.name) + ": " + join(g_failures);
    if (g_failure_count > int(g_failures.size())) msg += " (" + std::to_string(g_failure_count) + " failures in all)";
    std::printf("%s\n", msg.c_str());
  } else if (!g_skip.empty()) {
    std::printf("skip %s: %s\n", c.name, g_skip.c_str());
  } else {
    std::printf("ok %s\n", c.name);
  }
  std::fflush(stdout);
  return g_failure_count == 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Settings the checks depend on come from the checks, not from the caller's environment.
  for (const char* v : {"PG25_EMU_DEVICE_MEMORY", "PG25_EMU_DRIVER_VERSION", "PG25_EMU_DEVICES", "PG25_EMU_VERBOSE"}) unsetenv(v);
  setenv("PG25_THREADS", "4", 0);  // blocks on several CPU threads even on a one-core machine
  signal(SIGALRM, on_alarm);
  std::set<std::string> only(argv + 1, argv + argc);
  int failed = 0, ran = 0;
  for (const Check& c : kChecks) {
    if (!only.empty() && !only.count(c.name)) continue;
    ran++;
    failed += !run_check(c);
  }
  if (ran == 0) {
    std::printf("FAIL selection: no check is named %s\n", argc > 1 ? argv[1] : "");
    return 1;
  }
  std::printf("%d of %d checks passed\n", ran - failed, ran);
  return failed ? 1 : 0;
}
