#include "cudnn.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <type_traits>
#include <vector>

#include "../core/error.h"
#include "device_memory.h"
#include "../platform/env.h"

namespace pg25::cuda {

using namespace dnn;

struct Cudnn::Api {
  CreateFn create;
  DestroyFn destroy;
  SetStreamFn set_stream;
  GetErrorStringFn error_string;
  GetVersionFn version;
  CreateDescriptorFn desc_create;
  DestroyDescriptorFn desc_destroy;
  FinalizeFn finalize;
  SetAttributeFn set;
  GetAttributeFn get;
  ExecuteFn execute;
};

// The graph's tensors, by unique id; the virtual ones hold fp32 intermediates that never reach memory.
enum Uid : int64_t { kX = 1, kW = 2, kBias = 3, kResidual = 4, kY = 5, kConvOut = 10, kBiasOut = 11 };

struct Cudnn::Plan {
  Desc plan = nullptr;
  std::vector<Desc> owned;  // every descriptor the plan was built from, kept for its life
  int64_t workspace = 0;
  bool fused = false, bias = false, residual = false;
};

namespace {

// Builds descriptors, remembering each so one call frees them all; the first failing call's status
// is kept and later calls are skipped, so a graph no engine supports costs one check at the end.
struct Builder {
  CreateDescriptorFn create;
  SetAttributeFn set_attribute;
  FinalizeFn finalize_fn;
  std::vector<Desc>& owned;
  Status status = kSuccess;

  Desc make(int32_t type) {
    Desc d = nullptr;
    if (status == kSuccess) status = create(type, &d);
    if (d) owned.push_back(d);
    return d;
  }
  void set(Desc d, int32_t name, int32_t type, int64_t count, const void* v) {
    if (status == kSuccess) status = set_attribute(d, name, type, count, v);
  }
  void set_desc(Desc d, int32_t name, const Desc& v) { set(d, name, kTypeBackendDescriptor, 1, &v); }
  void finalize(Desc d) {
    if (status == kSuccess) status = finalize_fn(d);
  }
  // cuDNN takes dimensions in NCHW order and the layout as strides: NHWC (and KRSC kernels) is what its
  // tensor-core engines read without transposing; NCHW tensors go in as they are.
  Desc tensor(int64_t uid, int32_t type, std::array<int64_t, 4> dims, bool is_virtual, bool nhwc) {
    std::array<int64_t, 4> strides{dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
    if (nhwc) strides = {dims[1] * dims[2] * dims[3], 1, dims[3] * dims[1], dims[1]};
    int64_t align = 16;
    Desc t = make(kTensorDesc);
    set(t, kAttrTensorUniqueId, kTypeInt64, 1, &uid);
    set(t, kAttrTensorDataType, kTypeDataType, 1, &type);
    set(t, kAttrTensorDimensions, kTypeInt64, 4, dims.data());
    set(t, kAttrTensorStrides, kTypeInt64, 4, strides.data());
    set(t, kAttrTensorByteAlignment, kTypeInt64, 1, &align);
    bool v = is_virtual;
    set(t, kAttrTensorIsVirtual, kTypeBoolean, 1, &v);
    finalize(t);
    return t;
  }
  // y = x + b (fp32 math), b broadcast over the dimensions where it is 1.
  Desc add(Desc x, Desc b, Desc y) {
    Desc pw = make(kPointwiseDesc);
    int32_t mode = kPointwiseAdd, prec = kDataFloat;
    set(pw, kAttrPointwiseMode, kTypePointwiseMode, 1, &mode);
    set(pw, kAttrPointwiseMathPrec, kTypeDataType, 1, &prec);
    finalize(pw);
    Desc op = make(kPointwiseOpDesc);
    set_desc(op, kAttrPointwisePwDescriptor, pw);
    set_desc(op, kAttrPointwiseXDesc, x);
    set_desc(op, kAttrPointwiseBDesc, b);
    set_desc(op, kAttrPointwiseYDesc, y);
    finalize(op);
    return op;
  }
};

}  // namespace

std::unique_ptr<Cudnn> Cudnn::open(std::string& why) {
  std::unique_ptr<Cudnn> d(new Cudnn());
  d->lib_ = open_cudnn();
  if (!d->lib_.handle) {
    why = "cuDNN 9 (libcudnn.so.9) was not found";
    return nullptr;
  }
  d->api_ = std::make_unique<Api>();
  Api& a = *d->api_;
  std::string missing;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(d->lib_.symbol(name));
    if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  sym(a.create, "cudnnCreate");
  sym(a.destroy, "cudnnDestroy");
  sym(a.set_stream, "cudnnSetStream");
  sym(a.error_string, "cudnnGetErrorString");
  sym(a.version, "cudnnGetVersion");
  sym(a.desc_create, "cudnnBackendCreateDescriptor");
  sym(a.desc_destroy, "cudnnBackendDestroyDescriptor");
  sym(a.finalize, "cudnnBackendFinalize");
  sym(a.set, "cudnnBackendSetAttribute");
  sym(a.get, "cudnnBackendGetAttribute");
  sym(a.execute, "cudnnBackendExecute");
  if (!missing.empty()) {
    why = "cuDNN at " + d->lib_.path + " lacks " + missing;
    return nullptr;
  }
  size_t v = a.version();
  if (v / 10000 != 9) {
    why = "cuDNN at " + d->lib_.path + " is version " + std::to_string(v) + ", not 9.x (libcudnn.so.9)";
    return nullptr;
  }
  if (Status s = a.create(&d->handle_)) {
    why = "cuDNN at " + d->lib_.path + " could not start (cudnnCreate: " + a.error_string(s) + ")";
    d->handle_ = nullptr;
    return nullptr;
  }
  return d;
}

Cudnn::~Cudnn() {
  if (!api_) return;
  for (auto& kv : plans_) {
    if (!kv.second) continue;
    for (auto it = kv.second->owned.rbegin(); it != kv.second->owned.rend(); ++it) api_->desc_destroy(*it);
    delete kv.second;
  }
  if (handle_) api_->destroy(handle_);
}

namespace {
std::atomic<int64_t> g_plans{0};
std::atomic<int64_t> g_plan_us{0};

// What, besides the device, decides which plans a handle finds: nothing on a GPU; the emulation's
// engine set (PG25_EMU_CUDNN), which tests change between engines of one process.
std::string cache_tag() {
#ifdef PG25_CUDA_EMULATION
  const char* env = platform::env("PG25_EMU_CUDNN");
  return env ? env : "";
#else
  return "";
#endif
}
}  // namespace

std::shared_ptr<Cudnn> Cudnn::shared(int device, std::string& why) {
  static std::mutex mu;
  // Never destroyed: a handle outlives every engine, and destroying it after the driver has shut down at
  // exit is not safe.
  static auto* handles = new std::map<std::pair<int, std::string>, std::shared_ptr<Cudnn>>();
  std::lock_guard<std::mutex> g(mu);
  auto key = std::make_pair(device, cache_tag());
  auto it = handles->find(key);
  if (it != handles->end()) return it->second;
  std::shared_ptr<Cudnn> d = open(why);
  if (d) (*handles)[key] = d;  // a missing library is looked for again by the next engine
  return d;
}

Cudnn::BuildStats Cudnn::build_stats() { return {g_plans.load(), double(g_plan_us.load()) / 1000.0}; }

int64_t Cudnn::workspace_bytes(const Plan& p) { return p.workspace; }
bool Cudnn::fused(const Plan& p) { return p.fused; }

// The graph conv(x, w) [+ bias] [+ residual] when `fuse`, else the convolution alone; its first
// execution plan that finalizes, from heuristics mode A and then the fallback engines. Null when none does.
Cudnn::Plan* Cudnn::build(const ConvShape& s, bool fuse) {
  auto plan = std::make_unique<Plan>();
  Builder b{api_->desc_create, api_->set, api_->finalize, plan->owned};
  int32_t io = s.wide ? kDataBfloat16 : kDataHalf;
  int64_t ho = (s.h + 2 * s.pad - s.r) / s.stride + 1, wo = (s.w + 2 * s.pad - s.s) / s.stride + 1;
  plan->bias = fuse && s.bias;
  plan->residual = fuse && s.residual;
  int adds = int(plan->bias) + int(plan->residual);
  Desc x = b.tensor(kX, io, {s.n, s.c, s.h, s.w}, false, s.nhwc);
  Desc w = b.tensor(kW, io, {s.k, s.c, s.r, s.s}, false, s.nhwc);
  Desc y = b.tensor(kY, io, {s.n, s.k, ho, wo}, false, s.nhwc);
  Desc conv_out = adds ? b.tensor(kConvOut, kDataFloat, {s.n, s.k, ho, wo}, true, s.nhwc) : y;

  Desc conv = b.make(kConvolutionDesc);
  int32_t comp = kDataFloat, mode = kCrossCorrelation;
  int64_t dims = 2, one[2] = {1, 1}, stride[2] = {s.stride, s.stride}, pad[2] = {s.pad, s.pad};
  b.set(conv, kAttrConvCompType, kTypeDataType, 1, &comp);
  b.set(conv, kAttrConvMode, kTypeConvolutionMode, 1, &mode);
  b.set(conv, kAttrConvSpatialDims, kTypeInt64, 1, &dims);
  b.set(conv, kAttrConvDilations, kTypeInt64, 2, one);
  b.set(conv, kAttrConvFilterStrides, kTypeInt64, 2, stride);
  b.set(conv, kAttrConvPrePaddings, kTypeInt64, 2, pad);
  b.set(conv, kAttrConvPostPaddings, kTypeInt64, 2, pad);
  b.finalize(conv);
  Desc fwd = b.make(kConvForwardOpDesc);
  float alpha = 1.f, beta = 0.f;
  b.set_desc(fwd, kAttrConvFwdX, x);
  b.set_desc(fwd, kAttrConvFwdW, w);
  b.set_desc(fwd, kAttrConvFwdY, conv_out);
  b.set_desc(fwd, kAttrConvFwdConvDesc, conv);
  b.set(fwd, kAttrConvFwdAlpha, kTypeFloat, 1, &alpha);
  b.set(fwd, kAttrConvFwdBeta, kTypeFloat, 1, &beta);
  b.finalize(fwd);
  std::vector<Desc> ops{fwd};
  Desc last = conv_out;
  if (plan->bias) {
    Desc bias = b.tensor(kBias, io, {1, s.k, 1, 1}, false, s.nhwc);
    Desc out = plan->residual ? b.tensor(kBiasOut, kDataFloat, {s.n, s.k, ho, wo}, true, s.nhwc) : y;
    ops.push_back(b.add(last, bias, out));
    last = out;
  }
  if (plan->residual) {
    Desc res = b.tensor(kResidual, io, {s.n, s.k, ho, wo}, false, s.nhwc);
    ops.push_back(b.add(last, res, y));
  }
  Desc graph = b.make(kOperationGraphDesc);
  b.set(graph, kAttrOperationGraphHandle, kTypeHandle, 1, &handle_);
  b.set(graph, kAttrOperationGraphOps, kTypeBackendDescriptor, int64_t(ops.size()), ops.data());
  b.finalize(graph);

  for (int32_t heur_mode : {kHeurModeA, kHeurModeFallback}) {
    if (b.status != kSuccess) break;
    Desc heur = b.make(kEngineHeurDesc);
    b.set_desc(heur, kAttrEngineHeurOperationGraph, graph);
    b.set(heur, kAttrEngineHeurMode, kTypeHeurMode, 1, &heur_mode);
    b.finalize(heur);
    int64_t count = 0;
    if (b.status != kSuccess || api_->get(heur, kAttrEngineHeurResults, kTypeBackendDescriptor, 0, &count, nullptr) != kSuccess) {
      b.status = kSuccess;  // this mode offers nothing: try the next
      continue;
    }
    std::vector<Desc> cfgs;
    for (int64_t i = 0; i < std::min<int64_t>(count, 32); i++) cfgs.push_back(b.make(kEngineCfgDesc));
    if (cfgs.empty() || b.status != kSuccess ||
        api_->get(heur, kAttrEngineHeurResults, kTypeBackendDescriptor, int64_t(cfgs.size()), &count, cfgs.data()) != kSuccess)
      continue;
    for (int64_t i = 0; i < std::min<int64_t>(count, int64_t(cfgs.size())); i++) {
      Desc p = b.make(kExecutionPlanDesc);
      b.set(p, kAttrExecutionPlanHandle, kTypeHandle, 1, &handle_);
      b.set_desc(p, kAttrExecutionPlanEngineConfig, cfgs[size_t(i)]);
      b.finalize(p);
      int64_t got = 0;
      if (b.status == kSuccess && api_->get(p, kAttrExecutionPlanWorkspaceSize, kTypeInt64, 1, &got, &plan->workspace) == kSuccess) {
        plan->plan = p;
        plan->fused = adds == int(s.bias) + int(s.residual);
        return plan.release();
      }
      b.status = kSuccess;  // an engine that does not take this graph: the next one may
    }
  }
  for (auto it = plan->owned.rbegin(); it != plan->owned.rend(); ++it) api_->desc_destroy(*it);
  return nullptr;
}

const Cudnn::Plan* Cudnn::plan(const ConvShape& s) {
  std::lock_guard<std::mutex> g(mu_);
  auto key = s.key();
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  // The fused graph first; engines that fuse no pointwise ops may still take the convolution alone.
  auto t0 = std::chrono::steady_clock::now();
  Plan* p = (s.bias || s.residual) ? build(s, true) : nullptr;
  if (!p) p = build(s, false);
  g_plans++;
  g_plan_us += std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  // A shape no engine took while this thread records a CUDA graph may only have been refused by the
  // capture: asked again next time rather than sent to im2col for good.
  if (p || !recording().engine) plans_[key] = p;
  return p;
}

void Cudnn::run(const Plan& p, const void* x, const void* w, const void* bias, const void* residual, void* y, void* workspace,
                cudaStream_t stream) {
  std::lock_guard<std::mutex> g(mu_);
  Api& a = *api_;
  auto check = [&](Status s, const char* what) {
    if (s != kSuccess) throw Error(Code::Internal, std::string("cuDNN ") + what + " failed: " + a.error_string(s));
  };
  if (stream != stream_) {
    check(a.set_stream(handle_, stream), "cudnnSetStream");
    stream_ = stream;
  }
  std::vector<int64_t> uids{kX, kW, kY};
  std::vector<void*> ptrs{const_cast<void*>(x), const_cast<void*>(w), y};
  if (p.bias) uids.push_back(kBias), ptrs.push_back(const_cast<void*>(bias));
  if (p.residual) uids.push_back(kResidual), ptrs.push_back(const_cast<void*>(residual));
  Desc pack = nullptr;
  check(a.desc_create(kVariantPackDesc, &pack), "variant pack");
  Status s = a.set(pack, kAttrVariantPackUniqueIds, kTypeInt64, int64_t(uids.size()), uids.data());
  if (s == kSuccess) s = a.set(pack, kAttrVariantPackDataPointers, kTypeVoidPtr, int64_t(ptrs.size()), ptrs.data());
  if (s == kSuccess) s = a.set(pack, kAttrVariantPackWorkspace, kTypeVoidPtr, 1, &workspace);
  if (s == kSuccess) s = a.finalize(pack);
  if (s == kSuccess) s = a.execute(handle_, p.plan, pack);
  a.desc_destroy(pack);
  check(s, "convolution");
}

}  // namespace pg25::cuda
