// CUDA emulation: __half with IEEE binary16 storage and round-to-nearest-even conversions.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

namespace pg25::emu {
inline uint16_t float_to_half_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN stays a (quiet) NaN
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);                         // rounds past 65504: infinity
  if (ax < 0x38800000u) {                                                         // below 2^-14: subnormal or zero
    if (ax < 0x33000000u) return uint16_t(sign);                                  // at most 2^-25: ties to even zero
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    int shift = 126 - int(ax >> 23);
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return uint16_t(sign | q);
  }
  uint32_t r = ax + 0x0fffu + ((ax >> 13) & 1u);  // round the 13 dropped bits to nearest even; a carry bumps the exponent
  return uint16_t(sign | ((r - 0x38000000u) >> 13));
}
inline float half_bits_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
  if (e == 0) {
    float v = float(m) * (1.f / 16777216.f);  // m * 2^-24, exact
    return sign ? -v : v;
  }
  if (e == 31) x = sign | 0x7f800000u | (m << 13);
  else x = sign | ((e + 112u) << 23) | (m << 13);
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
}  // namespace pg25::emu

struct __half {
  uint16_t x;
  __half() = default;
  __half(float f) : x(pg25::emu::float_to_half_bits(f)) {}
  operator float() const { return pg25::emu::half_bits_to_float(x); }
};

inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return float(h); }
inline __half __ushort_as_half(unsigned short bits) {
  __half h;
  h.x = bits;
  return h;
}
inline unsigned short __half_as_ushort(__half h) { return h.x; }
