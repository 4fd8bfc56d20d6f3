// Streams and device memory of the CUDA backend, shared by its ops (cuda_backend.cc) and its graph
// recordings (graphs.cc).
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "../backend/memory_counter.h"
#include "../backend/tensor.h"

namespace pg25::cuda {

// Throws the Error for a failed CUDA call (PG25_OUT_OF_MEMORY for an allocation), naming `what`.
void check(cudaError_t e, const char* what);
#define LAUNCHED(what) ::pg25::cuda::check(cudaGetLastError(), what)

// Bytes held on GPU `device` (an engine reports its own GPU's).
MemoryCounter& device_bytes(int device);

// The stream an engine's work runs on. Every buffer holds it, so it outlives the last of them
// whatever order a job's captured references die in (an engine disposed during a job included).
struct Stream {
  explicit Stream(int dev);
  ~Stream();
  cudaStream_t s = nullptr;
  int device;
};

// While a thread records a graph for an engine, that engine's work from this thread (ops and the
// buffers they take) goes to the recording stream; other threads keep the engine's stream, uncaptured.
struct Recording {
  const Stream* engine = nullptr;
  cudaStream_t stream = nullptr;
  std::atomic<int64_t>* live = nullptr;  // buffers made while recording that still exist
};
Recording& recording();
// The stream this thread issues `owner`'s work to.
inline cudaStream_t stream_for(const Stream& owner) { return recording().engine == &owner ? recording().stream : owner.s; }

// Device memory from the stream-ordered pool: cheap to take and give back on every op. Taken while
// recording, it is the graph's memory, given back within the graph.
struct CudaBuffer : Buffer {
  CudaBuffer(size_t n, std::shared_ptr<Stream> st);
  // A view of `n` bytes at `offset` into `of` (a batch entry of a tensor): no memory of its own; `of`
  // lives as long as the view.
  CudaBuffer(std::shared_ptr<CudaBuffer> of, size_t offset, size_t n);
  ~CudaBuffer() override;
  size_t bytes() const override { return base ? 0 : bytes_; }  // a view holds none of its own
  void* ptr = nullptr;
  size_t bytes_;
  std::shared_ptr<Stream> owner;
  cudaStream_t stream;
  MemoryCounter* counter;
  std::atomic<int64_t>* recorded = nullptr;
  bool wide = false;                 // bf16 rather than fp16 (Storage::Wide)
  std::shared_ptr<CudaBuffer> base;  // what a view looks into
};

inline void* dev_ptr(const Tensor& t) { return static_cast<CudaBuffer*>(t.buf.get())->ptr; }
inline bool is_wide(const Tensor& t) { return static_cast<CudaBuffer*>(t.buf.get())->wide; }

}  // namespace pg25::cuda
