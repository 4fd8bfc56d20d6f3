#include <string>

#include "cuda_runtime_info.h"
#include "loader.h"

namespace pg25::cuda {

std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

#ifdef PG25_WITH_CUDA
bool compiled() { return true; }
#else
bool compiled() { return false; }
std::string runtime_version() { return ""; }
#endif

std::string describe_availability() {
#ifdef PG25_CUDA_EMULATION
  return "CUDA emulation on the CPU (a PG25_CUDA_EMULATION build: kernels, cudart, cuBLASLt and cuDNN emulated, for tests; not fast)";
#endif
  if (!compiled()) return "CUDA was not compiled into this build (nvcc was not found when it was built)";
  // The driver API is enough to tell whether a usable GPU is present, without creating a context.
  Library drv = open_driver();
  if (!drv.handle) return "no NVIDIA driver (" + std::string(kDriverFile) + ") was found";
  using InitFn = int (*)(unsigned);
  using CountFn = int (*)(int*);
  auto init = reinterpret_cast<InitFn>(drv.symbol("cuInit"));
  auto count = reinterpret_cast<CountFn>(drv.symbol("cuDeviceGetCount"));
  int n = 0;
  if (!init || !count || init(0) != 0 || count(&n) != 0 || n == 0) return "the NVIDIA driver reports no usable GPU";
  std::string missing;
  Library lt = open_cublaslt();
  Library dnn = open_cudnn();
  if (!lt.handle) missing += " cuBLASLt";
  if (!dnn.handle) missing += " cuDNN";
  std::string found = std::to_string(n) + " GPU(s) with driver " + drv.path;
  if (!missing.empty()) return found + "; missing libraries:" + missing + " (set PG25_CUDA_LIBS to their folder)";
  return found + "; cuBLASLt " + lt.path + "; cuDNN " + dnn.path;
}

}  // namespace pg25::cuda
