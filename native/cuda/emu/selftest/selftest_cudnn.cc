// Self-test of the emulated cuDNN (emu/cudnn.cc, emu/cudnn_exec.cc), called through the declarations
// our backend uses (native/cuda/cudnn.h, themselves checked against the real header): graphs computed
// against a double-precision reference (NCHW and NHWC strides, stride 2, padding, bias and residual
// adds, both engines), and the API's refusals — wrong attribute types and counts, attributes set after
// finalization, shapes that make no convolution, misaligned or out-of-allocation pointers — each
// answered with the documented status and recorded as misuse, while NOT_SUPPORTED is not.
// Prints `ok NAME` or `FAIL NAME: details` per check; exit status 1 if any failed.
// test/cuda-emulation-cudnn.test.ts runs it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "../../cudnn.h"
#include "../include/cuda_fp16.h"
#include "../libraries.h"
#include "../runtime.h"
#include "selftest.h"

namespace {

using namespace pg25::cuda::dnn;
#define IS(expr, want)                                                            \
  do {                                                                            \
    Status s_ = (expr);                                                           \
    EXPECT(s_ == (want), #expr << " returned " << s_ << ", expected " << (want)); \
  } while (0)

struct Api {
  CreateFn create;
  DestroyFn destroy;
  SetStreamFn set_stream;
  CreateDescriptorFn make;
  DestroyDescriptorFn destroy_desc;
  FinalizeFn finalize;
  SetAttributeFn set;
  GetAttributeFn get;
  ExecuteFn execute;
} api;

template <class F>
void load(F& f, const char* name) {
  f = reinterpret_cast<F>(pg25::emu::library_symbol("cudnn", name));
}

uint64_t misuse() { return pg25::emu::report(false).misuse_count; }

// Descriptors made here are destroyed when the scope ends.
struct Scope {
  std::vector<Desc> all;
  ~Scope() {
    for (auto it = all.rbegin(); it != all.rend(); ++it) api.destroy_desc(*it);
  }
  Desc make(int32_t type) {
    Desc d = nullptr;
    api.make(type, &d);
    all.push_back(d);
    return d;
  }
  Desc tensor(int64_t uid, int32_t type, std::vector<int64_t> dims, std::vector<int64_t> strides, bool virt = false, int64_t align = 16) {
    Desc t = make(kTensorDesc);
    api.set(t, kAttrTensorUniqueId, kTypeInt64, 1, &uid);
    api.set(t, kAttrTensorDataType, kTypeDataType, 1, &type);
    api.set(t, kAttrTensorDimensions, kTypeInt64, int64_t(dims.size()), dims.data());
    api.set(t, kAttrTensorStrides, kTypeInt64, int64_t(strides.size()), strides.data());
    api.set(t, kAttrTensorByteAlignment, kTypeInt64, 1, &align);
    api.set(t, kAttrTensorIsVirtual, kTypeBoolean, 1, &virt);
    IS(api.finalize(t), kSuccess);
    return t;
  }
  Desc conv_op(Desc x, Desc w, Desc y, int64_t stride, int64_t pad) {
    Desc c = make(kConvolutionDesc);
    int32_t comp = kDataFloat, mode = kCrossCorrelation;
    int64_t dims = 2, one[2] = {1, 1}, st[2] = {stride, stride}, pd[2] = {pad, pad};
    api.set(c, kAttrConvCompType, kTypeDataType, 1, &comp);
    api.set(c, kAttrConvMode, kTypeConvolutionMode, 1, &mode);
    api.set(c, kAttrConvSpatialDims, kTypeInt64, 1, &dims);
    api.set(c, kAttrConvDilations, kTypeInt64, 2, one);
    api.set(c, kAttrConvFilterStrides, kTypeInt64, 2, st);
    api.set(c, kAttrConvPrePaddings, kTypeInt64, 2, pd);
    api.set(c, kAttrConvPostPaddings, kTypeInt64, 2, pd);
    IS(api.finalize(c), kSuccess);
    Desc op = make(kConvForwardOpDesc);
    float alpha = 1.f, beta = 0.f;
    api.set(op, kAttrConvFwdX, kTypeBackendDescriptor, 1, &x);
    api.set(op, kAttrConvFwdW, kTypeBackendDescriptor, 1, &w);
    api.set(op, kAttrConvFwdY, kTypeBackendDescriptor, 1, &y);
    api.set(op, kAttrConvFwdConvDesc, kTypeBackendDescriptor, 1, &c);
    api.set(op, kAttrConvFwdAlpha, kTypeFloat, 1, &alpha);
    api.set(op, kAttrConvFwdBeta, kTypeFloat, 1, &beta);
    return op;
  }
  Desc add_op(Desc x, Desc b, Desc y) {
    Desc pw = make(kPointwiseDesc);
    int32_t mode = kPointwiseAdd, prec = kDataFloat;
    api.set(pw, kAttrPointwiseMode, kTypePointwiseMode, 1, &mode);
    api.set(pw, kAttrPointwiseMathPrec, kTypeDataType, 1, &prec);
    IS(api.finalize(pw), kSuccess);
    Desc op = make(kPointwiseOpDesc);
    api.set(op, kAttrPointwisePwDescriptor, kTypeBackendDescriptor, 1, &pw);
    api.set(op, kAttrPointwiseXDesc, kTypeBackendDescriptor, 1, &x);
    api.set(op, kAttrPointwiseBDesc, kTypeBackendDescriptor, 1, &b);
    api.set(op, kAttrPointwiseYDesc, kTypeBackendDescriptor, 1, &y);
    return op;
  }
  Desc graph(Handle h, std::vector<Desc> ops) {
    Desc g = make(kOperationGraphDesc);
    api.set(g, kAttrOperationGraphHandle, kTypeHandle, 1, &h);
    api.set(g, kAttrOperationGraphOps, kTypeBackendDescriptor, int64_t(ops.size()), ops.data());
    return g;
  }
  // The execution plan for heuristics result `index` of mode A (engine 0, then 1), or null.
  Desc plan(Handle h, Desc graph, int index, Status* status = nullptr) {
    Desc heur = make(kEngineHeurDesc);
    int32_t mode = kHeurModeA;
    api.set(heur, kAttrEngineHeurOperationGraph, kTypeBackendDescriptor, 1, &graph);
    api.set(heur, kAttrEngineHeurMode, kTypeHeurMode, 1, &mode);
    IS(api.finalize(heur), kSuccess);
    int64_t n = 0;
    IS(api.get(heur, kAttrEngineHeurResults, kTypeBackendDescriptor, 0, &n, nullptr), kSuccess);
    EXPECT(n == 2, "mode A offers " << n << " engines");
    std::vector<Desc> cfgs;
    for (int64_t i = 0; i < n; i++) cfgs.push_back(make(kEngineCfgDesc));
    if (n <= index) return nullptr;
    IS(api.get(heur, kAttrEngineHeurResults, kTypeBackendDescriptor, n, &n, cfgs.data()), kSuccess);
    Desc p = make(kExecutionPlanDesc);
    api.set(p, kAttrExecutionPlanHandle, kTypeHandle, 1, &h);
    api.set(p, kAttrExecutionPlanEngineConfig, kTypeBackendDescriptor, 1, &cfgs[size_t(index)]);
    Status s = api.finalize(p);
    if (status) *status = s;
    return s == kSuccess ? p : nullptr;
  }
  Desc pack(std::vector<int64_t> uids, std::vector<void*> ptrs, void* workspace) {
    Desc v = make(kVariantPackDesc);
    api.set(v, kAttrVariantPackUniqueIds, kTypeInt64, int64_t(uids.size()), uids.data());
    api.set(v, kAttrVariantPackDataPointers, kTypeVoidPtr, int64_t(ptrs.size()), ptrs.data());
    api.set(v, kAttrVariantPackWorkspace, kTypeVoidPtr, 1, &workspace);
    IS(api.finalize(v), kSuccess);
    return v;
  }
};

// Device buffer of fp16 values.
struct Buf {
  void* p = nullptr;
  size_t n;
  explicit Buf(size_t count) : n(count) { cudaMalloc(&p, n * 2); }
  ~Buf() { cudaFree(p); }
  void up(const std::vector<float>& v) {
    std::vector<__half> h(v.begin(), v.end());
    cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice);
  }
  std::vector<float> down() const {
    std::vector<__half> h(n);
    cudaMemcpy(h.data(), p, n * 2, cudaMemcpyDeviceToHost);
    return std::vector<float>(h.begin(), h.end());
  }
};

std::vector<float> values(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = float(__half(float(int(seed >> 8) % 2001 - 1000) / 1000.f));
  }
  return v;
}

// y = conv(x, w) + bias + residual, with `nhwc` choosing the activations' strides; checked against a
// direct double-precision convolution.
void conv_graph(bool nhwc, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t stride, int64_t pad, int engine) {
  Handle h = nullptr;
  IS(api.create(&h), kSuccess);
  cudaStream_t st;
  cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
  IS(api.set_stream(h, st), kSuccess);
  int64_t Ho = (H + 2 * pad - R) / stride + 1, Wo = (W + 2 * pad - R) / stride + 1;
  auto strides = [&](int64_t c, int64_t hh, int64_t ww) {
    return nhwc ? std::vector<int64_t>{hh * ww * c, 1, ww * c, c} : std::vector<int64_t>{c * hh * ww, hh * ww, ww, 1};
  };
  {
    Scope s;
    Desc x = s.tensor(1, kDataHalf, {N, C, H, W}, strides(C, H, W));
    Desc w = s.tensor(2, kDataHalf, {K, C, R, R}, {C * R * R, R * R, R, 1});
    Desc b = s.tensor(3, kDataHalf, {1, K, 1, 1}, {K, 1, 1, 1});
    Desc r = s.tensor(4, kDataHalf, {N, K, Ho, Wo}, strides(K, Ho, Wo));
    Desc y = s.tensor(5, kDataHalf, {N, K, Ho, Wo}, strides(K, Ho, Wo));
    Desc t1 = s.tensor(10, kDataFloat, {N, K, Ho, Wo}, {K * Ho * Wo, Ho * Wo, Wo, 1}, true);
    Desc t2 = s.tensor(11, kDataFloat, {N, K, Ho, Wo}, {K * Ho * Wo, Ho * Wo, Wo, 1}, true);
    Desc conv = s.conv_op(x, w, t1, stride, pad), add1 = s.add_op(t1, b, t2), add2 = s.add_op(t2, r, y);
    for (Desc op : {conv, add1, add2}) IS(api.finalize(op), kSuccess);
    Desc g = s.graph(h, {add2, conv, add1});  // any order: the emulation runs them by dependency
    IS(api.finalize(g), kSuccess);
    Desc plan = s.plan(h, g, engine);
    EXPECT(plan, "engine " << engine << " did not finalize");
    if (!plan) return;
    int64_t ws_bytes = -1, n = 0;
    IS(api.get(plan, kAttrExecutionPlanWorkspaceSize, kTypeInt64, 1, &n, &ws_bytes), kSuccess);
    EXPECT((engine == 0) == (ws_bytes > 0), "engine " << engine << " workspace " << ws_bytes);
    Buf bx{size_t(N * C * H * W)}, bw{size_t(K * C * R * R)}, bb{size_t(K)}, br{size_t(N * K * Ho * Wo)}, by{size_t(N * K * Ho * Wo)};
    std::vector<float> vx = values(bx.n, 1), vw = values(bw.n, 2), vb = values(bb.n, 3), vr = values(br.n, 4);
    bx.up(vx), bw.up(vw), bb.up(vb), br.up(vr);
    void* ws = nullptr;
    if (ws_bytes > 0) cudaMalloc(&ws, size_t(ws_bytes));
    Desc v = s.pack({1, 2, 3, 4, 5}, {bx.p, bw.p, bb.p, br.p, by.p}, ws);
    IS(api.execute(h, plan, v), kSuccess);
    cudaStreamSynchronize(st);
    std::vector<float> got = by.down();
    auto at = [&](int64_t n_, int64_t c, int64_t hh, int64_t ww, int64_t cc, int64_t HH, int64_t WW) {
      std::vector<int64_t> sd = strides(cc, HH, WW);
      return size_t(n_ * sd[0] + c * sd[1] + hh * sd[2] + ww * sd[3]);
    };
    double worst = 0;
    for (int64_t n_ = 0; n_ < N; n_++)
      for (int64_t k = 0; k < K; k++)
        for (int64_t oh = 0; oh < Ho; oh++)
          for (int64_t ow = 0; ow < Wo; ow++) {
            double acc = vb[size_t(k)] + vr[at(n_, k, oh, ow, K, Ho, Wo)];
            for (int64_t c = 0; c < C; c++)
              for (int64_t i = 0; i < R; i++)
                for (int64_t j = 0; j < R; j++) {
                  int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                  if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                    acc += double(vw[size_t(((k * C + c) * R + i) * R + j)]) * vx[at(n_, c, ih, iw, C, H, W)];
                }
            worst = std::max(worst, std::fabs(acc - got[at(n_, k, oh, ow, K, Ho, Wo)]) / (1 + std::fabs(acc)));
          }
    EXPECT(worst < 2e-3, (nhwc ? "NHWC" : "NCHW") << " engine " << engine << ": worst relative error " << worst);
    if (ws) cudaFree(ws);
  }
  IS(api.destroy(h), kSuccess);
  cudaStreamDestroy(st);
}

void check_graphs() {
  conv_graph(false, 2, 3, 7, 6, 4, 3, 2, 1, 1);   // NCHW, stride 2, the generic engine
  conv_graph(true, 1, 5, 6, 7, 3, 3, 1, 1, 1);    // NHWC strides
  conv_graph(false, 2, 8, 5, 5, 16, 1, 1, 0, 0);  // 1x1, the engine that stages the filter in its workspace
  conv_graph(true, 1, 8, 9, 4, 8, 3, 1, 1, 0);
}

void check_attributes() {
  Handle h = nullptr;
  api.create(&h);
  Scope s;
  uint64_t before = misuse();
  Desc t = s.make(kTensorDesc);
  int32_t i32[4] = {1, 2, 3, 4};
  int64_t dims[4] = {1, 2, 3, 4}, uid2[2] = {1, 2};
  IS(api.set(t, kAttrTensorDimensions, 23 /* CUDNN_TYPE_INT32 */, 4, i32), 2010);  // BAD_PARAM_ATTRIBUTE_TYPE
  IS(api.set(t, kAttrTensorUniqueId, kTypeInt64, 2, uid2), kBadParam);             // one element
  IS(api.set(t, kAttrTensorDimensions, kTypeInt64, 9, dims), kBadParam);           // more than CUDNN_DIM_MAX
  IS(api.set(t, kAttrConvCompType, kTypeDataType, 1, i32), kBadParam);             // not a tensor attribute
  IS(api.set(t, kAttrTensorDimensions, kTypeInt64, 4, nullptr), 2002);             // null elements
  IS(api.finalize(t), kBadParam);                                                  // required attributes unset
  EXPECT(misuse() - before == 6, "6 refusals, " << misuse() - before << " recorded as misuse");
  Desc ok = s.tensor(7, kDataHalf, {1, 2, 3, 4}, {24, 12, 4, 1});
  before = misuse();
  IS(api.set(ok, kAttrTensorUniqueId, kTypeInt64, 1, dims), 1001);  // NOT_INITIALIZED: already finalized
  IS(api.finalize(ok), kBadParam);
  Desc odd = s.make(kTensorDesc);
  int64_t uid = 8, align = 3, strides3[3] = {12, 4, 1};
  int32_t half = kDataHalf;
  api.set(odd, kAttrTensorUniqueId, kTypeInt64, 1, &uid);
  api.set(odd, kAttrTensorDataType, kTypeDataType, 1, &half);
  api.set(odd, kAttrTensorDimensions, kTypeInt64, 4, dims);
  api.set(odd, kAttrTensorStrides, kTypeInt64, 3, strides3);
  api.set(odd, kAttrTensorByteAlignment, kTypeInt64, 1, &align);
  IS(api.finalize(odd), kBadParam);  // 4 dimensions, 3 strides
  Desc heur = s.make(kEngineHeurDesc);
  int64_t n = 0;
  IS(api.get(heur, kAttrEngineHeurResults, kTypeBackendDescriptor, 0, &n, nullptr), 1001);  // not finalized
  EXPECT(misuse() - before == 4, "4 refusals, " << misuse() - before << " recorded as misuse");
  api.destroy(h);
}

void check_shapes_and_pointers() {
  Handle h = nullptr;
  api.create(&h);
  Scope s;
  uint64_t before = misuse();
  Desc x = s.tensor(1, kDataHalf, {1, 3, 8, 8}, {192, 64, 8, 1});
  Desc w = s.tensor(2, kDataHalf, {4, 3, 3, 3}, {27, 9, 3, 1});
  Desc wrong = s.tensor(3, kDataHalf, {1, 4, 7, 8}, {224, 56, 8, 1});  // a 3x3 pad-1 convolution gives 8x8
  IS(api.finalize(s.conv_op(x, w, wrong, 1, 1)), 2008);                // BAD_PARAM_SHAPE_MISMATCH
  Desc y = s.tensor(4, kDataHalf, {1, 4, 8, 8}, {256, 64, 8, 1});
  Desc b5 = s.tensor(5, kDataHalf, {1, 5, 1, 1}, {5, 1, 1, 1});
  IS(api.finalize(s.add_op(y, b5, y)), 2008);  // 5 channels do not broadcast to 4
  EXPECT(misuse() - before == 2, "2 refusals, " << misuse() - before << " recorded");
  // A graph: engine 0 refuses 3 channels with NOT_SUPPORTED, which is no misuse; engine 1 takes it.
  Desc conv = s.conv_op(x, w, y, 1, 1);
  IS(api.finalize(conv), kSuccess);
  Desc g = s.graph(h, {conv});
  IS(api.finalize(g), kSuccess);
  before = misuse();
  Status refused = kSuccess;
  EXPECT(!s.plan(h, g, 0, &refused) && refused == kNotSupported, "engine 0 took 3 channels (status " << refused << ")");
  EXPECT(misuse() == before, "NOT_SUPPORTED was recorded as misuse");
  Desc plan = s.plan(h, g, 1);
  Buf bx(192 + 8), bw(108), by(256), small(16);
  std::vector<float> poison(256, NAN);
  by.up(poison);
  char* misaligned = static_cast<char*>(bx.p) + 2;
  IS(api.execute(h, plan, s.pack({1, 2, 4}, {misaligned, bw.p, by.p}, nullptr)), 2003);          // BAD_PARAM_MISALIGNED_POINTER
  IS(api.execute(h, plan, s.pack({1, 2, 4}, {bx.p, bw.p, small.p}, nullptr)), kBadParam);        // y spans past its allocation
  IS(api.execute(h, plan, s.pack({1, 2}, {bx.p, bw.p}, nullptr)), kBadParam);                    // no pointer for y
  IS(api.execute(h, plan, s.pack({1, 2, 4, 9}, {bx.p, bw.p, by.p, by.p}, nullptr)), kBadParam);  // not a tensor of the graph
  cudaDeviceSynchronize();
  EXPECT(std::isnan(by.down()[0]), "a refused execution wrote its output");
  EXPECT(misuse() - before == 4, "4 refused executions, " << misuse() - before << " recorded");
  // Engine 0's plan wants workspace: executing without it is refused.
  Desc x8 = s.tensor(11, kDataHalf, {1, 8, 4, 4}, {128, 16, 4, 1}), w8 = s.tensor(12, kDataHalf, {8, 8, 1, 1}, {8, 1, 1, 1});
  Desc y8 = s.tensor(13, kDataHalf, {1, 8, 4, 4}, {128, 16, 4, 1});
  Desc conv8 = s.conv_op(x8, w8, y8, 1, 0);
  IS(api.finalize(conv8), kSuccess);
  Desc g8 = s.graph(h, {conv8});
  IS(api.finalize(g8), kSuccess);
  Desc plan8 = s.plan(h, g8, 0);
  Buf b8(128), w8b(64), y8b(128);
  before = misuse();
  IS(api.execute(h, plan8, s.pack({11, 12, 13}, {b8.p, w8b.p, y8b.p}, nullptr)), kBadParam);
  EXPECT(misuse() - before == 1, "a missing workspace was not recorded");
  api.destroy(h);
}

using selftest::Check;
const Check kChecks[] = {
    {"cudnn_graphs_match_reference", check_graphs},
    {"cudnn_attributes_checked", check_attributes},
    {"cudnn_shapes_and_pointers_checked", check_shapes_and_pointers},
};

}  // namespace

int main() {
  load(api.create, "cudnnCreate");
  load(api.destroy, "cudnnDestroy");
  load(api.set_stream, "cudnnSetStream");
  load(api.make, "cudnnBackendCreateDescriptor");
  load(api.destroy_desc, "cudnnBackendDestroyDescriptor");
  load(api.finalize, "cudnnBackendFinalize");
  load(api.set, "cudnnBackendSetAttribute");
  load(api.get, "cudnnBackendGetAttribute");
  load(api.execute, "cudnnBackendExecute");
  int failed = 0;
  for (const Check& c : kChecks) {
    selftest::begin_check();
    c.fn();
    failed += !selftest::print_outcome(c.name);
  }
  pg25::emu::Report r = pg25::emu::report(false);
  std::printf("%s live allocations %llu\n", r.live_allocations == 0 ? "ok" : "FAIL", static_cast<unsigned long long>(r.live_allocations));
  return failed || r.live_allocations ? 1 : 0;
}
