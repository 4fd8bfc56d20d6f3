#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "threadpool.h"

namespace pg25::cpu {
namespace {

constexpr int MR = 6, NR = 16;
constexpr int64_t KC = 256, MC = 96, NC = 512;

typedef float v8 __attribute__((vector_size(32)));

// acc[MR x NR] = sum_k a[k][0..MR) x b[k][0..NR) over packed panels. Always inlined, so each
// target-specific wrapper below compiles it with its own instruction set.
__attribute__((always_inline)) inline void micro_kernel_impl(int64_t kc, const float* __restrict a, const float* __restrict b,
                                                             float* __restrict out) {
  v8 c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {}, c40 = {}, c41 = {}, c50 = {}, c51 = {};
  for (int64_t k = 0; k < kc; k++) {
    v8 b0, b1;
    std::memcpy(&b0, b + k * NR, 32);
    std::memcpy(&b1, b + k * NR + 8, 32);
    const float* ak = a + k * MR;
    v8 a0 = ak[0] - (v8){}, a1 = ak[1] - (v8){}, a2 = ak[2] - (v8){};
    c00 += a0 * b0; c01 += a0 * b1;
    c10 += a1 * b0; c11 += a1 * b1;
    c20 += a2 * b0; c21 += a2 * b1;
    v8 a3 = ak[3] - (v8){}, a4 = ak[4] - (v8){}, a5 = ak[5] - (v8){};
    c30 += a3 * b0; c31 += a3 * b1;
    c40 += a4 * b0; c41 += a4 * b1;
    c50 += a5 * b0; c51 += a5 * b1;
  }
  v8 c[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; i++) {
    std::memcpy(out + i * NR, &c[i][0], 32);
    std::memcpy(out + i * NR + 8, &c[i][1], 32);
  }
}

__attribute__((target("avx2,fma"))) void micro_avx2(int64_t kc, const float* a, const float* b, float* out) {
  micro_kernel_impl(kc, a, b, out);
}
void micro_generic(int64_t kc, const float* a, const float* b, float* out) { micro_kernel_impl(kc, a, b, out); }

using MicroFn = void (*)(int64_t, const float*, const float*, float*);
MicroFn pick_micro() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return micro_avx2;
  return micro_generic;
}
const MicroFn micro = pick_micro();

void pack_a(const float* A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    int64_t mr = std::min<int64_t>(MR, mc - i0);
    for (int64_t k = 0; k < kc; k++) {
      for (int64_t i = 0; i < MR; i++) dst[k * MR + i] = i < mr ? A[(m0 + i0 + i) * lda + k0 + k] : 0.f;
    }
    dst += kc * MR;
  }
}

void pack_b(const float* B, int64_t ldb, bool trans, int64_t k0, int64_t kc, int64_t n0, int64_t nc, float* dst) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    int64_t nr = std::min<int64_t>(NR, nc - j0);
    if (!trans) {
      for (int64_t k = 0; k < kc; k++) {
        const float* src = B + (k0 + k) * ldb + n0 + j0;
        float* d = dst + k * NR;
        int64_t j = 0;
        for (; j < nr; j++) d[j] = src[j];
        for (; j < NR; j++) d[j] = 0.f;
      }
    } else {
      for (int64_t j = 0; j < NR; j++) {
        if (j < nr) {
          const float* src = B + (n0 + j0 + j) * ldb + k0;
          for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[k];
        } else {
          for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.f;
        }
      }
    }
    dst += kc * NR;
  }
}

// One tile of C: rows [m0, m0+mt), columns [n0, n0+nt).
void gemm_tile(int64_t m0, int64_t mt, int64_t n0, int64_t nt, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, bool b_trans, float* C, int64_t ldc, bool accumulate, const float* bias) {
  thread_local std::vector<float> apack, bpack;
  apack.resize(size_t(MC + MR) * KC);
  bpack.resize(size_t(NC + NR) * KC);
  alignas(32) float out[MR * NR];
  for (int64_t jc = n0; jc < n0 + nt; jc += NC) {
    int64_t nc = std::min(NC, n0 + nt - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = std::min(KC, K - pc);
      bool first = pc == 0;
      pack_b(B, ldb, b_trans, pc, kc, jc, nc, bpack.data());
      for (int64_t ic = m0; ic < m0 + mt; ic += MC) {
        int64_t mc = std::min(MC, m0 + mt - ic);
        pack_a(A, lda, ic, mc, pc, kc, apack.data());
        for (int64_t jr = 0; jr < nc; jr += NR) {
          int64_t nr = std::min<int64_t>(NR, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t mr = std::min<int64_t>(MR, mc - ir);
            micro(kc, apack.data() + (ir / MR) * kc * MR, bpack.data() + (jr / NR) * kc * NR, out);
            for (int64_t i = 0; i < mr; i++) {
              float* crow = C + (ic + ir + i) * ldc + jc + jr;
              const float* o = out + i * NR;
              if (first && !accumulate) {
                if (bias) for (int64_t j = 0; j < nr; j++) crow[j] = o[j] + bias[jc + jr + j];
                else for (int64_t j = 0; j < nr; j++) crow[j] = o[j];
              } else if (first && bias) {
                for (int64_t j = 0; j < nr; j++) crow[j] += o[j] + bias[jc + jr + j];
              } else {
                for (int64_t j = 0; j < nr; j++) crow[j] += o[j];
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace

void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_trans,
           float* C, int64_t ldc, bool accumulate, const float* bias, bool threaded) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) C[i * ldc + j] = (accumulate ? C[i * ldc + j] : 0.f) + (bias ? bias[j] : 0.f);
    return;
  }
  // Tiles: whole NC column blocks, rows split so that every thread gets work.
  int64_t threads = threaded ? thread_count() : 1;
  int64_t ntiles_n = (N + NC - 1) / NC;
  int64_t want = threads * 3;
  int64_t ntiles_m = std::max<int64_t>(1, std::min<int64_t>((M + MR - 1) / MR, (want + ntiles_n - 1) / ntiles_n));
  int64_t mstep = ((M + ntiles_m - 1) / ntiles_m + MR - 1) / MR * MR;
  ntiles_m = (M + mstep - 1) / mstep;
  int64_t total = ntiles_m * ntiles_n;
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      int64_t tm = t / ntiles_n, tn = t % ntiles_n;
      int64_t m0 = tm * mstep, n0 = tn * NC;
      gemm_tile(m0, std::min(mstep, M - m0), n0, std::min(NC, N - n0), K, A, lda, B, ldb, b_trans, C, ldc, accumulate, bias);
    }
  };
  if (threaded && total > 1 && double(M) * N * K > 1e5) parallel_for(total, 1, run);
  else run(0, total);
}

}  // namespace pg25::cpu
