// A stride-1 convolution's im2col columns packed straight into the bf16 pairs the AVX512-BF16 kernel reads.
// Packing float32 panels and then rounding them (gemm_pack.inc: pack_b_conv, then half.cc: bf16_pairs) went over every value
// twice, scalar in the first pass: at 128 output channels that cost more than the products it fed. Here each
// pair of im2col rows is read 16 columns at a time with masked loads (zeros past the image's borders), rounded
// to nearest even by vcvtneps2bf16 and interleaved: the same bits the two passes give.
#include <algorithm>
#include <vector>

#include "gemm.h"
#include "isa.h"
#include "simd.h"

namespace pg25::cpu {

#if defined(PG25_X86) && (defined(__GNUC__) || defined(__clang__))
namespace {

#define PG25_BF16_TARGET PG25_TARGET("avx512f,avx512bw,avx512vl,avx512bf16")

// Lanes [lo, hi) of 16 (0 <= lo <= hi <= 16).
inline __mmask16 lanes(int64_t lo, int64_t hi) { return __mmask16(((1u << hi) - 1) & ~((1u << lo) - 1)); }

// Values ix .. ix + n - 1 (n <= 16) of input row iy of one channel's plane as 16 lanes, zero outside the image
// and past n. With `up` the plane is half size and read as its nearest 2x upsampling: lane i is source column
// (ix + i) >> 1, picked from the 9 source values from (ix >> 1) on.
PG25_BF16_TARGET inline __m512 taps(const ConvInput& cv, const float* plane, int64_t iy, int64_t ix, int64_t n) {
  if (iy < 0 || iy >= cv.H) return _mm512_setzero_ps();
  const int64_t lo = std::clamp<int64_t>(-ix, 0, n), hi = std::clamp<int64_t>(cv.W - ix, lo, n);
  const __mmask16 m = lanes(lo, hi);
  if (cv.up == 1) {
    // Masked loads are slow on some processors (Zen 4): the common whole run of 16 loads plainly.
    if (lo == 0 && hi == 16) return _mm512_loadu_ps(plane + iy * cv.W + ix);
    return _mm512_maskz_loadu_ps(m, plane + iy * cv.W + ix);
  }
  const int64_t sw = cv.W / 2, base = ix >> 1;  // arithmetic shift: floor for a column left of the image
  const __mmask16 sm = lanes(std::clamp<int64_t>(-base, 0, 9), std::clamp<int64_t>(sw - base, 0, 9));
  const __m512 src = _mm512_maskz_loadu_ps(sm, plane + (iy >> 1) * sw + base);
  const __m512i even = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  const __m512i odd = _mm512_set_epi32(8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0);
  return _mm512_maskz_permutexvar_ps(m, (ix & 1) ? odd : even, src);
}

// Two rows' 16 lanes as 16 bf16 pairs (row a low, row b high), rounded to nearest even.
PG25_BF16_TARGET inline __m512i pairs(__m512 a, __m512 b) {
  const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
  const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

struct Tap {
  int64_t c, ky, kx;
  void next(const ConvInput& cv) {
    if (++kx == cv.kw) {
      kx = 0;
      if (++ky == cv.kh) ky = 0, c++;
    }
  }
};

// Pair row by pair row across the whole column block, each output row's span in order: the loads walk along
// the input's rows (what the prefetcher follows) and the 16-column pieces are cut at panel borders.
PG25_BF16_TARGET void pack(const ConvInput& cv, int64_t N, int64_t j0, int64_t nc, int64_t k0, int64_t kc, int nr, uint16_t* dst) {
  // A span of one output row: its block column, length, and the input row/column of its first tap.
  struct Run {
    int64_t at, len, iy, ix;
  };
  thread_local std::vector<Run> runs;
  runs.clear();
  nc = std::min(nc, N - j0);
  for (int64_t j = 0; j < nc;) {
    int64_t q = j0 + j, oy = q / cv.Wo, ox = q % cv.Wo, len = std::min(nc - j, cv.Wo - ox);
    runs.push_back({j, len, oy - cv.pad, ox - cv.pad});
    j += len;
  }
  const int64_t plane = (cv.H / cv.up) * (cv.W / cv.up), kc2 = (kc + 1) / 2, pstride = kc2 * nr * 2;
  const int64_t padded = (nc + nr - 1) / nr * nr;
  Tap a{k0 / (cv.kh * cv.kw), (k0 / cv.kw) % cv.kh, k0 % cv.kw};
  for (int64_t k = 0; k < kc; k += 2) {
    Tap b = a;
    b.next(cv);
    const bool second = k + 1 < kc;
    const float* pa = cv.x + a.c * plane;
    const float* pb = cv.x + b.c * plane;
    uint16_t* row = dst + (k / 2) * nr * 2;
    for (const Run& run : runs) {
      for (int64_t t = 0; t < run.len;) {
        const int64_t j = run.at + t, n = std::min<int64_t>({16, run.len - t, nr - j % nr});
        const __m512 va = taps(cv, pa, run.iy + a.ky, run.ix + a.kx + t, n);
        const __m512 vb = second ? taps(cv, pb, run.iy + b.ky, run.ix + b.kx + t, n) : _mm512_setzero_ps();
        uint16_t* d = row + (j / nr) * pstride + 2 * (j % nr);
        if (n == 16) _mm512_storeu_si512(d, pairs(va, vb));
        else _mm512_mask_storeu_epi32(d, lanes(0, n), pairs(va, vb));
        t += n;
      }
    }
    for (int64_t j = nc; j < padded;) {
      const int64_t n = std::min<int64_t>(16, nr - j % nr);
      _mm512_mask_storeu_epi32(row + (j / nr) * pstride + 2 * (j % nr), lanes(0, n), _mm512_setzero_si512());
      j += n;
    }
    a = b;
    a.next(cv);
  }
}

}  // namespace

bool pack_conv_bf16_pairs(const ConvInput& cv, int64_t N, int64_t j0, int64_t nc, int64_t k0, int64_t kc, int nr, uint16_t* dst) {
  if (cv.stride != 1 || !cpu_bf16_dot()) return false;
  pack(cv, N, j0, nc, k0, kc, nr, dst);
  return true;
}

#else

bool pack_conv_bf16_pairs(const ConvInput&, int64_t, int64_t, int64_t, int64_t, int64_t, int, uint16_t*) { return false; }

#endif

}  // namespace pg25::cpu
