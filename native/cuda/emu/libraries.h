// The NVIDIA libraries the emulation stands in for. native/cuda/loader.cc resolves symbols here
// instead of with dlopen/dlsym in an emulation build, so our declarations are exercised unchanged.
#pragma once
#include <string>

namespace pg25::emu {

// Whether an emulated library ("cublasLt", "cudnn") counts as installed. PG25_EMU_CUDNN=missing
// leaves cuDNN out, for the tests of what happens on a machine without it.
bool library_present(const std::string& library);
// The function an emulated library exports under `symbol`, or null.
void* library_symbol(const std::string& library, const char* symbol);
void* cublaslt_symbol(const char* symbol);  // emu/cublaslt.cc
void* cudnn_symbol(const char* symbol);     // emu/cudnn.cc

}  // namespace pg25::emu
