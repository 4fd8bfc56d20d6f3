// What the CUDA side of this build can do on this machine. The driver (libcuda), cuBLAS/cuBLASLt
// and cuDNN are found at run time with dlopen, so one binary loads everywhere, GPU or not.
#pragma once
#include <string>

namespace pg25::cuda {

bool compiled();  // the CUDA sources were built into this binary
// "13.0" from CUDA's 13000 (cudaDriverGetVersion, CUDART_VERSION).
std::string cuda_version(int v);
// The CUDA runtime this binary was compiled with ("12.8"), or "" without CUDA.
std::string runtime_version();
// A one-line account: which driver, devices and libraries were found, or what is missing.
std::string describe_availability();

}  // namespace pg25::cuda
