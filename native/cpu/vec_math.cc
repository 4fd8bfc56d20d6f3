#include "vec_math.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "isa.h"

namespace pg25::cpu {
namespace {

constexpr int64_t kBlock = 512;

// The loops, once per instruction set (the same code the compiler vectorises for each).
#define PG25_VEC_NS generic
#define PG25_VEC_TARGET
#include "vec_math_loops.inc"
#undef PG25_VEC_NS
#undef PG25_VEC_TARGET
#ifdef PG25_X86
#define PG25_VEC_NS avx2
#define PG25_VEC_TARGET PG25_TARGET("arch=x86-64-v3")
#include "vec_math_loops.inc"
#undef PG25_VEC_NS
#undef PG25_VEC_TARGET
#define PG25_VEC_NS avx512
#define PG25_VEC_TARGET PG25_TARGET("avx512f")
#include "vec_math_loops.inc"
#undef PG25_VEC_NS
#undef PG25_VEC_TARGET
#endif

struct Loops {
  double (*block_sum)(const float*, int64_t);
  double (*block_sq)(const float*, int64_t, float);
  void (*affine)(const float*, float*, int64_t, float, float, bool);
  void (*normalize)(const float*, float*, int64_t, float, float, const float*, const float*);
  void (*silu)(const float*, float*, int64_t);
  void (*gelu)(const float*, float*, int64_t);
  void (*quick_gelu)(const float*, float*, int64_t);
  void (*softmax)(float*, int64_t, int64_t, float);
  void (*geglu)(const float*, const float*, float*, int64_t);
};

#define PG25_LOOPS(ns) \
  Loops { ns::block_sum, ns::block_sq, ns::affine, ns::normalize, ns::silu, ns::gelu, ns::quick_gelu, ns::softmax, ns::geglu }

const Loops& loops() {
#ifdef PG25_X86
  static const Loops table[kIsaCount] = {PG25_LOOPS(generic), PG25_LOOPS(avx2), PG25_LOOPS(avx512)};
#else
  static const Loops table[kIsaCount] = {PG25_LOOPS(generic), PG25_LOOPS(generic), PG25_LOOPS(generic)};
#endif
  static const Loops& chosen = table[int(cpu_isa())];
  return chosen;
}

}  // namespace

void moments(const float* x, int64_t n, double& mean, double& var) {
  const Loops& l = loops();
  double s = 0;
  for (int64_t i = 0; i < n; i += kBlock) s += l.block_sum(x + i, std::min(kBlock, n - i));
  mean = s / double(n);
  double q = 0;
  for (int64_t i = 0; i < n; i += kBlock) q += l.block_sq(x + i, std::min(kBlock, n - i), float(mean));
  var = q / double(n);
}

void affine(const float* src, float* dst, int64_t n, float scale, float shift, bool silu) {
  loops().affine(src, dst, n, scale, shift, silu);
}
void normalize(const float* src, float* dst, int64_t n, float mean, float rstd, const float* gamma, const float* beta) {
  loops().normalize(src, dst, n, mean, rstd, gamma, beta);
}
void silu(const float* src, float* dst, int64_t n) { loops().silu(src, dst, n); }
void gelu(const float* src, float* dst, int64_t n) { loops().gelu(src, dst, n); }
void quick_gelu(const float* src, float* dst, int64_t n) { loops().quick_gelu(src, dst, n); }
void softmax(float* row, int64_t n, int64_t limit, float scale) { loops().softmax(row, n, limit, scale); }
void geglu(const float* a, const float* g, float* dst, int64_t n) { loops().geglu(a, g, dst, n); }

}  // namespace pg25::cpu
