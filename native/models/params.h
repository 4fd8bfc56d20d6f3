// How a model asks for its weights. Model constructors call Params::get for every tensor they use;
// in a dry run (no backend, no store) this only records names and shapes, which is how the graph built
// from the real configs is checked against the real checkpoint manifest without the download.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "../io/weights.h"

namespace pg25 {

struct ParamSpec {
  std::string name;
  Shape shape;
  bool linear;
};

// A weight read from `store` onto `backend` as `storage`: the file's float16 bits as they are where the
// backend takes them, else float32.
Tensor load_weight(Backend& backend, const WeightStore& store, const std::string& name, const Shape& shape, bool linear, Storage storage);

class Params {
 public:
  Params(Backend* backend, const WeightStore* store) : backend_(backend), store_(store) {}

  Tensor get(const std::string& name, const Shape& shape, bool linear = false);
  Tensor linear_weight(const std::string& name, int64_t out, int64_t in) { return get(name, {out, in}, true); }
  // Linear weights [out, in] that multiply one input together, stored as the backend packs them
  // (Backend::pack_weights); LoRA reaches each by its name as before.
  std::vector<Tensor> linear_weights(const std::vector<std::string>& names, int64_t out, int64_t in);
  // A convolution kernel [K, C, R, S], laid out as the backend keeps images (KRSC beside NHWC).
  Tensor conv_weight(const std::string& name, const Shape& shape);
  // How the weights asked for from now on are stored (a VAE with force_upcast asks for Wide first).
  void set_storage(Storage s) { storage_ = s; }
  const std::vector<ParamSpec>& declared() const { return declared_; }
  // Called after each weight is loaded with the bytes it took in its file (load progress).
  void on_loaded(std::function<void(int64_t)> f) { on_loaded_ = std::move(f); }
  bool dry() const { return backend_ == nullptr; }

  // A loaded weight: the tensor the graph holds (the same buffer, so writing into it changes the model)
  // and how it was loaded (to load it again). LoRA merging (lora.cc) works through these.
  struct Held {
    Tensor tensor;
    bool linear;
    Storage storage;
  };
  const Held* held(const std::string& name) const;
  // Every loaded weight's tensor (what paging moves out of memory and back).
  std::vector<Tensor> tensors() const {
    std::vector<Tensor> ts;
    for (const auto& [name, h] : held_) ts.push_back(h.tensor);
    return ts;
  }

 private:
  Backend* backend_;
  const WeightStore* store_;
  Storage storage_ = Storage::Default;
  std::vector<ParamSpec> declared_;
  std::function<void(int64_t)> on_loaded_;
  std::map<std::string, Held> held_;
};

// Joins name parts with dots: P("down_blocks", 0, "resnets") -> "down_blocks.0.resnets".
std::string join(const std::string& a, const std::string& b);
inline std::string join(const std::string& a, int64_t i) { return join(a, std::to_string(i)); }

}  // namespace pg25
