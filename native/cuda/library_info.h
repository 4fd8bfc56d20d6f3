// What a GPU run used, for reports (gpu-check's first lines): the driver's and runtime's CUDA versions,
// the cuBLASLt and cuDNN versions found, and how many cuDNN plans this process built, in how long.
#pragma once
#include <cstdint>
#include <string>

namespace pg25::cuda {

struct LibraryReport {
  std::string versions;  // "driver CUDA 13.0, runtime CUDA 13.0, cuBLASLt 13.1.0, cuDNN 9.14.0", naming what is missing
  int64_t cudnn_plans = 0;
  double cudnn_plan_ms = 0;
  int64_t gemm_fallbacks = 0;  // GEMMs cuBLASLt had no algorithm for, run on our own kernel
};
LibraryReport library_report();

}  // namespace pg25::cuda
