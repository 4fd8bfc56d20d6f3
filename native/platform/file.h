// Reading a file by position, the one file access the weight loader needs: pread on POSIX, ReadFile
// with an offset on Windows (paths are UTF-8 and are widened there, so drive letters, backslashes and
// non-ASCII names work).
#pragma once
#include <cstdint>
#include <string>

namespace pg25::platform {

// An open file: a descriptor on POSIX, a HANDLE's value on Windows; kInvalidFile when none.
using FileHandle = intptr_t;
constexpr FileHandle kInvalidFile = -1;

FileHandle open_read_only(const std::string& path);
// The size of a regular file; false for a directory, a device or a pipe.
bool regular_file_size(FileHandle f, uint64_t* size);
// Bytes read at `offset` into `dst`, up to `n`: fewer only at the end of the file. -1 on an I/O error.
int64_t read_at(FileHandle f, uint64_t offset, void* dst, size_t n);
// A scratch file of the process's own (weights paged out of memory), opened for reading and writing in
// the temporary folder (TMPDIR, or Windows' temp path) and removed when closed or when the process
// ends; `where` names the folder for error messages. kInvalidFile on failure.
FileHandle open_scratch_file(std::string* where);
// Writes all n bytes at `offset`; false on an I/O error (a full disk).
bool write_at(FileHandle f, uint64_t offset, const void* src, size_t n);
void close_file(FileHandle f);
// Why the last call above failed, in words (strerror, or the Windows system message).
std::string last_error();

}  // namespace pg25::platform
