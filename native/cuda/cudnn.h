// cuDNN 9, opened at run time like cuBLASLt (no cuDNN headers are needed to build): our own
// declarations of the backend (graph) API subset we call, and convolutions through it. One graph per
// shape: convolution forward (fp16 or bf16 storage, fp32 compute) with the bias and the residual added
// by pointwise ops in the same graph, its execution plan found once and cached. test/cudnn-header.test.ts
// checks every declaration below against the real cudnn.h wherever that header is found.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "loader.h"

namespace pg25::cuda {

// The subset of cudnn_graph.h (cuDNN 9) we use: enum values as the public header defines them, and
// the functions' C signatures with enums passed as their 32-bit integers.
namespace dnn {
using Status = int32_t;          // cudnnStatus_t
using Handle = struct Context*;  // cudnnHandle_t
using Desc = void*;              // cudnnBackendDescriptor_t
constexpr Status kSuccess = 0, kBadParam = 2000, kNotSupported = 3000;

// cudnnBackendDescriptorType_t
constexpr int32_t kPointwiseDesc = 0, kConvolutionDesc = 1, kEngineCfgDesc = 3, kEngineHeurDesc = 4, kExecutionPlanDesc = 5,
                  kConvForwardOpDesc = 10, kPointwiseOpDesc = 13, kOperationGraphDesc = 15, kVariantPackDesc = 16, kTensorDesc = 17;
// cudnnBackendAttributeType_t
constexpr int32_t kTypeHandle = 0, kTypeDataType = 1, kTypeBoolean = 2, kTypeInt64 = 3, kTypeFloat = 4, kTypeVoidPtr = 6,
                  kTypeConvolutionMode = 7, kTypeHeurMode = 8, kTypePointwiseMode = 14, kTypeBackendDescriptor = 15;
// cudnnDataType_t, cudnnConvolutionMode_t, cudnnPointwiseMode_t, cudnnBackendHeurMode_t
constexpr int32_t kDataFloat = 0, kDataHalf = 2, kDataBfloat16 = 9;
constexpr int32_t kCrossCorrelation = 1;
constexpr int32_t kPointwiseAdd = 0;
constexpr int32_t kHeurModeFallback = 2, kHeurModeA = 3;
// cudnnBackendAttributeName_t
constexpr int32_t kAttrPointwiseMode = 0, kAttrPointwiseMathPrec = 1;
constexpr int32_t kAttrConvCompType = 100, kAttrConvMode = 101, kAttrConvDilations = 102, kAttrConvFilterStrides = 103,
                  kAttrConvPostPaddings = 104, kAttrConvPrePaddings = 105, kAttrConvSpatialDims = 106;
constexpr int32_t kAttrEngineHeurMode = 200, kAttrEngineHeurOperationGraph = 201, kAttrEngineHeurResults = 202;
constexpr int32_t kAttrExecutionPlanHandle = 400, kAttrExecutionPlanEngineConfig = 401, kAttrExecutionPlanWorkspaceSize = 402;
constexpr int32_t kAttrConvFwdAlpha = 700, kAttrConvFwdBeta = 701, kAttrConvFwdConvDesc = 702, kAttrConvFwdW = 703, kAttrConvFwdX = 704,
                  kAttrConvFwdY = 705;
constexpr int32_t kAttrPointwisePwDescriptor = 750, kAttrPointwiseXDesc = 751, kAttrPointwiseBDesc = 752, kAttrPointwiseYDesc = 753;
constexpr int32_t kAttrOperationGraphHandle = 800, kAttrOperationGraphOps = 801;
constexpr int32_t kAttrTensorByteAlignment = 900, kAttrTensorDataType = 901, kAttrTensorDimensions = 902, kAttrTensorStrides = 903,
                  kAttrTensorUniqueId = 906, kAttrTensorIsVirtual = 907;
constexpr int32_t kAttrVariantPackUniqueIds = 1000, kAttrVariantPackDataPointers = 1001, kAttrVariantPackWorkspace = 1003;

using CreateFn = Status (*)(Handle*);
using DestroyFn = Status (*)(Handle);
using SetStreamFn = Status (*)(Handle, cudaStream_t);
using GetErrorStringFn = const char* (*)(Status);
using GetVersionFn = size_t (*)();
using CreateDescriptorFn = Status (*)(int32_t type, Desc*);
using DestroyDescriptorFn = Status (*)(Desc);
using FinalizeFn = Status (*)(Desc);
using SetAttributeFn = Status (*)(Desc, int32_t name, int32_t type, int64_t count, const void* elements);
using GetAttributeFn = Status (*)(Desc, int32_t name, int32_t type, int64_t requested, int64_t* count, void* elements);
using ExecuteFn = Status (*)(Handle, Desc plan, Desc variant_pack);
}  // namespace dnn

// One convolution's shape, storage and layout (NHWC activations with a KRSC kernel, or NCHW with KCRS):
// the key of its cached plan.
struct ConvShape {
  int64_t n, c, h, w, k, r, s, stride, pad;
  bool wide, bias, residual, nhwc;
  auto key() const { return std::make_tuple(n, c, h, w, k, r, s, stride, pad, wide, bias, residual, nhwc); }
};

class Cudnn {
 public:
  // The library, or null with `why` naming what is missing (not found, or not cuDNN 9).
  static std::unique_ptr<Cudnn> open(std::string& why);
  // The process's one handle and plan cache for `device` (opened on first use, with the device current):
  // every engine on a GPU shares it, so plans (seconds each where cuDNN compiles engines at finalize) are
  // built once per process, not once per engine. Null with `why` as open() says.
  static std::shared_ptr<Cudnn> shared(int device, std::string& why);
  // Plans built in this process so far, and the milliseconds they took (every device, every handle).
  struct BuildStats {
    int64_t plans = 0;
    double ms = 0;
  };
  static BuildStats build_stats();
  ~Cudnn();
  Cudnn(const Cudnn&) = delete;
  Cudnn& operator=(const Cudnn&) = delete;

  // A plan for `shape`, found once (then cached, as is a shape no engine supports), or null.
  struct Plan;
  const Plan* plan(const ConvShape& shape);
  // Device workspace the plan needs, in bytes (the caller takes it from its stream-ordered pool).
  static int64_t workspace_bytes(const Plan& p);
  // Whether the plan's graph adds the bias and residual itself; if not, the caller adds them after.
  static bool fused(const Plan& p);
  // Queues y = conv(x, w) (+ bias + residual when fused) on `stream`. Pointers must be 16-byte aligned.
  void run(const Plan& p, const void* x, const void* w, const void* bias, const void* residual, void* y, void* workspace,
           cudaStream_t stream);
  const std::string& path() const { return lib_.path; }

 private:
  struct Api;
  Cudnn() = default;
  Plan* build(const ConvShape& shape, bool fuse);

  Library lib_;
  std::unique_ptr<Api> api_;
  // Engines run jobs on several threads: the plan cache and each execution are one critical section.
  std::mutex mu_;
  dnn::Handle handle_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the stream last set on the handle
  std::map<decltype(std::declval<ConvShape>().key()), Plan*> plans_;
};

}  // namespace pg25::cuda
