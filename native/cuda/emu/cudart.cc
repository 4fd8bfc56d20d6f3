// The emulated CUDA runtime: its state, the devices it offers, errors, and the report of every misuse
// it caught (runtime.h); each misuse is answered with the error code CUDA would give. Memory, streams
// and graphs are in cudart_memory.cc, cudart_streams.cc and cudart_graphs.cc.
#include <cstdio>
#include <cstdlib>

#include "cudart_state.h"
#include "../../platform/env.h"

namespace pg25::emu {
namespace rt {

// Never destroyed: buffers may be freed during static destruction at exit.
State& S() {
  static State* s = new State;
  return *s;
}

thread_local cudaError_t tl_last = cudaSuccess;
thread_local int tl_device = 0;

cudaError_t fail(cudaError_t e, const std::string& why) {
  note_misuse(why);
  tl_last = e;
  return e;
}

std::string ptr(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

namespace {
uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = platform::env(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}
}  // namespace

uint64_t capacity() { return env_u64("PG25_EMU_DEVICE_MEMORY", uint64_t(80) << 30); }
bool graph_memory_at_launch() {
  const char* v = platform::env("PG25_EMU_GRAPH_MEMORY");
  return v && std::string(v) == "launch";
}
int driver_version() { return int(env_u64("PG25_EMU_DRIVER_VERSION", CUDART_VERSION)); }
int device_count() { return int(env_u64("PG25_EMU_DEVICES", 1)); }

}  // namespace rt

using namespace rt;

void note_misuse(const std::string& what) {
  State& s = S();
  std::lock_guard<std::mutex> g(s.rep_mu);
  s.rep.misuse_count++;
  if (s.rep.misuse.size() < 32) s.rep.misuse.push_back(what);
  if (platform::env("PG25_EMU_VERBOSE")) std::fprintf(stderr, "pg25 CUDA emulation: %s\n", what.c_str());
}

void note_matmul(uint32_t align) {
  std::lock_guard<std::mutex> g(S().rep_mu);
  S().rep.matmuls++;
  S().rep.min_matmul_alignment = std::min(S().rep.min_matmul_alignment, align);
}

Report report(bool reset) {
  State& s = S();
  std::lock_guard<std::mutex> g(s.mu);
  // The streams' locks before the report's: misuse is noted with a stream's lock held (capturing()).
  uint64_t queued = 0;
  std::vector<CUstream_st*> all(s.streams.begin(), s.streams.end());
  all.push_back(&s.legacy);
  for (CUstream_st* st : all) {
    std::lock_guard<std::mutex> q(st->mu);
    queued += st->queue.size();
  }
  std::lock_guard<std::mutex> rg(s.rep_mu);
  Report r = s.rep;
  r.live_allocations = s.allocs.size();
  r.live_bytes = s.in_use;
  r.peak_bytes = s.peak;
  r.queued = queued;
  if (reset) {
    s.rep = Report();
    s.peak = s.in_use;
  }
  return r;
}

}  // namespace pg25::emu

using namespace pg25::emu;
using namespace pg25::emu::rt;

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount(nullptr)");
  *count = 0;
  if (driver_version() < CUDART_VERSION) return tl_last = cudaErrorInsufficientDriver;
  *count = device_count();
  if (*count == 0) return tl_last = cudaErrorNoDevice;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue, "cudaGetDevice(nullptr)");
  *device = tl_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + ")");
  tl_device = device;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value || device < 0 || device >= device_count()) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute");
  switch (attr) {  // an H100 SXM
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
}
cudaError_t cudaDriverGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue, "cudaDriverGetVersion(nullptr)");
  *version = driver_version();
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return fail(cudaErrorInvalidValue, "cudaRuntimeGetVersion(nullptr)");
  *version = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = tl_last;
  tl_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return tl_last; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    // A table of macro calls: clang-format would re-wrap it differently on each pass.
    // clang-format off
#define NAME(x) \
  case x: return #x;
    NAME(cudaSuccess) NAME(cudaErrorInvalidValue) NAME(cudaErrorMemoryAllocation) NAME(cudaErrorInitializationError)
    NAME(cudaErrorInvalidConfiguration) NAME(cudaErrorInvalidPitchValue) NAME(cudaErrorInsufficientDriver) NAME(cudaErrorNoDevice)
    NAME(cudaErrorInvalidDevice) NAME(cudaErrorInvalidResourceHandle) NAME(cudaErrorIllegalState) NAME(cudaErrorNotReady)
    NAME(cudaErrorIllegalAddress) NAME(cudaErrorLaunchOutOfResources) NAME(cudaErrorLaunchFailure) NAME(cudaErrorNotSupported)
    NAME(cudaErrorStreamCaptureUnsupported) NAME(cudaErrorStreamCaptureInvalidated) NAME(cudaErrorStreamCaptureUnmatched)
    NAME(cudaErrorStreamCaptureWrongThread) NAME(cudaErrorUnknown)
#undef NAME
    // clang-format on
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return cudaGetErrorName(e);
  }
}
