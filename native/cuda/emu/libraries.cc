#include "libraries.h"

#include <cstdlib>
#include <cstring>

#include "../../platform/env.h"

namespace pg25::emu {

bool library_present(const std::string& library) {
  if (library == "cublasLt") return true;
  const char* cudnn = platform::env("PG25_EMU_CUDNN");
  return library == "cudnn" && !(cudnn && std::strcmp(cudnn, "missing") == 0);
}

void* library_symbol(const std::string& library, const char* symbol) {
  if (!library_present(library)) return nullptr;
  return library == "cublasLt" ? cublaslt_symbol(symbol) : cudnn_symbol(symbol);
}

}  // namespace pg25::emu
