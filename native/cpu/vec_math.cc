#include "vec_math.h"

#include "multiversion.h"

#include <algorithm>
#include <cmath>

namespace pg25::cpu {
namespace {

// exp(x) to about 2 ulp, in plain arithmetic the compiler vectorises: x = n ln2 + r, |r| <= ln2/2,
// a degree-6 polynomial for exp(r) and 2^n built in the exponent bits.
inline float exp_poly(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  // Round to nearest by the 1.5 * 2^23 trick (exact for |t| < 2^22).
  float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  // Unsigned: a NaN x gives a meaningless n here, and p is NaN anyway (the shift must not be UB).
  uint32_t bits = uint32_t(int32_t(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  return p * scale;
}
inline float silu_f(float v) { return v / (1.f + exp_poly(-v)); }

// 1 + erf(x) to 1.5e-7 absolute (Abramowitz & Stegun 7.1.26 for erfc(|x|)), vectorisable; for x < 0
// it is erfc(|x|) itself, so GELU's negative tail has no cancellation.
inline float one_plus_erf(float x) {
  float a = x < 0.f ? -x : x;
  float t = 1.f / (1.f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  float erfc = p * t * exp_poly(-a * a);
  return x < 0.f ? erfc : 2.f - erfc;
}

constexpr int64_t kBlock = 512;

PG25_CLONES double block_sum(const float* x, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += x[i + l];
  double s = 0;
  for (int l = 0; l < 16; l++) s += acc[l];
  for (; i < n; i++) s += x[i];
  return s;
}

PG25_CLONES double block_sq(const float* x, int64_t n, float mean) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) {
      float d = x[i + l] - mean;
      acc[l] += d * d;
    }
  double s = 0;
  for (int l = 0; l < 16; l++) s += acc[l];
  for (; i < n; i++) s += double(x[i] - mean) * double(x[i] - mean);
  return s;
}

}  // namespace

void moments(const float* x, int64_t n, double& mean, double& var) {
  double s = 0;
  for (int64_t i = 0; i < n; i += kBlock) s += block_sum(x + i, std::min(kBlock, n - i));
  mean = s / double(n);
  double q = 0;
  for (int64_t i = 0; i < n; i += kBlock) q += block_sq(x + i, std::min(kBlock, n - i), float(mean));
  var = q / double(n);
}

PG25_CLONES void affine(const float* src, float* dst, int64_t n, float scale, float shift, bool silu) {
  if (silu) for (int64_t i = 0; i < n; i++) dst[i] = silu_f(src[i] * scale + shift);
  else for (int64_t i = 0; i < n; i++) dst[i] = src[i] * scale + shift;
}

PG25_CLONES void normalize(const float* src, float* dst, int64_t n, float mean, float rstd, const float* gamma, const float* beta) {
  for (int64_t i = 0; i < n; i++) dst[i] = (src[i] - mean) * rstd * gamma[i] + beta[i];
}

PG25_CLONES void silu(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = silu_f(src[i]);
}

PG25_CLONES void softmax(float* row, int64_t n, int64_t limit, float scale) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < limit; j++) mx = row[j] > mx ? row[j] : mx;
  float shift = mx * scale;
  for (int64_t j = 0; j < limit; j++) row[j] = exp_poly(row[j] * scale - shift);
  double sum = 0;
  for (int64_t i = 0; i < limit; i += kBlock) sum += block_sum(row + i, std::min(kBlock, limit - i));
  float inv = float(1.0 / sum);
  for (int64_t j = 0; j < limit; j++) row[j] *= inv;
  for (int64_t j = limit; j < n; j++) row[j] = 0.f;
}

PG25_CLONES void geglu(const float* a, const float* g, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = a[i] * (0.5f * g[i] * one_plus_erf(g[i] * 0.70710678118654752f));
}

}  // namespace pg25::cpu
