#include "file.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
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

// Places a synchronous ReadFile / WriteFile at `pos`.
static OVERLAPPED at_offset(uint64_t pos) {
  OVERLAPPED at = {};
  at.Offset = DWORD(pos & 0xffffffffu);
  at.OffsetHigh = DWORD(pos >> 32);
  return at;
}
// At most 1 GiB a call: the byte count is a DWORD.
static DWORD chunk(size_t left) { return DWORD(std::min<size_t>(left, size_t(1) << 30)); }

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
    OVERLAPPED at = at_offset(offset + got);
    DWORD r = 0;
    if (!ReadFile(h(f), static_cast<uint8_t*>(dst) + got, chunk(n - got), &r, &at)) {
      if (GetLastError() == ERROR_HANDLE_EOF) break;
      return -1;
    }
    if (r == 0) break;
    got += r;
  }
  return int64_t(got);
}

FileHandle open_scratch_file(std::string* where) {
  wchar_t dir[MAX_PATH + 1], name[MAX_PATH + 1];
  DWORD n = GetTempPathW(MAX_PATH + 1, dir);
  if (n == 0 || n > MAX_PATH) return kInvalidFile;
  *where = narrow(dir);
  if (GetTempFileNameW(dir, L"pg2", 0, name) == 0) return kInvalidFile;
  // Delete-on-close: the file goes with the handle, however the process ends.
  HANDLE f = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, nullptr, CREATE_ALWAYS,
                         FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, nullptr);
  if (f == INVALID_HANDLE_VALUE) {
    // GetTempFileNameW made the file empty; it would stay behind.
    DWORD err = GetLastError();
    DeleteFileW(name);
    SetLastError(err);
    return kInvalidFile;
  }
  return reinterpret_cast<FileHandle>(f);
}

bool write_at(FileHandle f, uint64_t offset, const void* src, size_t n) {
  size_t put = 0;
  while (put < n) {
    OVERLAPPED at = at_offset(offset + put);
    DWORD w = 0;
    if (!WriteFile(h(f), static_cast<const uint8_t*>(src) + put, chunk(n - put), &w, &at) || w == 0) return false;
    put += w;
  }
  return true;
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

FileHandle open_scratch_file(std::string* where) {
  const char* tmp = std::getenv("TMPDIR");
  *where = tmp && *tmp ? tmp : "/tmp";
  std::string name = *where + "/pg25-pages-XXXXXX";
  int fd = ::mkstemp(name.data());
  if (fd < 0) return kInvalidFile;
  ::unlink(name.c_str());  // nameless from now on: gone with the descriptor
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

bool write_at(FileHandle f, uint64_t offset, const void* src, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t w = ::pwrite(int(f), static_cast<const uint8_t*>(src) + put, std::min<size_t>(n - put, size_t(1) << 30), off_t(offset + put));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    put += size_t(w);
  }
  return true;
}

void close_file(FileHandle f) { ::close(int(f)); }

std::string last_error() { return std::strerror(errno); }

#endif

}  // namespace pg25::platform
