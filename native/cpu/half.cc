#include "half.h"

#include <cstring>

#include "../io/safetensors.h"  // half_to_float / float_to_half: the one fp16 conversion
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

// Rounds to nearest even.
uint16_t to_bf16(float v) {
  uint32_t x = bits_of(v);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // NaN stays NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

void widen_generic(const uint16_t* src, float* dst, size_t n, Half kind) {
  if (kind == Half::BF16) {
    for (size_t i = 0; i < n; i++) dst[i] = float_of(uint32_t(src[i]) << 16);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
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

void narrow(const float* src, uint16_t* dst, size_t n, Half kind) {
  if (kind == Half::BF16)
    for (size_t i = 0; i < n; i++) dst[i] = to_bf16(src[i]);
  else
    for (size_t i = 0; i < n; i++) dst[i] = float_to_half(src[i]);
}

void widen(const uint16_t* src, float* dst, size_t n, Half kind) {
  static const Widen w = pick_widen();
  w(src, dst, n, kind);
}

float half_max(Half kind) { return kind == Half::BF16 ? 3.38953139e38f : 65504.f; }

}  // namespace pg25::cpu
