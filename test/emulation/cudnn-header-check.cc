// Compiled (never linked) by test/cudnn-header.test.ts against the real cuDNN 9 headers: every enum
// value and function signature we declare in native/cuda/cudnn.h must match them, or a static_assert
// fails naming it. Signatures are compared as the ABI sees them: enums as their 32-bit integer, pointers
// to opaque structs (handles, streams) as void*.
#include <cudnn.h>

#include <cstdint>
#include <type_traits>

#include "../../native/cuda/cudnn.h"

namespace d = pg25::cuda::dnn;

template <class T>
struct id {
  using type = T;
};
template <class T>
constexpr auto abi() {
  if constexpr (std::is_enum_v<T>) {
    static_assert(sizeof(T) == 4, "a cuDNN enum is not 32 bits wide");
    return id<int32_t>{};
  } else if constexpr (std::is_pointer_v<T>) {
    using P = std::remove_pointer_t<T>;
    if constexpr (std::is_class_v<std::remove_cv_t<P>>) {
      return id<void*>{};
    } else {
      using N = typename decltype(abi<std::remove_cv_t<P>>())::type;
      if constexpr (std::is_const_v<P>) return id<const N*>{};
      else return id<N*>{};
    }
  } else {
    return id<T>{};
  }
}
template <class T>
using abi_t = typename decltype(abi<T>())::type;
template <class F>
struct sig;
template <class R, class... A>
struct sig<R (*)(A...)> {
  using type = abi_t<R> (*)(abi_t<A>...);
};
#define SAME_SIGNATURE(real, ours) \
  static_assert(std::is_same_v<sig<decltype(&::real)>::type, sig<d::ours>::type>, #real "'s signature differs from our dnn::" #ours)
#define SAME_VALUE(ours, real) static_assert(d::ours == int64_t(real), "dnn::" #ours " is not " #real)

static_assert(CUDNN_MAJOR == 9, "these declarations are for cuDNN 9");
static_assert(sizeof(cudnnStatus_t) == sizeof(d::Status), "cudnnStatus_t's width");

SAME_SIGNATURE(cudnnCreate, CreateFn);
SAME_SIGNATURE(cudnnDestroy, DestroyFn);
SAME_SIGNATURE(cudnnSetStream, SetStreamFn);
SAME_SIGNATURE(cudnnGetErrorString, GetErrorStringFn);
SAME_SIGNATURE(cudnnGetVersion, GetVersionFn);
SAME_SIGNATURE(cudnnBackendCreateDescriptor, CreateDescriptorFn);
SAME_SIGNATURE(cudnnBackendDestroyDescriptor, DestroyDescriptorFn);
SAME_SIGNATURE(cudnnBackendFinalize, FinalizeFn);
SAME_SIGNATURE(cudnnBackendSetAttribute, SetAttributeFn);
SAME_SIGNATURE(cudnnBackendGetAttribute, GetAttributeFn);
SAME_SIGNATURE(cudnnBackendExecute, ExecuteFn);

SAME_VALUE(kSuccess, CUDNN_STATUS_SUCCESS);
SAME_VALUE(kBadParam, CUDNN_STATUS_BAD_PARAM);
SAME_VALUE(kNotSupported, CUDNN_STATUS_NOT_SUPPORTED);

SAME_VALUE(kPointwiseDesc, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
SAME_VALUE(kConvolutionDesc, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
SAME_VALUE(kEngineCfgDesc, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
SAME_VALUE(kEngineHeurDesc, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
SAME_VALUE(kExecutionPlanDesc, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
SAME_VALUE(kConvForwardOpDesc, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
SAME_VALUE(kPointwiseOpDesc, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
SAME_VALUE(kOperationGraphDesc, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
SAME_VALUE(kVariantPackDesc, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
SAME_VALUE(kTensorDesc, CUDNN_BACKEND_TENSOR_DESCRIPTOR);

SAME_VALUE(kTypeHandle, CUDNN_TYPE_HANDLE);
SAME_VALUE(kTypeDataType, CUDNN_TYPE_DATA_TYPE);
SAME_VALUE(kTypeBoolean, CUDNN_TYPE_BOOLEAN);
SAME_VALUE(kTypeInt64, CUDNN_TYPE_INT64);
SAME_VALUE(kTypeFloat, CUDNN_TYPE_FLOAT);
SAME_VALUE(kTypeVoidPtr, CUDNN_TYPE_VOID_PTR);
SAME_VALUE(kTypeConvolutionMode, CUDNN_TYPE_CONVOLUTION_MODE);
SAME_VALUE(kTypeHeurMode, CUDNN_TYPE_HEUR_MODE);
SAME_VALUE(kTypePointwiseMode, CUDNN_TYPE_POINTWISE_MODE);
SAME_VALUE(kTypeBackendDescriptor, CUDNN_TYPE_BACKEND_DESCRIPTOR);

SAME_VALUE(kDataFloat, CUDNN_DATA_FLOAT);
SAME_VALUE(kDataHalf, CUDNN_DATA_HALF);
SAME_VALUE(kDataBfloat16, CUDNN_DATA_BFLOAT16);
SAME_VALUE(kCrossCorrelation, CUDNN_CROSS_CORRELATION);
SAME_VALUE(kPointwiseAdd, CUDNN_POINTWISE_ADD);
SAME_VALUE(kHeurModeFallback, CUDNN_HEUR_MODE_FALLBACK);
SAME_VALUE(kHeurModeA, CUDNN_HEUR_MODE_A);

SAME_VALUE(kAttrPointwiseMode, CUDNN_ATTR_POINTWISE_MODE);
SAME_VALUE(kAttrPointwiseMathPrec, CUDNN_ATTR_POINTWISE_MATH_PREC);
SAME_VALUE(kAttrConvCompType, CUDNN_ATTR_CONVOLUTION_COMP_TYPE);
SAME_VALUE(kAttrConvMode, CUDNN_ATTR_CONVOLUTION_CONV_MODE);
SAME_VALUE(kAttrConvDilations, CUDNN_ATTR_CONVOLUTION_DILATIONS);
SAME_VALUE(kAttrConvFilterStrides, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES);
SAME_VALUE(kAttrConvPostPaddings, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS);
SAME_VALUE(kAttrConvPrePaddings, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS);
SAME_VALUE(kAttrConvSpatialDims, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS);
SAME_VALUE(kAttrEngineHeurMode, CUDNN_ATTR_ENGINEHEUR_MODE);
SAME_VALUE(kAttrEngineHeurOperationGraph, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH);
SAME_VALUE(kAttrEngineHeurResults, CUDNN_ATTR_ENGINEHEUR_RESULTS);
SAME_VALUE(kAttrExecutionPlanHandle, CUDNN_ATTR_EXECUTION_PLAN_HANDLE);
SAME_VALUE(kAttrExecutionPlanEngineConfig, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG);
SAME_VALUE(kAttrExecutionPlanWorkspaceSize, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
SAME_VALUE(kAttrConvFwdAlpha, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA);
SAME_VALUE(kAttrConvFwdBeta, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA);
SAME_VALUE(kAttrConvFwdConvDesc, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC);
SAME_VALUE(kAttrConvFwdW, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W);
SAME_VALUE(kAttrConvFwdX, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X);
SAME_VALUE(kAttrConvFwdY, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y);
SAME_VALUE(kAttrPointwisePwDescriptor, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR);
SAME_VALUE(kAttrPointwiseXDesc, CUDNN_ATTR_OPERATION_POINTWISE_XDESC);
SAME_VALUE(kAttrPointwiseBDesc, CUDNN_ATTR_OPERATION_POINTWISE_BDESC);
SAME_VALUE(kAttrPointwiseYDesc, CUDNN_ATTR_OPERATION_POINTWISE_YDESC);
SAME_VALUE(kAttrOperationGraphHandle, CUDNN_ATTR_OPERATIONGRAPH_HANDLE);
SAME_VALUE(kAttrOperationGraphOps, CUDNN_ATTR_OPERATIONGRAPH_OPS);
SAME_VALUE(kAttrTensorByteAlignment, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT);
SAME_VALUE(kAttrTensorDataType, CUDNN_ATTR_TENSOR_DATA_TYPE);
SAME_VALUE(kAttrTensorDimensions, CUDNN_ATTR_TENSOR_DIMENSIONS);
SAME_VALUE(kAttrTensorStrides, CUDNN_ATTR_TENSOR_STRIDES);
SAME_VALUE(kAttrTensorUniqueId, CUDNN_ATTR_TENSOR_UNIQUE_ID);
SAME_VALUE(kAttrTensorIsVirtual, CUDNN_ATTR_TENSOR_IS_VIRTUAL);
SAME_VALUE(kAttrVariantPackUniqueIds, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS);
SAME_VALUE(kAttrVariantPackDataPointers, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS);
SAME_VALUE(kAttrVariantPackWorkspace, CUDNN_ATTR_VARIANT_PACK_WORKSPACE);

#ifdef PG25_EXPECT_MISMATCH
// The test's control: two deliberate mismatches that the checks above must catch.
SAME_SIGNATURE(cudnnBackendSetAttribute, GetAttributeFn);
SAME_VALUE(kAttrTensorStrides, CUDNN_ATTR_TENSOR_DIMENSIONS);
#endif
