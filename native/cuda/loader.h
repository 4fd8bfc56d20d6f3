// dlopen-based loading of the NVIDIA libraries, searched in PG25_CUDA_LIBS, LD_LIBRARY_PATH,
// CUDA_PATH, /usr/local/cuda and the nvidia-* Python wheel folders (site-packages/nvidia/*/lib).
#pragma once
#include <string>
#include <vector>

namespace pg25::cuda {

struct Library {
  std::string name;   // e.g. "cublasLt"
  std::string path;   // where it was found, empty when not found
  void* handle = nullptr;
  void* symbol(const char* name) const;
};

// Candidate directories in search order.
std::vector<std::string> search_dirs();
// Opens the first of `sonames` found in the search directories (then the system loader's path).
Library open_library(const std::string& name, const std::vector<std::string>& sonames);
// The two libraries we use, by the file names of the versions we take.
Library open_cublaslt();
Library open_cudnn();

}  // namespace pg25::cuda
