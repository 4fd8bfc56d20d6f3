// The Engine's tensor ops (engine.h): host transfers, image and preview conversion, the small ops
// the scheduler and pipeline use between model calls, and any backend op by name.
#include <cstring>
#include <optional>

#include "../backend/op_call.h"
#include "engine.h"

namespace pg25::binding {

Napi::Value EngineWrap::ToRGB8(const Napi::CallbackInfo& info) {
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

Napi::Value EngineWrap::LatentPreview(const Napi::CallbackInfo& info) {
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

Napi::Value EngineWrap::FromHost(const Napi::CallbackInfo& info) {
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
    if (start < 0 || count < 0 || start + count > a.dim(0)) throw Error("PG25_INVALID_ARGUMENT", "slice: range outside " + shape_str(a.shape));
    return TensorWrap::Wrap(info.Env(), be().slice0(a, start, count), be_ptr());
  });
}

// op(name, inputs, attributes): any backend op by name, its arguments checked (native/backend/op_call.cc).
// Tests run one op on two backends with it; a null input is an absent bias.
Napi::Value EngineWrap::Op(const Napi::CallbackInfo& info) {
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

}  // namespace pg25::binding
