#include "params.h"

#include "../core/error.h"

namespace pg25 {

Tensor Params::get(const std::string& name, const Shape& shape, bool linear) {
  for (int64_t d : shape)
    if (d <= 0) throw Error(Code::BadConfig, "tensor \"" + name + "\" would have shape " + shape_str(shape));
  declared_.push_back({name, shape, linear});
  if (dry()) return Tensor{nullptr, shape};
  Tensor t = load_weight(*backend_, *store_, name, shape, linear, storage_);
  held_[name] = Held{t, linear, storage_};
  if (on_loaded_) on_loaded_(store_->stored_bytes(name, shape));
  return t;
}

std::vector<Tensor> Params::linear_weights(const std::vector<std::string>& names, int64_t out, int64_t in) {
  std::vector<Tensor> ws;
  for (const std::string& n : names) ws.push_back(linear_weight(n, out, in));
  if (dry()) return ws;
  ws = backend_->pack_weights(ws);
  for (size_t i = 0; i < names.size(); i++) held_[names[i]].tensor = ws[i];
  return ws;
}

Tensor Params::conv_weight(const std::string& name, const Shape& shape) {
  Tensor t = get(name, shape);
  if (dry() || t.layout == backend_->image_layout()) return t;
  Held& h = held_[name];
  h.tensor = backend_->to_layout(t, backend_->image_layout());
  return h.tensor;
}

const Params::Held* Params::held(const std::string& name) const {
  auto it = held_.find(name);
  return it == held_.end() ? nullptr : &it->second;
}

Tensor load_weight(Backend& backend, const WeightStore& store, const std::string& name, const Shape& shape, bool linear, Storage storage) {
  std::vector<uint16_t> bits;
  if (backend.takes_f16(storage) && store.read_f16(name, shape, linear, &bits)) {
    Tensor t = backend.weight_f16(name, bits.data(), shape, storage);
    if (t.defined()) return t;
  }
  std::vector<float> data = store.read(name, shape, linear);
  return backend.weight(name, data.data(), shape, storage);
}

std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

}  // namespace pg25
