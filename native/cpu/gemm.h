// Single-precision matrix product for the CPU backend: packed, cache-blocked, multi-threaded, with an
// AVX2/FMA micro-kernel chosen at run time (a portable one otherwise).
#pragma once
#include <cstdint>

namespace pg25::cpu {

// C[M, N] = A[M, K] * B + (accumulate ? C : 0) + bias[j]
// A(i, k) = A[i * lda + k]; B(k, j) = b_trans ? B[j * ldb + k] : B[k * ldb + j]; C(i, j) = C[i * ldc + j].
// `bias` (length N, may be null) is added once per element; `threaded` splits the work over the pool.
void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_trans,
           float* C, int64_t ldc, bool accumulate, const float* bias, bool threaded = true);

}  // namespace pg25::cpu
