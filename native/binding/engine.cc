// The Engine class (engine.h): construction on a device, component loading with its progress, the
// model calls, memory and disposal.
#include <napi.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstdlib>
#include <cstring>

#include "../cpu/cpu_backend.h"
#include "../cuda/cuda_runtime_info.h"
#ifdef PG25_WITH_CUDA
#include "../cuda/cuda_backend.h"
#endif
#include "engine.h"
#include "../platform/env.h"

namespace pg25::binding {
namespace {

// Load progress from a job's thread to a JS callback: the running byte total after each tensor,
// through a thread-safe function (no callback given: nothing is sent). Released when the load ends,
// however it ends, so the event loop is never held.
class LoadProgress {
 public:
  LoadProgress(Napi::Env env, Napi::Value callback) {
    if (!callback.IsUndefined() && !callback.IsFunction()) throw Error(Code::InvalidArgument, "onBytes must be a function");
    if (callback.IsFunction()) tsfn_ = Napi::ThreadSafeFunction::New(env, callback.As<Napi::Function>(), "pg25-load-progress", 0, 1);
  }
  ~LoadProgress() { finish(); }
  void attach(Params& p) {
    if (!tsfn_) return;
    p.on_loaded([this](int64_t bytes) {
      total_ += bytes;
      tsfn_.NonBlockingCall([v = double(total_)](Napi::Env env, Napi::Function cb) {
        // The JS side never throws; were it to, the exception is dropped rather than left pending.
        if (env != nullptr && cb != nullptr) {
          try {
            cb.Call({Napi::Number::New(env, v)});
          } catch (const Napi::Error&) {
          }
        }
      });
    });
  }
  void finish() {
    if (tsfn_ && !released_) {
      released_ = true;
      tsfn_.Release();
    }
  }

 private:
  Napi::ThreadSafeFunction tsfn_;
  int64_t total_ = 0;
  bool released_ = false;
};

}  // namespace

Napi::Function EngineWrap::Init(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {InstanceMethod<&EngineWrap::LoadComponent>("loadComponent"),
                      InstanceMethod<&EngineWrap::EncodeText>("encodeText"),
                      InstanceMethod<&EngineWrap::RunUNet>("unet"),
                      InstanceMethod<&EngineWrap::VaeDecode>("vaeDecode"),
                      InstanceMethod<&EngineWrap::VaeEncode>("vaeEncode"),
                      InstanceMethod<&EngineWrap::ToRGB8>("toRGB8"),
                      InstanceMethod<&EngineWrap::FromHost>("fromHost"),
                      InstanceMethod<&EngineWrap::LatentPreview>("latentPreview"),
                      InstanceMethod<&EngineWrap::ToHost>("toHost"),
                      InstanceMethod<&EngineWrap::Lincomb>("lincomb"),
                      InstanceMethod<&EngineWrap::Concat>("concat"),
                      InstanceMethod<&EngineWrap::Slice0>("slice0"),
                      InstanceMethod<&EngineWrap::Op>("op"),
                      InstanceMethod<&EngineWrap::TimeOp>("timeOp"),
                      InstanceMethod<&EngineWrap::RandomTensor>("randomTensor"),
                      InstanceMethod<&EngineWrap::ComponentInfo>("componentInfo"),
                      InstanceMethod<&EngineWrap::WeightShapes>("weightShapes"),
                      InstanceMethod<&EngineWrap::MergeLoRA>("mergeLoRA"),
                      InstanceMethod<&EngineWrap::PageOut>("pageOut"),
                      InstanceMethod<&EngineWrap::BytesInUse>("bytesInUse"),
                      InstanceMethod<&EngineWrap::DeviceMemory>("deviceMemory"),
                      InstanceMethod<&EngineWrap::PeakBytes>("peakBytes"),
                      InstanceMethod<&EngineWrap::TakeNotices>("takeNotices"),
                      InstanceMethod<&EngineWrap::SetWeightPrecision>("setWeightPrecision"),
                      InstanceMethod<&EngineWrap::Profile>("profile"),
                      InstanceMethod<&EngineWrap::Dispose>("dispose"),
                      InstanceAccessor<&EngineWrap::GetDevice>("device")});
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  guarded(info.Env(), [&] {
    std::string device = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "cpu";
    if (device == "cpu") {
      be_ = std::shared_ptr<Backend>(make_cpu_backend().release());
      return;
    }
    // "cuda" is GPU 0; "cuda:N" GPU N (plain decimal, as CUDA numbers them).
    int index = -1;
    if (device == "cuda") index = 0;
    else if (device.size() > 5 && device.size() <= 8 && device.compare(0, 5, "cuda:") == 0 &&
             device.find_first_not_of("0123456789", 5) == std::string::npos && (device[5] != '0' || device.size() == 6))
      index = std::stoi(device.substr(5));
    if (index < 0) throw Error(Code::InvalidArgument, "device must be \"cpu\", \"cuda\" or \"cuda:N\", got \"" + device + "\"");
#ifdef PG25_WITH_CUDA
    be_ = std::shared_ptr<Backend>(make_cuda_backend(index).release());
#else
    throw Error(Code::NoDevice, "device \"" + device + "\": " + cuda::describe_availability());
#endif
  });
  // PG25_PROFILE=1: every op timed on its device (profile() reads the totals); no CUDA graphs meanwhile.
  const char* profile = platform::env("PG25_PROFILE");
  if (be_ && profile && std::strcmp(profile, "1") == 0) be_->enable_profiling();
}

// profile(): { op: { calls, ms } } since the last call, after the queued work completes (it waits: a
// diagnostic); empty unless the engine was opened with PG25_PROFILE=1.
Napi::Value EngineWrap::Profile(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(info.Env());
    if (!be_) return out;
    be_->bind_thread();
    for (const auto& [op, total] : be_->take_profile()) {
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("calls", Napi::Number::New(info.Env(), double(total.calls)));
      o.Set("ms", Napi::Number::New(info.Env(), total.ms));
      out.Set(op, o);
    }
    return out;
  });
}

Napi::Value EngineWrap::GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), be_ ? be_->name() : "disposed"); }

Napi::Value EngineWrap::LoadComponent(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    ComponentSpec spec = spec_from_js(info[0]);
    std::vector<WeightFileSpec> files = files_from_js(info[1]);
    std::map<std::string, WeightAlias> aliases = aliases_from_js(info[2]);
    // A fourth argument { syntheticSeed } builds the graph on generated weights instead of files.
    bool synthetic = info.Length() > 3 && info[3].IsObject() && info[3].As<Napi::Object>().Has("syntheticSeed");
    uint64_t seed = synthetic ? uint64_t(info[3].As<Napi::Object>().Get("syntheticSeed").ToNumber().Int64Value()) : 0;
    if (!synthetic && files.empty()) throw Error(Code::NotFound, spec.config_path + ": no weight files given");
    // { onBytes }: called on the main thread with the bytes loaded so far, after each tensor.
    auto progress = std::make_shared<LoadProgress>(
        info.Env(), info.Length() > 3 && info[3].IsObject() ? info[3].As<Napi::Object>().Get("onBytes") : info.Env().Undefined());
    auto be = be_ptr();
    auto loaded = std::make_shared<Loaded>();
    loaded->spec = spec;
    loaded->files = files;
    loaded->aliases = aliases;
    if (synthetic) loaded->synthetic_seed = seed;
    return run_job(
        info.Env(),
        [loaded, files, aliases, synthetic, seed, be, progress] {
          WeightStore store = synthetic ? WeightStore::synthetic(seed) : WeightStore(files, aliases);
          loaded->params = std::make_unique<Params>(be.get(), &store);
          progress->attach(*loaded->params);
          loaded->model = build(loaded->spec, *loaded->params);
          loaded->params->on_loaded(nullptr);
          progress->finish();
        },
        // The JS Engine is held until the job is over (the reference goes with the job, on the main thread),
        // so `this` is alive here even if the caller dropped its last reference meanwhile.
        [this, self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(info.This().As<Napi::Object>())),
         loaded](Napi::Env env) -> Napi::Value {
          std::lock_guard<std::mutex> g(mu_);
          components_.push_back(loaded);
          return Napi::Number::New(env, double(components_.size() - 1));
        },
        be);
  });
}

// weightShapes(id): { name: shape } of every weight the component's graph holds.
Napi::Value EngineWrap::WeightShapes(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto c = loaded(info[0]);
    Napi::Object o = Napi::Object::New(info.Env());
    for (const ParamSpec& s : c->params->declared()) o.Set(s.name, shape_to_js(info.Env(), s.shape));
    return o;
  });
}

// mergeLoRA(id, [{ name, rank, up, down }]): each weight set to its original plus up · down (rank 0:
// the original), in place (native/models/lora.h). Run between model calls.
Napi::Value EngineWrap::MergeLoRA(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto c = loaded(info[0]);
    // The factors are read in place: the arrays stay referenced until the job's result is built, on the
    // main thread, where their references are dropped.
    auto keep = std::make_shared<FloatArrayRefs>();
    auto updates = std::make_shared<std::vector<LoraUpdate>>(lora_updates_from_js(info[1], *keep));
    auto be = be_ptr();
    return run_job(
        info.Env(),
        [c, updates, be] {
          auto alone = c->alone(*be);
          apply_lora(*be, *c->params, c->store(), *updates);
        },
        [keep](Napi::Env env) -> Napi::Value { return env.Undefined(); }, be);
  });
}

// pageOut(id): the component's weights moved out of memory into a scratch file until a call uses it
// again (then read back, bit for bit). Resolves false where the backend keeps weights put (CUDA).
Napi::Value EngineWrap::PageOut(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto c = loaded(info[0]);
    auto be = be_ptr();
    auto done = std::make_shared<bool>(false);
    return run_job(
        info.Env(),
        [c, be, done] {
          std::unique_lock<std::shared_mutex> alone(c->use_mu);  // after any call running on the component
          if (!c->paged) c->paged = be->page_out(c->params->tensors());
          *done = c->paged;
        },
        [done](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, *done); }, be);
  });
}

Napi::Value EngineWrap::ComponentInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    uint32_t id = info[0].ToNumber().Uint32Value();
    std::lock_guard<std::mutex> g(mu_);
    if (id >= components_.size() || !components_[id]) throw Error(Code::Disposed, "component is not loaded");
    const Model& m = components_[id]->model;
    o.Set("kind", components_[id]->spec.kind);
    if (auto* u = std::get_if<std::unique_ptr<UNet>>(&m)) {
      o.Set("inChannels", double((*u)->in_channels()));
      o.Set("sampleSize", double((*u)->sample_size()));
      o.Set("crossAttentionDim", double((*u)->cross_attention_dim()));
      o.Set("textEmbedsDim", double((*u)->text_embeds_dim()));
    } else if (auto* v = std::get_if<std::unique_ptr<VaeDecoder>>(&m)) {
      o.Set("latentChannels", double((*v)->latent_channels()));
      o.Set("scaleFactor", double((*v)->scale_factor()));
      o.Set("scalingFactor", (*v)->scaling_factor());
      Napi::Array mean = Napi::Array::New(env), sd = Napi::Array::New(env);
      for (size_t i = 0; i < (*v)->latents_mean().size(); i++) {
        mean.Set(uint32_t(i), double((*v)->latents_mean()[i]));
        sd.Set(uint32_t(i), double((*v)->latents_std()[i]));
      }
      o.Set("latentsMean", mean);
      o.Set("latentsStd", sd);
    } else if (auto* c = std::get_if<std::unique_ptr<ClipTextModel>>(&m)) {
      o.Set("hiddenSize", double((*c)->hidden_size()));
      o.Set("maxPositions", double((*c)->max_positions()));
    }
    return o;
  });
}

Napi::Value EngineWrap::EncodeText(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto [keep, m] = component<ClipTextModel>(info[0]);
    if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw Error(Code::InvalidArgument, "ids must be an Int32Array");
    Napi::Int32Array ids = info[1].As<Napi::Int32Array>();
    int64_t batch = info[2].ToNumber().Int64Value();
    if (batch < 1 || ids.ElementLength() == 0 || ids.ElementLength() % size_t(batch) != 0)
      throw Error(Code::InvalidArgument, "ids length must be a multiple of the batch size");
    std::vector<int32_t> v(ids.Data(), ids.Data() + ids.ElementLength());
    auto cancel = CancelWrap::From(info[3]);
    auto be = be_ptr();
    auto out = std::make_shared<ClipTextModel::Output>();
    return run_job(
        info.Env(),
        [keep = keep, m = m, v, batch, be, out, cancel] {
          auto in_use = keep->use(*be);
          *out = m->forward(*be, v, batch, cancel.get());
        },
        [be, out](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("penultimate", TensorWrap::Wrap(env, out->penultimate, be));
          if (out->pooled.defined()) o.Set("pooled", TensorWrap::Wrap(env, out->pooled, be));
          return o;
        },
        be);
  });
}

Napi::Value EngineWrap::RunUNet(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto [keep, m] = component<UNet>(info[0]);
    Tensor sample = arg(info[1], "sample");
    float t = float(info[2].ToNumber().DoubleValue());
    Tensor ctx = arg(info[3], "encoderHiddenStates");
    Tensor te = arg(info[4], "textEmbeds");
    if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Error(Code::InvalidArgument, "timeIds must be a Float32Array");
    Napi::Float32Array tid = info[5].As<Napi::Float32Array>();
    std::vector<float> time_ids(tid.Data(), tid.Data() + tid.ElementLength());
    auto cancel = CancelWrap::From(info[6]);
    auto be = be_ptr();
    auto out = std::make_shared<Tensor>();
    return run_job(
        info.Env(),
        [keep = keep, m = m, sample, t, ctx, te, time_ids, be, out, cancel] {
          auto in_use = keep->use(*be);
          *out = m->forward(*be, sample, t, ctx, te, time_ids, cancel.get());
        },
        [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
  });
}

Napi::Value EngineWrap::VaeDecode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto [keep, m] = component<VaeDecoder>(info[0]);
    Tensor lat = arg(info[1], "latents");
    bool unscale = info[2].ToBoolean().Value();
    auto cancel = CancelWrap::From(info[3]);
    auto be = be_ptr();
    auto out = std::make_shared<Tensor>();
    return run_job(
        info.Env(),
        [keep = keep, m = m, lat, unscale, be, out, cancel] {
          auto in_use = keep->use(*be);
          *out = m->decode(*be, unscale ? m->unscale(*be, lat) : lat, cancel.get());
        },
        [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
  });
}

Napi::Value EngineWrap::VaeEncode(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto [keep, m] = component<VaeEncoder>(info[0]);
    Tensor image = arg(info[1], "image");
    auto cancel = CancelWrap::From(info[2]);
    auto be = be_ptr();
    auto out = std::make_shared<VaeEncoder::Output>();
    return run_job(
        info.Env(),
        [keep = keep, m = m, image, be, out, cancel] {
          auto in_use = keep->use(*be);
          *out = m->encode(*be, image, cancel.get());
        },
        [be, out](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("mean", TensorWrap::Wrap(env, out->mean, be));
          o.Set("std", TensorWrap::Wrap(env, out->std, be));
          return o;
        },
        be);
  });
}

// deviceMemory(): { free, total } bytes of the engine's own device, or null where it uses host memory.
Napi::Value EngineWrap::DeviceMemory(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    size_t free = 0, total = 0;
    if (!be_ || !be().device_memory(free, total)) return info.Env().Null();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("free", double(free));
    o.Set("total", double(total));
    return o;
  });
}

Napi::Value EngineWrap::BytesInUse(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), be_ ? double(be_->bytes_in_use()) : 0.0);
}

// takeNotices(): the backend's one-line notices for the user (e.g. a missing cuDNN), each given once.
Napi::Value EngineWrap::TakeNotices(const Napi::CallbackInfo& info) {
  std::vector<std::string> notes = be_ ? be_->take_notices() : std::vector<std::string>();
  Napi::Array a = Napi::Array::New(info.Env(), notes.size());
  for (size_t i = 0; i < notes.size(); i++) a.Set(uint32_t(i), notes[i]);
  return a;
}

// setWeightPrecision('fp32' | 'bf16' | 'fp16'): how the CPU backend stores weights loaded from now on.
Napi::Value EngineWrap::SetWeightPrecision(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    std::string p = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    if (be_) be_->set_weight_precision(p);
  });
  return info.Env().Undefined();
}

// peakBytes(reset?): the high-water mark of backend memory; `true` starts a new window.
Napi::Value EngineWrap::PeakBytes(const Napi::CallbackInfo& info) {
  if (!be_) return Napi::Number::New(info.Env(), 0.0);
  double peak = double(be_->peak_bytes());
  if (info.Length() > 0 && info[0].ToBoolean().Value()) be_->reset_peak();
  return Napi::Number::New(info.Env(), peak);
}

Napi::Value EngineWrap::Dispose(const Napi::CallbackInfo& info) {
  {
    std::lock_guard<std::mutex> g(mu_);
    components_.clear();
    be_.reset();
  }
#ifdef __GLIBC__
  // Weights are gigabytes of freed heap: hand it back to the OS now rather than keep it in malloc's arenas.
  malloc_trim(0);
#endif
  return info.Env().Undefined();
}

Napi::Function engine_class(Napi::Env env) { return EngineWrap::Init(env); }

}  // namespace pg25::binding
