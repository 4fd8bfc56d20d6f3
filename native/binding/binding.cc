#include "binding.h"

#include <new>

namespace pg25::binding {

Napi::FunctionReference TensorWrap::ctor;
Napi::FunctionReference CancelWrap::ctor;

namespace {

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
      if (device_) device_->bind_thread();
      work_();
      // A job is done when its device work is: a GPU backend waits here, off the main thread, so that
      // later host reads (toHost, previews) never block the event loop behind queued kernels.
      if (device_) device_->synchronize();
    } catch (...) {
      Failure f = failure_of(std::current_exception());
      code_ = f.code;
      SetError(f.message);
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
  Code code_ = Code::Internal;
};

}  // namespace

Napi::Promise run_job(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> done,
                      std::shared_ptr<Backend> device) {
  auto* job = new Job(env, std::move(work), std::move(done), std::move(device));
  Napi::Promise p = job->promise();
  job->Queue();
  return p;
}

Shape shape_from_js(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Error(Code::InvalidArgument, std::string(what) + " must be an array of sizes");
  Napi::Array a = v.As<Napi::Array>();
  Shape s;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value d = a.Get(i);
    if (!d.IsNumber()) throw Error(Code::InvalidArgument, std::string(what) + " must hold numbers");
    double x = d.As<Napi::Number>().DoubleValue();
    if (!(x >= 0 && x <= double(1ll << 40)) || x != double(int64_t(x)))
      throw Error(Code::InvalidArgument, std::string(what) + " holds an invalid size");
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
  if (!v.IsString()) throw Error(Code::InvalidArgument, std::string("\"") + key + "\" must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<WeightFileSpec> files_from_js(const Napi::Value& v) {
  if (!v.IsArray()) throw Error(Code::InvalidArgument, "files must be an array");
  std::vector<WeightFileSpec> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error(Code::InvalidArgument, "files entries must be objects");
    Napi::Object o = e.As<Napi::Object>();
    out.push_back({str_prop(o, "path"), o.Get("paddle").ToBoolean().Value()});
  }
  return out;
}

std::map<std::string, WeightAlias> aliases_from_js(const Napi::Value& v) {
  std::map<std::string, WeightAlias> out;
  if (v.IsUndefined() || v.IsNull()) return out;
  if (!v.IsArray()) throw Error(Code::InvalidArgument, "aliases must be an array");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error(Code::InvalidArgument, "aliases entries must be objects");
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
      throw Error(Code::InvalidArgument, "alias op \"" + op + "\" is not rename, rows or transpose");
    }
    out[str_prop(o, "name")] = al;
  }
  return out;
}

std::vector<LoraUpdate> lora_updates_from_js(const Napi::Value& v, FloatArrayRefs& keep) {
  if (!v.IsArray()) throw Error(Code::InvalidArgument, "LoRA updates must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<LoraUpdate> out;
  auto floats = [&keep](const Napi::Object& o, const char* key) {
    Napi::Value f = o.Get(key);
    if (!f.IsTypedArray() || f.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Error(Code::InvalidArgument, std::string("LoRA update ") + key + " must be a Float32Array");
    Napi::Float32Array t = f.As<Napi::Float32Array>();
    keep.push_back(Napi::Persistent(t));
    return FloatView{t.Data(), t.ElementLength()};
  };
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw Error(Code::InvalidArgument, "LoRA updates must be objects");
    Napi::Object o = e.As<Napi::Object>();
    LoraUpdate u;
    u.name = str_prop(o, "name");
    double r = o.Get("rank").ToNumber().DoubleValue();
    if (!(r >= 0 && r <= double(1 << 20)) || r != double(int64_t(r)))
      throw Error(Code::InvalidArgument, "LoRA update of \"" + u.name + "\": rank must be a non-negative integer");
    u.rank = int64_t(r);
    if (u.rank > 0) {
      u.up = floats(o, "up");
      u.down = floats(o, "down");
    }
    out.push_back(std::move(u));
  }
  return out;
}

ComponentSpec spec_from_js(const Napi::Value& v) {
  if (!v.IsObject()) throw Error(Code::InvalidArgument, "component spec must be an object");
  Napi::Object o = v.As<Napi::Object>();
  return {str_prop(o, "kind"), str_prop(o, "className"), str_prop(o, "configPath"), str_prop(o, "configText")};
}

}  // namespace pg25::binding
