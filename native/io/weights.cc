#include "weights.h"

#include <algorithm>
#include <cmath>

#include <cstring>

#include "../core/error.h"
#include "../cpu/threadpool.h"

namespace pg25 {

WeightStore::WeightStore(const std::vector<WeightFileSpec>& files, std::map<std::string, WeightAlias> aliases)
    : aliases_(std::move(aliases)) {
  if (files.empty()) throw Error(Code::NotFound, "no weight files given");
  for (const auto& spec : files) {
    files_.push_back(SafetensorsFile::open(spec.path));
    paddle_.push_back(spec.paddle);
  }
  for (size_t i = 0; i < files_.size(); i++) {
    for (const auto& e : files_[i]->tensors()) {
      auto it = index_.find(e.name);
      if (it != index_.end()) throw bad_weights(files_[i]->path(), "tensor \"" + e.name + "\" is also in " + it->second.file->path());
      index_[e.name] = Found{files_[i].get(), &e, paddle_[i]};
    }
  }
}

const WeightStore::Found* WeightStore::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &it->second;
}

std::string WeightStore::describe() const {
  std::string s;
  for (size_t i = 0; i < files_.size(); i++) s += (i ? ", " : "") + files_[i]->path();
  return s;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

static int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

WeightStore WeightStore::synthetic(uint64_t seed) {
  WeightStore s;
  s.synthetic_ = true;
  s.seed_ = seed;
  return s;
}

// splitmix64 of a counter: a hash good enough for synthetic weights, and every element independent, so
// tensors of billions of values are generated in parallel and still identically for one seed.
static uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static std::vector<float> synthetic_tensor(uint64_t seed, const std::string& name, const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> out(size_t(n), 0.f);
  auto ends_with = [&](const char* suffix) {
    size_t k = std::strlen(suffix);
    return name.size() >= k && name.compare(name.size() - k, k, suffix) == 0;
  };
  bool is_norm = shape.size() == 1 && (name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos);
  if (is_norm) {
    if (ends_with(".weight")) std::fill(out.begin(), out.end(), 1.f);
    return out;
  }
  if (ends_with(".bias")) return out;
  double fan_in = shape.size() > 1 ? double(n) / double(shape[0]) : double(n);
  float scale = name.find("embedding.weight") != std::string::npos ? 0.02f : float(1.0 / std::sqrt(fan_in));
  uint64_t base = seed;
  for (char c : name) base = base * 1099511628211ull ^ uint64_t(uint8_t(c));
  base = mix(base);
  // Box-Muller on pairs: element pair p uses the counters 2p and 2p + 1.
  cpu::parallel_for((n + 1) / 2, 1 << 15, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      double u1 = (double(mix(base + uint64_t(2 * p)) >> 11) + 1.0) / 9007199254740993.0;
      double u2 = double(mix(base + uint64_t(2 * p + 1)) >> 11) / 9007199254740992.0;
      double r = std::sqrt(-2.0 * std::log(u1));
      out[size_t(2 * p)] = float(r * std::cos(6.283185307179586 * u2)) * scale;
      if (2 * p + 1 < n) out[size_t(2 * p + 1)] = float(r * std::sin(6.283185307179586 * u2)) * scale;
    }
  });
  return out;
}

bool WeightStore::read_f16(const std::string& name, const Shape& shape, bool linear, std::vector<uint16_t>* bits) const {
  if (synthetic_ || aliases_.count(name)) return false;
  const Found* f = find(name);
  if (!f || f->entry->dtype != DType::F16 || f->entry->shape != shape || (f->paddle && linear && shape.size() == 2)) return false;
  bits->resize(size_t(f->entry->numel()));
  f->file->read(*f->entry, 0, bits->data(), bits->size() * 2);
  return true;
}

int64_t WeightStore::stored_bytes(const std::string& name, const Shape& shape) const {
  if (synthetic_) return 0;
  auto alias = aliases_.find(name);
  const Found* f = find(alias == aliases_.end() ? name : alias->second.source);
  return f ? numel_of(shape) * int64_t(dtype_size(f->entry->dtype)) : 0;
}

std::vector<float> WeightStore::read(const std::string& name, const Shape& shape, bool linear) const {
  if (synthetic_) return synthetic_tensor(seed_, name, shape);
  auto alias = aliases_.find(name);
  if (alias != aliases_.end()) {
    const WeightAlias& a = alias->second;
    const Found* f = find(a.source);
    if (!f)
      throw Error(Code::MissingWeights,
                  describe() + ": tensor \"" + a.source + "\" (for \"" + name + "\" " + shape_str(shape) + ") is missing");
    const TensorEntry& e = *f->entry;
    auto mismatch = [&](const std::string& need) {
      return bad_weights(f->file->path(), "tensor \"" + a.source + "\" has shape " + shape_str(e.shape) + "; \"" + name + "\" " +
                                              shape_str(shape) + " needs " + need);
    };
    if (a.op == WeightAlias::Op::Rename) {
      // Same values; a [out, in, 1, 1] conv may stand for an [out, in] linear weight.
      bool same = e.shape == shape || (numel_of(e.shape) == numel_of(shape) && e.shape.size() == 4 && e.shape[2] == 1 && e.shape[3] == 1 &&
                                       shape.size() == 2 && e.shape[0] == shape[0] && e.shape[1] == shape[1]);
      if (!same) throw mismatch(shape_str(shape));
      return read(a.source, e.shape, false);
    }
    if (a.op == WeightAlias::Op::Transpose) {
      if (shape.size() != 2 || e.shape != Shape{shape[1], shape[0]})
        throw mismatch(shape_str({shape.size() == 2 ? shape[1] : 0, shape.empty() ? 0 : shape[0]}));
      std::vector<float> src = read(a.source, e.shape, false), out(src.size());
      for (int64_t r = 0; r < shape[1]; r++)
        for (int64_t c = 0; c < shape[0]; c++) out[size_t(c * shape[1] + r)] = src[size_t(r * shape[0] + c)];
      return out;
    }
    // Rows: shape[0] rows starting at row_begin of a tensor with the same trailing dimensions.
    if (e.shape.empty() || shape.empty() || a.row_count != shape[0] || a.row_begin < 0 || a.row_begin + a.row_count > e.shape[0] ||
        Shape(e.shape.begin() + 1, e.shape.end()) != Shape(shape.begin() + 1, shape.end()))
      throw mismatch("rows " + std::to_string(a.row_begin) + ".." + std::to_string(a.row_begin + a.row_count));
    std::vector<float> src = read(a.source, e.shape, false);
    int64_t per = numel_of(shape) / shape[0];
    return std::vector<float>(src.begin() + a.row_begin * per, src.begin() + (a.row_begin + a.row_count) * per);
  }
  const Found* f = find(name);
  if (!f) throw Error(Code::MissingWeights, describe() + ": tensor \"" + name + "\" " + shape_str(shape) + " is missing");
  const TensorEntry& e = *f->entry;
  bool transpose = f->paddle && linear && shape.size() == 2;
  Shape stored = transpose ? Shape{shape[1], shape[0]} : shape;
  if (e.shape != stored)
    throw bad_weights(f->file->path(), "tensor \"" + name + "\" has shape " + shape_str(e.shape) + "; the model config needs " +
                                           shape_str(stored) + (transpose ? " (Paddle [in, out] layout)" : ""));
  if (e.dtype != DType::F16 && e.dtype != DType::BF16 && e.dtype != DType::F32 && e.dtype != DType::F64)
    throw bad_weights(f->file->path(), "tensor \"" + name + "\" has dtype " + dtype_name(e.dtype) + "; weights must be F16, BF16 or F32");
  std::vector<float> out(size_t(e.numel()));
  f->file->read_float32(e, out.data());
  if (transpose) {
    std::vector<float> t(out.size());
    int64_t rows = stored[0], cols = stored[1];
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) t[size_t(c * rows + r)] = out[size_t(r * cols + c)];
    out.swap(t);
  }
  return out;
}

}  // namespace pg25
