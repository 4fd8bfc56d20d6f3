// The binding's shared pieces: errors as JS errors, AsyncWorker jobs, argument conversion, and the Tensor
// and CancelToken classes that JS holds. native/binding/engine.h defines
// the Engine class on them; native/addon.cc the module's free functions.
#pragma once
#include <napi.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "../backend/backend.h"
#include "../core/error.h"
#include "../io/weights.h"
#include "../models/cancel.h"
#include "../models/clip.h"
#include "../models/lora.h"
#include "../models/params.h"
#include "../models/registry.h"

namespace pg25::binding {

inline Napi::Error make_error(Napi::Env env, Code code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Value().Set("code", Napi::String::New(env, code_name(code)));
  return e;
}

// Runs fn, converting any C++ exception into a thrown JS error (failure_of: the one mapping, shared with jobs).
template <typename F>
auto guarded(Napi::Env env, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    Failure f = failure_of(std::current_exception());
    throw make_error(env, f.code, f.message);
  }
}

// Queues `work` on a libuv thread; `done` builds the JS result on the main thread. With `device`, the
// job completes only when that backend's queued device work has.
Napi::Promise run_job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                      std::shared_ptr<Backend> device = nullptr);

Shape shape_from_js(const Napi::Value& v, const char* what);
Napi::Array shape_to_js(Napi::Env env, const Shape& s);
std::string str_prop(const Napi::Object& o, const char* key);
std::vector<WeightFileSpec> files_from_js(const Napi::Value& v);
std::map<std::string, WeightAlias> aliases_from_js(const Napi::Value& v);
// [{ name, rank, up: Float32Array, down: Float32Array }] (sizes are checked against the weights later). The
// updates point into the arrays, which `keep` holds: release it on the main thread once the job is done.
using FloatArrayRefs = std::vector<Napi::Reference<Napi::Float32Array>>;
std::vector<LoraUpdate> lora_updates_from_js(const Napi::Value& v, FloatArrayRefs& keep);

ComponentSpec spec_from_js(const Napi::Value& v);

// ---- Engine and Tensor ------------------------------------------------------------------------

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
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value()))
      throw Error(Code::InvalidArgument, std::string(what) + " must be a Tensor");
    TensorWrap* w = Unwrap(v.As<Napi::Object>());
    if (!w->t_.defined()) throw Error(Code::Disposed, std::string(what) + " was disposed");
    if (w->be_.get() != owner)
      throw Error(Code::InvalidArgument,
                  std::string(what) + " belongs to another engine (" + w->be_->name() + "); copy it with toHost/fromHost");
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

// new CancelToken(): cancel() sets a flag that jobs given the token check between blocks, so an
// AbortSignal reaches native work already running (the job rejects with ABORT_ERR).
class CancelWrap : public Napi::ObjectWrap<CancelWrap> {
 public:
  static Napi::FunctionReference ctor;
  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(
        env, "CancelToken", {InstanceMethod<&CancelWrap::Cancel>("cancel"), InstanceAccessor<&CancelWrap::GetCancelled>("cancelled")});
    ctor = Napi::Persistent(f);
    return f;
  }
  // The flag of an optional token argument (null when absent); jobs hold it, so it outlives the JS object.
  static std::shared_ptr<CancelFlag> From(const Napi::Value& v) {
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) throw Error(Code::InvalidArgument, "cancel must be a CancelToken");
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

Napi::Function engine_class(Napi::Env env);

}  // namespace pg25::binding
