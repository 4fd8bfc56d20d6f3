// The Engine's tensor ops (engine.h): host transfers, image and preview conversion, the small ops
// the scheduler and pipeline use between model calls, and any backend op by name.
#include <chrono>
#include <cstring>
#include <optional>

#include "../backend/op_call.h"
#include "engine.h"

namespace pg25::binding {

Napi::Value EngineWrap::ToRGB8(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Tensor x = arg(info[0], "image");
    if (x.rank() != 4 || x.dim(1) != 3) throw Error(Code::InvalidArgument, "image must be [B, 3, H, W]");
    auto be = be_ptr();
    auto out = std::make_shared<std::vector<uint8_t>>();
    return run_job(
        info.Env(), [x, be, out] { *out = be->to_rgb8(x); },
        [out](Napi::Env env) -> Napi::Value {
          Napi::Uint8Array a = Napi::Uint8Array::New(env, out->size());
          std::memcpy(a.Data(), out->data(), out->size());
          return a;
        },
        be);
  });
}

Napi::Value EngineWrap::LatentPreview(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& x = arg(info[0], "latents");
    auto floats = [](const Napi::Value& v, const char* what) {
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
        throw Error(Code::InvalidArgument, std::string(what) + " must be a Float32Array");
      Napi::Float32Array a = v.As<Napi::Float32Array>();
      return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
    };
    std::vector<float> m = floats(info[1], "matrix"), bias = floats(info[2], "bias");
    if (x.rank() != 4 || int64_t(m.size()) != 3 * x.dim(1) || bias.size() != 3)
      throw Error(Code::InvalidArgument, "preview: matrix must be 3 x channels");
    std::vector<uint8_t> out = be().latent_rgb(x, m, bias);
    Napi::Uint8Array a = Napi::Uint8Array::New(info.Env(), out.size());
    std::memcpy(a.Data(), out.data(), out.size());
    return a;
  });
}

Napi::Value EngineWrap::FromHost(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Error(Code::InvalidArgument, "data must be a Float32Array");
    Napi::Float32Array a = info[0].As<Napi::Float32Array>();
    Shape s = shape_from_js(info[1], "shape");
    Tensor t{nullptr, s};
    if (size_t(t.numel()) != a.ElementLength())
      throw Error(Code::InvalidArgument, "data holds " + std::to_string(a.ElementLength()) + " values; shape " + shape_str(s) + " needs " +
                                             std::to_string(t.numel()));
    // fromHost(data, shape, true): a weight, stored as the model's are (setWeightPrecision on the CPU, fp16 on a GPU).
    bool as_weight = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    Tensor made = as_weight ? be().weight("fromHost", a.Data(), s, Storage::Default) : be().from_host(a.Data(), s);
    return TensorWrap::Wrap(info.Env(), made, be_ptr());
  });
}

Napi::Value EngineWrap::ToHost(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& t = arg(info[0], "tensor");
    Napi::Float32Array a = Napi::Float32Array::New(info.Env(), size_t(t.numel()));
    be().to_host(t, a.Data());
    return a;
  });
}

Napi::Value EngineWrap::Lincomb(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw Error(Code::InvalidArgument, "lincomb takes [[coefficient, tensor], ...]");
    Napi::Array terms = info[0].As<Napi::Array>();
    std::vector<Tensor> keep;
    std::vector<std::pair<double, const Tensor*>> t;
    keep.reserve(terms.Length());
    for (uint32_t i = 0; i < terms.Length(); i++) {
      Napi::Value e = terms.Get(i);
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 2)
        throw Error(Code::InvalidArgument, "lincomb takes [[coefficient, tensor], ...]");
      Napi::Array pair = e.As<Napi::Array>();
      if (!pair.Get(0u).IsNumber()) throw Error(Code::InvalidArgument, "lincomb coefficients must be numbers");
      keep.push_back(arg(pair.Get(1u), "lincomb term"));
      t.emplace_back(pair.Get(0u).As<Napi::Number>().DoubleValue(), nullptr);
    }
    for (size_t i = 0; i < keep.size(); i++) t[i].second = &keep[i];
    if (t.empty()) throw Error(Code::InvalidArgument, "lincomb needs at least one term");
    for (auto& p : t)
      if (p.second->shape != t[0].second->shape) throw Error(Code::InvalidArgument, "lincomb terms must share one shape");
    return TensorWrap::Wrap(info.Env(), be().lincomb(t), be_ptr());
  });
}

Napi::Value EngineWrap::Concat(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = arg(info[0], "a");
    const Tensor& b = arg(info[1], "b");
    int axis = int(info[2].ToNumber().Int32Value());
    return TensorWrap::Wrap(info.Env(), be().concat(a, b, axis), be_ptr());
  });
}

Napi::Value EngineWrap::Slice0(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const Tensor& a = arg(info[0], "tensor");
    int64_t start = info[1].ToNumber().Int64Value(), count = info[2].ToNumber().Int64Value();
    if (start < 0 || count < 0 || start + count > a.dim(0))
      throw Error(Code::InvalidArgument, "slice: range outside " + shape_str(a.shape));
    return TensorWrap::Wrap(info.Env(), be().slice0(a, start, count), be_ptr());
  });
}

// op(name, inputs, attributes): any backend op by name, its arguments checked (native/backend/op_call.cc).
// Tests run one op on two backends with it; a null input is an absent bias.
// op(name, inputs, attributes) and timeOp's first three arguments: the inputs (null: an absent bias) and
// the numeric attributes.
EngineWrap::OpRequest EngineWrap::op_request(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Error(Code::InvalidArgument, "op: the name must be a string");
  if (!info[1].IsArray()) throw Error(Code::InvalidArgument, "op: inputs must be an array");
  OpRequest r;
  r.name = info[0].As<Napi::String>().Utf8Value();
  Napi::Array ins = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < ins.Length(); i++) {
    Napi::Value v = ins.Get(i);
    if (v.IsNull() || v.IsUndefined()) r.inputs.emplace_back();
    else r.inputs.emplace_back(arg(v, "op input"));
  }
  if (info.Length() > 2 && info[2].IsObject()) {
    Napi::Object o = info[2].As<Napi::Object>();
    Napi::Array keys = o.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value v = o.Get(key);
      if (v.IsNumber() || v.IsBoolean()) {
        r.attrs.num[key] = v.ToNumber().DoubleValue();
      } else if (v.IsArray() || v.IsTypedArray()) {
        Napi::Object a = v.As<Napi::Object>();
        uint32_t n = a.Get("length").ToNumber().Uint32Value();
        std::vector<double>& out = r.attrs.list[key];
        for (uint32_t j = 0; j < n; j++) out.push_back(a.Get(j).ToNumber().DoubleValue());
      } else {
        throw Error(Code::InvalidArgument, "op " + r.name + ": attribute \"" + key + "\" must be a number or an array of numbers");
      }
    }
  }
  return r;
}

Napi::Value EngineWrap::Op(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpRequest r = op_request(info);
    auto be = be_ptr();
    auto out = std::make_shared<Tensor>();
    return run_job(
        info.Env(),
        [be, r, out]() mutable {
          for (auto& t : r.inputs) r.attrs.inputs.push_back(t ? &*t : nullptr);
          *out = call_op(*be, r.name, r.attrs);
        },
        [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
  });
}

// timeOp(name, inputs, attributes, reps): the op run `reps` times in one job after two untimed runs, each
// timed on the device (marks on the engine's stream: CUDA events on a GPU, the same measure as
// torch.cuda.Event) and by the wall clock around its enqueue and completion.
Napi::Value EngineWrap::TimeOp(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    OpRequest r = op_request(info);
    int reps = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Int32Value() : 10;
    if (reps < 1 || reps > 10000) throw Error(Code::InvalidArgument, "timeOp: reps must be 1 to 10000");
    auto be = be_ptr();
    auto device_ms = std::make_shared<std::vector<double>>(), wall_ms = std::make_shared<std::vector<double>>();
    return run_job(
        info.Env(),
        [be, r, reps, device_ms, wall_ms]() mutable {
          for (auto& t : r.inputs) r.attrs.inputs.push_back(t ? &*t : nullptr);
          for (int i = 0; i < 2; i++) call_op(*be, r.name, r.attrs);
          be->synchronize();
          for (int i = 0; i < reps; i++) {
            auto t0 = std::chrono::steady_clock::now();
            std::unique_ptr<Mark> a = be->mark();
            Tensor y = call_op(*be, r.name, r.attrs);
            std::unique_ptr<Mark> b = be->mark();
            be->synchronize();
            wall_ms->push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            device_ms->push_back(be->elapsed_ms(*a, *b));
          }
        },
        [device_ms, wall_ms](Napi::Env env) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          auto array = [&](const std::vector<double>& v) {
            Napi::Array a = Napi::Array::New(env, v.size());
            for (size_t i = 0; i < v.size(); i++) a.Set(uint32_t(i), v[i]);
            return a;
          };
          o.Set("deviceMs", array(*device_ms));
          o.Set("wallMs", array(*wall_ms));
          return o;
        },
        be);
  });
}

// randomTensor(shape, seed, scale): uniform values in [-scale, scale) from a seeded counter hash, made in
// native code and copied to the device once (benchmark inputs: the values do not matter, their count does).
Napi::Value EngineWrap::RandomTensor(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Shape shape = shape_from_js(info[0], "shape");
    uint64_t seed = info.Length() > 1 && info[1].IsNumber() ? uint64_t(info[1].As<Napi::Number>().Int64Value()) : 0;
    float scale = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().FloatValue() : 1.f;
    int64_t n = 1;
    for (int64_t d : shape) {
      if (d <= 0 || n > (int64_t(1) << 34) / d)
        throw Error(Code::InvalidArgument, "randomTensor: shape " + shape_str(shape) + " is empty or too large");
      n *= d;
    }
    auto be = be_ptr();
    auto out = std::make_shared<Tensor>();
    return run_job(
        info.Env(),
        [be, shape, seed, scale, n, out] {
          std::vector<float> v(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; i++) {
            uint64_t z = (uint64_t(i) + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;  // splitmix64's finaliser
            z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
            z ^= z >> 29;
            v[size_t(i)] = scale * (float(z >> 40) * (2.f / 16777216.f) - 1.f);
          }
          *out = be->from_host(v.data(), shape);
        },
        [be, out](Napi::Env env) -> Napi::Value { return TensorWrap::Wrap(env, *out, be); }, be);
  });
}

}  // namespace pg25::binding
