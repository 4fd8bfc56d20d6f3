// Elementwise passes of the CPU backend, compiled for AVX-512, AVX2 and the baseline (vec_math_loops.inc,
// chosen by cpu_isa() in isa.h). Sums are kept in float lanes over
// short blocks and in double across blocks, in an order that depends only on n, never on threads.
#pragma once
#include <cstdint>

namespace pg25::cpu {

// Mean and variance (two passes) of x[0, n).
void moments(const float* x, int64_t n, double& mean, double& var);
// dst[i] = f(src[i] * scale + shift), f = SiLU or the identity.
void affine(const float* src, float* dst, int64_t n, float scale, float shift, bool silu);
// dst[i] = (src[i] - mean) * rstd * gamma[i] + beta[i] (LayerNorm's apply pass).
void normalize(const float* src, float* dst, int64_t n, float mean, float rstd, const float* gamma, const float* beta);
void silu(const float* src, float* dst, int64_t n);
// dst[i] = GELU(src[i]), exact (erf) GELU; quick_gelu: src[i] * sigmoid(1.702 * src[i]) (CLIP's).
void gelu(const float* src, float* dst, int64_t n);
void quick_gelu(const float* src, float* dst, int64_t n);
// dst[i] = a[i] * GELU(g[i]), exact (erf) GELU.
void geglu(const float* a, const float* g, float* dst, int64_t n);
// row[0, n) = softmax(row * scale) over the first `limit` entries, zeros after them.
void softmax(float* row, int64_t n, int64_t limit, float scale);

}  // namespace pg25::cpu
