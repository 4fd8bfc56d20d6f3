// The GPU's 16-bit storage types and their fp32 loads and stores, shared by the kernel files. Kernels
// that do arithmetic are templates over T (__half, or __nv_bfloat16 for components that need float32's
// exponent range); data movement copies 16-bit payloads as `h`.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace pg25::cuda {

using h = __half;
using bf = __nv_bfloat16;
__device__ __forceinline__ float ld(const h* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ float ld(const bf* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st(h* p, int64_t i, float v) { p[i] = __float2half_rn(v); }
__device__ __forceinline__ void st(bf* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// Eight 16-bit values moved with one 16-byte access (p 16-byte aligned): a plain memcpy of 16 bytes
// through an unaligned-looking pointer may become sixteen byte accesses.
template <class T>
__device__ __forceinline__ void load16(const T* p, T (&e)[8]) {
  uint4 raw = *reinterpret_cast<const uint4*>(p);
  memcpy(e, &raw, 16);
}
template <class T>
__device__ __forceinline__ void store16(T* p, const T (&e)[8]) {
  uint4 raw;
  memcpy(&raw, e, 16);
  *reinterpret_cast<uint4*>(p) = raw;
}

// Runs the statement with T = __nv_bfloat16 when `wide`, else __half.
#define BY_TYPE(wide, ...)     \
  do {                         \
    if (wide) {                \
      using T = __nv_bfloat16; \
      __VA_ARGS__;             \
    } else {                   \
      using T = __half;        \
      __VA_ARGS__;             \
    }                          \
  } while (0)
#define BY_COMMA ,  // a comma inside a macro argument (template arguments)

}  // namespace pg25::cuda
