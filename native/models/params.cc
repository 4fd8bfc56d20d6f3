#include "params.h"

#include "../core/error.h"

namespace pg25 {

Tensor Params::get(const std::string& name, const Shape& shape, bool linear) {
  for (int64_t d : shape)
    if (d <= 0) throw Error("PG25_BAD_CONFIG", "tensor \"" + name + "\" would have shape " + shape_str(shape));
  declared_.push_back({name, shape, linear});
  if (dry()) return Tensor{nullptr, shape};
  Tensor t;
  if (const uint16_t* bits = store_->raw_f16(name, shape, linear)) t = backend_->weight_f16(name, bits, shape, storage_);
  if (!t.defined()) {
    std::vector<float> data = store_->read(name, shape, linear);
    t = backend_->weight(name, data.data(), shape, storage_);
  }
  if (on_loaded_) on_loaded_(store_->stored_bytes(name, shape));
  return t;
}

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

}  // namespace pg25
