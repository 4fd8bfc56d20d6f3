#include "params.h"

#include "../core/error.h"

namespace pg25 {

Tensor Params::get(const std::string& name, const Shape& shape, bool linear) {
  for (int64_t d : shape)
    if (d <= 0) throw Error("PG25_BAD_CONFIG", "tensor \"" + name + "\" would have shape " + shape_str(shape));
  declared_.push_back({name, shape, linear});
  if (dry()) return Tensor{nullptr, shape};
  std::vector<float> data = store_->read(name, shape, linear);
  return backend_->weight(name, data.data(), shape, storage_);
}

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

}  // namespace pg25
