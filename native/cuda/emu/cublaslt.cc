// The emulated cuBLASLt: the documented semantics (cublasLt.h, CUDA 13) of exactly the descriptors
// and attributes our backend sets. Column-major layouts with leading dimensions and strided batches,
// transposes, alpha/beta (host pointers), the DEFAULT/BIAS/RELU/RELU_BIAS epilogues, fp16/bf16/fp32
// matrices with fp32 accumulation. Every call is checked as the library would, and more: operand
// extents must lie inside device allocations, and a matmul's pointers must have the minimum alignment
// its algorithm was chosen for. Work runs in stream order on the emulated runtime.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../cpu/threadpool.h"
#include "include/cuda_bf16.h"
#include "include/cuda_fp16.h"
#include "libraries.h"
#include "runtime.h"
#include "../../platform/env.h"

namespace pg25::emu {
namespace {

using Status = int;
constexpr Status kOk = 0, kNotInitialized = 1, kInvalidValue = 7, kNotSupported = 15;
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;  // cudaDataType
constexpr int kCompute32F = 68;                   // CUBLAS_COMPUTE_32F
constexpr uint32_t kEpiDefault = 1, kEpiRelu = 2, kEpiBias = 4, kEpiReluBias = 6;
constexpr uint64_t kAlgoMagic = 0x70673235456d754cull;

struct Handle {
  int magic = 1;
};
struct Desc {
  int32_t compute = kCompute32F, scale = kR32F, pointer_mode = 0, transa = 0, transb = 0, bias_type = -1;
  uint32_t epilogue = kEpiDefault;
  const void* bias = nullptr;
};
struct Layout {
  uint32_t type = kR16F;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0, stride = 0;
  int32_t order = 0, batch = 1;
};
struct Pref {
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};
  uint32_t search = 0;
};
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

Status bad(Status s, const std::string& why) {
  note_misuse("cuBLASLt: " + why);
  return s;
}

size_t elem_size(uint32_t t) { return t == kR32F ? 4 : 2; }
bool known_type(uint32_t t) { return t == kR32F || t == kR16F || t == kR16BF; }
float load(const void* p, uint32_t t, int64_t i) {
  if (t == kR32F) return static_cast<const float*>(p)[i];
  if (t == kR16F) return float(static_cast<const __half*>(p)[i]);
  return float(static_cast<const __nv_bfloat16*>(p)[i]);
}
void store(void* p, uint32_t t, int64_t i, float v) {
  if (t == kR32F) static_cast<float*>(p)[i] = v;
  else if (t == kR16F) static_cast<__half*>(p)[i] = __half(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __nv_bfloat16(v);
}

// Copies an attribute value of exactly the documented size.
template <class T>
Status set(T& field, const void* buf, size_t size, const char* name) {
  if (!buf || size != sizeof(T))
    return bad(kInvalidValue, std::string(name) + " takes " + std::to_string(sizeof(T)) + " bytes, got " + std::to_string(size));
  std::memcpy(&field, buf, sizeof(T));
  return kOk;
}

// The problem a descriptor and four layouts state: D[m, n] = op(A)[m, k] op(B)[k, n] (+ C).
struct Problem {
  int64_t m, n, k, batch;
};
Status shape(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dd, Problem& p) {
  if (d.compute != kCompute32F || d.scale != kR32F) return bad(kNotSupported, "only CUBLAS_COMPUTE_32F with fp32 scale is emulated");
  if (d.pointer_mode != 0) return bad(kNotSupported, "only host pointer mode is emulated");
  if (d.transa > 1 || d.transb > 1) return bad(kNotSupported, "only CUBLAS_OP_N and CUBLAS_OP_T are emulated");
  if (d.epilogue != kEpiDefault && d.epilogue != kEpiRelu && d.epilogue != kEpiBias && d.epilogue != kEpiReluBias)
    return bad(kNotSupported, "epilogue " + std::to_string(d.epilogue) + " is not emulated");
  for (const Layout* l : {&a, &b, &c, &dd}) {
    if (!known_type(l->type)) return bad(kNotSupported, "matrix type " + std::to_string(l->type) + " is not emulated");
    if (l->order != 0) return bad(kNotSupported, "only CUBLASLT_ORDER_COL is emulated");
    if (l->ld < int64_t(l->rows) || l->ld < 1)
      return bad(kInvalidValue, "leading dimension " + std::to_string(l->ld) + " is less than the " + std::to_string(l->rows) + " rows");
    if (l->batch < 1) return bad(kInvalidValue, "batch count " + std::to_string(l->batch));
  }
  if (a.type != b.type || a.type == kR32F) return bad(kNotSupported, "A and B must share one 16-bit type");
  if (c.type != dd.type) return bad(kNotSupported, "C and D must share one type");
  p.m = int64_t(d.transa ? a.cols : a.rows);
  p.k = int64_t(d.transa ? a.rows : a.cols);
  int64_t kb = int64_t(d.transb ? b.cols : b.rows);
  p.n = int64_t(d.transb ? b.rows : b.cols);
  if (kb != p.k) return bad(kInvalidValue, "op(A) has " + std::to_string(p.k) + " columns but op(B) has " + std::to_string(kb) + " rows");
  if (int64_t(dd.rows) != p.m || int64_t(dd.cols) != p.n || c.rows != dd.rows || c.cols != dd.cols)
    return bad(kInvalidValue, "C/D are " + std::to_string(dd.rows) + "x" + std::to_string(dd.cols) + ", the product is " +
                                  std::to_string(p.m) + "x" + std::to_string(p.n));
  if (a.batch != dd.batch || b.batch != dd.batch || c.batch != dd.batch) return bad(kInvalidValue, "batch counts of A, B, C and D differ");
  p.batch = dd.batch;
  return kOk;
}

// Elements a layout spans, batches included.
int64_t extent(const Layout& l) { return (l.batch - 1) * l.stride + (int64_t(l.cols) - 1) * l.ld + int64_t(l.rows); }

uint32_t alignment_of(const void* p) {
  auto v = reinterpret_cast<uintptr_t>(p) | 256;
  return uint32_t(v & (~v + 1));
}

Status Create(Handle** h) {
  if (!h) return kInvalidValue;
  *h = new Handle();
  return kOk;
}
Status Destroy(Handle* h) {
  if (!h) return kNotInitialized;
  delete h;
  return kOk;
}
Status DescCreate(Desc** d, int32_t compute, int32_t scale) {
  if (!d) return kInvalidValue;
  *d = new Desc();
  (*d)->compute = compute;
  (*d)->scale = scale;
  return kOk;
}
Status DescDestroy(Desc* d) {
  delete d;
  return kOk;
}
Status DescSet(Desc* d, int attr, const void* buf, size_t size) {
  if (!d) return kInvalidValue;
  switch (attr) {
    case 0: return set(d->compute, buf, size, "CUBLASLT_MATMUL_DESC_COMPUTE_TYPE");
    case 1: return set(d->scale, buf, size, "CUBLASLT_MATMUL_DESC_SCALE_TYPE");
    case 2: return set(d->pointer_mode, buf, size, "CUBLASLT_MATMUL_DESC_POINTER_MODE");
    case 3: return set(d->transa, buf, size, "CUBLASLT_MATMUL_DESC_TRANSA");
    case 4: return set(d->transb, buf, size, "CUBLASLT_MATMUL_DESC_TRANSB");
    case 7: return set(d->epilogue, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE");
    case 8: {
      // The bias pointer is set per call: a thread that sets it while another is between its own set
      // and matmul gives that call the wrong bias. Yield here so such a race shows up in tests.
      Status st = set(d->bias, buf, size, "CUBLASLT_MATMUL_DESC_BIAS_POINTER");
      std::this_thread::yield();
      return st;
    }
    case 26: return set(d->bias_type, buf, size, "CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE");
  }
  return bad(kNotSupported, "matmul descriptor attribute " + std::to_string(attr) + " is not emulated");
}
Status LayoutCreate(Layout** l, uint32_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  if (!l) return kInvalidValue;
  *l = new Layout();
  (*l)->type = type;
  (*l)->rows = rows;
  (*l)->cols = cols;
  (*l)->ld = ld;
  return kOk;
}
Status LayoutDestroy(Layout* l) {
  delete l;
  return kOk;
}
Status LayoutSet(Layout* l, int attr, const void* buf, size_t size) {
  if (!l) return kInvalidValue;
  switch (attr) {
    case 0: return set(l->type, buf, size, "CUBLASLT_MATRIX_LAYOUT_TYPE");
    case 1: return set(l->order, buf, size, "CUBLASLT_MATRIX_LAYOUT_ORDER");
    case 2: return set(l->rows, buf, size, "CUBLASLT_MATRIX_LAYOUT_ROWS");
    case 3: return set(l->cols, buf, size, "CUBLASLT_MATRIX_LAYOUT_COLS");
    case 4: return set(l->ld, buf, size, "CUBLASLT_MATRIX_LAYOUT_LD");
    case 5: return set(l->batch, buf, size, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT");
    case 6: return set(l->stride, buf, size, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET");
  }
  return bad(kNotSupported, "matrix layout attribute " + std::to_string(attr) + " is not emulated");
}
Status PrefCreate(Pref** p) {
  if (!p) return kInvalidValue;
  *p = new Pref();
  return kOk;
}
Status PrefDestroy(Pref* p) {
  delete p;
  return kOk;
}
Status PrefSet(Pref* p, int attr, const void* buf, size_t size) {
  if (!p) return kInvalidValue;
  switch (attr) {
    case 0: return set(p->search, buf, size, "CUBLASLT_MATMUL_PREF_SEARCH_MODE");
    case 1: return set(p->workspace, buf, size, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES");
    case 5: return set(p->align[0], buf, size, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES");
    case 6: return set(p->align[1], buf, size, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES");
    case 7: return set(p->align[2], buf, size, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES");
    case 8: return set(p->align[3], buf, size, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES");
  }
  return bad(kNotSupported, "matmul preference attribute " + std::to_string(attr) + " is not emulated");
}

// One algorithm, which needs no workspace and relies on the alignments the preference allows; the
// bias pointer's alignment is read from the descriptor, as the real heuristic does.
// PG25_EMU_CUBLASLT=no-broadcast offers none for a batch whose operand repeats (batch stride 0), as a
// library build without such kernels would answer; =no-bias none for a bias epilogue; =none none at all.
Status Heuristic(Handle* h, Desc* d, Layout* a, Layout* b, Layout* c, Layout* dd, Pref* pref, int requested, HeuristicResult* results,
                 int* found) {
  if (!h || !d || !a || !b || !c || !dd || !pref || !results || !found)
    return bad(kInvalidValue, "cublasLtMatmulAlgoGetHeuristic: null argument");
  if (requested <= 0) return bad(kInvalidValue, "cublasLtMatmulAlgoGetHeuristic: requestedAlgoCount " + std::to_string(requested));
  *found = 0;
  Problem p;
  if (Status s = shape(*d, *a, *b, *c, *dd, p)) return s;
  for (uint32_t al : pref->align)
    if (al == 0 || (al & (al - 1))) return bad(kInvalidValue, "minimum alignment " + std::to_string(al) + " is not a power of two");
  const char* limit = platform::env("PG25_EMU_CUBLASLT");
  std::string knob = limit ? limit : "";
  if (knob == "no-broadcast" && p.batch > 1 && (a->stride == 0 || b->stride == 0)) return kNotSupported;
  if (knob == "none" || (knob == "no-bias" && (d->epilogue & kEpiBias))) return kNotSupported;
  // The real heuristic chooses for the bias pointer's alignment: asked before that pointer is set, it
  // assumes one the call's pointer may not have.
  if ((d->epilogue & kEpiBias) && !d->bias)
    note_misuse("cuBLASLt: cublasLtMatmulAlgoGetHeuristic asked for a bias epilogue before CUBLASLT_MATMUL_DESC_BIAS_POINTER was set");
  std::memset(&results[0], 0, sizeof(HeuristicResult));
  Algo& algo = results[0].algo;
  algo.data[0] = kAlgoMagic;
  for (int i = 0; i < 4; i++) algo.data[1 + i] = std::min<uint32_t>(pref->align[i], 256);
  algo.data[5] = (d->epilogue & kEpiBias) && d->bias ? std::min(alignment_of(d->bias), uint32_t(algo.data[4])) : 256;
  results[0].workspaceSize = 0;
  results[0].state = kOk;
  results[0].wavesCount = 1.f;
  *found = 1;
  return kOk;
}

Status Matmul(Handle* h, Desc* d, const void* alpha, const void* A, Layout* a, const void* B, Layout* b, const void* beta, const void* C,
              Layout* c, void* D, Layout* dd, const Algo* algo, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!h || !d || !a || !b || !c || !dd || !alpha || !beta) return bad(kInvalidValue, "cublasLtMatmul: null argument");
  Problem p;
  if (Status s = shape(*d, *a, *b, *c, *dd, p)) return s;
  if (algo && algo->data[0] != kAlgoMagic)
    return bad(kInvalidValue, "cublasLtMatmul: the algorithm did not come from cublasLtMatmulAlgoGetHeuristic");
  if (C == D && (c->ld != dd->ld || c->stride != dd->stride))
    return bad(kInvalidValue, "in-place matmul (C == D) with different C and D layouts");
  bool has_bias = d->epilogue & kEpiBias;
  if (has_bias && !d->bias) return bad(kInvalidValue, "a bias epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER");
  int bias_type = d->bias_type < 0 ? int(dd->type) : d->bias_type;
  float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  struct Operand {
    const void* ptr;
    const Layout* layout;
    const char* name;
  };
  const Operand ops[4] = {{A, a, "A"}, {B, b, "B"}, {C, c, "C"}, {D, dd, "D"}};
  uint32_t declared = 256;
  for (int i = 0; i < 4; i++) {
    if (i == 2 && be == 0.f) continue;  // C is not read when beta is zero
    uint32_t need = algo ? uint32_t(algo->data[1 + i]) : 256;
    declared = std::min(declared, need);
    if (alignment_of(ops[i].ptr) < need)
      return bad(kInvalidValue,
                 std::string("cublasLtMatmul: ") + ops[i].name + " at " + std::to_string(reinterpret_cast<uintptr_t>(ops[i].ptr)) + " is " +
                     std::to_string(alignment_of(ops[i].ptr)) + "-byte aligned; its algorithm was chosen for " + std::to_string(need));
    size_t bytes = size_t(extent(*ops[i].layout)) * elem_size(ops[i].layout->type);
    if (!is_device_range(ops[i].ptr, bytes))
      return bad(kInvalidValue, std::string("cublasLtMatmul: ") + ops[i].name + " spans " + std::to_string(bytes) +
                                    " bytes that are not inside one device allocation");
  }
  if (has_bias) {
    uint32_t need = algo ? uint32_t(algo->data[5]) : 2;
    if (alignment_of(d->bias) < need)
      return bad(kInvalidValue, "cublasLtMatmul: the bias pointer is less aligned than when the algorithm was chosen");
    if (!is_device_range(d->bias, size_t(p.m) * elem_size(uint32_t(bias_type))))
      return bad(kInvalidValue, "cublasLtMatmul: the bias vector is not inside one device allocation");
  }
  if (workspace_bytes && !is_device_range(workspace, workspace_bytes))
    return bad(kInvalidValue, "cublasLtMatmul: the workspace is not device memory");
  note_matmul(declared);
  // Everything the work needs is captured now: descriptors may change or die once this returns.
  Desc desc = *d;
  Layout la = *a, lb = *b, lc = *c, ld = *dd;
  bool ok = enqueue(stream, [=] {
    std::vector<float> opa(size_t(p.m * p.k)), opb(size_t(p.n * p.k));
    for (int64_t bt = 0; bt < p.batch; bt++) {
      // op(A) row-major [m, k] and op(B) transposed to [n, k]: each output is a contiguous dot product.
      for (int64_t i = 0; i < p.m; i++)
        for (int64_t q = 0; q < p.k; q++)
          opa[size_t(i * p.k + q)] = load(A, la.type, bt * la.stride + (desc.transa ? i * la.ld + q : q * la.ld + i));
      for (int64_t j = 0; j < p.n; j++)
        for (int64_t q = 0; q < p.k; q++)
          opb[size_t(j * p.k + q)] = load(B, lb.type, bt * lb.stride + (desc.transb ? q * lb.ld + j : j * lb.ld + q));
      cpu::parallel_for(p.n, 16, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; j++)
          for (int64_t i = 0; i < p.m; i++) {
            const float* x = &opa[size_t(i * p.k)];
            const float* y = &opb[size_t(j * p.k)];
            float acc = 0.f;
            for (int64_t q = 0; q < p.k; q++) acc += x[q] * y[q];
            float v = al * acc;
            if (be != 0.f) v += be * load(C, lc.type, bt * lc.stride + j * lc.ld + i);
            if (desc.epilogue & kEpiBias) v += load(desc.bias, uint32_t(bias_type), i);
            if (desc.epilogue & kEpiRelu) v = v > 0.f ? v : 0.f;
            store(D, ld.type, bt * ld.stride + j * ld.ld + i, v);
          }
      });
    }
    return std::string();
  });
  return ok ? kOk : bad(kInvalidValue, "cublasLtMatmul: not a live stream");
}

struct Symbol {
  const char* name;
  void* fn;
};
size_t GetVersion() { return 120800; }  // the 12.8 the stand-in follows

#define SYM(name, fn) \
  { name, reinterpret_cast<void*>(&fn) }
const Symbol kCublasLt[] = {
    SYM("cublasLtGetVersion", GetVersion),
    SYM("cublasLtCreate", Create),
    SYM("cublasLtDestroy", Destroy),
    SYM("cublasLtMatmulDescCreate", DescCreate),
    SYM("cublasLtMatmulDescDestroy", DescDestroy),
    SYM("cublasLtMatmulDescSetAttribute", DescSet),
    SYM("cublasLtMatrixLayoutCreate", LayoutCreate),
    SYM("cublasLtMatrixLayoutDestroy", LayoutDestroy),
    SYM("cublasLtMatrixLayoutSetAttribute", LayoutSet),
    SYM("cublasLtMatmulPreferenceCreate", PrefCreate),
    SYM("cublasLtMatmulPreferenceDestroy", PrefDestroy),
    SYM("cublasLtMatmulPreferenceSetAttribute", PrefSet),
    SYM("cublasLtMatmulAlgoGetHeuristic", Heuristic),
    SYM("cublasLtMatmul", Matmul),
};
#undef SYM

}  // namespace

void* cublaslt_symbol(const char* symbol) {
  for (const Symbol& s : kCublasLt)
    if (std::strcmp(s.name, symbol) == 0) return s.fn;
  return nullptr;
}

}  // namespace pg25::emu
