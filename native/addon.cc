// The N-API surface. JS holds Engine objects (a backend plus the model components loaded into it)
// and Tensor handles whose memory stays in the backend; heavy work runs in AsyncWorker jobs so the
// event loop keeps turning. Every native failure becomes a JS Error with a `code`; none escapes.
// The Engine lives in native/binding/engine.cc, the shared pieces in native/binding/binding.h; this
// file holds the module's free functions.
#include <napi.h>

#include <cstring>
#include <memory>

#include "binding/binding.h"
#include "cpu/gemm_kernels.h"
#include "cpu/isa.h"
#include "cpu/threadpool.h"
#include "cuda/cuda_runtime_info.h"
#ifdef PG25_WITH_CUDA
#include "cuda/library_info.h"
#endif
#ifdef PG25_CUDA_EMULATION
#include "cuda/emu/runtime.h"
#endif
#include "io/safetensors.h"

namespace pg25 {
namespace {

using namespace binding;

// ---- free functions ---------------------------------------------------------------------------

Napi::Value InspectSafetensors(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsString()) throw Error(Code::InvalidArgument, "path must be a string");
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
    if (!info[1].IsArray()) throw Error(Code::InvalidArgument, "requests must be an array");
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
          // Each array takes over its vector's memory (no second copy of a LoRA or a large tensor).
          Napi::Array res = Napi::Array::New(env, out->size());
          for (size_t i = 0; i < out->size(); i++) {
            auto* v = new std::vector<float>(std::move((*out)[i]));
            if (v->empty()) {
              delete v;
              res.Set(uint32_t(i), Napi::Float32Array::New(env, 0));
              continue;
            }
            auto release = [](Napi::Env, void*, std::vector<float>* owned) { delete owned; };
            Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, v->data(), v->size() * 4, release, v);
            res.Set(uint32_t(i), Napi::Float32Array::New(env, v->size(), buf, 0));
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

// The codes native errors carry (native/core/error.h's table), for the seam test against lib/errors.ts.
Napi::Value ErrorCodes(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env());
  uint32_t i = 0;
#define PG25_ADD_NAME(e, name) a.Set(i++, name);
  PG25_ERROR_CODES(PG25_ADD_NAME)
#undef PG25_ADD_NAME
  return a;
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", cpu::thread_count());
  o.Set("cpuKernel", cpu::micro_kernel().name);  // the GEMM kernel this CPU runs (PG25_CPU_ISA narrows it)
  o.Set("cpuIsa", cpu::cpu_isa_name());          // the level every CPU kernel table was chosen at (cpuid)
  o.Set("cudaCompiled", cuda::compiled());
  o.Set("cudaRuntime", cuda::runtime_version());
#ifdef PG25_CUDA_EMULATION
  o.Set("cudaEmulated", true);
#else
  o.Set("cudaEmulated", false);
#endif
  o.Set("cuda", cuda::describe_availability());
#ifdef PG25_WITH_CUDA
  // Versions, and the cuDNN plans built so far (gpu-check reports what they cost).
  cuda::LibraryReport lib = cuda::library_report();
  o.Set("cudaLibraries", lib.versions);
  o.Set("cudnnPlans", double(lib.cudnn_plans));
  o.Set("cudnnPlanMs", lib.cudnn_plan_ms);
  o.Set("gemmFallbacks", double(lib.gemm_fallbacks));
#endif
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
  o.Set("deviceToDeviceBytes", double(r.device_to_device_bytes));
  o.Set("hostWaits", double(r.host_waits));
  o.Set("minMatmulAlignment", double(r.min_matmul_alignment));
  return o;
}
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", engine_class(env));
  TensorWrap::Init(env);  // the class of the tensors engines return; JS never constructs one
  exports.Set("CancelToken", CancelWrap::Init(env));
  exports.Set("inspectSafetensors", Napi::Function::New(env, InspectSafetensors));
  exports.Set("readTensors", Napi::Function::New(env, ReadTensors));
  exports.Set("componentManifest", Napi::Function::New(env, ComponentManifest));
  exports.Set("runtimeInfo", Napi::Function::New(env, RuntimeInfo));
  exports.Set("errorCodes", Napi::Function::New(env, ErrorCodes));
#ifdef PG25_CUDA_EMULATION
  exports.Set("emulationReport", Napi::Function::New(env, EmulationReport));
#endif
  return exports;
}

}  // namespace
}  // namespace pg25

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return pg25::Init(env, exports); }
NODE_API_MODULE(pg25, InitModule)
