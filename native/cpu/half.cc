#include "half.h"

#include <cstring>

#include "../io/safetensors.h"  // half_to_float / float_to_half: the one fp16 conversion
#include "isa.h"
#include "simd.h"

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

void pairs_generic(const float* src, int64_t kc, int w, uint16_t* dst) {
  for (int64_t k = 0; k < kc; k += 2, dst += 2 * w)
    for (int j = 0; j < w; j++) {
      dst[2 * j] = to_bf16(src[k * w + j]);
      dst[2 * j + 1] = k + 1 < kc ? to_bf16(src[(k + 1) * w + j]) : 0;
    }
}

#if defined(PG25_X86) && (defined(__GNUC__) || defined(__clang__))
// 16 columns at a time: rows 2k and 2k + 1 widened to 32-bit lanes and merged, low half first (masked at
// the panel's width). vcvtneps2bf16 rounds to nearest even, as to_bf16 does.
PG25_TARGET("avx512f,avx512bw,avx512vl,avx512bf16") void pairs_f32_avx512(const float* src, int64_t kc, int w, uint16_t* dst) {
  for (int64_t k = 0; k < kc; k += 2, dst += 2 * w)
    for (int j = 0; j < w; j += 16) {
      __mmask16 m = w - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (w - j)) - 1);
      __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + k * w + j)));
      __m512i hi = k + 1 < kc ? _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + (k + 1) * w + j)))
                              : _mm512_setzero_si512();
      _mm512_mask_storeu_epi32(dst + 2 * j, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
}

#define PG25_PAIRS_AVX512 1
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

// The pairs are made only for the AVX512-BF16 kernel, so its processors take the vector form.
void bf16_pairs(const float* src, int64_t kc, int w, uint16_t* dst) {
#ifdef PG25_PAIRS_AVX512
  if (cpu_bf16_dot()) return pairs_f32_avx512(src, kc, w, dst);
#endif
  pairs_generic(src, kc, w, dst);
}

}  // namespace pg25::cpu
