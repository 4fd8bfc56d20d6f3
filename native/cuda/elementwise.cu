// First CUDA kernels: the scheduler's linear combination and fp16 conversions, each with a plain CPU
// twin in native/cpu (cpu_backend.cc lincomb, io/safetensors.cc half conversion) to check against.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace pg25::cuda {

// y = sum_k c[k] * x[k], up to 4 terms, fp16 storage with fp32 arithmetic.
__global__ void lincomb_f16(int64_t n, int terms, const __half* __restrict__ x0, const __half* __restrict__ x1,
                            const __half* __restrict__ x2, const __half* __restrict__ x3, float c0, float c1, float c2,
                            float c3, __half* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float acc = c0 * __half2float(x0[i]);
    if (terms > 1) acc += c1 * __half2float(x1[i]);
    if (terms > 2) acc += c2 * __half2float(x2[i]);
    if (terms > 3) acc += c3 * __half2float(x3[i]);
    y[i] = __float2half_rn(acc);
  }
}

__global__ void f32_to_f16(int64_t n, const float* __restrict__ x, __half* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2half_rn(x[i]);
}

__global__ void f16_to_f32(int64_t n, const __half* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __half2float(x[i]);
}

static unsigned grid_for(int64_t n) {
  int64_t blocks = (n + 255) / 256;
  return unsigned(blocks > 65535 ? 65535 : (blocks < 1 ? 1 : blocks));
}

cudaError_t launch_lincomb_f16(int64_t n, int terms, const void* const* x, const float* c, void* y, cudaStream_t s) {
  const __half* p[4] = {nullptr, nullptr, nullptr, nullptr};
  float k[4] = {0, 0, 0, 0};
  for (int i = 0; i < terms && i < 4; i++) {
    p[i] = static_cast<const __half*>(x[i]);
    k[i] = c[i];
  }
  lincomb_f16<<<grid_for(n), 256, 0, s>>>(n, terms, p[0], p[1], p[2], p[3], k[0], k[1], k[2], k[3], static_cast<__half*>(y));
  return cudaGetLastError();
}

cudaError_t launch_f32_to_f16(int64_t n, const float* x, void* y, cudaStream_t s) {
  f32_to_f16<<<grid_for(n), 256, 0, s>>>(n, x, static_cast<__half*>(y));
  return cudaGetLastError();
}

cudaError_t launch_f16_to_f32(int64_t n, const void* x, float* y, cudaStream_t s) {
  f16_to_f32<<<grid_for(n), 256, 0, s>>>(n, static_cast<const __half*>(x), y);
  return cudaGetLastError();
}

}  // namespace pg25::cuda
