// cuBLASLt, opened at run time with our own minimal declarations (no cuBLAS headers are needed to
// build). fp16 operands, fp32 accumulation; row-major GEMMs mapped onto cuBLASLt's column-major API.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "loader.h"

namespace pg25::cuda {

class CublasLt {
 public:
  // Opens the library and creates a handle; throws PG25_NO_DEVICE naming what is missing.
  CublasLt();
  ~CublasLt();
  CublasLt(const CublasLt&) = delete;
  CublasLt& operator=(const CublasLt&) = delete;

  // Y[M, N] = X[M, K] * W[N, K]^T (+ bias[N]) (+ R[M, N]), all fp16 (bf16 when `wide`) row-major, on `stream`.
  // linear and gemm run on our own kernel (gemm_simt) where cuBLASLt offers no algorithm.
  void linear(const void* x, const void* w, const void* bias, const void* residual, void* y, int64_t M, int64_t N, int64_t K, bool wide,
              cudaStream_t stream);
  // C[M, N] = A[M, K] * B[K, N] (+ C when accumulate), fp16 row-major with leading dimensions, batched
  // over `batch` with the given strides (elements).
  void gemm(const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b, bool b_trans, void* c, int64_t ldc,
            int64_t stride_c, int64_t M, int64_t N, int64_t K, int64_t batch, float alpha, bool accumulate, bool wide, cudaStream_t stream);
  // Y_i[M, N] = X[M, K] * W_i[N, K]^T for the n weights lying back to back from w (one batched GEMM,
  // X every entry's operand), the products back to back from y. False, with nothing enqueued, where
  // cuBLASLt offers no algorithm for it: the caller runs them one by one.
  bool linears(const void* x, const void* w, void* y, int64_t n, int64_t M, int64_t N, int64_t K, bool wide, cudaStream_t stream);
  const std::string& path() const { return lib_.path; }
  // GEMMs of this process that found no cuBLASLt algorithm and ran on our own (slow) kernel instead.
  static int64_t fallbacks();

 private:
  struct Plan;
  struct Api;
  // The cached plan for a shape; null where the heuristic offers no algorithm (remembered too). `bias`:
  // the first call's bias vector (or null: no bias epilogue), whose alignment the heuristic reads.
  const Plan* find(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, int64_t batch,
                   int64_t sa, int64_t sb, int64_t sc, const void* bias, uint32_t align, bool wide);
  void run(const Plan& p, float alpha, float beta, const void* a, const void* b, const void* c, void* d, const void* bias,
           cudaStream_t stream);

  Library lib_;
  std::unique_ptr<Api> api_;  // this instance's symbols: a second engine never rewrites them
  // Engines run jobs on several threads at once (both text encoders, two pipelines): the plan cache
  // and the descriptor that carries a call's bias pointer are one critical section with the enqueue.
  std::mutex mu_;
  static std::atomic<int64_t> fallbacks_;
  void* handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 32u << 20;
  std::map<std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, uint32_t,
                      bool>,
           Plan*>
      plans_;
};

}  // namespace pg25::cuda
