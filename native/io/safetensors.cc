#include "safetensors.h"

#include <algorithm>
#include <cstring>

#include "../core/error.h"
#include "../core/json.h"
#include "../platform/file.h"

namespace pg25 {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F16:
    case DType::BF16: return 2;
    case DType::F32:
    case DType::I32: return 4;
    case DType::F64:
    case DType::I64: return 8;
    case DType::U8:
    case DType::BOOL: return 1;
  }
  return 0;
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

static bool parse_dtype(const std::string& s, DType* out) {
  static const std::pair<const char*, DType> table[] = {{"F16", DType::F16}, {"BF16", DType::BF16}, {"F32", DType::F32},
                                                        {"F64", DType::F64}, {"I64", DType::I64},   {"I32", DType::I32},
                                                        {"U8", DType::U8},   {"BOOL", DType::BOOL}};
  for (const auto& [name, d] : table)
    if (s == name) {
      *out = d;
      return true;
    }
  return false;
}

static uint64_t read_u64le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

uint64_t safetensors_header_length(const uint8_t* first8, uint64_t size, const std::string& file) {
  if (size < 8) throw bad_weights(file, "file is " + std::to_string(size) + " bytes, too small for a safetensors header");
  uint64_t n = read_u64le(first8);
  if (n > kMaxHeaderBytes) throw bad_weights(file, "declared header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    throw bad_weights(file, "declared header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                                " bytes); the file is truncated");
  return n;
}

std::vector<TensorEntry> parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& file, uint64_t* data_offset) {
  uint64_t n = safetensors_header_length(bytes, size, file);
  *data_offset = 8 + n;
  return parse_safetensors_json(std::string_view(reinterpret_cast<const char*>(bytes + 8), n), size - 8 - n, file);
}

std::vector<TensorEntry> parse_safetensors_json(std::string_view text, uint64_t data_size, const std::string& file) {
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const std::exception& e) {
    throw bad_weights(file, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (root.type != json::Type::Object) throw bad_weights(file, "header is not a JSON object");

  std::vector<TensorEntry> out;
  std::map<std::string, bool> seen;
  for (const auto& kv : root.object) {
    const std::string& name = kv.first;
    const json::Value& v = kv.second;
    if (seen.count(name)) throw bad_weights(file, "tensor \"" + name + "\" appears twice in the header");
    seen[name] = true;
    if (name == "__metadata__") {
      if (v.type != json::Type::Object) throw bad_weights(file, "__metadata__ is not an object");
      continue;
    }
    auto bad = [&](const std::string& what) { return bad_weights(file, "tensor \"" + name + "\": " + what); };
    if (v.type != json::Type::Object) throw bad("entry is not an object");
    const json::Value* dt = v.find("dtype");
    const json::Value* shape = v.find("shape");
    const json::Value* offs = v.find("data_offsets");
    if (!dt || dt->type != json::Type::String) throw bad("missing dtype");
    if (!shape || shape->type != json::Type::Array) throw bad("missing shape");
    if (!offs || offs->type != json::Type::Array || offs->array.size() != 2) throw bad("data_offsets must be [begin, end]");
    TensorEntry e;
    e.name = name;
    if (!parse_dtype(dt->string, &e.dtype)) throw bad("unknown dtype \"" + dt->string + "\"");
    if (shape->array.size() > 8) throw bad("has " + std::to_string(shape->array.size()) + " dimensions");
    unsigned __int128 bytes_needed = dtype_size(e.dtype);
    for (const auto& d : shape->array) {
      if (d.type != json::Type::Number || !d.is_integer || d.integer_overflow || d.integer < 0)
        throw bad("shape entries must be non-negative integers");
      e.shape.push_back(d.integer);
      bytes_needed *= uint64_t(d.integer);
      if (bytes_needed > (unsigned __int128)UINT64_MAX) throw bad("shape x dtype size overflows 64 bits");
    }
    for (int i = 0; i < 2; i++) {
      const auto& o = offs->array[i];
      if (o.type != json::Type::Number || !o.is_integer || o.integer_overflow || o.integer < 0)
        throw bad("data_offsets must be non-negative integers");
    }
    e.begin = uint64_t(offs->array[0].integer);
    e.end = uint64_t(offs->array[1].integer);
    if (e.end < e.begin) throw bad("data_offsets end before they begin");
    if (e.end > data_size)
      throw bad("byte range [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + ") lies outside the data section (" +
                std::to_string(data_size) + " bytes); the file is truncated or corrupt");
    if ((unsigned __int128)(e.end - e.begin) != bytes_needed)
      throw bad("byte range holds " + std::to_string(e.end - e.begin) + " bytes but shape x dtype needs " +
                std::to_string((uint64_t)bytes_needed));
    out.push_back(std::move(e));
  }
  std::vector<const TensorEntry*> by_offset;
  for (const auto& e : out) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  for (size_t i = 1; i < by_offset.size(); i++) {
    const TensorEntry* a = by_offset[i - 1];
    const TensorEntry* b = by_offset[i];
    if (b->begin < a->end) throw bad_weights(file, "tensors \"" + a->name + "\" and \"" + b->name + "\" overlap");
  }
  return out;
}

// Reads exactly `n` bytes at `offset`, or throws naming what was being read.
static void read_exact(platform::FileHandle fd, uint64_t offset, void* dst, size_t n, const std::string& path, const std::string& what) {
  int64_t got = platform::read_at(fd, offset, dst, n);
  if (got < 0) throw bad_weights(path, "cannot read " + what + " (" + platform::last_error() + ")");
  if (uint64_t(got) < n)
    throw bad_weights(path, what + ": the file ends at byte " + std::to_string(offset + uint64_t(got)) + ", before byte " +
                                std::to_string(offset + n) + " (it was truncated or replaced while it was read)");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  platform::FileHandle fd = platform::open_read_only(path);
  if (fd == platform::kInvalidFile) throw Error(Code::NotFound, path + ": cannot open weight file (" + platform::last_error() + ")");
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->fd_ = fd;  // closed by the destructor, from here on whatever throws
  uint64_t size = 0;
  if (!platform::regular_file_size(fd, &size)) throw bad_weights(path, "not a regular file");
  uint8_t first8[8] = {0};
  read_exact(fd, 0, first8, std::min<uint64_t>(8, size), path, "the header");
  uint64_t n = safetensors_header_length(first8, size, path);
  std::string json(size_t(n), '\0');
  read_exact(fd, 8, json.data(), json.size(), path, "the header");
  f->data_offset_ = 8 + n;
  f->tensors_ = parse_safetensors_json(json, size - 8 - n, path);
  for (size_t i = 0; i < f->tensors_.size(); i++) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ != platform::kInvalidFile) platform::close_file(fd_);
}

void SafetensorsFile::read(const TensorEntry& e, uint64_t at, void* dst, size_t n) const {
  if (at + n > e.end - e.begin) throw Error(Code::Internal, path_ + ": read past the end of tensor \"" + e.name + "\"");
  read_exact(fd_, data_offset_ + e.begin + at, dst, n, path_, "tensor \"" + e.name + "\"");
}

void SafetensorsFile::read_float32(const TensorEntry& e, float* dst) const {
  size_t count = size_t(e.numel());
  if (e.dtype == DType::F32) {
    read(e, 0, dst, count * 4);
    return;
  }
  size_t width = dtype_size(e.dtype);
  if (e.dtype != DType::F16 && e.dtype != DType::BF16 && e.dtype != DType::F64)
    throw Error(Code::BadWeights, std::string("dtype ") + dtype_name(e.dtype) + " is not a floating-point weight type");
  // Pieces of 4 MiB: the file's bytes pass through a small buffer, never a copy of the whole tensor.
  const size_t piece = (size_t(4) << 20) / width;
  std::vector<uint8_t> buf(std::min(count, piece) * width);
  for (size_t i = 0; i < count; i += piece) {
    size_t k = std::min(piece, count - i);
    read(e, uint64_t(i) * width, buf.data(), k * width);
    to_float32(e.dtype, buf.data(), k, dst + i);
  }
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        exp--;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = int32_t((x >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = x & 0x7FFFFF;
  if (((x >> 23) & 0xFF) == 0xFF) return uint16_t(sign | 0x7C00 | (mant ? 0x200 : 0));
  if (exp >= 31) return uint16_t(sign | 0x7C00);
  if (exp <= 0) {
    if (exp < -10) return uint16_t(sign);
    mant |= 0x800000;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return uint16_t(half);
}

void to_float32(DType dtype, const uint8_t* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::F32: std::memcpy(dst, src, count * 4); break;
    case DType::F16:
      for (size_t i = 0; i < count; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = half_to_float(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < count; i++) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        uint32_t bits = uint32_t(h) << 16;
        std::memcpy(dst + i, &bits, 4);
      }
      break;
    case DType::F64:
      for (size_t i = 0; i < count; i++) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = float(d);
      }
      break;
    default: throw Error(Code::BadWeights, std::string("dtype ") + dtype_name(dtype) + " is not a floating-point weight type");
  }
}

}  // namespace pg25
