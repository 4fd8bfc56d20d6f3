// What the emulated CUDA runtime (cudart*.cc) offers the other emulated libraries and the tests:
// stream-ordered host work, device-range checks, and a report of every misuse it caught.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "include/cuda_runtime.h"

namespace pg25::emu {

// Records a programming error in our use of CUDA (a bad handle, a copy outside an allocation, an
// unaligned cuBLASLt operand, a failed kernel...). Tests require none.
void note_misuse(const std::string& what);

// Queues `op` on a stream, in order with kernels and copies (into the graph while capturing); the op
// returns a failure description or empty. False when the stream is not a live one.
bool enqueue(cudaStream_t stream, std::function<std::string()> op);

// Whether [p, p + n) lies inside one live device allocation.
bool is_device_range(const void* p, size_t n);

// What a library's call that a stream capture cannot take does (an allocation or a wait inside it):
// when the calling thread has a capture in progress, that capture is invalidated (its end fails) and
// true is returned, for the library to fail the call. Not our misuse: the library's.
bool refuse_during_capture();

struct Report {
  std::vector<std::string> misuse;  // the first 32
  uint64_t misuse_count = 0;
  uint64_t live_allocations = 0, live_bytes = 0, peak_bytes = 0;
  uint64_t queued = 0;  // ops waiting in any stream
  uint64_t launches = 0, matmuls = 0, pool_trims = 0;
  uint64_t host_to_device_bytes = 0, device_to_device_bytes = 0;  // copies queued (device: cudaMemcpy*, not kernels)
  uint64_t host_waits = 0;              // cudaStreamSynchronize, cudaEventSynchronize and cudaDeviceSynchronize calls
  uint32_t min_matmul_alignment = 256;  // the smallest operand alignment any matmul declared
};
// A snapshot; `reset` clears the misuse list and the counters (not the live allocations).
Report report(bool reset);
void note_matmul(uint32_t declared_alignment);

}  // namespace pg25::emu
