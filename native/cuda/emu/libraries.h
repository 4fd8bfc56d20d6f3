// The NVIDIA libraries the emulation stands in for. native/cuda/loader.cc resolves symbols here
// instead of with dlopen/dlsym in an emulation build, so our declarations are exercised unchanged.
#pragma once
#include <string>

namespace pg25::emu {

// The function an emulated library ("cublasLt") exports under `symbol`, or null.
void* library_symbol(const std::string& library, const char* symbol);

}  // namespace pg25::emu
