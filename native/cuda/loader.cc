#include "loader.h"

#include <cstdlib>

#include "../platform/env.h"
#include "../platform/library.h"

#ifdef PG25_CUDA_EMULATION
#include "emu/libraries.h"
#endif

namespace pg25::cuda {

void* Library::symbol(const char* sym) const {
#ifdef PG25_CUDA_EMULATION
  return handle ? emu::library_symbol(name, sym) : nullptr;
#else
  return handle ? platform::library_symbol(handle, sym) : nullptr;
#endif
}

static void append(std::vector<std::string>& out, std::vector<std::string> more) { out.insert(out.end(), more.begin(), more.end()); }

// nvidia-* wheels installed for PyTorch (site-packages/nvidia/<name>/lib, \bin on Windows), and on
// Windows torch\lib, where PyTorch's wheels put cuBLASLt and cuDNN.
static void python_wheel_dirs(const std::string& site, std::vector<std::string>& out) {
  const std::string sep(1, platform::kPathSep);
  std::string base = site + sep + "nvidia";
  for (const auto& n : platform::folder_entries(base)) {
#ifdef _WIN32
    out.push_back(base + sep + n + sep + "bin");
#else
    out.push_back(base + sep + n + sep + "lib");
#endif
  }
#ifdef _WIN32
  out.push_back(site + sep + "torch" + sep + "lib");
#endif
}

#ifdef _WIN32

std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs = platform::split_path_list(platform::env("PG25_CUDA_LIBS"));
  if (const char* cp = platform::env("CUDA_PATH")) dirs.push_back(std::string(cp) + "\\bin");
  std::vector<std::string> path = platform::split_path_list(platform::env("PATH"));
  append(dirs, path);
  // Python's site-packages: PYTHONPATH's entries, and beside each python.exe on PATH (Lib\site-packages).
  std::vector<std::string> sites = platform::split_path_list(platform::env("PYTHONPATH"));
  for (const auto& p : path) sites.push_back(p + "\\Lib\\site-packages");
  if (const char* venv = platform::env("VIRTUAL_ENV")) sites.push_back(std::string(venv) + "\\Lib\\site-packages");
  for (const auto& s : sites) python_wheel_dirs(s, dirs);
  return dirs;
}

Library open_cublaslt() { return open_library("cublasLt", {"cublasLt64_13.dll", "cublasLt64_12.dll"}); }
Library open_cudnn() { return open_library("cudnn", {"cudnn64_9.dll"}); }
Library open_driver() { return open_library("cuda driver", {"nvcuda.dll"}); }

#else

std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs = platform::split_path_list(platform::env("PG25_CUDA_LIBS"));
  append(dirs, platform::split_path_list(platform::env("LD_LIBRARY_PATH")));
  if (const char* cp = platform::env("CUDA_PATH")) {
    dirs.push_back(std::string(cp) + "/lib64");
    dirs.push_back(std::string(cp) + "/lib");
  }
  dirs.push_back("/usr/local/cuda/lib64");
  dirs.push_back("/usr/lib/x86_64-linux-gnu");
  // nvidia-* wheels installed for PyTorch: PYTHONPATH and the usual site-packages roots.
  std::vector<std::string> sites = platform::split_path_list(platform::env("PYTHONPATH"));
  for (const char* root : {"/usr/local/lib", "/usr/lib", "/opt/conda/lib"}) {
    for (const auto& n : platform::folder_entries(root)) {
      if (n.rfind("python3", 0) != 0) continue;
      sites.push_back(std::string(root) + "/" + n + "/site-packages");
      sites.push_back(std::string(root) + "/" + n + "/dist-packages");
    }
  }
  for (const auto& s : sites) python_wheel_dirs(s, dirs);
  return dirs;
}

Library open_cublaslt() { return open_library("cublasLt", {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}); }
Library open_cudnn() { return open_library("cudnn", {"libcudnn.so.9", "libcudnn.so"}); }
Library open_driver() { return open_library("cuda driver", {"libcuda.so.1", "libcuda.so"}); }

#endif

Library open_library(const std::string& name, const std::vector<std::string>& sonames) {
  Library lib;
  lib.name = name;
#ifdef PG25_CUDA_EMULATION
  // The emulated libraries live in this binary; the handle only marks the library as found.
  if (emu::library_present(name)) {
    lib.handle = reinterpret_cast<void*>(&emu::library_symbol);
    lib.path = "the CPU emulation of " + name;
  }
  return lib;
#endif
  for (const auto& dir : search_dirs()) {
    for (const auto& so : sonames) {
      std::string p = dir + platform::kPathSep + so;
      if (void* h = platform::open_library(p)) {
        lib.handle = h;
        lib.path = p;
        return lib;
      }
    }
  }
  for (const auto& so : sonames) {
    if (void* h = platform::open_library(so)) {
      lib.handle = h;
      lib.path = so;
      return lib;
    }
  }
  return lib;
}

}  // namespace pg25::cuda
