// Opening shared libraries at run time (dlopen / LoadLibraryExW) and the bits of the file system the
// library search needs: a folder's entries and the separator of PATH-like lists.
#pragma once
#include <string>
#include <vector>

namespace pg25::platform {

// The library's handle, or nullptr. On Windows its own folder is searched for its dependencies too
// (cuDNN 9 loads its sub-libraries from beside itself).
void* open_library(const std::string& path);
void* library_symbol(void* handle, const char* name);
// The names in folder `dir` (without "." and ".."); empty when it cannot be read.
std::vector<std::string> folder_entries(const std::string& dir);
// Splits a PATH-like list (':' between entries on POSIX, ';' on Windows), dropping empty entries.
std::vector<std::string> split_path_list(const char* list);

#ifdef _WIN32
constexpr char kPathSep = '\\';
#else
constexpr char kPathSep = '/';
#endif

}  // namespace pg25::platform
