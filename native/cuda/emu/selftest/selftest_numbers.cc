// The emulation's fp16 and bf16 conversions (cuda_fp16.h, cuda_bf16.h stand-ins), checked by
// selftest_main.cc. The references decode every pattern from the format's definition in
// double precision and round by comparing 2x with the sum of the two neighbouring representable
// values (exact in double), ties to the even pattern; the first pattern past the largest finite value
// stands for 2^(emax+1), so overflow rounds to infinity exactly as IEEE 754 says.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PG25_SELFTEST_X86 1
#endif

#include "../include/cuda_bf16.h"
#include "../include/cuda_fp16.h"
#include "selftest.h"

namespace selftest {

namespace {

struct Format {
  const char* name;
  int mant;                   // stored mantissa bits
  int bias;                   // exponent bias
  uint16_t top;               // the infinity pattern
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
  for (float x : {0.f, -0.f, INFINITY, -INFINITY, NAN, -NAN, bits_float(0x7f800001), bits_float(0xffc00000), bits_float(0x7fbfffff),
                  FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN, bits_float(0x007fffff)})
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
      {65504.f, 0x7bff},               // the largest finite half
      {65519.99f, 0x7bff},             // just below the midpoint to 65536
      {65520.f, 0x7c00},               // the midpoint: ties to the even pattern, which is infinity
      {std::ldexp(1.f, -24), 0x0001},  // the smallest subnormal
      {std::ldexp(1.f, -25), 0x0000},  // half of it: a tie, to even zero
      {std::ldexp(3.f, -26), 0x0001},  // 0.75 of it: nearer the subnormal
      {std::nextafter(std::ldexp(1.f, -25), 1.f), 0x0001},
      {std::ldexp(2047.f, -25), 0x0400},     // between the largest subnormal and 2^-14: tie, to even 0x400
      {std::ldexp(2045.f, -25), 0x03fe},     // tie between 0x3fe and 0x3ff: to even
      {1.f + std::ldexp(1.f, -11), 0x3c00},  // tie between 1 and 1 + 2^-10: to even
      {1.f + std::ldexp(3.f, -11), 0x3c02},
      {2049.f, 0x6800},  // ulp 2: tie between 2048 and 2050
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
    skip("this CPU has no F16C");
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
  skip("not an x86 CPU");
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
      {FLT_MAX, 0x7f80},                 // past the midpoint to 2^128: infinity
      {bits_float(0x7f7f7fff), 0x7f7f},  // just below it
      {bits_float(0x7f7f8000), 0x7f80},  // the midpoint: ties to the even pattern, infinity
      {-0.f, 0x8000},
      {INFINITY, 0x7f80},
      {-INFINITY, 0xff80},
      {FLT_TRUE_MIN, 0x0000},
      {bits_float(0x00008000), 0x0000},  // half the smallest bf16 subnormal: tie, to even zero
      {bits_float(0x00018000), 0x0002},  // 1.5 subnormal ulps: tie, to even
      {std::ldexp(1.f, -133), 0x0001},   // the smallest bf16 subnormal
  };
  for (const Case& c : cases) EXPECT(emu_bf16(c.x) == c.want, "bf16(" << c.x << ") = " << hex(emu_bf16(c.x)) << ", want " << hex(c.want));
  // A NaN whose payload lies only in the dropped bits must not round to infinity.
  for (uint32_t b : {0x7f800001u, 0x7f80ffffu, 0xff800001u, 0x7fc00000u, 0xffffffffu})
    EXPECT(f.is_nan(emu_bf16(bits_float(b))), "bf16 of NaN " << hex(b) << " = " << hex(emu_bf16(bits_float(b))));
}

}  // namespace

uint16_t emu_half(float x) { return __half_as_ushort(__float2half_rn(x)); }
double half_value(uint16_t p) { return half_format().value(p); }

std::vector<Check> number_checks() {
  return {
      {"half_all_patterns", check_half_patterns}, {"half_round_nearest_even", check_half_rounding}, {"half_matches_f16c", check_half_f16c},
      {"bf16_all_patterns", check_bf16_patterns}, {"bf16_round_nearest_even", check_bf16_rounding},
  };
}

}  // namespace selftest
