// The Engine class JS holds: a backend and the model components loaded into it. engine.cc defines
// its construction, component loading and model calls; engine_tensors.cc the tensor ops JS calls
// directly between them. Heavy work runs as jobs off the main thread.
#pragma once
#include <napi.h>

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <vector>

#include "../backend/op_call.h"
#include "binding.h"

namespace pg25::binding {

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);

 private:
  struct Loaded {
    ComponentSpec spec;
    std::unique_ptr<Params> params;
    Model model;
    // Where the weights came from, to read originals again (LoRA unmerging).
    std::vector<WeightFileSpec> files;
    std::map<std::string, WeightAlias> aliases;
    std::optional<uint64_t> synthetic_seed;
    WeightStore store() const { return synthetic_seed ? WeightStore::synthetic(*synthetic_seed) : WeightStore(files, aliases); }
    // Weights paged out of memory (pageOut). Model calls hold `use_mu` shared for their whole run, once
    // the weights are back in memory; paging out and LoRA merging hold it alone, so neither frees nor
    // rewrites a weight that a call running beside them reads.
    std::shared_mutex use_mu;
    bool paged = false;
    std::shared_lock<std::shared_mutex> use(Backend& be) {
      for (;;) {
        {
          std::shared_lock<std::shared_mutex> s(use_mu);
          if (!paged) return s;
        }
        alone(be);  // reads the weights back, then lets go to take the shared lock again
      }
    }
    // Alone, with the weights in memory (LoRA merging).
    std::unique_lock<std::shared_mutex> alone(Backend& be) {
      std::unique_lock<std::shared_mutex> u(use_mu);
      if (paged) {
        be.page_in(params->tensors());
        paged = false;
      }
      return u;
    }
  };

  Backend& be() {
    if (!be_) throw Error(Code::Disposed, "the engine was disposed");
    be_->bind_thread();
    return *be_;
  }

  const Tensor& arg(const Napi::Value& v, const char* what) { return TensorWrap::From(v, what, &be()); }

  std::shared_ptr<Backend> be_ptr() {
    be();
    return be_;
  }

  // A component and a reference that keeps it alive while a job uses it, even across dispose().
  template <typename T>
  std::pair<std::shared_ptr<Loaded>, const T*> component(const Napi::Value& v) {
    if (!v.IsNumber()) throw Error(Code::InvalidArgument, "component id must be a number");
    uint32_t id = v.As<Napi::Number>().Uint32Value();
    std::lock_guard<std::mutex> g(mu_);
    if (id >= components_.size() || !components_[id]) throw Error(Code::Disposed, "component " + std::to_string(id) + " is not loaded");
    auto* p = std::get_if<std::unique_ptr<T>>(&components_[id]->model);
    if (!p) throw Error(Code::InvalidArgument, "component " + std::to_string(id) + " is a " + components_[id]->spec.kind);
    return {components_[id], p->get()};
  }

  std::shared_ptr<Loaded> loaded(const Napi::Value& v) {
    uint32_t id = v.ToNumber().Uint32Value();
    std::lock_guard<std::mutex> g(mu_);
    if (id >= components_.size() || !components_[id]) throw Error(Code::Disposed, "component is not loaded");
    return components_[id];
  }

  // engine.cc: components, model calls, memory and disposal.
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value LoadComponent(const Napi::CallbackInfo& info);
  Napi::Value WeightShapes(const Napi::CallbackInfo& info);
  Napi::Value MergeLoRA(const Napi::CallbackInfo& info);
  Napi::Value PageOut(const Napi::CallbackInfo& info);
  Napi::Value ComponentInfo(const Napi::CallbackInfo& info);
  Napi::Value EncodeText(const Napi::CallbackInfo& info);
  Napi::Value RunUNet(const Napi::CallbackInfo& info);
  Napi::Value VaeDecode(const Napi::CallbackInfo& info);
  Napi::Value VaeEncode(const Napi::CallbackInfo& info);
  Napi::Value DeviceMemory(const Napi::CallbackInfo& info);
  Napi::Value BytesInUse(const Napi::CallbackInfo& info);
  Napi::Value TakeNotices(const Napi::CallbackInfo& info);
  Napi::Value SetWeightPrecision(const Napi::CallbackInfo& info);
  Napi::Value Profile(const Napi::CallbackInfo& info);
  Napi::Value PeakBytes(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // engine_tensors.cc: tensor ops.
  Napi::Value ToRGB8(const Napi::CallbackInfo& info);
  Napi::Value LatentPreview(const Napi::CallbackInfo& info);
  Napi::Value FromHost(const Napi::CallbackInfo& info);
  Napi::Value ToHost(const Napi::CallbackInfo& info);
  Napi::Value Lincomb(const Napi::CallbackInfo& info);
  Napi::Value Concat(const Napi::CallbackInfo& info);
  Napi::Value Slice0(const Napi::CallbackInfo& info);
  Napi::Value Op(const Napi::CallbackInfo& info);
  Napi::Value TimeOp(const Napi::CallbackInfo& info);
  Napi::Value RandomTensor(const Napi::CallbackInfo& info);
  struct OpRequest {
    std::string name;
    std::vector<std::optional<Tensor>> inputs;
    OpArgs attrs;
  };
  OpRequest op_request(const Napi::CallbackInfo& info);

  std::shared_ptr<Backend> be_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Loaded>> components_;
};

}  // namespace pg25::binding
