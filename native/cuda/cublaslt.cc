#include "cublaslt.h"

#include <cstring>
#include <initializer_list>

#include "../core/error.h"
#include "kernels.h"

namespace pg25::cuda {
namespace {

// The subset of cublasLt.h this file uses (values from the public header).
using Status = int;
using Handle = void*;
using Desc = void*;
using Layout = void*;
using Pref = void*;
struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
constexpr int kComputeF32 = 68;                   // CUBLAS_COMPUTE_32F
constexpr int kR16F = 2, kR16BF = 14, kR32F = 0;  // CUDA_R_16F, CUDA_R_16BF, CUDA_R_32F
constexpr int kOpN = 0, kOpT = 1;
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;
constexpr int kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;  // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT / _STRIDED_BATCH_OFFSET
constexpr int kPrefMaxWorkspace = 1;
constexpr int kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7, kPrefMinAlignD = 8;

// The largest power of two up to 256 that divides every pointer and every leading dimension in
// bytes: offsets into tensors (slices, conv column chunks) and odd row lengths are often less aligned
// than the 256 bytes cuBLASLt's heuristic assumes by default.
uint32_t alignment(std::initializer_list<const void*> ptrs, std::initializer_list<int64_t> lds) {
  uintptr_t bits = 256;
  for (const void* p : ptrs)
    if (p) bits |= reinterpret_cast<uintptr_t>(p);
  for (int64_t ld : lds) bits |= uintptr_t(ld) * 2;
  return uint32_t(bits & (~bits + 1));
}

void check(Status s, const char* what) {
  if (s != 0) throw Error(Code::Internal, std::string("cuBLASLt ") + what + " failed with status " + std::to_string(s));
}

}  // namespace

struct CublasLt::Api {
  Status (*create)(Handle*);
  Status (*destroy)(Handle);
  Status (*desc_create)(Desc*, int, int);
  Status (*desc_destroy)(Desc);
  Status (*desc_set)(Desc, int, const void*, size_t);
  Status (*layout_create)(Layout*, int, uint64_t, uint64_t, int64_t);
  Status (*layout_destroy)(Layout);
  Status (*layout_set)(Layout, int, const void*, size_t);
  Status (*pref_create)(Pref*);
  Status (*pref_destroy)(Pref);
  Status (*pref_set)(Pref, int, const void*, size_t);
  Status (*heuristic)(Handle, Desc, Layout, Layout, Layout, Layout, Pref, int, HeuristicResult*, int*);
  Status (*matmul)(Handle, Desc, const void*, const void*, Layout, const void*, Layout, const void*, const void*, Layout, void*, Layout,
                   const Algo*, void*, size_t, cudaStream_t);
};

struct CublasLt::Plan {
  Desc desc = nullptr;
  Layout a = nullptr, b = nullptr, c = nullptr;
  Algo algo;
};

CublasLt::CublasLt() {
  lib_ = open_cublaslt();
  if (!lib_.handle) throw Error(Code::NoDevice, "cuBLASLt (libcublasLt.so) was not found; set PG25_CUDA_LIBS to its folder");
  api_ = std::make_unique<Api>();
  Api& api = *api_;
  auto sym = [&](const char* name) {
    void* p = lib_.symbol(name);
    if (!p) throw Error(Code::NoDevice, std::string("cuBLASLt at ") + lib_.path + " lacks " + name);
    return p;
  };
  api.create = reinterpret_cast<decltype(api.create)>(sym("cublasLtCreate"));
  api.destroy = reinterpret_cast<decltype(api.destroy)>(sym("cublasLtDestroy"));
  api.desc_create = reinterpret_cast<decltype(api.desc_create)>(sym("cublasLtMatmulDescCreate"));
  api.desc_destroy = reinterpret_cast<decltype(api.desc_destroy)>(sym("cublasLtMatmulDescDestroy"));
  api.desc_set = reinterpret_cast<decltype(api.desc_set)>(sym("cublasLtMatmulDescSetAttribute"));
  api.layout_create = reinterpret_cast<decltype(api.layout_create)>(sym("cublasLtMatrixLayoutCreate"));
  api.layout_destroy = reinterpret_cast<decltype(api.layout_destroy)>(sym("cublasLtMatrixLayoutDestroy"));
  api.layout_set = reinterpret_cast<decltype(api.layout_set)>(sym("cublasLtMatrixLayoutSetAttribute"));
  api.pref_create = reinterpret_cast<decltype(api.pref_create)>(sym("cublasLtMatmulPreferenceCreate"));
  api.pref_destroy = reinterpret_cast<decltype(api.pref_destroy)>(sym("cublasLtMatmulPreferenceDestroy"));
  api.pref_set = reinterpret_cast<decltype(api.pref_set)>(sym("cublasLtMatmulPreferenceSetAttribute"));
  api.heuristic = reinterpret_cast<decltype(api.heuristic)>(sym("cublasLtMatmulAlgoGetHeuristic"));
  api.matmul = reinterpret_cast<decltype(api.matmul)>(sym("cublasLtMatmul"));
  check(api.create(&handle_), "create");
  if (cudaMalloc(&workspace_, workspace_bytes_) != cudaSuccess) throw Error(Code::OutOfMemory, "cannot allocate the cuBLASLt workspace");
}

CublasLt::~CublasLt() {
  if (!api_) return;
  Api& api = *api_;
  for (auto& kv : plans_) {
    if (!kv.second) continue;
    api.layout_destroy(kv.second->a);
    api.layout_destroy(kv.second->b);
    api.layout_destroy(kv.second->c);
    api.desc_destroy(kv.second->desc);
    delete kv.second;
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) api.destroy(handle_);
}

// Plans are cached per shape: the heuristic query runs once, then every call (and graph replay) reuses it.
const CublasLt::Plan* CublasLt::find(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                                     int64_t batch, int64_t sa, int64_t sb, int64_t sc, const void* bias, uint32_t align, bool wide) {
  auto key = std::make_tuple(ta, tb, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, bias != nullptr, align, wide);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  Api& api = *api_;
  Plan* p = new Plan();
  check(api.desc_create(&p->desc, kComputeF32, kR32F), "matmul descriptor");
  int opa = ta ? kOpT : kOpN, opb = tb ? kOpT : kOpN;
  check(api.desc_set(p->desc, kDescTransA, &opa, sizeof(opa)), "transa");
  check(api.desc_set(p->desc, kDescTransB, &opb, sizeof(opb)), "transb");
  uint32_t epi = bias ? kEpilogueBias : kEpilogueDefault;
  check(api.desc_set(p->desc, kDescEpilogue, &epi, sizeof(epi)), "epilogue");
  // The heuristic reads the bias pointer's alignment from the descriptor: set before it is asked
  // (run() sets each call's own; `align`, in the key, covers it).
  if (bias) check(api.desc_set(p->desc, kDescBiasPointer, &bias, sizeof(bias)), "bias pointer");
  // Column-major layouts: A is (ta ? k x m : m x k), B is (tb ? n x k : k x n), C is m x n.
  int type = wide ? kR16BF : kR16F;
  check(api.layout_create(&p->a, type, ta ? k : m, ta ? m : k, lda), "layout A");
  check(api.layout_create(&p->b, type, tb ? n : k, tb ? k : n, ldb), "layout B");
  check(api.layout_create(&p->c, type, m, n, ldc), "layout C");
  if (batch > 1) {
    int32_t count = int32_t(batch);
    for (auto [l, s] : {std::make_pair(p->a, sa), std::make_pair(p->b, sb), std::make_pair(p->c, sc)}) {
      check(api.layout_set(l, kLayoutBatchCount, &count, sizeof(count)), "batch count");
      check(api.layout_set(l, kLayoutStridedBatchOffset, &s, sizeof(s)), "batch stride");
    }
  }
  Pref pref;
  check(api.pref_create(&pref), "preference");
  uint64_t ws = workspace_bytes_;
  check(api.pref_set(pref, kPrefMaxWorkspace, &ws, sizeof(ws)), "workspace preference");
  for (int attr : {kPrefMinAlignA, kPrefMinAlignB, kPrefMinAlignC, kPrefMinAlignD})
    check(api.pref_set(pref, attr, &align, sizeof(align)), "alignment preference");
  HeuristicResult r;
  int found = 0;
  Status s = api.heuristic(handle_, p->desc, p->a, p->b, p->c, p->c, pref, 1, &r, &found);
  api.pref_destroy(pref);
  if (s != 0 || found == 0) {
    api.layout_destroy(p->a);
    api.layout_destroy(p->b);
    api.layout_destroy(p->c);
    api.desc_destroy(p->desc);
    delete p;
    plans_[key] = nullptr;
    return nullptr;
  }
  p->algo = r.algo;
  plans_[key] = p;
  return p;
}

void CublasLt::run(const Plan& p, float alpha, float beta, const void* a, const void* b, const void* c, void* d, const void* bias,
                   cudaStream_t stream) {
  if (bias) check(api_->desc_set(p.desc, kDescBiasPointer, &bias, sizeof(bias)), "bias pointer");
  check(api_->matmul(handle_, p.desc, &alpha, a, p.a, b, p.b, &beta, c, p.c, d, p.c, &p.algo, workspace_, workspace_bytes_, stream),
        "matmul");
}

void CublasLt::linear(const void* x, const void* w, const void* bias, const void* residual, void* y, int64_t M, int64_t N, int64_t K,
                      bool wide, cudaStream_t stream) {
  // Row-major Y[M,N] is column-major Y^T [N,M] = W (col-major K x N, transposed) * X^T (col-major K x M).
  std::lock_guard<std::mutex> g(mu_);
  uint32_t align = alignment({x, w, y, bias, residual}, {K, N});
  if (const Plan* p = find(true, false, N, M, K, K, K, N, 1, 0, 0, 0, bias, align, wide)) {
    run(*p, 1.f, residual ? 1.f : 0.f, w, x, residual ? residual : y, y, bias, stream);
    return;
  }
  // No algorithm with the bias epilogue (or none at all): the GEMM of last resort adds bias and residual.
  fallbacks_++;
  gemm_simt({M, N, K, K, K, N, 0, 0, 0, 1, true, 1.f, residual ? 1.f : 0.f}, x, w, residual, y, bias, wide, stream);
}

bool CublasLt::linears(const void* x, const void* w, void* y, int64_t n, int64_t M, int64_t N, int64_t K, bool wide, cudaStream_t stream) {
  // Column-major, as in linear(): Y_i^T [N, M] = W_i (K x N, transposed) * X^T, X's batch stride 0.
  std::lock_guard<std::mutex> g(mu_);
  const Plan* p = find(true, false, N, M, K, K, K, N, n, N * K, 0, M * N, nullptr, alignment({x, w, y}, {K, N, N * K, M * N}), wide);
  if (!p) return false;
  run(*p, 1.f, 0.f, w, x, y, y, nullptr, stream);
  return true;
}

void CublasLt::gemm(const void* a, int64_t lda, int64_t stride_a, const void* b, int64_t ldb, int64_t stride_b, bool b_trans, void* c,
                    int64_t ldc, int64_t stride_c, int64_t M, int64_t N, int64_t K, int64_t batch, float alpha, bool accumulate, bool wide,
                    cudaStream_t stream) {
  // Row-major C[M,N] = A[M,K] B[K,N] is column-major C^T[N,M] = B^T[N,K] A^T[K,M]: swap the operands.
  std::lock_guard<std::mutex> g(mu_);
  uint32_t align = alignment({a, b, c}, {lda, ldb, ldc, batch > 1 ? stride_a : 0, batch > 1 ? stride_b : 0, batch > 1 ? stride_c : 0});
  if (const Plan* p = find(b_trans, false, N, M, K, ldb, lda, ldc, batch, stride_b, stride_a, stride_c, nullptr, align, wide)) {
    run(*p, alpha, accumulate ? 1.f : 0.f, b, a, c, c, nullptr, stream);
    return;
  }
  fallbacks_++;
  gemm_simt({M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c, batch, b_trans, alpha, accumulate ? 1.f : 0.f}, a, b,
            accumulate ? c : nullptr, c, nullptr, wide, stream);
}

std::atomic<int64_t> CublasLt::fallbacks_{0};
int64_t CublasLt::fallbacks() { return fallbacks_.load(); }

}  // namespace pg25::cuda
