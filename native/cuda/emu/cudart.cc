// The emulated CUDA runtime: device memory is host memory (posix_memalign, so AddressSanitizer sees
// every allocation) poisoned with NaN bytes when allocated; streams are in-order queues that run only
// at synchronisation points, so a host read without a synchronise sees stale data; graphs record and
// replay. Every misuse is reported (runtime.h) and answered with the error code CUDA would give.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "runtime.h"

// The allocations a capture made (memory nodes), kept while the graph, an executable graph made from
// it, or a launch of one still queued holds them: as CUDA frees an in-flight executable graph only
// once it completes.
struct GraphMemory {
  std::vector<std::pair<void*, size_t>> owned;
  std::set<void*> freed;  // those the capture also freed (free nodes)
  ~GraphMemory();
};
struct CUgraph_st {
  std::vector<std::function<std::string()>> ops;
  std::shared_ptr<GraphMemory> mem = std::make_shared<GraphMemory>();
};
struct CUgraphExec_st {
  std::vector<std::function<std::string()>> ops;
  std::shared_ptr<GraphMemory> mem;
  uint64_t launches = 0;
};
struct CUstream_st {
  unsigned flags = 0;
  int device = 0;  // the device current when it was created: its kernels must launch there
  std::mutex mu;  // guards the queue, counters and capture
  std::deque<std::function<std::string()>> queue;
  uint64_t enqueued = 0, completed = 0;
  std::recursive_mutex run_mu;  // one runner at a time, so ops run once and in order
  CUgraph_st* capture = nullptr;
  bool capture_invalidated = false;
  std::string failure;  // the first op failure since the last synchronise
};
struct EventCell {
  bool done = false;
  double ms = 0;
};
struct CUevent_st {
  CUstream_st* stream = nullptr;
  uint64_t seq = 0;
  std::shared_ptr<EventCell> cell;
};
struct CUmemPoolHandle_st {
  uint64_t release_threshold = 0;
};

namespace pg25::emu {
namespace {

struct Alloc {
  size_t size;
  bool freeing;
};

struct State {
  std::mutex mu;
  std::set<CUstream_st*> streams;
  std::set<CUevent_st*> events;
  std::set<CUgraph_st*> graphs;
  std::set<CUgraphExec_st*> execs;
  std::map<uintptr_t, Alloc> allocs;
  uint64_t in_use = 0, peak = 0;
  CUstream_st legacy;
  CUmemPoolHandle_st pool;
  // The report has its own lock, taken last: misuse is noted from under any other lock.
  std::mutex rep_mu;
  Report rep;
};
// Never destroyed: buffers may be freed during static destruction at exit.
State& S() {
  static State* s = new State;
  return *s;
}

thread_local cudaError_t tl_last = cudaSuccess;

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

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return std::strtoull(v, nullptr, 10);
}
uint64_t capacity() { return env_u64("PG25_EMU_DEVICE_MEMORY", uint64_t(80) << 30); }
int driver_version() { return int(env_u64("PG25_EMU_DRIVER_VERSION", CUDART_VERSION)); }

// The device this host thread has made current (cudaSetDevice), as CUDA keeps it per thread.
thread_local int tl_device = 0;
int device_count() { return int(env_u64("PG25_EMU_DEVICES", 1)); }

// Work that runs on a stream's device (kernels, stream-ordered allocation) must be issued with that
// device current: CUDA refuses it otherwise, so a backend that forgot cudaSetDevice on this thread is
// reported here, not left to fail only on a multi-GPU machine.
bool on_stream_device(CUstream_st* st, const char* what) {
  if (!st || st == &S().legacy || st->device == tl_device) return true;  // each device has a legacy stream; one stands in for all
  note_misuse(std::string(what) + ": a stream of device " + std::to_string(st->device) + " used while device " + std::to_string(tl_device) + " is current on this thread");
  tl_last = cudaErrorInvalidResourceHandle;
  return false;
}

// The live stream for a handle (NULL is the legacy default stream), or null after reporting.
CUstream_st* stream_of(cudaStream_t s, const char* what) {
  if (!s) return &S().legacy;
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (S().streams.count(s)) return s;
  }
  note_misuse(std::string(what) + ": stream " + ptr(s) + " is not a live stream (destroyed, or never created)");
  tl_last = cudaErrorInvalidResourceHandle;
  return nullptr;
}

// The allocation holding [p, p + n): its base, or 0 (with `overrun` set when p is inside one that ends too soon).
uintptr_t find(const void* p, size_t n, bool* overrun = nullptr) {
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> g(S().mu);
  auto it = S().allocs.upper_bound(a);
  if (it == S().allocs.begin()) return 0;
  --it;
  if (a >= it->first + std::max<size_t>(it->second.size, 1)) return 0;
  if (a + n > it->first + it->second.size) {
    if (overrun) *overrun = true;
    return 0;
  }
  return it->first;
}

// Whether `h` is one of the live handles in `handles` (events, executable graphs).
template <class H>
bool live(const std::set<H>& handles, H h) {
  std::lock_guard<std::mutex> g(S().mu);
  return handles.count(h) != 0;
}

void push(CUstream_st* st, std::function<std::string()> op) {
  std::lock_guard<std::mutex> g(st->mu);
  if (st->capture) st->capture->ops.push_back(std::move(op));
  else {
    st->queue.push_back(std::move(op));
    st->enqueued++;
  }
}

// Runs a stream's queued ops until `upto` of them have ever completed.
void run(CUstream_st* st, uint64_t upto) {
  std::lock_guard<std::recursive_mutex> r(st->run_mu);
  for (;;) {
    std::function<std::string()> op;
    {
      std::lock_guard<std::mutex> g(st->mu);
      if (st->queue.empty() || st->completed >= upto) return;
      op = std::move(st->queue.front());
      st->queue.pop_front();
    }
    std::string e = op();
    {
      std::lock_guard<std::mutex> g(st->mu);
      st->completed++;
      if (!e.empty() && st->failure.empty()) st->failure = e;
    }
    if (!e.empty()) {
      note_misuse(e);
      std::fprintf(stderr, "pg25 CUDA emulation: %s\n", e.c_str());
    }
  }
}

// The failure of an op since the last synchronisation, reported once (as a GPU reports a fault).
cudaError_t take_failure(CUstream_st* st) {
  std::lock_guard<std::mutex> g(st->mu);
  if (st->failure.empty()) return cudaSuccess;
  st->failure.clear();
  tl_last = cudaErrorLaunchFailure;
  return cudaErrorLaunchFailure;
}

void count_wait() {
  std::lock_guard<std::mutex> g(S().rep_mu);
  S().rep.host_waits++;
}

cudaError_t finish(CUstream_st* st) {
  run(st, UINT64_MAX);
  return take_failure(st);
}

bool capturing(CUstream_st* st, const char* what) {
  std::lock_guard<std::mutex> g(st->mu);
  if (!st->capture) return false;
  st->capture_invalidated = true;
  note_misuse(std::string(what) + " during stream capture (the capture is invalidated)");
  tl_last = cudaErrorStreamCaptureUnsupported;
  return true;
}

cudaError_t allocate(void** out, size_t size, CUgraph_st* graph) {
  if (!out) return fail(cudaErrorInvalidValue, "allocation with a null result pointer");
  *out = nullptr;
  if (size == 0) return cudaSuccess;
  State& s = S();
  {
    std::lock_guard<std::mutex> g(s.mu);
    if (s.in_use + size > capacity()) {
      tl_last = cudaErrorMemoryAllocation;
      return cudaErrorMemoryAllocation;
    }
    s.in_use += size;
  }
  void* p = nullptr;
  if (posix_memalign(&p, 256, size) != 0) {
    std::lock_guard<std::mutex> g(s.mu);
    s.in_use -= size;
    tl_last = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  std::memset(p, 0xff, size);  // NaN in fp16, bf16 and fp32: unwritten outputs cannot pass a test
  std::lock_guard<std::mutex> g(s.mu);
  s.allocs[reinterpret_cast<uintptr_t>(p)] = {size, false};
  s.peak = std::max(s.peak, s.in_use);
  if (graph) graph->mem->owned.emplace_back(p, size);
  *out = p;
  return cudaSuccess;
}

void release(void* p) {
  State& s = S();
  {
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == s.allocs.end()) return;
    s.in_use -= it->second.size;
    s.allocs.erase(it);
  }
  std::free(p);
}

// Marks `p` as being freed; false (after reporting) unless it is the start of a live allocation.
bool claim_free(void* p, const char* what) {
  const char* why = nullptr;
  {
    std::lock_guard<std::mutex> g(S().mu);
    auto it = S().allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == S().allocs.end()) why = " is not the start of a device allocation";
    else if (it->second.freeing) why = " is already being freed";
    else it->second.freeing = true;
  }
  if (why) note_misuse(std::string(what) + ": " + ptr(p) + why);
  return !why;
}

// Checks one side of a copy against its kind: device memory must lie inside one allocation, host
// memory must not be device memory.
bool side_ok(const void* p, size_t extent, bool device, const char* side, const char* what) {
  bool overrun = false;
  bool in = find(p, extent, &overrun) != 0;
  if (device && !in) {
    note_misuse(std::string(what) + ": the " + side + " range of " + std::to_string(extent) + " bytes at " + ptr(p) +
                (overrun ? " runs past the end of its device allocation" : " is not device memory"));
    return false;
  }
  if (!device && (in || overrun)) {
    note_misuse(std::string(what) + ": the " + side + " at " + ptr(p) + " is device memory, but the copy kind says host");
    return false;
  }
  return true;
}

cudaError_t check_copy(void* dst, size_t dst_extent, const void* src, size_t src_extent, cudaMemcpyKind kind, const char* what, bool& src_host) {
  bool dst_dev, src_dev;
  switch (kind) {
    case cudaMemcpyHostToHost: dst_dev = false, src_dev = false; break;
    case cudaMemcpyHostToDevice: dst_dev = true, src_dev = false; break;
    case cudaMemcpyDeviceToHost: dst_dev = false, src_dev = true; break;
    case cudaMemcpyDeviceToDevice: dst_dev = true, src_dev = true; break;
    case cudaMemcpyDefault:
      dst_dev = find(dst, 1) != 0;
      src_dev = find(src, 1) != 0;
      break;
    default: return fail(cudaErrorInvalidValue, std::string(what) + ": unknown copy kind " + std::to_string(int(kind)));
  }
  if (dst_extent == 0) return cudaSuccess;
  if (!side_ok(dst, dst_extent, dst_dev, "destination", what) || !side_ok(src, src_extent, src_dev, "source", what)) {
    tl_last = cudaErrorInvalidValue;
    return cudaErrorInvalidValue;
  }
  src_host = !src_dev;
  return cudaSuccess;
}

// A 2-D copy as an op. Host sources are read when queued (as CUDA stages pageable memory), except
// while capturing, where a graph reads them at each replay.
cudaError_t copy2d(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
                   cudaStream_t stream, const char* what) {
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidPitchValue, std::string(what) + ": width " + std::to_string(width) + " exceeds a pitch");
  size_t dext = height ? dpitch * (height - 1) + width : 0, sext = height ? spitch * (height - 1) + width : 0;
  bool src_host = false;
  if (cudaError_t e = check_copy(dst, dext, src, sext, kind, what, src_host)) return e;
  CUstream_st* st = stream_of(stream, what);
  if (!st) return cudaErrorInvalidResourceHandle;
  if (dext == 0) return cudaSuccess;
  bool captured;
  {
    std::lock_guard<std::mutex> g(st->mu);
    captured = st->capture != nullptr;
  }
  auto rows = [=](const char* from) {
    for (size_t r = 0; r < height; r++) std::memcpy(static_cast<char*>(dst) + r * dpitch, from + r * spitch, width);
    return std::string();
  };
  if (src_host && is_device_range(dst, dext)) {
    std::lock_guard<std::mutex> g(S().rep_mu);
    S().rep.host_to_device_bytes += uint64_t(width) * height;
  }
  if (src_host && !captured) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + sext);
    push(st, [rows, staged] { return rows(staged->data()); });
  } else {
    push(st, [rows, src] { return rows(static_cast<const char*>(src)); });
  }
  return cudaSuccess;
}

}  // namespace

void note_misuse(const std::string& what) {
  State& s = S();
  std::lock_guard<std::mutex> g(s.rep_mu);
  s.rep.misuse_count++;
  if (s.rep.misuse.size() < 32) s.rep.misuse.push_back(what);
  if (std::getenv("PG25_EMU_VERBOSE")) std::fprintf(stderr, "pg25 CUDA emulation: %s\n", what.c_str());
}

bool enqueue(cudaStream_t stream, std::function<std::string()> op) {
  CUstream_st* st = stream_of(stream, "enqueue");
  if (!st || !on_stream_device(st, "a library call")) return false;
  push(st, std::move(op));
  return true;
}

bool is_device_range(const void* p, size_t n) { return find(p, n) != 0; }

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

void enqueue_launch(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, std::function<void()> body) {
  std::string bad = check_launch(grid, block, shared_bytes);
  if (!bad.empty()) {
    fail(cudaErrorInvalidConfiguration, std::string("launch of ") + kernel + ": " + bad);
    return;
  }
  CUstream_st* st = stream_of(stream, kernel);
  if (!st || !on_stream_device(st, kernel)) return;
  {
    std::lock_guard<std::mutex> g(S().rep_mu);
    S().rep.launches++;
  }
  push(st, [kernel, grid, block, shared_bytes, body = std::move(body)] { return run_grid(kernel, grid, block, shared_bytes, body); });
}

}  // namespace pg25::emu

using namespace pg25::emu;

GraphMemory::~GraphMemory() {
  for (auto& a : owned) release(a.first);
}

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
cudaError_t cudaDeviceSynchronize() {
  count_wait();
  std::vector<CUstream_st*> all;
  {
    std::lock_guard<std::mutex> g(S().mu);
    all.assign(S().streams.begin(), S().streams.end());
  }
  all.push_back(&S().legacy);
  cudaError_t result = cudaSuccess;
  for (CUstream_st* st : all)
    if (cudaError_t e = finish(st)) result = e;
  return result;
}
cudaError_t cudaGetLastError() {
  cudaError_t e = tl_last;
  tl_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return tl_last; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define NAME(x) \
  case x: return #x;
    NAME(cudaSuccess) NAME(cudaErrorInvalidValue) NAME(cudaErrorMemoryAllocation) NAME(cudaErrorInitializationError)
    NAME(cudaErrorInvalidConfiguration) NAME(cudaErrorInvalidPitchValue) NAME(cudaErrorInsufficientDriver) NAME(cudaErrorNoDevice)
    NAME(cudaErrorInvalidDevice) NAME(cudaErrorInvalidResourceHandle) NAME(cudaErrorIllegalState) NAME(cudaErrorNotReady)
    NAME(cudaErrorIllegalAddress) NAME(cudaErrorLaunchOutOfResources) NAME(cudaErrorLaunchFailure) NAME(cudaErrorNotSupported)
    NAME(cudaErrorStreamCaptureUnsupported) NAME(cudaErrorStreamCaptureInvalidated) NAME(cudaErrorStreamCaptureUnmatched)
    NAME(cudaErrorStreamCaptureWrongThread) NAME(cudaErrorUnknown)
#undef NAME
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

cudaError_t cudaMalloc(void** p, size_t size) {
  cudaError_t e = allocate(p, size, nullptr);
  return e;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  cudaDeviceSynchronize();  // cudaFree synchronises the device
  if (!claim_free(p, "cudaFree")) return tl_last = cudaErrorInvalidValue;
  release(p);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t stream) {
  CUstream_st* st = stream_of(stream, "cudaMallocAsync");
  if (!st || !on_stream_device(st, "cudaMallocAsync")) return cudaErrorInvalidResourceHandle;
  CUgraph_st* graph;
  {
    std::lock_guard<std::mutex> g(st->mu);
    graph = st->capture;
  }
  return allocate(p, size, graph);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t stream) {
  if (!p) return cudaSuccess;
  CUstream_st* st = stream_of(stream, "cudaFreeAsync");
  if (!st) return cudaErrorInvalidResourceHandle;
  size_t n = 0;
  {
    std::lock_guard<std::mutex> g(S().mu);
    auto it = S().allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it != S().allocs.end()) n = it->second.size;
  }
  {
    std::lock_guard<std::mutex> g(st->mu);
    if (st->capture) {
      // A free node: the graph keeps the memory until it is destroyed, but its contents are gone
      // from this point of each replay (poisoned, so a later read in the graph cannot pass a test).
      for (auto& o : st->capture->mem->owned)
        if (o.first == p) {
          st->capture->mem->freed.insert(p);
          st->capture->ops.push_back([p, n] {
            std::memset(p, 0xff, n);
            return std::string();
          });
          return cudaSuccess;
        }
      return fail(cudaErrorNotSupported, "cudaFreeAsync during capture of memory the graph did not allocate (not emulated)");
    }
  }
  if (!claim_free(p, "cudaFreeAsync")) return tl_last = cudaErrorInvalidValue;
  push(st, [p] {
    release(p);
    return std::string();
  });
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (!free || !total) return fail(cudaErrorInvalidValue, "cudaMemGetInfo(nullptr)");
  std::lock_guard<std::mutex> g(S().mu);
  *total = capacity();
  *free = *total > S().in_use ? *total - S().in_use : 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device) {
  // Emulated devices share one memory (and so one pool and one cudaMemGetInfo).
  if (!pool || device < 0 || device >= device_count()) return fail(cudaErrorInvalidValue, "cudaDeviceGetDefaultMemPool");
  *pool = &S().pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void* value) {
  if (pool != &S().pool || !value) return fail(cudaErrorInvalidValue, "cudaMemPoolSetAttribute: not the default pool, or no value");
  if (attr != cudaMemPoolAttrReleaseThreshold) return fail(cudaErrorNotSupported, "cudaMemPoolSetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
  std::memcpy(&pool->release_threshold, value, sizeof(uint64_t));
  return cudaSuccess;
}
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t) {
  if (pool != &S().pool) return fail(cudaErrorInvalidValue, "cudaMemPoolTrimTo: not the default pool");
  std::lock_guard<std::mutex> g(S().rep_mu);
  S().rep.pool_trims++;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  bool src_host = false;
  if (cudaError_t e = check_copy(dst, count, src, count, kind, "cudaMemcpy", src_host)) return e;
  // The legacy stream waits for blocking streams (ours are non-blocking).
  finish(&S().legacy);
  if (count) std::memcpy(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  return copy2d(dst, count, src, count, count, count ? 1 : 0, kind, stream, "cudaMemcpyAsync");
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  return copy2d(dst, dpitch, src, spitch, width, height, kind, stream, "cudaMemcpy2DAsync");
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  if (count && !is_device_range(p, count)) return fail(cudaErrorInvalidValue, "cudaMemsetAsync: " + std::to_string(count) + " bytes at " + ptr(p) + " are not device memory");
  CUstream_st* st = stream_of(stream, "cudaMemsetAsync");
  if (!st) return cudaErrorInvalidResourceHandle;
  push(st, [p, value, count] {
    std::memset(p, value, count);
    return std::string();
  });
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags(nullptr)");
  auto* st = new CUstream_st();
  st->flags = flags;
  st->device = tl_device;
  std::lock_guard<std::mutex> g(S().mu);
  S().streams.insert(st);
  *stream = st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(NULL)");
  CUstream_st* st = stream_of(stream, "cudaStreamDestroy");
  if (!st) return cudaErrorInvalidResourceHandle;
  run(st, UINT64_MAX);  // CUDA lets queued work finish, then releases the stream
  {
    std::lock_guard<std::mutex> g(S().mu);
    S().streams.erase(st);
  }
  delete st;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  count_wait();
  CUstream_st* st = stream_of(stream, "cudaStreamSynchronize");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (capturing(st, "cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return finish(st);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  CUstream_st* st = stream_of(stream, "cudaStreamQuery");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (capturing(st, "cudaStreamQuery")) return cudaErrorStreamCaptureUnsupported;
  return finish(st);  // a query is a point where queued work makes progress, so polling never spins forever
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  CUstream_st* st = stream_of(stream, "cudaStreamWaitEvent");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: not a live event");
  if (!event->cell || !event->stream) return cudaSuccess;
  push(st, [cell = event->cell, other = event->stream, seq = event->seq] {
    if (!cell->done) run(other, seq);
    return std::string();
  });
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreate(nullptr)");
  auto* e = new CUevent_st();
  std::lock_guard<std::mutex> g(S().mu);
  S().events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (!S().events.erase(event)) event = nullptr;
  }
  if (!event) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not a live event");
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: not a live event");
  CUstream_st* st = stream_of(stream, "cudaEventRecord");
  if (!st) return cudaErrorInvalidResourceHandle;
  auto cell = std::make_shared<EventCell>();
  std::lock_guard<std::mutex> g(st->mu);
  auto op = [cell] {
    cell->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    cell->done = true;
    return std::string();
  };
  if (st->capture) {
    st->capture->ops.push_back(op);
    return cudaSuccess;
  }
  st->queue.push_back(op);
  st->enqueued++;
  event->stream = st;
  event->seq = st->enqueued;
  event->cell = cell;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  count_wait();
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not a live event");
  if (!event->cell || event->cell->done) return cudaSuccess;
  run(event->stream, event->seq);
  return take_failure(event->stream);
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end || !start->cell || !end->cell) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: events not recorded");
  if (!start->cell->done || !end->cell->done) return tl_last = cudaErrorNotReady;
  *ms = float(end->cell->ms - start->cell->ms);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  CUstream_st* st = stream_of(stream, "cudaStreamBeginCapture");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (st == &S().legacy) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy NULL stream");
  std::lock_guard<std::mutex> g(st->mu);
  if (st->capture) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is already capturing");
  st->capture = new CUgraph_st();
  st->capture_invalidated = false;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  CUstream_st* st = stream_of(stream, "cudaStreamEndCapture");
  if (!st || !graph) return cudaErrorInvalidValue;
  std::unique_lock<std::mutex> g(st->mu);
  if (!st->capture) {
    g.unlock();
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
  }
  CUgraph_st* gr = st->capture;
  st->capture = nullptr;
  bool invalid = st->capture_invalidated;
  g.unlock();
  if (invalid) {
    delete gr;
    *graph = nullptr;
    tl_last = cudaErrorStreamCaptureInvalidated;
    return cudaErrorStreamCaptureInvalidated;
  }
  std::lock_guard<std::mutex> sg(S().mu);
  S().graphs.insert(gr);
  *graph = gr;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  CUstream_st* st = stream_of(stream, "cudaStreamIsCapturing");
  if (!st || !status) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> g(st->mu);
  *status = !st->capture ? cudaStreamCaptureStatusNone : st->capture_invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  std::lock_guard<std::mutex> g(S().mu);
  if (!exec || !S().graphs.count(graph)) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: not a live graph");
  auto* x = new CUgraphExec_st{graph->ops, graph->mem};
  S().execs.insert(x);
  *exec = x;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!live(S().execs, exec)) return fail(cudaErrorInvalidValue, "cudaGraphLaunch: not a live executable graph");
  CUstream_st* st = stream_of(stream, "cudaGraphLaunch");
  if (!st || !on_stream_device(st, "cudaGraphLaunch")) return cudaErrorInvalidResourceHandle;
  std::shared_ptr<GraphMemory> mem = exec->mem;
  size_t held = 0;
  for (auto& a : mem->owned)
    if (!mem->freed.count(a.first)) held++;
  // CUDA refuses to relaunch a graph whose allocations a previous launch still holds (unless it was
  // instantiated to free them on launch, which we never ask for).
  if (held && exec->launches > 0)
    return fail(cudaErrorInvalidValue, "cudaGraphLaunch: " + std::to_string(held) + " allocation(s) of the previous launch are not freed within the graph");
  exec->launches++;
  push(st, [mem] {
    for (auto& a : mem->owned) std::memset(a.first, 0xff, a.second);  // a memory node's contents start undefined
    return std::string();
  });
  for (const auto& op : exec->ops) push(st, op);
  push(st, [mem] { return std::string(); });  // holds the memory until this launch has run
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  std::lock_guard<std::mutex> g(S().mu);
  if (!S().execs.erase(exec)) return tl_last = cudaErrorInvalidValue;
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaDeviceGraphMemTrim(int device) {
  if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice, "cudaDeviceGraphMemTrim(" + std::to_string(device) + ")");
  return cudaSuccess;  // graph memory goes back when its graph is destroyed here
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (!S().graphs.erase(graph)) return tl_last = cudaErrorInvalidValue;
  }
  delete graph;  // its memory goes with the last executable graph or queued launch that holds it
  return cudaSuccess;
}
