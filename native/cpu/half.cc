#include "half.h"

#include <cmath>
#include <cstring>

#include "isa.h"

#ifdef PG25_X86
#include <immintrin.h>
#endif

namespace pg25::cpu {
namespace {

uint32_t bits_of(float v) {
  uint32_t x;
  std::memcpy(&x, &v, 4);
  return x;
}
float float_of(uint32_t x) {
  float v;
  std::memcpy(&v, &x, 4);
  return v;
}

float f16_to_f32(uint16_t h) {
  uint32_t s = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu;
  if (e == 0x1f) return float_of(s | 0x7f800000u | (m << 13));
  if (e != 0) return float_of(s | ((e + 112) << 23) | (m << 13));
  float v = float(m) * 5.9604644775390625e-8f;  // subnormal: m * 2^-24
  return s ? -v : v;
}

void widen_generic(const uint16_t* src, float* dst, size_t n, Half kind) {
  if (kind == Half::BF16) {
    for (size_t i = 0; i < n; i++) dst[i] = float_of(uint32_t(src[i]) << 16);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
  }
}

#ifdef PG25_X86
PG25_TARGET("avx2,f16c") void widen_avx2(const uint16_t* src, float* dst, size_t n, Half kind) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    __m256 v = kind == Half::BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
    _mm256_storeu_ps(dst + i, v);
  }
  widen_generic(src + i, dst + i, n - i, kind);
}

PG25_TARGET("avx512f") void widen_avx512(const uint16_t* src, float* dst, size_t n, Half kind) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    __m512 v = kind == Half::BF16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
    _mm512_storeu_ps(dst + i, v);
  }
  widen_generic(src + i, dst + i, n - i, kind);
}
#endif

using Widen = void (*)(const uint16_t*, float*, size_t, Half);

Widen pick_widen() {
#ifdef PG25_X86
  // AVX2 machines without F16C do not exist in practice, but the check costs nothing.
  if (cpu_isa() == Isa::Avx512) return widen_avx512;
  if (cpu_isa() == Isa::Avx2 && cpu_features().f16c) return widen_avx2;
#endif
  return widen_generic;
}

}  // namespace

uint16_t to_bf16(float v) {
  uint32_t x = bits_of(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // NaN stays NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

uint16_t to_f16(float v) {
  uint32_t x = bits_of(v), s = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return uint16_t(s | 0x7e00u);
  if (x >= 0x477ff000u) return uint16_t(s | 0x7c00u);                                            // 65520 and up round to infinity
  if (x < 0x38800000u) return uint16_t(s | uint32_t(std::nearbyint(float_of(x) * 16777216.f)));  // subnormal
  return uint16_t(s | ((x + 0xfffu + ((x >> 13) & 1) - 0x38000000u) >> 13));
}

float from_half(uint16_t h, Half kind) { return kind == Half::BF16 ? float_of(uint32_t(h) << 16) : f16_to_f32(h); }

void narrow(const float* src, uint16_t* dst, size_t n, Half kind) {
  if (kind == Half::BF16)
    for (size_t i = 0; i < n; i++) dst[i] = to_bf16(src[i]);
  else
    for (size_t i = 0; i < n; i++) dst[i] = to_f16(src[i]);
}

void widen(const uint16_t* src, float* dst, size_t n, Half kind) {
  static const Widen w = pick_widen();
  w(src, dst, n, kind);
}

float half_max(Half kind) { return kind == Half::BF16 ? 3.38953139e38f : 65504.f; }

}  // namespace pg25::cpu
