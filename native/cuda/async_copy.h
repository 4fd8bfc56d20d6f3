// cp.async (sm_80 on): 16-byte copies from global to shared memory that complete in the background, so
// a kernel loads its next tile while it computes on this one, without staging it in registers. A
// thread's copies form groups (commit); wait<N> returns once at most N of its groups are in flight,
// and a __syncthreads after it makes every thread's landed copies visible to the block. The CPU
// emulation (native/cuda/emu) writes each copy's bytes only at the wait that completes its group, so
// a kernel that reads a tile before waiting for it fails its tests there.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#ifdef PG25_CUDA_EMULATION
namespace pg25::emu {
void cp_async16(void* smem, const void* gmem, bool valid);
void cp_async_commit();
void cp_async_wait(int pending);
}  // namespace pg25::emu
#endif

namespace pg25::cuda {

// Copies 16 bytes (both addresses 16-byte aligned); with `valid` false writes 16 zero bytes and reads
// nothing (gmem must still be a mapped address).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
#ifdef PG25_CUDA_EMULATION
  pg25::emu::cp_async16(smem, gmem, valid);
#else
  unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef PG25_CUDA_EMULATION
  pg25::emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef PG25_CUDA_EMULATION
  pg25::emu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace pg25::cuda
