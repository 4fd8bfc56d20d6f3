#include "loader.h"

#include <dirent.h>
#include <dlfcn.h>

#include <cstdlib>
#include <sstream>

#ifdef PG25_CUDA_EMULATION
#include "emu/libraries.h"
#endif

namespace pg25::cuda {

void* Library::symbol(const char* sym) const {
#ifdef PG25_CUDA_EMULATION
  return handle ? emu::library_symbol(name, sym) : nullptr;
#else
  return handle ? dlsym(handle, sym) : nullptr;
#endif
}

static void split_into(const char* s, std::vector<std::string>& out) {
  if (!s) return;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ':'))
    if (!part.empty()) out.push_back(part);
}

static void python_wheel_dirs(const std::string& site, std::vector<std::string>& out) {
  std::string base = site + "/nvidia";
  DIR* d = opendir(base.c_str());
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    out.push_back(base + "/" + n + "/lib");
  }
  closedir(d);
}

std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs;
  split_into(std::getenv("PG25_CUDA_LIBS"), dirs);
  split_into(std::getenv("LD_LIBRARY_PATH"), dirs);
  if (const char* cp = std::getenv("CUDA_PATH")) {
    dirs.push_back(std::string(cp) + "/lib64");
    dirs.push_back(std::string(cp) + "/lib");
  }
  dirs.push_back("/usr/local/cuda/lib64");
  dirs.push_back("/usr/lib/x86_64-linux-gnu");
  // nvidia-* wheels installed for PyTorch: scan the usual site-packages roots.
  std::vector<std::string> sites;
  split_into(std::getenv("PYTHONPATH"), sites);
  for (const char* root : {"/usr/local/lib", "/usr/lib", "/opt/conda/lib"}) {
    DIR* d = opendir(root);
    if (!d) continue;
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind("python3", 0) == 0) {
        sites.push_back(std::string(root) + "/" + n + "/site-packages");
        sites.push_back(std::string(root) + "/" + n + "/dist-packages");
      }
    }
    closedir(d);
  }
  for (const auto& s : sites) python_wheel_dirs(s, dirs);
  return dirs;
}

Library open_cublaslt() { return open_library("cublasLt", {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}); }
Library open_cudnn() { return open_library("cudnn", {"libcudnn.so.9", "libcudnn.so"}); }

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
      std::string p = dir + "/" + so;
      if (void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        lib.handle = h;
        lib.path = p;
        return lib;
      }
    }
  }
  for (const auto& so : sonames) {
    if (void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      lib.handle = h;
      lib.path = so;
      return lib;
    }
  }
  return lib;
}

}  // namespace pg25::cuda
