// The cuBLASLt stand-in (cublaslt.cc), called through the symbols the loader resolves, declared here
// from the documented cublasLt.h signatures (CUDA 13) with opaque handle types; checked against a
// double-precision reference by selftest_main.cc.
#include <cmath>
#include <random>

#include "../libraries.h"
#include "selftest.h"

namespace selftest {

namespace {

struct LtContext;
struct LtDesc;
struct LtLayout;
struct LtPref;
struct LtAlgo {
  uint64_t data[8];
};
struct LtHeuristic {
  LtAlgo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};

// The documented enum values we use.
constexpr int kOk = 0, kInvalidValue = 7;
constexpr int kR16F = 2, kR32F = 0, kCompute32F = 68;
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kLayoutRows = 2, kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
constexpr int kPrefMaxWorkspace = 1, kPrefAlignA = 5, kPrefAlignB = 6, kPrefAlignC = 7, kPrefAlignD = 8;
constexpr uint32_t kEpiDefault = 1, kEpiRelu = 2, kEpiBias = 4, kEpiReluBias = 6;

struct Lt {
  int (*create)(LtContext**);
  int (*destroy)(LtContext*);
  int (*desc_create)(LtDesc**, int compute, int scale);
  int (*desc_destroy)(LtDesc*);
  int (*desc_set)(LtDesc*, int attr, const void* buf, size_t size);
  int (*layout_create)(LtLayout**, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*layout_destroy)(LtLayout*);
  int (*layout_set)(LtLayout*, int attr, const void* buf, size_t size);
  int (*pref_create)(LtPref**);
  int (*pref_destroy)(LtPref*);
  int (*pref_set)(LtPref*, int attr, const void* buf, size_t size);
  int (*heuristic)(LtContext*, LtDesc*, LtLayout*, LtLayout*, LtLayout*, LtLayout*, LtPref*, int requested, LtHeuristic* results,
                   int* found);
  int (*matmul)(LtContext*, LtDesc*, const void* alpha, const void* A, LtLayout*, const void* B, LtLayout*, const void* beta, const void* C,
                LtLayout*, void* D, LtLayout*, const LtAlgo* algo, void* workspace, size_t workspace_bytes, cudaStream_t stream);
  LtContext* handle = nullptr;
};

template <class F>
bool resolve(F& fn, const char* name) {
  fn = reinterpret_cast<F>(pg25::emu::library_symbol("cublasLt", name));
  EXPECT(fn != nullptr, "the emulated cublasLt does not export " << name);
  return fn != nullptr;
}

bool load_lt(Lt& lt) {
  bool ok = resolve(lt.create, "cublasLtCreate") & resolve(lt.destroy, "cublasLtDestroy") &
            resolve(lt.desc_create, "cublasLtMatmulDescCreate") & resolve(lt.desc_destroy, "cublasLtMatmulDescDestroy") &
            resolve(lt.desc_set, "cublasLtMatmulDescSetAttribute") & resolve(lt.layout_create, "cublasLtMatrixLayoutCreate") &
            resolve(lt.layout_destroy, "cublasLtMatrixLayoutDestroy") & resolve(lt.layout_set, "cublasLtMatrixLayoutSetAttribute") &
            resolve(lt.pref_create, "cublasLtMatmulPreferenceCreate") & resolve(lt.pref_destroy, "cublasLtMatmulPreferenceDestroy") &
            resolve(lt.pref_set, "cublasLtMatmulPreferenceSetAttribute") & resolve(lt.heuristic, "cublasLtMatmulAlgoGetHeuristic") &
            resolve(lt.matmul, "cublasLtMatmul");
  EXPECT(pg25::emu::library_symbol("cublasLt", "cublasLtNoSuchFunction") == nullptr, "an unknown symbol resolved");
  if (ok) EXPECT(lt.create(&lt.handle) == kOk && lt.handle, "cublasLtCreate failed");
  return ok && lt.handle;
}

#define LT_OK(expr)                                          \
  do {                                                       \
    int st_ = (expr);                                        \
    EXPECT(st_ == kOk, #expr << " returned status " << st_); \
  } while (0)

// One column-major fp16 problem: D = epilogue(alpha op(A) op(B) + beta C + bias), batched.
struct Gemm {
  bool ta = false, tb = false;
  int64_t m = 5, n = 7, k = 9, pad = 3, batch = 1;  // leading dimension = rows + pad
  float alpha = 1.f, beta = 0.f;
  uint32_t epilogue = kEpiDefault;
  uint32_t align = 0;  // the preference's minimum alignment for A-D (0: the default, 256)
};

// The matrices of a problem, held on the host (fp16 patterns) and on the device.
struct GemmData {
  const Gemm& g;
  int64_t arows, acols, brows, bcols, lda, ldb, ldc, sa, sb, sc;
  std::vector<uint16_t> a, b, c, bias;
  Dev<uint16_t> da, db, dc, dd, dbias;
  LtDesc* desc = nullptr;
  LtLayout *la = nullptr, *lb = nullptr, *lc = nullptr, *ld = nullptr;
  LtPref* pref = nullptr;
  LtHeuristic heur{};

  static int64_t size_of(int64_t ld, int64_t cols, int64_t stride, int64_t batch) { return (batch - 1) * stride + ld * cols; }

  GemmData(const Gemm& gm, std::mt19937& rng)
      : g(gm), arows(gm.ta ? gm.k : gm.m), acols(gm.ta ? gm.m : gm.k), brows(gm.tb ? gm.n : gm.k), bcols(gm.tb ? gm.k : gm.n),
        lda(arows + gm.pad), ldb(brows + gm.pad + 1), ldc(gm.m + gm.pad + 2), sa(lda * acols + 8), sb(ldb * bcols + 16),
        sc(ldc * gm.n + 24), a(fill(size_of(lda, acols, sa, gm.batch), rng, 1.f)), b(fill(size_of(ldb, bcols, sb, gm.batch), rng, 1.f)),
        c(fill(size_of(ldc, gm.n, sc, gm.batch), rng, 2.f)), bias(fill(gm.m, rng, 1.5f)), da(a.size()), db(b.size()), dc(c.size()),
        dd(c.size()), dbias(bias.size()) {
    da.upload(a), db.upload(b), dc.upload(c), dbias.upload(bias);
  }
  static std::vector<uint16_t> fill(int64_t count, std::mt19937& rng, float scale) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<uint16_t> v(static_cast<size_t>(count));
    for (auto& x : v) x = emu_half(u(rng));
    return v;
  }

  // Descriptors, layouts, preference and heuristic, as our backend sets them up.
  // A descriptor already made (by the caller) is used as it is: its transposes and epilogue are the defaults.
  bool plan(Lt& lt, const void* bias_ptr) {
    if (!desc) {
      int32_t ta = g.ta, tb = g.tb;
      LT_OK(lt.desc_create(&desc, kCompute32F, kR32F));
      LT_OK(lt.desc_set(desc, kDescTransA, &ta, sizeof ta));
      LT_OK(lt.desc_set(desc, kDescTransB, &tb, sizeof tb));
      LT_OK(lt.desc_set(desc, kDescEpilogue, &g.epilogue, sizeof g.epilogue));
      if (g.epilogue & kEpiBias) LT_OK(lt.desc_set(desc, kDescBiasPointer, &bias_ptr, sizeof bias_ptr));
    }
    layout(lt, &la, arows, acols, lda, sa);
    layout(lt, &lb, brows, bcols, ldb, sb);
    layout(lt, &lc, g.m, g.n, ldc, sc);
    layout(lt, &ld, g.m, g.n, ldc, sc);
    LT_OK(lt.pref_create(&pref));
    uint64_t workspace = 0;
    LT_OK(lt.pref_set(pref, kPrefMaxWorkspace, &workspace, sizeof workspace));
    if (g.align)
      for (int attr : {kPrefAlignA, kPrefAlignB, kPrefAlignC, kPrefAlignD}) LT_OK(lt.pref_set(pref, attr, &g.align, sizeof g.align));
    int found = 0;
    int st = lt.heuristic(lt.handle, desc, la, lb, lc, ld, pref, 1, &heur, &found);
    EXPECT(st == kOk && found == 1 && heur.state == kOk, "cublasLtMatmulAlgoGetHeuristic: status " << st << ", found " << found);
    return st == kOk && found == 1;
  }
  void layout(Lt& lt, LtLayout** l, int64_t rows, int64_t cols, int64_t ldim, int64_t stride) {
    LT_OK(lt.layout_create(l, kR16F, uint64_t(rows), uint64_t(cols), ldim));
    int32_t batch = int32_t(g.batch);
    LT_OK(lt.layout_set(*l, kLayoutBatchCount, &batch, sizeof batch));
    LT_OK(lt.layout_set(*l, kLayoutStridedBatchOffset, &stride, sizeof stride));
  }
  int matmul(Lt& lt, const void* A, const void* B, const void* C, void* D, cudaStream_t s) {
    return lt.matmul(lt.handle, desc, &g.alpha, A, la, B, lb, &g.beta, C, lc, D, ld, &heur.algo, nullptr, 0, s);
  }
  void release(Lt& lt) {
    LT_OK(lt.desc_destroy(desc));
    for (LtLayout* l : {la, lb, lc, ld}) LT_OK(lt.layout_destroy(l));
    LT_OK(lt.pref_destroy(pref));
  }

  // Compares D with a double-precision reference; C may be ignored (beta = 0). Elements outside the
  // matrices (padding rows, gaps between batches) must still hold the allocation's poison.
  void verify(const char* what) {
    std::vector<uint16_t> d = dd.download();
    int bad = 0, relu_zeros = 0;
    std::vector<bool> inside(d.size(), false);
    for (int64_t bt = 0; bt < g.batch; bt++)
      for (int64_t j = 0; j < g.n; j++)
        for (int64_t i = 0; i < g.m; i++) {
          double acc = 0, mag = 0;
          for (int64_t q = 0; q < g.k; q++) {
            double x = half_value(a[size_t(bt * sa + (g.ta ? i * lda + q : q * lda + i))]);
            double y = half_value(b[size_t(bt * sb + (g.tb ? q * ldb + j : j * ldb + q))]);
            acc += x * y;
            mag += std::fabs(x * y);
          }
          size_t ci = size_t(bt * sc + j * ldc + i);
          double ref = double(g.alpha) * acc, scale = std::fabs(double(g.alpha)) * mag;
          if (g.beta != 0.f) ref += double(g.beta) * half_value(c[ci]), scale += std::fabs(double(g.beta) * half_value(c[ci]));
          if (g.epilogue & kEpiBias) ref += half_value(bias[size_t(i)]), scale += std::fabs(half_value(bias[size_t(i)]));
          if (g.epilogue & kEpiRelu) ref = std::max(ref, 0.0);
          // fp16 rounding of the output (half an ulp, 2^-11 relative) plus fp32 accumulation error.
          double tol = std::ldexp(std::fabs(ref), -10) + double(g.k + 8) * std::ldexp(scale, -22) + std::ldexp(1.0, -24);
          double got = half_value(d[ci]);
          inside[ci] = true;
          relu_zeros += got == 0.0;
          if (!(std::fabs(got - ref) <= tol) && bad++ < 4)
            EXPECT(false,
                   what << ": D[" << bt << "][" << i << "," << j << "] = " << got << ", reference " << ref << " (tolerance " << tol << ")");
        }
    EXPECT(bad == 0, what << ": " << bad << " elements of D differ from the reference");
    if (g.epilogue & kEpiRelu) EXPECT(relu_zeros > 0, what << ": RELU produced no zeros (the test data should have negative sums)");
    int touched = 0;
    for (size_t i = 0; i < d.size(); i++) touched += !inside[i] && d[i] != 0xffff;
    EXPECT(touched == 0, what << ": " << touched << " elements outside D were written");
  }
};

struct LtSession {
  Lt lt{};
  bool ok = false;
  LtSession() { ok = load_lt(lt); }
  ~LtSession() {
    if (lt.handle) lt.destroy(lt.handle);
  }
};

// Runs one problem end to end and checks D.
void run_gemm(Lt& lt, const Gemm& g, const char* what, std::mt19937& rng) {
  Stream s;
  GemmData m(g, rng);
  if (!m.plan(lt, m.dbias.p)) return m.release(lt);
  int st = m.matmul(lt, m.da.p, m.db.p, m.dc.p, m.dd.p, s);
  EXPECT(st == kOk, what << ": cublasLtMatmul returned " << st);
  CUDA_OK(cudaStreamSynchronize(s));
  m.release(lt);
  if (st == kOk) m.verify(what);
}

void check_lt_gemm() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(7);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Gemm g;
      g.ta = ta, g.tb = tb, g.batch = 3, g.alpha = 0.5f, g.beta = 2.f;
      std::string what = std::string(ta ? "T" : "N") + "/" + (tb ? "T" : "N") + " batch 3, alpha 0.5, beta 2";
      run_gemm(lt.lt, g, what.c_str(), rng);
      g.batch = 1, g.m = 17, g.n = 3, g.k = 33, g.alpha = 1.f, g.beta = 1.f;  // another shape, accumulating into C
      what = std::string(ta ? "T" : "N") + "/" + (tb ? "T" : "N") + " 17x3x33, beta 1";
      run_gemm(lt.lt, g, what.c_str(), rng);
    }
  EXPECT(report(false).matmuls == 8, report(false).matmuls << " matmuls counted, want 8");
  EXPECT_NO_MISUSE();
}

void check_lt_epilogues() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(11);
  for (uint32_t epi : {kEpiBias, kEpiReluBias, kEpiRelu})
    for (bool ta : {false, true}) {
      Gemm g;
      g.ta = ta, g.tb = !ta, g.batch = 3, g.alpha = 0.5f, g.beta = 2.f, g.epilogue = epi;
      std::string what = std::string(epi == kEpiBias ? "BIAS" : epi == kEpiRelu ? "RELU" : "RELU_BIAS") + (ta ? " T/N" : " N/T");
      run_gemm(lt.lt, g, what.c_str(), rng);
    }
  EXPECT_NO_MISUSE();
}

// beta = 0: C is not read, so a C full of NaN (the allocation's poison, never written) gives finite D.
void check_lt_beta0() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(13);
  Stream s;
  Gemm g;
  g.batch = 3, g.alpha = 1.5f, g.beta = 0.f;
  GemmData m(g, rng);
  Dev<uint16_t> nan_c(m.c.size());  // poisoned: 0xffff is NaN
  if (m.plan(lt.lt, nullptr)) {
    LT_OK(m.matmul(lt.lt, m.da.p, m.db.p, nan_c.p, m.dd.p, s));
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("beta 0 with a NaN C");
  }
  m.release(lt.lt);
  EXPECT_NO_MISUSE();
}

// A plan made for 16-byte alignment refuses an operand only 2-byte aligned (and one made for the
// default 256 bytes refuses a 16-byte aligned one); 16-byte aligned operands are fine for the first.
void check_lt_alignment() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(17);
  Stream s;
  Gemm g;
  g.align = 16;
  GemmData m(g, rng);
  Dev<uint16_t> a_room(m.a.size() + 64);  // room for the offset operands
  CUDA_OK(cudaMemcpy(a_room.p + 8, m.a.data(), m.a.size() * 2, cudaMemcpyHostToDevice));
  if (m.plan(lt.lt, nullptr)) {
    int st = m.matmul(lt.lt, a_room.p + 1, m.db.p, m.dc.p, m.dd.p, s);  // 2 bytes past a 256-byte boundary
    EXPECT(st != kOk, "a 2-byte aligned A was accepted by a plan for 16-byte alignment");
    EXPECT_MISUSE("cublasLtMatmul", "A at", "2-byte aligned", "chosen for 16");
    EXPECT(report(false).queued == 0, "the refused matmul was queued");
    LT_OK(m.matmul(lt.lt, a_room.p + 8, m.db.p, m.dc.p, m.dd.p, s));  // 16 bytes past: what the plan allows
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("16-byte aligned A");
    EXPECT_NO_MISUSE();
  }
  m.release(lt.lt);
  Gemm g256 = g;
  g256.align = 0;
  GemmData m2(g256, rng);
  if (m2.plan(lt.lt, nullptr)) {
    EXPECT(m2.matmul(lt.lt, m2.da.p, m2.db.p, m2.dc.p, a_room.p + 8, s) != kOk,
           "a 16-byte aligned D was accepted by a plan for 256-byte alignment");
    EXPECT_MISUSE("cublasLtMatmul", "D at", "16-byte aligned", "chosen for 256");
  }
  m2.release(lt.lt);
}

// An operand whose layout reaches past the end of its allocation is refused before anything runs.
void check_lt_extent() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(19);
  Stream s;
  Gemm g;
  g.batch = 2;
  GemmData m(g, rng);
  // B's last element lies (batch - 1) strides, (cols - 1) leading dimensions and rows - 1 elements in.
  int64_t need = (g.batch - 1) * m.sb + (m.bcols - 1) * m.ldb + m.brows;
  Dev<uint16_t> short_b(static_cast<size_t>(need - 1)), exact_b(static_cast<size_t>(need));
  if (m.plan(lt.lt, nullptr)) {
    EXPECT(m.matmul(lt.lt, m.da.p, short_b.p, m.dc.p, m.dd.p, s) != kOk, "a B extending one element past its allocation was accepted");
    EXPECT_MISUSE("cublasLtMatmul", "B spans", "not inside one device allocation");
    LT_OK(m.matmul(lt.lt, m.da.p, exact_b.p, m.dc.p, m.dd.p, s));  // exactly the extent: fine
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT_NO_MISUSE();
    std::vector<uint16_t> host_d(m.c.size() + 128);
    auto* aligned =
        reinterpret_cast<uint16_t*>((reinterpret_cast<uintptr_t>(host_d.data()) + 255) & ~uintptr_t(255));  // only the range is wrong
    EXPECT(m.matmul(lt.lt, m.da.p, m.db.p, m.dc.p, aligned, s) != kOk, "a host pointer was accepted for D");
    EXPECT_MISUSE("cublasLtMatmul", "D spans", "not inside one device allocation");
    EXPECT(report(false).queued == 0, "a refused matmul was queued");
  }
  m.release(lt.lt);
}

// Attributes of the wrong size are refused with CUBLAS_STATUS_INVALID_VALUE and change nothing.
void check_lt_attribute_size() {
  LtSession lt;
  if (!lt.ok) return;
  std::mt19937 rng(23);
  Gemm g;  // N/N, m 5, k 9: a transposed A would not fit
  GemmData m(g, rng);
  LT_OK(lt.lt.desc_create(&m.desc, kCompute32F, kR32F));
  int64_t wide = 1;
  EXPECT(lt.lt.desc_set(m.desc, kDescTransA, &wide, sizeof wide) == kInvalidValue, "an 8-byte CUBLASLT_MATMUL_DESC_TRANSA was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_TRANSA", "takes 4 bytes, got 8");
  uint16_t narrow = 1;
  EXPECT(lt.lt.desc_set(m.desc, kDescEpilogue, &narrow, sizeof narrow) == kInvalidValue,
         "a 2-byte CUBLASLT_MATMUL_DESC_EPILOGUE was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_EPILOGUE", "takes 4 bytes");
  EXPECT(lt.lt.desc_set(m.desc, kDescTransA, nullptr, 4) == kInvalidValue, "a null attribute buffer was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_DESC_TRANSA");
  LtLayout* l = nullptr;
  LT_OK(lt.lt.layout_create(&l, kR16F, 5, 9, 8));
  uint32_t rows32 = 9;
  EXPECT(lt.lt.layout_set(l, kLayoutRows, &rows32, sizeof rows32) == kInvalidValue, "a 4-byte CUBLASLT_MATRIX_LAYOUT_ROWS was accepted");
  EXPECT_MISUSE("CUBLASLT_MATRIX_LAYOUT_ROWS", "takes 8 bytes, got 4");
  LT_OK(lt.lt.layout_destroy(l));
  LtPref* p = nullptr;
  LT_OK(lt.lt.pref_create(&p));
  uint64_t align64 = 16;
  EXPECT(lt.lt.pref_set(p, kPrefAlignA, &align64, sizeof align64) == kInvalidValue,
         "an 8-byte CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES was accepted");
  EXPECT_MISUSE("CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES", "takes 4 bytes, got 8");
  LT_OK(lt.lt.pref_destroy(p));
  // The refused TRANSA (value 1) left A untransposed: the N/N problem still plans and computes correctly.
  Stream s;
  if (m.plan(lt.lt, nullptr)) {
    LT_OK(m.matmul(lt.lt, m.da.p, m.db.p, m.dc.p, m.dd.p, s));
    CUDA_OK(cudaStreamSynchronize(s));
    m.verify("after refused attributes");
  }
  m.release(lt.lt);
  EXPECT_NO_MISUSE();
}

}  // namespace

std::vector<Check> cublaslt_checks() {
  return {
      {"cublaslt_gemm", check_lt_gemm},
      {"cublaslt_epilogues", check_lt_epilogues},
      {"cublaslt_beta0_ignores_c", check_lt_beta0},
      {"cublaslt_unaligned_refused", check_lt_alignment},
      {"cublaslt_extent_refused", check_lt_extent},
      {"cublaslt_attribute_size_refused", check_lt_attribute_size},
  };
}

}  // namespace selftest
