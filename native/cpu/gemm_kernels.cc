#include "gemm_kernels.h"

#include <cstring>

#include "isa.h"
#include "simd.h"

namespace pg25::cpu {
namespace {

void store_scalar(const float* sum, int nr, const Tile& t) {
  for (int i = 0; i < t.rows; i++) {
    float* row = t.c + i * t.ldc;
    for (int j = 0; j < t.cols; j++) {
      float v = sum[i * nr + j];
      if (t.add_c) v = row[j] + v;
      if (t.row_bias) v += t.row_bias[i];
      if (t.col_bias) v += t.col_bias[j];
      if (t.residual) v += t.residual[i * t.ldc + j];
      row[j] = v;
    }
  }
}

#ifdef PG25_X86
#if defined(__GNUC__) || defined(__clang__)
#define PG25_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define PG25_ALWAYS_INLINE inline
#endif
// Stores the AVX-512 kernels' 14 x 32 sums as `t` says; masked loads and stores cover a tile cut short
// by the matrix's edge. Inlined, so the sums stay in registers up to their stores.
PG25_TARGET("avx512f") PG25_ALWAYS_INLINE void store_avx512(__m512 (&c)[14][2], const Tile& t) {
  constexpr int MR = 14;
  __mmask16 m[2] = {__mmask16(t.cols >= 16 ? 0xffff : (1u << t.cols) - 1), __mmask16(t.cols >= 32  ? 0xffff
                                                                                     : t.cols > 16 ? (1u << (t.cols - 16)) - 1
                                                                                                   : 0)};
  __m512 cb[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  if (t.col_bias)
    for (int h = 0; h < 2; h++) cb[h] = _mm512_maskz_loadu_ps(m[h], t.col_bias + 16 * h);
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    if (i >= t.rows) break;
    float* row = t.c + i * t.ldc;
    for (int h = 0; h < 2; h++) {
      __m512 v = c[i][h];
      if (t.add_c) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m[h], row + 16 * h), v);
      if (t.row_bias) v = _mm512_add_ps(v, _mm512_set1_ps(t.row_bias[i]));
      if (t.col_bias) v = _mm512_add_ps(v, cb[h]);
      if (t.residual) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m[h], t.residual + i * t.ldc + 16 * h));
      _mm512_mask_storeu_ps(row + 16 * h, m[h], v);
    }
  }
}

// AVX-512: 14 rows x 32 columns, 28 accumulators + 2 B vectors in the 32 zmm registers; A values
// are broadcast straight from memory. Each k is 28 FMAs for 2 loads of B and 14 broadcasts, so the two
// FMA pipes, not the loads, set the pace.
PG25_TARGET("avx512f,fma") void micro_avx512(int64_t kc, const float* a, const float* b, const Tile& t) {
  constexpr int MR = 14;
  __m512 c[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(b + k * 32), b1 = _mm512_loadu_ps(b + k * 32 + 16);
    const float* ak = a + k * MR;
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      __m512 ai = _mm512_set1_ps(ak[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  store_avx512(c, t);
}

#if defined(__GNUC__) || defined(__clang__)
#define PG25_BF16_KERNEL 1
// AVX512-BF16: the same 14 x 32 tile; per K pair, 2 loads of B (32 columns x 2 K steps each), 14
// broadcasts of A's pairs and 28 vdpbf16ps, each two multiply-adds per lane: twice the FMA kernel's work
// per instruction.
PG25_TARGET("avx512f,avx512bw,avx512bf16") void micro_avx512_bf16(int64_t kc2, const uint16_t* a, const uint16_t* b, const Tile& t) {
  constexpr int MR = 14;
  __m512 c[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc2; k++) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + k * 64), b1 = (__m512bh)_mm512_loadu_si512(b + k * 64 + 32);
    const uint16_t* ak = a + k * 2 * MR;
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      int32_t pair;
      std::memcpy(&pair, ak + 2 * i, 4);
      __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      c[i][0] = _mm512_dpbf16_ps(c[i][0], ai, b0);
      c[i][1] = _mm512_dpbf16_ps(c[i][1], ai, b1);
    }
  }
  store_avx512(c, t);
}
#endif

// AVX2: 6 x 16, 12 accumulators + 2 B vectors + 1 broadcast in the 16 ymm registers.
PG25_TARGET("avx2,fma") void micro_avx2(int64_t kc, const float* a, const float* b, const Tile& t) {
  constexpr int MR = 6;
  __m256 c[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) c[i][0] = c[i][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(b + k * 16), b1 = _mm256_loadu_ps(b + k * 16 + 8);
    const float* ak = a + k * MR;
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      __m256 ai = _mm256_broadcast_ss(ak + i);
      c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
    }
  }
  if (t.cols < 16) {  // the matrix's edge: through a buffer
    alignas(32) float out[MR * 16];
    for (int i = 0; i < MR; i++) {
      _mm256_store_ps(out + i * 16, c[i][0]);
      _mm256_store_ps(out + i * 16 + 8, c[i][1]);
    }
    store_scalar(out, 16, t);
    return;
  }
#pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    if (i >= t.rows) break;
    float* row = t.c + i * t.ldc;
    for (int h = 0; h < 2; h++) {
      __m256 v = c[i][h];
      if (t.add_c) v = _mm256_add_ps(_mm256_loadu_ps(row + 8 * h), v);
      if (t.row_bias) v = _mm256_add_ps(v, _mm256_set1_ps(t.row_bias[i]));
      if (t.col_bias) v = _mm256_add_ps(v, _mm256_loadu_ps(t.col_bias + 8 * h));
      if (t.residual) v = _mm256_add_ps(v, _mm256_loadu_ps(t.residual + i * t.ldc + 8 * h));
      _mm256_storeu_ps(row + 8 * h, v);
    }
  }
}

#endif

// Any processor: 4 x 8, plain loops the compiler vectorises for the baseline instruction set.
void micro_generic(int64_t kc, const float* a, const float* b, const Tile& t) {
  float c[4][8] = {};
  for (int64_t k = 0; k < kc; k++)
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 8; j++) c[i][j] += a[k * 4 + i] * b[k * 8 + j];
  store_scalar(&c[0][0], 8, t);
}

const MicroKernel kGeneric{"generic", 4, 8, micro_generic};
#ifdef PG25_X86
const MicroKernel kAvx512{"avx512", 14, 32, micro_avx512};
const MicroKernel kAvx2{"avx2", 6, 16, micro_avx2};
const MicroKernel* const kByIsa[kIsaCount] = {&kGeneric, &kAvx2, &kAvx512};
#else
const MicroKernel* const kByIsa[kIsaCount] = {&kGeneric, &kGeneric, &kGeneric};
#endif

}  // namespace

const MicroKernel& micro_kernel() {
  static const MicroKernel& k = *kByIsa[int(cpu_isa())];
  return k;
}

const MicroKernelBf16* micro_kernel_bf16() {
#ifdef PG25_BF16_KERNEL
  static const MicroKernelBf16 k{14, 32, micro_avx512_bf16};
  return cpu_bf16_dot() ? &k : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace pg25::cpu
