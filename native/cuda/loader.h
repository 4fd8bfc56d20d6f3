// Run-time loading of the NVIDIA libraries (native/platform/library.h). On Linux they are searched in
// PG25_CUDA_LIBS, LD_LIBRARY_PATH, CUDA_PATH, /usr/local/cuda and the nvidia-* Python wheel folders
// (site-packages/nvidia/*/lib); on Windows in PG25_CUDA_LIBS, CUDA_PATH\bin, PATH, the nvidia-* wheels
// (site-packages\nvidia\*\bin) and PyTorch's torch\lib, which ships cuBLASLt and cuDNN.
#pragma once
#include <string>
#include <vector>

namespace pg25::cuda {

struct Library {
  std::string name;  // e.g. "cublasLt"
  std::string path;  // where it was found, empty when not found
  void* handle = nullptr;
  void* symbol(const char* name) const;
};

// Candidate directories in search order.
std::vector<std::string> search_dirs();
// Opens the first of `sonames` found in the search directories (then the system loader's path).
Library open_library(const std::string& name, const std::vector<std::string>& sonames);
// The two libraries we use, by the file names of the versions we take, and the driver.
Library open_cublaslt();
Library open_cudnn();
Library open_driver();
#ifdef _WIN32
constexpr const char* kDriverFile = "nvcuda.dll";
#else
constexpr const char* kDriverFile = "libcuda.so.1";
#endif

}  // namespace pg25::cuda
