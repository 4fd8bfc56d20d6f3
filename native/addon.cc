// The N-API surface. JS holds Engine objects (a backend plus the model components loaded into it)
// and Tensor handles whose memory stays in the backend; heavy work runs in AsyncWorker jobs so the
// event loop keeps turning. Every native failure becomes a JS Error with a `code`; none escapes.
#include <napi.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <variant>

#include "backend/backend.h"
#include "backend/op_call.h"
#include "core/error.h"
#include "cpu/cpu_backend.h"
#include "cpu/threadpool.h"
#include "cuda/cuda_runtime_info.h"
#ifdef PG25_WITH_CUDA
#include "cuda/cuda_backend.h"
#endif
#ifdef PG25_CUDA_EMULATION
#include "cuda/emu/runtime.h"
#endif
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/unet.h"
#include "models/vae.h"

namespace pg25 {
namespace {

Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code));
  return e;
}

// Runs fn, converting any C++ exception into a thrown JS error.
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "PG25_OUT_OF_MEMORY", "out of host memory");
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw make_error(env, "PG25_INTERNAL", e.what());
  }
}

// A unit of work on a libuv thread: `work` runs off the main thread, `done` builds the JS result.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done, std::shared_ptr<Backend> device)
      : Napi::AsyncWorker(env, "pg25"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)),
        device_(std::move(device)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
      // A job is done when its device work is: a GPU backend waits here, off the main thread, so that
      // later host reads (toHost, previews) never block the event loop behind queued kernels.
      if (device_) device_->synchronize();
    } catch (const Error& e) {
      code_ = e.code();
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "PG25_OUT_OF_MEMORY";
      SetError("out of host memory");
    } catch (const std::exception& e) {
      code_ = "PG25_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(guarded(env, [&] { return done_(env); }));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(make_error(Env(), code_, e.Message()).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::shared_ptr<Backend> device_;
  std::string code_ = "PG25_INTERNAL";
};

Napi::Promise run_job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                      std::shared_ptr<Backend> device = nullptr) {
  auto* job = new Job(env, std::move(work), std::move(done), std::move(device));
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Shape shape_from_js(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " must be an array of sizes");
  Napi::Array a = v.As<Napi::Array>();
  Shape s;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value d = a.Get(i);
    if (!d.IsNumber()) throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " must hold numbers");
    double x = d.As<Napi::Number>().DoubleValue();
    if (!(x >= 0 && x <= double(1ll << 40)) || x != double(int64_t(x))) throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " holds an invalid size");
    s.push_back(int64_t(x));
  }
  return s;
}

Napi::Array shape_to_js(Napi::Env env, const Shape& s) {
  Napi::Array a = Napi::Array::New(env, s.size());
  for (size_t i = 0; i < s.size(); i++) a.Set(uint32_t(i), Napi::Number::New(env, double(s[i])));
  return a;
}

std::string str_prop(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Error("PG25_INVALID_ARGUMENT", std::string("\"") + key + "\" must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<WeightFileSpec> files_from_js(const Napi::Value& v) {
  if (!v.IsArray()) throw Error("PG25_INVALID_ARGUMENT", "files must be an array");
  std::vector<WeightFileSpec> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error("PG25_INVALID_ARGUMENT", "files entries must be objects");
    Napi::Object o = e.As<Napi::Object>();
    out.push_back({str_prop(o, "path"), o.Get("paddle").ToBoolean().Value()});
  }
  return out;
}

std::map<std::string, WeightAlias> aliases_from_js(const Napi::Value& v) {
  std::map<std::string, WeightAlias> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Error("PG25_INVALID_ARGUMENT", "aliases must be an array");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error("PG25_INVALID_ARGUMENT", "aliases entries must be objects");
    Napi::Object o = e.As<Napi::Object>();
    WeightAlias al;
    al.source = str_prop(o, "source");
    std::string op = o.Has("op") ? str_prop(o, "op") : "rename";
    if (op == "rename") al.op = WeightAlias::Op::Rename;
    else if (op == "transpose") al.op = WeightAlias::Op::Transpose;
    else if (op == "rows") {
      al.op = WeightAlias::Op::Rows;
      al.row_begin = o.Get("begin").ToNumber().Int64Value();
      al.row_count = o.Get("count").ToNumber().Int64Value();
    } else {
      throw Error("PG25_INVALID_ARGUMENT", "alias op \"" + op + "\" is not rename, rows or transpose");
    }
    out[str_prop(o, "name")] = al;
  }
  return out;
}

// ---- components --------------------------------------------------------------------------------

struct ComponentSpec {
  std::string kind, class_name, config_path, config_text;
};

ComponentSpec spec_from_js(const Napi::Value& v) {
  if (!v.IsObject()) throw Error("PG25_INVALID_ARGUMENT", "component spec must be an object");
  Napi::Object o = v.As<Napi::Object>();
  return {str_prop(o, "kind"), str_prop(o, "className"), str_prop(o, "configPath"), str_prop(o, "configText")};
}

using Model = std::variant<std::monostate, std::unique_ptr<ClipTextModel>, std::unique_ptr<UNet>, std::unique_ptr<VaeDecoder>,
                           std::unique_ptr<VaeEncoder>>;

Model build(const ComponentSpec& s, Params& p) {
  Config cfg(s.config_path, s.config_text);
  if (s.kind == "text_encoder") return std::make_unique<ClipTextModel>(s.class_name, cfg, p);
  if (s.kind == "unet") {
    if (s.class_name != "UNet2DConditionModel") throw unsupported(s.config_path, "UNet class \"" + s.class_name + "\" is not supported (UNet2DConditionModel)");
    return std::make_unique<UNet>(cfg, p);
  }
  if (s.kind == "vae" || s.kind == "vae_encoder") {
    if (s.class_name != "AutoencoderKL") throw unsupported(s.config_path, "VAE class \"" + s.class_name + "\" is not supported (AutoencoderKL)");
    if (s.kind == "vae_encoder") return std::make_unique<VaeEncoder>(cfg, p);
    return std::make_unique<VaeDecoder>(cfg, p);
  }
  throw Error("PG25_INVALID_ARGUMENT", "unknown component kind \"" + s.kind + "\"");
}

// ---- Engine and Tensor ------------------------------------------------------------------------

class EngineWrap;

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "Tensor",
                                   {InstanceAccessor<&TensorWrap::GetShape>("shape"), InstanceMethod<&TensorWrap::Dispose>("dispose"),
                                    InstanceAccessor<&TensorWrap::GetDisposed>("disposed")});
    ctor = Napi::Persistent(f);
    return f;
  }
  static Napi::Object Wrap(Napi::Env env, Tensor t, const std::shared_ptr<Backend>& be) {
    Napi::Object o = ctor.New({});
    TensorWrap* w = Unwrap(o);
    w->bytes_ = int64_t(t.buf ? t.buf->bytes() : 0);
    w->t_ = std::move(t);
    w->be_ = be;
    Napi::MemoryManagement::AdjustExternalMemory(env, w->bytes_);
    return o;
  }
  // The tensor behind `v`, which must belong to `owner`: another engine's memory (host memory for a
  // CPU engine, another stream's for a CUDA one) is never handed to a backend.
  static const Tensor& From(const Napi::Value& v, const char* what, const Backend* owner) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " must be a Tensor");
    TensorWrap* w = Unwrap(v.As<Napi::Object>());
    if (!w->t_.defined()) throw Error("PG25_DISPOSED", std::string(what) + " was disposed");
    if (w->be_.get() != owner)
      throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " belongs to another engine (" + w->be_->name() + "); copy it with toHost/fromHost");
    return w->t_;
  }
  explicit TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {}
  ~TensorWrap() override = default;
  void Finalize(Napi::Env env) override { release(env); }

 private:
  void release(Napi::Env env) {
    if (t_.defined()) {
      t_.buf.reset();  // the shape stays readable after dispose
      be_.reset();     // after the buffer: a disposed engine goes with its last live tensor, not its last handle
      Napi::MemoryManagement::AdjustExternalMemory(env, -bytes_);
      bytes_ = 0;
    }
  }
  Napi::Value GetShape(const Napi::CallbackInfo& info) { return shape_to_js(info.Env(), t_.shape); }
  Napi::Value GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !t_.defined()); }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }
  Tensor t_;
  std::shared_ptr<Backend> be_;  // keeps the backend alive while the tensor is
  int64_t bytes_ = 0;
};
Napi::FunctionReference TensorWrap::ctor;

// new CancelToken(): cancel() sets a flag that jobs given the token check between blocks, so an
// AbortSignal reaches native work already running (the job rejects with ABORT_ERR).
class CancelWrap : public Napi::ObjectWrap<CancelWrap> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "CancelToken", {InstanceMethod<&CancelWrap::Cancel>("cancel"), InstanceAccessor<&CancelWrap::GetCancelled>("cancelled")});
    ctor = Napi::Persistent(f);
    return f;
  }
  // The flag of an optional token argument (null when absent); jobs hold it, so it outlives the JS object.
  static std::shared_ptr<CancelFlag> From(const Napi::Value& v) {
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) throw Error("PG25_INVALID_ARGUMENT", "cancel must be a CancelToken");
    return Unwrap(v.As<Napi::Object>())->flag_;
  }
  explicit CancelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CancelWrap>(info), flag_(std::make_shared<CancelFlag>(false)) {}

 private:
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    flag_->store(true);
    return info.Env().Undefined();
  }
  Napi::Value GetCancelled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), flag_->load()); }
  std::shared_ptr<CancelFlag> flag_;
};
Napi::FunctionReference CancelWrap::ctor;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
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
                        InstanceMethod<&EngineWrap::ComponentInfo>("componentInfo"),
                        InstanceMethod<&EngineWrap::BytesInUse>("bytesInUse"),
                        InstanceMethod<&EngineWrap::DeviceMemory>("deviceMemory"),
                        InstanceMethod<&EngineWrap::PeakBytes>("peakBytes"),
                        InstanceMethod<&EngineWrap::Dispose>("dispose"),
                        InstanceAccessor<&EngineWrap::GetDevice>("device")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    guarded(info.Env(), [&] {
      std::string device = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "cpu";
      if (device == "cpu") {
        be_ = std::shared_ptr<Backend>(make_cpu_backend().release());
      } else if (device == "cuda") {
#ifdef PG25_WITH_CUDA
        be_ = std::shared_ptr<Backend>(make_cuda_backend().release());
#else
        throw Error("PG25_NO_DEVICE", "device \"cuda\": " + cuda::describe_availability());
#endif
      } else {
        throw Error("PG25_INVALID_ARGUMENT", "device must be \"cpu\" or \"cuda\"");
      }
    });
  }

 private:
  struct Loaded {
    ComponentSpec spec;
    std::unique_ptr<Params> params;
    Model model;
  };

  Backend& be() {
    if (!be_) throw Error("PG25_DISPOSED", "the engine was disposed");
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
    if (!v.IsNumber()) throw Error("PG25_INVALID_ARGUMENT", "component id must be a number");
    uint32_t id = v.As<Napi::Number>().Uint32Value();
    std::lock_guard<std::mutex> g(mu_);
    if (id >= components_.size() || !components_[id]) throw Error("PG25_DISPOSED", "component " + std::to_string(id) + " is not loaded");
    auto* p = std::get_if<std::unique_ptr<T>>(&components_[id]->model);
    if (!p) throw Error("PG25_INVALID_ARGUMENT", "component " + std::to_string(id) + " is a " + components_[id]->spec.kind);
    return {components_[id], p->get()};
  }

  Napi::Value GetDevice(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), be_ ? be_->name() : "disposed");
  }

  Napi::Value LoadComponent(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      ComponentSpec spec = spec_from_js(info[0]);
      std::vector<WeightFileSpec> files = files_from_js(info[1]);
      std::map<std::string, WeightAlias> aliases = aliases_from_js(info[2]);
      // A fourth argument { syntheticSeed } builds the graph on generated weights instead of files.
      bool synthetic = info.Length() > 3 && info[3].IsObject() && info[3].As<Napi::Object>().Has("syntheticSeed");
      uint64_t seed = synthetic ? uint64_t(info[3].As<Napi::Object>().Get("syntheticSeed").ToNumber().Int64Value()) : 0;
      if (!synthetic && files.empty()) throw Error("PG25_NOT_FOUND", spec.config_path + ": no weight files given");
      auto be = be_ptr();
      auto loaded = std::make_shared<Loaded>();
      loaded->spec = spec;
      return run_job(
          info.Env(),
          [loaded, files, aliases, synthetic, seed, be] {
            WeightStore store = synthetic ? WeightStore::synthetic(seed) : WeightStore(files, aliases);
            loaded->params = std::make_unique<Params>(be.get(), &store);
            loaded->model = build(loaded->spec, *loaded->params);
          },
          [this, loaded](Napi::Env env) -> Napi::Value {
            std::lock_guard<std::mutex> g(mu_);
            components_.push_back(loaded);
            return Napi::Number::New(env, double(components_.size() - 1));
          }, be);
    });
  }

  Napi::Value ComponentInfo(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Napi::Env env = info.Env();
      Napi::Object o = Napi::Object::New(env);
      uint32_t id = info[0].ToNumber().Uint32Value();
      std::lock_guard<std::mutex> g(mu_);
      if (id >= components_.size() || !components_[id]) throw Error("PG25_DISPOSED", "component is not loaded");
      const Model& m = components_[id]->model;
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

  Napi::Value EncodeText(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto [keep, m] = component<ClipTextModel>(info[0]);
      if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
        throw Error("PG25_INVALID_ARGUMENT", "ids must be an Int32Array");
      Napi::Int32Array ids = info[1].As<Napi::Int32Array>();
      int64_t batch = info[2].ToNumber().Int64Value();
      if (batch < 1 || ids.ElementLength() == 0 || ids.ElementLength() % size_t(batch) != 0)
        throw Error("PG25_INVALID_ARGUMENT", "ids length must be a multiple of the batch size");
      std::vector<int32_t> v(ids.Data(), ids.Data() + ids.ElementLength());
      auto cancel = CancelWrap::From(info[3]);
      auto be = be_ptr();
      auto out = std::make_shared<ClipTextModel::Output>();
      return run_job(
          info.Env(), [keep = keep, m = m, v, batch, be, out, cancel] { *out = m->forward(*be, v, batch, cancel.get()); },
          [be, out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("penultimate", TensorWrap::Wrap(env, out->penultimate, be));
            if (out->pooled.defined()) o.Set("pooled", TensorWrap::Wrap(env, out->pooled, be));
            return o;
          }, be);
    });
  }

  Napi::Value RunUNet(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto [keep, m] = component<UNet>(info[0]);
      Tensor sample = arg(info[1], "sample");
      float t = float(info[2].ToNumber().DoubleValue());
      Tensor ctx = arg(info[3], "encoderHiddenStates");
      Tensor te = arg(info[4], "textEmbeds");
      if (!info[5].IsTypedArray() || info[5].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Error("PG25_INVALID_ARGUMENT", "timeIds must be a Float32Array");
      Napi::Float32Array tid = info[5].As<Napi::Float32Array>();
      std::vector<float> time_ids(tid.Data(), tid.Data() + tid.ElementLength());
      auto cancel = CancelWrap::From(info[6]);
      auto be = be_ptr();
      auto out = std::make_shared<Tensor>();
      return run_job(
          info.Env(), [keep = keep, m = m, sample, t, ctx, te, time_ids, be, out, cancel] { *out = m->forward(*be, sample, t, ctx, te, time_ids, cancel.get()); },
          [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
    });
  }

  Napi::Value VaeDecode(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto [keep, m] = component<VaeDecoder>(info[0]);
      Tensor lat = arg(info[1], "latents");
      bool unscale = info[2].ToBoolean().Value();
      auto cancel = CancelWrap::From(info[3]);
      auto be = be_ptr();
      auto out = std::make_shared<Tensor>();
      return run_job(
          info.Env(), [keep = keep, m = m, lat, unscale, be, out, cancel] { *out = m->decode(*be, unscale ? m->unscale(*be, lat) : lat, cancel.get()); },
          [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
    });
  }

  Napi::Value VaeEncode(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      auto [keep, m] = component<VaeEncoder>(info[0]);
      Tensor image = arg(info[1], "image");
      auto cancel = CancelWrap::From(info[2]);
      auto be = be_ptr();
      auto out = std::make_shared<VaeEncoder::Output>();
      return run_job(
          info.Env(), [keep = keep, m = m, image, be, out, cancel] { *out = m->encode(*be, image, cancel.get()); },
          [be, out](Napi::Env env) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("mean", TensorWrap::Wrap(env, out->mean, be));
            o.Set("std", TensorWrap::Wrap(env, out->std, be));
            return o;
          }, be);
    });
  }

  Napi::Value ToRGB8(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      Tensor x = arg(info[0], "image");
      if (x.rank() != 4 || x.dim(1) != 3) throw Error("PG25_INVALID_ARGUMENT", "image must be [B, 3, H, W]");
      auto be = be_ptr();
      auto out = std::make_shared<std::vector<uint8_t>>();
      return run_job(
          info.Env(), [x, be, out] { *out = be->to_rgb8(x); },
          [out](Napi::Env env) -> Napi::Value {
            Napi::Uint8Array a = Napi::Uint8Array::New(env, out->size());
            std::memcpy(a.Data(), out->data(), out->size());
            return a;
          }, be);
    });
  }

  Napi::Value LatentPreview(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& x = arg(info[0], "latents");
      auto floats = [](const Napi::Value& v, const char* what) {
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
          throw Error("PG25_INVALID_ARGUMENT", std::string(what) + " must be a Float32Array");
        Napi::Float32Array a = v.As<Napi::Float32Array>();
        return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
      };
      std::vector<float> m = floats(info[1], "matrix"), bias = floats(info[2], "bias");
      if (x.rank() != 4 || int64_t(m.size()) != 3 * x.dim(1) || bias.size() != 3) throw Error("PG25_INVALID_ARGUMENT", "preview: matrix must be 3 x channels");
      std::vector<uint8_t> out = be().latent_rgb(x, m, bias);
      Napi::Uint8Array a = Napi::Uint8Array::New(info.Env(), out.size());
      std::memcpy(a.Data(), out.data(), out.size());
      return a;
    });
  }

  Napi::Value FromHost(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Error("PG25_INVALID_ARGUMENT", "data must be a Float32Array");
      Napi::Float32Array a = info[0].As<Napi::Float32Array>();
      Shape s = shape_from_js(info[1], "shape");
      Tensor t{nullptr, s};
      if (size_t(t.numel()) != a.ElementLength())
        throw Error("PG25_INVALID_ARGUMENT", "data holds " + std::to_string(a.ElementLength()) + " values; shape " + shape_str(s) + " needs " + std::to_string(t.numel()));
      return TensorWrap::Wrap(info.Env(), be().from_host(a.Data(), s), be_ptr());
    });
  }

  Napi::Value ToHost(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& t = arg(info[0], "tensor");
      Napi::Float32Array a = Napi::Float32Array::New(info.Env(), size_t(t.numel()));
      be().to_host(t, a.Data());
      return a;
    });
  }

  Napi::Value Lincomb(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsArray()) throw Error("PG25_INVALID_ARGUMENT", "lincomb takes [[coefficient, tensor], ...]");
      Napi::Array terms = info[0].As<Napi::Array>();
      std::vector<Tensor> keep;
      std::vector<std::pair<double, const Tensor*>> t;
      keep.reserve(terms.Length());
      for (uint32_t i = 0; i < terms.Length(); i++) {
        Napi::Value e = terms.Get(i);
        if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) throw Error("PG25_INVALID_ARGUMENT", "lincomb takes [[coefficient, tensor], ...]");
        Napi::Array pair = e.As<Napi::Array>();
        if (!pair.Get(0u).IsNumber()) throw Error("PG25_INVALID_ARGUMENT", "lincomb coefficients must be numbers");
        keep.push_back(arg(pair.Get(1u), "lincomb term"));
        t.emplace_back(pair.Get(0u).As<Napi::Number>().DoubleValue(), nullptr);
      }
      for (size_t i = 0; i < keep.size(); i++) t[i].second = &keep[i];
      if (t.empty()) throw Error("PG25_INVALID_ARGUMENT", "lincomb needs at least one term");
      for (auto& p : t)
        if (p.second->shape != t[0].second->shape) throw Error("PG25_INVALID_ARGUMENT", "lincomb terms must share one shape");
      return TensorWrap::Wrap(info.Env(), be().lincomb(t), be_ptr());
    });
  }

  Napi::Value Concat(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& a = arg(info[0], "a");
      const Tensor& b = arg(info[1], "b");
      int axis = int(info[2].ToNumber().Int32Value());
      return TensorWrap::Wrap(info.Env(), be().concat(a, b, axis), be_ptr());
    });
  }

  Napi::Value Slice0(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const Tensor& a = arg(info[0], "tensor");
      int64_t start = info[1].ToNumber().Int64Value(), count = info[2].ToNumber().Int64Value();
      if (start < 0 || count < 0 || start + count > a.dim(0)) throw Error("PG25_INVALID_ARGUMENT", "slice: range outside " + shape_str(a.shape));
      return TensorWrap::Wrap(info.Env(), be().slice0(a, start, count), be_ptr());
    });
  }

  // op(name, inputs, attributes): any backend op by name, its arguments checked (native/backend/op_call.cc).
  // Tests run one op on two backends with it; a null input is an absent bias.
  Napi::Value Op(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      if (!info[0].IsString()) throw Error("PG25_INVALID_ARGUMENT", "op: the name must be a string");
      if (!info[1].IsArray()) throw Error("PG25_INVALID_ARGUMENT", "op: inputs must be an array");
      std::string name = info[0].As<Napi::String>().Utf8Value();
      Napi::Array ins = info[1].As<Napi::Array>();
      std::vector<std::optional<Tensor>> inputs;
      for (uint32_t i = 0; i < ins.Length(); i++) {
        Napi::Value v = ins.Get(i);
        if (v.IsNull() || v.IsUndefined()) inputs.emplace_back();
        else inputs.emplace_back(arg(v, "op input"));
      }
      OpArgs attrs;
      if (info.Length() > 2 && info[2].IsObject()) {
        Napi::Object o = info[2].As<Napi::Object>();
        Napi::Array keys = o.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); i++) {
          std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
          Napi::Value v = o.Get(key);
          if (v.IsNumber() || v.IsBoolean()) {
            attrs.num[key] = v.ToNumber().DoubleValue();
          } else if (v.IsArray() || v.IsTypedArray()) {
            Napi::Object a = v.As<Napi::Object>();
            uint32_t n = a.Get("length").ToNumber().Uint32Value();
            std::vector<double>& out = attrs.list[key];
            for (uint32_t j = 0; j < n; j++) out.push_back(a.Get(j).ToNumber().DoubleValue());
          } else {
            throw Error("PG25_INVALID_ARGUMENT", "op " + name + ": attribute \"" + key + "\" must be a number or an array of numbers");
          }
        }
      }
      auto be = be_ptr();
      auto out = std::make_shared<Tensor>();
      return run_job(
          info.Env(),
          [be, name, inputs, attrs, out]() mutable {
            for (auto& t : inputs) attrs.inputs.push_back(t ? &*t : nullptr);
            *out = call_op(*be, name, attrs);
          },
          [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
    });
  }

  // deviceMemory(): { free, total } bytes of the engine's own device, or null where it uses host memory.
  Napi::Value DeviceMemory(const Napi::CallbackInfo& info) {
    size_t free = 0, total = 0;
    if (!be_ || !be_->device_memory(free, total)) return info.Env().Null();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("free", double(free));
    o.Set("total", double(total));
    return o;
  }

  Napi::Value BytesInUse(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), be_ ? double(be_->bytes_in_use()) : 0.0);
  }

  // peakBytes(reset?): the high-water mark of backend memory; `true` starts a new window.
  Napi::Value PeakBytes(const Napi::CallbackInfo& info) {
    if (!be_) return Napi::Number::New(info.Env(), 0.0);
    double peak = double(be_->peak_bytes());
    if (info.Length() > 0 && info[0].ToBoolean().Value()) be_->reset_peak();
    return Napi::Number::New(info.Env(), peak);
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
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

  std::shared_ptr<Backend> be_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Loaded>> components_;
};

// ---- free functions ---------------------------------------------------------------------------

Napi::Value InspectSafetensors(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsString()) throw Error("PG25_INVALID_ARGUMENT", "path must be a string");
    std::string path = info[0].As<Napi::String>().Utf8Value();
    auto out = std::make_shared<std::vector<TensorEntry>>();
    return run_job(
        info.Env(), [path, out] { *out = SafetensorsFile::open(path)->tensors(); },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Array a = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) {
            const TensorEntry& e = (*out)[i];
            Napi::Object o = Napi::Object::New(env);
            o.Set("name", e.name);
            o.Set("dtype", dtype_name(e.dtype));
            o.Set("shape", shape_to_js(env, e.shape));
            o.Set("begin", double(e.begin));
            o.Set("end", double(e.end));
            a.Set(uint32_t(i), o);
          }
          return a;
        });
  });
}

// Reads tensors as float32 in PyTorch layout: readTensors(files, [{name, shape, linear}]).
Napi::Value ReadTensors(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::vector<WeightFileSpec> files = files_from_js(info[0]);
    std::map<std::string, WeightAlias> aliases = aliases_from_js(info[2]);
    if (!info[1].IsArray()) throw Error("PG25_INVALID_ARGUMENT", "requests must be an array");
    std::vector<ParamSpec> req;
    Napi::Array a = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object o = a.Get(i).As<Napi::Object>();
      req.push_back({str_prop(o, "name"), shape_from_js(o.Get("shape"), "shape"), o.Get("linear").ToBoolean().Value()});
    }
    auto out = std::make_shared<std::vector<std::vector<float>>>();
    return run_job(
        info.Env(),
        [files, req, aliases, out] {
          WeightStore store(files, aliases);
          for (const auto& r : req) out->push_back(store.read(r.name, r.shape, r.linear));
        },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Array res = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) {
            Napi::Float32Array f = Napi::Float32Array::New(env, (*out)[i].size());
            std::memcpy(f.Data(), (*out)[i].data(), (*out)[i].size() * 4);
            res.Set(uint32_t(i), f);
          }
          return res;
        });
  });
}

// The tensors a component's graph asks for, from its config alone: no weights read or allocated.
Napi::Value ComponentManifest(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    ComponentSpec spec = spec_from_js(info[0]);
    Params p(nullptr, nullptr);
    build(spec, p);
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env, p.declared().size());
    for (size_t i = 0; i < p.declared().size(); i++) {
      const ParamSpec& s = p.declared()[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", s.name);
      o.Set("shape", shape_to_js(env, s.shape));
      o.Set("linear", s.linear);
      a.Set(uint32_t(i), o);
    }
    return a;
  });
}

Napi::Value TimestepEmbedding(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Float32Array t = info[0].As<Napi::Float32Array>();
    std::vector<float> ts(t.Data(), t.Data() + t.ElementLength());
    std::vector<float> e = timestep_embedding(ts, info[1].ToNumber().Int64Value(), info[2].ToBoolean(), info[3].ToNumber().DoubleValue());
    Napi::Float32Array out = Napi::Float32Array::New(info.Env(), e.size());
    std::memcpy(out.Data(), e.data(), e.size() * 4);
    return out;
  });
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", cpu::thread_count());
  o.Set("cudaCompiled", cuda::compiled());
#ifdef PG25_CUDA_EMULATION
  o.Set("cudaEmulated", true);
#else
  o.Set("cudaEmulated", false);
#endif
  o.Set("cuda", cuda::describe_availability());
  return o;
}

#ifdef PG25_CUDA_EMULATION
// What the CUDA emulation saw: misuse it caught, live device memory, queued work. `true` resets it.
Napi::Value EmulationReport(const Napi::CallbackInfo& info) {
  emu::Report r = emu::report(info.Length() > 0 && info[0].ToBoolean().Value());
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array misuse = Napi::Array::New(env, r.misuse.size());
  for (size_t i = 0; i < r.misuse.size(); i++) misuse.Set(uint32_t(i), r.misuse[i]);
  o.Set("misuse", misuse);
  o.Set("misuseCount", double(r.misuse_count));
  o.Set("liveAllocations", double(r.live_allocations));
  o.Set("liveBytes", double(r.live_bytes));
  o.Set("peakBytes", double(r.peak_bytes));
  o.Set("queued", double(r.queued));
  o.Set("launches", double(r.launches));
  o.Set("matmuls", double(r.matmuls));
  o.Set("poolTrims", double(r.pool_trims));
  o.Set("hostToDeviceBytes", double(r.host_to_device_bytes));
  o.Set("hostWaits", double(r.host_waits));
  o.Set("minMatmulAlignment", double(r.min_matmul_alignment));
  return o;
}
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Init(env));
  exports.Set("Tensor", TensorWrap::Init(env));
  exports.Set("CancelToken", CancelWrap::Init(env));
  exports.Set("inspectSafetensors", Napi::Function::New(env, InspectSafetensors));
  exports.Set("readTensors", Napi::Function::New(env, ReadTensors));
  exports.Set("componentManifest", Napi::Function::New(env, ComponentManifest));
  exports.Set("timestepEmbedding", Napi::Function::New(env, TimestepEmbedding));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo));
#ifdef PG25_CUDA_EMULATION
  exports.Set("emulationReport", Napi::Function::New(env, EmulationReport));
#endif
  return exports;
}

}  // namespace
}  // namespace pg25

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return pg25::Init(env, exports); }
NODE_API_MODULE(pg25, InitModule)
