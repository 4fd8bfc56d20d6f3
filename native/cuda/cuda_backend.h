// The CUDA backend: the same ops as the CPU backend, in fp16 storage with fp32 arithmetic; GEMMs
// through cuBLASLt (opened at run time), the rest in native/cuda/kernels.cu.
#pragma once
#include <memory>

#include "../backend/backend.h"

namespace pg25 {

// The backend on GPU `device` (CUDA's index). Throws PG25_NO_DEVICE naming what is missing (driver,
// GPU, cuBLASLt) when the GPU cannot be used, or how many GPUs there are when `device` is not one.
std::unique_ptr<Backend> make_cuda_backend(int device = 0);

}  // namespace pg25
