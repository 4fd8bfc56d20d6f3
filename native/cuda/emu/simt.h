// The SIMT layer of the CUDA emulation: what kernel code sees in place of the hardware. The threads of
// a block run as fibers on one CPU thread (blocks run in parallel on the CPU pool); __syncthreads,
// warp shuffles, votes and __syncwarp suspend a fiber until every thread they involve has arrived. A
// barrier or warp collective that some live thread can never reach is reported as a kernel failure
// (naming the kernel, block and threads), never a hang.
#pragma once
#include <math.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
// One copy per CPU thread: all threads of a block run on one CPU thread, so they share it, as a
// block shares shared memory; blocks running at once on other CPU threads get their own.
#define __shared__ static thread_local

constexpr int warpSize = 32;

// Thread-locals of a dlopen()ed module: kept out of the static TLS model, which would have to hold every
// kernel's shared memory too (the build uses TLS descriptors, which make these reads cheap).
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;

namespace pg25::emu {

// Mma is mma.sync.m16n8k16 and Ldmatrix ldmatrix.sync.m8n8.x4 (native/cuda/mma.h): their values point
// at the lane's operands.
enum class WarpOp : uint8_t { ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, All, Any, Sync, Mma, Ldmatrix };

// Blocks the calling emulated thread until the warp lanes in `mask` have all arrived at the same
// collective; returns this lane's result (the value read, or the vote).
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width);
void syncthreads();
unsigned active_mask();
void* dynamic_shared();

// Why a launch configuration is invalid, or empty.
std::string check_launch(dim3 grid, dim3 block, size_t shared_bytes);
// Runs body() as every thread of every block of the grid; returns a failure description or empty.
std::string run_grid(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body);
// Queues a launch on a stream (cudart_streams.cc): a bad configuration or stream is a launch error, as on a GPU.
void enqueue_launch(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, std::function<void()> body);

template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "warp collectives move values of up to 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// kernel<<<grid, block, shared, stream>>>(args...): the arguments are converted to the kernel's
// parameter types and copied at the launch, as the hardware does.
template <class... P>
struct Launch {
  void (*kernel)(P...);
  const char* name;
  dim3 grid, block;
  size_t shared;
  cudaStream_t stream;
  template <class... A>
  void operator()(A&&... args) const {
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    auto k = kernel;
    enqueue_launch(name, grid, block, shared, stream, [k, params] { std::apply(k, *params); });
  }
};
template <class... P>
Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t shared, cudaStream_t stream) {
  return {kernel, name, grid, block, shared, stream};
}

template <class T, class F>
T atomic_update(T* p, F f) {
  T old = *p, next;
  do next = f(old);
  while (!__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return old;
}

}  // namespace pg25::emu

template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  return pg25::emu::from_bits<T>(pg25::emu::warp_collective(pg25::emu::WarpOp::ShflIdx, mask, pg25::emu::to_bits(v), src, width));
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return pg25::emu::from_bits<T>(pg25::emu::warp_collective(pg25::emu::WarpOp::ShflUp, mask, pg25::emu::to_bits(v), int(delta), width));
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return pg25::emu::from_bits<T>(pg25::emu::warp_collective(pg25::emu::WarpOp::ShflDown, mask, pg25::emu::to_bits(v), int(delta), width));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  return pg25::emu::from_bits<T>(pg25::emu::warp_collective(pg25::emu::WarpOp::ShflXor, mask, pg25::emu::to_bits(v), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return unsigned(pg25::emu::warp_collective(pg25::emu::WarpOp::Ballot, mask, pred != 0, 0, warpSize));
}
inline int __all_sync(unsigned mask, int pred) {
  return int(pg25::emu::warp_collective(pg25::emu::WarpOp::All, mask, pred != 0, 0, warpSize));
}
inline int __any_sync(unsigned mask, int pred) {
  return int(pg25::emu::warp_collective(pg25::emu::WarpOp::Any, mask, pred != 0, 0, warpSize));
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { pg25::emu::warp_collective(pg25::emu::WarpOp::Sync, mask, 0, 0, warpSize); }
inline unsigned __activemask() { return pg25::emu::active_mask(); }
inline void __syncthreads() { pg25::emu::syncthreads(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Atomics are real CPU atomics: blocks of one grid run on several CPU threads at once.
template <class T>
T atomicAdd(T* p, T v) {
  return pg25::emu::atomic_update(p, [v](T o) { return T(o + v); });
}
template <class T>
T atomicSub(T* p, T v) {
  return pg25::emu::atomic_update(p, [v](T o) { return T(o - v); });
}
template <class T>
T atomicMax(T* p, T v) {
  return pg25::emu::atomic_update(p, [v](T o) { return o < v ? v : o; });
}
template <class T>
T atomicMin(T* p, T v) {
  return pg25::emu::atomic_update(p, [v](T o) { return v < o ? v : o; });
}
template <class T>
T atomicExch(T* p, T v) {
  return pg25::emu::atomic_update(p, [v](T) { return v; });
}
template <class T>
T atomicCAS(T* p, T compare, T v) {
  __atomic_compare_exchange(p, &compare, &v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}

// The device math we use; the fast intrinsics compute the exact function here.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline int __float2int_rn(float x) { return int(nearbyintf(x)); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
  return b < a ? b : a;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
  return a < b ? b : a;
}
