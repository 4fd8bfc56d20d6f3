// The CPU backend: float32 everywhere, multi-threaded, cache-blocked GEMM under linear, conv and
// attention. It is also the reference the CUDA kernels are checked against.
#pragma once
#include <memory>

#include "../backend/backend.h"

namespace pg25 {

std::unique_ptr<Backend> make_cpu_backend();

// Host buffer access for code that knows a tensor lives on the CPU backend.
float* cpu_data(const Tensor& t);

}  // namespace pg25
