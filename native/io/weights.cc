#include "weights.h"

#include "../core/error.h"

namespace pg25 {

WeightStore::WeightStore(const std::vector<WeightFileSpec>& files) {
  if (files.empty()) throw Error("PG25_NOT_FOUND", "no weight files given");
  for (const auto& spec : files) {
    files_.push_back(SafetensorsFile::open(spec.path));
    paddle_.push_back(spec.paddle);
  }
  for (size_t i = 0; i < files_.size(); i++) {
    for (const auto& e : files_[i]->tensors()) {
      auto it = index_.find(e.name);
      if (it != index_.end())
        throw bad_weights(files_[i]->path(), "tensor \"" + e.name + "\" is also in " + it->second.file->path());
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

std::vector<float> WeightStore::read(const std::string& name, const Shape& shape, bool linear) const {
  const Found* f = find(name);
  if (!f) throw Error("PG25_MISSING_WEIGHTS", describe() + ": tensor \"" + name + "\" " + shape_str(shape) + " is missing");
  const TensorEntry& e = *f->entry;
  bool transpose = f->paddle && linear && shape.size() == 2;
  Shape stored = transpose ? Shape{shape[1], shape[0]} : shape;
  if (e.shape != stored)
    throw bad_weights(f->file->path(), "tensor \"" + name + "\" has shape " + shape_str(e.shape) + "; the model config needs " +
                                           shape_str(stored) + (transpose ? " (Paddle [in, out] layout)" : ""));
  if (e.dtype != DType::F16 && e.dtype != DType::BF16 && e.dtype != DType::F32 && e.dtype != DType::F64)
    throw bad_weights(f->file->path(), "tensor \"" + name + "\" has dtype " + dtype_name(e.dtype) + "; weights must be F16, BF16 or F32");
  std::vector<float> out(size_t(e.numel()));
  to_float32(e.dtype, f->file->data(e), out.size(), out.data());
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
