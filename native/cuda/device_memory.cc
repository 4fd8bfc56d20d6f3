#include "device_memory.h"

#include <algorithm>
#include <string>

#include "../core/error.h"

namespace pg25::cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky launch error so later runs are not poisoned by it
  if (e == cudaErrorMemoryAllocation) throw Error(Code::OutOfMemory, std::string("GPU out of memory in ") + what);
  throw Error(Code::Internal, std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

MemoryCounter& device_bytes(int device) {
  static MemoryCounter counters[64];
  if (device < 0 || device >= 64)
    throw Error(Code::NoDevice, "GPU index " + std::to_string(device) + " is beyond the 64 this build counts");
  return counters[device];
}

Stream::Stream(int dev) : device(dev) { check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream creation"); }
Stream::~Stream() {
  cudaStreamSynchronize(s);
  cudaStreamDestroy(s);
}

Recording& recording() {
  thread_local Recording r;
  return r;
}

CudaBuffer::CudaBuffer(size_t n, std::shared_ptr<Stream> st)
    : bytes_(std::max<size_t>(n, 16)), owner(std::move(st)), stream(stream_for(*owner)), counter(&device_bytes(owner->device)) {
  bool recording_now = recording().engine == owner.get();
  if (cudaMallocAsync(&ptr, bytes_, stream) != cudaSuccess) {
    cudaGetLastError();
    if (recording_now) check(cudaErrorMemoryAllocation, ("recording an allocation of " + std::to_string(bytes_ >> 20) + " MiB").c_str());
    // Blocks cached in the pool may be what is missing: give them back and try once more.
    cudaStreamSynchronize(stream);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, owner->device) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    check(cudaMallocAsync(&ptr, bytes_, stream), ("allocation of " + std::to_string(bytes_ >> 20) + " MiB").c_str());
  }
  counter->add(int64_t(bytes_));
  if (recording_now) {
    recorded = recording().live;
    ++*recorded;
  }
}

CudaBuffer::CudaBuffer(std::shared_ptr<CudaBuffer> of, size_t offset, size_t n)
    : ptr(static_cast<char*>(of->ptr) + offset), bytes_(n), owner(of->owner), stream(of->stream), counter(nullptr), wide(of->wide),
      base(std::move(of)) {}

CudaBuffer::~CudaBuffer() {
  if (base) return;
  cudaFreeAsync(ptr, stream);
  counter->sub(int64_t(bytes_));
  if (recorded) --*recorded;
}

}  // namespace pg25::cuda
