#include "library_info.h"

#include <cuda_runtime.h>

#include <vector>

#include "cublaslt.h"
#include "cudnn.h"
#include "loader.h"

namespace pg25::cuda {
namespace {

// CUDA's 13000 as "13.0".
std::string cuda_dotted(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
// cuBLAS's and cuDNN 9's major * 10000 + minor * 100 + patch as "9.14.0".
std::string lib_dotted(size_t v) { return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100); }

// `lib_name` as the loader knows it ("cublasLt", "cudnn"), `what` as the report names it.
std::string version_of(const char* what, const char* lib_name, const std::vector<std::string>& names, const char* symbol) {
  Library lib = open_library(lib_name, names);
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
  r.versions = "driver CUDA " + (driver ? cuda_dotted(driver) : std::string("none")) + ", runtime CUDA " + cuda_dotted(runtime) + ", " +
               version_of("cuBLASLt", "cublasLt", {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}, "cublasLtGetVersion") + ", " +
               version_of("cuDNN", "cudnn", {"libcudnn.so.9", "libcudnn.so"}, "cudnnGetVersion");
  Cudnn::BuildStats s = Cudnn::build_stats();
  r.cudnn_plans = s.plans;
  r.cudnn_plan_ms = s.ms;
  r.gemm_fallbacks = CublasLt::fallbacks();
  return r;
}

}  // namespace pg25::cuda
