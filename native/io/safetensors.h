// Safetensors files, read with positional reads into memory we own (not mapped: a mapped file that
// shrinks while it is read kills the process with SIGBUS). The header is validated in full before any
// tensor is read: a hostile or truncated file, or one cut short while it is read, is a PG25_BAD_WEIGHTS
// naming the file and tensor, never a crash.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "../platform/file.h"

namespace pg25 {

enum class DType { F16, BF16, F32, F64, I64, I32, U8, BOOL };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

struct TensorEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the data section
  int64_t numel() const;
};

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Validates a whole safetensors image held in memory (header and data section): sizes, dtypes,
// ranges inside the file, no overlaps, no duplicate names. `file` only names the source in errors.
std::vector<TensorEntry> parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& file, uint64_t* data_offset);
// Its two steps, for a file read piece by piece: the header length the first 8 bytes (of a file of
// `file_size` bytes) declare, checked against the limit and the size; then the header's JSON, for a
// data section of `data_size` bytes.
uint64_t safetensors_header_length(const uint8_t* first8, uint64_t file_size, const std::string& file);
std::vector<TensorEntry> parse_safetensors_json(std::string_view json, uint64_t data_size, const std::string& file);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(const std::string& name) const;
  // `n` bytes of `e` from byte `at` of it into `dst`; PG25_BAD_WEIGHTS if the file ends first.
  void read(const TensorEntry& e, uint64_t at, void* dst, size_t n) const;
  // All of `e` as float32 (a floating-point dtype), converted piece by piece: no copy of the file's bytes.
  void read_float32(const TensorEntry& e, float* dst) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  platform::FileHandle fd_ = platform::kInvalidFile;
  uint64_t data_offset_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t> index_;
};

// Converts `count` elements of a floating-point dtype to float32.
void to_float32(DType dtype, const uint8_t* src, size_t count, float* dst);
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

}  // namespace pg25
