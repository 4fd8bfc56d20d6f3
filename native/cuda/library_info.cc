#include "library_info.h"

#include <cuda_runtime.h>

#include "cublaslt.h"
#include "cuda_runtime_info.h"
#include "cudnn.h"
#include "loader.h"

namespace pg25::cuda {
namespace {

// cuBLAS's and cuDNN 9's major * 10000 + minor * 100 + patch as "9.14.0".
std::string lib_dotted(size_t v) { return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100); }

std::string version_of(const char* what, const Library& lib, const char* symbol) {
  if (!lib.handle) return std::string(what) + " not found";
  auto get = reinterpret_cast<size_t (*)()>(lib.symbol(symbol));
  return std::string(what) + " " + (get ? lib_dotted(get()) : std::string("(no ") + symbol + ")") + " at " + lib.path;
}

}  // namespace

LibraryReport library_report() {
  LibraryReport r;
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  cudaGetLastError();
  r.versions = "driver CUDA " + (driver ? cuda_version(driver) : std::string("none")) + ", runtime CUDA " + cuda_version(runtime) + ", " +
               version_of("cuBLASLt", open_cublaslt(), "cublasLtGetVersion") + ", " + version_of("cuDNN", open_cudnn(), "cudnnGetVersion");
  Cudnn::BuildStats s = Cudnn::build_stats();
  r.cudnn_plans = s.plans;
  r.cudnn_plan_ms = s.ms;
  r.gemm_fallbacks = CublasLt::fallbacks();
  return r;
}

}  // namespace pg25::cuda
