// The emulated runtime's device memory: host memory (heap blocks, so AddressSanitizer sees every
// allocation) poisoned with NaN bytes when allocated; copies checked against their kind and against the
// allocations they touch; stream-ordered allocation and the default pool.
#include <cstdlib>
#include <cstring>

#include "../../platform/memory.h"
#include "cudart_state.h"

namespace pg25::emu {
namespace rt {
namespace {

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

cudaError_t allocate(void** out, size_t size, CUgraph_st* graph) {
  if (!out) return fail(cudaErrorInvalidValue, "allocation with a null result pointer");
  *out = nullptr;
  if (size == 0) return cudaSuccess;
  State& s = S();
  {
    std::lock_guard<std::mutex> g(s.mu);
    // Memory nodes reserve at capture and are backed at launch with PG25_EMU_GRAPH_MEMORY=launch.
    if (s.in_use + size > capacity() && !(graph && graph_memory_at_launch())) {
      tl_last = cudaErrorMemoryAllocation;
      return cudaErrorMemoryAllocation;
    }
    s.in_use += size;
  }
  void* p = platform::aligned_allocate(256, size);
  if (!p) {
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

cudaError_t check_copy(void* dst, size_t dst_extent, const void* src, size_t src_extent, cudaMemcpyKind kind, const char* what,
                       bool& src_host) {
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
  if (width > dpitch || width > spitch)
    return fail(cudaErrorInvalidPitchValue, std::string(what) + ": width " + std::to_string(width) + " exceeds a pitch");
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
  } else if (!src_host && is_device_range(dst, dext)) {
    std::lock_guard<std::mutex> g(S().rep_mu);
    S().rep.device_to_device_bytes += uint64_t(width) * height;
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

void release(void* p) {
  State& s = S();
  {
    std::lock_guard<std::mutex> g(s.mu);
    auto it = s.allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == s.allocs.end()) return;
    s.in_use -= it->second.size;
    s.allocs.erase(it);
  }
  platform::aligned_release(p);
}

}  // namespace rt

bool is_device_range(const void* p, size_t n) { return rt::find(p, n) != 0; }

}  // namespace pg25::emu

using namespace pg25::emu;
using namespace pg25::emu::rt;

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
  if (attr != cudaMemPoolAttrReleaseThreshold)
    return fail(cudaErrorNotSupported, "cudaMemPoolSetAttribute: attribute " + std::to_string(int(attr)) + " is not emulated");
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
  if (count && !is_device_range(p, count))
    return fail(cudaErrorInvalidValue, "cudaMemsetAsync: " + std::to_string(count) + " bytes at " + ptr(p) + " are not device memory");
  CUstream_st* st = stream_of(stream, "cudaMemsetAsync");
  if (!st) return cudaErrorInvalidResourceHandle;
  push(st, [p, value, count] {
    std::memset(p, value, count);
    return std::string();
  });
  return cudaSuccess;
}
