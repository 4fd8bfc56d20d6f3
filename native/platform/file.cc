#include "file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#ifdef _WIN32
#include <windows.h>

#include "wide.h"
#else
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace pg25::platform {

#ifdef _WIN32

static HANDLE h(FileHandle f) { return reinterpret_cast<HANDLE>(f); }

FileHandle open_read_only(const std::string& path) {
  // FILE_SHARE_DELETE too: a Hub download may replace the file while it is open, as it may on POSIX.
  HANDLE f = CreateFileW(widen(path).c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                         FILE_ATTRIBUTE_NORMAL, nullptr);
  return f == INVALID_HANDLE_VALUE ? kInvalidFile : reinterpret_cast<FileHandle>(f);
}

bool regular_file_size(FileHandle f, uint64_t* size) {
  LARGE_INTEGER n;
  if (GetFileType(h(f)) != FILE_TYPE_DISK || !GetFileSizeEx(h(f), &n)) return false;
  BY_HANDLE_FILE_INFORMATION info;
  if (!GetFileInformationByHandle(h(f), &info) || (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)) return false;
  *size = uint64_t(n.QuadPart);
  return true;
}

int64_t read_at(FileHandle f, uint64_t offset, void* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    OVERLAPPED at = {};
    uint64_t pos = offset + got;
    at.Offset = DWORD(pos & 0xffffffffu);
    at.OffsetHigh = DWORD(pos >> 32);
    DWORD r = 0;
    DWORD want = DWORD(std::min<size_t>(n - got, size_t(1) << 30));
    if (!ReadFile(h(f), static_cast<uint8_t*>(dst) + got, want, &r, &at)) {
      if (GetLastError() == ERROR_HANDLE_EOF) break;
      return -1;
    }
    if (r == 0) break;
    got += r;
  }
  return int64_t(got);
}

void close_file(FileHandle f) { CloseHandle(h(f)); }

std::string last_error() { return system_message(GetLastError()); }

#else

FileHandle open_read_only(const std::string& path) { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }

bool regular_file_size(FileHandle f, uint64_t* size) {
  struct stat st;
  if (fstat(int(f), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  *size = uint64_t(st.st_size);
  return true;
}

int64_t read_at(FileHandle f, uint64_t offset, void* dst, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(int(f), static_cast<uint8_t*>(dst) + got, std::min<size_t>(n - got, size_t(1) << 30), off_t(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += size_t(r);
  }
  return int64_t(got);
}

void close_file(FileHandle f) { ::close(int(f)); }

std::string last_error() { return std::strerror(errno); }

#endif

}  // namespace pg25::platform
