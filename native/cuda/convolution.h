// The CUDA backend's convolutions: through cuDNN where it has a plan for the shape, else im2col +
// cuBLASLt GEMMs, in either activation layout (NHWC with KRSC kernels, or NCHW with KCRS).
#pragma once
#include <memory>

#include "../backend/tensor.h"
#include "cublaslt.h"
#include "cudnn.h"
#include "device_memory.h"

namespace pg25::cuda {

struct ConvEngine {
  CublasLt& lt;
  Cudnn* dnn;  // null without cuDNN (or with PG25_DISABLE_CUDNN=1)
  const std::shared_ptr<Stream>& stream_owner;
  cudaStream_t stream;
};

// y = conv(x, w) (+ bias[K]) (+ residual, y's shape), into y (made by the caller: [N, K, Ho, Wo] in
// x's layout, which w and the residual share), queued on e.stream.
void convolve(const ConvEngine& e, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual,
              const Tensor& y, bool wide);

}  // namespace pg25::cuda
