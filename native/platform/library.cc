#include "library.h"

#include <sstream>

#ifdef _WIN32
#include <windows.h>

#include "wide.h"
#else
#include <dirent.h>
#include <dlfcn.h>
#endif

namespace pg25::platform {

#ifdef _WIN32

void* open_library(const std::string& path) {
  // A full path gets its own folder searched for dependencies; a bare name the default places.
  bool full = path.find_first_of("\\/") != std::string::npos;
  DWORD flags = full ? LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS : 0;
  UINT old = SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX);  // no dialog box for a missing DLL
  HMODULE m = LoadLibraryExW(widen(path).c_str(), nullptr, flags);
  SetErrorMode(old);
  return reinterpret_cast<void*>(m);
}

void* library_symbol(void* handle, const char* name) { return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(handle), name)); }

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> out;
  WIN32_FIND_DATAW d;
  HANDLE f = FindFirstFileW(widen(dir + "\\*").c_str(), &d);
  if (f == INVALID_HANDLE_VALUE) return out;
  do {
    std::string n = narrow(d.cFileName);
    if (n != "." && n != "..") out.push_back(n);
  } while (FindNextFileW(f, &d));
  FindClose(f);
  return out;
}

static constexpr char kListSep = ';';

#else

void* open_library(const std::string& path) { return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL); }

void* library_symbol(void* handle, const char* name) { return dlsym(handle, name); }

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

static constexpr char kListSep = ':';

#endif

std::vector<std::string> split_path_list(const char* list) {
  std::vector<std::string> out;
  if (!list) return out;
  std::stringstream ss(list);
  std::string part;
  while (std::getline(ss, part, kListSep))
    if (!part.empty()) out.push_back(part);
  return out;
}

}  // namespace pg25::platform
